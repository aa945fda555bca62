"""Heterogeneity: Cochran's Q, I², H², and Q-profile confidence intervals for τ².

References
----------
Higgins, J. P. T., & Thompson, S. G. (2002). Quantifying heterogeneity in a
meta-analysis. *Statistics in Medicine*, 21(11), 1539-1558.

Viechtbauer, W. (2007). Confidence intervals for the amount of heterogeneity in
meta-analysis. *Statistics in Medicine*, 26(1), 37-52.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alliance_meta.core.arrays import FloatArray
from alliance_meta.core.inference import chi2_ppf, chi2_sf
from alliance_meta.core.kernel import Kernel, Need
from alliance_meta.core.roots import q_root

__all__ = [
    "QProfile",
    "concat_qprofiles",
    "heterogeneity",
    "heterogeneity_k",
    "i2_h2",
    "q_pvalue",
    "q_statistic",
    "q_statistic_k",
    "qprofile",
]


def q_statistic(kern: Kernel) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(QE, k-p, vt)``: Cochran's Q (FE weights) and metafor's typical variance.

    ``vt = (k-p)/tr(P)`` with ``P`` at weights ``1/v`` (Higgins & Thompson, 2002).
    Saturated rows (``k <= p``) get ``QE = 0`` and ``vt = 0``, as in metafor.
    """
    QE, dfr, vt = q_statistic_k(kern)
    s2 = kern.s2
    return QE, dfr, (vt if s2 is None else vt * s2)


def q_statistic_k(kern: Kernel) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`q_statistic` with ``vt`` in the kernel's own units."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _q_statistic_k(kern)


def _q_statistic_k(kern: Kernel) -> tuple[FloatArray, FloatArray, FloatArray]:
    # q_statistic_k where the caller ignores divide, invalid and over already
    dfr = kern.dfr
    st = kern.weighted(kern.zeros, Need.DL)
    assert st.trP is not None
    QE = np.maximum(st.Q, 0.0)
    vt = dfr / st.trP
    if kern.kmin <= kern.p:
        sat = dfr <= 0
        QE = np.where(sat, 0.0, QE)
        vt = np.where(sat, 0.0, vt)
    # a zero sampling variance makes the weights 1/v infinite: no QE, I², H²
    # (metafor: "Cannot compute QE-test, I^2, or H^2 when there are non-positive
    # sampling variances in the data"); S1 > 0, so its sum is finite only if all are
    if not np.isfinite(np.add.reduce(st.S1)):
        inf = ~np.isfinite(st.S1)
        QE = np.where(inf, np.nan, QE)
        vt = np.where(inf, np.nan, vt)
    return QE, dfr, vt


def q_pvalue(QE: FloatArray, dfr: FloatArray, saturated: bool = True) -> FloatArray:
    """``P(χ²_{k-p} > QE)``; 1 for saturated rows (metafor's QEp).

    ``saturated=False`` asserts that no row is (``k > p`` everywhere).
    """
    with np.errstate(invalid="ignore"):
        return _q_pvalue(QE, dfr, saturated)


def _q_pvalue(QE: FloatArray, dfr: FloatArray, saturated: bool) -> FloatArray:
    # q_pvalue where the caller ignores invalid already
    p = chi2_sf(QE, dfr)
    if not saturated or (dfr.size and dfr.min() > 0):
        return p
    return np.where((dfr <= 0) & ~np.isnan(QE), 1.0, p)


