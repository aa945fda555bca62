"""Vectorised numerical core: pool m analyses at once.

Everything here is a pure function of float64 arrays.  The core knows nothing of
attrs, pandas or the public classes; the public shell (``_pooling``, ``_metareg``,
...) converts its inputs to the padded layout below, calls :func:`fit` and wraps the
arrays it returns.

Layout
------
An *analysis* is one meta-analysis (one row).  Studies of m analyses are held in
padded 2-D arrays of shape ``(m, n)`` (ragged groups are padded chunk by chunk by
the shell, groups of similar size together):

* ``Y``: effects, 0 where a study is absent; for meta-regression centred per row
  by their unweighted mean, as metafor does (``center`` shifts the intercept back);
* ``V``: sampling variances, ``+inf`` where a study is absent, so that every
  inverse-variance weight ``1 / (V + tau2)`` of an absent study is exactly 0;
* ``X``: the design, ``None`` for the intercept-only model (the fast kernel), or an
  array of shape ``(n, p)`` shared by every row or ``(m, n, p)``.

Estimators are written once, in terms of the quadratic forms and traces of the
projection matrix ``P = W - W X (X'WX)^{-1} X'W`` that metafor's ``rma.uni`` uses
(Viechtbauer, 2005).  Two kernels supply those quantities: a closed-form one for the
intercept-only model and a general one with explicit ``P`` for meta-regression.  The
closed-form one also reads long-format data ungrouped (:class:`ScatterKernel`: 1-D
studies with a group code each), for what needs only weight moments.

References
----------
Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators in
the random-effects model. *Journal of Educational and Behavioral Statistics*, 30(3),
261-293.

Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software*, 36(3), 1-48.
"""

from __future__ import annotations

import functools
import threading
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
#: Q with S2 and tr(P) only (what DL's estimate needs; LIGHT adds S3 and tr(PP)).
_TRP = 0.25
_LIGHT = 0.5
#: Level of the Q-root searches (PM, PMM, EB, Q-profile): Q and y'PPy only.
_QROOT = 0.75
#: The REML score alone: Q, y'PPy, S2 and tr(P) (the peak search of _positive_root).
_SCORE = 0.8


def _covers(have: float, want: float) -> bool:
    """Whether Stats computed at level ``have`` contain everything of level ``want``.

    Levels -1 < 0 < TRP < LIGHT < 1 < 2 nest, and 0 < QROOT < 1; QROOT holds other
    extras (residual moments) than TRP and LIGHT (weight moments).
    """
    return (
        have == want
        or want <= 0 <= have
        or (have >= 1 and want <= have)
        or (have == _LIGHT and want == _TRP)
        or (have == _SCORE and want == _QROOT)
    )
#: Scratch arrays the intercept-only kernel needs at its deepest level.
_IO_SLOTS = 9
#: Cells per block of the intercept-only kernel's elementwise passes (its scratch
#: slots then stay in a 2 MiB L2 cache; see docs/benchmarks.rst).
BLOCK_CELLS = 98304
#: Moment-form Q is kept where Q exceeds Σwy² / _MOMENT_COND (error below ~k 1e-13).
_MOMENT_COND = 1e3
#: Per-thread scratch buffer of the intercept-only kernel (see Kernel._scratch).
_SCRATCH = threading.local()


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
    vb: FloatArray | None  # (m, p, p); None from the intercept-only kernel (see _cov)
    S2: FloatArray | None = None  # sum of squared weights
    yPPy: FloatArray | None = None
    yPPPy: FloatArray | None = None
    trP: FloatArray | None = None
    trPP: FloatArray | None = None
    trPVPV: FloatArray | None = None
    trPVP: FloatArray | None = None


