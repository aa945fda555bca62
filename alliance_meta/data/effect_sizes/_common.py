"""Pieces the family modules share: zero-cell handling, vtype dispatch, checks.

All functions are vectorised over rows (float64 arrays in, arrays out) and follow
metafor 3.8.1's ``escalc`` step for step, so that the same inputs give the same
floating-point operations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import special

from alliance_meta.data.measures import (
    BoolArray,
    EscalcOptions,
    FloatArray,
    Inputs,
    Problem,
)
from alliance_meta.exceptions import AllianceMetaError

__all__ = [
    "add_to_cells",
    "by_vtype",
    "cmi",
    "counts_problems",
    "drop_double_zero",
    "finite_or",
    "replmiss",
    "wmean",
]


def finite_or(arr: FloatArray, fill: float) -> FloatArray:
    """``arr`` with non-finite entries replaced (for comparisons that skip NaN)."""
    return np.where(np.isfinite(arr), arr, fill)


def replmiss(x: FloatArray | None, y: FloatArray | None) -> FloatArray | None:
    """metafor's ``replmiss``: ``x`` with its NaN entries taken from ``y``."""
    if y is None:
        return x
    if x is None:
        return y
    return np.where(np.isnan(x), y, x)


def cmi(mi: FloatArray) -> FloatArray:
    """Exact small-sample correction of Hedges' g (metafor's ``.cmicalc``).

    Notes
    -----
    .. math:: c(m) = \\frac{\\Gamma(m/2)}{\\sqrt{m/2}\\,\\Gamma((m - 1)/2)},

    on the log scale with :func:`scipy.special.gammaln`, NaN for :math:`m \\le 1`.

    Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect size
    and related estimators. *Journal of Educational Statistics*, 6(2), 107-128.
    """
    m = np.asarray(mi, dtype=np.float64)
    with np.errstate(all="ignore"):
        out = np.exp(
            special.gammaln(m / 2.0) - np.log(np.sqrt(m / 2.0)) - special.gammaln((m - 1.0) / 2.0)
        )
    return np.where(m <= 1.0, np.nan, out)


def wmean(x: FloatArray, w: FloatArray) -> float:
    """metafor's ``.wmean(x, w, na.rm = TRUE)``: ``sum(x w) / sum(w)`` over rows
    where both are present."""
    ok = ~(np.isnan(x) | np.isnan(w))
    return float(np.sum(x[ok] * w[ok]) / np.sum(w[ok]))


def by_vtype(
    options: EscalcOptions,
    k: int,
    variants: Mapping[str, Callable[[], FloatArray]],
) -> FloatArray:
    """The sampling variance under ``options.vtype`` (one or one per row).

    ``variants`` maps each vtype to a function computing the variance of all rows
    under it; only the vtypes in use are evaluated.  The driver has already checked
    that every vtype is one the measure accepts; aliases such as ``UB``/``LS`` for
    MD are several keys with one function.
    """
    vt = options.vtype
    if isinstance(vt, str):
        return np.asarray(variants[vt](), dtype=np.float64)
    out = np.full(k, np.nan)
    vts = np.asarray(vt)
    for v in dict.fromkeys(vt):
        rows = vts == v
        out[rows] = np.broadcast_to(variants[v](), (k,))[rows]
    return out


def add_to_cells(
    cells: Sequence[FloatArray],
    options: EscalcOptions,
    default_add: float,
    *,
    trigger: Sequence[FloatArray] | None = None,
) -> tuple[list[FloatArray], BoolArray]:
    """metafor's ``add``/``to`` handling of zero counts.

    Parameters
    ----------
    cells : sequence of arrays
        The counts that get ``add`` (all four cells of a table; ``xi`` and ``mi``
        of a proportion; ``xi`` of a rate).
    options : EscalcOptions
    default_add : float
        The measure's default ``add`` (used when ``options.add`` is None).
    trigger : sequence of arrays, optional
        The counts whose zeros trigger the addition (default: ``cells``).

    Returns
    -------
    cells : list of arrays
        The counts after the addition.
    corrected : ndarray of bool
        Rows that got ``add`` (all rows for ``to="all"``; none when ``add`` is 0).

    Notes
    -----
    ``to="all"`` adds to every row, ``"only0"`` to the rows with a zero in
    ``trigger``, ``"if0all"`` to every row if any row has such a zero, and
    ``"none"`` to no row (Viechtbauer, 2010, metafor's ``escalc``).
    """
    add = default_add if options.add is None else float(options.add)
    k = cells[0].shape[0]
    zero = np.zeros(k, dtype=np.bool_)
    for c in trigger if trigger is not None else cells:
        zero |= c == 0
    if options.to == "all":
        rows = np.ones(k, dtype=np.bool_)
    elif options.to == "only0":
        rows = zero
    elif options.to == "if0all":
        rows = np.full(k, bool(np.any(zero)))
    elif options.to == "none":
        rows = np.zeros(k, dtype=np.bool_)
    else:
        raise AllianceMetaError(
            f"unknown to={options.to!r}; expected 'only0', 'all', 'if0all' or 'none'"
        )
    amount = np.where(rows, add, 0.0)
    return [c + amount for c in cells], rows & (add != 0.0)


