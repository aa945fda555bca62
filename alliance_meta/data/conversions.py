"""Conversions of effects reported in other forms, each with its source.

* test statistics to a standardised mean difference or a correlation (t, F(1, df),
  two-sided p; Borenstein et al., 2009, ch. 4 and 6; Lipsey & Wilson, 2001,
  Appendix B);
* a ratio with its confidence interval (or p-value) to the log ratio and its
  variance (metafor 4's ``conv.wald``; Altman & Bland, 2011);
* median with range and/or quartiles to mean and SD (metafor 4's ``conv.fivenum``:
  Luo et al., 2018, for the mean; Wan et al., 2014, and Shi et al., 2020, for the
  SD);
* r ↔ d ↔ log odds ratio with their variances (Borenstein et al., 2009, ch. 7).

:func:`alliance_meta.escalc` takes ``ti``, ``pi`` and ``fi`` directly for the SMD and
correlation measures; these functions are for one-off conversions and for values
that are not raw inputs of a measure.

References
----------
Altman, D. G., & Bland, J. M. (2011). How to obtain the P value from a confidence
interval. *BMJ*, 343, d2304.

Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009).
*Introduction to Meta-Analysis*. Wiley.

Lipsey, M. W., & Wilson, D. B. (2001). *Practical Meta-Analysis*. Sage.

Luo, D., Wan, X., Liu, J., & Tong, T. (2018). Optimally estimating the sample mean
from the sample size, median, mid-range, and/or mid-quartile range. *Statistical
Methods in Medical Research*, 27(6), 1785-1805.

Shi, J., Luo, D., Weng, H., Zeng, X.-T., Lin, L., Chu, H., & Tong, T. (2020).
Optimally estimating the sample standard deviation from the five-number summary.
*Research Synthesis Methods*, 11(5), 641-654.

Wan, X., Wang, W., Liu, J., & Tong, T. (2014). Estimating the sample mean and
standard deviation from the sample size, median, range and/or interquartile range.
*BMC Medical Research Methodology*, 14, 135.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import integrate, special

from alliance_meta.exceptions import InvalidStudyError

__all__ = [
    "Converted",
    "d_from_logor",
    "d_from_p",
    "d_from_r",
    "d_from_t",
    "expected_range",
    "fivenum",
    "logor_from_d",
    "r_from_d",
    "r_from_t",
    "t_from_p",
    "wald",
]

FloatArray = npt.NDArray[np.float64]


class Converted(NamedTuple):
    """An effect and its sampling variance."""

    yi: FloatArray
    vi: FloatArray


def _arr(x: npt.ArrayLike, field: str) -> FloatArray:
    try:
        return np.atleast_1d(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise InvalidStudyError("values must be numeric", field=field) from exc


def _check(mask: npt.ArrayLike, field: str, message: str) -> None:
    bad = np.flatnonzero(np.atleast_1d(np.asarray(mask, dtype=np.bool_)))
    if bad.size:
        raise InvalidStudyError(message, study=f"row {int(bad[0])}", field=field)


# ------------------------------------------------------------- test statistics


def t_from_p(p: npt.ArrayLike, df: npt.ArrayLike) -> FloatArray:
    """t statistic of a signed two-sided p-value with ``df`` degrees of freedom.

    :math:`t = \\operatorname{sgn}(p)\\, t_{df}^{-1}(1 - |p|/2)`; the sign of ``p``
    gives the direction (metafor's ``.convp2t``).
    """
    pa, dfa = np.broadcast_arrays(_arr(p, "pi"), _arr(df, "df"))
    _check(~np.isfinite(dfa) | (dfa < 1), "df", "a t statistic needs its degrees of freedom (>= 1)")
    _check(~np.isfinite(pa) | (np.abs(pa) > 1) | (pa == 0), "pi",
           "a two-sided p-value must lie in (0, 1] (its sign gives the direction)")
    out: FloatArray = -np.sign(pa) * special.stdtrit(dfa, np.abs(pa) / 2.0)
    return out


def d_from_t(t: npt.ArrayLike, n1: npt.ArrayLike, n2: npt.ArrayLike) -> Converted:
    """Standardised mean difference d of a two-sample t statistic.

    Notes
    -----
    .. math::
        d = t\\sqrt{\\frac{1}{n_1} + \\frac{1}{n_2}}, \\qquad
        v = \\frac{n_1 + n_2}{n_1 n_2} + \\frac{d^2}{2(n_1 + n_2)}

    (Borenstein et al., 2009, ch. 4; Lipsey & Wilson, 2001, Appendix B).
    ``escalc("SMD", ti=..., n1i=..., n2i=...)`` gives Hedges' g from the same d.
    """
    ta, a, b = np.broadcast_arrays(_arr(t, "ti"), _arr(n1, "n1i"), _arr(n2, "n2i"))
    _check(~np.isfinite(ta), "ti", "missing t statistic")
    for name, n in (("n1i", a), ("n2i", b)):
        _check(~np.isfinite(n) | (n <= 0), name, "a t statistic needs the group sizes (> 0)")
    d = ta * np.sqrt(1.0 / a + 1.0 / b)
    return Converted(d, (a + b) / (a * b) + d**2 / (2.0 * (a + b)))


def d_from_p(p: npt.ArrayLike, n1: npt.ArrayLike, n2: npt.ArrayLike) -> Converted:
    """d of a signed two-sided p-value of a two-sample t test: :func:`t_from_p` with
    :math:`n_1 + n_2 - 2` df, then :func:`d_from_t`."""
    a, b = _arr(n1, "n1i"), _arr(n2, "n2i")
    return d_from_t(t_from_p(p, a + b - 2.0), a, b)


def r_from_t(t: npt.ArrayLike, df: npt.ArrayLike) -> Converted:
    """Correlation of a t statistic with ``df`` degrees of freedom.

    Notes
    -----
    :math:`r = t/\\sqrt{t^2 + df}` (Lipsey & Wilson, 2001, Appendix B; for an
    F(1, df) statistic use :math:`t = \\sqrt F`), with the variance of r for
    :math:`n = df + 2`, :math:`v = (1 - r^2)^2/(n - 1)` (Borenstein et al., 2009,
    ch. 6).
    """
    ta, dfa = np.broadcast_arrays(_arr(t, "ti"), _arr(df, "df"))
    _check(~np.isfinite(dfa) | (dfa < 1), "df", "a t statistic needs its degrees of freedom (>= 1)")
    r = ta / np.sqrt(ta**2 + dfa)
    return Converted(r, (1.0 - r**2) ** 2 / (dfa + 1.0))


# ------------------------------------------------------------ r, d and log OR


def d_from_r(r: npt.ArrayLike, vr: npt.ArrayLike) -> Converted:
    """d of a correlation: :math:`d = 2r/\\sqrt{1 - r^2}`,
    :math:`v_d = 4v_r/(1 - r^2)^3` (Borenstein et al., 2009, ch. 7)."""
    ra, va = np.broadcast_arrays(_arr(r, "ri"), _arr(vr, "vi"))
    _check(np.abs(ra) >= 1, "ri", "a correlation must lie in (-1, 1)")
    return Converted(2.0 * ra / np.sqrt(1.0 - ra**2), 4.0 * va / (1.0 - ra**2) ** 3)


def r_from_d(
    d: npt.ArrayLike, vd: npt.ArrayLike, n1: npt.ArrayLike | None = None,
    n2: npt.ArrayLike | None = None,
) -> Converted:
    """Correlation of a d: :math:`r = d/\\sqrt{d^2 + a}`,
    :math:`v_r = a^2 v_d/(d^2 + a)^3`, with :math:`a = (n_1 + n_2)^2/(n_1 n_2)`
    (4 for equal or unknown group sizes; Borenstein et al., 2009, ch. 7)."""
    da, va = np.broadcast_arrays(_arr(d, "di"), _arr(vd, "vi"))
    if n1 is None or n2 is None:
        a: FloatArray | float = 4.0
    else:
        b1, b2 = _arr(n1, "n1i"), _arr(n2, "n2i")
        a = (b1 + b2) ** 2 / (b1 * b2)
    return Converted(da / np.sqrt(da**2 + a), a**2 * va / (da**2 + a) ** 3)


def d_from_logor(logor: npt.ArrayLike, v: npt.ArrayLike) -> Converted:
    """d of a log odds ratio (logistic distribution): :math:`d = \\log\\mathrm{OR}
    \\sqrt3/\\pi`, :math:`v_d = 3v/\\pi^2` (Borenstein et al., 2009, ch. 7)."""
    la, va = np.broadcast_arrays(_arr(logor, "yi"), _arr(v, "vi"))
    return Converted(la * math.sqrt(3.0) / math.pi, 3.0 * va / math.pi**2)


def logor_from_d(d: npt.ArrayLike, vd: npt.ArrayLike) -> Converted:
    """Log odds ratio of a d: :math:`\\log\\mathrm{OR} = \\pi d/\\sqrt3`,
    :math:`v = \\pi^2 v_d/3` (Borenstein et al., 2009, ch. 7)."""
    da, va = np.broadcast_arrays(_arr(d, "di"), _arr(vd, "vi"))
    return Converted(da * math.pi / math.sqrt(3.0), math.pi**2 * va / 3.0)


# ------------------------------------------------------------------- wald


def wald(
    estimate: npt.ArrayLike,
    ci_lb: npt.ArrayLike | None = None,
    ci_ub: npt.ArrayLike | None = None,
    *,
    pval: npt.ArrayLike | None = None,
    level: float = 0.95,
    ratio: bool = True,
    crit: float | None = None,
) -> Converted:
    """An estimate and its confidence interval (or p-value) to an effect and variance.

    As metafor 4's ``conv.wald``: for a ratio (odds, risk or hazard ratio,
    ``ratio=True``) the estimate and bounds are logged first; then

    .. math:: v = \\left(\\frac{u - l}{2 z_{(1 + \\mathrm{level})/2}}\\right)^2

    or, from a two-sided p-value, :math:`v = (y/z_{1 - p/2})^2` (Altman & Bland,
    2011).  ``crit`` replaces the normal quantile (e.g. 1.96 as in many published
    calculations).
    """
    est = _arr(estimate, "estimate")
    z = crit if crit is not None else float(special.ndtri(0.5 + level / 2.0))
    if ratio:
        _check(~(est > 0), "estimate", "a ratio must be > 0")
    yi = np.log(est) if ratio else est
    if ci_lb is not None and ci_ub is not None:
        lb, ub = _arr(ci_lb, "ci_lb"), _arr(ci_ub, "ci_ub")
        if ratio:
            _check(~(lb > 0), "ci_lb", "the bounds of a ratio's interval must be > 0")
            lb, ub = np.log(lb), np.log(ub)
        _check(~(ub > lb), "ci_ub", "the upper bound must exceed the lower bound")
        return Converted(yi, ((ub - lb) / (2.0 * z)) ** 2)
    if pval is not None:
        p = _arr(pval, "pval")
        _check(~((p > 0) & (p <= 1)), "pval", "a two-sided p-value must lie in (0, 1]")
        zp = special.ndtri(1.0 - p / 2.0) if crit is None else crit
        return Converted(yi, (yi / zp) ** 2)
    raise InvalidStudyError("give ci_lb and ci_ub, or pval", field="ci_lb")


# ---------------------------------------------------------------- fivenum


def expected_range(n: npt.ArrayLike) -> FloatArray:
    """Expected range of n standard normal draws, :math:`\\xi(n) = E(X_{(n)} - X_{(1)})`,
    by numerical integration of :math:`\\int 1 - \\Phi(x)^n - (1 - \\Phi(x))^n\\,dx`
    (Wan et al., 2014, formula 7 and Table 1)."""
    out = []
    for ni in np.atleast_1d(np.asarray(n, dtype=np.float64)).tolist():
        value, _ = integrate.quad(
            lambda x, m=ni: 1.0 - special.ndtr(x) ** m - special.ndtr(-x) ** m,
            -np.inf, np.inf, epsabs=1e-13, epsrel=1e-13,
        )
        out.append(value)
    return np.asarray(out, dtype=np.float64)


def fivenum(
    n: npt.ArrayLike,
    median: npt.ArrayLike,
    *,
    min: npt.ArrayLike | None = None,
    max: npt.ArrayLike | None = None,
    q1: npt.ArrayLike | None = None,
    q3: npt.ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Mean and SD from the median with the range and/or the quartiles.

    metafor 4's ``conv.fivenum`` (its recommended methods, normal data, without the
    skewness test):

    * min, median, max: mean :math:`w(a+b)/2 + (1-w)m`, :math:`w = 4/(4 + n^{0.75})`
      (Luo et al., 2018, eq. 7); SD :math:`(b - a)/\\xi(n)` with
      :math:`\\xi(n) = 2\\Phi^{-1}((n - 0.375)/(n + 0.25))` (Wan et al., 2014, eq. 9);
    * q1, median, q3: mean :math:`w(q_1+q_3)/2 + (1-w)m`, :math:`w = 0.7 + 0.39/n`
      (Luo et al., 2018, eq. 11); SD :math:`(q_3 - q_1)/\\eta(n)`,
      :math:`\\eta(n) = 2\\Phi^{-1}((0.75n - 0.125)/(n + 0.25))` (Wan et al., 2014,
      eq. 16);
    * all five: mean with :math:`w_1 = 2.2/(2.2 + n^{0.75})`,
      :math:`w_2 = 0.7 - 0.72/n^{0.55}` (Luo et al., 2018, eq. 15); SD
      :math:`w(b-a)/\\xi(n) + (1-w)(q_3-q_1)/\\eta(n)`, :math:`w = 1/(1 + 0.07n^{0.6})`
      (Shi et al., 2020, eq. 10).

    Returns
    -------
    mean, sd : ndarray
        NaN for rows without a usable set of summaries.
    """
    nn, med = np.broadcast_arrays(_arr(n, "n"), _arr(median, "median"))
    k = nn.size

    def opt(x: npt.ArrayLike | None, name: str) -> FloatArray:
        return np.full(k, np.nan) if x is None else np.broadcast_to(_arr(x, name), (k,))

    lo, hi, a1, a3 = opt(min, "min"), opt(max, "max"), opt(q1, "q1"), opt(q3, "q3")
    _check(np.isfinite(nn) & (nn < 1), "n", "the sample size must be >= 1")
    for name, lower, upper in (("median", lo, med), ("q1", lo, a1), ("median", a1, med),
                               ("q3", med, a3), ("max", a3, hi), ("max", med, hi)):
        _check(np.isfinite(lower) & np.isfinite(upper) & (lower > upper), name,
               "min <= q1 <= median <= q3 <= max does not hold")
    have_r = np.isfinite(lo) & np.isfinite(hi)
    have_q = np.isfinite(a1) & np.isfinite(a3)
    xi = 2.0 * special.ndtri((nn - 0.375) / (nn + 0.25))
    eta = 2.0 * special.ndtri((0.75 * nn - 0.125) / (nn + 0.25))
    mean = np.full(k, np.nan)
    sd = np.full(k, np.nan)
    c1 = have_r & ~have_q
    w = 4.0 / (4.0 + nn**0.75)
    mean = np.where(c1, w * (lo + hi) / 2.0 + (1.0 - w) * med, mean)
    sd = np.where(c1, (hi - lo) / xi, sd)
    c2 = have_q & ~have_r
    w = 0.7 + 0.39 / nn
    mean = np.where(c2, w * (a1 + a3) / 2.0 + (1.0 - w) * med, mean)
    sd = np.where(c2, (a3 - a1) / eta, sd)
    c3 = have_r & have_q
    w1 = 2.2 / (2.2 + nn**0.75)
    w2 = 0.7 - 0.72 / nn**0.55
    mean = np.where(c3, w1 * (lo + hi) / 2.0 + w2 * (a1 + a3) / 2.0 + (1.0 - w1 - w2) * med, mean)
    ws = 1.0 / (1.0 + 0.07 * nn**0.6)
    sd = np.where(c3, ws * (hi - lo) / xi + (1.0 - ws) * (a3 - a1) / eta, sd)
    return mean, sd
