"""The one inference layer: Wald tests, confidence and prediction intervals.

Every model (pooling, meta-regression, subgroups, multilevel and robust fits)
turns coefficients and their covariance into statistics, p-values and intervals
here, and nowhere else computes a critical value.  Degrees of freedom are ``None``
(normal reference), one per analysis ``(m,)`` or one per coefficient ``(m, p)``
(Satterthwaite df of cluster-robust tests); a NaN entry means the normal
distribution for that entry, as metafor uses z where ``k = 1``.

The distribution functions call :mod:`scipy.special` directly (``ndtr``,
``stdtr``, ``chdtrc``, ``fdtrc`` and their inverses): the same values as the
``scipy.stats`` distribution objects, without their per-call argument handling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special as spc

from alliance_meta.exceptions import ModelSpecificationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

__all__ = [
    "CoefTests",
    "WaldTest",
    "check_level",
    "chi2_ppf",
    "chi2_sf",
    "coef_inference",
    "critical_value",
    "f_sf",
    "norm_sf",
    "prediction_interval",
    "residual_df",
    "t_sf",
    "two_sided_pvalue",
    "wald_test",
    "z_critical",
]


# ---------------------------------------------------------------------------
# Distribution functions (scipy.special, vectorised)
# ---------------------------------------------------------------------------


def check_level(level: float) -> float:
    """``level`` as a float strictly between 0 and 1, or a clear error."""
    if level.__class__ is float and 0.0 < level < 1.0:  # the common case, without ABCs
        return level
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
        raise ModelSpecificationError(
            f"level must be a number strictly between 0 and 1, got {level!r}"
        )
    lv = float(level)
    if not 0.0 < lv < 1.0:
        hint = f" (for {lv:g}%, pass level={lv / 100:g})" if 1.0 < lv < 100.0 else ""
        raise ModelSpecificationError(
            f"level must lie strictly between 0 and 1, got {level!r}{hint}"
        )
    return lv


def norm_sf(x: FloatArray | float) -> FloatArray:
    """``P(Z > x)`` of the standard normal."""
    return np.asarray(spc.ndtr(-np.asarray(x, dtype=np.float64)), dtype=np.float64)


def t_sf(x: FloatArray | float, df: FloatArray | float) -> FloatArray:
    """``P(T_df > x)`` of Student's t."""
    return np.asarray(spc.stdtr(df, -np.asarray(x, dtype=np.float64)), dtype=np.float64)


def chi2_sf(x: FloatArray | float, df: FloatArray | float) -> FloatArray:
    """``P(χ²_df > x)``."""
    return np.asarray(spc.chdtrc(df, x), dtype=np.float64)


def chi2_ppf(q: float, df: FloatArray | float) -> FloatArray:
    """The ``q`` quantile of ``χ²_df`` (``chdtri`` inverts the upper tail)."""
    return np.asarray(spc.chdtri(df, 1.0 - q), dtype=np.float64)


def f_sf(x: FloatArray | float, df1: FloatArray | float, df2: FloatArray | float) -> FloatArray:
    """``P(F_{df1, df2} > x)``."""
    return np.asarray(spc.fdtrc(df1, df2, x), dtype=np.float64)


@functools.lru_cache(maxsize=64)
def z_critical(level: float) -> float:
    """Two-sided normal critical value ``z_{1-α/2}`` of a confidence level (cached)."""
    return float(-spc.ndtri((1.0 - level) / 2.0))


def critical_value(df: FloatArray, level: float) -> FloatArray:
    """Two-sided critical values: t with ``df`` where finite, normal where NaN.

    ``df`` has any shape; the result has the same shape.
    """
    df = np.asarray(df, dtype=np.float64)
    z = z_critical(float(level))
    tb = np.isfinite(df)
    if not tb.any():
        return np.full(df.shape, z)
    crit = np.full(df.shape, z)
    crit[tb] = -spc.stdtrit(df[tb], (1.0 - level) / 2.0)
    return crit


def two_sided_pvalue(stat: FloatArray, df: FloatArray) -> FloatArray:
    """``2 P(|T| > |stat|)``: t with ``df`` where finite, normal where NaN."""
    a = np.abs(stat)
    pz = 2.0 * norm_sf(a)
    tb = np.isfinite(df)
    if not tb.any():
        return pz
    with np.errstate(invalid="ignore"):
        pt = 2.0 * t_sf(a, np.where(tb, df, 1.0))
    out: FloatArray = np.where(tb, pt, pz)
    return out


# ---------------------------------------------------------------------------
# Coefficient tests
# ---------------------------------------------------------------------------


def residual_df(k: IntArray, p: int, t_reference: bool) -> FloatArray:
    """Degrees of freedom ``k - p`` of t-based tests, NaN under z.

    Rows with ``k = 1`` use z (metafor switches to ``test="z"`` when k = 1).
    """
    if not t_reference:
        return np.full(k.shape, np.nan)
    out: FloatArray = np.where(k <= 1, np.nan, (k - p).astype(np.float64))
    return out


@dataclass(frozen=True)
class CoefTests:
    """Wald inference of ``m`` models with ``p`` coefficients each (all ``(m, p)``)."""

    se: FloatArray
    statistic: FloatArray
    pvalue: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    crit: FloatArray
    df: FloatArray  # NaN where the reference is normal