def i2_h2(
    QE: FloatArray,
    dfr: FloatArray,
    tau2: FloatArray,
    vt: FloatArray,
    fixed: bool,
    saturated: bool = True,
) -> tuple[FloatArray, FloatArray]:
    """I² (percent) and H² as metafor defines them.

    Random effects: ``I² = 100 τ²/(vt + τ²)``, ``H² = τ²/vt + 1``; equal effects:
    ``I² = max(0, 100 (QE - (k-p))/QE)``, ``H² = QE/(k-p)``; 0 and 1 when saturated
    (``saturated=False`` asserts that no row is: ``k > p`` everywhere).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return _i2_h2(QE, dfr, tau2, vt, fixed, saturated)


def _i2_h2(
    QE: FloatArray,
    dfr: FloatArray,
    tau2: FloatArray,
    vt: FloatArray,
    fixed: bool,
    saturated: bool,
) -> tuple[FloatArray, FloatArray]:
    # i2_h2 where the caller ignores divide and invalid already
    if fixed:
        I2 = np.maximum(0.0, 100.0 * (QE - dfr) / QE)
        H2 = QE / dfr
    else:
        I2 = 100.0 * tau2 / (vt + tau2)
        H2 = tau2 / vt + 1.0
    if (not saturated or (dfr.size and dfr.min() > 0)) and not np.isnan(I2).any():
        # nothing saturated or undefined
        return I2, H2
    sat = dfr <= 0
    I2 = np.where((sat | (np.isnan(I2) & (QE == 0))) & ~np.isnan(QE), 0.0, I2)
    H2 = np.where(sat & ~np.isnan(QE), 1.0, H2)
    return I2, H2


def heterogeneity(
    kern: Kernel, tau2: FloatArray, fixed: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """``(QE, QE_df, QE_p, I2, H2, vt)`` as in metafor (typical variance ``(k-p)/tr(P)``)."""
    s2 = kern.s2
    QE, dfr, p, I2, H2, vt = heterogeneity_k(kern, tau2 if s2 is None else tau2 / s2, fixed)
    return QE, dfr, p, I2, H2, (vt if s2 is None else vt * s2)


def heterogeneity_k(
    kern: Kernel, tau2: FloatArray, fixed: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """:func:`heterogeneity` with τ² and ``vt`` in the kernel's own units."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _heterogeneity_k(kern, tau2, fixed)


def _heterogeneity_k(
    kern: Kernel, tau2: FloatArray, fixed: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    # heterogeneity_k under one errstate of the caller (divide, invalid and over
    # ignored): the fit's (core.univariate)
    QE, dfr, vt = _q_statistic_k(kern)
    sat = kern.kmin <= kern.p
    I2, H2 = _i2_h2(QE, dfr, tau2, vt, fixed, sat)
    return QE, dfr, _q_pvalue(QE, dfr, sat), I2, H2, vt


@dataclass(frozen=True)
class QProfile:
    tau2_low: FloatArray
    tau2_high: FloatArray
    I2_low: FloatArray
    I2_high: FloatArray
    H2_low: FloatArray
    H2_high: FloatArray


def qprofile(kern: Kernel, level: float = 0.95) -> QProfile:
    """Q-profile confidence interval for τ² (Viechtbauer, 2007), and I², H² from it.

    The bounds solve ``Q(τ²) = χ²_{k-p; 1-α/2}`` (lower) and ``χ²_{k-p; α/2}``
    (upper), where ``Q`` is the generalised Q-statistic with weights ``1/(v+τ²)``;
    a bound whose equation has no root in ``[0, ∞)`` is 0, as in metafor's
    ``confint.rma.uni``.  Unlike metafor no upper search limit (``tau2.max``) applies.
    I² and H² bounds use the typical within-study variance ``vt``.

    Viechtbauer, W. (2007). Confidence intervals for the amount of heterogeneity in
    meta-analysis. *Statistics in Medicine*, 26(1), 37-52.
    """
    alpha = 1.0 - level
    zeros = kern.zeros

    def bound(upper_quantile: bool) -> FloatArray:
        def target(K: Kernel) -> FloatArray:
            return chi2_ppf(1.0 - alpha / 2 if upper_quantile else alpha / 2, K.dfr)

        # start at the DL-type moment solution of Q(t) = target
        st0 = kern.weighted(zeros, Need.DL)
        assert st0.trP is not None
        with np.errstate(divide="ignore", invalid="ignore"):
            t0 = np.maximum((st0.Q - target(kern)) / st0.trP, 0.0)
        return q_root(kern, target, t0)[0]

    lb = bound(True)
    ub = bound(False)
    _, _, vt = q_statistic_k(kern)
    with np.errstate(divide="ignore", invalid="ignore"):
        I2l = 100.0 * lb / (vt + lb)
        I2u = 100.0 * ub / (vt + ub)
        H2l = lb / vt + 1.0
        H2u = ub / vt + 1.0
    s2 = kern.s2
    if s2 is not None:  # back from the kernel's units
        lb, ub = lb * s2, ub * s2
    return QProfile(lb, ub, I2l, I2u, H2l, H2u)


def concat_qprofiles(parts: list[QProfile]) -> QProfile:
    if len(parts) == 1:
        return parts[0]
    return QProfile(
        *(np.concatenate([getattr(q, n) for q in parts]) for n in QProfile.__dataclass_fields__)
    )
