"""GEN: effect sizes computed elsewhere, given with their variances or SEs."""

from __future__ import annotations

import numpy as np

from alliance_meta.data.effect_sizes._common import replmiss
from alliance_meta.data.measures import (
    Computed,
    EscalcOptions,
    FloatArray,
    Inputs,
    MeasureSpec,
    Problem,
    register,
)
from alliance_meta.exceptions import AllianceMetaError

__all__: list[str] = []


def _prepare(given: Inputs) -> tuple[dict[str, FloatArray], list[Problem]]:
    yi, vi, sei = given.get("yi"), given.get("vi"), given.get("sei")
    if yi is None or (vi is None and sei is None):
        raise AllianceMetaError("GEN needs yi and vi (or sei)")
    problems: list[Problem] = []
    if sei is not None:
        problems.append(
            Problem("sei", "a standard error must be > 0", np.isfinite(sei) & ~(sei > 0))
        )
        vi = replmiss(vi, sei**2)
    assert vi is not None
    return {"yi": yi, "vi": vi}, problems


def _check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
    vi = inputs["vi"]
    return [Problem("vi", "the sampling variance must be > 0", np.isfinite(vi) & ~(vi > 0))]


def _compute(inputs: Inputs, options: EscalcOptions) -> Computed:
    return Computed(
        np.array(inputs["yi"], dtype=np.float64), np.array(inputs["vi"], dtype=np.float64)
    )


register(
    MeasureSpec(
        name="GEN",
        family="generic",
        description="effect sizes computed elsewhere (yi with vi or sei)",
        inputs=("yi", "vi"),
        alternatives=("sei", "ni"),
        compute=_compute,
        check=_check,
        prepare=_prepare,
        natural_name="Estimate",
        analysis_name="Estimate",
        axis_label="Effect size",
        analysis_label="Effect size",
        formula=":math:`y_i` as given",
        variance=r":math:`v_i`, or :math:`\mathrm{se}_i^2`",
        reference="—",
    )
)