def drop_double_zero(
    options: EscalcOptions, pairs: Sequence[tuple[FloatArray, FloatArray]]
) -> BoolArray:
    """Rows that ``drop00=True`` sets aside: both counts of any pair are zero
    (no events in either group, or only events)."""
    k = pairs[0][0].shape[0]
    if not options.drop00:
        return np.zeros(k, dtype=np.bool_)
    out = np.zeros(k, dtype=np.bool_)
    for a, b in pairs:
        out |= (a == 0) & (b == 0)
    return out


def counts_problems(cells: Mapping[str, FloatArray]) -> list[Problem]:
    """Negative and non-whole counts."""
    problems = []
    for name, x in cells.items():
        xf = finite_or(x, 0.0)
        problems.append(Problem(name, "a count must not be negative", xf < 0))
        problems.append(Problem(name, "a count must be a whole number", xf != np.round(xf)))
    return problems


def positive(name: str, x: FloatArray, what: str) -> Problem:
    """``x`` must be > 0 (NaN passes: it is a missing value, handled elsewhere)."""
    return Problem(name, f"{what} must be > 0", finite_or(x, 1.0) <= 0)


def nonnegative(name: str, x: FloatArray, what: str) -> Problem:
    """``x`` must be >= 0."""
    return Problem(name, f"{what} must not be negative", finite_or(x, 0.0) < 0)


def mean_ratio_problems(inputs: Inputs, measure: str, kind: str) -> list[Problem]:
    """The means a ratio-of-means measure needs: for a log ratio (``kind="ratio"``:
    ROM, ROMC) two non-zero means of one sign, a positive ratio ``m1/m2`` (metafor
    computes ``log(m1/m2)`` for two negative means too); for a coefficient of
    variation (``kind="cv"``: CVR, CVRC) positive means."""
    if kind == "cv":
        return [positive(name, inputs[name], f"{measure} needs a mean that")
                for name in ("m1i", "m2i")]
    f1, f2 = finite_or(inputs["m1i"], 1.0), finite_or(inputs["m2i"], 1.0)
    problems = [Problem(name, f"{measure} needs a non-zero mean", m == 0)
                for name, m in (("m1i", f1), ("m2i", f2))]
    problems.append(
        Problem("m2i", f"{measure} needs means of the same sign (a positive ratio m1/m2)",
                f1 * f2 < 0)
    )
    return problems


def correlation_range(name: str, r: FloatArray, what: str = "a correlation") -> Problem:
    """``|r| <= 1``."""
    return Problem(name, f"{what} must lie in [-1, 1]", np.abs(finite_or(r, 0.0)) > 1.0)


def statistic_t(
    given: Mapping[str, FloatArray], df: FloatArray | None, df_field: str, df_text: str
) -> tuple[FloatArray | None, list[Problem]]:
    """A t statistic from ``ti``, a signed two-sided p-value ``pi`` or an F(1, df)
    statistic ``fi``, in that order of precedence (metafor's ``replmiss`` chain).

    Notes
    -----
    :math:`t = \\operatorname{sgn}(p)\\,t_{df}^{-1}(1 - |p|/2)` (metafor's
    ``.convp2t``: the sign of ``pi`` gives the direction of the effect) and
    :math:`t = \\sqrt F` for an F statistic with one numerator degree of freedom,
    which carries no direction (use ``flip`` for effects in the other direction).
    Lipsey, M. W., & Wilson, D. B. (2001). *Practical Meta-Analysis*. Sage,
    Appendix B.
    """
    ti, pi, fi = given.get("ti"), given.get("pi"), given.get("fi")
    problems: list[Problem] = []
    if ti is None and pi is None and fi is None:
        return None, problems
    k = next(a for a in (ti, pi, fi) if a is not None).shape[0]
    t = ti
    if pi is not None:
        pf = finite_or(pi, 0.5)
        problems.append(
            Problem("pi", "a two-sided p-value must lie in (0, 1] (its sign gives the "
                    "direction of the effect)", (np.abs(pf) > 1) | (pf == 0))
        )
        dfv = df if df is not None else np.full(k, np.nan)
        with np.errstate(all="ignore"):
            p_abs = np.where((np.abs(pi) > 1) | (dfv < 1), np.nan, np.abs(pi))
            tp = -np.sign(pi) * special.stdtrit(dfv, p_abs / 2.0)
        t = replmiss(t, tp)
    if fi is not None:
        problems.append(nonnegative("fi", fi, "an F statistic"))
        with np.errstate(invalid="ignore"):
            t = replmiss(t, np.sqrt(fi))
    if t is not None:
        given_stat = np.zeros(k, dtype=np.bool_)
        for arr in (ti, pi, fi):
            if arr is not None:
                given_stat |= np.isfinite(arr)
        no_df = given_stat & (~np.isfinite(df) if df is not None else True)
        problems.append(
            Problem(df_field, f"a t, F or p statistic needs its degrees of freedom: give "
                    f"{df_field} ({df_text})", np.asarray(no_df, dtype=np.bool_))
        )
    return t, problems