def _cov(st: Stats) -> FloatArray:
    """``(X'WX)^{-1}``; the intercept-only kernel leaves it to be formed here, 1/S1."""
    return (1.0 / st.S1)[:, None, None] if st.vb is None else st.vb


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
    kmin: int = field(init=False)
    # Cache of weighted() results: the last τ² (with its level) and τ² = 0, which
    # the estimators, heterogeneity() and the final fit all ask for again.
    _cache: dict[str, tuple[FloatArray, float, Stats]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self.p = 1 if self.X is None else int(self.X.shape[-1])
        #: the fewest studies of any row (rows with k <= p need special cases)
        self.kmin = int(self.k.min()) if self.k.size else 0

    @functools.cached_property
    def _ones(self) -> FloatArray:
        return np.ones(self.Y.shape[1])

    @functools.cached_property
    def zeros(self) -> FloatArray:
        """τ² = 0 for every row; :meth:`weighted` recognises it without a scan."""
        return np.zeros(self.m)

    @functools.cached_property
    def dfr(self) -> FloatArray:
        """Residual degrees of freedom ``k - p`` per row."""
        out: FloatArray = (self.k - self.p).astype(np.float64)
        return out

    @property
    def m(self) -> int:
        return int(self.k.shape[0])

    @property
    def mask(self) -> BoolArray:
        return np.isfinite(self.V)

    def take(self, idx: npt.NDArray[np.intp] | BoolArray) -> Kernel:
        X = self.X
        if X is not None and X.ndim == 3:
            X = X[idx]
        return Kernel(self.Y[idx], self.V[idx], self.k[idx], self.center[idx], X)

    def _scratch(self, size: int) -> FloatArray:
        """A flat scratch array of ``size`` floats (a view into a reused buffer).

        The buffer is kept per thread and reused by every kernel of that thread, so
        block after block touches the same (cache-resident) memory instead of
        faulting in fresh pages; no result returned by the kernel is a view into it.
        """
        flat = getattr(_SCRATCH, "buf", None)
        if flat is None or flat.size < size:
            flat = np.empty(max(size, _IO_SLOTS * BLOCK_CELLS))
            _SCRATCH.buf = flat
        out: FloatArray = flat[:size]
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
        slot = "zero" if tau2 is self.zeros or not tau2.any() else "last"
        hit = self._cache.get(slot)
        if hit is not None and _covers(hit[1], level) and (
            slot == "zero" or hit[0] is tau2 or np.array_equal(hit[0], tau2)
        ):
            return hit[2]
        if self.X is None:
            st = self._weighted_io(tau2, level, slot == "last")
        else:
            level = 1 if level in (_TRP, _LIGHT, _QROOT, _SCORE) else max(int(level), 0)
            w = np.add(self.V, tau2[:, None])
            np.divide(1.0, w, out=w)
            st = self._weighted_general(w, level)
        self._cache[slot] = (tau2 if slot == "zero" else tau2.copy(), level, st)
        return st

    def _weighted_io(self, tau2: FloatArray, level: float, shifted: bool) -> Stats:
        # Levels up to LIGHT need Q only at weights fixed by the level, so it comes
        # from moments, Q = Σwy² - (Σwy)²/S1, checked for cancellation below; the
        # Q-root and likelihood levels take every quadratic form of explicit residuals.
        moments = level in (_BETA_ONLY, 0, _TRP, _LIGHT)
        if moments:
            nsum = {_BETA_ONLY: 2, 0: 3, _TRP: 4, _LIGHT: 5}[level]
        else:
            nsum = {_QROOT: 4, _SCORE: 5}.get(level, 8)
        sums = self._io_sums(tau2, nsum, moments, shifted)
        return self._io_stats(sums, tau2, level, moments)

    def _io_sums(
        self, tau2: FloatArray, nsum: int, moments: bool, shifted: bool
    ) -> list[FloatArray]:
        """Per-analysis sums of the intercept-only kernel at weights ``1/(v + tau2)``.

        Moment sums (``moments``): ``Σw, Σwy, Σwy², Σw², Σw³`` (the first ``nsum``).
        Otherwise, with residuals ``e = y - Σwy/Σw``: ``Σw, Σwy, Σwe², Σw²e²``, for
        ``nsum = 5`` also ``Σw²`` and for ``nsum = 8`` also ``Σw², Σw³, Σw³e², Σw²e``.
        ``shifted=False`` means τ² = 0.
        """
        # The elementwise passes run block by block over the rows, into scratch
        # slots small enough to stay in cache; the per-analysis sums of several
        # slots are one BLAS product of the stacked slots with a vector of ones, much
        # faster than numpy reductions over a dozen studies per row.
        Y, V = self.Y, self.V
        m, n = Y.shape
        ones = self._ones
        slots = nsum if moments else nsum + 1
        # One vector per sum (a stacked array above malloc's mmap threshold, 128 KiB,
        # would be faulted in afresh on every call); BLAS writes the row sums of each
        # scratch slot straight into its slice.
        sums = [np.empty(m) for _ in range(nsum)]
        rows = max(1, min(m, BLOCK_CELLS // max(n, 1)))
        buf = self._scratch(slots * rows * n)

        def rowsums(lo: int, hi: int, slot: int, first: int, count: int) -> None:
            # row sums of scratch slots slot.. into sums[first..] (rows lo:hi)
            for i in range(count):
                np.matmul(B[slot + i], ones, out=sums[first + i][lo:hi])

        for lo in range(0, m, rows):
            hi = min(m, lo + rows)
            b = hi - lo
            B = buf[: slots * b * n].reshape(slots, b, n)
            Yb = Y[lo:hi]
            w = B[0]
            if shifted:
                np.add(V[lo:hi], tau2[lo:hi, None], out=w)
                np.divide(1.0, w, out=w)
            else:
                np.divide(1.0, V[lo:hi], out=w)
            if moments:
                _moment_terms(B, Yb, nsum)
                rowsums(lo, hi, 0, 0, nsum)
                continue
            np.multiply(w, Yb, out=B[1])
            rowsums(lo, hi, 0, 0, 2)
            e = np.subtract(Yb, (sums[1][lo:hi] / sums[0][lo:hi])[:, None], out=B[1])
            we = np.multiply(w, e, out=B[2])
            np.multiply(we, e, out=B[3])  # Q
            np.multiply(we, we, out=B[4])  # y'PPy
            if nsum >= 5:
                ww = np.multiply(w, w, out=B[5])  # S2
            if nsum == 8:
                np.multiply(ww, w, out=B[6])  # S3
                np.multiply(B[4], w, out=B[7])  # w^3 e^2
                np.multiply(ww, e, out=B[8])  # w^2 e
            rowsums(lo, hi, 3, 2, nsum - 2)
        return sums

    def _rows(self, idx: npt.NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        """Padded ``(Y, V)`` of the analyses ``idx`` (0 and +inf where absent)."""
        return self.Y[idx], self.V[idx]

    def _io_stats(
        self, sums: list[FloatArray], tau2: FloatArray, level: float, moments: bool
    ) -> Stats:
        """The per-analysis algebra of the intercept-only kernel, from its sums."""
        m = self.m
        S1, Swy = sums[0], sums[1]
        mu = Swy / S1
        vb = None  # 1 / S1, formed by _cov where it is needed
        if level == _BETA_ONLY:
            return Stats(S1=S1, Q=np.full(m, np.nan), beta=mu[:, None], vb=vb)
        if moments:
            Q = sums[2] - Swy * mu
            # Relative rounding error of the moment form is about k eps Σwy²/Q; rows
            # where Σwy² exceeds _MOMENT_COND Q (a pooled z² above ~1000 (k-1)), or
            # Q <= 0, take Q from explicit residuals instead.  One study: Q = 0.
            if self.kmin <= 1:
                Q[self.k <= 1] = 0.0
                bad = np.flatnonzero((Q * _MOMENT_COND <= sums[2]) & (self.k > 1))
            else:
                bad = np.flatnonzero(Q * _MOMENT_COND <= sums[2])
            if bad.size:
                Yr, Vr = self._rows(bad)
                wb = 1.0 / (Vr + tau2[bad, None])
                eb = Yr - mu[bad, None]
                Q[bad] = _rowsum(wb * eb * eb)
            st = Stats(S1=S1, Q=Q, beta=mu[:, None], vb=vb)
            if level == 0:
                return st
            S2 = sums[3]
            S3: FloatArray | None = sums[4] if level == _LIGHT else None
        else:
            st = Stats(S1=S1, Q=sums[2], beta=mu[:, None], vb=vb, yPPy=sums[3])
            if level == _QROOT:
                return st
            S2, S3 = sums[4], None
            if level != _SCORE:
                S3, Sw3e2, Sw2e = sums[5], sums[6], sums[7]
                # y'PPPy = sum w^3 e^2 - (sum w^2 e)^2 / S1
                st.yPPPy = Sw3e2 - Sw2e**2 / S1
        st.S2 = S2
        r = S2 / S1
        st.trP = S1 - r
        if S3 is not None:
            st.trPP = S2 - (2.0 * S3 - S2 * r) / S1
        # Those closed forms cancel catastrophically when one weight dominates: with
        # q = max w / S1 their relative error is about eps/(1-q)^2.  Rows with
        # S2/S1^2 > 0.98 (1-q below about 0.01, error above about 1e-12) are
        # recomputed from sums of positive terms only (exact for every row).
        dom = np.flatnonzero(r > 0.98 * S1)
        if dom.size:
            wd = 1.0 / (self._rows(dom)[1] + tau2[dom, None])
            trP, trPP = _stable_traces(wd, S1[dom])
            st.trP[dom] = trP
            if st.trPP is not None:
                st.trPP[dom] = trPP
        if level >= 2:
            V = self.V
            Vz = np.where(np.isfinite(V), V, 0.0)
            wf = 1.0 / (V + tau2[:, None])
            st.trPVPV, st.trPVP = _stable_v_traces(wf, Vz, S1)
        return st

    def _weighted_general(self, w: FloatArray, level: float) -> Stats:
        vb, beta, P, Py, Q = _wls(self._Xfull(), w, self.Y)
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
    @functools.cached_property
    def unweighted(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(RSS, tr(PV), tr(PVPV))`` of the ordinary least-squares projection."""
        kf = self.k.astype(np.float64)
        if self.X is None:
            Y, V = self.Y, self.V
            ones = np.ones(Y.shape[1])
            ybar = (Y @ ones) / kf
            e = Y - ybar[:, None]
            if self.m and int(self.k.min()) != Y.shape[1]:
                mask = np.isfinite(V)
                e[~mask] = 0.0
                Vz = np.where(mask, V, 0.0)
            else:
                Vz = V
            rss = (e * e) @ ones
            sv = Vz @ ones
            sv2 = (Vz * Vz) @ ones
            trPV = sv * (kf - 1.0) / kf
            trPVPV = sv2 - 2.0 * sv2 / kf + (sv / kf) ** 2
            return rss, trPV, trPVPV
        mask = self.mask
        Vz = np.where(mask, self.V, 0.0)
        _, _, P, _, rss = _wls(self._Xfull(), mask.astype(np.float64), self.Y)
        PV = P * Vz[:, None, :]
        return rss, np.einsum("mii->m", PV), np.einsum("mij,mji->m", PV, PV)


def wls_qr(X: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(Q, R⁻¹)`` of the QR decomposition ``W^½ X = QR``, stacked over leading axes.

    ``X`` is ``(..., n, p)`` and ``w`` the weights ``(..., n)``; then
    ``(X'WX)⁻¹ = R⁻¹R⁻ᵀ`` and the hat matrix ``W^½X(X'WX)⁻¹X'W^½`` is ``QQᵀ``.
    Least squares through QR (one batched LAPACK call) has a rounding error that
    grows with ``cond(W^½ X)`` rather than with its square, as the normal equations
    do; that matters for uncentred moderators such as a publication year, where
    ``cond(X'WX)`` reaches 1e10 and more (Golub & Van Loan, 2013, sec. 5.3).
    """
    A = X * np.sqrt(w)[..., :, None]
    Rinv = np.linalg.inv(np.linalg.qr(A, mode="r"))
    return A @ Rinv, Rinv


def _wls(
    X: FloatArray, w: FloatArray, Y: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """``((X'WX)⁻¹, b, P, Py, y'Py)`` of every row, with ``P = W - WX(X'WX)⁻¹X'W``.

    Through :func:`wls_qr`: ``b = R⁻¹QᵀW^½y``, ``P = W^½(I - QQᵀ)W^½`` (explicit,
    ``(m, n, n)``) and ``y'Py`` the squared norm of the residual ``(I - QQᵀ)W^½y``.
    """
    Qf, Rinv = wls_qr(X, w)
    vb: FloatArray = Rinv @ np.swapaxes(Rinv, 1, 2)
    sw = np.sqrt(w)
    z = sw * Y
    qz = np.swapaxes(Qf, 1, 2) @ z[:, :, None]  # (m, p, 1)
    beta = (Rinv @ qz)[:, :, 0]
    resid = z - (Qf @ qz)[:, :, 0]
    SQ = Qf * sw[:, :, None]
    # a contiguous transpose keeps the batched product on BLAS
    P = -(SQ @ np.ascontiguousarray(np.swapaxes(SQ, 1, 2)))
    idx = np.arange(P.shape[1])
    P[:, idx, idx] += w
    return vb, beta, P, sw * resid, _rowdot(resid, resid)


def _moment_terms(B: FloatArray, y: FloatArray, nsum: int) -> None:
    """Fill scratch slots ``B[1:nsum]`` with ``wy, wy², w², w³`` from ``w = B[0]``."""
    w = B[0]
    wy = np.multiply(w, y, out=B[1])
    if nsum >= 3:
        np.multiply(wy, y, out=B[2])
    if nsum >= 4:
        ww = np.multiply(w, w, out=B[3])
    if nsum == 5:
        np.multiply(ww, w, out=B[4])


@dataclass
class ScatterKernel(Kernel):
    """Intercept-only kernel of long-format data, without grouping the studies.

    ``Y`` and ``V`` are 1-D (one entry per study, in any order) and ``codes`` gives
    the analysis (row ``0..m-1``) of each study; ``k`` holds the studies per analysis.

    The per-analysis sums of the moment levels (everything the closed-form EE, DL,
    HS and HSk estimators, their standard errors and the fit need) are scatter-adds
    (``np.add.at``) over blocks of studies, which costs less than the sort that
    grouping the studies would take.  The few analyses whose moment form needs an
    exact fallback are gathered into padded rows (:meth:`_rows`).  Levels that need
    explicit residuals (likelihood, Q-root searches) need the padded layout of
    :func:`kernel_from_padded`.
    """

    codes: IntArray = field(kw_only=True)

    def _io_sums(
        self, tau2: FloatArray, nsum: int, moments: bool, shifted: bool
    ) -> list[FloatArray]:
        if not moments:
            raise NotImplementedError("this level needs the padded layout")
        y, v, codes = self.Y, self.V, self.codes
        # Sums are scattered in pairs, as the real and imaginary parts of one complex
        # accumulator: a scatter-add costs about the same per row for one float as
        # for a complex pair, so this halves the scattering.
        npair = nsum // 2
        pairs = [np.zeros(self.m, dtype=np.complex128) for _ in range(npair)]
        last = np.zeros(self.m) if nsum % 2 else None
        block = BLOCK_CELLS // 4
        buf = self._scratch((nsum + 2 * npair) * block)
        for lo in range(0, y.size, block):
            hi = min(y.size, lo + block)
            b = hi - lo
            cb = codes[lo:hi]
            B = buf[: nsum * b].reshape(nsum, b)
            C = buf[nsum * b : (nsum + 2 * npair) * b].view(np.complex128).reshape(npair, b)
            w = B[0]
            if shifted:
                np.take(tau2, cb, out=w, mode="clip")  # codes are valid: skip the check
                np.add(w, v[lo:hi], out=w)
                np.divide(1.0, w, out=w)
            else:
                np.divide(1.0, v[lo:hi], out=w)
            _moment_terms(B, y[lo:hi], nsum)
            for j in range(npair):
                C[j].real = B[2 * j]
                C[j].imag = B[2 * j + 1]
                np.add.at(pairs[j], cb, C[j])
            if last is not None:
                np.add.at(last, cb, B[nsum - 1])
        sums = [part.copy() for acc in pairs for part in (acc.real, acc.imag)]
        if last is not None:
            sums.append(last)
        return sums

    def _rows(self, idx: npt.NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        flag = np.zeros(self.m, dtype=bool)
        flag[idx] = True
        pos = np.flatnonzero(flag[self.codes])
        pos = pos[np.argsort(self.codes[pos], kind="stable")]
        sizes = self.k[idx]
        row = np.repeat(np.arange(idx.size), sizes)
        col = np.arange(pos.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        n = int(sizes.max()) if sizes.size else 0
        Y = np.zeros((idx.size, n))
        V = np.full((idx.size, n), np.inf)
        Y[row, col] = self.Y[pos]
        V[row, col] = self.V[pos]
        return Y, V

    @property
    def mask(self) -> BoolArray:
        raise NotImplementedError("ScatterKernel has no padded layout")

    def take(self, idx: npt.NDArray[np.intp] | BoolArray) -> Kernel:
        raise NotImplementedError("ScatterKernel has no padded layout")

    @functools.cached_property
    def unweighted(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        raise NotImplementedError("ScatterKernel has no padded layout")


#: Estimators whose fit and τ² standard error need only the moment levels, which a
#: :class:`ScatterKernel` provides.
MOMENT_METHODS: frozenset[CoreMethod] = frozenset({"EE", "DL", "HS", "HSk"})


def kernel_from_long(
    y: FloatArray, v: FloatArray, codes: IntArray, counts: IntArray
) -> ScatterKernel:
    """:class:`ScatterKernel` of validated long-format studies with codes ``0..m-1``."""
    # k is copied: results hand it to users, who may write to it
    return ScatterKernel(y, v, counts.copy(), np.zeros(counts.size), codes=codes)


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
    Y: FloatArray, V: FloatArray, X: FloatArray | None = None, *, complete: bool = False
) -> Kernel:
    """Kernel from padded arrays where NaN (in both Y and V) marks an absent study.

    The caller has validated that NaNs coincide and that present variances are > 0;
    ``complete=True`` asserts that no study is absent (skips the check for NaN).
    """
    if X is None:
        # Intercept-only: row-major and uncentred (every quadratic form of this
        # kernel is taken of explicit residuals y - mu, so centring buys nothing).
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        V = np.ascontiguousarray(V, dtype=np.float64)
        m, n = Y.shape
        zero = np.zeros(m)
        if complete or (n > 0 and not np.isnan(Y @ np.ones(n)).any()):  # no study absent
            return Kernel(Y, V, np.full(m, n, dtype=np.int64), zero)
        mask = ~np.isnan(Y)
        k = mask.sum(axis=1).astype(np.int64)
        return Kernel(np.where(mask, Y, 0.0), np.where(mask, V, np.inf), k, zero)
    mask = ~np.isnan(Y)
    # the centring of Y is undone on column 0 (_center_shift): it must be the intercept
    x0 = X[..., 0]
    if not np.all((x0 == 1.0) | ~mask if X.ndim == 3 else x0 == 1.0):
        raise ValueError("a design kernel needs the intercept in column 0")
    k = mask.sum(axis=1).astype(np.int64)
    Yz = np.where(mask, Y, 0.0)
    center = Yz.sum(axis=1) / np.maximum(k, 1)
    Yc = np.where(mask, Yz - center[:, None], 0.0)
    Vi = np.where(mask, V, np.inf)
    Xz = np.where(mask[..., None], X, 0.0) if X.ndim == 3 else np.asarray(X, dtype=float)
    return Kernel(Yc, Vi, k, center, Xz)


# ---------------------------------------------------------------------------
# Safeguarded root finding, vectorised over rows
# ---------------------------------------------------------------------------

#: ``fun(kernel, t) -> (f, df/dt, -information)``: a decreasing estimating function,
#: its derivative, and minus its Fisher information (< 0); metafor's Fisher scoring
#: steps by ``-f / (-information)``.
RootFun = Callable[[Kernel, FloatArray], tuple[FloatArray, FloatArray, FloatArray]]


def _slope(deriv: FloatArray, fisher: FloatArray) -> FloatArray:
    """The Newton slope where it is negative, else the Fisher-scoring one (< 0)."""
    out: FloatArray = np.where(deriv < 0, deriv, fisher)
    return out


def _solve_decreasing(
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


def _positive_root(
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
    f0, d0, i0 = fun(kern, np.zeros(m))
    tau2 = np.zeros(m)
    iters = np.ones(m, dtype=np.int64)
    conv = np.ones(m, dtype=bool)
    reset = np.zeros(m, dtype=bool)
    # a single study has τ² = 0 (its score is 0 up to rounding, which must not
    # send it searching)
    need = (f0 > 0) & (kern.k > 1)
    if need.any():
        # start at the closed-form estimate, or one Newton step from 0 where it is 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            start = np.where(t0 > 0, t0, -f0 / _slope(d0, i0))[need]
        Kn = kern.take(need)
        r, it, c = _solve_decreasing(Kn, fun, start)
        idx = np.flatnonzero(need)
        if gain is not None:
            # the score is positive at 0, so the nearest root is a peak above the
            # likelihood at 0; one reached farther away need not be (ll0check)
            low = gain(Kn, r) < 0.0
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
        r, it, c = _solve_decreasing(Ku, fun, lo[up], lo0=lo[up], hi0=hi[up])
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


def _loglik_gain(K: Kernel, t: FloatArray, reml: bool) -> FloatArray:
    """(Restricted) log-likelihood at ``t`` minus that at τ² = 0, profiled over the
    coefficients: ``-1/2 [Σ log(1 + t/v) + Q(t) - Q(0) + log|X'W(t)X| - log|X'W(0)X|]``
    (the last two terms for REML only; ``log1p`` keeps small ``t`` exact)."""
    st, st0 = K.weighted(t, 0), K.weighted(K.zeros, 0)
    V = K.V
    logs = np.log1p(t[:, None] / V, out=np.zeros_like(V), where=np.isfinite(V))
    gain = -0.5 * (_rowsum(logs) + st.Q - st0.Q)
    if reml:
        if K.X is None:  # |X'WX| = Σw
            gain -= 0.5 * (np.log(st.S1) - np.log(st0.S1))
        else:
            gain += 0.5 * (np.linalg.slogdet(_cov(st))[1] - np.linalg.slogdet(_cov(st0))[1])
    out: FloatArray = gain
    return out


def _ml_gain(K: Kernel, t: FloatArray) -> FloatArray:
    return _loglik_gain(K, t, reml=False)


def _reml_gain(K: Kernel, t: FloatArray) -> FloatArray:
    return _loglik_gain(K, t, reml=True)


def _reml_fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Twice the REML score ``y'PPy - tr(P)``, its derivative and -2 x information."""
    st = K.weighted(t, 1)
    assert st.yPPy is not None and st.trP is not None
    assert st.trPP is not None and st.yPPPy is not None
    return st.yPPy - st.trP, st.trPP - 2.0 * st.yPPPy, -st.trPP


def _reml_score(K: Kernel, t: FloatArray) -> FloatArray:
    """Twice the REML score alone (see :func:`_reml_fun`)."""
    st = K.weighted(t, _SCORE)
    assert st.yPPy is not None and st.trP is not None
    out: FloatArray = st.yPPy - st.trP
    return out


def _ml_score(K: Kernel, t: FloatArray) -> FloatArray:
    """Twice the ML score alone (see :func:`_ml_fun`)."""
    st = K.weighted(t, _QROOT)
    assert st.yPPy is not None
    out: FloatArray = st.yPPy - st.S1
    return out


def _ml_fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Twice the ML score ``y'PPy - Σw``, its derivative and -2 x information."""
    st = K.weighted(t, 1)
    assert st.yPPy is not None and st.S2 is not None and st.yPPPy is not None
    return st.yPPy - st.S1, st.S2 - 2.0 * st.yPPPy, -st.S2


def _q_root(kern: Kernel, target_of: Callable[[Kernel], FloatArray], t0: FloatArray) -> tuple[
    FloatArray, IntArray, BoolArray
]:
    def fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        st = K.weighted(t, _QROOT)
        assert st.yPPy is not None
        slope = -np.maximum(st.yPPy, np.finfo(float).tiny)  # dQ/dτ² = -y'PPy
        return st.Q - target_of(K), slope, slope

    return _positive_root(kern, fun, t0)[:3]


# ---------------------------------------------------------------------------
# τ² estimators
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tau2Result:
    tau2: FloatArray
    se: FloatArray
    iterations: IntArray
    converged: BoolArray
    #: rows whose ML/REML root was set to 0 by metafor's ``ll0check``
    reset: BoolArray


def _df_resid(K: Kernel) -> FloatArray:
    return K.dfr


def estimate_tau2(kern: Kernel, method: CoreMethod, with_se: bool = True) -> Tau2Result:
    """τ² and its standard error for every row, as metafor's ``rma.uni`` defines them.

    Rows with ``k == 1`` get τ² = 0 (the caller warns).  The standard errors are
    those of :func:`tau2_se`; with ``with_se=False`` they are left out (``se`` is
    NaN) and the closed-form estimators skip the weight moments only they need.
    """
    m = kern.m
    dfr = _df_resid(kern)
    zeros = kern.zeros
    one_iter = np.zeros(m, dtype=np.int64)
    ok = np.ones(m, dtype=bool)
    it, conv = one_iter, ok
    reset = np.zeros(m, dtype=bool)
    if method == "EE":
        return Tau2Result(np.zeros(m), np.full(m, np.nan), one_iter, ok, reset)

    with np.errstate(divide="ignore", invalid="ignore"):
        if method in ("DL", "HS", "HSk"):
            st = kern.weighted(zeros, _LIGHT if with_se else _TRP)
            assert st.trP is not None
            if method == "DL":
                raw = (st.Q - dfr) / st.trP
            elif method == "HS":
                raw = (st.Q - kern.k) / st.S1
            else:
                kf = kern.k.astype(np.float64)
                raw = (kf / dfr * st.Q - kf) / st.S1
            tau2 = np.maximum(raw, 0.0)
        elif method == "HE":
            rss, trPV, _ = kern.unweighted
            tau2 = np.maximum((rss - trPV) / dfr, 0.0)
        elif method == "SJ":
            tau0 = _sj_start(kern)
            st = kern.weighted(tau0, 2)
            tau2 = np.maximum(tau0 * st.Q / dfr, 0.0)
        elif method in ("ML", "REML"):
            rss, trPV, _ = kern.unweighted
            he = np.maximum((rss - trPV) / dfr, 0.0)
            reml = method == "REML"
            tau2, it, conv, reset = _positive_root(
                kern,
                _reml_fun if reml else _ml_fun,
                he,
                _reml_gain if reml else _ml_gain,
                _reml_score if reml else _ml_score,
            )
        elif method in ("EB", "PM", "PMM"):
            # EB's estimating equation Q(t) k/(k-p) = k has the same root as PM's Q(t) = k-p.
            def target(K: Kernel) -> FloatArray:
                d = _df_resid(K)
                return chi2_quantile(0.5, d) if method == "PMM" else d

            st0 = kern.weighted(zeros, _TRP)
            assert st0.trP is not None
            dl = np.maximum((st0.Q - dfr) / st0.trP, 0.0)
            tau2, it, conv = _q_root(kern, target, dl)
        else:  # pragma: no cover - guarded by the shell
            raise ValueError(f"unknown method {method!r}")

    if kern.kmin <= 1:
        tau2 = np.where(kern.k <= 1, 0.0, tau2)
    se = tau2_se(kern, method, tau2) if with_se else np.full(m, np.nan)
    return Tau2Result(tau2, se, it, conv, reset)


def tau2_se(kern: Kernel, method: CoreMethod, tau2: FloatArray) -> FloatArray:
    """Standard error of the τ² estimates ``tau2`` of each row, as in metafor.

    Notes
    -----
    Each estimator's own formula, from ``rma.uni``'s source (Viechtbauer, 2005;
    Sidik & Jonkman, 2005 for SJ), with ``P`` the projection at the weights shown:

    * DL: ``sqrt(2(k-p) + 4τ² tr(P) + 2τ⁴ tr(PP)) / tr(P)`` at ``1/v``; HS the same
      over ``Σ 1/v`` (times ``k/(k-p)`` for HSk);
    * HE: ``sqrt(2 tr(PVPV) + 4τ² tr(PV) + 2τ⁴ (k-p)) / (k-p)`` with OLS ``P``;
    * SJ: ``τ₀/(k-p) sqrt(2 tr(PVPV) + 4τ² tr(PVP) + 2τ⁴ tr(PP))`` at ``1/(v+τ₀)``;
    * ML/REML: ``sqrt(2 / Σw²)`` and ``sqrt(2 / tr(PP))`` at ``1/(v+τ²)``;
    * EB, PM, PMM: ``sqrt(2k² / ((k-p) (Σw)²))`` at ``1/(v+τ²)``.

    NaN for EE and for rows with one study.  The kernel's cache makes this free
    right after :func:`estimate_tau2` has computed ``tau2``.
    """
    m = kern.m
    dfr = _df_resid(kern)
    zeros = kern.zeros
    if method == "EE":
        return np.full(m, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method in ("DL", "HS", "HSk"):
            st = kern.weighted(zeros, _LIGHT)
            assert st.trP is not None and st.trPP is not None
            denom = st.trP if method == "DL" else st.S1
            se = np.sqrt(2.0 * dfr + tau2 * (4.0 * st.trP + 2.0 * tau2 * st.trPP)) / denom
            if method == "HSk":
                se = kern.k / dfr * se
        elif method == "HE":
            _, trPV, trPVPV = kern.unweighted
            se = np.sqrt((2.0 * trPVPV + 4.0 * tau2 * trPV + 2.0 * tau2**2 * dfr) / dfr**2)
        elif method == "SJ":
            tau0 = _sj_start(kern)
            st = kern.weighted(tau0, 2)
            assert st.trPVPV is not None and st.trPVP is not None and st.trPP is not None
            se = np.sqrt(
                tau0**2
                / dfr**2
                * (2.0 * st.trPVPV + 4.0 * tau2 * st.trPVP + 2.0 * tau2**2 * st.trPP)
            )
        elif method in ("ML", "REML"):
            st = kern.weighted(tau2, 1)
            assert st.trPP is not None and st.S2 is not None
            se = np.sqrt(2.0 / (st.trPP if method == "REML" else st.S2))
        elif method in ("EB", "PM", "PMM"):
            st = kern.weighted(tau2, 0)
            se = np.sqrt(2.0 * kern.k**2 / dfr / st.S1**2)
        else:  # pragma: no cover - guarded by the shell
            raise ValueError(f"unknown method {method!r}")
    if kern.kmin <= 1:
        se = np.where(kern.k <= 1, np.nan, se)
    out: FloatArray = se
    return out


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
    #: rows whose ML/REML τ² metafor's ll0check set to 0 (see _positive_root)
    tau2_reset: BoolArray


def q_statistic(kern: Kernel) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(QE, k-p, vt)``: Cochran's Q (FE weights) and metafor's typical variance.

    ``vt = (k-p)/tr(P)`` with ``P`` at weights ``1/v`` (Higgins & Thompson, 2002).
    Saturated rows (``k <= p``) get ``QE = 0`` and ``vt = 0``, as in metafor.
    """
    dfr = _df_resid(kern)
    st = kern.weighted(kern.zeros, _TRP)
    assert st.trP is not None
    with np.errstate(divide="ignore", invalid="ignore"):
        QE = np.maximum(st.Q, 0.0)
        vt = dfr / st.trP
    if kern.kmin <= kern.p:
        sat = dfr <= 0
        QE = np.where(sat, 0.0, QE)
        vt = np.where(sat, 0.0, vt)
    return QE, dfr, vt


def q_pvalue(QE: FloatArray, dfr: FloatArray) -> FloatArray:
    """``P(χ²_{k-p} > QE)``; 1 for saturated rows (metafor's QEp)."""
    with np.errstate(invalid="ignore"):
        p = np.asarray(sps.chi2.sf(QE, dfr), dtype=np.float64)
    return np.where(dfr <= 0, 1.0, p)


def i2_h2(
    QE: FloatArray, dfr: FloatArray, tau2: FloatArray, vt: FloatArray, fixed: bool
) -> tuple[FloatArray, FloatArray]:
    """I² (percent) and H² as metafor defines them.

    Random effects: ``I² = 100 τ²/(vt + τ²)``, ``H² = τ²/vt + 1``; equal effects:
    ``I² = max(0, 100 (QE - (k-p))/QE)``, ``H² = QE/(k-p)``; 0 and 1 when saturated.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if fixed:
            I2 = np.maximum(0.0, 100.0 * (QE - dfr) / QE)
            H2 = QE / dfr
        else:
            I2 = 100.0 * tau2 / (vt + tau2)
            H2 = tau2 / vt + 1.0
    sat = dfr <= 0
    I2 = np.where(sat | (np.isnan(I2) & (QE == 0)), 0.0, I2)
    H2 = np.where(sat, 1.0, H2)
    return I2, H2


def heterogeneity(
    kern: Kernel, tau2: FloatArray, fixed: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """``(QE, QE_df, QE_p, I2, H2, vt)`` as in metafor (typical variance ``(k-p)/tr(P)``)."""
    QE, dfr, vt = q_statistic(kern)
    I2, H2 = i2_h2(QE, dfr, tau2, vt, fixed)
    return QE, dfr, q_pvalue(QE, dfr), I2, H2, vt


def inference_df(k: IntArray, p: int, test: CoreTest) -> FloatArray:
    """Degrees of freedom of the coefficient tests: ``k-p`` under t/knha/adhoc, else NaN.

    Rows with ``k = 1`` use z (metafor switches to ``test="z"`` when k = 1).
    """
    if test == "z":
        return np.full(k.shape, np.nan)
    return np.where(k <= 1, np.nan, (k - p).astype(np.float64))


def chi2_quantile(q: float, df: FloatArray) -> FloatArray:
    """``χ²_df`` quantiles, one scipy evaluation per distinct df (usually a handful)."""
    uniq, inv = np.unique(df, return_inverse=True)
    out: FloatArray = np.asarray(sps.chi2.ppf(q, uniq), dtype=np.float64)[inv.reshape(df.shape)]
    return out


def critical_value(df: FloatArray, level: float) -> FloatArray:
    """Two-sided critical value: t with ``df`` where finite, normal where NaN."""
    alpha2 = (1.0 - level) / 2.0
    crit = np.full(df.shape, float(sps.norm.isf(alpha2)))
    tb = np.isfinite(df)
    if tb.any():
        # one quantile per distinct df (usually a handful), broadcast back
        uniq, inv = np.unique(df[tb], return_inverse=True)
        crit[tb] = np.asarray(sps.t.isf(alpha2, uniq), dtype=np.float64)[inv]
    return crit


def coef_tests(
    beta: FloatArray, se: FloatArray, df: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Wald statistics ``beta/se`` and two-sided p-values (t with ``df``, or normal).

    ``beta`` and ``se`` are ``(m,)`` or ``(m, p)``; ``df`` is ``(m,)``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = beta / se
        a = np.abs(stat)
        dfb = df if stat.ndim == 1 else df[:, None]
        pz = 2.0 * _norm_sf(a)
        if np.isfinite(df).any():
            pt = 2.0 * np.asarray(sps.t.sf(a, dfb), dtype=np.float64)
            pval = np.where(np.isfinite(dfb), pt, pz)
        else:
            pval = pz
    return stat, pval


def prediction_interval(
    beta0: FloatArray, se0: FloatArray, tau2: FloatArray, crit: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``beta0 ± crit √(se0² + τ²)``, metafor's ``predict`` for the intercept."""
    half = crit * np.sqrt(se0**2 + tau2)
    return beta0 - half, beta0 + half


def _location(
    kern: Kernel, tau2: FloatArray, test: CoreTest
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(beta, vb, s2w)`` at the given τ², with the Knapp-Hartung scaling of ``vb``.

    ``s2w = Σ w (y - Xβ)²/(k-p)`` (0 when that sum is below machine epsilon, as in
    metafor; floored at 1 under ``adhoc``); 1 for z and t.
    """
    knha = test in ("knha", "adhoc")
    # Q at τ² is needed by the Knapp-Hartung scaling only
    st = kern.weighted(tau2, 0 if knha else _BETA_ONLY)
    beta, vb = st.beta, _cov(st)
    if kern.X is not None:  # only meta-regression kernels are centred
        beta = beta + _center_shift(kern)
    s2w = np.ones(kern.m)
    if knha:
        dfr = _df_resid(kern)
        with np.errstate(divide="ignore", invalid="ignore"):
            s2w = np.where(st.Q <= _EPS, 0.0, st.Q / np.where(dfr > 0, dfr, np.nan))
        if test == "adhoc":
            s2w = np.maximum(s2w, 1.0)
        s2w = np.where(kern.k <= 1, 1.0, s2w)
        vb = vb * s2w[:, None, None]
    return beta, vb, s2w


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
    k: IntArray
    iterations: IntArray
    converged: BoolArray
    tau2_reset: BoolArray
    tau2_se: FloatArray | None = None


def fit_slim(
    kern: Kernel, method: CoreMethod, test: CoreTest, with_se: bool = False
) -> SlimFit:
    """The estimation part of :func:`fit` for an intercept-only kernel.

    The standard error of τ² is left to :func:`tau2_se` (computed on demand) unless
    ``with_se``, which computes it in the same passes.
    """
    est = estimate_tau2(kern, method, with_se=with_se)
    beta, vb, _ = _location(kern, est.tau2, test)
    QE, _, vt = q_statistic(kern)
    return SlimFit(
        estimate=beta[:, 0],
        se=np.sqrt(vb[:, 0, 0]),
        tau2=est.tau2,
        QE=QE,
        vt=vt,
        k=kern.k,
        iterations=est.iterations,
        converged=est.converged,
        tau2_se=est.se if with_se else None,
        tau2_reset=est.reset,
    )


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
    """The fixed-effects part of the fit, tests and heterogeneity for given τ² values."""
    m, p = kern.m, kern.p
    tau2 = est.tau2
    beta, vb, s2w = _location(kern, tau2, test)
    dfr = _df_resid(kern)
    df = inference_df(kern.k, p, test)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.einsum("mii->mi", vb))
        stat, pval = coef_tests(beta, se, df)
        crit = critical_value(df, level)
        ci_low = beta - crit[:, None] * se
        ci_high = beta + crit[:, None] * se

        if btt is None:
            btt = np.arange(1, p) if p > 1 else np.arange(1)
        q = float(btt.size)
        b = beta[:, btt]
        vsub = vb[:, btt[:, None], btt[None, :]]
        if btt.size == 1:
            # 1x1 system: b^2 / v, NaN where v == 0 (singular, metafor's NA)
            v11 = vsub[:, 0, 0]
            QM = np.where(v11 != 0, b[:, 0] * (b[:, 0] / v11), np.nan)
        else:
            QM = np.einsum("mi,mi->m", b, _solve_or_nan(vsub, b))
        if test == "z":
            QM_df2 = np.full(m, np.nan)
            QMp = np.asarray(sps.chi2.sf(QM, q), dtype=np.float64)
        else:
            QM = QM / q
            QM_df2 = np.where(kern.k <= 1, np.nan, dfr)
            QMp = np.asarray(sps.f.sf(QM, q, QM_df2), dtype=np.float64)
            QMp = np.where(np.isnan(QM_df2), np.asarray(sps.chi2.sf(QM * q, q)), QMp)

        QE, QE_df, QEp, I2, H2, vt = heterogeneity(kern, tau2, method == "EE")
        pi_low, pi_high = prediction_interval(beta[:, 0], se[:, 0], tau2, crit)
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
        tau2_reset=est.reset,
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
    zeros = kern.zeros

    def bound(upper_quantile: bool) -> FloatArray:
        def target(K: Kernel) -> FloatArray:
            d = _df_resid(K)
            q = chi2_quantile(1.0 - alpha / 2 if upper_quantile else alpha / 2, d)
            return np.asarray(q, dtype=np.float64)

        # start at the DL-type moment solution of Q(t) = target
        st0 = kern.weighted(zeros, _TRP)
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
    "Tau2Result",
    "concat_fits",
    "concat_qprofiles",
    "estimate_tau2",
    "fit",
    "fit_given_tau2",
    "heterogeneity",
    "kernel_from_padded",
    "permute_rows",
    "qprofile",
    "tau2_se",
]
