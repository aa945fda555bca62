"""Vectorised effect sizes, exactly as metafor's ``escalc`` computes them by default.

Every public function here is pure: float64 arrays in, float64 arrays out, no loop
over rows. The formulas are those of ``metafor::escalc`` (version 3.8) with its
default arguments ``add = 1/2``, ``to = "only0"``, ``drop00 = FALSE`` and
``vtype = "LS"`` (Viechtbauer, 2010).

There are two layers:

* ``zcor``, ``cor``, ``ucor``, ``smd``, ``md``, ``smdh``, ``rom``, ``log_or``,
  ``log_rr`` and ``rd`` evaluate a formula and assume valid input;
* ``from_correlation``, ``from_means`` and ``from_counts`` validate the input,
  raise :class:`~alliance_meta.exceptions.InvalidStudyError` naming the first
  offending study and field, then dispatch to the formula.

``check_correlation``, ``check_means`` and ``check_counts`` return the problems found
(each a field, a message and a boolean mask of bad rows) without raising, and
:func:`bad_rows` combines them into one mask.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software*, 36(3), 1-48. https://doi.org/10.18637/jss.v036.i03
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special

from alliance_meta._types import FloatArray
from alliance_meta.exceptions import InvalidStudyError

__all__ = [
    "CORRELATION_MEASURES",
    "COUNT_MEASURES",
    "MEAN_MEASURES",
    "EscalcResult",
    "Problem",
    "bad_rows",
    "check_correlation",
    "check_counts",
    "check_means",
    "cor",
    "from_correlation",
    "from_counts",
    "from_means",
    "hedges_correction",
    "log_or",
    "log_rr",
    "md",
    "raise_problems",
    "rd",
    "rom",
    "smd",
    "smdh",
    "ucor",
    "zcor",
]

CorrelationMeasure = Literal["ZCOR", "COR", "UCOR"]
MeanMeasure = Literal["SMD", "MD", "SMDH", "ROM"]
CountMeasure = Literal["OR", "RR", "RD"]

CORRELATION_MEASURES: tuple[str, ...] = ("ZCOR", "COR", "UCOR")
MEAN_MEASURES: tuple[str, ...] = ("SMD", "MD", "SMDH", "ROM")
COUNT_MEASURES: tuple[str, ...] = ("OR", "RR", "RD")

#: metafor's default continuity correction (``add = 1/2``).
ADD = 0.5

#: Stopping rule of the hypergeometric series used by UCOR.
_SERIES_RTOL = 1e-17
_SERIES_MAX_TERMS = 100_000

#: How many offending labels an error message lists before summarising.
_MAX_LABELS_SHOWN = 5

BoolArray = npt.NDArray[np.bool_]


class EscalcResult(NamedTuple):
    """Effect sizes of many studies.

    Attributes
    ----------
    yi : ndarray of float64
        The effect sizes.
    vi : ndarray of float64
        Their sampling variances.
    corrected : ndarray of bool
        Whether 1/2 was added to every cell of the study's 2×2 table (only ever
        true for ``OR``, ``RR`` and ``RD``).
    """

    yi: FloatArray
    vi: FloatArray
    corrected: BoolArray


class Problem(NamedTuple):
    """One kind of invalid input: the field, what is wrong, and the rows affected."""

    field: str
    message: str
    mask: BoolArray


# --------------------------------------------------------------------------- helpers


def _as_float(x: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    return np.atleast_1d(arr)


def _broadcast(*arrays: npt.ArrayLike) -> list[FloatArray]:
    floats = [_as_float(a) for a in arrays]
    try:
        out = np.broadcast_arrays(*floats)
    except ValueError as exc:
        shapes = ", ".join(str(a.shape) for a in floats)
        raise InvalidStudyError(f"input arrays have incompatible shapes {shapes}") from exc
    for a in out:
        if a.ndim != 1:
            raise InvalidStudyError(f"inputs must be one-dimensional, got shape {a.shape}")
    return [np.array(a, dtype=np.float64) for a in out]


def _row_labels(labels: Sequence[str | None] | None, idx: npt.NDArray[np.intp]) -> list[str | None]:
    if labels is None:
        return [f"row {int(i)}" for i in idx]
    return [None if labels[int(i)] is None else str(labels[int(i)]) for i in idx]


def raise_problems(
    problems: Sequence[Problem],
    labels: Sequence[str | None] | None = None,
    fields: Mapping[str, str] | None = None,
) -> None:
    """Raise for the first problem that affects any row.

    Parameters
    ----------
    problems : sequence of Problem
        Checked in order; the first with a true mask raises.
    labels : sequence of str or None, optional
        Study labels, one per row. Without them rows are named ``"row <i>"`` (0-based);
        a ``None`` label leaves the study unnamed.
    fields : mapping of str to str, optional
        Names to report instead of the internal field names (e.g. the column
        ``"ri"`` of a data frame for the field ``"r"``).

    Raises
    ------
    InvalidStudyError
        Naming the first offending study and the field, and listing up to five
        further offending studies in the message.
    """
    for prob in problems:
        idx = np.flatnonzero(prob.mask)
        if idx.size == 0:
            continue
        shown = _row_labels(labels, idx[:_MAX_LABELS_SHOWN])
        message = prob.message
        if idx.size > 1:
            others = ", ".join(repr(s) for s in shown[1:])
            more = idx.size - len(shown)
            extra = f" and {more} more" if more > 0 else ""
            message = f"{message} (also in {others}{extra})"
        field = prob.field
        if fields is not None and field in fields and fields[field] != field:
            message = f"{field}: {message}"
            field = fields[field]
        raise InvalidStudyError(message, study=shown[0], field=field)


def bad_rows(problems: Sequence[Problem], k: int) -> BoolArray:
    """Rows flagged by any problem (a boolean mask of length ``k``)."""
    mask = np.zeros(k, dtype=np.bool_)
    for prob in problems:
        mask |= prob.mask
    return mask


def _missing(fields: dict[str, FloatArray]) -> list[Problem]:
    return [
        Problem(name, "missing or infinite value", ~np.isfinite(arr))
        for name, arr in fields.items()
    ]


def _finite_or(arr: FloatArray, fill: float) -> FloatArray:
    """``arr`` with non-finite entries replaced, so comparisons raise no warnings."""
    return np.where(np.isfinite(arr), arr, fill)


def _check_output(yi: FloatArray, vi: FloatArray, labels: Sequence[str | None] | None) -> None:
    raise_problems(
        [
            Problem("value", "the effect size is not finite", ~np.isfinite(yi)),
            Problem(
                "variance",
                "the sampling variance is not a finite positive number",
                ~(np.isfinite(vi) & (vi > 0)),
            ),
        ],
        labels,
    )


# ------------------------------------------------------------------ correlations


def zcor(ri: FloatArray, ni: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Fisher's r-to-z transformed correlation (metafor ``measure="ZCOR"``).

    Notes
    -----
    .. math:: y_i = \\tfrac12 \\log\\frac{1 + r_i}{1 - r_i}, \\qquad v_i = \\frac{1}{n_i - 3}

    Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation
    deduced from a small sample. *Metron*, 1, 3-32.
    """
    yi = 0.5 * np.log((1.0 + ri) / (1.0 - ri))
    vi = 1.0 / (ni - 3.0)
    return yi, vi


