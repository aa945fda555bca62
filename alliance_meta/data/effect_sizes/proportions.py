"""Single proportions: PR, PLN, PLO, PAS, PFT.

Inputs are the events ``xi`` and non-events ``mi`` (or the size ``ni``, as
metafor's ``mi = ni - xi``).  Zero counts get ``add`` as in metafor 3.8.1
(``add = 1/2`` to both counts when either is zero; ``add = 0`` for PAS and PFT).
"""

from __future__ import annotations

import numpy as np

from alliance_meta.data.effect_sizes import transforms as tf
from alliance_meta.data.effect_sizes._common import (
    add_to_cells,
    by_vtype,
    counts_problems,
    finite_or,
    replmiss,
    wmean,
)
from alliance_meta.data.measures import (
    BoolArray,
    Computed,
    ComputeFn,
    EscalcOptions,
    FloatArray,
    Inputs,
    MeasureSpec,
    Problem,
    Transform,
    register,
)
from alliance_meta.exceptions import AllianceMetaError

__all__: list[str] = []

_FAMILY = "proportions"


def _prepare(given: Inputs) -> tuple[dict[str, FloatArray], list[Problem]]:
    xi, mi, ni = given.get("xi"), given.get("mi"), given.get("ni")
    problems: list[Problem] = []
    if xi is None or (mi is None and ni is None):
        raise AllianceMetaError("proportions need xi and mi (or ni)")
    if ni is not None:
        nf, xf = finite_or(ni, np.inf), finite_or(xi, 0.0)
        problems.append(
            Problem("xi", "the event count xi exceeds the sample size ni", xf > nf)
        )
        if mi is not None:
            problems.append(
                Problem("ni", "ni is not xi + mi", np.isfinite(mi) & np.isfinite(xi)
                        & np.isfinite(ni) & (ni != xi + mi))
            )
        mi = replmiss(mi, ni - xi)
    assert mi is not None
    return {"xi": xi, "mi": mi}, problems


def _check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
    problems = counts_problems({"xi": inputs["xi"], "mi": inputs["mi"]})
    nf = finite_or(inputs["xi"] + inputs["mi"], 1.0)
    problems.append(Problem("ni", "the sample size xi + mi must be > 0", nf <= 0))
    return problems


def _cells(default_add: float, inputs: Inputs, options: EscalcOptions) -> tuple[
    FloatArray, FloatArray, FloatArray, FloatArray, BoolArray
]:
    xu, mu = inputs["xi"], inputs["mi"]
    (xi, mi), corrected = add_to_cells([xu, mu], options, default_add)
    ni = xi + mi
    return xi, mi, ni, xi / ni, corrected


def _compute(name: str, default_add: float) -> ComputeFn:
    def compute(inputs: Inputs, options: EscalcOptions) -> Computed:
        xi, mi, ni, pri, corrected = _cells(default_add, inputs, options)
        n_unadjusted = inputs["xi"] + inputs["mi"]
        k = xi.shape[0]
        if name == "PR":
            yi = pri
            vi = by_vtype(
                options,
                k,
                {
                    "UB": lambda: pri * (1.0 - pri) / (ni - 1.0),
                    "LS": lambda: pri * (1.0 - pri) / ni,
                    "AV": lambda: (lambda p: p * (1.0 - p) / ni)(wmean(pri, ni)),
                },
            )
        elif name == "PLN":
            yi = np.log(pri)
            vi = by_vtype(
                options,
                k,
                {
                    "LS": lambda: 1.0 / xi - 1.0 / ni,
                    "AV": lambda: 1.0 / (wmean(pri, ni) * ni) - 1.0 / ni,
                },
            )
        elif name == "PLO":
            yi = np.log(pri / (1.0 - pri))
            vi = by_vtype(
                options,
                k,
                {
                    "LS": lambda: 1.0 / xi + 1.0 / mi,
                    "AV": lambda: (
                        lambda p: 1.0 / (p * ni) + 1.0 / ((1.0 - p) * ni)
                    )(wmean(pri, ni)),
                },
            )
        elif name == "PAS":
            yi = np.arcsin(np.sqrt(pri))
            vi = 1.0 / (4.0 * ni)
        else:  # PFT
            yi = 0.5 * (
                np.arcsin(np.sqrt(xi / (ni + 1.0))) + np.arcsin(np.sqrt((xi + 1.0) / (ni + 1.0)))
            )
            vi = 1.0 / (4.0 * ni + 2.0)
        return Computed(yi, vi, corrected=corrected, ni=n_unadjusted)

    return compute


