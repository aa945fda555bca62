"""Safeguarded root finding on ``[0, ∞)``, vectorised over the rows of a kernel.

The iterative τ² estimators (ML, REML, PM, EB, PMM) and the Q-profile interval
solve a decreasing estimating equation ``f(τ²) = 0`` for every analysis at once:
Newton (or Fisher-scoring) steps kept inside a sign-change bracket, with bisection
where a step would leave it, so that no row can oscillate or diverge.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alliance_meta.core.arrays import BoolArray, FloatArray, IntArray
from alliance_meta.core.kernel import Kernel, Need

__all__ = [
    "MAXITER",
    "RTOL",
    "RootFun",
    "positive_root",
    "q_root",
    "solve_decreasing",
    "zero_variance_rows",
]

#: Relative convergence tolerance of every iterative τ² search.
RTOL = 1e-10
#: Iteration cap of the safeguarded Newton search (bisection alone needs < 200).
MAXITER = 300
#: A search that bisects down to this fraction of its start without a sign change
#: has its root on the boundary, τ² = 0.
_BOUNDARY = 1e-30

#: ``fun(kernel, t) -> (f, df/dt, -information)``: a decreasing estimating function,
#: its derivative, and minus its Fisher information (< 0); metafor's Fisher scoring
#: steps by ``-f / (-information)``.
RootFun = Callable[[Kernel, FloatArray], tuple[FloatArray, FloatArray, FloatArray]]


def zero_variance_rows(kern: Kernel) -> BoolArray:
    """Rows with a study of sampling variance 0: their weights ``1/v`` at τ² = 0 are
    infinite (read off the cached ``Σ 1/v``, without another pass over the data)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        S1 = kern.weighted(kern.zeros, Need.BETA).S1
    out: BoolArray = ~np.isfinite(S1)
    return out


def _slope(deriv: FloatArray, fisher: FloatArray) -> FloatArray:
    """The Newton slope where it is negative, else the Fisher-scoring one (< 0)."""
    out: FloatArray = np.where(deriv < 0, deriv, fisher)
    return out


def solve_decreasing(
    kern: Kernel,
    fun: RootFun,
    t0: FloatArray,
    rtol: float = RTOL,
    maxiter: int = MAXITER,
    lo0: FloatArray | None = None,
    hi0: FloatArray | None = None,
) -> tuple[FloatArray, IntArray, BoolArray]:
    """Root of ``f`` on ``(lo0, hi0)`` for rows where ``f(lo0) > 0`` and ``f(hi0) < 0``.

    ``lo0`` defaults to 0 and ``hi0`` to infinity (``f`` must then end negative).
    Each step is a Newton step (a Fisher-scoring step where the Newton slope has the
    wrong sign) kept strictly inside the current bracket ``(lo, hi)``; a step that
    would leave it is replaced by bisection (or doubling while no upper end is
    known).  Rows stop as soon as their step is below ``rtol`` relative, and are
    dropped from later iterations.
    """
    m = kern.m
    out = np.empty(m)
    iters = np.zeros(m, dtype=np.int64)
    conv = np.zeros(m, dtype=bool)
    active = np.arange(m)
    t = np.maximum(np.asarray(t0, dtype=float), 0.0)
    lo = np.zeros(m) if lo0 is None else np.asarray(lo0, dtype=float).copy()
    hi = np.full(m, np.inf) if hi0 is None else np.asarray(hi0, dtype=float).copy()
    K = kern
    for it in range(1, maxiter + 1):
        f, deriv, fisher = fun(K, t)
        pos = f > 0
        lo = np.where(pos, t, lo)
        hi = np.where(pos, hi, t)
        cand = t - f / _slope(deriv, fisher)
        inside = (cand > lo) & (cand < hi) & np.isfinite(cand)
        fallback = np.where(np.isfinite(hi), 0.5 * (lo + hi), np.maximum(2.0 * t, lo + 1.0))
        new = np.where(inside, cand, fallback)
        done = (np.abs(new - t) <= rtol * np.abs(new)) | (f == 0.0)
        done |= np.isfinite(hi) & (hi - lo <= rtol * hi)
        done &= np.isfinite(new)
        if done.any():
            ix = active[done]
            out[ix] = np.where(f[done] == 0.0, t[done], new[done])
            iters[ix] = it
            conv[ix] = True
            keep = ~done
            active = active[keep]
            if active.size == 0:
                return out, iters, conv
            K = K.take(keep)
            new, lo, hi = new[keep], lo[keep], hi[keep]
        t = new
    out[active] = t
    iters[active] = maxiter
    return out, iters, conv