def _per_coef_df(df: FloatArray | None, shape: tuple[int, int]) -> FloatArray:
    if df is None:
        return np.full(shape, np.nan)
    d = np.asarray(df, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    return np.broadcast_to(d, shape)


def coef_inference(
    beta: FloatArray, vcov: FloatArray, df: FloatArray | None, level: float
) -> CoefTests:
    """Standard errors, Wald statistics, p-values and CIs of every coefficient.

    Parameters
    ----------
    beta : (m, p) array
    vcov : (m, p, p) array
    df : None, (m,) or (m, p) array
        Degrees of freedom of the t reference; None or NaN entries use the normal.
    level : float
        Confidence level.

    Notes
    -----
    ``se_j = √V_jj``, ``stat_j = β_j / se_j``, ``p_j = 2 P(T > |stat_j|)`` and
    ``CI_j = β_j ± c_j se_j`` with ``c_j`` the ``1 - α/2`` quantile of t on ``df_j``
    (or the normal), as metafor's ``rma`` and clubSandwich's ``coef_test`` /
    ``conf_int`` report them.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return _coef_inference(beta, vcov, df, level)


def _coef_inference(
    beta: FloatArray, vcov: FloatArray, df: FloatArray | None, level: float
) -> CoefTests:
    # coef_inference where the caller ignores divide and invalid already (the fit's
    # one errstate, core.univariate)
    se = np.sqrt(np.diagonal(vcov, axis1=1, axis2=2))
    stat = beta / se
    if df is None:  # the normal reference throughout
        d = np.full(beta.shape, np.nan)
        pval = 2.0 * norm_sf(np.abs(stat))
        crit = np.full(beta.shape, z_critical(float(level)))
    else:
        d = np.array(_per_coef_df(df, beta.shape))
        pval = two_sided_pvalue(stat, d)
        crit = critical_value(d, level)
    half = crit * se
    return CoefTests(se, stat, pval, beta - half, beta + half, crit, d)


@dataclass(frozen=True)
class WaldTest:
    """Omnibus Wald test of ``q`` coefficients in each of ``m`` models (all ``(m,)``).

    ``statistic`` is ``QM`` (χ² on ``df1``) where ``df2`` is NaN, else ``QM / q``
    (F on ``df1, df2``).
    """

    statistic: FloatArray
    df1: FloatArray
    df2: FloatArray
    pvalue: FloatArray


def _solve_or_nan(A: FloatArray, b: FloatArray) -> FloatArray:
    """Batched ``A⁻¹ b``; rows with a singular ``A`` give NaN (metafor's QM = NA)."""
    try:
        return np.asarray(np.linalg.solve(A, b[:, :, None])[:, :, 0], dtype=np.float64)
    except np.linalg.LinAlgError:
        res = np.full_like(b, np.nan)
        for i in range(A.shape[0]):  # degenerate fallback only (e.g. all yi equal + knha)
            try:
                res[i] = np.linalg.solve(A[i], b[i])
            except np.linalg.LinAlgError:
                pass
        return res


def quadratic_form(beta: FloatArray, vcov: FloatArray, btt: npt.NDArray[np.intp]) -> FloatArray:
    """``β_S' V_S⁻¹ β_S`` of the coefficients ``btt`` of each row (NaN if singular)."""
    # a statistic beyond double range is inf (its p-value 0), not an error
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if btt.size == 1:
            # 1x1 system: b^2 / v, NaN where v == 0 (singular, metafor's NA)
            j = int(btt[0])
            b1, v11 = beta[:, j], vcov[:, j, j]
            out: FloatArray = b1 * (b1 / v11)
            if not v11.all():
                out[v11 == 0] = np.nan
            return out
        b = beta[:, btt]
        vsub = vcov[:, btt[:, None], btt[None, :]]
        return np.asarray(np.einsum("mi,mi->m", b, _solve_or_nan(vsub, b)), dtype=np.float64)


def wald_test(
    beta: FloatArray,
    vcov: FloatArray,
    btt: npt.NDArray[np.intp],
    df2: FloatArray | None = None,
) -> WaldTest:
    """Test that the coefficients ``btt`` are all zero (metafor's ``QM``, ``anova(fit, btt=)``).

    Parameters
    ----------
    beta, vcov : (m, p) and (m, p, p) arrays
    btt : int array
        0-based positions of the tested coefficients (``q`` of them).
    df2 : None or (m,) array
        Denominator df of an F test; None (or NaN rows) gives the χ² test.

    Notes
    -----
    ``QM = β_S' V_S⁻¹ β_S`` is χ² on ``q`` df; with ``df2``, ``QM / q`` is referred to
    F on ``(q, df2)`` (metafor under ``test="t"``/``"knha"``).
    """
    m = beta.shape[0]
    q = float(btt.size)
    QM = quadratic_form(beta, vcov, btt)
    if df2 is None:
        return WaldTest(QM, np.full(m, q), np.full(m, np.nan), chi2_sf(QM, q))
    d2 = np.asarray(df2, dtype=np.float64)
    F = QM / q
    fin = np.isfinite(d2)
    with np.errstate(invalid="ignore"):
        p_f = f_sf(F, q, np.where(fin, d2, 1.0))
    pval: FloatArray = np.where(fin, p_f, chi2_sf(QM, q))
    return WaldTest(F, np.full(m, q), d2, pval)


def prediction_interval(
    pred: FloatArray, se: FloatArray, tau2: FloatArray, crit: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``pred ± crit √(se² + τ²)``, metafor's prediction interval (Riley et al., 2011).

    ``tau2`` is the total heterogeneity variance of a new study (the sum of the
    variance components for a multilevel model).
    """
    half = crit * np.sqrt(se * se + tau2)
    return pred - half, pred + half
