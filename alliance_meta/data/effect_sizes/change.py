"""Pre-post (paired) designs: MC, SMCC, SMCR, SMCRH, ROMC, CVRC, VRC.

One group measured twice: means ``m1i``, ``m2i`` and SDs ``sd1i``, ``sd2i`` at the
two times, the size ``ni`` and the correlation ``ri`` of the two measurements.
The formulas are metafor 3.8.1's ``escalc`` (Viechtbauer, 2010).
"""

from __future__ import annotations

import numpy as np

from alliance_meta.data.effect_sizes import transforms as tf
from alliance_meta.data.effect_sizes._common import (
    by_vtype,
    cmi,
    correlation_range,
    finite_or,
    mean_ratio_problems,
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
    register,
)

__all__: list[str] = []

_FAMILY = "pre-post change"
_ALL = ("m1i", "m2i", "sd1i", "sd2i", "ni", "ri")


def _check(measure: str) -> CheckFn:
    def check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
        problems = [
            positive(name, inputs[name], "a standard deviation")
            for name in ("sd1i", "sd2i")
            if name in inputs
        ]
        problems.append(correlation_range("ri", inputs["ri"]))
        nf = finite_or(inputs["ni"], 1e9)
        problems.append(Problem("ni", "a sample size must be > 0", nf <= 0))
        if measure in ("SMCC", "SMCR", "SMCRH"):
            problems.append(
                Problem("ni", f"{measure} needs ni > 2 (Hedges' correction with ni - 1 df)",
                        (nf > 0) & (nf <= 2))
            )
        if measure in ("CVRC", "VRC"):
            problems.append(Problem("ni", f"{measure} needs ni > 1", (nf > 0) & (nf <= 1)))
        if measure in ("ROMC", "CVRC"):
            problems += mean_ratio_problems(inputs, measure, "ratio" if measure == "ROMC" else "cv")
        return problems

    return check