def positive_root(
    kern: Kernel,
    fun: RootFun,
    t0: FloatArray,
    gain: Callable[[Kernel, FloatArray], FloatArray] | None = None,
    score: Callable[[Kernel, FloatArray], FloatArray] | None = None,
) -> tuple[FloatArray, IntArray, BoolArray, BoolArray]:
    """Root of a decreasing ``f`` on ``[0, inf)``; 0 where ``f(0) <= 0``.

    Returns ``(tau2, iterations, converged, reset)``.

    With ``gain`` (the log-likelihood above that at τ² = 0) and ``score`` (the
    function's value alone, cheaper than ``fun``) for ML and REML, the root is the one
    metafor's Fisher scoring from the start ``t0`` reaches.  Rows whose score is
    negative at 0 (a local maximum on the boundary) may still have an interior local
    maximum that it reaches: beyond ``t0`` where the score there is positive, or below
    it where the score is negative at ``t0`` but turns positive further down (found on a
    grid, see :func:`_score_grid_below`).  Every interior root is then put to metafor's
    own check (``ll0check``): where the log-likelihood at τ² = 0 is higher, τ² is set to
    0 and ``reset`` is True (metafor warns "Fisher scoring algorithm may have gotten
    stuck at a local maximum.  Setting tau^2 = 0").  With two interior peaks the one
    reached from ``t0`` need not be the higher one, as in metafor.
    """
    m = kern.m
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f0, d0, i0 = fun(kern, np.zeros(m))
    tau2 = np.zeros(m)
    iters = np.ones(m, dtype=np.int64)
    conv = np.ones(m, dtype=bool)
    reset = np.zeros(m, dtype=bool)
    # rows with a study of zero sampling variance have infinite weights at τ² = 0:
    # the root lies above 0 and is searched from a positive start, without
    # metafor's ll0check (which it skips for non-positive variances)
    vzero = zero_variance_rows(kern)
    # a single study has τ² = 0 (its score is 0 up to rounding, which must not
    # send it searching)
    need = ((f0 > 0) | vzero) & (kern.k > 1)
    if need.any():
        # start at the closed-form estimate, or one Newton step from 0 where it is 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            start = np.where(t0 > 0, t0, -f0 / _slope(d0, i0))
        start = np.where(vzero & ~(start > 0), 1.0, start)[need]
        Kn = kern.take(need)
        r, it, c = solve_decreasing(Kn, fun, start)
        idx = np.flatnonzero(need)
        # a zero-variance row whose score stays negative down to 0 has its maximum
        # on the boundary, τ² = 0 (where its weights are infinite: the caller refuses)
        boundary = vzero[need] & ~c & (r <= start * _BOUNDARY)
        if boundary.any():
            r = np.where(boundary, 0.0, r)
            c = c | boundary
        if gain is not None:
            # the score is positive at 0, so the nearest root is a peak above the
            # likelihood at 0; one reached farther away need not be (ll0check)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                low = (gain(Kn, r) < 0.0) & ~vzero[need]
            reset[idx[low]] = True
            r = np.where(low, 0.0, r)
        tau2[need] = r
        iters[need] = it + 1
        conv[need] = c
    if gain is None or score is None:
        return tau2, iters, conv, reset
    other = np.flatnonzero(~need & (t0 > 0) & (kern.k > 1))
    if other.size == 0:
        return tau2, iters, conv, reset
    Ko = kern.take(other)
    fo, _, _ = fun(Ko, t0[other])
    up = fo > 0
    lo = t0[other].copy()
    hi = np.full(other.size, np.inf)
    # score negative at t0 too: Fisher scoring moves down from t0 and stops at the
    # first peak below it, where the score turns positive (it may dip first, as in
    # a cumulative step of dat.anand1999, so every such row is probed)
    down = np.flatnonzero(fo < 0)
    if down.size:
        od = other[down]
        g, ok = _score_grid_below(Ko.take(down), score, t0[od])
        lo[down[ok]] = g[ok]
        hi[down[ok]] = g[ok] * _GRID_RATIO
        up[down[ok]] = True
    if up.any():
        idx = other[up]
        Ku = Ko.take(up)
        r, it, c = solve_decreasing(Ku, fun, lo[up], lo0=lo[up], hi0=hi[up])
        iters[idx] += it + 1
        better = gain(Ku, r) > 0.0
        tau2[idx[better]] = r[better]
        reset[idx[~better]] = True
        conv[idx] = c | ~better
    return tau2, iters, conv, reset


#: Points below the start where the ML/REML score is probed for an interior peak:
#: t0 / 3, t0 / 9, ..., at most t0 / 3**8 (one batched evaluation).
_GRID_RATIO = 3.0
_GRID_POINTS = 8


def _score_grid_below(
    kern: Kernel, score: Callable[[Kernel, FloatArray], FloatArray], t0: FloatArray
) -> tuple[FloatArray, BoolArray]:
    """The largest grid point below ``t0`` with a positive score, per row.

    metafor's Fisher scoring from ``t0`` (score negative there) moves down, halving
    steps that would pass 0, and converges to the first peak it meets: one exists
    where the score turns positive below ``t0``.  The score is probed at
    ``t0 / 3**j`` for j = 1..8 (one evaluation of every row per point, at the cheap
    level of the score alone).  A row's peak is then bracketed by its largest
    positive point ``g`` and ``3 g`` (where the score is negative, or ``3 g = t0``).
    A positive region narrower than a factor 3, or below the last point, is not
    seen (such a row keeps τ² = 0).
    """
    m = kern.m
    g = np.zeros(m)
    ok = np.zeros(m, dtype=bool)
    for j in range(1, _GRID_POINTS + 1):
        t = t0 / _GRID_RATIO**j
        new = ~ok & (score(kern, t) > 0)
        g[new] = t[new]
        ok |= new
    return g, ok


def q_root(
    kern: Kernel, target_of: Callable[[Kernel], FloatArray], t0: FloatArray
) -> tuple[FloatArray, IntArray, BoolArray]:
    """Root of the generalised Q equation ``Q(τ²) = target`` on ``[0, ∞)`` (0 where
    ``Q(0) <= target``); ``Q`` decreases in τ² with slope ``-y'PPy``."""

    def fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        st = K.weighted(t, Need.QROOT)
        assert st.yPPy is not None
        slope = -np.maximum(st.yPPy, np.finfo(float).tiny)  # dQ/dτ² = -y'PPy
        return st.Q - target_of(K), slope, slope

    return positive_root(kern, fun, t0)[:3]