def cor(ri: FloatArray, ni: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Raw correlation (metafor ``measure="COR"``, ``vtype="LS"``).

    Notes
    -----
    .. math:: y_i = r_i, \\qquad v_i = \\frac{(1 - r_i^2)^2}{n_i - 1}

    Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009).
    *Introduction to Meta-Analysis*. Wiley, ch. 6.
    """
    yi = np.array(ri, dtype=np.float64)
    vi = (1.0 - yi**2) ** 2 / (ni - 1.0)
    return yi, vi


def ucor(ri: FloatArray, ni: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Approximately unbiased correlation (metafor ``measure="UCOR"``, ``vtype="LS"``).

    Notes
    -----
    .. math::
        y_i = r_i \\, {}_2F_1\\!\\left(\\tfrac12, \\tfrac12; \\tfrac{n_i - 2}{2}; 1 - r_i^2\\right),
        \\qquad v_i = \\frac{(1 - y_i^2)^2}{n_i - 1}

    Defined for :math:`n_i > 4`.

    Olkin, I., & Pratt, J. W. (1958). Unbiased estimation of certain correlation
    coefficients. *Annals of Mathematical Statistics*, 29(1), 201-211.
    """
    yi = ri * _hyp2f1_half_half((ni - 2.0) / 2.0, 1.0 - ri**2)
    vi = (1.0 - yi**2) ** 2 / (ni - 1.0)
    return yi, vi


