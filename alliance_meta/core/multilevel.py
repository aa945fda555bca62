"""REML/ML for multilevel and multivariate meta-analysis (metafor's ``rma.mv``).

The model is ``y = Xβ + Σ_l Z_l u_l + (Z₁ G Z₁') ∘ (Z₂ Z₂') + ε`` with known sampling
covariance ``Var(ε) = V``: nested random intercepts with one variance ``σ²_l`` per
level (``random = ~ 1 | a/b/...``; Konstantopoulos, 2011) and/or an ``~ outcome |
cluster`` term whose between-outcome covariance ``G`` is CS, HCS, UN or DIAG
(Berkey et al., 1998; Cheung, 2014).  Every such marginal covariance is

    M(θ) = V + Σ_c g_c(θ) K_c,

a linear combination of fixed basis matrices ``K_c`` (an indicator of "same level-l
cluster", or of "same cluster and outcomes a, b") with coefficients ``g_c(θ)``
(``σ²_l``, ``τ²_a``, ``ρ_ab √(τ²_a τ²_b)``...).  ``M`` is block-diagonal over the
blocks of :mod:`alliance_meta.core.blocks`; the log-likelihood, its analytic score
and Hessian are sums over padded blocks of batched Cholesky factors and solves,
batched over several parameter points at once (for the global search and the
multi-start Newton iterations).  No dense ``k × k`` matrix is formed.

Log-likelihoods (as metafor's ``.ll.rma.mv``, constants included, so that ``fitstats``
match):

* ML: ``ℓ = -½ [k log 2π + log|M| + r'M⁻¹r]``, ``r = y - Xβ̂``;
* REML: ``ℓ_R = -½ [(k - p) log 2π - log|X'X| + log|M| + log|X'M⁻¹X| + r'M⁻¹r]``.

With ``P = M⁻¹ - M⁻¹X(X'M⁻¹X)⁻¹X'M⁻¹`` and ``u = M⁻¹r = Py``, the score with respect
to ``g_c`` is ``-½ tr(P̃K_c) + ½ u'K_c u`` (``P̃ = P`` for REML, ``M⁻¹`` for ML) and
the Hessian ``½ tr(P̃K_cP̃K_d) - u'K_c P K_d u``; the chain rule through ``g(θ)``
adds ``Σ_c score_c ∂²g_c/∂θ∂θ'`` (Searle, Casella & McCulloch, 1992, ch. 6;
Harville, 1977).

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software*, 36(3), 1-48 (and the ``rma.mv`` documentation).

Konstantopoulos, S. (2011). Fixed effects and variance components estimation in
three-level meta-analysis. *Research Synthesis Methods*, 2(1), 61-76.

Cheung, M. W.-L. (2014). Modeling dependent effect sizes with three-level
meta-analyses: a structural equation modeling approach. *Psychological Methods*,
19(2), 211-229.

Berkey, C. S., Hoaglin, D. C., Antczak-Bouckoms, A., Mosteller, F., & Colditz, G. A.
(1998). Meta-analysis of multiple outcomes by regression with random effects.
*Statistics in Medicine*, 17(22), 2537-2550.

Harville, D. A. (1977). Maximum likelihood approaches to variance component
estimation and to related problems. *JASA*, 72(358), 320-338.

Searle, S. R., Casella, G., & McCulloch, C. E. (1992). *Variance Components*.
Wiley.

Nakagawa, S., & Santos, E. S. A. (2012). Methodological issues and advances in
biological meta-analysis. *Evolutionary Ecology*, 26(5), 1253-1274.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import optimize

from alliance_meta.core import blocks as bl
from alliance_meta.core.inference import chi2_ppf

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "Evaluation",
    "Problem",
    "ProfileBound",
    "SamplingStats",
    "Solution",
    "Structure",
    "build_problem",
    "evaluate",
    "fit_statistics",
    "initial_points",
    "marginal_blocks",
    "maximise",
    "multilevel_i2",
    "profile_interval",
    "sampling_stats",
]

LOG_2PI = math.log(2.0 * math.pi)
#: Entries of one padded ``(G, n, b, b)`` array processed at once (512 kB: the
#: small-matrix loops run fastest when their arrays stay in the CPU cache).
_PIECE_ENTRIES = 1 << 16
#: Parameter points per call of :func:`evaluate` in a scan.
_SCAN_POINTS = 32
#: Newton decrement ``g'(-H)⁻¹g`` (log-likelihood units) below which the pending
#: step is the last: after it the estimates are exact to rounding (quadratic
#: convergence squares an error of ``√1e-10`` standard errors).
_DECREMENT_TOL = 1e-10
#: Decrement up to which a fit whose line search stalls still counts as converged
#: (the remaining likelihood gain is below what rounding lets us see).
_STALL_TOL = 1e-7
#: Newton decrement above which a step uses the Fisher information (scoring)
#: instead of the observed Hessian: far from the maximum scoring overshoots less.
_FISHER_DECREMENT = 1.0
#: ... during the first iterations only (near a degenerate maximum, e.g. a singular
#: G, scoring converges slowly where Newton does not).
_FISHER_STEPS = 3
#: Largest number of Newton iterations per start.
_MAX_ITER = 200
#: Starts kept from the global scan for the Newton iterations.
_N_STARTS = 3


# ---------------------------------------------------------------------------
# Parameter structure: θ -> coefficients g of the basis matrices
# ---------------------------------------------------------------------------


def _un_pairs(q: int) -> list[tuple[int, int]]:
    """Off-diagonal pairs ``(row, col)``, ``row > col``, of a ``q × q`` lower triangle
    in column-major order (metafor's order of ``rho`` for ``struct = "UN"``)."""
    return [(r, c) for c in range(q) for r in range(c + 1, q)]


@dataclass(frozen=True)
class Structure:
    """How the parameters ``θ`` give the coefficients ``g`` of the basis matrices.

    ``θ = (σ²_1..σ²_L, G parameters)``; the bases are the ``L`` nested-level
    indicators, then (when ``struct`` is given) one basis per diagonal entry of
    ``G`` and, unless DIAG, one per off-diagonal pair (column-major lower triangle).

    G parameters: CS ``(τ², ρ)``; HCS ``(τ²_1..τ²_q, ρ)``; UN ``(τ²_1..τ²_q,
    ρ_21, ρ_31, ..., ρ_q(q-1))``; DIAG ``(τ²_1..τ²_q)``.

    With ``chol`` (UN only) the G parameters are instead the lower-triangular
    Cholesky entries ``C_ab`` (column-major, diagonal included) of ``G = CC'``:
    unconstrained, every value a positive semi-definite ``G`` (metafor's default
    ``cholesky = TRUE`` for UN), singular ``G`` (``|ρ| = 1``, ``τ² = 0``) reached at
    finite values.  With ``psd`` (UN in ``(τ², ρ)`` form with ``q ≥ 3``) points whose
    ``G`` is not positive semi-definite are infeasible (log-likelihood ``-inf``).
    """

    n_sigma: int
    struct: str | None = None
    n_outcomes: int = 0
    chol: bool = False
    psd: bool = False
    sd: bool = False

    @property
    def is_sd(self) -> BoolArray:
        """Parameters that are standard deviations ``s = √τ²`` (HCS/UN with ``sd``:
        ``G_ab = ρ s_a s_b`` is smooth at ``s = 0``, where ``ρ √(τ²_a τ²_b)`` has an
        infinite derivative and a variance at 0 would be a false stationary point)."""
        out = np.zeros(self.n_params, dtype=bool)
        if self.sd and self.struct in ("HCS", "UN") and not self.chol:
            out[self.n_sigma : self.n_sigma + self.n_tau2] = True
        return out

    def to_report(self, theta: FloatArray) -> FloatArray:
        """Internal parameters as reported (standard deviations squared)."""
        out = np.array(theta, dtype=np.float64, copy=True)
        sdm = self.is_sd
        out[..., sdm] = out[..., sdm] ** 2
        return out

    def to_internal(self, theta: FloatArray) -> FloatArray:
        """Reported parameters (variances) as internal ones (NaN stays NaN)."""
        out = np.array(theta, dtype=np.float64, copy=True)
        sdm = self.is_sd
        out[..., sdm] = np.sqrt(out[..., sdm])
        return out

    @property
    def pairs(self) -> list[tuple[int, int]]:
        if self.struct is None or self.struct == "DIAG":
            return []
        return _un_pairs(self.n_outcomes)

    @property
    def chol_pairs(self) -> list[tuple[int, int]]:
        """Entries ``(row, col)``, ``row >= col``, of the Cholesky factor, column-major."""
        q = self.n_outcomes
        return [(r, c) for c in range(q) for r in range(c, q)]

    @property
    def n_tau2(self) -> int:
        if self.struct is None:
            return 0
        if self.chol:
            return len(self.chol_pairs)
        return 1 if self.struct == "CS" else self.n_outcomes

    @property
    def n_rho(self) -> int:
        if self.struct is None or self.struct == "DIAG" or self.chol:
            return 0
        if self.struct in ("CS", "HCS"):
            return 1
        return len(self.pairs)

    @property
    def n_params(self) -> int:
        return self.n_sigma + self.n_tau2 + self.n_rho

    @property
    def n_basis(self) -> int:
        if self.struct is None:
            return self.n_sigma
        return self.n_sigma + self.n_outcomes + len(self.pairs)

    @property
    def is_correlation(self) -> BoolArray:
        """Which parameters are correlations (bounded by ±1)."""
        out = np.zeros(self.n_params, dtype=bool)
        out[self.n_sigma + self.n_tau2 :] = True
        return out

    @property
    def lower(self) -> FloatArray:
        out = np.where(self.is_correlation, -1.0, 0.0)
        if self.chol:
            out[self.n_sigma :] = -np.inf
        return out

    @property
    def upper(self) -> FloatArray:
        return np.where(self.is_correlation, 1.0, np.inf)

    def coefficients(
        self, theta: FloatArray, order: int = 0
    ) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
        """``g (G, n_basis)`` and, by ``order``, ``∂g/∂θ (G, n_basis, q)`` and
        ``∂²g/∂θ² (G, n_basis, q, q)`` at the parameter points ``theta (G, q)``."""
        th = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        G, q = th.shape
        L = self.n_sigma
        nb = self.n_basis
        g = np.zeros((G, nb))
        g[:, :L] = th[:, :L]
        dg = np.zeros((G, nb, q)) if order >= 1 else None
        d2g = np.zeros((G, nb, q, q)) if order >= 2 else None
        if dg is not None:
            dg[:, np.arange(L), np.arange(L)] = 1.0
        if self.struct is None:
            return g, dg, d2g
        Q = self.n_outcomes
        if self.chol:
            self._chol_coefficients(th, g, dg, d2g)
            return g, dg, d2g
        t0 = L  # first tau2 parameter
        r0 = L + self.n_tau2  # first rho parameter
        # diagonal bases
        sd = self.sd and self.struct in ("HCS", "UN")
        for a in range(Q):
            ti = t0 if self.struct == "CS" else t0 + a
            if sd:
                g[:, L + a] = th[:, ti] ** 2
                if dg is not None:
                    dg[:, L + a, ti] = 2.0 * th[:, ti]
                if d2g is not None:
                    d2g[:, L + a, ti, ti] = 2.0
                continue
            g[:, L + a] = th[:, ti]
            if dg is not None:
                dg[:, L + a, ti] = 1.0
        for m, (r, c) in enumerate(self.pairs):
            col = L + Q + m
            ri = r0 if self.struct in ("CS", "HCS") else r0 + m
            rho = th[:, ri]
            if self.struct == "CS":
                tau2 = th[:, t0]
                g[:, col] = rho * tau2
                if dg is not None:
                    dg[:, col, t0] = rho
                    dg[:, col, ri] = tau2
                if d2g is not None:
                    d2g[:, col, t0, ri] = 1.0
                    d2g[:, col, ri, t0] = 1.0
                continue
            ta_i, tb_i = t0 + r, t0 + c
            ta, tb = th[:, ta_i], th[:, tb_i]
            if self.sd:
                # G_ab = ρ s_a s_b with standard deviations s
                g[:, col] = rho * ta * tb
                if dg is not None:
                    dg[:, col, ri] = ta * tb
                    dg[:, col, ta_i] = rho * tb
                    dg[:, col, tb_i] = rho * ta
                if d2g is not None:
                    d2g[:, col, ri, ta_i] = d2g[:, col, ta_i, ri] = tb
                    d2g[:, col, ri, tb_i] = d2g[:, col, tb_i, ri] = ta
                    d2g[:, col, ta_i, tb_i] = d2g[:, col, tb_i, ta_i] = rho
                continue
            s = np.sqrt(ta * tb)
            g[:, col] = rho * s
            pos = (ta > 0) & (tb > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ds_a = np.where(pos, 0.5 * np.sqrt(tb / ta), 0.0)
                ds_b = np.where(pos, 0.5 * np.sqrt(ta / tb), 0.0)
                d2s_aa = np.where(pos, -0.25 * np.sqrt(tb) / ta**1.5, 0.0)
                d2s_bb = np.where(pos, -0.25 * np.sqrt(ta) / tb**1.5, 0.0)
                d2s_ab = np.where(pos, 0.25 / s, 0.0)
            if dg is not None:
                dg[:, col, ri] = s
                dg[:, col, ta_i] = rho * ds_a
                dg[:, col, tb_i] = rho * ds_b
            if d2g is not None:
                d2g[:, col, ri, ta_i] = d2g[:, col, ta_i, ri] = ds_a
                d2g[:, col, ri, tb_i] = d2g[:, col, tb_i, ri] = ds_b
                d2g[:, col, ta_i, ta_i] = rho * d2s_aa
                d2g[:, col, tb_i, tb_i] = rho * d2s_bb
                d2g[:, col, ta_i, tb_i] = d2g[:, col, tb_i, ta_i] = rho * d2s_ab
        return g, dg, d2g

    def _chol_coefficients(
        self, th: FloatArray, g: FloatArray, dg: FloatArray | None, d2g: FloatArray | None
    ) -> None:
        """``G = CC'``: ``G_ab = Σ_m C_am C_bm``, quadratic in the entries of ``C``."""
        L, Q = self.n_sigma, self.n_outcomes
        G_ = th.shape[0]
        C = np.zeros((G_, Q, Q))
        where = {rc: L + i for i, rc in enumerate(self.chol_pairs)}
        for (r, c), i in where.items():
            C[:, r, c] = th[:, i]
        Gm = np.matmul(C, np.swapaxes(C, 1, 2))
        entries = [(a, a) for a in range(Q)] + self.pairs
        for e, (a, b) in enumerate(entries):
            col = L + e
            g[:, col] = Gm[:, a, b]
            for (i, j), pi in where.items():
                # ∂G_ab/∂C_ij = δ_ai C_bj + δ_bi C_aj
                if dg is not None:
                    val = (C[:, b, j] if a == i else 0.0) + (C[:, a, j] if b == i else 0.0)
                    dg[:, col, pi] = val
                if d2g is not None:
                    for (k, m), pk in where.items():
                        if m != j:
                            continue
                        # ∂²G_ab/∂C_ij∂C_km = δ_jm (δ_ai δ_bk + δ_bi δ_ak)
                        v2 = float(a == i and b == k) + float(b == i and a == k)
                        if v2:
                            d2g[:, col, pi, pk] = v2

    def G_matrix(self, theta: FloatArray) -> FloatArray:
        """The ``q × q`` between-outcome covariance ``G`` at ``θ`` (one point)."""
        Q = self.n_outcomes
        g, _, _ = self.coefficients(np.asarray(theta)[None, :])
        out = np.diag(g[0, self.n_sigma : self.n_sigma + Q]) if Q else np.zeros((0, 0))
        for m, (r, c) in enumerate(self.pairs):
            out[r, c] = out[c, r] = g[0, self.n_sigma + Q + m]
        return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------------------
# The problem: data laid out in padded blocks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The data of one fit, read into padded buckets of blocks.

    Attributes
    ----------
    layout : BlockLayout
    y : list of (n, b)
    X : list of (n, b, p)
        An orthonormal basis ``Q`` of the design's columns (``X = QR``): the REML
        and ML criteria depend on ``X`` only through its column space, and ``Q``
        keeps ``X'M⁻¹X`` well conditioned (a moderator such as a year next to the
        intercept would otherwise cost ~8 digits).
    R : (p, p)
        ``β = R⁻¹β_Q`` and ``Var(β) = R⁻¹Var(β_Q)R⁻ᵀ`` give the coefficients of ``X``.
    V : list of (n, b, b)
        Sampling covariance blocks (identity on padding).
    K : list of (n_basis, n, b, b)
        Basis matrices of the random effects (zero on padding).
    structure : Structure
    k, p : int
    logdet_xtx : float
        ``log|Q'Q| = 0``: metafor's REML constant ``log|X'X|`` cancels against the
        change of ``log|X'M⁻¹X|`` from ``X`` to ``Q``.
    scale : float
        A variance scale of the data, ``max(var(y - Xβ̂_OLS), mean v_i)``: in the
        units of ``y²``, so that grids and starts built from it make every fit
        equivariant to rescaling ``y`` (and ``V``).
    """

    layout: bl.BlockLayout
    y: list[FloatArray]
    X: list[FloatArray]
    R: FloatArray
    Rinv: FloatArray
    V: list[FloatArray]
    K: list[FloatArray]
    structure: Structure
    k: int
    p: int
    logdet_xtx: float
    scale: float
    #: per bucket ``[X y]`` (n, b, p+1) and the bases side by side, transposed,
    #: ``[K_1; K_2; ...]`` (n, nb·b, b): constant across evaluations
    Xy: list[FloatArray] = field(default_factory=list)
    Kstack: list[FloatArray] = field(default_factory=list)
    #: whether :attr:`spectral` may be used (False forces the general path)
    use_spectral: bool = True
    #: internal: the computed :attr:`spectral` (emptied on every construction)
    spectral_cache: list[Spectral | None] = field(
        default_factory=list, repr=False, compare=False
    )

    @property
    def spectral(self) -> Spectral | None:
        """The eigen-decomposition of ``V`` when every basis is "same effect" or "same
        block" (see :class:`Spectral`), else None.  Computed from this problem's own
        fields on first use, so a problem derived by ``dataclasses.replace`` never
        carries another's."""
        if not self.spectral_cache:
            sp = (
                _spectral(self.layout, self.V, self.K, self.Xy)
                if self.use_spectral and self.structure.struct is None
                else None
            )
            self.spectral_cache.append(sp)
        return self.spectral_cache[0]

    def __post_init__(self) -> None:
        # a problem made by dataclasses.replace (or from another's fields) computes
        # its own spectral form
        object.__setattr__(self, "spectral_cache", [])
        if not self.Xy:
            for yb, Xb, Kb in zip(self.y, self.X, self.K, strict=True):
                n, b = yb.shape
                nb = Kb.shape[0]
                self.Xy.append(np.concatenate([Xb, yb[:, :, None]], axis=2))
                # K symmetric: row c·b + j of the stack is row j of K_c
                self.Kstack.append(np.ascontiguousarray(Kb.transpose(1, 0, 2, 3).reshape(
                    n, nb * b, b)))


#: Smallest eigenvalue of a block of ``V``, relative to its largest, for the
#: spectral path (a condition number up to 1e12, where Cholesky certainly succeeds).
_SPECTRAL_COND = 1e-12
#: The spectral path pads every block to the largest and works on whole ``(G, N, b)``
#: arrays: it is used while the padding costs at most this factor over the effects
#: (or the arrays are small anyway), so that a few very large blocks among many small
#: ones are left to the general path, whose buckets are planned for their padding.
#: Measured on the benchmark's CHE problems (blocks of 1-6): the spectral path's
#: evaluations are 1.3-2x faster from 700 to 70,000 effects.
_SPECTRAL_PADDING = 4
_SPECTRAL_SMALL = 1 << 14
#: Entries of the ``(G, N, b)`` arrays of one spectral evaluation in a scan (16 MB).
_SPECTRAL_SCAN_ENTRIES = 1 << 21


@dataclass(frozen=True)
class Spectral:
    """``V`` per block in its eigenbasis, for models whose random effects are only
    "same effect" (``K = I``) and "same block" (``K = 11'``) bases.

    Then ``M = V + a I + b 11'`` within each block, with ``a`` (``b``) the sum of the
    coefficients of the ``I`` (``11'``) bases: the nested model ``~ 1 | study/es``
    with blocks the studies (the CHE working model), and its two-level cases.  With
    ``V = U Λ U'`` computed once, ``M⁻¹ = U (D - c h h') U'`` with ``D = (Λ + a)⁻¹``,
    ``h = D w``, ``w = U'1`` and ``c = b / (1 + b w'Dw)`` (Sherman & Morrison, 1950), and
    ``log|M| = Σ log(λ + a) + log(1 + b w'Dw)``: every quantity of :func:`evaluate`
    is a sum of elementwise products of the rotated data, with no ``b × b`` matrix
    per evaluation (Searle, Casella & McCulloch, 1992, ch. 6, for the same device
    with ``V`` diagonal).  The blocks are padded to the largest, ``(N, b)``; padded
    entries have ``real = 0`` (and ``λ = 1``, ``w = 0``, ``R = 0``).

    Sherman, J., & Morrison, W. J. (1950). Adjustment of an inverse matrix
    corresponding to a change in one element of a given matrix. *The Annals of
    Mathematical Statistics*, 21(1), 124-127.

    Attributes
    ----------
    kinds : tuple of str
        ``"I"`` or ``"J"`` for each basis.
    lam, real, w : (N, b) arrays
        Eigenvalues of ``V``, 1 for real entries, and ``U'1``.
    R : (N, b, p + 1) array
        ``U'[Q y]``, the rotated design (orthonormal ``Q``) and effects.
    ZR : (N, b, p + 2 + (p + 1)²) array
        ``w·[w, R]`` and the outer products ``R_e R_e'`` of the rotated rows.
    """

    kinds: tuple[str, ...]
    lam: FloatArray
    real: FloatArray
    w: FloatArray
    R: FloatArray
    ZR: FloatArray

    @property
    def is_I(self) -> FloatArray:
        """1.0 for the ``I`` bases (``a = g @ is_I``)."""
        return np.asarray([k == "I" for k in self.kinds], dtype=np.float64)

    @property
    def is_J(self) -> FloatArray:
        """1.0 for the ``J`` bases (``b = g @ is_J``)."""
        return np.asarray([k == "J" for k in self.kinds], dtype=np.float64)


def _spectral(
    layout: bl.BlockLayout, V: list[FloatArray], K: list[FloatArray], Xy: list[FloatArray]
) -> Spectral | None:
    """The :class:`Spectral` form of a problem, or None when a basis is neither "same
    effect" nor "same block", the padding would cost too much, or ``V`` is not well
    conditioned (the general path then decides, and names a block that is not
    positive definite)."""
    nb = K[0].shape[0] if K else 0
    if nb == 0:
        return None
    N = layout.n_blocks
    bmax = max(bk.index.shape[1] for bk in layout.buckets)
    if N * bmax > max(_SPECTRAL_PADDING * layout.k, _SPECTRAL_SMALL):
        return None
    kinds: list[str] = []
    for c in range(nb):
        is_I = is_J = True
        for Kb, bk in zip(K, layout.buckets, strict=True):
            m = bk.mask
            eye = (np.eye(m.shape[1], dtype=bool)[None] & m[:, :, None]).astype(np.float64)
            same = (m[:, :, None] & m[:, None, :]).astype(np.float64)
            is_I = is_I and np.array_equal(Kb[c], eye)
            is_J = is_J and np.array_equal(Kb[c], same)
        if not (is_I or is_J):
            return None
        kinds.append("I" if is_I else "J")
    p1 = Xy[0].shape[2]
    lam_all = np.ones((N, bmax))
    real_all = np.zeros((N, bmax))
    w_all = np.zeros((N, bmax))
    R_all = np.zeros((N, bmax, p1))
    for Vb, Xyb, bk in zip(V, Xy, layout.buckets, strict=True):
        b = bk.index.shape[1]
        Vm = Vb.copy()
        pn, pi = np.nonzero(~bk.mask)
        Vm[pn, pi, pi] = -1.0  # padding: eigenvalue -1, apart from V's positive ones
        lam, U = np.linalg.eigh(Vm)
        real = lam > 0
        top = lam.max(axis=1, keepdims=True)
        if not np.array_equal(real.sum(axis=1), bk.mask.sum(axis=1)) or np.any(
            real & (lam <= _SPECTRAL_COND * top)
        ):
            return None
        Ut = np.swapaxes(U, 1, 2)
        rows = bk.blocks
        lam_all[rows, :b] = np.where(real, lam, 1.0)
        real_all[rows, :b] = real
        w_all[rows, :b] = np.where(real, np.einsum("nij,nj->ni", Ut, bk.mask.astype(np.float64)),
                                   0.0)
        R_all[rows, :b] = np.where(real[:, :, None], np.matmul(Ut, Xyb), 0.0)
    wz = w_all[:, :, None] * np.concatenate([w_all[:, :, None], R_all], axis=2)
    RR = np.einsum("nba,nbc->nbac", R_all, R_all).reshape(N, bmax, p1 * p1)
    return Spectral(kinds=tuple(kinds), lam=lam_all, real=real_all, w=w_all, R=R_all,
                    ZR=np.concatenate([wz, RR], axis=2))


def build_problem(
    y: FloatArray,
    X: FloatArray,
    V: object,
    level_codes: Sequence[IntArray],
    structure: Structure,
    cluster_codes: IntArray | None = None,
    outcome_codes: IntArray | None = None,
) -> Problem:
    """Lay out ``y``, ``X``, ``V`` and the random-effect bases in padded blocks.

    Parameters
    ----------
    y : (k,)
    X : (k, p)
    V : scipy.sparse matrix, (k, k) array or (k,) diagonal
    level_codes : sequence of (k,) int arrays
        Cluster codes of the nested levels, outer first; level ``l`` codes must
        already identify the combination of levels ``1..l`` (R's ``a/b``).
    structure : Structure
    cluster_codes, outcome_codes : (k,) int arrays, optional
        Cluster and outcome (codes ``0..q-1``) of the ``~ outcome | cluster`` term.
    """
    k, p = X.shape
    groups: list[IntArray] = []
    if level_codes:
        groups.append(np.asarray(level_codes[0], dtype=np.int64))
    if cluster_codes is not None:
        groups.append(np.asarray(cluster_codes, dtype=np.int64))
    entries = bl._coo(V, k)  # V's non-zeros, read once
    layout = bl.make_layout(bl.connected_blocks(k, groups, entries))
    Vb = bl.pad_covariance(layout, entries)
    bases: list[list[FloatArray]] = [bl.same_group(layout, c) for c in level_codes]
    if structure.struct is not None:
        assert cluster_codes is not None and outcome_codes is not None
        S = bl.same_group(layout, cluster_codes)
        oc = np.asarray(outcome_codes, dtype=np.int64)
        ind = [
            bl.pad_vector(layout, (oc == a).astype(np.float64))
            for a in range(structure.n_outcomes)
        ]
        for a in range(structure.n_outcomes):
            bases.append(
                [s * (o[:, :, None] * o[:, None, :]) for s, o in zip(S, ind[a], strict=True)]
            )
        for r, c in structure.pairs:
            bases.append(
                [
                    s * (orr[:, :, None] * occ[:, None, :] + occ[:, :, None] * orr[:, None, :])
                    for s, orr, occ in zip(S, ind[r], ind[c], strict=True)
                ]
            )
    K = [
        np.stack([bases[c][bi] for c in range(len(bases))])
        if bases
        else np.zeros((0, *Vb[bi].shape))
        for bi in range(len(layout.buckets))
    ]
    Qx, Rx = np.linalg.qr(X)
    sgn = np.where(np.diag(Rx) < 0, -1.0, 1.0)
    Qx, Rx = Qx * sgn[None, :], Rx * sgn[:, None]
    # log|X'X| = 2 log|det R|; with Q in place of X the REML constant log|Q'Q| is 0 and
    # log|Q'M⁻¹Q| = log|X'M⁻¹X| - 2 log|det R|: the same restricted likelihood
    resid = y - Qx @ (Qx.T @ y)
    vdiag = np.concatenate(
        [
            np.diagonal(Vk, axis1=1, axis2=2)[b.mask]
            for Vk, b in zip(Vb, layout.buckets, strict=True)
        ]
    )
    scale = max(float(np.var(resid, ddof=1)) if k > 1 else 0.0, float(np.mean(vdiag)))
    return Problem(
        layout=layout,
        y=bl.pad_vector(layout, y),
        X=bl.pad_rows(layout, Qx),
        R=np.asarray(Rx, dtype=np.float64),
        Rinv=np.asarray(np.linalg.inv(Rx), dtype=np.float64),
        V=Vb,
        K=K,
        structure=structure,
        k=int(k),
        p=int(p),
        logdet_xtx=0.0,
        scale=scale if scale > 0 else 1.0,
    )


# ---------------------------------------------------------------------------
# Log-likelihood, score and Hessian, batched over parameter points
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Log-likelihood (and derivatives) at ``G`` parameter points.

    ``ll`` is ``-inf`` where ``M`` is not positive definite (``ok`` False).
    ``grad``, ``hess`` (observed) and ``info`` (expected) are with respect to the
    full ``θ`` (fixed components included; the caller selects the free ones).
    """

    ll: FloatArray
    ok: BoolArray
    beta: FloatArray
    vb: FloatArray
    grad: FloatArray | None = None
    hess: FloatArray | None = None
    info: FloatArray | None = None


def _psd_points(st: Structure, th: FloatArray) -> BoolArray:
    """Which points have a positive semi-definite ``G`` (to rounding)."""
    Q = st.n_outcomes
    g, _, _ = st.coefficients(th)
    Gm = np.zeros((th.shape[0], Q, Q))
    for a in range(Q):
        Gm[:, a, a] = g[:, st.n_sigma + a]
    for m, (r, c) in enumerate(st.pairs):
        Gm[:, r, c] = Gm[:, c, r] = g[:, st.n_sigma + Q + m]
    ev = np.linalg.eigvalsh(Gm)
    scale = np.maximum(np.max(np.abs(ev), axis=1), 1e-300)
    out: BoolArray = ev[:, 0] >= -1e-10 * scale
    return out


def to_covariance_parameters(st: Structure, theta: FloatArray) -> FloatArray:
    """A Cholesky-parametrised θ (``st.chol``) as ``(σ², τ²_1..τ²_q, ρ...)``.

    ``τ²_a = G_aa``; ``ρ_ab = G_ab / √(G_aa G_bb)`` (0 where a variance is 0).
    """
    Q = st.n_outcomes
    Gm = st.G_matrix(theta)
    tau2 = np.diag(Gm).copy()
    rho = []
    for r, c in st.pairs:
        den = math.sqrt(tau2[r] * tau2[c])
        rho.append(float(np.clip(Gm[r, c] / den, -1.0, 1.0)) if den > 0 else 0.0)
    out: FloatArray = np.concatenate([theta[: st.n_sigma], tau2, np.asarray(rho)])
    del Q
    return out


def _pieces(
    problem: Problem, G: int
) -> Iterator[tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]]:
    """The buckets' ``(y, [X y], V, K, K stacked)`` in slices of blocks whose
    ``(G, n, b, b)`` arrays stay cache-sized (``_PIECE_ENTRIES``): the small-matrix
    loops are bound by memory traffic, not arithmetic."""
    for yb, Xy, Vb, Kb, Ks in zip(
        problem.y, problem.Xy, problem.V, problem.K, problem.Kstack, strict=True
    ):
        n, b = yb.shape
        step = max(1, _PIECE_ENTRIES // (G * b * b))
        if step >= n:
            yield yb, Xy, Vb, Kb, Ks
            continue
        for start in range(0, n, step):
            sl = slice(start, start + step)
            yield yb[sl], Xy[sl], Vb[sl], Kb[:, sl], Ks[sl]


@dataclass(frozen=True)
class _SpectralPoint:
    """What :func:`_spectral_gls` leaves for :func:`_spectral_sums` (``G`` points,
    ``N`` blocks padded to ``b`` entries)."""

    S: FloatArray  # (G, p+1, p+1)  [X y]' M⁻¹ [X y]
    logdet: FloatArray  # (G,)
    ok: BoolArray  # (G,)
    D: FloatArray  # (G, N, b)  (λ + a)⁻¹ (0 on padding)
    h: FloatArray  # (G, N, b)  D w
    c: FloatArray  # (G, N)  b / (1 + b w'Dw)
    hw: FloatArray  # (G, N)  w'Dw
    hR: FloatArray  # (G, N, p+1)  h'R per block


def _spectral_gls(sp: Spectral, g: FloatArray) -> _SpectralPoint:
    """``[X y]'M⁻¹[X y]`` and ``log|M|`` at ``G`` points from the eigen-decomposition
    of ``V`` (see :class:`Spectral`)."""
    a = g @ sp.is_I
    bj = g @ sp.is_J
    G = g.shape[0]
    d = sp.lam[None] + a[:, None, None] * sp.real[None]  # 1 on padding
    ok = d.reshape(G, -1).min(axis=1) > 0
    if not ok.all():
        d = np.where(d > 0, d, 1.0)
    D = sp.real[None] / d
    p1 = sp.R.shape[2]
    # per block, D times [w·w, w·R, R R']: w'Dw, w'DR and R'DR in one product batched
    # over the blocks (small matrices: no multithreaded BLAS call on a long axis)
    out = np.matmul(D.transpose(1, 0, 2), sp.ZR)  # (N, G, p+2 + (p+1)²)
    hz = out[:, :, : p1 + 1].transpose(1, 0, 2)
    hw, hR = hz[:, :, 0], hz[:, :, 1:]
    den = 1.0 + bj[:, None] * hw
    okd = den.min(axis=1) > 0
    if not okd.all():
        ok &= okd
        den = np.where(ok[:, None], den, 1.0)
    c = bj[:, None] / den
    logdet = np.log(d).reshape(G, -1).sum(axis=1) + np.log(den).sum(axis=1)
    chR = c[:, :, None] * hR
    S = out[:, :, p1 + 1 :].sum(axis=0).reshape(G, p1, p1) - np.einsum(
        "gna,gnb->gab", chR, hR)
    h = D * sp.w[None]
    return _SpectralPoint(S=S, logdet=logdet, ok=ok, D=D, h=h, c=c, hw=hw, hR=hR)


def _spectral_sums(
    sp: Spectral, pt: _SpectralPoint, beta: FloatArray, order: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray,
           FloatArray]:
    """The sums ``t, s, B, T, C, Q, R`` of :func:`evaluate` for a spectral problem.

    In the eigenbasis ``W = M⁻¹`` is ``D - c hh'`` per block, the ``I`` basis is the
    identity and the ``J`` basis ``ww'``; with ``Y = WX``, ``ũ = Wr``, ``e = 1 - c
    w'Dw`` (so ``Ww = e h``) and ``t_J = e w'Dw``:
    ``tr(WI) = ΣD - c h'h``, ``tr(WJ) = t_J``; ``s_I = ũ'ũ``, ``s_J = (w'ũ)²``;
    ``B_I = Y'Y``, ``B_J = Y'ww'Y``; ``T_II = tr(W²)``, ``T_IJ = e² h'h``,
    ``T_JJ = t_J²``; ``C_II = Y'WY``, ``C_IJ = e Y'hw'Y``, ``C_JJ = t_J Y'ww'Y``;
    ``R_I = Y'ũ``, ``R_J = Y'w w'ũ``; ``Q_II = ũ'Wũ``, ``Q_IJ = e (h'ũ)(w'ũ)``,
    ``Q_JJ = t_J (w'ũ)²`` (each summed over blocks).
    """
    D, h, c, hw, hR = pt.D, pt.h, pt.c, pt.hw, pt.hR
    G, p = beta.shape
    Rx = sp.R[:, :, :p]
    w = sp.w[None]
    # r = y - Xβ in the eigenbasis; W applied to r and to X
    r = sp.R[None, :, :, p] - np.einsum("nba,ga->gnb", Rx, beta)
    hr = hR[:, :, p] - np.einsum("gna,ga->gn", hR[:, :, :p], beta)
    u = D * r - (c * hr)[:, :, None] * h  # (G, N, b)
    Y = D[..., None] * Rx[None] - (c[:, :, None] * hR[:, :, :p])[:, :, None, :] * h[..., None]
    e = 1.0 - c * hw  # (G, N)
    tJ = e * hw
    wu = (w * u).sum(axis=2)  # (G, N)
    hh = (h * h).sum(axis=2)
    Yw = np.einsum("nb,gnba->gna", sp.w, Y)
    Yf = Y.reshape(G, -1, p)
    uf = u.reshape(G, -1)
    Df = D.reshape(G, -1)
    t_I = Df.sum(axis=1) - (c * hh).sum(axis=1)
    t_J = tJ.sum(axis=1)
    s_I = np.einsum("ge,ge->g", uf, uf)
    s_J = np.einsum("gn,gn->g", wu, wu)
    # (einsum, not matmul: no multithreaded BLAS call on the long axis)
    B_I = np.einsum("gea,geb->gab", Yf, Yf)
    B_J = np.einsum("gna,gnb->gab", Yw, Yw)
    R_I = np.einsum("gea,ge->ga", Yf, uf)
    R_J = np.einsum("gna,gn->ga", Yw, wu)
    kinds = sp.kinds
    nb = len(kinds)
    I_ = [i for i, k in enumerate(kinds) if k == "I"]
    J_ = [i for i, k in enumerate(kinds) if k == "J"]
    t = np.empty((G, nb))
    s = np.empty((G, nb))
    B = np.empty((G, nb, p, p))
    R = np.empty((G, nb, p))
    t[:, I_], t[:, J_] = t_I[:, None], t_J[:, None]
    s[:, I_], s[:, J_] = s_I[:, None], s_J[:, None]
    B[:, I_], B[:, J_] = B_I[:, None], B_J[:, None]
    R[:, I_], R[:, J_] = R_I[:, None], R_J[:, None]
    T = np.zeros((G, nb, nb))
    C = np.zeros((G, nb, p, nb, p))
    Qm = np.zeros((G, nb, nb))
    if order < 2:
        return t, s, B, T, C, Qm, R
    hu = (h * u).sum(axis=2)
    dh2 = (D * h * h).sum(axis=2)
    Yh = np.einsum("gnb,gnba->gna", h, Y)
    T_II = np.einsum("ge,ge->g", Df, Df) - 2.0 * (c * dh2).sum(axis=1) + (
        c * c * hh * hh).sum(axis=1)
    T_IJ = (e * e * hh).sum(axis=1)
    T_JJ = (tJ * tJ).sum(axis=1)
    cYh = c[:, :, None] * Yh
    C_II = np.einsum("gea,geb->gab", Df[:, :, None] * Yf, Yf) - np.einsum(
        "gna,gnb->gab", cYh, Yh)
    C_IJ = np.einsum("gna,gnb->gab", e[:, :, None] * Yh, Yw)
    C_JJ = np.einsum("gna,gnb->gab", tJ[:, :, None] * Yw, Yw)
    Q_II = np.einsum("ge,ge->g", Df * uf, uf) - (c * hu * hu).sum(axis=1)
    Q_IJ = (e * hu * wu).sum(axis=1)
    Q_JJ = (tJ * wu * wu).sum(axis=1)
    pair_T = {("I", "I"): T_II, ("I", "J"): T_IJ, ("J", "I"): T_IJ, ("J", "J"): T_JJ}
    pair_Q = {("I", "I"): Q_II, ("I", "J"): Q_IJ, ("J", "I"): Q_IJ, ("J", "J"): Q_JJ}
    pair_C = {("I", "I"): C_II, ("I", "J"): C_IJ, ("J", "I"): np.swapaxes(C_IJ, 1, 2),
              ("J", "J"): C_JJ}
    for ci, kc in enumerate(kinds):
        for di, kd in enumerate(kinds):
            T[:, ci, di] = pair_T[kc, kd]
            Qm[:, ci, di] = pair_Q[kc, kd]
            C[:, ci, :, di, :] = pair_C[kc, kd]
    return t, s, B, T, C, Qm, R


def evaluate(problem: Problem, theta: FloatArray, reml: bool, order: int = 0) -> Evaluation:
    """Log-likelihood, GLS coefficients and (``order`` 1, 2) score and Hessian.

    Parameters
    ----------
    problem : Problem
    theta : (G, q) or (q,)
        Parameter points (full ``θ``).
    reml : bool
    order : {0, 1, 2}

    Notes
    -----
    Per block the Cholesky factor ``L`` of ``M``; ``Z = L⁻¹[X y]`` gives
    ``A = X'M⁻¹X``, ``c = X'M⁻¹y`` and ``y'M⁻¹y`` as sums over blocks of ``Z'Z``;
    ``β̂ = A⁻¹c``, ``r'M⁻¹r = y'M⁻¹y - c'β̂``, ``log|M| = Σ 2 Σ log L_ii``.  For the
    derivatives, with ``W = M⁻¹`` per block, ``u = W r`` and basis ``K_c``:
    ``t_c = Σ tr(WK_c)``, ``s_c = Σ u'K_c u``, ``B_c = Σ X'WK_cWX``,
    ``T_cd = Σ tr(WK_cWK_d)``, ``C_cd = Σ X'WK_cWK_dWX``, and
    ``tr(PK_c) = t_c - tr(A⁻¹B_c)``,
    ``tr(PK_cPK_d) = T_cd - 2 tr(A⁻¹C_cd) + tr(A⁻¹B_cA⁻¹B_d)``,
    ``u'K_cPK_du = Σ u'K_cWK_du - R_c'A⁻¹R_d`` with ``R_c = Σ X'WK_cu``.  The
    likelihoods are metafor's ``.ll.rma.mv`` (constants included); score and
    Hessian as in Searle, Casella & McCulloch (1992, ch. 6) and Harville (1977).

    Problems with a :class:`Spectral` form compute the same sums from ``V``'s
    eigen-decomposition instead (:func:`_spectral_gls`, :func:`_spectral_sums`).
    """
    th = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    G = th.shape[0]
    st = problem.structure
    g, dg, d2g = st.coefficients(th, order)
    p = problem.p
    nb = st.n_basis
    logdet_m = np.zeros(G)
    ok = np.ones(G, dtype=bool)
    S = np.zeros((G, p + 1, p + 1))
    saved: list[tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]] = []
    sp = problem.spectral
    spec: _SpectralPoint | None = None
    if sp is not None:
        spec = _spectral_gls(sp, g)
        S, logdet_m, ok = spec.S, spec.logdet, spec.ok
    for yb, Xy, Vb, Kb, Ks in (() if sp is not None else _pieces(problem, G)):
        n, b = yb.shape
        if nb:
            M = (g @ Kb.reshape(nb, -1) + Vb.reshape(1, -1)).reshape(G, n, b, b)
        else:
            M = np.broadcast_to(Vb[None], (G, n, b, b))
        L, bad = bl.cholesky(M)
        if bad is not None:
            ok &= ~bad.reshape(G, -1).any(axis=1)
        logdet_m += bl.chol_logdet(L).sum(axis=1)
        if order == 0:
            Z = bl.forward_solve(L, Xy[None]).reshape(G, n * b, p + 1)
            S += np.matmul(np.swapaxes(Z, 1, 2), Z)
            continue
        W = bl.spd_inverse(L)  # (G, n, b, b)
        WXy = np.matmul(W, Xy[None])  # (G, n, b, p+1)
        S += np.matmul(Xy.reshape(1, n * b, p + 1).swapaxes(1, 2), WXy.reshape(G, n * b, p + 1))
        saved.append((W, WXy[..., :p], WXy[..., p], Kb, Ks))
    A = S[:, :p, :p]
    cvec = S[:, :p, p]
    ywy = S[:, p, p]
    logdet_a, vb, badA = _small_spd(A)
    if badA is not None:
        ok &= ~badA
    if st.psd:
        ok &= _psd_points(st, th)
    beta = np.matmul(vb, cvec[:, :, None])[:, :, 0]
    rss = ywy - np.einsum("gi,gi->g", cvec, beta)
    k = problem.k
    if reml:
        ll = -0.5 * ((k - p) * LOG_2PI + logdet_m + logdet_a + rss) + 0.5 * problem.logdet_xtx
    else:
        ll = -0.5 * (k * LOG_2PI + logdet_m + rss)
    ll = np.where(ok, ll, -np.inf)
    if order == 0:
        return Evaluation(ll=ll, ok=ok, beta=_to_x(problem, beta), vb=_vb_to_x(problem, vb))
    assert dg is not None
    t = np.zeros((G, nb))
    s = np.zeros((G, nb))
    B = np.zeros((G, nb, p, p))
    T = np.zeros((G, nb, nb))
    C = np.zeros((G, nb, p, nb, p))
    Qm = np.zeros((G, nb, nb))
    R = np.zeros((G, nb, p))
    if sp is not None and spec is not None:
        t, s, B, T, C, Qm, R = _spectral_sums(sp, spec, beta, order)
    for W, WX, Wy, Kb, Ks in saved:
        _, n, b, _ = W.shape
        nbb = n * b
        u = Wy - np.matmul(WX, beta[:, None, :, None])[..., 0]  # (G, n, b)
        # K_c u and K_c W X for all c in one product each (Ks = [K_1; K_2; ...])
        KU = np.matmul(Ks[None], u[..., None])[..., 0]  # (G, n, nb·b)
        KU = KU.reshape(G, n, nb, b).transpose(0, 2, 1, 3)  # (G, nb, n, b)
        E = np.matmul(Ks[None], WX)  # (G, n, nb·b, p)
        E = E.reshape(G, n, nb, b, p).transpose(0, 2, 1, 3, 4)  # K_c W X: (G, nb, n, b, p)
        s += np.matmul(KU.reshape(G, nb, nbb), u.reshape(G, nbb, 1))[..., 0]
        t += W.reshape(G, -1) @ Kb.reshape(nb, -1).T
        Ef = E.reshape(G, nb, nbb, p)
        WXf = WX.reshape(G, 1, nbb, p)
        B += np.matmul(np.swapaxes(WXf, 2, 3), Ef)
        if order >= 2:
            # W K_c, W K_c W X and W K_c u, each for all c in one product
            Kcat = np.swapaxes(Ks, 1, 2)  # [K_1 | K_2 | ...] (K symmetric)
            WK = np.matmul(W, Kcat[None]).reshape(G, n, b, nb, b).transpose(0, 3, 1, 2, 4)
            WKt = np.swapaxes(WK, -1, -2).reshape(G, nb, -1)
            T += np.matmul(WK.reshape(G, nb, -1), np.swapaxes(WKt, 1, 2))
            rhs = np.concatenate(
                [E.transpose(0, 2, 3, 1, 4).reshape(G, n, b, nb * p),
                 KU.transpose(0, 2, 3, 1)], axis=3,
            )  # (G, n, b, nb·p + nb)
            Wr = np.matmul(W, rhs)
            F = Wr[..., : nb * p].reshape(G, n, b, nb, p).transpose(0, 3, 1, 2, 4)
            WKU = Wr[..., nb * p :].transpose(0, 3, 1, 2)  # (G, nb, n, b)
            Et = Ef.transpose(0, 1, 3, 2).reshape(G, nb * p, nbb)
            Fr = F.reshape(G, nb, nbb, p).transpose(0, 2, 1, 3).reshape(G, nbb, nb * p)
            C += np.matmul(Et, Fr).reshape(G, nb, p, nb, p)
            KUf = KU.reshape(G, nb, nbb)
            R += np.matmul(KUf, WX.reshape(G, nbb, p))
            Qm += np.matmul(KUf, WKU.reshape(G, nb, nbb).swapaxes(1, 2))
    AiB = np.matmul(vb[:, None], B)  # (G, nb, p, p)
    trAB = np.einsum("gcii->gc", AiB)
    trp = t - trAB if reml else t
    score_c = -0.5 * trp + 0.5 * s
    grad = np.einsum("gc,gci->gi", score_c, dg)
    if order == 1:
        return Evaluation(
            ll=ll, ok=ok, beta=_to_x(problem, beta), vb=_vb_to_x(problem, vb), grad=grad
        )
    assert d2g is not None
    if reml:
        trAC = np.einsum("gij,gcjdi->gcd", vb, C)
        trABAB = np.einsum("gcij,gdji->gcd", AiB, AiB)
        TT = T - 2.0 * trAC + trABAB
    else:
        TT = T
    RAR = np.einsum("gci,gij,gdj->gcd", R, vb, R)
    ukpku = Qm - RAR
    Hc = 0.5 * TT - ukpku
    hess = np.einsum("gci,gcd,gdj->gij", dg, Hc, dg) + np.einsum("gc,gcij->gij", score_c, d2g)
    info = 0.5 * np.einsum("gci,gcd,gdj->gij", dg, TT, dg)
    return Evaluation(
        ll=ll, ok=ok, beta=_to_x(problem, beta), vb=_vb_to_x(problem, vb), grad=grad,
        hess=hess, info=info,
    )


def _small_spd(A: FloatArray) -> tuple[FloatArray, FloatArray, BoolArray | None]:
    """``log|A|``, ``A⁻¹`` (as ``L⁻ᵀL⁻¹``) and the non-positive-definite points of a
    stack of small ``(G, p, p)`` matrices (LAPACK directly: the batch-last loops of
    :mod:`~alliance_meta.core.blocks` pay off only for many blocks)."""
    try:
        LA = np.linalg.cholesky(A)
        bad = None
    except np.linalg.LinAlgError:
        LA, bad = bl.cholesky(np.ascontiguousarray(A))
    Li = np.linalg.inv(LA)
    logdet: FloatArray = 2.0 * np.log(np.diagonal(LA, axis1=1, axis2=2)).sum(axis=1)
    inv: FloatArray = np.matmul(np.swapaxes(Li, 1, 2), Li)
    return logdet, inv, bad


def _to_x(problem: Problem, beta_q: FloatArray) -> FloatArray:
    """Coefficients of ``X`` from those of ``Q``: ``β = R⁻¹β_Q``."""
    out: FloatArray = beta_q @ problem.Rinv.T
    return out


def _vb_to_x(problem: Problem, vb_q: FloatArray) -> FloatArray:
    """``Var(β) = R⁻¹ Var(β_Q) R⁻ᵀ``."""
    Ri = problem.Rinv
    out: FloatArray = np.matmul(np.matmul(Ri, vb_q), Ri.T)
    return out


def evaluate_many(problem: Problem, theta: FloatArray, reml: bool) -> FloatArray:
    """Log-likelihoods at many points ``theta (G, q)``, in memory-bounded chunks."""
    th = np.atleast_2d(theta)
    chunk = _SCAN_POINTS
    sp = problem.spectral
    if sp is not None:
        chunk = max(1, min(chunk, _SPECTRAL_SCAN_ENTRIES // sp.lam.size))
    out = np.empty(th.shape[0])
    for start in range(0, th.shape[0], chunk):
        out[start : start + chunk] = evaluate(problem, th[start : start + chunk], reml, 0).ll
    return out


# ---------------------------------------------------------------------------
# Global maximisation: scan, then multi-start bounded Newton
# ---------------------------------------------------------------------------


#: Grid of the global scan, in units of ``Problem.scale`` (variances) and for
#: correlations.
_VAR_GRID = np.array([0.0, 0.03, 0.3, 1.5])
_COR_GRID = np.array([-0.75, -0.25, 0.25, 0.75])
_MAX_FULL_GRID = 3  # free parameters up to which the full grid is scanned
_N_HALTON = 243


def _halton(n: int, d: int) -> FloatArray:
    primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71]
    out = np.empty((n, d))
    for j in range(d):
        base = primes[j % len(primes)]
        for i in range(n):
            f, r, x = 1.0, 0.0, i + 1
            while x > 0:
                f /= base
                r += f * (x % base)
                x //= base
            out[i, j] = r
    return out


def initial_points(
    problem: Problem, reml: bool, fixed: FloatArray, n_starts: int = _N_STARTS
) -> FloatArray:
    """Starting points for Newton: the local maxima of a global scan.

    The free parameters are scanned on a grid (variances ``scale × {0, .03, .3,
    1.5}`` with ``scale`` of :class:`Problem`; standard deviations their square
    roots; correlations ``{±.75, ±.25}``; a Halton design of 243 points beyond three
    free parameters), the log-likelihood is evaluated at every point in batches, and
    the points at least as high as all their grid neighbours (one per basin of the
    likelihood at the grid's resolution) are kept, best first, up to ``n_starts``.
    """
    st = problem.structure
    free = np.isnan(fixed)
    if st.chol:
        # scan in (τ², ρ) form; positive-definite points mapped to their Cholesky factor
        cov = Structure(st.n_sigma, "UN", st.n_outcomes)
        cfix = np.concatenate([fixed[: st.n_sigma], np.full(cov.n_params - st.n_sigma, np.nan)])
        cfree = np.isnan(cfix)
        pts, coords, n_neigh = _scan_design(cov.is_correlation[cfree], problem.scale, True)
        cth = np.tile(np.nan_to_num(cfix), (pts.shape[0], 1))
        cth[:, cfree] = pts
        thetas = np.tile(np.nan_to_num(fixed), (pts.shape[0], 1))
        good = np.ones(pts.shape[0], dtype=bool)
        pos = {rc: i for i, rc in enumerate(st.chol_pairs)}
        for n in range(pts.shape[0]):
            try:
                C = np.linalg.cholesky(cov.G_matrix(cth[n]))
            except np.linalg.LinAlgError:
                good[n] = False
                continue
            for (r, c), i in pos.items():
                thetas[n, st.n_sigma + i] = C[r, c]
            thetas[n, : st.n_sigma] = cth[n, : st.n_sigma]
        ll = np.full(pts.shape[0], -np.inf)
        ll[good] = evaluate_many(problem, thetas[good], reml)
    else:
        idx = np.flatnonzero(free)
        pts, coords, n_neigh = _scan_design(st.is_correlation[idx], problem.scale, False)
        sdm = st.is_sd[idx]
        pts[:, sdm] = np.sqrt(pts[:, sdm])
        thetas = np.tile(np.nan_to_num(fixed), (pts.shape[0], 1))
        thetas[:, idx] = pts
        ll = evaluate_many(problem, thetas, reml)
    keep = _local_maxima(coords, ll, n_neigh)[:n_starts]
    out: FloatArray = thetas[keep]
    return out


def _scan_design(
    cor: BoolArray, scale: float, positive: bool
) -> tuple[FloatArray, FloatArray, int]:
    """Scan points (free parameters), their grid coordinates and neighbour count.

    ``positive``: variances strictly positive (0 becomes ``0.001 scale``), so that a
    Cholesky factor exists.
    """
    q = cor.size
    vgrid = _VAR_GRID * scale
    if positive:
        vgrid = np.where(vgrid == 0, 0.001 * scale, vgrid)
    if q <= _MAX_FULL_GRID:
        axes = [(_COR_GRID if c else vgrid) for c in cor]
        mesh = np.meshgrid(*axes, indexing="ij")
        pts = np.stack([m.ravel() for m in mesh], axis=1)
        coords = np.stack(
            [m.ravel() for m in np.meshgrid(*[np.arange(a.size) for a in axes], indexing="ij")],
            axis=1,
        ).astype(np.float64)
        return pts, coords, 3**q - 1
    u = _halton(_N_HALTON, q)
    low = 0.001 * scale if positive else 0.0
    pts = np.where(
        cor[None, :],
        -0.9 + 1.8 * u,
        np.where(u < 0.15, low, scale * 10.0 ** (-2.5 + 3.0 * u)),
    )
    return pts, u * 4.0, 2 * q + 2


def _local_maxima(coords: FloatArray, ll: FloatArray, n_neigh: int) -> list[int]:
    """Points of a scan at least as high as their ``n_neigh`` nearest neighbours
    (Chebyshev distance), best first; the best point when none is finite."""
    finite = np.isfinite(ll)
    if not finite.any():
        return [0]
    val = np.where(finite, ll, -np.inf)
    dist = np.max(np.abs(coords[:, None, :] - coords[None, :, :]), axis=2)
    np.fill_diagonal(dist, np.inf)
    m = min(n_neigh, coords.shape[0] - 1)
    if m <= 0:
        return [int(np.argmax(val))]
    nn = np.argpartition(dist, m - 1, axis=1)[:, :m]
    is_max = finite & np.all(val[:, None] >= val[nn], axis=1)
    cand = np.flatnonzero(is_max)
    cand = cand[np.argsort(-val[cand], kind="stable")]
    best = int(np.argmax(val))
    out = [int(c) for c in cand]
    if best not in out:
        out.insert(0, best)
    return out


@dataclass(frozen=True)
class Solution:
    """A maximum of the (restricted) likelihood over the free parameters."""

    theta: FloatArray
    ll: float
    converged: bool
    iterations: int
    evaluation: Evaluation
    #: the other starts' end points and log-likelihoods (for diagnostics)
    ends: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    end_ll: FloatArray = field(default_factory=lambda: np.zeros(0))
    #: free parameters whose Newton decrement or projected gradient did not settle
    unsettled: tuple[int, ...] = ()


def _free_set(g: FloatArray, theta: FloatArray, lo: FloatArray, hi: FloatArray) -> BoolArray:
    """Parameters not held at a bound (a parameter at a bound whose score points
    outwards stays there)."""
    at_lo = (theta <= lo) & (g <= 0)
    at_hi = (theta >= hi) & (g >= 0)
    out: BoolArray = ~(at_lo | at_hi)
    return out


def _decrement(gF: FloatArray, nH: FloatArray, IF: FloatArray) -> tuple[float, bool]:
    """Newton decrement ``g'(-H)⁻¹g`` when ``-H`` is positive definite, else the
    Fisher-scoring one ``g'I⁺g``; and whether ``-H`` was positive definite."""
    try:
        Lc = np.linalg.cholesky(nH)
        z = np.linalg.solve(Lc, gF)
        return float(z @ z), True
    except np.linalg.LinAlgError:
        w, U = np.linalg.eigh(0.5 * (IF + IF.T))
        keep = w > max(float(w.max()), 1e-300) * 1e-10
        proj = U.T @ gF
        return float(np.sum(proj[keep] ** 2 / w[keep])), False


def _damped_step(
    gF: FloatArray, nH: FloatArray, IF: FloatArray, lam: float
) -> tuple[FloatArray, float]:
    """Levenberg-Marquardt step ``(-H + λD)⁻¹g`` with ``D`` the diagonal of the
    Fisher information (so the damping is scale-equivariant); ``λ`` is raised until
    the system is positive definite.  Returns the step and the ``λ`` used."""
    dI = np.diag(IF).copy()
    dI = np.where(dI > 0, dI, 0.0) + 1e-12 * max(float(dI.max()), 1e-300)
    if lam > 0 or not _is_pd(nH):
        s = 1.0 / np.sqrt(dI)
        Sm = nH * s[:, None] * s[None, :]
        need = -float(np.linalg.eigvalsh(0.5 * (Sm + Sm.T))[0])
        lam = max(lam, 1.1 * need + 1e-6 if need > -1e-6 else lam)
    for _ in range(60):
        try:
            Lc = np.linalg.cholesky(nH + lam * np.diag(dI))
            d = np.linalg.solve(Lc.T, np.linalg.solve(Lc, gF))
            return d, lam
        except np.linalg.LinAlgError:
            lam = max(4.0 * lam, 1e-6)
    return np.zeros_like(gF), lam


def _is_pd(A: FloatArray) -> bool:
    try:
        np.linalg.cholesky(A)
        return True
    except np.linalg.LinAlgError:
        return False


def maximise(
    problem: Problem,
    reml: bool,
    fixed: FloatArray | None = None,
    starts: FloatArray | None = None,
) -> Solution:
    """Maximise the (restricted) log-likelihood over the free parameters.

    Parameters
    ----------
    problem : Problem
    reml : bool
    fixed : (q,) array, optional
        Fixed values; NaN marks a parameter to estimate (all, by default).
    starts : (S, q) array, optional
        Starting points (by default :func:`initial_points`).

    Returns
    -------
    Solution

    Notes
    -----
    From every start, a bounded Newton iteration on the analytic score and observed
    Hessian, damped Levenberg-Marquardt fashion (``(-H + λ diag I)d = g`` with ``I``
    the Fisher information; ``λ`` shrinks after a successful step and grows after a
    failed one, so that indefinite regions are crossed safely and the last steps are
    pure Newton).  In the first three iterations, while the decrement exceeds 1, the
    steps are Fisher scoring (``Id = g``), which overshoots less far from the
    maximum.  Parameters at a bound are held there while the score points outwards.
    The starts run as one batch; a start whose likelihood stays far below a
    converged one is dropped.  A start converges when its Newton decrement falls
    below 1e-10 (after which one more step is taken).  The best end point is
    returned, so a local maximum of one basin cannot hide a higher one found from
    another start.
    """
    st = problem.structure
    q = st.n_params
    fx = np.full(q, np.nan) if fixed is None else np.asarray(fixed, dtype=np.float64)
    free = np.isnan(fx)
    if not free.any():
        ev = evaluate(problem, np.nan_to_num(fx)[None], reml, 2)
        return Solution(fx.copy(), float(ev.ll[0]), bool(ev.ok[0]), 0, ev)
    if starts is None:
        starts = initial_points(problem, reml, fx)
    idx = np.flatnonzero(free)
    lo, hi = st.lower[idx], st.upper[idx]
    theta = np.array(starts, dtype=np.float64, copy=True)
    theta[:, ~free] = fx[~free]
    theta[:, idx] = np.clip(theta[:, idx], lo, hi)
    S = theta.shape[0]
    ev = evaluate(problem, theta, reml, 2)
    assert ev.grad is not None and ev.hess is not None and ev.info is not None
    ll = ev.ll.copy()
    grads, hesss, infos = ev.grad.copy(), ev.hess.copy(), ev.info.copy()
    betas, vbs = ev.beta.copy(), ev.vb.copy()
    active = np.isfinite(ll)
    converged = np.zeros(S, dtype=bool)
    lam = np.zeros(S)
    dec = np.full(S, np.inf)
    iters = np.zeros(S, dtype=np.int64)
    for _ in range(_MAX_ITER):
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        n_act = act.size
        cand = theta[act].copy()
        last = np.zeros(n_act, dtype=bool)
        newton = np.zeros(n_act, dtype=bool)
        pieces: list[tuple[BoolArray, FloatArray, FloatArray, FloatArray]] = []
        for n, s in enumerate(act):
            g = grads[s, idx]
            F = _free_set(g, theta[s, idx], lo, hi)
            gF = g[F]
            nH = -hesss[s][np.ix_(idx, idx)][np.ix_(F, F)]
            IF = infos[s][np.ix_(idx, idx)][np.ix_(F, F)]
            pieces.append((F, gF, nH, IF))
            if not F.any():
                dec[s] = 0.0
                last[n] = True
                continue
            dec[s], newton[n] = _decrement(gF, nH, IF)
            if iters[s] < _FISHER_STEPS and dec[s] > _FISHER_DECREMENT and _is_pd(IF):
                # far from the maximum: Fisher scoring, steadier than Newton there
                pieces[n] = (F, gF, IF, IF)
                newton[n] = True
            if newton[n]:
                lam[s] = 0.0
            elif lam[s] == 0.0:
                lam[s] = 1.0
            if dec[s] < _DECREMENT_TOL:
                last[n] = True
        steps = np.zeros((n_act, idx.size))
        for n, s in enumerate(act):
            F, gF, nH, IF = pieces[n]
            if F.any():
                dF, lam[s] = _damped_step(gF, nH, IF, lam[s])
                steps[n, F] = dF
        cand[:, idx] = np.clip(theta[act][:, idx] + steps, lo, hi)
        if last.all():
            # the final steps: only the likelihood, β̂ and Var(β̂) are needed there
            ev0 = evaluate(problem, cand, reml, 0)
            for n, s in enumerate(act):
                iters[s] += 1
                if ev0.ll[n] >= ll[s] - 1e-12 * (1.0 + abs(ll[s])):
                    theta[s], ll[s] = cand[n], ev0.ll[n]
                    betas[s], vbs[s] = ev0.beta[n], ev0.vb[n]
                active[s] = False
                converged[s] = True
            continue
        evc = evaluate(problem, cand, reml, 2)
        assert evc.grad is not None and evc.hess is not None and evc.info is not None
        slack = 1e-12 * (1.0 + np.abs(ll[act]))
        good = evc.ll >= ll[act] - slack
        new_ll = evc.ll.copy()
        retry = np.flatnonzero(~good & ~last)
        for _r in range(40):
            if retry.size == 0:
                break
            for rn in retry:
                rs = int(act[rn])
                F, gF, nH, IF = pieces[rn]
                if newton[rn]:
                    steps[rn] = 0.5 * steps[rn]  # backtrack along the Newton direction
                else:
                    lam[rs] = 4.0 * lam[rs]  # damp more
                    dF, lam[rs] = _damped_step(gF, nH, IF, lam[rs])
                    steps[rn, F] = dF
                cand[rn, idx] = np.clip(theta[rs, idx] + steps[rn], lo, hi)
            ev0 = evaluate(problem, cand[retry], reml, 0)
            ok = ev0.ll >= ll[act[retry]] - slack[retry]
            new_ll[retry] = ev0.ll
            good[retry[ok]] = True
            tiny = np.array(
                [np.all(np.abs(steps[n]) <= 1e-15 * (np.abs(theta[act[n], idx]) + 1e-300))
                 for n in retry]
            )
            retry = retry[~ok & ~tiny]
        redo = np.flatnonzero(good & (new_ll != evc.ll))
        if redo.size:
            evr = evaluate(problem, cand[redo], reml, 2)
            assert evr.grad is not None and evr.hess is not None and evr.info is not None
        for n, s in enumerate(act):
            iters[s] += 1
            if good[n]:
                src, m = (evc, n)
                if redo.size and n in redo:
                    src, m = evr, int(np.flatnonzero(redo == n)[0])
                assert src.grad is not None and src.hess is not None and src.info is not None
                theta[s] = cand[n]
                ll[s] = src.ll[m]
                grads[s], hesss[s], infos[s] = src.grad[m], src.hess[m], src.info[m]
                betas[s], vbs[s] = src.beta[m], src.vb[m]
                lam[s] = lam[s] / 10.0
            if last[n]:
                # the pending step was within the decrement tolerance: done (if it was
                # rejected, the point is already a maximum to rounding)
                active[s] = False
                converged[s] = True
            elif not good[n]:
                active[s] = False  # stalled: no ascent step can be found
                converged[s] = dec[s] < _STALL_TOL
        # drop starts far below a converged one (their remaining gain, estimated by
        # the decrement, cannot reach it)
        if converged.any():
            top = float(np.max(ll[converged]))
            for s in np.flatnonzero(active):
                if ll[s] + 2.0 * dec[s] + 1e-6 * (1.0 + abs(top)) < top:
                    active[s] = False
    best = int(np.argmax(np.where(np.isfinite(ll), ll, -np.inf)))
    sl = slice(best, best + 1)
    evb = Evaluation(
        ll=ll[sl].copy(), ok=np.isfinite(ll[sl]), beta=betas[sl].copy(), vb=vbs[sl].copy(),
        grad=grads[sl].copy(), hess=hesss[sl].copy(), info=infos[sl].copy(),
    )
    unsettled: tuple[int, ...] = ()
    if not converged[best]:
        g = grads[best, idx]
        inward = _free_set(g, theta[best, idx], lo, hi)
        unsettled = tuple(int(i) for i in idx[inward])
    return Solution(
        theta=theta[best].copy(),
        ll=float(ll[best]),
        converged=bool(converged[best]),
        iterations=int(iters[best]),
        evaluation=evb,
        ends=theta.copy(),
        end_ll=ll.copy(),
        unsettled=unsettled,
    )


# ---------------------------------------------------------------------------
# Quantities at V alone, fit statistics and heterogeneity
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingStats:
    """Quantities of the model without random effects (``M = V``).

    ``QE = (y - Xβ̂_V)'V⁻¹(y - Xβ̂_V)`` (metafor's test of residual heterogeneity),
    ``ll_QE = -½ (k log 2π + log|V|)`` (the saturated log-likelihood in metafor's ML
    deviance), ``trace_P = tr(P_V)`` with ``P_V = V⁻¹ - V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹``.
    """

    QE: float
    ll_QE: float
    trace_P: float
    beta: FloatArray


def sampling_stats(problem: Problem) -> SamplingStats:
    """QE, the saturated log-likelihood and ``tr(P_V)`` (blockwise): metafor's ``QE``
    and ``fitstats`` constants for ``rma.mv`` (Viechtbauer's documentation) and the
    ``tr(P)`` of the typical sampling variance of multilevel I² (Nakagawa & Santos,
    2012)."""
    p = problem.p
    sp = problem.spectral
    if sp is not None:
        # V⁻¹ = U Λ⁻¹ U' per block: every sum is over the rotated rows
        Dv = (sp.real / sp.lam).reshape(-1)
        Rf = sp.R.reshape(-1, p + 1)
        S = np.einsum("ea,eb->ab", Dv[:, None] * Rf, Rf)
        Rx = Rf[:, :p]
        A, c, ywy = S[:p, :p], S[:p, p], float(S[p, p])
        WXWX = np.einsum("ea,eb->ab", (Dv * Dv)[:, None] * Rx, Rx)
        beta_q = np.asarray(np.linalg.solve(A, c), dtype=np.float64)
        return SamplingStats(
            QE=ywy - float(c @ beta_q),
            ll_QE=-0.5 * (problem.k * LOG_2PI + float(np.log(sp.lam).sum())),  # 1 on padding
            trace_P=float(Dv.sum()) - float(np.trace(np.linalg.solve(A, WXWX))),
            beta=np.asarray(np.linalg.solve(problem.R, beta_q), dtype=np.float64),
        )
    A = np.zeros((p, p))
    c = np.zeros(p)
    ywy = 0.0
    logdet = 0.0
    trW = 0.0
    WXWX = np.zeros((p, p))
    for yb, Xb, Vb in zip(problem.y, problem.X, problem.V, strict=True):
        L, bad = bl.cholesky(Vb)
        if bad is not None:
            raise np.linalg.LinAlgError("V is not positive definite")
        logdet += float(bl.chol_logdet(L).sum())
        W = bl.spd_inverse(L)
        WX = np.matmul(W, Xb)
        Wy = np.einsum("nij,nj->ni", W, yb)
        Xf = Xb.reshape(-1, p)
        A += Xf.T @ WX.reshape(-1, p)
        c += Xf.T @ Wy.reshape(-1)
        ywy += float(yb.reshape(-1) @ Wy.reshape(-1))
        trW += float(np.einsum("nii->", W))
        WXWX += WX.reshape(-1, p).T @ WX.reshape(-1, p)
    # the padding of W is identity: remove its trace
    trW -= _n_padding(problem.layout)
    beta_q = np.asarray(np.linalg.solve(A, c), dtype=np.float64)
    QE = ywy - float(c @ beta_q)
    beta = np.asarray(np.linalg.solve(problem.R, beta_q), dtype=np.float64)
    trP = trW - float(np.trace(np.linalg.solve(A, WXWX)))
    return SamplingStats(
        QE=QE,
        ll_QE=-0.5 * (problem.k * LOG_2PI + logdet),
        trace_P=trP,
        beta=beta,
    )


def _n_padding(layout: bl.BlockLayout) -> float:
    return float(sum(int((~b.mask).sum()) for b in layout.buckets))


def fit_statistics(
    ll: float, reml: bool, k: int, p: int, parms: int, ll_QE: float
) -> tuple[float, float, float, float]:
    """``deviance, AIC, BIC, AICc`` as metafor's ``fitstats`` for ``rma.mv``.

    ML: ``dev = -2 (ℓ - ℓ_QE)``, ``BIC = -2ℓ + parms log k``, ``AICc = -2ℓ +
    2 parms n/(n - parms - 1)`` with ``n = max(k, parms + 2)``; REML: ``dev = -2ℓ``
    and ``k - p`` in place of ``k``.  ``parms = p +`` the number of estimated
    variance components.
    """
    n = (k - p) if reml else k
    dev = -2.0 * ll if reml else -2.0 * (ll - ll_QE)
    aic = -2.0 * ll + 2.0 * parms
    bic = -2.0 * ll + parms * math.log(n)
    nn = max(n, parms + 2)
    aicc = -2.0 * ll + 2.0 * parms * nn / (nn - parms - 1)
    return dev, aic, bic, aicc


def multilevel_i2(
    sigma2: FloatArray, k: int, p: int, trace_P: float
) -> tuple[float, FloatArray, float]:
    """Multilevel I² (total, per level, percent) and the typical sampling variance.

    ``ṽ = (k - p) / tr(P_V)``, ``I²_l = 100 σ²_l / (Σσ² + ṽ)``, ``I² = Σ_l I²_l``
    (metafor FAQ "I² for multilevel and multivariate models"; Nakagawa & Santos,
    2012).
    """
    tv = (k - p) / trace_P
    tot = float(np.sum(sigma2))
    levels = 100.0 * np.asarray(sigma2, dtype=np.float64) / (tot + tv)
    return float(levels.sum()), levels, float(tv)


# ---------------------------------------------------------------------------
# Profile-likelihood confidence intervals
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileBound:
    """One bound of a profile-likelihood CI: its value and whether it is the edge of
    the searched range (the CI reaches it) rather than a root."""

    value: float
    at_limit: bool
    converged: bool


def profile_interval(
    problem: Problem,
    reml: bool,
    fixed: FloatArray,
    theta_hat: FloatArray,
    ll_hat: float,
    j: int,
    level: float,
) -> tuple[ProfileBound, ProfileBound]:
    """Profile-likelihood CI of parameter ``j`` (metafor's ``confint.rma.mv``).

    The bounds solve ``2 (ℓ̂ - ℓ_p(θ_j)) = χ²_{1, level}`` where ``ℓ_p`` maximises
    over the other free parameters (every profile point is a global maximisation
    warm-started at the nearest solution).  As in metafor, a variance's lower bound
    is 0 and a correlation's bounds are ±1 when the statistic there is below the
    critical value; the upper bound of a variance is searched from ``max(100 θ̂_j,
    10 scale)`` upwards (metafor stops at ``max(10, 100 θ̂_j)``), to 1e-10 relative.
    ``fixed`` and ``theta_hat`` are in reported units (variances, not the standard
    deviations some structures use internally).
    """
    st = problem.structure
    crit = float(chi2_ppf(level, 1.0))
    is_cor = bool(st.is_correlation[j])
    est = float(theta_hat[j])
    scale = problem.scale
    warm: dict[str, FloatArray] = {"theta": theta_hat.copy()}

    mode = {"full": False}

    def stat(val: float, full: bool | None = None) -> float:
        """``2(ℓ̂ - ℓ_p(val)) - χ²``: warm-started at the last profile point, plus the
        global scan's starts when ``full``."""
        fx = fixed.copy()
        fx[j] = val
        fx = st.to_internal(fx)
        start = warm["theta"].copy()
        start[j] = val
        start = st.to_internal(start)
        use_scan = mode["full"] if full is None else full
        grid = (
            initial_points(problem, reml, fx, n_starts=2)
            if use_scan and np.isnan(fx).any()
            else None
        )
        starts = start[None] if grid is None else np.vstack([start[None], grid])
        sol = maximise(problem, reml, fx, starts)
        if np.isfinite(sol.ll):
            warm["theta"] = st.to_report(sol.theta)
        val_stat = 2.0 * (ll_hat - sol.ll) - crit
        return float(val_stat) if np.isfinite(val_stat) else 1e300

    def root(a: float, b: float) -> float:
        """The root, found along warm-started profile points and verified by a global
        maximisation there; redone with global maximisations everywhere if the
        verification finds a higher profile (the warm path missed a basin)."""
        tol = 1e-12 * max(abs(a), abs(b), scale * 1e-6 if not is_cor else 1e-6)
        start_theta = warm["theta"].copy()
        mode["full"] = False
        r = float(optimize.brentq(stat, a, b, xtol=tol, rtol=1e-12, maxiter=200))
        warm_stat = stat(r, full=False)
        if abs(stat(r, full=True) - warm_stat) > 1e-8:
            warm["theta"] = start_theta
            mode["full"] = True
            r = float(optimize.brentq(stat, a, b, xtol=tol, rtol=1e-12, maxiter=200))
            mode["full"] = False
        return r

    lower_limit = -1.0 if is_cor else 0.0
    upper_limit = 1.0 if is_cor else math.inf
    # lower bound
    if est <= lower_limit or stat(lower_limit, full=True) < 0:
        lb = ProfileBound(lower_limit, True, True)
    else:
        warm["theta"] = theta_hat.copy()
        try:
            lb = ProfileBound(root(lower_limit, est), False, True)
        except (ValueError, RuntimeError):
            lb = ProfileBound(math.nan, False, False)
    warm["theta"] = theta_hat.copy()
    # upper bound
    if is_cor:
        if est >= upper_limit or stat(upper_limit, full=True) < 0:
            ub = ProfileBound(upper_limit, True, True)
        else:
            warm["theta"] = theta_hat.copy()
            try:
                ub = ProfileBound(root(est, upper_limit), False, True)
            except (ValueError, RuntimeError):
                ub = ProfileBound(math.nan, False, False)
        return lb, ub
    hi = max(100.0 * est, 10.0 * scale)
    lo_b = est
    found = False
    for _ in range(40):
        if stat(hi) > 0:
            found = True
            break
        lo_b = hi
        hi *= 10.0
    warm["theta"] = theta_hat.copy()
    if not found:
        return lb, ProfileBound(math.nan, False, False)
    try:
        ub = ProfileBound(root(lo_b, hi), False, True)
    except (ValueError, RuntimeError):
        ub = ProfileBound(math.nan, False, False)
    return lb, ub


# ---------------------------------------------------------------------------
# Marginal covariance blocks
# ---------------------------------------------------------------------------


def marginal_covariance(problem: Problem, theta: FloatArray) -> list[FloatArray]:
    """The fitted ``M = V + Σ g_c K_c`` per bucket ``(n, b, b)`` (identity padding);
    ``theta`` in reported units (the marginal covariance of the module docstring's
    model: Konstantopoulos, 2011; Berkey et al., 1998)."""
    st = problem.structure
    g, _, _ = st.coefficients(st.to_internal(np.asarray(theta))[None, :])
    out = []
    for Vb, Kb in zip(problem.V, problem.K, strict=True):
        out.append(Vb + np.tensordot(g[0], Kb, axes=(0, 0)) if Kb.shape[0] else Vb.copy())
    return out


def marginal_blocks(
    problem: Problem, theta: FloatArray, codes: IntArray
) -> tuple[IntArray, FloatArray, IntArray]:
    """``M`` restricted to the clusters ``codes`` (0..G-1, one per effect).

    Returns
    -------
    index : (G, b) int64
        Positions of each cluster's effects (in order), ``-1`` on padding.
    M : (G, b, b)
        The marginal covariance of each cluster, identity on padding.
    linked : (m, 2) int64
        Pairs of effects of different clusters that ``M`` links (empty when the
        clusters are independent under the model).
    """
    codes = np.asarray(codes, dtype=np.int64)
    layout = problem.layout
    n_cl = int(codes.max()) + 1 if codes.size else 0
    sizes = np.bincount(codes, minlength=n_cl)
    b = int(sizes.max()) if n_cl else 0
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.empty(codes.size, dtype=np.int64)
    pos[order] = np.arange(codes.size) - np.repeat(starts, sizes)
    index = np.full((n_cl, b), -1, dtype=np.int64)
    index[codes, pos] = np.arange(codes.size)
    out = np.zeros((n_cl, b, b))
    Mb = marginal_covariance(problem, theta)
    linked: list[IntArray] = []
    for Mk, bk in zip(Mb, layout.buckets, strict=True):
        ii = np.nonzero(bk.mask[:, :, None] & bk.mask[:, None, :] & (Mk != 0))
        ei = bk.index[ii[0], ii[1]]
        ej = bk.index[ii[0], ii[2]]
        vals = Mk[ii]
        same = codes[ei] == codes[ej]
        if not same.all():
            linked.append(np.stack([ei[~same], ej[~same]], axis=1))
        ei, ej, vals = ei[same], ej[same], vals[same]
        out[codes[ei], pos[ei], pos[ej]] = vals
    pad = index < 0
    pi = np.nonzero(pad)
    out[pi[0], pi[1], pi[1]] = 1.0
    link = np.concatenate(linked) if linked else np.zeros((0, 2), dtype=np.int64)
    return index, out, link

