"""Two independent groups' means and SDs: MD, SMD, SMDH, SMD1, SMD1H, ROM, CVR, VR,
and the conversions of a standardised difference to RPB, RBIS, D2OR, D2ORN, D2ORL.

The formulas are metafor 3.8.1's ``escalc`` (Viechtbauer, 2010).  SMD and its
conversions may also be given as a standardised difference ``di``, a t statistic
``ti``, a signed two-sided p-value ``pi`` or an F(1, df) statistic ``fi`` with the
group sizes (:math:`d = t\\sqrt{1/n_1 + 1/n_2}`, Borenstein et al., 2009, eq. 4.20;
metafor then computes from :math:`\\bar x_1 = d`, :math:`\\bar x_2 = 0`,
:math:`s_1 = s_2 = 1`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from alliance_meta.data.effect_sizes import transforms as tf
from alliance_meta.data.effect_sizes._common import (
    by_vtype,
    cmi,
    finite_or,
    mean_ratio_problems,
    positive,
    replmiss,
    statistic_t,
    wmean,
)
from alliance_meta.data.measures import (
    CheckFn,
    Computed,
    ComputeFn,
    EscalcOptions,
    FloatArray,
    Inputs,
    MeasureSpec,
    PrepareFn,
    Problem,
    register,
)
from alliance_meta.exceptions import AllianceMetaError

__all__: list[str] = []

_FAMILY = "two-group means"
_ALL = ("m1i", "m2i", "sd1i", "sd2i", "n1i", "n2i")
_STATS = ("di", "ti", "pi", "fi")


def _prepare(needed: tuple[str, ...], from_d: bool) -> PrepareFn:
    def prepare(given: Inputs) -> tuple[dict[str, FloatArray], list[Problem]]:
        problems: list[Problem] = []
        out = {name: given[name] for name in needed if name in given}
        if from_d:
            n1, n2 = given.get("n1i"), given.get("n2i")
            df = None if n1 is None or n2 is None else n1 + n2 - 2.0
            t, problems = statistic_t(given, df, "n1i", "df = n1i + n2i - 2")
            di = given.get("di")
            if t is not None and n1 is not None and n2 is not None:
                di = replmiss(di, t * np.sqrt(1.0 / n1 + 1.0 / n2))
            if di is not None:
                have = np.isfinite(di)
                k = di.shape[0]
                for name, value in (("m1i", di), ("m2i", 0.0), ("sd1i", 1.0), ("sd2i", 1.0)):
                    base = out.get(name, np.full(k, np.nan))
                    out[name] = np.where(have, value, base)
        absent = [name for name in needed if name not in out]
        if absent:
            extra = " (or di, ti, pi, fi with n1i, n2i)" if from_d else ""
            raise AllianceMetaError(
                f"this measure needs {', '.join(needed)}{extra}; missing {', '.join(absent)}"
            )
        return out, problems

    return prepare


def _check(measure: str) -> CheckFn:
    def check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
        problems = []
        for name in ("sd1i", "sd2i"):
            if name in inputs:
                problems.append(positive(name, inputs[name], "a standard deviation"))
        n1f, n2f = finite_or(inputs["n1i"], 1e9), finite_or(inputs["n2i"], 1e9)
        for name, n in (("n1i", n1f), ("n2i", n2f)):
            problems.append(Problem(name, "a group size must be > 0", n <= 0))
        both = (n1f > 0) & (n2f > 0)
        if measure in ("SMD", "SMDH"):
            problems.append(
                Problem("n1i", f"{measure} needs n1i + n2i > 3 (Hedges' correction needs "
                        "n1i + n2i - 2 > 1)", both & (n1f + n2f <= 3))
            )
        if measure in ("RPB", "RBIS", "D2OR", "D2ORN", "D2ORL"):
            problems.append(
                Problem("n1i", f"{measure} needs n1i + n2i > 2 (the pooled SD has "
                        "n1i + n2i - 2 df)", both & (n1f + n2f <= 2))
            )
        if measure in ("SMDH", "CVR", "VR"):
            for name, n in (("n1i", n1f), ("n2i", n2f)):
                problems.append(
                    Problem(name, f"{measure} needs a group size > 1", (n > 0) & (n <= 1))
                )
        if measure in ("SMD1", "SMD1H"):
            problems.append(
                Problem("n2i", f"{measure} needs n2i > 2 (Hedges' correction with n2i - 1 df)",
                        (n2f > 0) & (n2f <= 2))
            )
        if measure in ("ROM", "CVR"):
            problems += mean_ratio_problems(inputs, measure, "ratio" if measure == "ROM" else "cv")
        return problems

    return check


def _groups(inputs: Inputs) -> tuple[FloatArray, ...]:
    return tuple(inputs[name] for name in ("m1i", "m2i", "sd1i", "sd2i", "n1i", "n2i"))


def _pooled(sd1: FloatArray, sd2: FloatArray, n1: FloatArray, n2: FloatArray) -> FloatArray:
    mi = n1 + n2 - 2.0
    out: FloatArray = np.sqrt(((n1 - 1.0) * sd1**2 + (n2 - 1.0) * sd2**2) / mi)
    return out


def _md(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, n1, n2 = _groups(inputs)
    yi = m1 - m2
    vi = by_vtype(
        options,
        yi.shape[0],
        {
            "UB": lambda: sd1**2 / n1 + sd2**2 / n2,
            "LS": lambda: sd1**2 / n1 + sd2**2 / n2,
            "HO": lambda: _pooled(sd1, sd2, n1, n2) ** 2 * (1.0 / n1 + 1.0 / n2),
        },
    )
    return Computed(yi, vi, ni=n1 + n2)


def _smd_like(inputs: Inputs, options: EscalcOptions, one_group_sd: bool) -> Computed:
    m1, m2, n1, n2 = inputs["m1i"], inputs["m2i"], inputs["n1i"], inputs["n2i"]
    sd2 = inputs["sd2i"]
    ni = n1 + n2
    if one_group_sd:
        mi, sdpi, npi = n2 - 1.0, sd2, n2
    else:
        mi, sdpi, npi = ni - 2.0, _pooled(inputs["sd1i"], sd2, n1, n2), ni
    di = (m1 - m2) / sdpi
    c = cmi(mi)
    yi = c * di
    k = yi.shape[0]
    base = 1.0 / n1 + 1.0 / n2
    vi = by_vtype(
        options,
        k,
        {
            "UB": lambda: base + (1.0 - (mi - 2.0) / (mi * c**2)) * yi**2,
            "LS": lambda: base + yi**2 / (2.0 * npi),
            "AV": lambda: base + wmean(yi, ni) ** 2 / (2.0 * npi),
            "LS2": lambda: c**2 * (base + di**2 / (2.0 * npi)),
        },
    )
    return Computed(yi, vi, ni=ni)


def _smd(inputs: Inputs, options: EscalcOptions) -> Computed:
    return _smd_like(inputs, options, one_group_sd=False)


def _smd1(inputs: Inputs, options: EscalcOptions) -> Computed:
    return _smd_like(inputs, options, one_group_sd=True)


def _smdh(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, n1, n2 = _groups(inputs)
    c = cmi(n1 + n2 - 2.0)
    s2 = sd1**2 + sd2**2
    yi = c * (m1 - m2) / np.sqrt(s2 / 2.0)

    def ls() -> FloatArray:
        v = yi**2 * (sd1**4 / (n1 - 1.0) + sd2**4 / (n2 - 1.0)) / (2.0 * s2**2) + (
            sd1**2 / (n1 - 1.0) + sd2**2 / (n2 - 1.0)
        ) / (s2 / 2.0)
        out: FloatArray = c**2 * v
        return out

    def ls2() -> FloatArray:
        # metafor 3.8.1's LS2 for SMDH, term for term
        out: FloatArray = (
            yi**2 * sd1**2 / (2.0 * n1 * s2**2)
            + yi**2 * sd2**2 / (2.0 * n2 * s2**2)
            + 2.0 * sd1**2 / (n1 * s2)
            + 2.0 * sd2**2 / (n2 * s2)
        )
        return out

    vi = by_vtype(options, yi.shape[0], {"LS": ls, "LS2": ls2})
    return Computed(yi, vi, ni=n1 + n2)


def _smd1h(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, n1, n2 = _groups(inputs)
    yi = cmi(n2 - 1.0) * (m1 - m2) / sd2
    vi = (sd1**2 / sd2**2) / n1 + 1.0 / n2 + yi**2 / (2.0 * n2)
    return Computed(yi, vi, ni=n1 + n2)


def _rom(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, n1, n2 = _groups(inputs)
    yi = np.log(m1 / m2)
    k = yi.shape[0]

    def avho() -> FloatArray:
        cv1, cv2 = sd1 / m1, sd2 / m2
        ok = ~(np.isnan(n1) | np.isnan(n2) | np.isnan(cv1) | np.isnan(cv2))
        mnw = (np.sum(n1[ok] * cv1[ok]) + np.sum(n2[ok] * cv2[ok])) / np.sum((n1 + n2)[ok])
        out: FloatArray = mnw**2 * (1.0 / n1 + 1.0 / n2)
        return out

    def ho() -> FloatArray:
        sp = _pooled(sd1, sd2, n1, n2)
        out: FloatArray = sp**2 / (n1 * m1**2) + sp**2 / (n2 * m2**2)
        return out

    vi = by_vtype(
        options,
        k,
        {
            "LS": lambda: sd1**2 / (n1 * m1**2) + sd2**2 / (n2 * m2**2),
            "HO": ho,
            "AV": lambda: wmean(sd1 / m1, n1) ** 2 / n1 + wmean(sd2 / m2, n2) ** 2 / n2,
            "AVHO": avho,
        },
    )
    return Computed(yi, vi, ni=n1 + n2)


def _cvr(inputs: Inputs, options: EscalcOptions) -> Computed:
    m1, m2, sd1, sd2, n1, n2 = _groups(inputs)
    yi = np.log(sd1 / m1) + 1.0 / (2.0 * (n1 - 1.0)) - np.log(sd2 / m2) - 1.0 / (2.0 * (n2 - 1.0))
    vi = (
        1.0 / (2.0 * (n1 - 1.0)) + sd1**2 / (n1 * m1**2)
        + 1.0 / (2.0 * (n2 - 1.0)) + sd2**2 / (n2 * m2**2)
    )
    return Computed(yi, vi, ni=n1 + n2)


def _vr(inputs: Inputs, options: EscalcOptions) -> Computed:
    sd1, sd2, n1, n2 = inputs["sd1i"], inputs["sd2i"], inputs["n1i"], inputs["n2i"]
    yi = np.log(sd1 / sd2) + 1.0 / (2.0 * (n1 - 1.0)) - 1.0 / (2.0 * (n2 - 1.0))
    vi = 1.0 / (2.0 * (n1 - 1.0)) + 1.0 / (2.0 * (n2 - 1.0))
    return Computed(yi, vi, ni=n1 + n2)


def _d_parts(inputs: Inputs) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    m1, m2, sd1, sd2, n1, n2 = _groups(inputs)
    return (m1 - m2) / _pooled(sd1, sd2, n1, n2), n1, n2, n1 + n2


def _rpb_value(di: FloatArray, n1: FloatArray, n2: FloatArray) -> tuple[FloatArray, FloatArray]:
    mi = n1 + n2 - 2.0
    hi = mi / n1 + mi / n2
    return di / np.sqrt(di**2 + hi), hi


def _rpb(inputs: Inputs, options: EscalcOptions) -> Computed:
    di, n1, n2, ni = _d_parts(inputs)
    yi, hi = _rpb_value(di, n1, n2)

    def st() -> FloatArray:
        out: FloatArray = hi**2 / (hi + di**2) ** 3 * (1.0 / n1 + 1.0 / n2 + di**2 / (2.0 * ni))
        return out

    def cs() -> FloatArray:
        out: FloatArray = (1.0 - yi**2) ** 2 * (
            ni * yi**2 / (4.0 * n1 * n2) + (2.0 - 3.0 * yi**2) / (2.0 * ni)
        )
        return out

    vi = by_vtype(options, yi.shape[0], {"ST": st, "LS": st, "CS": cs})
    return Computed(yi, vi, ni=ni)


def _rbis(inputs: Inputs, options: EscalcOptions) -> Computed:
    di, n1, n2, ni = _d_parts(inputs)
    rpb, _ = _rpb_value(di, n1, n2)
    p1, p2 = n1 / ni, n2 / ni
    zi = -special.ndtri(p1)  # qnorm(p1, lower.tail = FALSE)
    fzi = np.exp(-0.5 * zi**2) / math.sqrt(2.0 * math.pi)
    yi = np.sqrt(p1 * p2) / fzi * rpb
    yt = np.where(np.abs(yi) > 1, np.sign(yi), yi)
    vi = (
        1.0 / (ni - 1.0)
        * (p1 * p2 / fzi**2 - (1.5 + (1.0 - p1 * zi / fzi) * (1.0 + p2 * zi / fzi)) * yt**2 + yt**4)
    )
    return Computed(yi, vi, ni=ni)


def _d2or(factor: float) -> ComputeFn:
    def compute(inputs: Inputs, options: EscalcOptions) -> Computed:
        di, n1, n2, ni = _d_parts(inputs)
        yi = factor * di
        vi = factor**2 * (1.0 / n1 + 1.0 / n2 + di**2 / (2.0 * ni))
        return Computed(yi, vi, ni=ni)

    return compute


_LOGISTIC = math.pi / math.sqrt(3.0)


def _spec(
    name: str,
    description: str,
    compute: ComputeFn,
    *,
    inputs: tuple[str, ...] = _ALL,
    from_d: bool = False,
    vtypes: tuple[str, ...] = ("LS",),
    log_ratio: str = "",
    natural_name: str = "",
    axis_label: str = "",
    bounded: bool = False,
    correction: str | None = None,
    formula: str = "",
    variance: str = "",
    reference: str = "",
) -> MeasureSpec:
    """A spec of this family; ``log_ratio`` names the ratio of a log-ratio measure."""
    extra = {}
    if log_ratio:
        extra = dict(
            back_transform=tf.exp,
            transform=tf.log,
            natural_name=log_ratio,
            analysis_name=f"log {log_ratio}",
            axis_label=f"{axis_label} (log scale)",
            analysis_label=f"Log {axis_label[0].lower()}{axis_label[1:]}",
            axis="log",
            back_transform_label=r":math:`e^y`",
        )
    else:
        extra = dict(
            natural_name=natural_name or name,
            analysis_name=natural_name or name,
            axis_label=axis_label,
            analysis_label=axis_label,
        )
    return register(
        MeasureSpec(
            name=name,
            family=_FAMILY,
            description=description,
            inputs=inputs,
            alternatives=_STATS if from_d else (),
            compute=compute,
            check=_check(name),
            prepare=_prepare(inputs, from_d),
            vtypes=vtypes,
            bounded=bounded,
            correction=correction,  # type: ignore[arg-type]
            formula=formula,
            variance=variance,
            reference=reference,
            **extra,  # type: ignore[arg-type]
        )
    )


_D = r"d_i = (\bar x_{1i} - \bar x_{2i})/s_{pi}"
_SP = r"s_{pi}^2 = \frac{(n_{1i}-1)s_{1i}^2 + (n_{2i}-1)s_{2i}^2}{n_{1i}+n_{2i}-2}"

_spec("MD", "raw mean difference", _md, vtypes=("LS", "UB", "HO"),
      axis_label="Mean difference",
      formula=r":math:`\bar x_{1i} - \bar x_{2i}`",
      variance=r":math:`s_{1i}^2/n_{1i} + s_{2i}^2/n_{2i}` "
      r"(``HO``: :math:`s_{pi}^2(1/n_{1i}+1/n_{2i})`)",
      reference="Borenstein et al. (2009, ch. 4)")
_spec("SMD", "standardised mean difference (Hedges' g)", _smd, from_d=True,
      vtypes=("LS", "UB", "LS2", "AV"), natural_name="g",
      axis_label="Standardized mean difference (Hedges' g)",
      formula=rf":math:`c(m_i)\,d_i`, :math:`{_D}`, :math:`{_SP}`, "
      r":math:`c(m) = \Gamma(\frac m2)/(\sqrt{\frac m2}\Gamma(\frac{m-1}2))`, "
      r":math:`m_i = n_{1i}+n_{2i}-2`",
      variance=r":math:`1/n_{1i} + 1/n_{2i} + y_i^2/(2(n_{1i}+n_{2i}))`",
      reference="Hedges (1981); Hedges & Olkin (1985)")
_spec("SMDH", "standardised mean difference with heteroscedastic SDs", _smdh,
      vtypes=("LS", "LS2"), axis_label="Standardized mean difference (heteroscedastic)",
      formula=r":math:`c(m_i)(\bar x_{1i} - \bar x_{2i})/\sqrt{(s_{1i}^2 + s_{2i}^2)/2}`",
      variance=r":math:`c(m_i)^2\left[\frac{y_i^2(s_{1i}^4/(n_{1i}-1) + s_{2i}^4/(n_{2i}-1))}"
      r"{2(s_{1i}^2+s_{2i}^2)^2} + "
      r"\frac{s_{1i}^2/(n_{1i}-1) + s_{2i}^2/(n_{2i}-1)}{(s_{1i}^2+s_{2i}^2)/2}\right]`",
      reference="Bonett (2009)")
_spec("SMD1", "mean difference standardised by the SD of group 2 (Glass's delta)", _smd1,
      inputs=("m1i", "m2i", "sd2i", "n1i", "n2i"), vtypes=("LS", "UB", "LS2", "AV"),
      axis_label="Standardized mean difference (SD of group 2)",
      formula=r":math:`c(n_{2i}-1)(\bar x_{1i} - \bar x_{2i})/s_{2i}`",
      variance=r":math:`1/n_{1i} + 1/n_{2i} + y_i^2/(2n_{2i})`",
      reference="Glass (1976); Hedges (1981)")
_spec("SMD1H", "mean difference standardised by the SD of group 2, heteroscedastic", _smd1h,
      axis_label="Standardized mean difference (SD of group 2)",
      formula=r":math:`c(n_{2i}-1)(\bar x_{1i} - \bar x_{2i})/s_{2i}`",
      variance=r":math:`(s_{1i}^2/s_{2i}^2)/n_{1i} + 1/n_{2i} + y_i^2/(2n_{2i})`",
      reference="Bonett (2008)")
_spec("ROM", "log ratio of means (response ratio)", _rom, vtypes=("LS", "HO", "AV", "AVHO"),
      log_ratio="ROM", axis_label="Ratio of means",
      formula=r":math:`\log(\bar x_{1i}/\bar x_{2i})`",
      variance=r":math:`s_{1i}^2/(n_{1i}\bar x_{1i}^2) + s_{2i}^2/(n_{2i}\bar x_{2i}^2)`",
      reference="Hedges, Gurevitch & Curtis (1999)")
_spec("CVR", "log ratio of coefficients of variation", _cvr, log_ratio="CVR",
      axis_label="Ratio of coefficients of variation",
      formula=r":math:`\log\frac{s_{1i}/\bar x_{1i}}{s_{2i}/\bar x_{2i}} + \frac{1}{2(n_{1i}-1)} "
      r"- \frac{1}{2(n_{2i}-1)}`",
      variance=r":math:`\sum_{g=1,2} \left[\frac{1}{2(n_{gi}-1)} "
      r"+ \frac{s_{gi}^2}{n_{gi}\bar x_{gi}^2}\right]`",
      reference="Nakagawa et al. (2015)")
_spec("VR", "log variability ratio (ratio of SDs)", _vr, inputs=("sd1i", "sd2i", "n1i", "n2i"),
      log_ratio="VR", axis_label="Variability ratio",
      formula=r":math:`\log(s_{1i}/s_{2i}) + \frac{1}{2(n_{1i}-1)} - \frac{1}{2(n_{2i}-1)}`",
      variance=r":math:`\frac{1}{2(n_{1i}-1)} + \frac{1}{2(n_{2i}-1)}`",
      reference="Nakagawa et al. (2015)")
_spec("RPB", "point-biserial correlation from a standardised difference", _rpb, from_d=True,
      vtypes=("LS", "ST", "CS"), natural_name="r", axis_label="Point-biserial correlation",
      bounded=True, correction="r",
      formula=r":math:`d_i/\sqrt{d_i^2 + h_i}`, :math:`h_i = m_i/n_{1i} + m_i/n_{2i}`",
      variance=r":math:`\frac{h_i^2}{(h_i + d_i^2)^3}"
      r"\left(\frac1{n_{1i}} + \frac1{n_{2i}} + \frac{d_i^2}{2n_i}\right)`"
      r" (``CS``: Tate, 1954)",
      reference="Jacobs & Viechtbauer (2017)")
_spec("RBIS", "biserial correlation from a standardised difference", _rbis, from_d=True,
      natural_name="r", axis_label="Biserial correlation", bounded=True, correction="r",
      formula=r":math:`\frac{\sqrt{p_{1i}p_{2i}}}{\phi(z_i)} r_{pb,i}`, "
      r":math:`z_i = \Phi^{-1}(1 - p_{1i})`",
      variance=r":math:`\frac{1}{n_i-1}\left[\frac{p_1p_2}{\phi^2} "
      r"- \left(\frac32 + (1 - \frac{p_1 z}{\phi})"
      r"(1 + \frac{p_2 z}{\phi})\right)y^2 + y^4\right]`",
      reference="Jacobs & Viechtbauer (2017); Soper (1914)")
_spec("D2OR", "log odds ratio from a standardised difference (logistic)", _d2or(_LOGISTIC),
      from_d=True, log_ratio="OR", axis_label="Odds ratio",
      formula=r":math:`\pi d_i/\sqrt 3`",
      variance=r":math:`\frac{\pi^2}{3}(1/n_{1i} + 1/n_{2i} + d_i^2/(2n_i))`",
      reference="Hasselblad & Hedges (1995); Borenstein et al. (2009, ch. 7)")
_spec("D2ORL", "log odds ratio from a standardised difference (logistic)", _d2or(_LOGISTIC),
      from_d=True, log_ratio="OR", axis_label="Odds ratio",
      formula=r":math:`\pi d_i/\sqrt 3`",
      variance=r":math:`\frac{\pi^2}{3}(1/n_{1i} + 1/n_{2i} + d_i^2/(2n_i))`",
      reference="Hasselblad & Hedges (1995); Borenstein et al. (2009, ch. 7)")
_spec("D2ORN", "log odds ratio from a standardised difference (normal, Cox)", _d2or(1.65),
      from_d=True, log_ratio="OR", axis_label="Odds ratio",
      formula=r":math:`1.65\,d_i`",
      variance=r":math:`1.65^2(1/n_{1i} + 1/n_{2i} + d_i^2/(2n_i))`",
      reference="Cox (1970); Sánchez-Meca et al. (2003)")