def _mc(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, ni, ri = (inputs[k] for k in _ALL)
    return Computed(m1 - m2, (sd1**2 + sd2**2 - 2.0 * ri * sd1 * sd2) / ni, ni=ni)


def _smcc(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, ni, ri = (inputs[k] for k in _ALL)
    c = cmi(ni - 1.0)
    di = (m1 - m2) / np.sqrt(sd1**2 + sd2**2 - 2.0 * ri * sd1 * sd2)
    yi = c * di
    vi = by_vtype(
        options,
        yi.shape[0],
        {
            "LS": lambda: 1.0 / ni + yi**2 / (2.0 * ni),
            "LS2": lambda: c**2 * (1.0 / ni + di**2 / (2.0 * ni)),
        },
    )
    return Computed(yi, vi, ni=ni)


def _smcr(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, ni, ri = (inputs[k] for k in ("m1i", "m2i", "sd1i", "ni", "ri"))
    c = cmi(ni - 1.0)
    di = (m1 - m2) / sd1
    yi = c * di
    vi = by_vtype(
        options,
        yi.shape[0],
        {
            "LS": lambda: 2.0 * (1.0 - ri) / ni + yi**2 / (2.0 * ni),
            "LS2": lambda: c**2 * (2.0 * (1.0 - ri) / ni + di**2 / (2.0 * ni)),
        },
    )
    return Computed(yi, vi, ni=ni)


def _smcrh(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, ni, ri = (inputs[k] for k in _ALL)
    c = cmi(ni - 1.0)
    vardi = sd1**2 + sd2**2 - 2.0 * ri * sd1 * sd2
    yi = c * (m1 - m2) / sd1
    vi = c**2 * (vardi / (sd1**2 * (ni - 1.0)) + yi**2 / (2.0 * (ni - 1.0)))
    return Computed(yi, vi, ni=ni)


def _romc(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, ni, ri = (inputs[k] for k in _ALL)
    yi = np.log(m1 / m2)
    vi = sd1**2 / (ni * m1**2) + sd2**2 / (ni * m2**2) - 2.0 * ri * sd1 * sd2 / (m1 * m2 * ni)
    return Computed(yi, vi, ni=ni)


def _cvrc(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, ni, ri = (inputs[k] for k in _ALL)
    yi = np.log(sd1 / m1) - np.log(sd2 / m2)
    vi = (1.0 - ri**2) / (ni - 1.0) + (
        m1**2 * sd2**2 + m2**2 * sd1**2 - 2.0 * m1 * m2 * ri * sd1 * sd2
    ) / (m1**2 * m2**2 * ni)
    return Computed(yi, vi, ni=ni)


def _vrc(inputs: Inputs, options: EscalcOptions) -> Computed:
    sd1, sd2, ni, ri = (inputs[k] for k in ("sd1i", "sd2i", "ni", "ri"))
    return Computed(np.log(sd1 / sd2), (1.0 - ri**2) / (ni - 1.0), ni=ni)


def _spec(
    name: str,
    description: str,
    compute: ComputeFn,
    *,
    inputs: tuple[str, ...] = _ALL,
    vtypes: tuple[str, ...] = ("LS",),
    log_ratio: str = "",
    axis_label: str,
    formula: str,
    variance: str,
    reference: str,
) -> MeasureSpec:
    if log_ratio:
        return register(
            MeasureSpec(
                name=name, family=_FAMILY, description=description, inputs=inputs,
                compute=compute, check=_check(name), vtypes=vtypes,
                back_transform=tf.exp, transform=tf.log, natural_name=log_ratio,
                analysis_name=f"log {log_ratio}", axis_label=f"{axis_label} (log scale)",
                analysis_label=f"Log {axis_label[0].lower()}{axis_label[1:]}", axis="log",
                formula=formula, variance=variance, reference=reference,
                back_transform_label=":math:`e^y`",
            )
        )
    return register(
        MeasureSpec(
            name=name, family=_FAMILY, description=description, inputs=inputs,
            compute=compute, check=_check(name), vtypes=vtypes, natural_name=name,
            analysis_name=name, axis_label=axis_label, analysis_label=axis_label,
            formula=formula, variance=variance, reference=reference,
        )
    )


_SD = r"s_{di}^2 = s_{1i}^2 + s_{2i}^2 - 2r_i s_{1i}s_{2i}"

_spec("MC", "raw mean change", _mc, axis_label="Mean change",
      formula=r":math:`\bar x_{1i} - \bar x_{2i}`",
      variance=rf":math:`{_SD}`, :math:`s_{{di}}^2/n_i`",
      reference="Becker (1988); Morris & DeShon (2002)")
_spec("SMCC", "standardised mean change, change-score standardisation", _smcc,
      vtypes=("LS", "LS2"), axis_label="Standardized mean change (change-score SD)",
      formula=r":math:`c(n_i-1)(\bar x_{1i} - \bar x_{2i})/s_{di}`",
      variance=r":math:`1/n_i + y_i^2/(2n_i)`",
      reference="Gibbons et al. (1993); Morris & DeShon (2002)")
_spec("SMCR", "standardised mean change, raw-score standardisation", _smcr,
      inputs=("m1i", "m2i", "sd1i", "ni", "ri"), vtypes=("LS", "LS2"),
      axis_label="Standardized mean change (raw-score SD)",
      formula=r":math:`c(n_i-1)(\bar x_{1i} - \bar x_{2i})/s_{1i}`",
      variance=r":math:`2(1 - r_i)/n_i + y_i^2/(2n_i)`",
      reference="Becker (1988); Morris (2008)")
_spec("SMCRH", "standardised mean change, raw-score standardisation, heteroscedastic", _smcrh,
      axis_label="Standardized mean change (raw-score SD)",
      formula=r":math:`c(n_i-1)(\bar x_{1i} - \bar x_{2i})/s_{1i}`",
      variance=r":math:`c(n_i-1)^2\left[s_{di}^2/(s_{1i}^2(n_i-1)) + y_i^2/(2(n_i-1))\right]`",
      reference="Bonett (2008)")
_spec("ROMC", "log ratio of means of a pre-post design", _romc, log_ratio="ROM",
      axis_label="Ratio of means",
      formula=r":math:`\log(\bar x_{1i}/\bar x_{2i})`",
      variance=r":math:`\frac{s_{1i}^2}{n_i\bar x_{1i}^2} + \frac{s_{2i}^2}{n_i\bar x_{2i}^2} "
      r"- \frac{2r_is_{1i}s_{2i}}{\bar x_{1i}\bar x_{2i}n_i}`",
      reference="Lajeunesse (2011)")
_spec("CVRC", "log ratio of coefficients of variation of a pre-post design", _cvrc,
      log_ratio="CVR", axis_label="Ratio of coefficients of variation",
      formula=r":math:`\log\frac{s_{1i}/\bar x_{1i}}{s_{2i}/\bar x_{2i}}`",
      variance=r":math:`\frac{1-r_i^2}{n_i-1} + "
      r"\frac{\bar x_{1i}^2s_{2i}^2 + \bar x_{2i}^2s_{1i}^2 "
      r"- 2\bar x_{1i}\bar x_{2i}r_is_{1i}s_{2i}}{\bar x_{1i}^2\bar x_{2i}^2n_i}`",
      reference="Nakagawa et al. (2015)")
_spec("VRC", "log variability ratio of a pre-post design", _vrc,
      inputs=("sd1i", "sd2i", "ni", "ri"), log_ratio="VR", axis_label="Variability ratio",
      formula=r":math:`\log(s_{1i}/s_{2i})`", variance=r":math:`(1 - r_i^2)/(n_i - 1)`",
      reference="Nakagawa et al. (2015)")
