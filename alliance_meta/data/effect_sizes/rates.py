"""Incidence rates: IR, IRLN, IRS, IRFT (one group) and IRR, IRD, IRSD (two groups).

Inputs are event counts (``xi``; ``x1i``, ``x2i``) and person-times (``ti``;
``t1i``, ``t2i``).  Zero counts get ``add`` as in metafor 3.8.1 (``add = 1/2``;
``add = 0`` for IRS, IRFT and IRSD).
"""

from __future__ import annotations

import numpy as np

from alliance_meta.data.effect_sizes import transforms as tf
from alliance_meta.data.effect_sizes._common import (
    add_to_cells,
    counts_problems,
    drop_double_zero,
    positive,
)
from alliance_meta.data.measures import (
    CheckFn,
    Computed,
    ComputeFn,
    EscalcOptions,
    Inputs,
    MeasureSpec,
    Problem,
    Transform,
    register,
)

__all__: list[str] = []


def _check(counts: tuple[str, ...], times: tuple[str, ...]) -> CheckFn:
    def check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
        problems = counts_problems({name: inputs[name] for name in counts})
        for name in times:
            problems.append(positive(name, inputs[name], "a person-time"))
        return problems

    return check


def _one(name: str, default_add: float) -> ComputeFn:
    def compute(inputs: Inputs, options: EscalcOptions) -> Computed:
        xu, ti = inputs["xi"], inputs["ti"]
        (xi,), corrected = add_to_cells([xu], options, default_add)
        iri = xi / ti
        if name == "IR":
            yi, vi = iri, iri / ti
        elif name == "IRLN":
            yi, vi = np.log(iri), 1.0 / xi
        elif name == "IRS":
            yi, vi = np.sqrt(iri), 1.0 / (4.0 * ti)
        else:  # IRFT
            yi, vi = 0.5 * (np.sqrt(iri) + np.sqrt(iri + 1.0 / ti)), 1.0 / (4.0 * ti)
        return Computed(yi, vi, corrected=corrected, ni=ti)

    return compute


def _two(name: str, default_add: float) -> ComputeFn:
    def compute(inputs: Inputs, options: EscalcOptions) -> Computed:
        x1u, x2u, t1, t2 = (inputs[k] for k in ("x1i", "x2i", "t1i", "t2i"))
        excluded = drop_double_zero(options, [(x1u, x2u)])
        x1u = np.where(excluded, np.nan, x1u)
        x2u = np.where(excluded, np.nan, x2u)
        (x1, x2), corrected = add_to_cells([x1u, x2u], options, default_add)
        ir1, ir2 = x1 / t1, x2 / t2
        if name == "IRR":
            yi, vi = np.log(ir1) - np.log(ir2), 1.0 / x1 + 1.0 / x2
        elif name == "IRD":
            yi, vi = ir1 - ir2, ir1 / t1 + ir2 / t2
        else:  # IRSD
            yi, vi = np.sqrt(ir1) - np.sqrt(ir2), 1.0 / (4.0 * t1) + 1.0 / (4.0 * t2)
        return Computed(yi, vi, corrected=corrected & ~excluded, excluded=excluded, ni=t1 + t2)

    return compute


def _one_spec(
    name: str,
    description: str,
    *,
    default_add: float = 0.5,
    back: tuple[Transform, Transform] | None = None,
    axis: str = "linear",
    analysis: str = "",
    needs_n: bool = False,
    formula: str,
    variance: str,
    back_label: str = "",
) -> None:
    register(
        MeasureSpec(
            name=name, family="incidence rates", description=description, inputs=("xi", "ti"),
            compute=_one(name, default_add), check=_check(("xi",), ("ti",)),
            default_add=default_add, back_transform=None if back is None else back[0],
            transform=None if back is None else back[1], needs_n=needs_n,
            natural_name="IR", analysis_name=analysis or "IR", axis_label="Incidence rate",
            analysis_label=analysis or "Incidence rate", axis=axis,  # type: ignore[arg-type]
            symmetric=False, formula=formula, variance=variance,
            reference="Viechtbauer (2010)" if name != "IRFT" else "Freeman & Tukey (1950)",
            back_transform_label=back_label,
        )
    )


_one_spec("IR", "raw incidence rate", formula=r":math:`x_i/t_i`", variance=r":math:`x_i/t_i^2`")
_one_spec("IRLN", "log-transformed incidence rate", back=(tf.exp, tf.log), axis="log",
          analysis="Log incidence rate", formula=r":math:`\log(x_i/t_i)`",
          variance=r":math:`1/x_i`", back_label=":math:`e^y`")
_one_spec("IRS", "square root transformed incidence rate", default_add=0.0,
          back=(tf.isqrt, tf.sqrt), axis="function", analysis="Square root incidence rate",
          formula=r":math:`\sqrt{x_i/t_i}`", variance=r":math:`1/(4t_i)`",
          back_label=r":math:`y^2` (metafor's ``transf.isqrt``)")
_one_spec("IRFT", "Freeman-Tukey transformed incidence rate", default_add=0.0,
          back=(tf.iirft, tf.irft_hm), axis="function", needs_n=True,
          analysis="Freeman-Tukey incidence rate",
          formula=r":math:`\tfrac12\left(\sqrt{x_i/t_i} + \sqrt{(x_i+1)/t_i}\right)`",
          variance=r":math:`1/(4t_i)`",
          back_label="metafor's ``transf.iirft`` at the harmonic mean of the :math:`t_i`")


def _two_spec(
    name: str,
    description: str,
    *,
    default_add: float = 0.5,
    log_ratio: bool = False,
    formula: str,
    variance: str,
    reference: str,
) -> None:
    common = dict(
        name=name, family="incidence rate comparisons", description=description,
        inputs=("x1i", "x2i", "t1i", "t2i"), compute=_two(name, default_add),
        check=_check(("x1i", "x2i"), ("t1i", "t2i")), default_add=default_add,
        formula=formula, variance=variance, reference=reference,
    )
    if log_ratio:
        spec = MeasureSpec(
            back_transform=tf.exp, transform=tf.log, natural_name="IRR",
            analysis_name="log IRR", axis_label="Incidence rate ratio (log scale)",
            analysis_label="Log incidence rate ratio", axis="log",
            back_transform_label=":math:`e^y`", **common,  # type: ignore[arg-type]
        )
    else:
        label = {"IRD": "Incidence rate difference",
                 "IRSD": "Square root incidence rate difference"}[name]
        spec = MeasureSpec(
            natural_name=name, analysis_name=name, axis_label=label, analysis_label=label,
            **common,  # type: ignore[arg-type]
        )
    register(spec)


_two_spec("IRR", "log incidence rate ratio", log_ratio=True,
          formula=r":math:`\log\frac{x_{1i}/t_{1i}}{x_{2i}/t_{2i}}`",
          variance=r":math:`1/x_{1i} + 1/x_{2i}`", reference="Rothman et al. (2008)")
_two_spec("IRD", "incidence rate difference",
          formula=r":math:`x_{1i}/t_{1i} - x_{2i}/t_{2i}`",
          variance=r":math:`x_{1i}/t_{1i}^2 + x_{2i}/t_{2i}^2`", reference="Rothman et al. (2008)")
_two_spec("IRSD", "square root transformed incidence rate difference", default_add=0.0,
          formula=r":math:`\sqrt{x_{1i}/t_{1i}} - \sqrt{x_{2i}/t_{2i}}`",
          variance=r":math:`1/(4t_{1i}) + 1/(4t_{2i})`", reference="Viechtbauer (2010)")
