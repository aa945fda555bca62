"""Vectorised numerical core: pool m analyses at once.

Everything here is a pure function of float64 arrays.  The core knows nothing of
attrs, pandas or the public classes; the public shell (``_pooling``, ``_metareg``,
...) converts its inputs to the padded layout below, calls :func:`fit` and wraps the
arrays it returns.

Layout
------
An *analysis* is one meta-analysis (one row).  Studies of m analyses are held in
padded 2-D arrays of shape ``(m, n)``:

* ``Y``: effects, centred per row by their unweighted mean (``center`` is kept so
  that estimates can be shifted back), 0 where a study is absent;
* ``V``: sampling variances, ``+inf`` where a study is absent, so that every
  inverse-variance weight ``1 / (V + tau2)`` of an absent study is exactly 0;
* ``X``: the design, ``None`` for the intercept-only model (the fast kernel), or an
  array of shape ``(n, p)`` shared by every row or ``(m, n, p)``.

Estimators are written once, in terms of the quadratic forms and traces of the
projection matrix ``P = W - W X (X'WX)^{-1} X'W`` that metafor's ``rma.uni`` uses
(Viechtbauer, 2005).  Two kernels supply those quantities: a closed-form one for the
intercept-only model and a general one with explicit ``P`` for meta-regression.

References
----------
Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators in
the random-effects model. *Journal of Educational and Behavioral Statistics*, 30(3),
261-293.

Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software*, 36(3), 1-48.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special as spc
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

CoreMethod = Literal["EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM"]
CoreTest = Literal["z", "t", "knha", "adhoc"]

METHOD_ALIASES: dict[str, CoreMethod] = {
    "EE": "EE",
    "FE": "EE",
    "CE": "EE",
    "DL": "DL",
    "HE": "HE",
    "HS": "HS",
    "HSk": "HSk",
    "SJ": "SJ",
    "ML": "ML",
    "REML": "REML",
    "EB": "EB",
    "PM": "PM",
    "PMM": "PMM",
}
TESTS: tuple[CoreTest, ...] = ("z", "t", "knha", "adhoc")

#: Relative convergence tolerance of every iterative τ² search.
RTOL = 1e-10
#: Iteration cap of the safeguarded Newton search (bisection alone needs < 200).
MAXITER = 300
#: Rows processed together; bounds the memory of temporaries.
CHUNK_ROWS = 16384

_EPS = float(np.finfo(np.float64).eps)

# Internal levels of Kernel.weighted for the intercept-only kernel: only the
# coefficients (no Q), and Q with the weight moments S2, S3 (traces of P) but not
# the residual moments y'PPy, y'PPPy that only the likelihood/Q-root searches need.
_BETA_ONLY = -1.0
_LIGHT = 0.5


def _rowdot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise inner product ``sum(a * b, axis=1)``."""
    return _rowsum(a * b)


def _rowsum(a: FloatArray) -> FloatArray:
    """Row sums of a 2-D array as one matrix-vector product.

    numpy's ``sum(axis=1)`` over short rows (a dozen studies) runs an inner loop per
    row; a BLAS ``gemv`` with a vector of ones is 10-20x faster on such shapes.
    """
    out: FloatArray = a @ np.ones(a.shape[1])
    return out


#: Largest integer degrees of freedom summed by the closed form in :func:`_chi2_sf`.
_CHI2_SERIES_MAXDF = 64


def _chi2_sf(x: FloatArray, df: FloatArray | float) -> FloatArray:
    """``P(χ²_df > x)``, elementwise; ``scipy.stats.chi2.sf`` to a few ulps, faster.

    For integer ``df ≤ 64`` the survival function is a finite sum of positive terms
    (Abramowitz & Stegun 26.4.4-5): with ``h = x/2``,
    ``e^{-h} Σ_{j<df/2} h^j/j!`` for even ``df`` and
    ``erfc(√h) + e^{-h} Σ_{j<(df-1)/2} h^{j+1/2}/Γ(j+3/2)`` for odd ``df``; that costs a
    few vector operations where ``scipy.special.chdtrc`` evaluates an incomplete
    gamma function per element (7 ms per 100,000 values here).  Other ``df``,
    ``x > 1200`` (where ``e^{-h}`` underflows) and NaN go to ``chdtrc``.
    """
    x = np.asarray(x, dtype=np.float64)
    d = np.broadcast_to(np.asarray(df, dtype=np.float64), x.shape)
    if x.size and x.ndim == 1:
        d0 = float(d[0])
        if (
            1 <= d0 <= _CHI2_SERIES_MAXDF
            and d0 == math.floor(d0)
            and bool((d == d0).all())
            and bool((x <= 1200).all())
        ):
            return _chi2_sf_int(x, int(d0))
    out = np.empty(x.shape)
    with np.errstate(invalid="ignore"):
        ok = (d >= 1) & (d <= _CHI2_SERIES_MAXDF) & (d == np.floor(d)) & (x >= 0) & (x <= 1200)
    if not ok.all():
        bad = ~ok
        out[bad] = spc.chdtrc(d[bad], x[bad])
        if not ok.any():
            return out
        xs, ds = x[ok], d[ok]
    else:
        xs, ds = x, d
    h = 0.5 * xs
    odd = (ds % 2) == 1
    nterms = np.floor(0.5 * ds)
    a = np.where(odd, 0.5, 0.0)
    term = np.where(odd, 2.0 * np.sqrt(h / np.pi), 1.0)
    total = np.where(nterms > 0, term, 0.0)
    nmax = int(nterms.max())
    uniform = bool(nterms.min() == nmax)
    for j in range(1, nmax):
        term = term * h / (j + a)
        total = total + (term if uniform else np.where(j < nterms, term, 0.0))
    res = np.exp(-h) * total
    if odd.any():
        res = np.where(odd, res + spc.erfc(np.sqrt(h)), res)
    if xs is x:
        return np.asarray(res, dtype=np.float64)
    out[ok] = res
    return out


