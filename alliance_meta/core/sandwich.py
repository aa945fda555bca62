"""Cluster-robust (sandwich) variance estimation: CR0, CR1 and CR2.

Pure functions over float64 arrays.  The fitted model is given by its design ``X``,
effects ``y``, coefficients ``β̂`` and the per-cluster blocks ``M_j`` of its fitted
marginal covariance (padded ``(G, b, b)`` with the effect index of each block); the
working weights are the model's own, ``W_j = M_j⁻¹``.  Everything is computed
cluster by cluster, batched over the clusters of each size (so that padding costs
nothing), and never as a dense ``k × k`` matrix.

Each cluster ``j`` is whitened by the Cholesky factor of its block, ``M_j = L_j L_j'``:
``Z_j = L_j⁻¹ X_j`` and ``ρ_j = L_j⁻¹ r_j`` with ``r = y − X β̂``.  Then the bread is
``B = (Σ_j Z_j' Z_j)⁻¹ = (X' W X)⁻¹`` and an adjustment is a per-cluster matrix
``Ã_j = L_j⁻¹ A_j L_j`` (``A_j`` the adjustment of the raw residuals, so that the
estimating-function contribution of cluster ``j`` is ``X_j' W_j A_j r_j = Z_j' Ã_j ρ_j``).

For the small-sample tests every cluster is summarised by two ``p × p`` matrices
(clubSandwich's ``G`` and ``H`` arrays, reduced): ``gram_j = B Z_j' Ã_j Ã_j' Z_j B``
and ``H_j = B Z_j' Ã_j Z_j C_B`` with ``C_B C_B' = B``.  With them the Satterthwaite
degrees of freedom and the HTZ test need no ``G × G`` matrix either.

References
----------
Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for linear
regression with multi-stage samples. *Survey Methodology*, 28(2), 169-181.

Hedges, L. V., Tipton, E., & Johnson, M. C. (2010). Robust variance estimation in
meta-regression with dependent effect size estimates. *Research Synthesis Methods*,
1(1), 39-65.

Liang, K.-Y., & Zeger, S. L. (1986). Longitudinal data analysis using generalized
linear models. *Biometrika*, 73(1), 13-22.

McCaffrey, D. F., Bell, R. M., & Botts, C. H. (2001). Generalizations of biased
reduced linearization. *Proceedings of the Annual Meeting of the American
Statistical Association*.

Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust
variance estimation and hypothesis testing in fixed effects models. *Journal of
Business & Economic Statistics*, 36(4), 672-683.

Tipton, E. (2015). Small sample adjustments for robust variance estimation with
meta-regression. *Psychological Methods*, 20(3), 375-393.

Tipton, E., & Pustejovsky, J. E. (2015). Small-sample adjustments for tests of
moderators and model fit using robust variance estimation in meta-regression.
*Journal of Educational and Behavioral Statistics*, 40(6), 604-634.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt

from alliance_meta.core.inference import (
    CoefTests,
    chi2_sf,
    coef_inference,
    f_sf,
    quadratic_form,
    wald_test,
)
from alliance_meta.exceptions import ModelSpecificationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CRType = Literal["CR0", "CR1", "CR2"]
DfKind = Literal["satterthwaite", "clusters"]

__all__ = [
    "ADJUSTMENTS",
    "Adjustment",
    "CRType",
    "ClusterWald",
    "Sandwich",
    "Whitened",
    "chi2_cluster_test",
    "cluster_coef_tests",
    "cluster_f_test",
    "cluster_sandwich",
    "htz_test",
    "satterthwaite_df",
]

#: Eigenvalues of ``G_j`` (CR2) below ``EIG_TOL · (tr M_j)²`` and of the tested
#: coefficients' correlation-scaled ``Ω`` (HTZ) below ``EIG_TOL · λ_max`` count as
#: zero (a Moore-Penrose power), as clubSandwich's ``matrix_power`` does with an
#: absolute 1e-12; relative here, so that the result does not depend on the units.
EIG_TOL = 1e-12


# ---------------------------------------------------------------------------
# The adjustment registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Whitened:
    """The clusters of one size ``s``, whitened by their blocks' Cholesky factors.

    Attributes
    ----------
    L : (n, s, s) array
        Lower Cholesky factors, ``M_j = L_j L_j'``.
    Z : (n, s, p) array
        ``L_j⁻¹ X_j``.
    B : (p, p) array
        The bread ``(X' W X)⁻¹`` of the whole model (all clusters).
    """

    L: FloatArray
    Z: FloatArray
    B: FloatArray


@dataclass(frozen=True)
class Adjustment:
    """One cluster-robust estimator of the registry :data:`ADJUSTMENTS`.

    Attributes
    ----------
    name : str
        ``"CR0"``, ``"CR1"`` or ``"CR2"``.
    description : str
        One line for summaries.
    matrices : callable
        ``matrices(whitened) -> (n, s, s) array or None``: the whitened
        adjustment matrices ``Ã_j`` of a group of clusters (None: identity).
    scale : callable
        ``scale(n_clusters, p) -> float``: a factor on the whole variance matrix.
    df : {"satterthwaite", "clusters"}
        Degrees of freedom of the coefficient tests: Satterthwaite's for each
        coefficient (with the HTZ Wald test), or ``n − p`` for all (with the Wald
        statistic ``QM / q`` referred to ``F(q, n − p)``).
    """

    name: str
    description: str
    matrices: Callable[[Whitened], FloatArray | None]
    scale: Callable[[int, int], float]
    df: DfKind


def _no_adjustment(w: Whitened) -> FloatArray | None:
    return None


def _unit_scale(n: int, p: int) -> float:
    return 1.0


def _clusters_scale(n: int, p: int) -> float:
    return n / (n - p)


def _cr2_matrices(w: Whitened) -> FloatArray:
    """Bell & McCaffrey's ``A_j``, whitened: ``Ã_j = G_j^{-1/2} K_j``.

    With ``F_j = L_j'`` the upper Cholesky factor (``F_j' F_j = M_j``),
    ``A_j = F_j' G_j^{-1/2} F_j`` and ``G_j = F_j (M_j − X_j B X_j') F_j'``.  In
    whitened terms ``G_j = K_j S_j K_j`` with ``K_j = L_j' L_j`` and
    ``S_j = I − Z_j B Z_j'``, and ``Ã_j = L_j⁻¹ A_j L_j = G_j^{-1/2} K_j``.
    """
    L, Z, B = w.L, w.Z, w.B
    K = np.swapaxes(L, -1, -2) @ L
    KZ = K @ Z
    # G_j = K_j S_j K_j = K_j² − (K_j Z_j) B (K_j Z_j)'
    Gm = K @ K - (KZ @ B) @ np.swapaxes(KZ, -1, -2)
    Gm = 0.5 * (Gm + np.swapaxes(Gm, -1, -2))
    if Gm.shape[1] == 1:
        ev, U = Gm[:, :, 0], np.ones_like(Gm)
    else:
        ev, U = np.linalg.eigh(Gm)
    # tr(M_j)² bounds the eigenvalues of G_j (≤ λ_max(M_j)²): the units of G_j
    trM = np.einsum("nii->n", K)
    tol = EIG_TOL * trM**2
    root = np.where(ev > tol[:, None], 1.0 / np.sqrt(np.where(ev > 0, ev, 1.0)), 0.0)
    out: FloatArray = (U * root[:, None, :]) @ (np.swapaxes(U, -1, -2) @ K)
    return out


#: The cluster-robust estimators, by name.
ADJUSTMENTS: Mapping[str, Adjustment] = MappingProxyType(
    {
        "CR0": Adjustment(
            "CR0",
            "CR0 (no small-sample adjustment), Satterthwaite df",
            _no_adjustment,
            _unit_scale,
            "satterthwaite",
        ),
        "CR1": Adjustment(
            "CR1",
            "CR1 (n/(n-p), metafor's robust()), t on n-p df",
            _no_adjustment,
            _clusters_scale,
            "clusters",
        ),
        "CR2": Adjustment(
            "CR2",
            "CR2 (Bell-McCaffrey, model weights), Satterthwaite df",
            _cr2_matrices,
            _unit_scale,
            "satterthwaite",
        ),
    }
)


# ---------------------------------------------------------------------------
# The sandwich
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sandwich:
    """A cluster-robust variance matrix and what its small-sample tests need.

    Attributes
    ----------
    coef : (p,) array
    vcov : (p, p) array
        The robust variance matrix of ``coef``.
    df : (p,) array
        Degrees of freedom of each coefficient's t test.
    bread : (p, p) array
        ``(X' W X)⁻¹``.
    gram, H : (G, p, p) arrays or None
        Per-cluster summaries ``B Z_j'Ã_j Ã_j'Z_j B`` and ``B Z_j'Ã_j Z_j C_B``
        (None for an estimator with ``n − p`` df, which does not need them).
    n_clusters, n_effects : int
    adjust : str
        The registry name.
    """

    coef: FloatArray
    vcov: FloatArray
    df: FloatArray
    bread: FloatArray
    gram: FloatArray | None
    H: FloatArray | None
    n_clusters: int
    n_effects: int
    adjust: str

    @property
    def p(self) -> int:
        """Number of coefficients."""
        return int(self.coef.shape[0])

    @property
    def df_kind(self) -> DfKind:
        """How the adjustment defines its degrees of freedom."""
        return ADJUSTMENTS[self.adjust].df


def _check_blocks(
    codes: IntArray, index: IntArray, M: FloatArray, k: int
) -> tuple[IntArray, FloatArray, IntArray]:
    """Validate the blocks against the clustering.

    Returns ``index`` and ``M`` with each block's padding moved to its end (rows
    may come in any order and pad anywhere), and each block's size.  Every block
    must hold the effects of exactly one cluster, and every effect must be in
    exactly one block.
    """
    if codes.shape != (k,):
        raise ModelSpecificationError(
            f"cluster codes have {codes.shape[0] if codes.ndim else 0} entries for {k} effects"
        )
    G = int(codes.max()) + 1 if k else 0
    if index.ndim != 2 or index.shape[0] != G or M.shape != (G, index.shape[1], index.shape[1]):
        raise ModelSpecificationError(
            f"marginal blocks have shapes index {index.shape}, M {M.shape}; expected "
            f"({G}, b) and ({G}, b, b) for {G} clusters"
        )
    valid = index >= 0
    sizes = valid.sum(axis=1).astype(np.int64)
    b = index.shape[1]
    if not np.array_equal(valid, np.arange(b)[None, :] < sizes[:, None]):
        order = np.argsort(~valid, axis=1, kind="stable")
        index = np.take_along_axis(index, order, axis=1)
        M = np.take_along_axis(np.take_along_axis(M, order[:, :, None], axis=1),
                               order[:, None, :], axis=2)
        valid = index >= 0
    flat = index[valid]
    if (
        flat.size != k
        or flat.max(initial=-1) >= k
        or not np.all(np.bincount(flat, minlength=k) == 1)
    ):
        raise ModelSpecificationError("marginal blocks must hold every effect exactly once")
    if np.any(sizes == 0):
        raise ModelSpecificationError("a marginal block holds no effect")
    row_code = codes[index[:, 0]]
    mixed = codes[flat] != np.repeat(row_code, sizes)
    if mixed.any():
        bad = int(flat[mixed][0])
        row = int(np.repeat(np.arange(G), sizes)[mixed][0])
        raise ModelSpecificationError(
            f"a marginal block holds effects of two clusters ({int(row_code[row])} and "
            f"{int(codes[bad])}, effect {bad})"
        )
    if not np.all(np.bincount(row_code, minlength=G) == 1):
        raise ModelSpecificationError("each cluster must be exactly one marginal block")
    return index, M, sizes


def _groups(sizes: IntArray) -> list[tuple[int, npt.NDArray[np.intp]]]:
    """Clusters grouped by size: ``[(s, cluster positions), ...]``."""
    return [(int(s), np.flatnonzero(sizes == s)) for s in np.unique(sizes)]


def lower_solve(L: FloatArray, R: FloatArray) -> FloatArray:
    """``L⁻¹ R`` for a stack of lower-triangular ``L`` ``(n, s, s)`` and ``R`` ``(n, s, m)``.

    Forward substitution, vectorised over the stack (``s`` steps): several times
    faster than a batched LU solve for the small blocks of clustered data.
    """
    out = np.empty_like(R)
    for i in range(R.shape[1]):
        acc = R[:, i, :]
        if i:
            acc = acc - np.einsum("nk,nkm->nm", L[:, i, :i], out[:, :i, :])
        out[:, i, :] = acc / L[:, i, i, None]
    return out


def _lower_cholesky(Mg: FloatArray, members: npt.NDArray[np.intp]) -> FloatArray:
    try:
        return np.asarray(np.linalg.cholesky(Mg), dtype=np.float64)
    except np.linalg.LinAlgError:
        bad = []
        for i in range(Mg.shape[0]):
            try:
                np.linalg.cholesky(Mg[i])
            except np.linalg.LinAlgError:
                bad.append(int(members[i]))
        raise ModelSpecificationError(
            f"the marginal covariance block of cluster {bad[0] if bad else '?'} is not "
            "positive definite"
        ) from None


def cluster_sandwich(
    X: FloatArray,
    y: FloatArray,
    codes: IntArray,
    index: IntArray,
    M: FloatArray,
    coef: FloatArray,
    adjust: CRType = "CR2",
) -> Sandwich:
    """Cluster-robust variance matrix of a (weighted) linear model's coefficients.

    Parameters
    ----------
    X : (k, p) array
        Design matrix.
    y : (k,) array
        Effects.
    codes : (k,) int array
        Cluster of each effect, ``0 … G − 1``.
    index : (G, b) int array
        Effect positions of each cluster's block (``-1`` padding); one block per
        cluster, in any order.
    M : (G, b, b) array
        The fitted marginal covariance restricted to each cluster (identity on the
        padding); the working weights are ``W_j = M_j⁻¹``.
    coef : (p,) array
        The model's coefficients (the GLS estimate with these weights).
    adjust : {"CR0", "CR1", "CR2"}
        The estimator, from :data:`ADJUSTMENTS`.

    Returns
    -------
    Sandwich

    Notes
    -----
    ``V^R = s · B (Σ_j X_j' W_j A_j r_j r_j' A_j' W_j X_j) B`` with ``B = (X'WX)⁻¹``,
    ``r = y − X β̂`` and ``A_j``:

    - CR0: ``I`` (Liang & Zeger, 1986), ``s = 1``;
    - CR1: ``I``, ``s = n / (n − p)`` with ``n`` clusters (Hedges, Tipton & Johnson,
      2010): metafor's ``robust()``;
    - CR2: ``F_j' [F_j (M_j − X_j B X_j') F_j']^{-1/2} F_j`` with ``F_j`` the upper
      Cholesky factor of ``M_j`` (Bell & McCaffrey, 2002; McCaffrey, Bell & Botts,
      2001), the symmetric inverse square root taken over the positive eigenvalues:
      clubSandwich's CR2 with the model's own working weights and target ``Φ = M``
      (Pustejovsky & Tipton, 2018; Tipton, 2015).

    The degrees of freedom are Satterthwaite's for CR0 and CR2
    (:func:`satterthwaite_df`) and ``n − p`` for CR1.
    """
    spec = ADJUSTMENTS[adjust]
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    M = np.asarray(M, dtype=np.float64)
    k, p = X.shape
    index, M, sizes = _check_blocks(codes, index, M, k)
    G = sizes.shape[0]
    r = y - X @ coef

    # pass 1: whiten each size group, accumulate X'WX
    groups = []
    XtWX = np.zeros((p, p))
    for s, members in _groups(sizes):
        idx = index[members, :s]
        Lg = _lower_cholesky(M[members, :s, :s], members)
        rhs = np.concatenate([X[idx], r[idx][:, :, None]], axis=2)
        sol = lower_solve(Lg, rhs)
        Zg, rho = sol[:, :, :p], sol[:, :, p]
        XtWX += np.einsum("nsa,nsb->ab", Zg, Zg)
        groups.append((members, Lg, Zg, rho))
    try:
        CBinv = np.linalg.cholesky(XtWX)
    except np.linalg.LinAlgError:
        raise ModelSpecificationError(
            "X' W X is singular: the design is not of full rank"
        ) from None
    B = np.linalg.inv(XtWX)
    B = 0.5 * (B + B.T)
    # C_B with C_B C_B' = B: the inverse transpose of chol(X'WX)
    CB = np.linalg.inv(CBinv).T

    # pass 2: adjust; summarise each cluster by Y_j = Z_j' Ã_j (p × s_j)
    satt = spec.df == "satterthwaite"
    comps = np.empty((G, p))
    YY = np.empty((G, p, p))
    YZ = np.empty((G, p, p))
    for members, Lg, Zg, rho in groups:
        A = spec.matrices(Whitened(Lg, Zg, B))
        Zt = np.swapaxes(Zg, -1, -2)
        Y = Zt if A is None else Zt @ A
        comps[members] = (Y @ rho[:, :, None])[:, :, 0]
        if satt:  # only the Satterthwaite df and the HTZ test need these
            YY[members] = Y @ np.swapaxes(Y, -1, -2)
            YZ[members] = Y @ Zg
    vcov = spec.scale(G, p) * (B @ (comps.T @ comps) @ B)
    vcov = 0.5 * (vcov + vcov.T)
    gram: FloatArray | None = None
    H: FloatArray | None = None
    if satt:
        gram = np.einsum("ab,jbc,cd->jad", B, YY, B, optimize=True)
        H = np.einsum("ab,jbc,cd->jad", B, YZ, CB, optimize=True)
        df = satterthwaite_df(gram, H)
    else:
        df = np.full(p, float(G - p))
    return Sandwich(coef, vcov, df, B, gram, H, G, k, spec.name)


# ---------------------------------------------------------------------------
# Small-sample tests
# ---------------------------------------------------------------------------


def satterthwaite_df(gram: FloatArray, H: FloatArray) -> FloatArray:
    """Satterthwaite degrees of freedom of each coefficient (clubSandwich's).

    Parameters
    ----------
    gram, H : (G, p, p) arrays
        The per-cluster summaries of :class:`Sandwich`.

    Returns
    -------
    (p,) array

    Notes
    -----
    Under the working model the robust variance of coefficient ``i`` is the
    quadratic form ``z' P_i z`` in standard normals, with the ``G × G`` matrix
    ``P_i = diag(g_ji) − h_i h_i'`` (``g_ji = gram_j[i, i]``, ``h_i`` the ``G × p``
    rows ``H_j[i, :]``); matching its first two moments to a scaled χ² gives
    ``ν_i = 2 E² / Var = (tr P_i)² / ‖P_i‖²_F`` (Bell & McCaffrey, 2002; Pustejovsky &
    Tipton, 2018), with ``‖P_i‖²_F = Σ g_ji² − 2 Σ g_ji ‖h_ji‖² + ‖h_i' h_i‖²_F``.
    """
    g = np.einsum("jii->ji", gram)  # (G, p)
    hh = np.einsum("jiu,jiu->ji", H, H)  # (G, p)
    E = g.sum(axis=0) - hh.sum(axis=0)
    Kc = np.einsum("jiu,jiv->iuv", H, H)  # (p, u, u)
    sumsq = (g**2).sum(axis=0) - 2.0 * (g * hh).sum(axis=0) + np.einsum("iuv,iuv->i", Kc, Kc)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = E**2 / sumsq
    return out


def cluster_coef_tests(s: Sandwich, level: float) -> CoefTests:
    """Each coefficient's robust t test and CI, on the sandwich's own df."""
    return coef_inference(s.coef[None, :], s.vcov[None, :, :], s.df[None, :], level)


@dataclass(frozen=True)
class ClusterWald:
    """A Wald test of ``q`` coefficients: ``F`` on ``(df_num, df_denom)``.

    ``Q`` is the unadjusted Wald statistic ``β_S' V_S⁻¹ β_S``; ``df_denom`` is
    ``inf`` for the χ² test (``F = Q / q``).
    """

    test: str
    Q: float
    F: float
    df_num: int
    df_denom: float
    pvalue: float


def _inverse_root(Om: FloatArray) -> FloatArray:
    """``T`` with ``T' T = Ω⁺`` (pseudo-inverse of a correlation-scaled Ω)."""
    d = np.sqrt(np.clip(np.diag(Om), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        dinv = np.where(d > 0, 1.0 / d, 0.0)
    R = Om * dinv[:, None] * dinv[None, :]
    ev, U = np.linalg.eigh(0.5 * (R + R.T))
    keep = ev > EIG_TOL * max(float(ev.max()), 0.0)
    root = np.where(keep, 1.0 / np.sqrt(np.where(keep, ev, 1.0)), 0.0)
    out: FloatArray = (U * root[None, :]) @ U.T * dinv[None, :]
    return out


def htz_test(s: Sandwich, btt: npt.NDArray[np.intp]) -> ClusterWald:
    """The HTZ Wald test that the coefficients ``btt`` are zero (Tipton & Pustejovsky, 2015).

    Notes
    -----
    With the constraint matrix ``C`` (the rows ``btt`` of ``I_p``),
    ``Q = (Cβ)'(C V^R C')⁻¹(Cβ)``.  The Hotelling T² approximation
    ``Q ~ q ν / (ν − q + 1) F(q, ν − q + 1)`` takes ``ν`` from the total variance
    of the robust variance matrix under the working model ("Z" for zero
    off-diagonal expectations): with ``Ω = E[C V^R C']`` and
    ``B_jk = Ω^{-1/2} C P_jk C' Ω^{-1/2}`` (``P_jk = δ_jk gram_j − H_j H_k'``),
    ``ν = q (q + 1) / Σ_jk [tr(B_jk²) + tr(B_jk)²]``, which depends on Ω only
    through ``Ω⁻¹`` and is evaluated here with ``p × p`` sums over clusters.  The
    test statistic is ``F = δ Q / q`` with ``δ = (ν − q + 1) / ν`` on
    ``(q, ν − q + 1)`` df (clubSandwich's ``Wald_test(test = "HTZ")``).
    """
    if s.gram is None or s.H is None:
        raise ValueError(f"{s.adjust} has no Satterthwaite/HTZ small-sample tests")
    q = int(btt.size)
    gC = s.gram[:, btt[:, None], btt[None, :]]  # (G, q, q)
    hC = s.H[:, btt, :]  # (G, q, u)
    Om = gC.sum(axis=0) - np.einsum("jau,jbu->ab", hC, hC)
    T = _inverse_root(Om)
    gt = T @ gC @ T.T
    ht = T @ hC
    tr_g = np.einsum("jaa->j", gt)
    tr_gg = np.einsum("jab,jba->j", gt, gt)
    ghh = np.einsum("jab,jbu,jau->j", gt, ht, ht)  # tr(g h h')
    h2 = np.einsum("jau,jau->j", ht, ht)
    Kt = np.einsum("jau,jbv->aubv", ht, ht)
    total = (
        (tr_gg + tr_g**2).sum()
        - 2.0 * (ghh + tr_g * h2).sum()
        + np.einsum("aubv,buav->", Kt, Kt)
        + np.einsum("aubv,aubv->", Kt, Kt)
    )
    nu = q * (q + 1) / total
    Q = float(quadratic_form(s.coef[None, :], s.vcov[None, :, :], btt)[0])
    delta = max((nu - q + 1.0) / nu, 0.0)
    df2 = nu - q + 1.0
    F = delta * Q / q
    p = float(f_sf(F, q, df2)) if df2 > 0 else float("nan")
    return ClusterWald("HTZ", Q, F, q, float(df2), p)


def chi2_cluster_test(s: Sandwich, btt: npt.NDArray[np.intp]) -> ClusterWald:
    """The naive Wald test: ``Q`` on χ²(q) with the robust variance matrix."""
    q = int(btt.size)
    Q = float(quadratic_form(s.coef[None, :], s.vcov[None, :, :], btt)[0])
    return ClusterWald("chi2", Q, Q / q, q, float("inf"), float(chi2_sf(Q, q)))


def cluster_f_test(s: Sandwich, btt: npt.NDArray[np.intp]) -> ClusterWald:
    """metafor's robust ``QM``: ``F = Q / q`` on ``(q, n − p)`` df."""
    q = int(btt.size)
    res = wald_test(s.coef[None, :], s.vcov[None, :, :], btt, np.array([s.n_clusters - s.p],
                                                                        dtype=np.float64))
    F = float(res.statistic[0])
    return ClusterWald("F", F * q, F, q, float(res.df2[0]), float(res.pvalue[0]))