def _hyp2f1_half_half(c: FloatArray, x: FloatArray) -> FloatArray:
    r""":math:`{}_2F_1(1/2, 1/2; c; x)` for :math:`c > 1`, :math:`0 \le x \le 1`.

    :func:`scipy.special.hyp2f1` is accurate here except that it returns NaN for
    large ``c`` (n of a few hundred and up) with ``x`` near 1. There the Gauss
    series is summed instead, vectorised over rows; it converges fast because its
    terms shrink roughly like :math:`k!/c^k` at first and like :math:`k^{-c}` later.
    """
    out = np.asarray(special.hyp2f1(0.5, 0.5, c, x), dtype=np.float64)
    bad = ~np.isfinite(out)
    if np.any(bad):
        cb, xb = c[bad], x[bad]
        term = np.ones_like(cb)
        total = np.ones_like(cb)
        for k in range(_SERIES_MAX_TERMS):
            term = term * (0.5 + k) ** 2 / ((cb + k) * (k + 1.0)) * xb
            total = total + term
            if np.all(term <= _SERIES_RTOL * total):
                break
        out[bad] = total
    return out


def check_correlation(
    ri: npt.ArrayLike, ni: npt.ArrayLike, measure: CorrelationMeasure = "ZCOR"
) -> list[Problem]:
    """Problems with correlation input, without raising (see :func:`from_correlation`)."""
    if measure not in CORRELATION_MEASURES:
        raise InvalidStudyError(
            f"unknown correlation measure {measure!r}; expected one of {CORRELATION_MEASURES}",
            field="measure",
        )
    r, n = _broadcast(ri, ni)
    problems = _missing({"r": r, "n": n})
    rf = _finite_or(r, 0.0)
    nf = _finite_or(n, 1e9)
    problems.append(Problem("r", "a correlation must lie in [-1, 1]", np.abs(rf) > 1.0))
    if measure == "ZCOR":
        problems.append(Problem("r", "r = ±1 has an infinite Fisher z (ZCOR)", np.abs(rf) == 1.0))
        problems.append(Problem("n", "ZCOR needs n > 3 (its variance is 1/(n − 3))", nf <= 3))
    else:
        problems.append(
            Problem("r", f"r = ±1 has a zero sampling variance ({measure})", np.abs(rf) == 1.0)
        )
        if measure == "COR":
            # metafor's escalc gives no sampling variance (NA) for COR when n <= 3
            problems.append(
                Problem("n", "COR needs n > 3 (metafor gives no variance for n <= 3)", nf <= 3)
            )
        else:
            problems.append(Problem("n", "UCOR needs n > 4", nf <= 4))
    return problems


def from_correlation(
    ri: npt.ArrayLike,
    ni: npt.ArrayLike,
    measure: CorrelationMeasure = "ZCOR",
    labels: Sequence[str | None] | None = None,
    fields: Mapping[str, str] | None = None,
) -> EscalcResult:
    """Validate correlations and sample sizes, then compute ``measure``.

    Parameters
    ----------
    ri, ni : array_like
        Correlations and sample sizes (broadcast together, one-dimensional).
    measure : {"ZCOR", "COR", "UCOR"}
        See :func:`zcor`, :func:`cor` and :func:`ucor`.
    labels : sequence of str or None, optional
        Study labels used in error messages.
    fields : mapping of str to str, optional
        Names to report for the input fields in error messages.

    Returns
    -------
    EscalcResult

    Raises
    ------
    InvalidStudyError
        For a missing value, ``|r| > 1``, ``r = ±1`` or too small an ``n``.
    """
    problems = check_correlation(ri, ni, measure)
    raise_problems(problems, labels, fields)
    r, n = _broadcast(ri, ni)
    func = {"ZCOR": zcor, "COR": cor, "UCOR": ucor}[measure]
    yi, vi = func(r, n)
    _check_output(yi, vi, labels)
    return EscalcResult(yi, vi, np.zeros(yi.shape, dtype=np.bool_))