def _chi2_sf_int(x: FloatArray, df: int) -> FloatArray:
    """:func:`_chi2_sf` for one integer ``1 <= df <= 64`` and ``x <= 1200`` (NaN passes)."""
    h = 0.5 * x
    odd = df % 2 == 1
    a = 0.5 if odd else 0.0
    term = 2.0 * np.sqrt(h / np.pi) if odd else np.ones_like(h)
    total = term.copy() if df // 2 > 0 else np.zeros_like(h)
    for j in range(1, df // 2):
        term = term * (h / (j + a))
        total += term
    res = np.exp(-h) * total
    if odd:
        res += spc.erfc(np.sqrt(h))
    out: FloatArray = np.where(x < 0, np.nan, res) if bool((x < 0).any()) else res
    return out


def _norm_sf(x: FloatArray) -> FloatArray:
    """``scipy.stats.norm.sf`` without its argument-checking overhead (same values)."""
    return np.asarray(spc.ndtr(-np.asarray(x)), dtype=np.float64)


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@dataclass
class Stats:
    """Weighted quantities of ``P`` at one τ² per row (fields filled on demand)."""

    S1: FloatArray  # sum of weights
    Q: FloatArray  # y'Py: weighted residual sum of squares
    beta: FloatArray  # (m, p)
    vb: FloatArray  # (m, p, p)
    S2: FloatArray | None = None  # sum of squared weights
    yPPy: FloatArray | None = None
    yPPPy: FloatArray | None = None
    trP: FloatArray | None = None
    trPP: FloatArray | None = None
    trPVPV: FloatArray | None = None
    trPVP: FloatArray | None = None


@dataclass
class Kernel:
    """Padded data of m analyses plus the linear algebra for its projection.

    ``X is None`` selects the closed-form intercept-only kernel.
    """

    Y: FloatArray
    V: FloatArray
    k: IntArray
    center: FloatArray
    X: FloatArray | None = None
    p: int = field(init=False)
    # Cache of weighted() results: the last τ² (with its level) and τ² = 0, which
    # the estimators, heterogeneity() and the final fit all ask for again.
    _cache: dict[str, tuple[FloatArray, float, Stats]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _vmin: FloatArray | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        self.p = 1 if self.X is None else int(self.X.shape[-1])

    @property
    def m(self) -> int:
        return int(self.Y.shape[0])

    @property
    def mask(self) -> BoolArray:
        return np.isfinite(self.V)

    def take(self, idx: npt.NDArray[np.intp] | BoolArray) -> Kernel:
        X = self.X
        if X is not None and X.ndim == 3:
            X = X[idx]
        if self.X is None and self.Y.T.flags.c_contiguous and self.V.T.flags.c_contiguous:
            # keep the study-major layout of the intercept-only kernel (see _weighted_io)
            ix = np.flatnonzero(idx) if np.asarray(idx).dtype == np.bool_ else idx
            Y, V = np.take(self.Y.T, ix, axis=1).T, np.take(self.V.T, ix, axis=1).T
        else:
            Y, V = self.Y[idx], self.V[idx]
        out = Kernel(Y, V, self.k[idx], self.center[idx], X)
        if self._vmin is not None:
            out._vmin = self._vmin[idx]
        return out

    def _Xfull(self) -> FloatArray:
        assert self.X is not None
        if self.X.ndim == 2:
            return np.broadcast_to(self.X, (self.m, *self.X.shape))
        return self.X

    # -- weighted quantities -------------------------------------------------
    def weighted(self, tau2: FloatArray, level: float = 0) -> Stats:
        """Quantities of ``P`` with weights ``1 / (v + tau2)``.

        ``level`` 0 gives the fit (beta, vb, Q); 1 adds what the likelihood and
        Q-based estimators need; 2 adds the traces with ``V`` used by SJ and HE.
        """
        tau2 = np.asarray(tau2, dtype=np.float64)
        slot = "zero" if not tau2.any() else "last"
        hit = self._cache.get(slot)
        if hit is not None and hit[1] >= level and (
            hit[0] is tau2 or np.array_equal(hit[0], tau2)
        ):
            return hit[2]
        if self.X is None:
            st = self._weighted_io(tau2, level)
        else:
            level = 1 if level == _LIGHT else max(int(level), 0)
            w = np.add(self.V, tau2[:, None])
            np.divide(1.0, w, out=w)
            st = self._weighted_general(w, level)
        self._cache[slot] = (tau2.copy(), level, st)
        return st

    def _weighted_io(self, tau2: FloatArray, level: float) -> Stats:
        # Work study-major, on ``(n, m)`` transposes: broadcasting a per-analysis
        # value and summing over studies are then passes over contiguous length-m
        # vectors instead of numpy inner loops over a dozen studies per row.
        # kernel_from_padded stores Y and V so that these transposes are contiguous.
        YT, VT = self.Y.T, self.V.T
        n, m = YT.shape
        nb = 2 if level <= 0 else (4 if level == _LIGHT else 7)
        B = np.empty((nb, n, m))
        w = np.add(VT, tau2)
        np.divide(1.0, w, out=w)
        B[0] = w
        np.multiply(w, YT, out=B[1])
        r = B[:2].sum(axis=1)
        S1 = r[0]
        mu = r[1] / S1
        if level == _BETA_ONLY:
            nan = np.full(m, np.nan)
            return Stats(S1=S1, Q=nan, beta=mu[:, None], vb=(1.0 / S1)[:, None, None])
        e = np.subtract(YT, mu, out=B[0])
        we = np.multiply(w, e, out=B[1])
        if level == 0:
            Q = np.multiply(we, e, out=B[0]).sum(axis=0)
            return Stats(S1=S1, Q=Q, beta=mu[:, None], vb=(1.0 / S1)[:, None, None])
        np.multiply(we, e, out=B[2])  # w e^2
        np.multiply(w, w, out=B[3])  # w^2
        if level == _LIGHT:
            np.multiply(B[3], w, out=B[1])  # w^3
            _, S3, Q, S2 = B.sum(axis=1)
            st = Stats(S1=S1, Q=Q, beta=mu[:, None], vb=(1.0 / S1)[:, None, None])
            st.S2 = S2
        else:
            np.multiply(B[3], w, out=B[4])  # w^3
            np.multiply(we, we, out=B[5])  # w^2 e^2
            np.multiply(B[3], e, out=B[6])  # w^2 e
            np.multiply(B[5], w, out=B[0])  # w^3 e^2
            Sw3e2, _, Q, S2, S3, yPPy, Sw2e = B.sum(axis=1)
            st = Stats(S1=S1, Q=Q, beta=mu[:, None], vb=(1.0 / S1)[:, None, None])
            st.S2 = S2
            st.yPPy = yPPy
            # y'PPPy = sum w^3 e^2 - (sum w^2 e)^2 / S1
            st.yPPPy = Sw3e2 - Sw2e**2 / S1
        st.trP = S1 - S2 / S1
        st.trPP = S2 - 2.0 * S3 / S1 + (S2 / S1) ** 2
        # Those closed forms cancel catastrophically when one weight dominates
        # (max w / sum w -> 1, e.g. a study with a tiny variance); such rows are
        # recomputed from sums of positive terms only.  max w = 1 / (min v + τ²).
        if self._vmin is None:
            self._vmin = VT.min(axis=0)
        dom = 1.0 / (self._vmin + tau2) > 0.5 * S1
        if dom.any():
            wd = 1.0 / (self.V[dom] + tau2[dom, None])
            trP, trPP = _stable_traces(wd, S1[dom])
            st.trP[dom] = trP
            st.trPP[dom] = trPP
        if level >= 2:
            Vz = np.where(np.isfinite(self.V), self.V, 0.0)
            wf = 1.0 / (self.V + tau2[:, None])
            st.trPVPV, st.trPVP = _stable_v_traces(wf, Vz, S1)
        return st

    def _weighted_general(self, w: FloatArray, level: float) -> Stats:
        X = self._Xfull()
        XtW = np.swapaxes(X, 1, 2) * w[:, None, :]  # (m, p, n)
        A = XtW @ X  # (m, p, p)
        vb: FloatArray = np.linalg.inv(A).astype(np.float64, copy=False)
        beta = (vb @ (XtW @ self.Y[:, :, None]))[:, :, 0]
        # P = W - W X (X'WX)^{-1} X'W, explicit (m, n, n)
        P = -(np.swapaxes(XtW, 1, 2) @ vb @ XtW)
        idx = np.arange(P.shape[1])
        P[:, idx, idx] += w
        Py = (P @ self.Y[:, :, None])[:, :, 0]
        Q = _rowdot(Py, self.Y)
        st = Stats(S1=w.sum(axis=1), Q=Q, beta=beta, vb=vb)
        if level >= 1:
            st.S2 = _rowdot(w, w)
            st.yPPy = _rowdot(Py, Py)
            st.yPPPy = np.einsum("mi,mij,mj->m", Py, P, Py)
            st.trP = np.einsum("mii->m", P)
            st.trPP = np.einsum("mij,mij->m", P, P)
            if level >= 2:
                Vz = np.where(np.isfinite(self.V), self.V, 0.0)
                PV = P * Vz[:, None, :]
                st.trPVPV = np.einsum("mij,mji->m", PV, PV)
                st.trPVP = np.einsum("mij,mij->m", PV, P)
        return st

    # -- unweighted quantities (HE estimator, SJ start) ----------------------
    def unweighted(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(RSS, tr(PV), tr(PVPV))`` of the ordinary least-squares projection."""
        kf = self.k.astype(np.float64)
        if self.X is None:
            YT, VT = self.Y.T, self.V.T
            n, m = YT.shape
            ybar = YT.sum(axis=0) / kf
            B = np.empty((3, n, m))
            e = np.subtract(YT, ybar, out=B[0])
            if m and int(self.k.min()) != n:
                maskT = np.isfinite(VT)
                e[~maskT] = 0.0
                VzT = np.where(maskT, VT, 0.0)
            else:
                VzT = VT
            np.multiply(e, e, out=B[0])
            B[1] = VzT
            np.multiply(VzT, VzT, out=B[2])
            rss, sv, sv2 = B.sum(axis=1)
            trPV = sv * (kf - 1.0) / kf
            trPVPV = sv2 - 2.0 * sv2 / kf + (sv / kf) ** 2
            return rss, trPV, trPVPV
        mask = self.mask
        Vz = np.where(mask, self.V, 0.0)
        X = self._Xfull()
        mf = mask.astype(np.float64)
        XtM = np.swapaxes(X, 1, 2) * mf[:, None, :]
        inv = np.linalg.inv(XtM @ X)
        P = -(np.swapaxes(XtM, 1, 2) @ inv @ XtM)
        idx = np.arange(P.shape[1])
        P[:, idx, idx] += mf
        Py = (P @ self.Y[:, :, None])[:, :, 0]
        rss = _rowdot(Py, self.Y)
        PV = P * Vz[:, None, :]
        return rss, np.einsum("mii->m", PV), np.einsum("mij,mji->m", PV, PV)


def _rest_sums(a: FloatArray) -> FloatArray:
    """For each entry of non-negative rows, the sum of the other entries of its row.

    ``total - a`` is exact to a few ulps except for an entry holding most of its
    row's total; that one entry per row is summed directly instead.
    """
    total = a.sum(axis=1)
    rest = total[:, None] - a
    j = np.argmax(a, axis=1)
    rows = np.arange(a.shape[0])
    others = a.copy()
    others[rows, j] = 0.0
    rest[rows, j] = others.sum(axis=1)
    out: FloatArray = rest
    return out


def _stable_traces(w: FloatArray, S1: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``tr(P)`` and ``tr(PP)`` of the intercept-only projection, without cancellation.

    With ``r_i = Σ_{j≠i} w_j`` and ``s_i = Σ_{j≠i} w_j²``:
    ``P_ii = w_i r_i / S1``, ``P_ij = -w_i w_j / S1``, so
    ``tr(P) = Σ w_i r_i / S1`` and ``tr(PP) = (Σ (w_i r_i)² + Σ w_i² s_i) / S1²``.
    """
    u = w * _rest_sums(w)
    w2 = w * w
    trP = u.sum(axis=1) / S1
    trPP = (_rowdot(u, u) + _rowdot(w2, _rest_sums(w2))) / S1**2
    return trP, trPP


def _stable_v_traces(w: FloatArray, v: FloatArray, S1: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``tr(PVPV)`` and ``tr(PVP)`` of the intercept-only projection (SJ's SE).

    ``tr(PVPV) = (Σ (w_i r_i v_i)² + Σ a_i Σ_{j≠i} a_j) / S1²`` with ``a = w² v``;
    ``tr(PVP) = Σ v_i ((w_i r_i)² + w_i² s_i) / S1²`` (notation of
    :func:`_stable_traces`).
    """
    u = w * _rest_sums(w)
    uv = u * v
    a = w * w * v
    w2 = w * w
    trPVPV = (_rowdot(uv, uv) + _rowdot(a, _rest_sums(a))) / S1**2
    trPVP = _rowdot(v, u * u + w2 * _rest_sums(w2)) / S1**2
    return trPVPV, trPVP


# ---------------------------------------------------------------------------
# Building kernels from user-shaped data
# ---------------------------------------------------------------------------


def kernel_from_padded(
    Y: FloatArray, V: FloatArray, X: FloatArray | None = None
) -> Kernel:
    """Kernel from padded arrays where NaN (in both Y and V) marks an absent study.

    The caller has validated that NaNs coincide and that present variances are > 0.
    """
    if X is None:
        # study-major storage: Y.T and V.T are C-contiguous (see Kernel._weighted_io)
        YT = np.asarray(Y, dtype=np.float64).T
        VT = np.asarray(V, dtype=np.float64).T
        n = YT.shape[0]
        if n > 0 and not np.isnan(YT).any():  # dense: no study is absent
            center = YT.sum(axis=0) / n
            YcT = np.subtract(YT, center, out=np.empty(YT.shape))
            k = np.full(YT.shape[1], n, dtype=np.int64)
            return Kernel(YcT.T, np.ascontiguousarray(VT).T, k, center)
        maskT = ~np.isnan(YT)
        k = maskT.sum(axis=0).astype(np.int64)
        YzT = np.where(maskT, YT, 0.0)
        center = YzT.sum(axis=0) / np.maximum(k, 1)
        YcT = np.ascontiguousarray(np.where(maskT, YzT - center, 0.0))
        ViT = np.ascontiguousarray(np.where(maskT, VT, np.inf))
        return Kernel(YcT.T, ViT.T, k, center)
    mask = ~np.isnan(Y)
    k = mask.sum(axis=1).astype(np.int64)
    Yz = np.where(mask, Y, 0.0)
    center = Yz.sum(axis=1) / np.maximum(k, 1)
    Yc = np.where(mask, Yz - center[:, None], 0.0)
    Vi = np.where(mask, V, np.inf)
    Xz = np.where(mask[..., None], X, 0.0) if X.ndim == 3 else np.asarray(X, dtype=float)
    return Kernel(Yc, Vi, k, center, Xz)


@dataclass(frozen=True)
class RaggedLayout:
    """How long-format rows map onto padded chunks.

    ``chunks`` holds, per chunk, the group codes it pools (rows of the chunk) and the
    flat row indices of ``yi`` laid out as a padded ``(rows, width)`` array, with -1
    for padding.
    """

    n_groups: int
    counts: IntArray
    chunks: tuple[tuple[IntArray, npt.NDArray[np.intp]], ...]


def ragged_layout(codes: IntArray, n_groups: int, chunk_rows: int = CHUNK_ROWS) -> RaggedLayout:
    """Plan padded chunks for long-format data with integer group codes.

    Groups are sorted by size so each chunk is padded only to the size of its
    largest group, and a chunk is closed early when padding would more than double
    its cells; memory therefore stays proportional to the input.
    """
    counts = np.bincount(codes, minlength=n_groups).astype(np.int64)
    order = np.argsort(codes, kind="stable")  # rows grouped by code
    starts = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    by_size = np.argsort(counts, kind="stable")
    chunks: list[tuple[IntArray, npt.NDArray[np.intp]]] = []
    i = 0
    G = n_groups
    sizes = counts[by_size]
    while i < G:
        j = min(i + chunk_rows, G)
        # shrink j until padding (rows * max size) <= 2 * cells + slack
        cells = np.cumsum(sizes[i:j])
        width_at = sizes[i:j]
        rows = np.arange(1, j - i + 1)
        ok = rows * width_at <= 2 * cells + 65536
        if not ok.all():
            j = i + max(1, int(np.argmin(ok)))
        grp = by_size[i:j]
        width = int(max(1, counts[grp].max()))
        pos = np.arange(width)[None, :]
        cnt = counts[grp][:, None]
        flat = np.where(pos < cnt, starts[grp][:, None] + pos, -1)
        rows_idx = np.where(flat >= 0, order[np.maximum(flat, 0)], -1).astype(np.intp)
        chunks.append((grp.astype(np.int64), rows_idx))
        i = j
    return RaggedLayout(n_groups, counts, tuple(chunks))


def gather_padded(values: FloatArray, rows_idx: npt.NDArray[np.intp]) -> FloatArray:
    """Padded ``(rows, width)`` view of long-format ``values`` (NaN in padding)."""
    out = values[np.maximum(rows_idx, 0)]
    out[rows_idx < 0] = np.nan
    return out


# ---------------------------------------------------------------------------
# Safeguarded root finding, vectorised over rows
# ---------------------------------------------------------------------------

RootFun = Callable[[Kernel, FloatArray], tuple[FloatArray, FloatArray]]


def _solve_decreasing(
    kern: Kernel,
    fun: RootFun,
    t0: FloatArray,
    rtol: float = RTOL,
    maxiter: int = MAXITER,
    lo0: FloatArray | None = None,
) -> tuple[FloatArray, IntArray, BoolArray]:
    """Root of ``f`` on ``(lo0, inf)`` for rows where ``f(lo0) > 0`` and ``f`` ends negative.

    ``fun(kernel, t)`` returns ``(f, slope)`` with ``slope < 0`` (a Newton slope, or
    a Fisher-scoring slope where the Newton one has the wrong sign).  Each step is a
    Newton step kept strictly inside the current bracket ``(lo, hi)``; a step that
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
    hi = np.full(m, np.inf)
    K = kern
    for it in range(1, maxiter + 1):
        f, slope = fun(K, t)
        pos = f > 0
        lo = np.where(pos, t, lo)
        hi = np.where(pos, hi, t)
        cand = t - f / slope
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


def _positive_root(
    kern: Kernel,
    fun: RootFun,
    t0: FloatArray,
    loglik: Callable[[Kernel, FloatArray], FloatArray] | None = None,
) -> tuple[FloatArray, IntArray, BoolArray]:
    """Root of a decreasing ``f`` on ``[0, inf)``; 0 where ``f(0) <= 0``.

    With ``loglik`` (ML, REML), rows whose score is negative at 0 but positive at
    the starting value ``t0`` have a second, interior local maximum beyond ``t0``;
    it is found too and kept where its log-likelihood exceeds that at τ² = 0, so
    the global maximum on ``[0, inf)`` is returned (metafor instead keeps whichever
    point its Fisher scoring from ``t0`` reaches, then checks it against 0).
    """
    m = kern.m
    f0, s0 = fun(kern, np.zeros(m))
    tau2 = np.zeros(m)
    iters = np.ones(m, dtype=np.int64)
    conv = np.ones(m, dtype=bool)
    need = f0 > 0
    if need.any():
        # start at the closed-form estimate, or one Newton step from 0 where it is 0
        start = np.where(t0 > 0, t0, -f0 / s0)[need]
        r, it, c = _solve_decreasing(kern.take(need), fun, start)
        tau2[need] = r
        iters[need] = it + 1
        conv[need] = c
    if loglik is not None:
        other = np.flatnonzero(~need & (t0 > 0))
        if other.size:
            Ko = kern.take(other)
            fo, _ = fun(Ko, t0[other])
            up = fo > 0
            if up.any():
                idx = other[up]
                Ku = kern.take(idx)
                r, it, c = _solve_decreasing(Ku, fun, t0[idx], lo0=t0[idx])
                better = loglik(Ku, r) > loglik(Ku, np.zeros(idx.size))
                tau2[idx[better]] = r[better]
                iters[idx] += it + 1
                conv[idx] = c | ~better
    return tau2, iters, conv


def _loglik(K: Kernel, t: FloatArray, reml: bool) -> FloatArray:
    """(Restricted) log-likelihood up to a constant, profiled over the coefficients."""
    st = K.weighted(t, 0)
    w = 1.0 / (K.V + t[:, None])
    logw = np.log(w, out=np.zeros_like(w), where=w > 0)
    ll = 0.5 * logw.sum(axis=1) - 0.5 * st.Q
    if reml:
        ll = ll + 0.5 * np.linalg.slogdet(st.vb)[1]
    out: FloatArray = ll
    return out


def _ml_loglik(K: Kernel, t: FloatArray) -> FloatArray:
    return _loglik(K, t, reml=False)


def _reml_loglik(K: Kernel, t: FloatArray) -> FloatArray:
    return _loglik(K, t, reml=True)


def _reml_fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray]:
    st = K.weighted(t, 1)
    assert st.yPPy is not None and st.trP is not None
    assert st.trPP is not None and st.yPPPy is not None
    f = st.yPPy - st.trP
    newton = st.trPP - 2.0 * st.yPPPy
    return f, np.where(newton < 0, newton, -st.trPP)


def _ml_fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray]:
    st = K.weighted(t, 1)
    assert st.yPPy is not None and st.S2 is not None and st.yPPPy is not None
    f = st.yPPy - st.S1
    newton = st.S2 - 2.0 * st.yPPPy
    return f, np.where(newton < 0, newton, -st.S2)


def _q_root(kern: Kernel, target_of: Callable[[Kernel], FloatArray], t0: FloatArray) -> tuple[
    FloatArray, IntArray, BoolArray
]:
    def fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        st = K.weighted(t, 1)
        assert st.yPPy is not None
        return st.Q - target_of(K), -np.maximum(st.yPPy, np.finfo(float).tiny)

    return _positive_root(kern, fun, t0)


# ---------------------------------------------------------------------------
# τ² estimators
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tau2Result:
    tau2: FloatArray
    se: FloatArray
    iterations: IntArray
    converged: BoolArray


def _df_resid(K: Kernel) -> FloatArray:
    return (K.k - K.p).astype(np.float64)


def estimate_tau2(kern: Kernel, method: CoreMethod) -> Tau2Result:
    """τ² and its standard error for every row, as metafor's ``rma.uni`` defines them.

    Rows with ``k == 1`` get τ² = 0 (the caller warns).  The standard errors follow
    metafor's formulas for each estimator (see ``rma.uni``'s source and Viechtbauer,
    2005); ``nan`` for EE.
    """
    m = kern.m
    kf = kern.k.astype(np.float64)
    dfr = _df_resid(kern)
    zeros = np.zeros(m)
    one_iter = np.zeros(m, dtype=np.int64)
    ok = np.ones(m, dtype=bool)
    if method == "EE":
        return Tau2Result(zeros, np.full(m, np.nan), one_iter, ok)

    with np.errstate(divide="ignore", invalid="ignore"):
        if method in ("DL", "HS", "HSk"):
            st = kern.weighted(zeros, _LIGHT)
            assert st.trP is not None and st.trPP is not None
            if method == "DL":
                raw = (st.Q - dfr) / st.trP
                denom = st.trP
            elif method == "HS":
                raw = (st.Q - kf) / st.S1
                denom = st.S1
            else:
                raw = (kf / dfr * st.Q - kf) / st.S1
                denom = st.S1
            tau2 = np.maximum(raw, 0.0)
            se = np.sqrt((2.0 * dfr + 4.0 * tau2 * st.trP + 2.0 * tau2**2 * st.trPP) / denom**2)
            if method == "HSk":
                se = kf / dfr * se
            it = one_iter
            conv = ok
        elif method == "HE":
            rss, trPV, trPVPV = kern.unweighted()
            tau2 = np.maximum((rss - trPV) / dfr, 0.0)
            se = np.sqrt((2.0 * trPVPV + 4.0 * tau2 * trPV + 2.0 * tau2**2 * dfr) / dfr**2)
            it, conv = one_iter, ok
        elif method == "SJ":
            tau0 = _sj_start(kern)
            st = kern.weighted(tau0, 2)
            assert st.trPVPV is not None and st.trPVP is not None and st.trPP is not None
            tau2 = np.maximum(tau0 * st.Q / dfr, 0.0)
            se = np.sqrt(
                tau0**2
                / dfr**2
                * (2.0 * st.trPVPV + 4.0 * tau2 * st.trPVP + 2.0 * tau2**2 * st.trPP)
            )
            it, conv = one_iter, ok
        elif method in ("ML", "REML"):
            rss, trPV, _ = kern.unweighted()
            he = np.maximum((rss - trPV) / dfr, 0.0)
            reml = method == "REML"
            tau2, it, conv = _positive_root(
                kern,
                _reml_fun if reml else _ml_fun,
                he,
                _reml_loglik if reml else _ml_loglik,
            )
            st = kern.weighted(tau2, 1)
            assert st.trPP is not None and st.S2 is not None
            se = np.sqrt(2.0 / (st.trPP if method == "REML" else st.S2))
        elif method in ("EB", "PM", "PMM"):
            # EB's estimating equation Q(t) k/(k-p) = k has the same root as PM's Q(t) = k-p.
            def target(K: Kernel) -> FloatArray:
                d = _df_resid(K)
                return np.asarray(sps.chi2.ppf(0.5, d), dtype=np.float64) if method == "PMM" else d

            st0 = kern.weighted(zeros, _LIGHT)
            assert st0.trP is not None
            dl = np.maximum((st0.Q - dfr) / st0.trP, 0.0)
            tau2, it, conv = _q_root(kern, target, dl)
            st = kern.weighted(tau2, 0)
            se = np.sqrt(2.0 * kf**2 / dfr / st.S1**2)
        else:  # pragma: no cover - guarded by the shell
            raise ValueError(f"unknown method {method!r}")

    single = kern.k <= 1
    if single.any():
        tau2 = np.where(single, 0.0, tau2)
        se = np.where(single, np.nan, se)
    return Tau2Result(tau2, se, it, conv)


def _sj_start(kern: Kernel) -> FloatArray:
    """Sidik-Jonkman starting value ``var(y) (k-1)/k`` (metafor's default, any model)."""
    mask = kern.mask
    kf = kern.k.astype(np.float64)
    ybar = kern.Y.sum(axis=1) / kf
    e = np.where(mask, kern.Y - ybar[:, None], 0.0)
    return _rowdot(e, e) / kf


# ---------------------------------------------------------------------------
# The fit
# ---------------------------------------------------------------------------


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


def heterogeneity(
    kern: Kernel, tau2: FloatArray, fixed: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """``(QE, QE_df, QE_p, I2, H2, vt)`` as in metafor (typical variance ``(k-p)/tr(P)``)."""
    dfr = _df_resid(kern)
    st = kern.weighted(np.zeros(kern.m), _LIGHT)
    assert st.trP is not None
    with np.errstate(divide="ignore", invalid="ignore"):
        QE = np.maximum(st.Q, 0.0)
        QEp = _chi2_sf(QE, dfr)
        vt = dfr / st.trP
        if fixed:
            I2 = np.maximum(0.0, 100.0 * (QE - dfr) / QE)
            H2 = QE / dfr
        else:
            I2 = 100.0 * tau2 / (vt + tau2)
            H2 = tau2 / vt + 1.0
    sat = dfr <= 0
    if sat.any():
        QE = np.where(sat, 0.0, QE)
        QEp = np.where(sat, 1.0, QEp)
        I2 = np.where(sat, 0.0, I2)
        H2 = np.where(sat, 1.0, H2)
        vt = np.where(sat, 0.0, vt)
    I2 = np.where(np.isnan(I2) & (QE == 0), 0.0, I2)
    return QE, dfr, QEp, I2, H2, vt


def fit(
    kern: Kernel,
    method: CoreMethod,
    test: CoreTest = "z",
    level: float = 0.95,
    btt: npt.NDArray[np.intp] | None = None,
) -> CoreFit:
    """Fit every row of ``kern`` with one τ² estimator and one test.

    ``btt`` selects the coefficients of the omnibus test (default: all but the
    intercept when p > 1, the intercept alone when p = 1).
    """
    est = estimate_tau2(kern, method)
    return fit_given_tau2(kern, est, method, test, level, btt)


def fit_given_tau2(
    kern: Kernel,
    est: Tau2Result,
    method: CoreMethod,
    test: CoreTest,
    level: float,
    btt: npt.NDArray[np.intp] | None = None,
) -> CoreFit:
    """The fixed-effects part of the fit for given τ² values."""
    return _fit_given_tau2(kern, est, method, test, level, btt, omnibus=True)


def _fit_many(kern: Kernel, method: CoreMethod, test: CoreTest, level: float) -> CoreFit:
    """:func:`fit` for ``pool_many``: the omnibus test (QM), which repeats the z or t
    test of the intercept-only model and is not reported there, is left NaN."""
    est = estimate_tau2(kern, method)
    return _fit_given_tau2(kern, est, method, test, level, None, omnibus=False)


def _fit_given_tau2(
    kern: Kernel,
    est: Tau2Result,
    method: CoreMethod,
    test: CoreTest,
    level: float,
    btt: npt.NDArray[np.intp] | None,
    omnibus: bool,
) -> CoreFit:
    m, p = kern.m, kern.p
    tau2 = est.tau2
    # Q at τ² is needed by the Knapp-Hartung scaling only
    st = kern.weighted(tau2, 0 if test in ("knha", "adhoc") else _BETA_ONLY)
    beta, vb = st.beta + _center_shift(kern), st.vb
    dfr = _df_resid(kern)
    single = kern.k <= 1
    t_based = test in ("t", "knha", "adhoc")
    s2w = np.ones(m)
    if test in ("knha", "adhoc"):
        s2w = np.where(st.Q <= _EPS, 0.0, st.Q / np.where(dfr > 0, dfr, np.nan))
        if test == "adhoc":
            s2w = np.maximum(s2w, 1.0)
        s2w = np.where(single, 1.0, s2w)
        vb = vb * s2w[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.einsum("mii->mi", vb))
        stat = beta / se
        if t_based:
            df = np.where(single, np.nan, dfr)
            pval_t = 2.0 * sps.t.sf(np.abs(stat), df[:, None])
            crit_t = sps.t.isf((1.0 - level) / 2.0, df)
            pz = 2.0 * _norm_sf(np.abs(stat))
            cz = sps.norm.isf((1.0 - level) / 2.0)
            pval = np.where(single[:, None], pz, pval_t)
            crit = np.where(single, cz, crit_t)
        else:
            df = np.full(m, np.nan)
            pval = 2.0 * _norm_sf(np.abs(stat))
            crit = np.full(m, sps.norm.isf((1.0 - level) / 2.0))
        ci_low = beta - crit[:, None] * se
        ci_high = beta + crit[:, None] * se

        if btt is None:
            btt = np.arange(1, p) if p > 1 else np.arange(1)
        q = float(btt.size)
        if not omnibus:
            QM = QMp = QM_df2 = np.full(m, np.nan)
        else:
            b = beta[:, btt]
            vsub = vb[:, btt[:, None], btt[None, :]]
            if btt.size == 1:
                # 1x1 system: b^2 / v, NaN where v == 0 (singular, metafor's NA)
                v11 = vsub[:, 0, 0]
                QM = np.where(v11 != 0, b[:, 0] * (b[:, 0] / v11), np.nan)
            else:
                QM = np.einsum("mi,mi->m", b, _solve_or_nan(vsub, b))
            if t_based:
                QM = QM / q
                QM_df2 = np.where(single, np.nan, dfr)
                QMp = np.asarray(sps.f.sf(QM, q, QM_df2), dtype=np.float64)
            else:
                QM_df2 = np.full(m, np.nan)
                QMp = _chi2_sf(QM, q)

        QE, QE_df, QEp, I2, H2, vt = heterogeneity(kern, tau2, method == "EE")
        half = np.sqrt(se[:, 0] ** 2 + tau2)
        pi_low = beta[:, 0] - crit * half
        pi_high = beta[:, 0] + crit * half
    return CoreFit(
        beta=beta,
        vb=vb,
        se=se,
        statistic=stat,
        pvalue=pval,
        ci_low=ci_low,
        ci_high=ci_high,
        df=df,
        crit=crit,
        tau2=tau2,
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
        QM=QM,
        QM_df1=np.full(m, q),
        QM_df2=QM_df2,
        QM_pvalue=QMp,
        pi_low=pi_low,
        pi_high=pi_high,
    )


def _solve_or_nan(A: FloatArray, b: FloatArray) -> FloatArray:
    """Batched ``A^{-1} b``; rows with a singular ``A`` give NaN (metafor's QM = NA)."""
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


def _center_shift(kern: Kernel) -> FloatArray:
    """Undo the per-row centring of ``Y`` on the coefficients.

    Centring ``y`` by ``c`` shifts the intercept by ``c`` when the model has one; for a
    general design the shift is ``c * (X'WX)^{-1} X'W 1``, which equals ``c`` on an
    intercept column and 0 elsewhere, so we require an intercept in column 0.
    """
    out = np.zeros((kern.m, kern.p))
    out[:, 0] = kern.center
    return out


# ---------------------------------------------------------------------------
# Q-profile confidence intervals
# ---------------------------------------------------------------------------


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
    zeros = np.zeros(kern.m)

    def bound(upper_quantile: bool) -> FloatArray:
        def target(K: Kernel) -> FloatArray:
            d = _df_resid(K)
            q = sps.chi2.isf(alpha / 2, d) if upper_quantile else sps.chi2.ppf(alpha / 2, d)
            return np.asarray(q, dtype=np.float64)

        # start at the DL-type moment solution of Q(t) = target
        st0 = kern.weighted(zeros, _LIGHT)
        assert st0.trP is not None
        with np.errstate(divide="ignore", invalid="ignore"):
            t0 = np.maximum((st0.Q - target(kern)) / st0.trP, 0.0)
        return _q_root(kern, target, t0)[0]

    lb = bound(True)
    ub = bound(False)
    _, _, _, _, _, vt = heterogeneity(kern, zeros, fixed=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        I2l = 100.0 * lb / (vt + lb)
        I2u = 100.0 * ub / (vt + ub)
        H2l = lb / vt + 1.0
        H2u = ub / vt + 1.0
    return QProfile(lb, ub, I2l, I2u, H2l, H2u)


# ---------------------------------------------------------------------------
# Chunked drivers over many analyses
# ---------------------------------------------------------------------------


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


def concat_qprofiles(parts: list[QProfile]) -> QProfile:
    if len(parts) == 1:
        return parts[0]
    return QProfile(
        *(np.concatenate([getattr(q, n) for q in parts]) for n in QProfile.__dataclass_fields__)
    )


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


__all__ = [
    "CHUNK_ROWS",
    "METHOD_ALIASES",
    "TESTS",
    "CoreFit",
    "Kernel",
    "QProfile",
    "RaggedLayout",
    "Tau2Result",
    "concat_fits",
    "concat_qprofiles",
    "estimate_tau2",
    "fit",
    "fit_given_tau2",
    "gather_padded",
    "heterogeneity",
    "kernel_from_padded",
    "permute_rows",
    "qprofile",
    "ragged_layout",
]
