"""Cronbach's alpha: ARAW, AHW, ABT.

Inputs are the alpha ``ai``, the number of items ``mi`` and the sample size
``ni``.  The formulas are metafor 3.8.1's ``escalc`` (Viechtbauer, 2010).
"""

from __future__ import annotations

import numpy as np

from alliance_meta.data.effect_sizes import transforms as tf
from alliance_meta.data.effect_sizes._common import finite_or
from alliance_meta.data.measures import (
    CheckFn,
    Computed,
    EscalcOptions,
    Inputs,
    MeasureSpec,
    Problem,
    register,
)

__all__: list[str] = []

_FAMILY = "reliability (Cronbach's alpha)"


def _check(measure: str) -> CheckFn:
    def check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
        af = finite_or(inputs["ai"], 0.0)
        mf = finite_or(inputs["mi"], 2.0)
        nf = finite_or(inputs["ni"], 1e9)
        return [
            Problem("ai", "Cronbach's alpha must lie in (-inf, 1)", af >= 1.0),
            Problem("mi", "the number of items mi must be at least 2", mf < 2),
            Problem("ni", "a sample size must be > 0", nf <= 0),
            Problem("ni", f"{measure} needs ni > 2 (its variance has ni - 2 df)",
                    (nf > 0) & (nf <= 2)),
        ]

    return check


def _araw(inputs: Inputs, options: EscalcOptions) -> Computed:
    ai, mi, ni = inputs["ai"], inputs["mi"], inputs["ni"]
    yi = np.array(ai, dtype=np.float64)
    return Computed(yi, 2.0 * mi * (1.0 - ai) ** 2 / ((mi - 1.0) * (ni - 2.0)), ni=ni)


def _ahw(inputs: Inputs, options: EscalcOptions) -> Computed:
    ai, mi, ni = inputs["ai"], inputs["mi"], inputs["ni"]
    yi = 1.0 - (1.0 - ai) ** (1.0 / 3.0)
    vi = 18.0 * mi * (ni - 1.0) * (1.0 - ai) ** (2.0 / 3.0) / ((mi - 1.0) * (9.0 * ni - 11.0) ** 2)
    return Computed(yi, vi, ni=ni)


def _abt(inputs: Inputs, options: EscalcOptions) -> Computed:
    ai, mi, ni = inputs["ai"], inputs["mi"], inputs["ni"]
    yi = -np.log(1.0 - ai)
    return Computed(yi, 2.0 * mi / ((mi - 1.0) * (ni - 2.0)), ni=ni)


_COMMON_INPUTS = ("ai", "mi", "ni")

register(
    MeasureSpec(
        name="ARAW", family=_FAMILY, description="raw Cronbach's alpha", inputs=_COMMON_INPUTS,
        compute=_araw, check=_check("ARAW"), natural_name="alpha", analysis_name="alpha",
        axis_label="Cronbach's alpha", analysis_label="Cronbach's alpha", symmetric=False,
        formula=r":math:`\alpha_i`",
        variance=r":math:`2m_i(1-\alpha_i)^2/((m_i-1)(n_i-2))`",
        reference="Feldt et al. (1987); Bonett (2010)",
    )
)
register(
    MeasureSpec(
        name="AHW", family=_FAMILY, description="Hakstian-Whalen transformed alpha",
        inputs=_COMMON_INPUTS, compute=_ahw, check=_check("AHW"), back_transform=tf.iahw,
        transform=tf.ahw, natural_name="alpha", analysis_name="AHW",
        axis_label="Cronbach's alpha", analysis_label="Transformed alpha (Hakstian-Whalen)",
        axis="function", symmetric=False,
        formula=r":math:`1 - (1-\alpha_i)^{1/3}`",
        variance=r":math:`\frac{18m_i(n_i-1)(1-\alpha_i)^{2/3}}{(m_i-1)(9n_i-11)^2}`",
        reference="Hakstian & Whalen (1976)",
        back_transform_label=r":math:`1 - (1 - y)^3` (metafor's ``transf.iahw``)",
    )
)
register(
    MeasureSpec(
        name="ABT", family=_FAMILY, description="Bonett transformed alpha",
        inputs=_COMMON_INPUTS, compute=_abt, check=_check("ABT"), back_transform=tf.iabt,
        transform=tf.abt, natural_name="alpha", analysis_name="ABT",
        axis_label="Cronbach's alpha", analysis_label="Transformed alpha (Bonett)",
        axis="function", symmetric=False,
        formula=r":math:`-\log(1-\alpha_i)`", variance=r":math:`2m_i/((m_i-1)(n_i-2))`",
        reference="Bonett (2002)",
        back_transform_label=r":math:`1 - e^{-y}` (metafor's ``transf.iabt``)",
    )
)
