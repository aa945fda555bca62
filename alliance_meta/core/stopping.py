"""metafor's own stopping rules for the iterative τ² estimators (``control=``).

By default the iterative estimators are solved to 1e-10 relative by the safeguarded
root search of :mod:`alliance_meta.core.roots`.  A published analysis was usually
run with metafor's default ``control``, whose iterations stop earlier; to reproduce
its printed numbers, :func:`estimate_with_rule` follows ``rma.uni`` step by step:

* ML, REML and EB: Fisher scoring from the Hedges (HE) estimate (``max(0, HE)``),
  ``τ² ← τ² + Δ`` with ``Δ = score / information`` (ML: ``(y'PPy - Σw)/Σw²``; REML:
  ``(y'PPy - tr P)/tr(PP)``; EB: ``(Q k/(k-p) - k)/Σw``), halved while it would
  take τ² below 0, until ``|Δτ²| <= threshold``; more than ``maxiter`` steps do not
  converge.  ML and REML then apply metafor's ``ll0check``: τ² is set to 0 when
  the (restricted) log-likelihood at 0 exceeds that at τ² by more than ``tol`` and
  τ² > ``threshold`` (not when a sampling variance is 0).
* PM and PMM: R's ``uniroot`` (Brent's ``zeroin``, as R's C code ``R_zeroin2``) on
  ``Q(τ²) - target`` over ``[0, max(100, 10 mad(y)²)]`` with tolerance ``tol``:
  τ² = 0 when ``Q(0) < target``, no convergence when ``Q`` at the upper end still
  exceeds the target.

Everything is computed from the centred effects, as metafor's ``Ymc``.

References
----------
Brent, R. P. (1973). *Algorithms for Minimization without Derivatives*, chapter 4.
Prentice-Hall.

Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators in
the random-effects model. *Journal of Educational and Behavioral Statistics*, 30(3),
261-293.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from alliance_meta.core.arrays import BoolArray, FloatArray, IntArray
from alliance_meta.core.inference import chi2_ppf
from alliance_meta.core.kernel import Kernel, Need

__all__ = ["RULE_METHODS", "StopRule", "estimate_with_rule", "zeroin"]

_EPS = float(np.finfo(np.float64).eps)

#: The estimators whose search a stopping rule changes (the others are closed forms).
RULE_METHODS = frozenset({"ML", "REML", "EB", "PM", "PMM"})


@dataclass(frozen=True)
class StopRule:
    """metafor's ``control`` of ``rma.uni``: ``threshold`` (Fisher scoring),
    ``tol`` (``uniroot`` and ``ll0check``) and ``maxiter``."""

    threshold: float = 1e-5
    tol: float = _EPS**0.25
    maxiter: int = 100


def _eb_fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """EB's Fisher-scoring function ``Q k/(k-p) - k`` and minus its information ``-Σw``."""
    st = K.weighted(t, Need.FIT)
    kf = K.k.astype(np.float64)
    f: FloatArray = st.Q * kf / K.dfr - kf
    return f, -st.S1, -st.S1


def fisher_scoring(
    kern: Kernel,
    fun: Callable[[Kernel, FloatArray], tuple[FloatArray, FloatArray, FloatArray]],
    t0: FloatArray,
    rule: StopRule,
) -> tuple[FloatArray, IntArray, BoolArray]:
    """metafor's Fisher scoring, every row at once: ``(tau2, iterations, converged)``.

    ``fun(K, t)`` returns ``(f, _, -information)`` with the step ``f / information``.
    """
    m = kern.m
    tau2 = np.maximum(np.asarray(t0, dtype=np.float64), 0.0).copy()
    iters = np.zeros(m, dtype=np.int64)
    conv = np.zeros(m, dtype=bool)
    active = np.arange(m)
    K = kern
    t = tau2.copy()
    while active.size:
        iters[active] += 1
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            f, _, neg_info = fun(K, t)
            adj = f / -neg_info
        adj = np.where(np.isnan(adj), 0.0, adj)
        # halve a step that would take τ² below 0 (metafor's tau2.min)
        for _ in range(1100):  # 2^-1100 of any step is below the smallest double
            below = t + adj < 0.0
            if not below.any():
                break
            adj = np.where(below, adj / 2.0, adj)
        new = t + adj
        change = np.abs(t - new)
        done = ~(change > rule.threshold)
        over = iters[active] > rule.maxiter
        stop = done | over
        tau2[active] = new
        conv[active[done & ~over]] = True
        if stop.any():
            keep = ~stop
            active = active[keep]
            if active.size == 0:
                break
            K = K.take(keep)
            new = new[keep]
        t = new
    return tau2, iters, conv


