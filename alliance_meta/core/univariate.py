"""Univariate models (rma.uni), m at once: τ², coefficients, tests, heterogeneity.

:func:`fit` is what every univariate model function calls (pooling, meta-regression,
subgroups, and the refits of the diagnostics): an estimator from
:mod:`~alliance_meta.core.estimators`, the coefficient covariance of
:mod:`~alliance_meta.core.vcov`, inference from :mod:`~alliance_meta.core.inference`
and heterogeneity from :mod:`~alliance_meta.core.heterogeneity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from alliance_meta.core.arrays import BoolArray, FloatArray, IntArray
from alliance_meta.core.estimators import CoreMethod, Tau2Result, estimate_tau2
from alliance_meta.core.heterogeneity import _heterogeneity_k, q_statistic_k
from alliance_meta.core.inference import (
    WaldTest,
    _coef_inference,
    prediction_interval,
    residual_df,
    wald_test,
)
from alliance_meta.core.kernel import Kernel
from alliance_meta.core.stopping import StopRule
from alliance_meta.core.vcov import TESTS, CoreTest, location_k

__all__ = [
    "CoreFit",
    "SlimFit",
    "concat_fits",
    "fit",
    "fit_given_tau2",
    "fit_slim",
    "permute_rows",
]


@dataclass(frozen=True)
class CoreFit:
    """Arrays describing m fitted models (p coefficients each)."""

    beta: FloatArray  # (m, p)
    vb: FloatArray  # (m, p, p), after the Knapp-Hartung scaling if any
    se: FloatArray  # (m, p)
    statistic: FloatArray  # (m, p)
    pvalue: FloatArray  # (m, p)
    ci_low: FloatArray  # (m, p)
    ci_high: FloatArray  # (m, p)
    df: FloatArray  # (m,), nan under z
    crit: FloatArray  # (m,)
    tau2: FloatArray
    tau2_se: FloatArray
    iterations: IntArray
    converged: BoolArray
    k: IntArray
    p: int
    QE: FloatArray
    QE_df: FloatArray
    QE_pvalue: FloatArray
    I2: FloatArray
    H2: FloatArray
    vt: FloatArray
    s2w: FloatArray
    QM: FloatArray
    QM_df1: FloatArray
    QM_df2: FloatArray
    QM_pvalue: FloatArray
    pi_low: FloatArray  # prediction interval of the intercept (intercept-only models)
    pi_high: FloatArray
    #: rows whose ML/REML τ² (the global maximum) is not the local maximum metafor
    #: stops at (see core.estimators._likelihood)
    tau2_differs: BoolArray


@dataclass(frozen=True)
class SlimFit:
    """What :func:`pool_many` keeps of an intercept-only fit; the rest (tests, CIs,
    I², H², p-values) follows from these by :func:`coef_tests`, :func:`i2_h2`, ...
    """

    estimate: FloatArray
    se: FloatArray
    tau2: FloatArray
    QE: FloatArray
    vt: FloatArray
    #: τ²/vt, computed in the kernel's units (I² and H² follow from it exactly)
    h: FloatArray
    k: IntArray
    iterations: IntArray
    converged: BoolArray
    tau2_differs: BoolArray
    tau2_se: FloatArray | None = None


def fit_slim(
    kern: Kernel, method: CoreMethod, test: CoreTest, with_se: bool = False
) -> SlimFit:
    """The estimation part of :func:`fit` for an intercept-only kernel.

    The standard error of τ² is left to :func:`tau2_se` (computed on demand) unless
    ``with_se``, which computes it in the same passes.
    """
    est = estimate_tau2(kern, method, with_se=with_se)
    beta, vb, _ = location_k(kern, est.tau2_k, test)
    QE, dfr, vt = q_statistic_k(kern)
    # τ²/vt in the kernel's units: I² and H² without the rounding of tiny values
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(dfr > 0, est.tau2_k / vt, 0.0)
    est_, se = beta[:, 0], np.sqrt(vb[:, 0, 0])
    sc = kern.scale
    if sc is not None:
        est_, se, vt = est_ * sc, se * sc, vt * (sc * sc)
    return SlimFit(
        estimate=est_,
        se=se,
        tau2=est.tau2,
        QE=QE,
        vt=vt,
        h=h,
        k=kern.k,
        iterations=est.iterations,
        converged=est.converged,
        tau2_se=est.se if with_se else None,
        tau2_differs=est.differs,
    )


def fit(
    kern: Kernel,
    method: CoreMethod,
    test: CoreTest = "z",
    level: float = 0.95,
    btt: npt.NDArray[np.intp] | None = None,
    rule: StopRule | None = None,
    omnibus: bool = True,
) -> CoreFit:
    """Fit every row of ``kern`` with one τ² estimator and one test.

    ``rule`` stops the iterative estimators as metafor's ``control`` does
    (:mod:`alliance_meta.core.stopping`); by default they are solved to 1e-10.
    ``btt`` selects the coefficients of the omnibus test (metafor's default: all but
    the intercept when p > 1 and column 0 is the intercept, the one coefficient when
    p = 1, and every coefficient of a design without an intercept);
    ``omnibus=False`` leaves that test out (its fields NaN), for callers that do not
    report it.
    """
    # one errstate for the whole fit (see fit_given_tau2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        est = estimate_tau2(kern, method, rule=rule)
        return _fit_given_tau2(kern, est, method, test, level, btt, omnibus)


def fit_given_tau2(
    kern: Kernel,
    est: Tau2Result,
    method: CoreMethod,
    test: CoreTest,
    level: float,
    btt: npt.NDArray[np.intp] | None = None,
    omnibus: bool = True,
) -> CoreFit:
    """The fixed-effects part of the fit, tests and heterogeneity for given τ² values.

    Computed in the kernel's own units (``Kernel.scale``) and converted back, so
    that data far from unit scale lose no precision (``omnibus``: see :func:`fit`).
    """
    # a zero sampling variance at τ² = 0 gives infinite weights: NaN results, which
    # the callers refuse (naming the study).  One errstate for the whole fit: the
    # functions below take the private forms that enter none of their own (each
    # errstate costs about 2 µs, a tenth of a single small fit's ~20 of them)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _fit_given_tau2(kern, est, method, test, level, btt, omnibus)


def _fit_given_tau2(
    kern: Kernel,
    est: Tau2Result,
    method: CoreMethod,
    test: CoreTest,
    level: float,
    btt: npt.NDArray[np.intp] | None,
    omnibus: bool,
) -> CoreFit:
    p = kern.p
    t = est.tau2_k
    beta, vb, s2w = location_k(kern, t, test)
    t_ref = TESTS[test].t_reference
    df = residual_df(kern.k, p, t_ref)
    ct = _coef_inference(beta, vb, df if t_ref else None, level)
    if omnibus:
        if btt is None:
            btt = np.arange(1, p) if p > 1 and kern.intercept else np.arange(p)
        wt = wald_test(beta, vb, btt, df if t_ref else None)
    else:
        nan = np.full(kern.m, np.nan)
        wt = WaldTest(nan, nan, nan, nan)
    QE, QE_df, QEp, I2, H2, vt = _heterogeneity_k(kern, t, method == "EE")
    crit = ct.crit[:, 0]
    pi_low, pi_high = prediction_interval(beta[:, 0], ct.se[:, 0], t, crit)
    se, ci_low, ci_high = ct.se, ct.ci_low, ct.ci_high
    sc = kern.scale
    if sc is not None:  # back from the kernel's units
        c1, c2 = sc[:, None], (sc * sc)
        beta, se, ci_low, ci_high = beta * c1, se * c1, ci_low * c1, ci_high * c1
        vb = vb * c2[:, None, None]
        pi_low, pi_high, vt = pi_low * sc, pi_high * sc, vt * c2
    return CoreFit(
        beta=beta,
        vb=vb,
        se=se,
        statistic=ct.statistic,
        pvalue=ct.pvalue,
        ci_low=ci_low,
        ci_high=ci_high,
        df=df,
        crit=crit,
        tau2=est.tau2,
        tau2_se=est.se,
        iterations=est.iterations,
        converged=est.converged,
        k=kern.k,
        p=p,
        QE=QE,
        QE_df=QE_df,
        QE_pvalue=QEp,
        I2=I2,
        H2=H2,
        vt=vt,
        s2w=s2w,
        QM=wt.statistic,
        QM_df1=wt.df1,
        QM_df2=wt.df2,
        QM_pvalue=wt.pvalue,
        pi_low=pi_low,
        pi_high=pi_high,
        tau2_differs=est.differs,
    )


def concat_fits(fits: list[CoreFit]) -> CoreFit:
    """Concatenate fits of consecutive row blocks."""
    if len(fits) == 1:
        return fits[0]
    first = fits[0]
    kw: dict[str, object] = {}
    for name in CoreFit.__dataclass_fields__:
        if name == "p":
            kw[name] = first.p
        else:
            kw[name] = np.concatenate([getattr(f, name) for f in fits], axis=0)
    return CoreFit(**kw)  # type: ignore[arg-type]


def permute_rows(fitobj: CoreFit, order: npt.NDArray[np.intp]) -> CoreFit:
    """Reorder the rows of a fit (``out[order[i]] = fit[i]``)."""
    kw: dict[str, object] = {}
    for name in CoreFit.__dataclass_fields__:
        val = getattr(fitobj, name)
        if name == "p":
            kw[name] = val
        else:
            arr = np.empty_like(val)
            arr[order] = val
            kw[name] = arr
    return CoreFit(**kw)  # type: ignore[arg-type]
