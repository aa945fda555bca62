"""Safeguarded root finding on ``[0, ∞)``, vectorised over the rows of a kernel.

The iterative τ² estimators (ML, REML, PM, EB, PMM) and the Q-profile interval
solve a decreasing estimating equation ``f(τ²) = 0`` for every analysis at once:
Newton (or Fisher-scoring) steps kept inside a sign-change bracket, with bisection
where a step would leave it, so that no row can oscillate or diverge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from alliance_meta.core.arrays import BoolArray, FloatArray, IntArray
from alliance_meta.core.kernel import Kernel, Need

__all__ = [
    "MAXITER",
    "RTOL",
    "Profile",
    "RootFun",
    "fisher_scoring",
    "global_max",
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
    gain: Callable[[Kernel, FloatArray, npt.NDArray[np.intp]], FloatArray] | None = None,
) -> tuple[FloatArray, IntArray, BoolArray, FloatArray]:
    """Root of a decreasing ``f`` on ``[0, inf)``; 0 where ``f(0) <= 0``.

    Returns ``(tau2, iterations, converged, gains)``; ``gains`` is ``gain`` at the
    returned τ² (NaN without ``gain``).

    With ``gain`` (the log-likelihood above that at τ² = 0, of a kernel holding the
    given rows of ``kern``), for ML and REML, this is
    the local search :func:`global_max` starts from: the root reached from the start
    ``t0`` where the score is positive at 0, and where the score is negative at 0
    but positive at ``t0``, the root above ``t0``; a root whose likelihood is below
    that at τ² = 0 gives way to 0 (metafor's ``ll0check``).
    """
    m = kern.m
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f0, d0, i0 = fun(kern, np.zeros(m))
    tau2 = np.zeros(m)
    gains = np.zeros(m) if gain is not None else np.full(m, np.nan)
    iters = np.ones(m, dtype=np.int64)
    conv = np.ones(m, dtype=bool)
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
        ineed = np.flatnonzero(need)
        Kn = kern if ineed.size == m else kern.take(ineed)
        r, it, c = solve_decreasing(Kn, fun, start)
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
                g = gain(Kn, r, ineed)
            low = (g < 0.0) & ~vzero[need]
            r = np.where(low, 0.0, r)
            gains[need] = np.where(low, 0.0, g)
        tau2[need] = r
        iters[need] = it + 1
        conv[need] = c
    if gain is None:
        return tau2, iters, conv, gains
    other = np.flatnonzero(~need & (t0 > 0) & (kern.k > 1))
    if other.size == 0:
        return tau2, iters, conv, gains
    Ko = kern.take(other)
    fo, _, _ = fun(Ko, t0[other])
    up = np.flatnonzero(fo > 0)
    if up.size:
        idx = other[up]
        Ku = Ko.take(up)
        lo = t0[idx]
        r, it, c = solve_decreasing(Ku, fun, lo, lo0=lo)
        iters[idx] += it + 1
        g = gain(Ku, r, idx)
        better = g > 0.0
        tau2[idx[better]] = r[better]
        gains[idx[better]] = g[better]
        conv[idx] = c | ~better
    return tau2, iters, conv, gains


def fisher_scoring(
    kern: Kernel,
    fun: RootFun,
    t0: FloatArray,
    threshold: float = 1e-5,
    maxiter: int = 100,
) -> tuple[FloatArray, BoolArray]:
    """metafor's own Fisher scoring for ML/REML, step for step (``rma.uni``).

    From ``max(0, t0)``: ``τ² += f / information``, the step halved while it would
    make τ² negative, until a step changes τ² by at most ``threshold`` (metafor's
    default control: ``threshold = 1e-5``, ``maxiter = 100``).  Unlike
    :func:`solve_decreasing` the steps are not kept in a bracket, so the iteration
    can pass a peak, as metafor's does; it is used to tell where metafor stops.
    Returns ``(tau2, converged)``.
    """
    m = kern.m
    t = np.maximum(np.asarray(t0, dtype=float), 0.0).copy()
    conv = np.zeros(m, dtype=bool)
    active = np.arange(m)
    K = kern
    for _ in range(maxiter + 1):
        f, _, fisher = fun(K, t[active])
        with np.errstate(divide="ignore", invalid="ignore"):
            adj = f / -fisher
        adj = np.where(np.isfinite(adj), adj, 0.0)
        cur = t[active]
        neg = cur + adj < 0.0
        if neg.any():
            adj = np.where(neg, _halved(adj, cur), adj)
        new = cur + adj
        t[active] = new
        done = np.abs(adj) <= threshold
        conv[active[done]] = True
        keep = ~done
        if not keep.any():
            break
        active = active[keep]
        K = K.take(keep)
    return t, conv


def _halved(adj: FloatArray, cur: FloatArray) -> FloatArray:
    """``adj`` halved until ``cur + adj >= 0``, at most 1100 times (metafor's step
    halving, as a loop of halvings would give it), at once.

    For ``adj < 0 <= cur``: the fewest halvings ``h`` with ``cur + adj/2^h >= 0`` are
    ``ceil(log2(-adj) - log2(cur))``, give or take one for rounding (halving is
    exact); beyond 1100 (``cur = 0`` among them) the loop stops at 1100.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        h = np.ceil(np.log2(-adj) - np.log2(cur))
    far = ~(h <= _HALVINGS)  # NaN (adj >= 0) is settled below
    hc = np.where(far, _HALVINGS, np.maximum(h, 0.0)).astype(np.int64)
    out = np.ldexp(adj, -hc)
    # rounding of the logarithms: one halving more or less
    more = ~far & (cur + out < 0.0)
    out = np.where(more, out / 2.0, out)
    less = ~far & (hc > 0) & ~more & (cur + 2.0 * out >= 0.0)
    out = np.where(less, 2.0 * out, out)
    return np.where(adj < 0.0, out, adj)


#: Most halvings of a Fisher-scoring step (:func:`_halved`).
_HALVINGS = 1100


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

    tau2, it, conv, _ = positive_root(kern, fun, t0)
    return tau2, it, conv


# ---------------------------------------------------------------------------
# The global maximum of a profiled (restricted) log-likelihood on [0, ∞)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A profiled (restricted) log-likelihood at one τ² per row, in parts.

    ``ℓ(τ²) - ℓ(0) = -½ (dL + Q - Q(0) + D - D(0))`` with ``dL = Σ log(1 + τ²/v)``
    (concave and increasing in τ², with derivative ``S1 = Σw``), ``Q = y'Py``
    (convex, decreasing) and, for REML, ``D = log|X'WX|`` (convex, decreasing; 0 for
    ML).  ``dL + D`` is concave: ``Σ log(v + τ²) + log|X'WX| = log|X'X| +
    log|Z'(V + τ²I)Z|`` with ``Z`` an orthonormal basis of the complement of ``X``
    (the determinant identity behind REML), the log-determinant of an affine
    function; its derivative is ``S1 + dD`` (``tr(P)`` for REML) and ``S2`` bounds
    minus its second derivative from ``t`` on (``Σw²`` for ML, ``tr(PP) <= Σw²`` for
    REML; both decrease).
    ``dQ`` and ``dD`` are the derivatives of ``Q`` and ``D``; ``score`` has the sign
    of ``dℓ/dτ²`` (it is ``-d(dL + Q + D)/dτ²``).  ``Q2 = 2 y'PPPy`` is the second
    derivative of ``Q``, which decreases: with ``P = Z(Z'VZ + τ²I)⁻¹Z'``,
    ``y'PPPy = u'(M + τ²I)⁻³u`` (``u = Z'y``, ``M = Z'VZ``), decreasing in each
    eigen-component of ``M``.
    """

    dL: FloatArray
    S1: FloatArray
    S2: FloatArray
    Q: FloatArray
    dQ: FloatArray
    D: FloatArray
    dD: FloatArray
    score: FloatArray
    Q2: FloatArray


_PROFILE_FIELDS = ("dL", "S1", "S2", "Q", "dQ", "D", "dD", "score", "Q2")

#: ``profile(kernel, t) -> Profile``.
ProfileFun = Callable[[Kernel, FloatArray], Profile]

#: Most rounds of cell refinement before a row is reported as not certified.
GLOBAL_ROUNDS = 100
#: Relative distance below which two τ² values are one point.
_NEAR = 1e-9
#: Most open cells of one row (beyond, the row is reported as not certified).
_MAX_CELLS = 2048
#: The first points beside a start ``t`` inside ``(0, τ_c)``: ``t(1 ± _NEIGHBOUR)``
#: (the cells between them and ``t`` are mostly convex: settled by
#: :func:`_second_order_bound`).
_NEIGHBOUR = 0.3
#: With at most this many rows, a geometric grid ``τ_c 2^-j`` (``j = 1.._GRID_N``)
#: joins the first points: for few rows a round costs its calls, not its points.
_DENSE_M = 64
_GRID_N = 12
#: Cells split into :data:`_SPLIT` at once when at most :data:`_SPLIT_CELLS` are
#: split in a round (fewer rounds where calls, not points, cost), else halved.
_SPLIT = 8
_SPLIT_CELLS = 64
#: ... and both only while a round's extra points touch at most this many study
#: cells (rows x studies): with many studies per row (k = 60,000 in one analysis)
#: a point costs its k terms, not a call, and the grid made REML 3.5x slower.
_DENSE_CELLS = 8192


class _Points:
    """Evaluated points, flat over rows: row, τ², the profile and the gain there."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.row = np.empty(capacity, np.intp)
        self.t = np.empty(capacity)
        self.gain = np.empty(capacity)
        #: whether the profile of a point has been evaluated (else only t and gain)
        self.real = np.empty(capacity, dtype=bool)
        self.prof = {f: np.empty(capacity) for f in _PROFILE_FIELDS}

    def _grow(self, size: int) -> None:
        if size > self.t.size:
            cap = max(2 * self.t.size, size)
            self.row = np.resize(self.row, cap)
            self.t = np.resize(self.t, cap)
            self.gain = np.resize(self.gain, cap)
            self.real = np.resize(self.real, cap)
            self.prof = {f: np.resize(a, cap) for f, a in self.prof.items()}

    def add(
        self, row: npt.NDArray[np.intp], t: FloatArray, prof: Profile | None, gain: FloatArray
    ) -> npt.NDArray[np.intp]:
        n, k = self.n, row.size
        self._grow(n + k)
        self.row[n : n + k] = row
        self.t[n : n + k] = t
        self.gain[n : n + k] = gain
        self.real[n : n + k] = prof is not None
        if prof is not None:
            for f in _PROFILE_FIELDS:
                self.prof[f][n : n + k] = getattr(prof, f)
        self.n = n + k
        return np.arange(n, n + k)

    def fill(self, ix: npt.NDArray[np.intp], prof: Profile) -> None:
        """Store the evaluated profile of the (virtual) points ``ix``."""
        for f in _PROFILE_FIELDS:
            self.prof[f][ix] = getattr(prof, f)
        self.real[ix] = True


def global_max(
    kern: Kernel,
    t_start: FloatArray,
    fun: RootFun,
    profile: ProfileFun,
    g_start: FloatArray | None = None,
    p_zero: Profile | None = None,
) -> tuple[FloatArray, BoolArray, BoolArray, IntArray]:
    """The global maximum on ``[0, ∞)`` of a profiled (restricted) log-likelihood.

    Returns ``(tau2, moved, certified, evaluations)``: per row the τ² of the highest
    likelihood found, whether it is higher than at ``t_start`` (beyond round-off),
    whether every τ² was proven not to have a higher likelihood (beyond round-off),
    and how many points were evaluated.

    ``t_start`` is the local maximum (or 0) a local search reached, and ``g_start``
    (optional) the likelihood gain there over τ² = 0, which saves evaluating it;
    ``fun`` is the score function of :func:`solve_decreasing`; ``profile`` gives the
    parts of the likelihood (:class:`Profile`), and ``p_zero`` (optional) its value
    at τ² = 0 for every row.

    Notes
    -----
    *Where the likelihood is unimodal.*  The score is ``½(A - B)`` with
    ``A = y'PPy`` and ``B = tr(P)`` (REML) or ``Σw`` (ML).  With ``z = Py``,
    ``d log A/dτ² = -2 z'Pz/z'z <= -2 w_min`` (the non-zero eigenvalues of ``P``
    lie between the least and the largest weight) and ``d log B/dτ² >= -w_max``, so
    ``A/B`` decreases wherever ``w_max < 2 w_min``, that is for
    ``τ² > τ_c = v_max - 2 v_min``.  There the score changes sign at most once,
    from + to -: on ``[τ_c, ∞)`` the likelihood is largest at ``τ_c`` or at the one
    root above it.  Rows whose variances differ by less than a factor 2 (``τ_c <= 0``)
    are unimodal and need nothing more; for the others the root above ``τ_c`` is
    solved for where the score is positive at ``τ_c``.

    *Below τ_c*: branch and bound over cells of ``[0, τ_c]``, batched over rows and
    cells, adapted to each row's own points (no grid is fixed in advance, but for
    at most :data:`_DENSE_M` rows a geometric one joins the first points).  A cell
    is discarded when the likelihood on it is proven not to exceed the best
    likelihood found (plus round-off): it is monotone on the cell and its ends are
    not higher (:func:`_monotone`), or an upper bound of it is not higher
    (:func:`_cell_bound`: to second order, from ``f'' >= Q2(b) - S2(a)``, see
    :func:`_second_order_bound`; to first order from the concavity of ``dL + D``
    and the convexity of ``Q``, in τ² and in ``1/(v_min + τ²)``; see
    :class:`Profile`).  Any other cell is split (at its geometric mean, or at
    ``b/8`` when ``a = 0``; into :data:`_SPLIT` cells at once when few cells are
    left), or, where the score is positive at ``a`` and negative at ``b`` (a local
    maximum lies inside), searched by :func:`solve_decreasing`; a higher maximum
    replaces the best one.  The cells touching the best maximum are discarded
    like any other: the second-order bound settles them once they are narrow
    enough for the likelihood to be concave on them (every discarded cell is
    bounded; no cell is accepted on its width).  The initial points are ``0``,
    ``τ_c``, and ``t(1 - δ), t, t(1 + δ)`` (``δ =`` :data:`_NEIGHBOUR`) around a
    start ``t`` below ``τ_c``.
    """
    m = kern.m
    tau_best = np.maximum(np.asarray(t_start, dtype=float), 0.0).copy()
    moved = np.zeros(m, dtype=bool)
    certified = np.ones(m, dtype=bool)
    evals = np.zeros(m, dtype=np.int64)
    V = kern.V
    vmin = np.min(V, axis=1)
    vmax = np.max(np.where(np.isfinite(V), V, 0.0), axis=1)
    tc_all = vmax - 2.0 * vmin
    act = np.flatnonzero(tc_all > 0)
    if act.size == 0:
        return tau_best, moved, certified, evals
    K = kern if act.size == m else kern.take(act)
    ma = act.size
    rows = np.arange(ma)
    tc = tc_all[act]
    t0 = tau_best[act]
    if p_zero is None:
        p0 = profile(K, K.zeros)
    elif act.size == m:
        p0 = p_zero
    else:
        p0 = Profile(*(getattr(p_zero, f)[act] for f in _PROFILE_FIELDS))
    Q0, D0 = p0.Q, p0.D
    # round-off of a likelihood difference: the gain is a sum of terms of the size
    # of Q(0), D(0) and log-weights
    tol = 1e-10 + 1e-13 * (np.abs(Q0) + np.abs(D0) + K.k)
    pts = _Points(6 * ma + 16)
    ev = np.zeros(ma, dtype=np.int64)

    def evaluate(r: npt.NDArray[np.intp], t: FloatArray) -> npt.NDArray[np.intp]:
        if r.size == 0:
            return np.empty(0, np.intp)
        ev[:] += np.bincount(r, minlength=ma)
        every = r.size == ma and bool(np.array_equal(r, rows))
        pr = profile(K if every else K.take(r), t)
        g = -0.5 * (pr.dL + (pr.Q - Q0[r]) + (pr.D - D0[r]))
        return pts.add(r, t, pr, g)

    i0 = pts.add(rows, np.zeros(ma), p0, np.zeros(ma))
    # the initial points: τ_c; t/2 and 2t (if below τ_c) around a start t below
    # τ_c.  The start itself enters with its gain only (evaluated later if a cell
    # needs its profile).
    ir = np.flatnonzero(t0 > 0)
    inner = np.flatnonzero((t0 > 0) & (t0 < tc))
    width = int(K.V.shape[-1])
    er, et = _initial_points(t0, tc, inner, ma * width <= _DENSE_CELLS)
    ix_all = evaluate(np.concatenate([rows, er]), np.concatenate([tc, et]))
    ic, iextra = ix_all[:ma], ix_all[ma:]
    if g_start is None:
        it_ = evaluate(ir, t0[ir])
    else:
        it_ = pts.add(ir, t0[ir], None, np.asarray(g_start, dtype=float)[act][ir])
    best = np.zeros(ma)
    ibest = i0.copy()
    tb = np.zeros(ma)
    up = pts.gain[it_] > 0.0
    best[ir[up]] = pts.gain[it_[up]]
    ibest[ir[up]] = it_[up]
    tb[ir[up]] = t0[ir[up]]
    g0 = best.copy()
    # [τ_c, ∞): the maximum is at τ_c, or at the one root above it
    above = np.flatnonzero((pts.prof["score"][ic] > 0) & ~(t0 > tc * (1.0 + _NEAR)))
    if above.size:
        lo = tc[above]
        r_c, _, _ = solve_decreasing(K.take(above), fun, 2.0 * lo, lo0=lo)
        ix = evaluate(above, r_c)
        g = pts.gain[ix]
        better = g > best[above] + tol[above]
        best[above[better]] = g[better]
        ibest[above[better]] = ix[better]
        tb[above[better]] = r_c[better]
    g_ic = pts.gain[ic]
    at_c = (g_ic > best + tol) & (pts.prof["score"][ic] <= 0)
    best[at_c] = g_ic[at_c]
    ibest[at_c] = ic[at_c]
    tb[at_c] = tc[at_c]
    # the initial cells of [0, τ_c]: between consecutive points of each row
    cand = np.concatenate([i0, ic, it_[np.searchsorted(ir, inner)], iextra])
    cand = cand[np.lexsort((pts.t[cand], pts.row[cand]))]
    same = pts.row[cand[:-1]] == pts.row[cand[1:]]
    cells_a, cells_b = cand[:-1][same], cand[1:][same]
    broken = np.isnan(Q0) | np.isnan(D0)
    for _ in range(GLOBAL_ROUNDS):
        if cells_a.size:
            r = pts.row[cells_a]
            ta, tb_ = pts.t[cells_a], pts.t[cells_b]
            # cells of no width hold no more than their ends' values
            live = tb_ - ta > _NEAR * tb_
            j = np.flatnonzero(live)
            ends = np.concatenate([cells_a[j], cells_b[j]])
            unreal = ~pts.real[ends]
            if unreal.any():
                virtual = np.unique(ends[unreal])
                rv = pts.row[virtual]
                ev[:] += np.bincount(rv, minlength=ma)
                pts.fill(virtual, profile(K.take(rv), pts.t[virtual]))
            live[j] = _cell_bound(pts, cells_a[j], cells_b[j], Q0, D0, vmin[act],
                                  vmax[act], best[r[j]] + tol[r[j]])
            # a cell whose bound is not a number (non-finite data) cannot be
            # refined: its row is reported as not certified
            lost = live & np.isnan(pts.gain[cells_a] + pts.gain[cells_b])
            if lost.any():
                broken[r[lost]] = True
                live &= ~lost
            cells_a, cells_b = cells_a[live], cells_b[live]
            # a row whose open cells keep multiplying is given up (not certified):
            # memory stays bounded whatever the data
            crowd = np.bincount(pts.row[cells_a], minlength=ma) > _MAX_CELLS
            if crowd.any():
                broken |= crowd
                keep_c = ~crowd[pts.row[cells_a]]
                cells_a, cells_b = cells_a[keep_c], cells_b[keep_c]
        if cells_a.size == 0:
            break
        r = pts.row[cells_a]
        ta, tb_ = pts.t[cells_a], pts.t[cells_b]
        bracket = (pts.prof["score"][cells_a] > 0) & (pts.prof["score"][cells_b] < 0)
        # one root search per row and round at most (a row's kernel is taken once)
        solve = np.zeros(cells_a.size, dtype=bool)
        bi = np.flatnonzero(bracket)
        if bi.size:
            _, u = np.unique(r[bi], return_index=True)
            solve[bi[u]] = True
        split = ~solve
        new_a: list[npt.NDArray[np.intp]] = []
        new_b: list[npt.NDArray[np.intp]] = []
        si = np.flatnonzero(solve)
        if si.size:
            rs, lo, hi = r[si], ta[si], tb_[si]
            # start at the root of the secant through the bracket's ends
            fa = pts.prof["score"][cells_a[si]]
            fb = pts.prof["score"][cells_b[si]]
            start = lo + (hi - lo) * fa / (fa - fb)
            root, _, _ = solve_decreasing(K.take(rs), fun, start, lo0=lo, hi0=hi)
            root = np.clip(root, lo, hi)
            ix = evaluate(rs, root)
            g = pts.gain[ix]
            # a higher maximum (beyond round-off) replaces the best; rows are unique
            better = g > best[rs] + tol[rs]
            best[rs[better]] = g[better]
            ibest[rs[better]] = ix[better]
            tb[rs[better]] = root[better]
            # a root at an end of its cell is that end's own maximum (its score has
            # the wrong sign by round-off): such cells are split instead
            mid_ = (root - lo > _NEAR * root) & (hi - root > _NEAR * hi)
            new_a += [cells_a[si[mid_]], ix[mid_]]
            new_b += [ix[mid_], cells_b[si[mid_]]]
            split[si[~mid_]] = True
        pi = np.flatnonzero(split)
        if pi.size:
            a_, b_ = ta[pi], tb_[pi]
            S = _SPLIT if pi.size <= _SPLIT_CELLS and pi.size * width <= _DENSE_CELLS else 2
            if S == 2:
                mid = np.where(
                    a_ > 0, np.where(b_ > 4.0 * a_, np.sqrt(a_ * b_), 0.5 * (a_ + b_)),
                    b_ / 8.0,
                )
                ix = evaluate(r[pi], mid)
                new_a += [cells_a[pi], ix]
                new_b += [ix, cells_b[pi]]
            else:
                # S - 1 points inside each cell at once (geometric, or arithmetic
                # where the cell is narrow; towards 0 by factors of 8)
                f = np.arange(1, S)[None, :] / S
                with np.errstate(divide="ignore", invalid="ignore"):
                    geo = a_[:, None] * (b_ / a_)[:, None] ** f
                ari = a_[:, None] + (b_ - a_)[:, None] * f
                zero = b_[:, None] * 8.0 ** (f * S - S)
                mids = np.where((a_ > 0)[:, None], np.where((b_ > 4.0 * a_)[:, None], geo, ari),
                                zero)
                ix = evaluate(np.repeat(r[pi], S - 1), mids.ravel()).reshape(-1, S - 1)
                ends_a = np.concatenate([cells_a[pi][:, None], ix], axis=1)
                ends_b = np.concatenate([ix, cells_b[pi][:, None]], axis=1)
                new_a.append(ends_a.ravel())
                new_b.append(ends_b.ravel())
        cells_a = np.concatenate(new_a)
        cells_b = np.concatenate(new_b)
    cert = ~broken
    cert[pts.row[cells_a]] = False
    mv = best > g0 + tol
    tau_best[act] = np.where(mv, tb, t0)
    moved[act] = mv
    certified[act] = cert
    evals[act] = ev
    return tau_best, moved, certified, evals


def _initial_points(
    t0: FloatArray, tc: FloatArray, inner: npt.NDArray[np.intp], cheap: bool = True
) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """The first points inside ``(0, τ_c)`` besides the start: rows and τ²."""
    ti = t0[inner]
    up = ti * (1.0 + _NEIGHBOUR)
    ok = up < tc[inner] * (1.0 - _NEAR)
    rr = [inner[ok], inner]
    tt = [up[ok], ti * (1.0 - _NEIGHBOUR)]
    if t0.size <= _DENSE_M and cheap:
        g = tc[:, None] * 2.0 ** -np.arange(1.0, _GRID_N + 1.0)[None, :]
        rr.append(np.repeat(np.arange(t0.size), _GRID_N))
        tt.append(g.ravel())
    return np.concatenate(rr), np.concatenate(tt)


def _cell_bound(
    pts: _Points,
    ia: npt.NDArray[np.intp],
    ib: npt.NDArray[np.intp],
    Q0: FloatArray,
    D0: FloatArray,
    vmin: FloatArray,
    vmax: FloatArray,
    level: FloatArray,
) -> BoolArray:
    """Whether the likelihood gain may exceed ``level`` on each cell
    ``[a, b] = [t[ia], t[ib]]``: whether an upper bound of it does.

    Cells where the likelihood is monotone (:func:`_monotone`) are settled by their
    ends; on the others, three bounds, in turn (a cell is discarded by the first
    that is not above ``level``), with ``L = dL + D``:

    * to second order (:func:`_second_order_bound`), which settles most cells;
    * in τ²: ``L`` is concave (at least its chord), ``Q`` convex (at least the
      larger of its tangents at ``a`` and ``b``);
    * in ``x = 1/(v_min + τ²)``: every weight is ``x/(1 + (v - v_min) x)``, concave
      in ``x``, so ``Q`` (a minimum of sums of such terms) is concave in ``x`` (at
      least its chord), while ``L = Σ_j log(1 + λ_j x) - (k - p) log x + const``
      (``λ_j >= 0`` the eigenvalues of ``Z'(V - v_min)Z``; for ML ``Z = I``) is
      convex in ``x`` (at least the larger of its tangents, slope
      ``-(Σw + dD/dτ²) / x²``).

    With either first-order bound the gain ``-½(dL + Q + D) + const`` is at most a concave
    piecewise-linear function on the cell, whose maximum lies at an end or where
    two tangents cross.  The first is tight where τ² is small against the
    variances, the second where it is large, or the variances alike.

    On a cell ``[0, b]`` the part ``[0, τ_q]`` is left out, where the gain is at
    most ``level``: ``L >= L(0) + τ² L'(0) - τ⁴ S/2`` (``S`` the profile's ``S2``
    at 0), so with the tangent of ``Q`` at 0 the gain is at most
    ``τ² s/2 + τ⁴ S/4`` (``s`` the score), which is <= ``level`` up to
    ``τ_q = (sqrt(s² + 4 S level) - s) / S``: a flat boundary maximum (``s`` about
    0) is settled at once.
    """
    pr = pts.prof
    r = pts.row[ia]
    a, b = pts.t[ia], pts.t[ib]
    # monotone cells first (cheapest), then the bounds on the others
    over0 = ~_monotone(pr, ia, ib, a, b, vmin[r], vmax[r], pts.gain, level)
    j0 = np.flatnonzero(over0)
    if j0.size < ia.size:
        if j0.size:
            over0[j0] = _cell_bound(pts, ia[j0], ib[j0], Q0, D0, vmin, vmax, level[j0])
        return over0
    with np.errstate(divide="ignore", invalid="ignore"):
        sc0, s20 = pr["score"][ia], pr["S2"][ia]
        lev = np.maximum(level, 0.0)
        tq0 = np.where(a == 0, (np.sqrt(sc0 * sc0 + 4.0 * s20 * lev) - sc0) / s20, 0.0)
    a_eff = np.minimum(np.where(np.isfinite(tq0), tq0, 0.0), b)  # first τ² to bound
    c0 = Q0[r] + D0[r]
    # to second order first: it settles the most cells
    u3 = _second_order_bound(pr, ia, ib, a, b, np.maximum(a_eff, a), c0)
    j = np.flatnonzero(~(u3 <= level))
    over: BoolArray = np.zeros(ia.size, dtype=bool)
    if j.size:
        over[j] = _first_order_bounds(pr, ia[j], ib[j], a[j], b[j], a_eff[j], c0[j],
                                      vmin[r[j]], level[j])
    return over


def _first_order_bounds(
    pr: dict[str, FloatArray],
    ia: npt.NDArray[np.intp],
    ib: npt.NDArray[np.intp],
    a: FloatArray,
    b: FloatArray,
    a_eff: FloatArray,
    c0: FloatArray,
    vm: FloatArray,
    level: FloatArray,
) -> BoolArray:
    """The two first-order bounds of :func:`_cell_bound` (in τ² and in ``x``)."""
    # dL + D is concave (see Profile): one chord for both, whose large curvatures
    # cancel where one study dominates the weights
    La = pr["dL"][ia] + pr["D"][ia]
    Lb = pr["dL"][ib] + pr["D"][ib]
    Qa, Qb, dQa, dQb = (pr[f][i] for f in ("Q", "dQ") for i in (ia, ib))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # -- in τ²
        slope = (Lb - La) / (b - a)
        a_eff = np.maximum(a_eff, a)
        tq = np.minimum(np.maximum((Qb - Qa + dQa * a - dQb * b) / (dQa - dQb), a_eff), b)
        tq = np.where(np.isnan(tq), a_eff, tq)
        u1 = np.full(a.shape, -np.inf)
        for t in (a_eff, b, tq):
            lo = La + slope * (t - a) + np.maximum(Qa + dQa * (t - a), Qb + dQb * (t - b))
            u1 = np.maximum(u1, -0.5 * (lo - c0))
        over: BoolArray = ~(u1 <= level)
        if not over.any():
            return over
        # -- in x = 1/(v_min + τ²) (x decreases as τ² grows: xa > xb), for the cells
        # the first bound does not discard
        j = np.flatnonzero(over)
        a, b, La, Lb, Qa, Qb, c0, a_eff = (q[j] for q in (a, b, La, Lb, Qa, Qb, c0, a_eff))
        ia, ib = ia[j], ib[j]
        vm = vm[j]
        xa, xb = 1.0 / (vm + a), 1.0 / (vm + b)
        xa_eff = 1.0 / (vm + a_eff)  # the bound is taken on [xb, xa_eff] only
        # d(dL + D)/dx = -(Σw + dD/dτ²) / x² (tr(P) for REML), dL + D convex in x
        gLa = -(pr["S1"][ia] + pr["dD"][ia]) / (xa * xa)
        gLb = -(pr["S1"][ib] + pr["dD"][ib]) / (xb * xb)
        sQ = (Qa - Qb) / (xa - xb)
        xl = np.minimum(np.maximum((Lb - La + gLa * xa - gLb * xb) / (gLa - gLb), xb),
                        xa_eff)
        xl = np.where(np.isnan(xl), xa_eff, xl)
        u2 = np.full(a.shape, -np.inf)
        for x in (xa_eff, xb, xl):
            lo = np.maximum(La + gLa * (x - xa), Lb + gLb * (x - xb)) + Qb + sQ * (x - xb)
            u2 = np.maximum(u2, -0.5 * (lo - c0))
    over[j] = ~(u2 <= level[j])
    return over


def _second_order_bound(
    pr: dict[str, FloatArray],
    ia: npt.NDArray[np.intp],
    ib: npt.NDArray[np.intp],
    a: FloatArray,
    b: FloatArray,
    lo: FloatArray,
    c0: FloatArray,
) -> FloatArray:
    """An upper bound of the likelihood gain on each ``[lo, b] ⊆ [a, b]`` (``a, b``
    the points ``ia, ib``) from the values, slopes and curvatures at both ends.

    With ``f = dL + D + Q`` (the gain is ``-½(f - c0)``): ``-d²(dL + D)/dτ⁴`` is
    ``tr(PP)`` (REML) or ``Σw²`` (ML), which decrease, and ``d²Q/dτ⁴ = Q2``
    decreases (see :class:`Profile`), so on the cell ``f'' >= κ = Q2(b) - S2(a)``
    and ``f`` lies above both ``φ_a(t) = f(a) + f'(a)(t - a) + ½κ(t - a)²`` and
    ``φ_b(t) = f(b) + f'(b)(t - b) + ½κ(t - b)²`` (Taylor's theorem with the
    integral remainder).  ``φ_a - φ_b`` is linear: it changes sign once, at
    ``t*``, and on either side ``max(φ_a, φ_b)`` is one quadratic, whose least
    value on its piece is at an end of the piece (``lo``, ``b`` or ``t*``) or at its
    vertex (``κ > 0``).  The least of ``max(φ_a, φ_b)`` over those candidates (each
    clipped to ``[lo, b]``, which only adds values above the least) is a lower
    bound of ``f`` on ``[lo, b]``.  Its error is of third order in the width of the
    cell (``κ`` is ``f''`` up to the change of ``f''`` across it), so unlike the
    first-order bounds it settles the cells touching a local maximum (``f' = 0``,
    ``f'' > 0``) once they are narrow enough for ``κ > 0``: ``f`` is then convex on
    the cell.
    """
    dL, D, Q, score = pr["dL"], pr["D"], pr["Q"], pr["score"]
    fa = dL[ia] + D[ia] + Q[ia]
    fb = dL[ib] + D[ib] + Q[ib]
    ga, gb = -score[ia], -score[ib]
    kap = pr["Q2"][ib] - pr["S2"][ia]
    h = 0.5 * kap
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # φ_a - φ_b = fa - fb - ga a + gb b + h (a² - b²) + (ga - gb - 2h(a - b)) t
        den = ga - gb - 2.0 * h * (a - b)
        ts = (fb - fa + ga * a - gb * b - h * (a * a - b * b)) / den
        va = a - ga / kap
        vb = b - gb / kap
        best = np.full(a.shape, np.inf)
        for t in (lo, b, ts, va, vb):
            t = np.minimum(np.maximum(t, lo), b)
            t = np.where(np.isnan(t), lo, t)
            da, db = t - a, t - b
            phi = np.maximum(fa + da * (ga + h * da), fb + db * (gb + h * db))
            best = np.minimum(best, phi)
    out: FloatArray = -0.5 * (best - c0)
    return out


def _monotone(
    pr: dict[str, FloatArray],
    ia: npt.NDArray[np.intp],
    ib: npt.NDArray[np.intp],
    a: FloatArray,
    b: FloatArray,
    vmin: FloatArray,
    vmax: FloatArray,
    gain: FloatArray,
    level: FloatArray,
) -> BoolArray:
    """Cells ``[a, b] ⊆ [0, τ_c]`` on which the likelihood is monotone, with both
    ends' gains at most ``level``: the gain on them is at most ``level``.

    The score has the sign of ``A - B`` (``A = y'PPy = -dQ``, ``B = S1 + dD``, that
    is ``tr(P)`` or ``Σw``); both decrease, with ``d log A/dτ² ∈ [-2 w_max,
    -2 w_min]`` and ``d log B/dτ² >= -w_max`` (see :func:`global_max`), so for
    ``a <= t <= b``: ``A(t) <= A(a)``, ``B(t) >= B(b)``, ``B(t) >= B(a)(v_min +
    a)/(v_min + t)``, ``A(t) <= A(a)((v_max + a)/(v_max + t))²`` and the reverse
    from ``b``.  The score is negative on the cell if ``A(a) < B(b)``, or if
    ``A(a)/B(a) < (v_min + a)(v_max + b)² / ((v_min + b)(v_max + a)²)`` (the least
    over ``[a, b]`` of ``(v_min + a)(v_max + t)² / ((v_min + t)(v_max + a)²)``,
    as ``(v_max + t)²/(v_min + t)`` decreases below ``τ_c``); positive if
    ``A(b) > B(a)`` or ``A(b)/B(b) > (v_min + b)(v_max + a)² / ((v_min + a)(v_max +
    b)²)``.
    """
    Aa, Ab = -pr["dQ"][ia], -pr["dQ"][ib]
    Ba = pr["S1"][ia] + pr["dD"][ia]
    Bb = pr["S1"][ib] + pr["dD"][ib]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = (vmin + a) * (vmax + b) ** 2 / ((vmin + b) * (vmax + a) ** 2)
        neg = (Aa < Bb) | (Aa < Ba * g)
        pos = (Ab > Ba) | (Ab * g > Bb)
    out: BoolArray = (neg | pos) & (gain[ia] <= level) & (gain[ib] <= level)
    return out