def zeroin(
    f: Callable[[float], float],
    ax: float,
    bx: float,
    fa: float,
    fb: float,
    tol: float,
    maxiter: int,
) -> tuple[float, int, bool]:
    """Brent's root finder as R's ``uniroot`` runs it (``R_zeroin2``).

    Returns ``(root, iterations, converged)``.  ``f(ax)`` and ``f(bx)`` must have
    opposite signs; the search stops when the bracket is within
    ``2 eps |b| + tol/2`` of the best point ``b``, or after ``maxiter`` steps.
    """
    a, b, c, fc = ax, bx, ax, fa
    if fa == 0.0:
        return a, 0, True
    if fb == 0.0:
        return b, 0, True
    for it in range(maxiter + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            # b is the best approximation so far
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2.0 * _EPS * abs(b) + tol / 2.0
        new_step = (c - b) / 2.0
        if abs(new_step) <= tol_act or fb == 0.0:
            return b, it, True
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            # interpolation: secant with two distinct points, else inverse quadratic
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q, t1, t2 = fa / fc, fb / fc, fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < 0.75 * cb * q - abs(tol_act * q) / 2.0 and p < abs(prev_step * q / 2.0):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b, maxiter, False


def _mad(y: FloatArray) -> float:
    """R's ``mad``: ``1.4826 median(|y - median(y)|)``."""
    return 1.4826 * float(np.median(np.abs(y - np.median(y))))


def _uniroot_rows(
    kern: Kernel, target: FloatArray, rule: StopRule
) -> tuple[FloatArray, IntArray, BoolArray]:
    """PM/PMM: R's ``uniroot`` of ``Q(τ²) - target`` row by row."""
    m = kern.m
    tau2 = np.zeros(m)
    iters = np.zeros(m, dtype=np.int64)
    conv = np.ones(m, dtype=bool)
    mask = kern.mask
    for i in range(m):
        Ki = kern.take(np.array([i]))
        tgt = float(target[i])

        def f(t: float, Ki: Kernel = Ki, tgt: float = tgt) -> float:
            return float(Ki.weighted(np.array([t]), Need.FIT).Q[0]) - tgt

        lower = 0.0
        upper = max(100.0, 10.0 * _mad(kern.Y[i, mask[i]]) ** 2)
        f_lo = f(lower)
        if f_lo < 0.0:
            continue  # Q(0) below the target: τ² = 0
        f_hi = f(upper)
        if f_hi > 0.0:
            conv[i] = False  # metafor: "Value of 'tau2.max' too low"
            tau2[i] = math.nan
            continue
        tau2[i], iters[i], conv[i] = zeroin(f, lower, upper, f_lo, f_hi, rule.tol, rule.maxiter)
    return tau2, iters, conv


def estimate_with_rule(
    kern: Kernel, method: str, rule: StopRule
) -> tuple[FloatArray, IntArray, BoolArray, BoolArray]:
    """τ² of the ML, REML, EB, PM or PMM estimator stopped as metafor stops it.

    Returns ``(tau2, iterations, converged, reset)``; ``reset`` marks rows that
    metafor's ``ll0check`` set to 0 (ML and REML).
    """
    from alliance_meta.core import estimators as est

    m = kern.m
    reset = np.zeros(m, dtype=bool)
    if method in ("PM", "PMM"):
        target = kern.dfr if method == "PM" else chi2_ppf(0.5, kern.dfr)
        tau2, it, conv = _uniroot_rows(kern, np.broadcast_to(target, (m,)), rule)
        return tau2, it, conv, reset
    fun = {"ML": est._ml_fun, "REML": est._reml_fun, "EB": _eb_fun}[method]
    start = est._he_value(kern)
    tau2, it, conv = fisher_scoring(kern, fun, start, rule)
    if method in ("ML", "REML"):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            gain = est._gain_fn(kern, method == "REML")(kern, tau2, np.arange(m))
            vzero = ~np.isfinite(kern.weighted(kern.zeros, Need.BETA).S1)
            # ll0 - ll > tol and τ² > threshold: metafor sets τ² to 0
            low = conv & ~vzero & (-gain > rule.tol) & (tau2 > rule.threshold)
        reset = low
        tau2 = np.where(low, 0.0, tau2)
    return tau2, it, conv, reset