def _spec(
    name: str,
    description: str,
    *,
    vtypes: tuple[str, ...] = ("LS",),
    default_add: float = 0.5,
    back: tuple[Transform, Transform] | None = None,
    analysis: str = "",
    axis: str = "linear",
    needs_n: bool = False,
    formula: str,
    variance: str,
    reference: str,
    back_label: str = "",
) -> None:
    register(
        MeasureSpec(
            name=name,
            family=_FAMILY,
            description=description,
            inputs=("xi", "mi"),
            alternatives=("ni",),
            compute=_compute(name, default_add),
            check=_check,
            prepare=_prepare,
            vtypes=vtypes,
            default_add=default_add,
            back_transform=None if back is None else back[0],
            transform=None if back is None else back[1],
            needs_n=needs_n,
            natural_name="PR",
            analysis_name=analysis or "PR",
            axis_label="Proportion",
            analysis_label=analysis or "Proportion",
            axis=axis,  # type: ignore[arg-type]
            bounded=True,
            symmetric=False,
            formula=formula,
            variance=variance,
            reference=reference,
            back_transform_label=back_label,
        )
    )


_spec("PR", "raw proportion", vtypes=("LS", "UB", "AV"),
      formula=r":math:`p_i = x_i/n_i`", variance=r":math:`p_i(1-p_i)/n_i`",
      reference="Viechtbauer (2010)")
_spec("PLN", "log-transformed proportion", vtypes=("LS", "AV"), back=(tf.exp, tf.log),
      analysis="Log proportion", axis="log",
      formula=r":math:`\log p_i`", variance=r":math:`1/x_i - 1/n_i`",
      reference="Viechtbauer (2010)", back_label=":math:`e^y`")
_spec("PLO", "logit-transformed proportion (log odds)", vtypes=("LS", "AV"),
      back=(tf.ilogit, tf.logit), analysis="Log odds", axis="function",
      formula=r":math:`\log\frac{p_i}{1-p_i}`", variance=r":math:`1/x_i + 1/(n_i - x_i)`",
      reference="Viechtbauer (2010)",
      back_label=r":math:`1/(1+e^{-y})` (metafor's ``transf.ilogit``)")
_spec("PAS", "arcsine square root transformed proportion", default_add=0.0,
      back=(tf.iarcsin, tf.arcsin), analysis="Arcsine square root proportion",
      axis="function",
      formula=r":math:`\arcsin\sqrt{p_i}`", variance=r":math:`1/(4n_i)`",
      reference="Anscombe (1948)",
      back_label=r":math:`\sin^2 y` (metafor's ``transf.iarcsin``)")
_spec("PFT", "Freeman-Tukey double arcsine transformed proportion", default_add=0.0,
      back=(tf.ipft_hm, tf.pft_hm), analysis="Double arcsine proportion", axis="function",
      needs_n=True,
      formula=r":math:`\tfrac12\left[\arcsin\sqrt{\frac{x_i}{n_i+1}} "
      r"+ \arcsin\sqrt{\frac{x_i+1}{n_i+1}}\right]`",
      variance=r":math:`1/(4n_i + 2)`",
      reference="Freeman & Tukey (1950); Miller (1978)",
      back_label="Miller (1978) at the harmonic mean of the :math:`n_i` "
      "(metafor's ``transf.ipft.hm``)")
