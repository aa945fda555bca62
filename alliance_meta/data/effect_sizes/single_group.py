"""One group's mean and SD: MN, MNLN, CVLN, SDLN, SMN.

Inputs are the mean ``mi``, the SD ``sdi`` and the size ``ni``.  The formulas are
metafor 3.8.1's ``escalc`` (Viechtbauer, 2010).
"""

from __future__ import annotations

import numpy as np

from alliance_meta.data.effect_sizes import transforms as tf
from alliance_meta.data.effect_sizes._common import cmi, finite_or, positive
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

_FAMILY = "single-group means"


def _check(measure: str) -> CheckFn:
    def check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
        problems = [positive("sdi", inputs["sdi"], "a standard deviation")]
        nf = finite_or(inputs["ni"], 1e9)
        problems.append(Problem("ni", "a sample size must be > 0", nf <= 0))
        if measure in ("CVLN", "SDLN"):
            problems.append(Problem("ni", f"{measure} needs ni > 1", (nf > 0) & (nf <= 1)))
        if measure == "SMN":
            problems.append(
                Problem("ni", "SMN needs ni > 2 (Hedges' correction with ni - 1 df)",
                        (nf > 0) & (nf <= 2))
            )
        if measure in ("MNLN", "CVLN"):
            problems.append(positive("mi", inputs["mi"], f"{measure} needs a mean that"))
        return problems

    return check


def _mn(inputs: Inputs, options: EscalcOptions) -> Computed:
    mi, sdi, ni = inputs["mi"], inputs["sdi"], inputs["ni"]
    return Computed(np.array(mi, dtype=np.float64), sdi**2 / ni, ni=ni)


def _mnln(inputs: Inputs, options: EscalcOptions) -> Computed:
    mi, sdi, ni = inputs["mi"], inputs["sdi"], inputs["ni"]
    return Computed(np.log(mi), sdi**2 / (ni * mi**2), ni=ni)


def _cvln(inputs: Inputs, options: EscalcOptions) -> Computed:
    mi, sdi, ni = inputs["mi"], inputs["sdi"], inputs["ni"]
    yi = np.log(sdi / mi) + 1.0 / (2.0 * (ni - 1.0))
    return Computed(yi, 1.0 / (2.0 * (ni - 1.0)) + sdi**2 / (ni * mi**2), ni=ni)


def _sdln(inputs: Inputs, options: EscalcOptions) -> Computed:
    sdi, ni = inputs["sdi"], inputs["ni"]
    return Computed(np.log(sdi) + 1.0 / (2.0 * (ni - 1.0)), 1.0 / (2.0 * (ni - 1.0)), ni=ni)


def _smn(inputs: Inputs, options: EscalcOptions) -> Computed:
    mi, sdi, ni = inputs["mi"], inputs["sdi"], inputs["ni"]
    yi = cmi(ni - 1.0) * mi / sdi
    return Computed(yi, 1.0 / ni + yi**2 / (2.0 * ni), ni=ni)


def _spec(
    name: str,
    description: str,
    compute: ComputeFn,
    *,
    inputs: tuple[str, ...] = ("mi", "sdi", "ni"),
    natural: str,
    axis_label: str,
    back: tuple[Transform, Transform] | None = None,
    formula: str,
    variance: str,
    reference: str,
) -> None:
    if back is not None:
        register(
            MeasureSpec(
                name=name, family=_FAMILY, description=description, inputs=inputs,
                compute=compute, check=_check(name), back_transform=back[0],
                transform=back[1], natural_name=natural, analysis_name=f"log {natural}",
                axis_label=f"{axis_label} (log scale)",
                analysis_label=f"Log {axis_label[0].lower()}{axis_label[1:]}", axis="log",
                symmetric=False, formula=formula, variance=variance, reference=reference,
                back_transform_label=":math:`e^y`",
            )
        )
        return
    register(
        MeasureSpec(
            name=name, family=_FAMILY, description=description, inputs=inputs,
            compute=compute, check=_check(name), natural_name=natural, analysis_name=natural,
            axis_label=axis_label, analysis_label=axis_label, symmetric=False,
            formula=formula, variance=variance, reference=reference,
        )
    )


_spec("MN", "raw mean", _mn, natural="MN", axis_label="Mean",
      formula=r":math:`\bar x_i`", variance=":math:`s_i^2/n_i`",
      reference="Viechtbauer (2010)")
_spec("MNLN", "log-transformed mean", _mnln, natural="MN", axis_label="Mean",
      back=(tf.exp, tf.log), formula=r":math:`\log \bar x_i`",
      variance=r":math:`s_i^2/(n_i\bar x_i^2)`", reference="Viechtbauer (2010)")
_spec("CVLN", "log-transformed coefficient of variation", _cvln, natural="CV",
      axis_label="Coefficient of variation", back=(tf.exp, tf.log),
      formula=r":math:`\log(s_i/\bar x_i) + 1/(2(n_i - 1))`",
      variance=r":math:`1/(2(n_i-1)) + s_i^2/(n_i\bar x_i^2)`",
      reference="Nakagawa et al. (2015)")
_spec("SDLN", "log-transformed standard deviation", _sdln, inputs=("sdi", "ni"),
      natural="SD", axis_label="Standard deviation", back=(tf.exp, tf.log),
      formula=r":math:`\log s_i + 1/(2(n_i - 1))`", variance=":math:`1/(2(n_i - 1))`",
      reference="Bartlett & Kendall (1946); Nakagawa et al. (2015)")
_spec("SMN", "single-group standardised mean", _smn, natural="SMN",
      axis_label="Standardized mean",
      formula=r":math:`c(n_i - 1)\bar x_i/s_i`", variance=r":math:`1/n_i + y_i^2/(2n_i)`",
      reference="Viechtbauer (2010)")