# ------------------------------------------------------------------------- means


def hedges_correction(mi: FloatArray) -> FloatArray:
    """Exact small-sample correction factor of Hedges' g.

    Notes
    -----
    .. math:: c(m) = \\frac{\\Gamma(m/2)}{\\sqrt{m/2}\\,\\Gamma((m - 1)/2)}

    evaluated on the log scale with :func:`scipy.special.gammaln`, as metafor does,
    with :math:`m = n_1 + n_2 - 2`; defined for :math:`m > 1`.

    Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect size
    and related estimators. *Journal of Educational Statistics*, 6(2), 107-128.
    """
    out = np.exp(
        special.gammaln(mi / 2.0) - np.log(np.sqrt(mi / 2.0)) - special.gammaln((mi - 1.0) / 2.0)
    )
    return np.asarray(out, dtype=np.float64)


def _pooled_sd(sd1: FloatArray, n1: FloatArray, sd2: FloatArray, n2: FloatArray) -> FloatArray:
    mi = n1 + n2 - 2.0
    out: FloatArray = np.sqrt(((n1 - 1.0) * sd1**2 + (n2 - 1.0) * sd2**2) / mi)
    return out


def smd(
    m1: FloatArray, sd1: FloatArray, n1: FloatArray, m2: FloatArray, sd2: FloatArray, n2: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Standardised mean difference, Hedges' g (metafor ``measure="SMD"``, ``vtype="LS"``).

    Notes
    -----
    With the pooled SD :math:`s_p = \\sqrt{((n_1-1)s_1^2 + (n_2-1)s_2^2)/(n_1+n_2-2)}`
    and the exact correction :math:`c(m)` of :func:`hedges_correction`,

    .. math::
        y_i = c(n_1 + n_2 - 2)\\,\\frac{\\bar x_1 - \\bar x_2}{s_p}, \\qquad
        v_i = \\frac{1}{n_1} + \\frac{1}{n_2} + \\frac{y_i^2}{2(n_1 + n_2)}

    Hedges, L. V. (1981). *Journal of Educational Statistics*, 6(2), 107-128.
    Hedges, L. V., & Olkin, I. (1985). *Statistical Methods for Meta-Analysis*.
    Academic Press.
    """
    mi = n1 + n2 - 2.0
    di = (m1 - m2) / _pooled_sd(sd1, n1, sd2, n2)
    yi = hedges_correction(mi) * di
    vi = 1.0 / n1 + 1.0 / n2 + yi**2 / (2.0 * (n1 + n2))
    return yi, vi


def md(
    m1: FloatArray, sd1: FloatArray, n1: FloatArray, m2: FloatArray, sd2: FloatArray, n2: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Raw mean difference (metafor ``measure="MD"``, heteroscedastic default).

    Notes
    -----
    .. math:: y_i = \\bar x_1 - \\bar x_2, \\qquad v_i = \\frac{s_1^2}{n_1} + \\frac{s_2^2}{n_2}

    Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009).
    *Introduction to Meta-Analysis*. Wiley, ch. 4.
    """
    yi = m1 - m2
    vi = sd1**2 / n1 + sd2**2 / n2
    return yi, vi


def smdh(
    m1: FloatArray, sd1: FloatArray, n1: FloatArray, m2: FloatArray, sd2: FloatArray, n2: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """SMD with heteroscedastic SDs (metafor ``measure="SMDH"``, ``vtype="LS"``).

    Notes
    -----
    With :math:`s_i = \\sqrt{(s_1^2 + s_2^2)/2}` and :math:`c = c(n_1 + n_2 - 2)`,

    .. math::
        y_i = c\\,\\frac{\\bar x_1 - \\bar x_2}{s_i}, \\qquad
        v_i = c^2 \\left[\\frac{y_i^2 \\left(\\frac{s_1^4}{n_1 - 1} +
        \\frac{s_2^4}{n_2 - 1}\\right)}{2 (s_1^2 + s_2^2)^2} +
        \\frac{\\frac{s_1^2}{n_1 - 1} + \\frac{s_2^2}{n_2 - 1}}{(s_1^2 + s_2^2)/2}\\right]

    Bonett, D. G. (2009). Meta-analytic interval estimation for standardized and
    unstandardized mean differences. *Psychological Methods*, 14(3), 225-238.
    """
    cmi = hedges_correction(n1 + n2 - 2.0)
    s2 = sd1**2 + sd2**2
    yi = cmi * (m1 - m2) / np.sqrt(s2 / 2.0)
    vi = yi**2 * (sd1**4 / (n1 - 1.0) + sd2**4 / (n2 - 1.0)) / (2.0 * s2**2) + (
        sd1**2 / (n1 - 1.0) + sd2**2 / (n2 - 1.0)
    ) / (s2 / 2.0)
    return yi, cmi**2 * vi


def rom(
    m1: FloatArray, sd1: FloatArray, n1: FloatArray, m2: FloatArray, sd2: FloatArray, n2: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Log ratio of means (metafor ``measure="ROM"``, ``vtype="LS"``).

    Both means must have the same sign (as in metafor, two negative means give the
    log of their positive ratio).

    Notes
    -----
    .. math::
        y_i = \\log\\frac{\\bar x_1}{\\bar x_2}, \\qquad
        v_i = \\frac{s_1^2}{n_1 \\bar x_1^2} + \\frac{s_2^2}{n_2 \\bar x_2^2}

    Hedges, L. V., Gurevitch, J., & Curtis, P. S. (1999). The meta-analysis of
    response ratios in experimental ecology. *Ecology*, 80(4), 1150-1156.
    """
    yi = np.log(m1 / m2)
    vi = sd1**2 / (n1 * m1**2) + sd2**2 / (n2 * m2**2)
    return yi, vi


def check_means(
    m1: npt.ArrayLike,
    sd1: npt.ArrayLike,
    n1: npt.ArrayLike,
    m2: npt.ArrayLike,
    sd2: npt.ArrayLike,
    n2: npt.ArrayLike,
    measure: MeanMeasure = "SMD",
) -> list[Problem]:
    """Problems with two-group means input, without raising (see :func:`from_means`)."""
    if measure not in MEAN_MEASURES:
        raise InvalidStudyError(
            f"unknown mean measure {measure!r}; expected one of {MEAN_MEASURES}", field="measure"
        )
    a_m1, a_sd1, a_n1, a_m2, a_sd2, a_n2 = _broadcast(m1, sd1, n1, m2, sd2, n2)
    problems = _missing(
        {"m1": a_m1, "sd1": a_sd1, "n1": a_n1, "m2": a_m2, "sd2": a_sd2, "n2": a_n2}
    )
    for name, sd in (("sd1", a_sd1), ("sd2", a_sd2)):
        problems.append(Problem(name, "a standard deviation must be > 0", _finite_or(sd, 1.0) <= 0))
    n1f, n2f = _finite_or(a_n1, 1e9), _finite_or(a_n2, 1e9)
    for name, n in (("n1", n1f), ("n2", n2f)):
        problems.append(Problem(name, "a group size must be > 0", n <= 0))
    if measure in ("SMD", "SMDH"):
        problems.append(
            Problem(
                "n1",
                f"{measure} needs n1 + n2 > 3 (Hedges' correction needs n1 + n2 − 2 > 1)",
                (n1f > 0) & (n2f > 0) & (n1f + n2f <= 3),
            )
        )
    if measure == "SMDH":
        for name, n in (("n1", n1f), ("n2", n2f)):
            problems.append(Problem(name, "SMDH needs a group size > 1", (n > 0) & (n <= 1)))
    if measure == "ROM":
        # the log ratio needs a positive ratio: means of one sign, neither zero (metafor
        # computes log(m1/m2) for two negative means too)
        f1, f2 = _finite_or(a_m1, 1.0), _finite_or(a_m2, 1.0)
        for name, m in (("m1", f1), ("m2", f2)):
            problems.append(Problem(name, "ROM needs a non-zero mean", m == 0))
        problems.append(
            Problem("m2", "ROM needs means of the same sign (a positive ratio m1/m2)",
                    f1 * f2 < 0)
        )
    return problems


def from_means(
    m1: npt.ArrayLike,
    sd1: npt.ArrayLike,
    n1: npt.ArrayLike,
    m2: npt.ArrayLike,
    sd2: npt.ArrayLike,
    n2: npt.ArrayLike,
    measure: MeanMeasure = "SMD",
    labels: Sequence[str | None] | None = None,
    fields: Mapping[str, str] | None = None,
) -> EscalcResult:
    """Validate two-group means, SDs and sizes, then compute ``measure``.

    Parameters
    ----------
    m1, sd1, n1, m2, sd2, n2 : array_like
        Means, standard deviations and sizes of group 1 and group 2.
    measure : {"SMD", "MD", "SMDH", "ROM"}
        See :func:`smd`, :func:`md`, :func:`smdh` and :func:`rom`.
    labels : sequence of str or None, optional
        Study labels used in error messages.
    fields : mapping of str to str, optional
        Names to report for the input fields in error messages.

    Returns
    -------
    EscalcResult

    Raises
    ------
    InvalidStudyError
        For a missing value, ``sd <= 0``, ``n <= 0``, too small groups for the
        measure, or a zero mean or means of opposite signs for ``ROM``.
    """
    problems = check_means(m1, sd1, n1, m2, sd2, n2, measure)
    raise_problems(problems, labels, fields)
    arrays = _broadcast(m1, sd1, n1, m2, sd2, n2)
    func = {"SMD": smd, "MD": md, "SMDH": smdh, "ROM": rom}[measure]
    yi, vi = func(*arrays)
    _check_output(yi, vi, labels)
    return EscalcResult(yi, vi, np.zeros(yi.shape, dtype=np.bool_))


# ------------------------------------------------------------------------ counts


def _continuity(
    a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, BoolArray]:
    """metafor's default ``add = 1/2, to = "only0"``: add 1/2 to all four cells of
    every table that has a zero cell."""
    corrected = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    add = np.where(corrected, ADD, 0.0)
    return a + add, b + add, c + add, d + add, corrected


def log_or(
    a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Log odds ratio of (already corrected) cells (metafor ``measure="OR"``).

    Notes
    -----
    With :math:`p_1 = a/(a+b)` and :math:`p_2 = c/(c+d)`,

    .. math::
        y_i = \\log\\frac{p_1/(1-p_1)}{p_2/(1-p_2)}, \\qquad
        v_i = \\frac1a + \\frac1b + \\frac1c + \\frac1d

    Woolf, B. (1955). On estimating the relation between blood group and disease.
    *Annals of Human Genetics*, 19(4), 251-253.
    """
    p1 = a / (a + b)
    p2 = c / (c + d)
    yi = np.log(p1 / (1.0 - p1)) - np.log(p2 / (1.0 - p2))
    vi = 1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d
    return yi, vi


def log_rr(
    a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Log risk ratio of (already corrected) cells (metafor ``measure="RR"``).

    Notes
    -----
    With :math:`n_1 = a + b` and :math:`n_2 = c + d`,

    .. math::
        y_i = \\log\\frac{a/n_1}{c/n_2}, \\qquad
        v_i = \\frac1a - \\frac1{n_1} + \\frac1c - \\frac1{n_2}

    Katz, D., Baptista, J., Azen, S. P., & Pike, M. C. (1978). Obtaining confidence
    intervals for the risk ratio in cohort studies. *Biometrics*, 34(3), 469-474.
    """
    n1 = a + b
    n2 = c + d
    yi = np.log(a / n1) - np.log(c / n2)
    vi = 1.0 / a - 1.0 / n1 + 1.0 / c - 1.0 / n2
    return yi, vi


def rd(a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Risk difference of (already corrected) cells (metafor ``measure="RD"``, ``vtype="LS"``).

    Notes
    -----
    .. math::
        y_i = p_1 - p_2, \\qquad
        v_i = \\frac{p_1(1-p_1)}{n_1} + \\frac{p_2(1-p_2)}{n_2}

    metafor 3.8 applies the same default correction (1/2 added to all cells of a
    table with a zero cell) to RD as to OR and RR, for both :math:`y_i` and
    :math:`v_i`; so does this function's caller :func:`from_counts`.

    Fleiss, J. L., & Berlin, J. A. (2009). Effect sizes for dichotomous data. In
    H. Cooper, L. V. Hedges, & J. C. Valentine (Eds.), *The Handbook of Research
    Synthesis and Meta-Analysis* (2nd ed., pp. 237-253). Russell Sage Foundation.
    """
    n1 = a + b
    n2 = c + d
    p1 = a / n1
    p2 = c / n2
    yi = p1 - p2
    vi = p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2
    return yi, vi


def check_counts(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    c: npt.ArrayLike,
    d: npt.ArrayLike,
    measure: CountMeasure = "OR",
) -> list[Problem]:
    """Problems with 2×2 table input, without raising (see :func:`from_counts`)."""
    if measure not in COUNT_MEASURES:
        raise InvalidStudyError(
            f"unknown count measure {measure!r}; expected one of {COUNT_MEASURES}", field="measure"
        )
    cells = dict(zip("abcd", _broadcast(a, b, c, d), strict=True))
    problems = _missing(cells)
    for name, x in cells.items():
        xf = _finite_or(x, 0.0)
        problems.append(Problem(name, "a count must not be negative", xf < 0))
        problems.append(Problem(name, "a count must be a whole number", xf != np.round(xf)))
    af, bf, cf, df = (_finite_or(x, 1.0) for x in cells.values())
    problems.append(Problem("a", "group 1 is empty (a + b = 0)", (af + bf) == 0))
    problems.append(Problem("c", "group 2 is empty (c + d = 0)", (cf + df) == 0))
    return problems


def from_counts(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    c: npt.ArrayLike,
    d: npt.ArrayLike,
    measure: CountMeasure = "OR",
    labels: Sequence[str | None] | None = None,
    fields: Mapping[str, str] | None = None,
) -> EscalcResult:
    """Validate 2×2 tables, apply metafor's default correction, then compute ``measure``.

    Parameters
    ----------
    a, b, c, d : array_like
        Events and non-events in group 1 (``a``, ``b``) and group 2 (``c``, ``d``).
    measure : {"OR", "RR", "RD"}
        See :func:`log_or`, :func:`log_rr` and :func:`rd`.
    labels : sequence of str or None, optional
        Study labels used in error messages.
    fields : mapping of str to str, optional
        Names to report for the input fields in error messages.

    Returns
    -------
    EscalcResult
        ``corrected`` marks the tables to which 1/2 was added.

    Raises
    ------
    InvalidStudyError
        For a missing, negative or non-integer count, or an empty group.

    Notes
    -----
    metafor's defaults ``add = 1/2, to = "only0", drop00 = FALSE`` add 1/2 to all
    four cells of a table with at least one zero cell, for OR, RR and RD alike, and
    keep tables with no events (or only events) in both groups.
    """
    problems = check_counts(a, b, c, d, measure)
    raise_problems(problems, labels, fields)
    aa, bb, cc, dd, corrected = _continuity(*_broadcast(a, b, c, d))
    func = {"OR": log_or, "RR": log_rr, "RD": rd}[measure]
    yi, vi = func(aa, bb, cc, dd)
    _check_output(yi, vi, labels)
    return EscalcResult(yi, vi, corrected)
