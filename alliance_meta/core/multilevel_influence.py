"""Influence of effects on multilevel and multivariate fits: case-deletion refits
(metafor's ``cooks.distance``, ``rstudent`` and ``dfbetas`` of ``rma.mv`` fits, with or
without ``cluster =``, and leave-one-cluster-out refits) and the estimator's weights
(:func:`projection`).

A deletion removes a set of effects (one effect, or every effect of a cluster) and
refits the model to the rest: the variance components are re-estimated (metafor's
``reestimate = TRUE``) by the fitter of :mod:`alliance_meta.core.multilevel`
(:func:`estimate_components`, which the full fit uses too), each refit laid out in
its own padded blocks (:func:`subset_problem`) and warm-started at the full fit's
estimates next to the global scan's starts, so every refit reaches the global
maximum.  The quantities that do not need a refit are batched over all deletions:
``Var(β̂)`` of the full data at every deleted fit's components is one call of
:func:`~alliance_meta.core.multilevel.evaluate` with one parameter point per
deletion.

As metafor's refits (``rma.mv(..., subset = !incl)``), a refit

* drops design columns that the remaining effects leave redundant (R's
  ``lm`` pivoting, in column order), whose coefficients are then missing;
* fixes at 0 the variance of a nested level left with a single cluster ("Single-level
  factor(s) found in 'random' argument"), and the correlations that the remaining
  effects cannot inform (CS/HCS when every cluster holds one effect; UN pairs of
  outcomes that never share a cluster);
* keeps the components that the full fit fixed.

References
----------
Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics for
meta-analysis. *Research Synthesis Methods*, 1(2), 112-125; metafor 3.8-1's
``cooks.distance.rma.mv``, ``rstudent.rma.mv`` and ``dfbetas.rma.mv``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

from alliance_meta.core import blocks as bl
from alliance_meta.core import multilevel as ml

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "ComponentFit",
    "DeletionFits",
    "ModelData",
    "deletion_fits",
    "estimable_columns",
    "estimate_components",
    "gather_blocks",
    "marginal_diagonal",
    "projection",
    "subset_problem",
]

#: R's ``lm`` tolerance of its pivoting QR (``qr(X, tol = 1e-7)``): a column whose
#: remaining norm after projecting out the earlier ones is below ``tol`` times its
#: own norm is redundant.
_LM_TOL = 1e-7


@dataclass(frozen=True)
class ComponentFit:
    """Variance components at the maximum, in reported units (variances,
    correlations), the solution, and the components that did not settle."""

    theta: FloatArray
    solution: ml.Solution
    unsettled: tuple[int, ...]


def _chol_start(st: ml.Structure, theta: FloatArray, scale: float) -> FloatArray:
    """A reported ``(σ², τ², ρ)`` point as the Cholesky parameters of ``G`` (UN),
    with ``G`` lifted to positive definite where it is singular."""
    cov = ml.Structure(st.n_sigma, "UN", st.n_outcomes)
    G = cov.G_matrix(np.nan_to_num(theta))
    w, U = np.linalg.eigh(0.5 * (G + G.T))
    w = np.maximum(w, 1e-8 * max(float(w.max()), scale))
    C = np.linalg.cholesky((U * w) @ U.T)
    chol = dataclasses.replace(st, chol=True, psd=False, sd=False)
    out = np.concatenate([theta[: st.n_sigma], np.zeros(chol.n_params - st.n_sigma)])
    for i, (r, c) in enumerate(chol.chol_pairs):
        out[st.n_sigma + i] = C[r, c]
    return out


def estimate_components(
    problem: ml.Problem,
    reml: bool,
    fixed: FloatArray,
    warm: FloatArray | None = None,
) -> ComponentFit:
    """Maximise the (restricted) likelihood over the free components.

    Parameters
    ----------
    problem : Problem
        As built by :func:`~alliance_meta.core.multilevel.build_problem` (for HCS and
        UN with ``sd``; UN with ``q ≥ 3`` with ``psd``).
    reml : bool
    fixed : (q,) array
        Fixed values in reported units, NaN where estimated.
    warm : (q,) array, optional
        An extra start in reported units (e.g. the full fit's estimates for a
        refit), tried beside the global scan's starts.

    Notes
    -----
    UN is maximised over every positive semi-definite ``G`` through its Cholesky
    factor (metafor's default for UN); correlations fixed at 0 because their outcome
    pairs never share a cluster do not enter ``M``, so the factor is left free for
    them and the fixed values are reported.  The other structures are maximised in
    their own parameters (standard deviations for HCS/UN with ``sd``).
    """
    st = problem.structure
    L = st.n_sigma
    if st.struct == "UN":
        chol = dataclasses.replace(st, chol=True, psd=False, sd=False)
        cproblem = dataclasses.replace(problem, structure=chol)
        cfixed = np.concatenate([fixed[:L], np.full(chol.n_params - L, np.nan)])
        starts = None
        if warm is not None:
            w0 = _chol_start(st, np.where(np.isnan(fixed), warm, fixed), problem.scale)
            starts = np.vstack([w0[None], ml.initial_points(cproblem, reml, cfixed)])
        sol = ml.maximise(cproblem, reml, cfixed, starts)
        theta = ml.to_covariance_parameters(chol, sol.theta)
        theta = np.where(np.isnan(fixed), theta, fixed)
        unsettled = () if sol.converged else tuple(int(i) for i in np.flatnonzero(np.isnan(fixed)))
        return ComponentFit(theta, sol, unsettled)
    ifixed = st.to_internal(fixed)
    starts = None
    if warm is not None:
        w0 = st.to_internal(np.where(np.isnan(fixed), warm, fixed))
        w0 = np.clip(w0, st.lower, st.upper)
        starts = np.vstack([w0[None], ml.initial_points(problem, reml, ifixed)])
    sol = ml.maximise(problem, reml, ifixed, starts)
    return ComponentFit(st.to_report(sol.theta), sol, tuple(int(i) for i in sol.unsettled))


@dataclass(frozen=True)
class ModelData:
    """The flat data of a fitted model, from which subsets are laid out.

    Attributes
    ----------
    y : (k,)
    X : (k, p)
        The design as fitted.
    V : scipy.sparse csr matrix or (k,) diagonal
    level_codes : sequence of (k,) int arrays
        Nested levels' cluster codes, outer first (level ``l`` codes identify the
        combination of levels ``1..l``).
    structure : Structure
        As in the fit's problem.
    fixed : (q,)
        The fit's fixed components (reported units), NaN where estimated.
    cluster_codes, outcome_codes : (k,) int arrays or None
        The ``~ outcome | cluster`` term.
    """

    y: FloatArray
    X: FloatArray
    V: sparse.csr_matrix | FloatArray
    level_codes: Sequence[IntArray]
    structure: ml.Structure
    fixed: FloatArray
    cluster_codes: IntArray | None = None
    outcome_codes: IntArray | None = None


def estimable_columns(X: FloatArray) -> BoolArray:
    """The columns R's ``lm`` keeps (``coef.na`` False): in column order, a column is
    dropped when its part orthogonal to the kept earlier columns has a norm below
    ``1e-7`` times its own norm (a column of zeros is always dropped)."""
    p = X.shape[1]
    keep = np.zeros(p, dtype=bool)
    Q = np.zeros((X.shape[0], 0))
    for j in range(p):
        x = X[:, j]
        nx = float(np.linalg.norm(x))
        if nx == 0.0:
            continue
        r = x - Q @ (Q.T @ x)
        r = r - Q @ (Q.T @ r)  # twice is enough (Gram-Schmidt re-orthogonalisation)
        nr = float(np.linalg.norm(r))
        if nr > _LM_TOL * nx:
            keep[j] = True
            Q = np.column_stack([Q, r / nr])
    return keep


def _refactor(codes: IntArray) -> IntArray:
    _, inv = np.unique(codes, return_inverse=True)
    return np.asarray(inv.ravel(), dtype=np.int64)


def subset_fixed(data: ModelData, keep: BoolArray) -> FloatArray:
    """The fixed components of the refit on ``keep``: the fit's, plus 0 for a level
    left with one cluster and for correlations the subset cannot inform, and NaN
    (unidentified, fixed at 0 internally) for outcomes absent from the subset."""
    st = data.structure
    fixed: FloatArray = np.array(data.fixed, dtype=np.float64, copy=True)
    for j, codes in enumerate(data.level_codes):
        if np.unique(codes[keep]).size == 1 and np.isnan(fixed[j]):
            fixed[j] = 0.0
    if st.struct is None:
        return fixed
    assert data.cluster_codes is not None and data.outcome_codes is not None
    cc, oc = data.cluster_codes[keep], data.outcome_codes[keep]
    q = st.n_outcomes
    L = st.n_sigma
    r0 = L + st.n_tau2
    present = np.zeros(q, dtype=bool)
    present[np.unique(oc)] = True
    pair = np.zeros((q, q), dtype=bool)
    cl = _refactor(cc)
    member = np.zeros((int(cl.max()) + 1, q), dtype=bool)
    member[cl, oc] = True
    for row in np.unique(member, axis=0):
        idx = np.flatnonzero(row)
        pair[np.ix_(idx, idx)] = True
    if st.struct != "CS":
        for a in range(q):
            if not present[a]:
                fixed[L + a] = 0.0  # does not enter M: its value is immaterial
    if st.struct in ("CS", "HCS"):
        if q == 1 or int(cl.max()) + 1 == int(keep.sum()) or not any(
            pair[r, c] for r, c in st.pairs
        ):
            fixed[r0] = 0.0 if np.isnan(fixed[r0]) else fixed[r0]
    elif st.struct == "UN":
        for m, (r, c) in enumerate(st.pairs):
            if not pair[r, c] and np.isnan(fixed[r0 + m]):
                fixed[r0 + m] = 0.0
    return fixed


def subset_problem(data: ModelData, keep: BoolArray, columns: BoolArray) -> ml.Problem:
    """The problem of the effects ``keep`` and the design columns ``columns``, in its
    own padded blocks."""
    idx = np.flatnonzero(keep)
    if isinstance(data.V, np.ndarray):
        Vs: sparse.csr_matrix | FloatArray = data.V[idx]
    else:
        Vs = sparse.csr_matrix(data.V[idx][:, idx])
    lev = [_refactor(c[idx]) for c in data.level_codes]
    cc = None if data.cluster_codes is None else _refactor(data.cluster_codes[idx])
    oc = None if data.outcome_codes is None else data.outcome_codes[idx]
    return ml.build_problem(
        data.y[idx], data.X[np.ix_(idx, np.flatnonzero(columns))], Vs, lev, data.structure,
        cc, oc,
    )


@dataclass(frozen=True)
class DeletionFits:
    """The refits of ``n`` deletions (NaN where a refit could not be made).

    Attributes
    ----------
    theta : (n, q)
        Variance components (reported units); NaN for an outcome absent from the
        subset (its ``τ²`` and correlations are not identified).
    beta : (n, p)
        Coefficients; NaN for columns the subset leaves redundant.
    vb : (n, p, p)
        Their covariance (NaN rows/columns for redundant columns).
    ll : (n,)
        Maximised (restricted) log-likelihood of the refit.
    QE : (n,)
        Test of residual heterogeneity of the subset.
    trace_P : (n,)
        ``tr(P_V)`` of the subset (for the typical sampling variance of I²).
    k, p : (n,) int
        Effects and estimable coefficients of each refit.
    fitted : (n,) bool
        Whether a refit was made (False when fewer effects than coefficients remain).
    converged : (n,) bool
        Whether its components converged (False where not fitted).
    complete : (n,) bool
        Fitted with every coefficient estimable (metafor's diagnostics are NA
        otherwise).
    """

    theta: FloatArray
    beta: FloatArray
    vb: FloatArray
    ll: FloatArray
    QE: FloatArray
    trace_P: FloatArray
    k: IntArray
    p: IntArray
    fitted: BoolArray
    converged: BoolArray
    complete: BoolArray


def deletion_fits(
    data: ModelData, reml: bool, delete: BoolArray, theta_hat: FloatArray
) -> DeletionFits:
    """Refit the model without each row's effects.

    Parameters
    ----------
    data : ModelData
    reml : bool
    delete : (n, k) bool
        Row ``g`` marks the effects deleted by deletion ``g``.
    theta_hat : (q,)
        The full fit's components (reported units): every refit is warm-started
        there, beside the global scan's starts (:func:`estimate_components`).
    """
    n, k = delete.shape
    p = data.X.shape[1]
    q = data.structure.n_params
    theta = np.full((n, q), np.nan)
    beta = np.full((n, p), np.nan)
    vb = np.full((n, p, p), np.nan)
    ll = np.full(n, np.nan)
    QE = np.full(n, np.nan)
    trP = np.full(n, np.nan)
    ks = (k - delete.sum(axis=1)).astype(np.int64)
    ps = np.zeros(n, dtype=np.int64)
    fitted = np.zeros(n, dtype=bool)
    converged = np.zeros(n, dtype=bool)
    for g in range(n):
        keep = ~delete[g]
        cols = estimable_columns(data.X[keep])
        pg = int(cols.sum())
        ps[g] = pg
        if ks[g] <= pg or pg == 0:
            continue
        problem = subset_problem(data, keep, cols)
        fixed = subset_fixed(data, keep)
        est = estimate_components(problem, reml, fixed, warm=theta_hat)
        ev = est.solution.evaluation
        ci = np.flatnonzero(cols)
        beta[g, ci] = ev.beta[0]
        vb[g, ci[:, None], ci[None, :]] = ev.vb[0]
        th = est.theta.copy()
        if data.structure.struct is not None:
            th[_absent_components(data, keep)] = np.nan
        theta[g] = th
        ll[g] = est.solution.ll
        ss = ml.sampling_stats(problem)
        QE[g] = ss.QE
        trP[g] = ss.trace_P
        fitted[g] = True
        converged[g] = est.solution.converged
    complete = fitted & (ps == p)
    return DeletionFits(theta, beta, vb, ll, QE, trP, ks, ps, fitted, converged, complete)


def _absent_components(data: ModelData, keep: BoolArray) -> BoolArray:
    """Components of outcomes absent from the subset (not identified there)."""
    st = data.structure
    assert data.outcome_codes is not None
    q = st.n_outcomes
    present = np.zeros(q, dtype=bool)
    present[np.unique(data.outcome_codes[keep])] = True
    out = np.zeros(st.n_params, dtype=bool)
    L = st.n_sigma
    if st.struct != "CS":
        out[L : L + q] = ~present
    r0 = L + st.n_tau2
    if st.struct == "UN":
        for m, (r, c) in enumerate(st.pairs):
            out[r0 + m] = not (present[r] and present[c])
    return out


def gather_blocks(layout: bl.BlockLayout, Mb: Sequence[FloatArray], idx: IntArray) -> FloatArray:
    """The dense ``m × m`` submatrix of a block-diagonal matrix (given as padded
    buckets ``Mb`` of ``layout``) for the effects ``idx``; 0 between blocks."""
    idx = np.asarray(idx, dtype=np.int64)
    blk = layout.block_of[idx]
    same = blk[:, None] == blk[None, :]
    out = np.zeros((idx.size, idx.size))
    ii, jj = np.nonzero(same)
    bk = layout.bucket_of[blk[ii]]
    slot = layout.slot_of[blk[ii]]
    pi, pj = layout.pos[idx[ii]], layout.pos[idx[jj]]
    for b in np.unique(bk):
        sel = bk == b
        out[ii[sel], jj[sel]] = Mb[int(b)][slot[sel], pi[sel], pj[sel]]
    return out


def projection(problem: ml.Problem, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The estimator's weight matrix and the leverages at the components ``theta``.

    Parameters
    ----------
    problem : Problem
    theta : (q,)
        Components in reported units.

    Returns
    -------
    A : (p, k)
        ``A = (X'WX)⁻¹X'W`` with ``W = M⁻¹``, in the order of the effects: ``β̂ = A y``,
        so ``A[j, i]`` is effect ``i``'s weight in coefficient ``j`` (each row of an
        intercept-only model sums to 1: the shares ``1'W / 1'W1`` of the pooled
        estimate, metafor's ``weights(fit, type = "rowsum")``).
    hat : (k,)
        The diagonal of the hat matrix ``H = XA`` (metafor's ``hatvalues``).

    Notes
    -----
    ``W`` is the inverse of each block of ``M``; no ``k × k`` matrix is formed.  With
    ``X = QR`` (the problem's orthonormal basis), ``A = R⁻¹(Q'WQ)⁻¹Q'W`` and
    ``H = Q(Q'WQ)⁻¹Q'W``, which stay accurate for a badly scaled design (a year
    next to the intercept).
    """
    layout = problem.layout
    k, p = problem.k, problem.p
    Mb = ml.marginal_covariance(problem, theta)
    WQ_flat = np.zeros((k, p))
    Q_flat = np.zeros((k, p))
    qtwq = np.zeros((p, p))
    for Mk, Qk, b in zip(Mb, problem.X, layout.buckets, strict=True):
        L, _ = bl.cholesky(Mk)
        WQ = np.matmul(bl.spd_inverse(L), Qk)  # (n, b, p); zero rows on padding
        qtwq += np.einsum("nbi,nbj->ij", Qk, WQ)
        WQ_flat[b.index[b.mask]] = WQ[b.mask]
        Q_flat[b.index[b.mask]] = Qk[b.mask]
    AQ = np.linalg.solve(qtwq, WQ_flat.T)  # (Q'WQ)⁻¹Q'W
    A: FloatArray = problem.Rinv @ AQ
    hat: FloatArray = np.einsum("ij,ji->i", Q_flat, AQ)
    return A, hat


def marginal_diagonal(problem: ml.Problem, theta: FloatArray) -> FloatArray:
    """The diagonal of the marginal covariance ``M`` at ``theta`` (reported units),
    in the order of the effects."""
    out = np.empty(problem.k)
    for Mk, b in zip(ml.marginal_covariance(problem, theta), problem.layout.buckets,
                     strict=True):
        out[b.index[b.mask]] = np.diagonal(Mk, axis1=1, axis2=2)[b.mask]
    return out
