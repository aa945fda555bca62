"""Kernels: the weighted quantities of the projection ``P`` for m analyses at once.

Layout
------
An *analysis* is one meta-analysis (one row).  Studies of m analyses are held in
padded 2-D arrays of shape ``(m, n)`` (ragged groups are padded chunk by chunk,
groups of similar size together; see :mod:`alliance_meta.core.layout`):

* ``Y``: effects, 0 where a study is absent; for meta-regression centred per row
  by their unweighted mean, as metafor does (its ``Ymc``: τ² and QE are computed
  from the centred effects, with or without an intercept in the design; the
  coefficients are shifted back, see :func:`alliance_meta.core.vcov.center_shift`);
* ``V``: sampling variances, ``+inf`` where a study is absent, so that every
  inverse-variance weight ``1 / (V + tau2)`` of an absent study is exactly 0;
* ``X``: the design, ``None`` for the intercept-only model (the fast kernel), or an
  array of shape ``(n, p)`` shared by every row or ``(m, n, p)``.

Estimators (:mod:`alliance_meta.core.estimators`) are written once, in terms of the
quadratic forms and traces of the projection matrix
``P = W - W X (X'WX)^{-1} X'W`` that metafor's ``rma.uni`` uses (Viechtbauer, 2005).
Two kernels supply those quantities: a closed-form one for the intercept-only model
and a general one for meta-regression, which takes them from the QR decomposition
of ``W^½X`` without forming ``P`` (``O(n p)`` memory per analysis).  The closed-form one also
reads long-format data ungrouped (:class:`ScatterKernel`: 1-D studies with a group
code each), for what needs only weight moments.  Callers say which quantities they
need with a :class:`Need` flag; :meth:`Kernel.weighted` computes no more than that
and caches the result for the last τ² and for τ² = 0.

References
----------
Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators in
the random-effects model. *Journal of Educational and Behavioral Statistics*, 30(3),
261-293.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from alliance_meta.core.arrays import BoolArray, FloatArray, IntArray, lazy, rowdot, rowsum
from alliance_meta.exceptions import InvalidStudyError

__all__ = [
    "BLOCK_CELLS",
    "Kernel",
    "Need",
    "ScatterKernel",
    "Stats",
    "in_unit_range",
    "kernel_from_long",
    "kernel_from_padded",
    "unit_scale",
    "wls_qr",
]


class Need(enum.IntFlag):
    """The quantities of ``P`` a caller needs from :meth:`Kernel.weighted`.

    A result computed for ``have`` serves a request ``want`` when
    ``have & want == want``.  The named combinations are what the estimators ask for.
    (An ``IntFlag``: the kernel works on the plain integers, whose bit operations
    cost a fraction of an enum's.)
    """

    #: the coefficients, their covariance and Σw
    BETA = 1
    #: Q = y'Py
    Q = 2
    #: Σw² and tr(P)
    TRP = 4
    #: Σw³ and tr(PP)
    TRPP = 8
    #: y'PPy
    YPPY = 16
    #: y'PPPy
    YPPPY = 32
    #: tr(PVPV) and tr(PVP) (SJ's standard error)
    VTRACES = 64
    #: ``dL = Σ log(1 + τ²/v)``, the log-determinant part of the likelihood gain
    LOGDET = 128

    #: the fit: coefficients and Q
    FIT = BETA | Q
    #: what DL's estimate needs
    DL = BETA | Q | TRP
    #: every weight moment (DL's standard error)
    MOMENTS = BETA | Q | TRP | TRPP
    #: the Q-root searches (PM, PMM, EB, Q-profile)
    QROOT = BETA | Q | YPPY
    #: the REML score alone
    SCORE = BETA | Q | YPPY | TRP
    #: ML/REML scores with their derivatives and information
    LIKELIHOOD = BETA | Q | TRP | TRPP | YPPY | YPPPY
    #: LIKELIHOOD and the traces with V
    ALL = BETA | Q | TRP | TRPP | YPPY | YPPPY | VTRACES


#: Needs that the moment form of the intercept-only kernel cannot give (they need
#: explicit residuals, and long-format data grouped).
RESIDUAL_NEEDS = Need.YPPY | Need.YPPPY | Need.VTRACES

# The flags as plain integers, for the kernel's own bookkeeping.
_BETA, _Q, _TRP, _TRPP = int(Need.BETA), int(Need.Q), int(Need.TRP), int(Need.TRPP)
_YPPY, _YPPPY, _VTRACES = int(Need.YPPY), int(Need.YPPPY), int(Need.VTRACES)
_RESIDUAL = int(RESIDUAL_NEEDS)
_FIT, _LIKELIHOOD = int(Need.FIT), int(Need.LIKELIHOOD)
# What the intercept-only kernel computes for a request, smallest first, and how
# many per-analysis sums each takes (see Kernel._io_sums).
_MOMENT_SETS = tuple(int(n) for n in (Need.BETA, Need.FIT, Need.DL, Need.MOMENTS))
_MOMENT_SUMS = dict(zip(_MOMENT_SETS, (2, 3, 4, 5), strict=True))
_RESIDUAL_SETS = tuple(int(n) for n in (Need.QROOT, Need.SCORE, Need.LIKELIHOOD, Need.ALL))
_RESIDUAL_SUMS = dict(zip(_RESIDUAL_SETS[:3], (4, 5, 8), strict=True))
#: request -> (what the intercept-only kernel computes, its number of sums, moments?)
_LOGDET = int(Need.LOGDET)
_IO_PLAN: dict[int, tuple[int, int, bool]] = {}
for _want in range(int(Need.ALL) + 1):
    if _want & _RESIDUAL == 0:
        _have = next(h for h in _MOMENT_SETS if h & _want == _want)
        _IO_PLAN[_want] = (_have, _MOMENT_SUMS[_have], True)
    else:
        _have = next(h for h in _RESIDUAL_SETS if h & _want == _want)
        _IO_PLAN[_want] = (_have, _RESIDUAL_SUMS[_have & ~_VTRACES], False)
    # dL comes with any level, in the same pass
    _IO_PLAN[_want | _LOGDET] = (_IO_PLAN[_want][0] | _LOGDET, *_IO_PLAN[_want][1:])
#: Row products of ``v/(v + τ²)`` below this are taken as sums of logs instead
#: (the product would underflow, or lose precision as a subnormal).
_TINY_PRODUCT = 1e-290

#: Scratch arrays the intercept-only kernel needs at most.
_IO_SLOTS = 9
#: Cells per block of the intercept-only kernel's elementwise passes (its scratch
#: slots then stay in a 2 MiB L2 cache; see docs/benchmarks.rst).
BLOCK_CELLS = 98304
#: Blocks the long-format scatter splits its studies into (see
#: :meth:`ScatterKernel._io_sums`).
SCATTER_SPLIT = 2
#: Largest number of sums the intercept-only kernel keeps in one stacked array (see
#: Kernel._io_sums; 32 KiB, far below malloc's mmap threshold).
_STACKED = 4096
#: Moment-form Q is kept where Q exceeds Σwy² / _MOMENT_COND (error below ~k 1e-13).
_MOMENT_COND = 1e3
#: Per-thread scratch buffer of the intercept-only kernel (see Kernel._scratch).
_SCRATCH = threading.local()


@dataclass
class Stats:
    """Weighted quantities of ``P`` at one τ² per row (fields filled on demand)."""

    S1: FloatArray  # sum of weights
    Q: FloatArray  # y'Py: weighted residual sum of squares
    beta: FloatArray  # (m, p)
    vb: FloatArray | None  # (m, p, p); None from the intercept-only kernel (see cov)
    S2: FloatArray | None = None  # sum of squared weights
    yPPy: FloatArray | None = None
    yPPPy: FloatArray | None = None
    trP: FloatArray | None = None
    trPP: FloatArray | None = None
    trPVPV: FloatArray | None = None
    trPVP: FloatArray | None = None
    #: Σ log(1 + τ²/v) (Need.LOGDET)
    dL: FloatArray | None = None


    def cov(self) -> FloatArray:
        """``(X'WX)^{-1}``; the intercept-only kernel leaves it to be formed here, 1/S1."""
        return (1.0 / self.S1)[:, None, None] if self.vb is None else self.vb


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
    #: column 0 of the design is the intercept (always so without a design); else
    #: the omnibus test takes every coefficient, as metafor's default ``btt``
    intercept: bool = True
    #: per-row power of two the data were divided by (``Y/s``, ``V/s²``), or None
    #: (see :func:`unit_scale`); quantities of the kernel are in these units, and
    #: the core's public functions convert back
    scale: FloatArray | None = None
    p: int = field(init=False)
    kmin: int = field(init=False)
    # Cache of weighted() results: the last τ² (with what it holds) and τ² = 0, which
    # the estimators, heterogeneity() and the final fit all ask for again.
    _cache: dict[str, tuple[FloatArray, int, Stats]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self.p = 1 if self.X is None else int(self.X.shape[-1])
        #: the fewest studies of any row (rows with k <= p need special cases)
        self.kmin = int(self.k.min()) if self.k.size else 0

    @lazy
    def _ones(self) -> FloatArray:
        return np.ones(self.Y.shape[1])

    @lazy
    def zeros(self) -> FloatArray:
        """τ² = 0 for every row; :meth:`weighted` recognises it without a scan."""
        return np.zeros(self.m)

    @lazy
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
        """The kernel of the rows ``idx`` (indices, repeats allowed, or a mask).

        ``np.take`` along the first axis copies rows about three times as fast as
        fancy indexing, and a mask is turned into indices first (boolean indexing of
        rows is slower still).
        """
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        X = self.X
        if X is not None and X.ndim == 3:
            X = np.take(X, idx, axis=0)
        sc = None if self.scale is None else self.scale[idx]
        return Kernel(
            np.take(self.Y, idx, axis=0),
            np.take(self.V, idx, axis=0),
            self.k[idx],
            self.center[idx],
            X,
            self.intercept,
            sc,
        )

    @property
    def s2(self) -> FloatArray | None:
        """The variance scale ``s²`` of each row (None: 1)."""
        return None if self.scale is None else self.scale * self.scale

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
    def weighted(self, tau2: FloatArray, need: Need = Need.FIT) -> Stats:
        """Quantities of ``P`` with weights ``1 / (v + tau2)``: at least those in ``need``.

        The result for the last τ² and for τ² = 0 is cached, and serves any later
        request it covers.
        """
        want = int(need)
        if type(tau2) is not np.ndarray or tau2.dtype != np.float64:
            tau2 = np.asarray(tau2, dtype=np.float64)
        slot = "zero" if tau2 is self.zeros or not tau2.any() else "last"
        hit = self._cache.get(slot)
        if hit is not None and hit[1] & want == want and (
            slot == "zero" or hit[0] is tau2 or np.array_equal(hit[0], tau2)
        ):
            return hit[2]
        if self.X is None:
            have, st = self._weighted_io(tau2, want, slot == "last")
        else:
            # the general kernel's QR gives everything but the traces with V at once
            have = _FIT if want & ~(_FIT | _LOGDET) == 0 else _LIKELIHOOD
            have |= want & (_VTRACES | _LOGDET)
            w = np.add(self.V, tau2[:, None])
            np.divide(1.0, w, out=w)
            st = self._weighted_general(w, have)
            if have & _LOGDET:
                if slot == "zero":
                    st.dL = np.zeros(self.m)
                else:  # absent studies (v = +inf) add log1p(0) = 0
                    with np.errstate(divide="ignore", invalid="ignore"):
                        st.dL = rowsum(np.log1p(tau2[:, None] / self.V))
        self._cache[slot] = (tau2 if slot == "zero" else tau2.copy(), have, st)
        return st

    def _weighted_io(self, tau2: FloatArray, need: int, shifted: bool) -> tuple[int, Stats]:
        # Needs up to MOMENTS take Q at weights fixed by the estimator, so it comes
        # from moments, Q = Σwy² - (Σwy)²/S1, checked for cancellation below; the
        # Q-root and likelihood needs take every quadratic form of explicit residuals.
        have, nsum, moments = _IO_PLAN[need]
        logdet = bool(have & _LOGDET) and shifted
        sums = self._io_sums(tau2, nsum, moments, shifted, logdet)
        st = self._io_stats(sums, tau2, have, moments)
        if have & _LOGDET:
            st.dL = self._log_products(sums[nsum], tau2) if logdet else np.zeros(self.m)
        return have, st

    def _log_products(self, prod: FloatArray, tau2: FloatArray) -> FloatArray:
        """``dL = Σ log(1 + τ²/v) = -log Π v/(v + τ²)`` from the row products.

        The product of a row's factors (each in (0, 1], absent studies 1) has a
        relative error of at most ``n`` ulps, so ``dL`` is exact to an absolute
        ``n`` ulps, as a sum of logs would be, at a fraction of the cost (one log
        per row instead of one per study).  Rows whose product would underflow are
        summed as logs.
        """
        with np.errstate(divide="ignore"):
            out: FloatArray = -np.log(prod)
        bad = (~(prod >= _TINY_PRODUCT)).nonzero()[0]  # 1-D: flatnonzero without its wrappers
        if bad.size:
            Vr = self._rows(bad)[1]
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.log1p(tau2[bad, None] / Vr)
            out[bad] = rowsum(np.where(np.isfinite(Vr), terms, 0.0))
        return out

    def _io_sums(
        self, tau2: FloatArray, nsum: int, moments: bool, shifted: bool, logdet: bool = False
    ) -> list[FloatArray]:
        """Per-analysis sums of the intercept-only kernel at weights ``1/(v + tau2)``.

        Moment sums (``moments``): ``Σw, Σwy, Σwy², Σw², Σw³`` (the first ``nsum``).
        Otherwise, with residuals ``e = y - Σwy/Σw``: ``Σw, Σwy, Σwe², Σw²e²``, for
        ``nsum = 5`` also ``Σw²`` and for ``nsum = 8`` also ``Σw², Σw³, Σw³e², Σw²e``.
        ``shifted=False`` means τ² = 0.  ``logdet`` appends the row products
        ``Π v/(v + tau2)`` (see :meth:`_log_products`).
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
        rows = max(1, min(m, BLOCK_CELLS // max(n, 1)))
        # Few analyses in one block (a single fit): the sums are rows of one small
        # array, and the sums of consecutive slots one BLAS call instead of one each
        # (each call costs about a microsecond whatever its size).
        stacked = np.empty((nsum + logdet, m)) if rows == m and m * (nsum + logdet) <= _STACKED \
            else None
        sums = list(stacked) if stacked is not None else [np.empty(m) for _ in range(nsum + logdet)]
        buf = self._scratch((slots + logdet) * rows * n)
        absent = self.kmin < n

        def rowsums(lo: int, hi: int, slot: int, first: int, count: int) -> None:
            # row sums of scratch slots slot.. into sums[first..] (rows lo:hi)
            if stacked is not None:  # one block: lo:hi is every row
                np.matmul(B[slot : slot + count].reshape(count * m, n), ones,
                          out=stacked[first : first + count].reshape(count * m))
                return
            for i in range(count):
                np.matmul(B[slot + i], ones, out=sums[first + i][lo:hi])

        for lo in range(0, m, rows):
            hi = min(m, lo + rows)
            b = hi - lo
            B = buf[: (slots + logdet) * b * n].reshape(slots + logdet, b, n)
            Yb = Y[lo:hi]
            w = B[0]
            if shifted:
                np.add(V[lo:hi], tau2[lo:hi, None], out=w)
                np.divide(1.0, w, out=w)
            else:
                np.divide(1.0, V[lo:hi], out=w)
            if logdet:
                # the factors v/(v + τ²) = v w (1 for an absent study, where v w is
                # inf * 0), multiplied column by column into the row products
                if absent:
                    with np.errstate(invalid="ignore"):
                        u = np.multiply(V[lo:hi], w, out=B[slots])
                    np.fmin(u, 1.0, out=u)
                else:
                    u = np.multiply(V[lo:hi], w, out=B[slots])
                pr = sums[nsum][lo:hi]
                if n == 1:
                    pr[:] = u[:, 0]
                elif stacked is not None:  # few rows: one call beats n column passes
                    np.multiply.reduce(u, axis=1, out=pr)
                else:
                    np.multiply(u[:, 0], u[:, 1], out=pr)
                    for j in range(2, n):
                        np.multiply(pr, u[:, j], out=pr)
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
        self, sums: list[FloatArray], tau2: FloatArray, have: int, moments: bool
    ) -> Stats:
        """The per-analysis algebra of the intercept-only kernel, from its sums."""
        m = self.m
        S1, Swy = sums[0], sums[1]
        mu = Swy / S1
        vb = None  # 1 / S1, formed by Stats.cov where it is needed
        if not have & _Q:
            return Stats(S1=S1, Q=np.full(m, np.nan), beta=mu[:, None], vb=vb)
        if moments:
            Q = sums[2] - Swy * mu
            # Relative rounding error of the moment form is about k eps Σwy²/Q; rows
            # where Σwy² exceeds _MOMENT_COND Q (a pooled z² above ~1000 (k-1)), or
            # Q <= 0, take Q from explicit residuals instead.  One study: Q = 0.
            if self.kmin <= 1:
                Q[self.k <= 1] = 0.0
                bad = ((Q * _MOMENT_COND <= sums[2]) & (self.k > 1)).nonzero()[0]
            else:
                bad = (Q * _MOMENT_COND <= sums[2]).nonzero()[0]
            if bad.size:
                Yr, Vr = self._rows(bad)
                wb = 1.0 / (Vr + tau2[bad, None])
                eb = Yr - mu[bad, None]
                Q[bad] = rowsum(wb * eb * eb)
            st = Stats(S1=S1, Q=Q, beta=mu[:, None], vb=vb)
            if not have & _TRP:
                return st
            S2 = sums[3]
            S3: FloatArray | None = sums[4] if have & _TRPP else None
        else:
            st = Stats(S1=S1, Q=sums[2], beta=mu[:, None], vb=vb, yPPy=sums[3])
            if not have & _TRP:
                return st
            S2, S3 = sums[4], None
            if have & _YPPPY:
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
        dom = (r > 0.98 * S1).nonzero()[0]
        if dom.size:
            wd = 1.0 / (self._rows(dom)[1] + tau2[dom, None])
            trP, trPP = _stable_traces(wd, S1[dom])
            st.trP[dom] = trP
            if st.trPP is not None:
                st.trPP[dom] = trPP
        if have & _VTRACES:
            V = self.V
            Vz = np.where(np.isfinite(V), V, 0.0)
            wf = 1.0 / (V + tau2[:, None])
            st.trPVPV, st.trPVP = _stable_v_traces(wf, Vz, S1)
        return st

    def _weighted_general(self, w: FloatArray, have: int) -> Stats:
        """Every quantity of ``P`` from the QR decomposition of ``W^½X``, in
        ``O(n p²)`` time and ``O(n p)`` memory per row: ``P`` is never formed.

        With ``W^½X = QR``, ``H = QQᵀ``, leverages ``h_i = ||Q_i||²``, the weighted
        residual ``r = (I - H)W^½y`` and ``M = QᵀWQ``:
        ``Py = W^½r``, ``y'PPy = Σ w r²``, ``y'PPPy = ||(I - H)(w ⊙ r)||²``,
        ``tr(P) = Σ w (1 - h)``, ``tr(PP) = Σ w² - 2 Σ w² h + ||M||²_F`` and, with
        ``d = w v`` and ``D = QᵀdiagQ(d)``, ``tr(PVPV) = Σ d² - 2 Σ d² h + ||D||²_F``,
        ``tr(PVP) = Σ v w (w (1 - 2h) + Q_iᵀMQ_i)``.
        """
        qr = _wls(self._Xfull(), w, self.Y)
        st = Stats(S1=w.sum(axis=1), Q=qr.rss, beta=qr.beta, vb=qr.vb)
        if have & _YPPY:
            Qf, h, r = qr.Q, qr.h, qr.resid
            st.S2 = rowdot(w, w)
            u = w * r * r
            st.yPPy = rowsum(u)
            a = w * r
            a = a - _project(Qf, a)
            st.yPPPy = rowdot(a, a)
            st.trP = rowdot(w, 1.0 - h)
            M = np.swapaxes(Qf, 1, 2) @ (w[:, :, None] * Qf)
            w2 = w * w
            st.trPP = rowsum(w2) - 2.0 * rowdot(w2, h) + np.einsum("mij,mij->m", M, M)
            if have & _VTRACES:
                Vz = np.where(np.isfinite(self.V), self.V, 0.0)
                d = w * Vz
                D = np.swapaxes(Qf, 1, 2) @ (d[:, :, None] * Qf)
                d2 = d * d
                st.trPVPV = rowsum(d2) - 2.0 * rowdot(d2, h) + np.einsum("mij,mij->m", D, D)
                QM = np.einsum("mij,mjk,mik->mi", Qf, M, Qf)  # Q_iᵀ M Q_i
                st.trPVP = rowdot(Vz * w, w * (1.0 - 2.0 * h) + QM)
        return st

    # -- unweighted quantities (HE estimator, SJ start) ----------------------
    @lazy
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
        # the ordinary least-squares projection I - H (weights 1 where present):
        # tr(PV) = Σ v (1 - h) and tr(PVPV) = Σ v² - 2 Σ v² h + ||QᵀVQ||²_F
        mask = self.mask
        Vz = np.where(mask, self.V, 0.0)
        qr = _wls(self._Xfull(), mask.astype(np.float64), self.Y)
        Qf, h = qr.Q, qr.h
        C = np.swapaxes(Qf, 1, 2) @ (Vz[:, :, None] * Qf)
        v2 = Vz * Vz
        trPV = rowdot(Vz, 1.0 - h)
        trPVPV = rowsum(v2) - 2.0 * rowdot(v2, h) + np.einsum("mij,mij->m", C, C)
        return qr.rss, trPV, trPVPV


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


@dataclass
class _QR:
    """Weighted least squares of every row through the QR of ``W^½X`` (see
    :func:`_wls`)."""

    vb: FloatArray  # (X'WX)⁻¹, (m, p, p)
    beta: FloatArray  # (m, p)
    Q: FloatArray  # (m, n, p), orthonormal columns spanning W^½X
    h: FloatArray  # (m, n), leverages ||Q_i||²
    resid: FloatArray  # (m, n), r = (I - QQᵀ) W^½ y
    rss: FloatArray  # (m,), y'Py = ||r||²


def _wls(X: FloatArray, w: FloatArray, Y: FloatArray) -> _QR:
    """Weighted least squares of every row, without the ``n x n`` projection.

    Through :func:`wls_qr`: ``b = R⁻¹QᵀW^½y``, the residual ``r = (I - QQᵀ)W^½y``
    and ``y'Py = ||r||²`` with ``P = W - WX(X'WX)⁻¹X'W = W^½(I - QQᵀ)W^½``; memory is
    ``O(n p)`` per row.
    """
    Qf, Rinv = wls_qr(X, w)
    vb: FloatArray = Rinv @ np.swapaxes(Rinv, 1, 2)
    sw = np.sqrt(w)
    z = sw * Y
    qz = np.swapaxes(Qf, 1, 2) @ z[:, :, None]  # (m, p, 1)
    beta = (Rinv @ qz)[:, :, 0]
    resid = z - (Qf @ qz)[:, :, 0]
    h = np.einsum("mij,mij->mi", Qf, Qf)
    return _QR(vb, beta, Qf, h, resid, rowdot(resid, resid))


def _project(Qf: FloatArray, a: FloatArray) -> FloatArray:
    """``QQᵀa`` for every row (``Qf`` is ``(m, n, p)``, ``a`` is ``(m, n)``)."""
    out: FloatArray = (Qf @ (np.swapaxes(Qf, 1, 2) @ a[:, :, None]))[:, :, 0]
    return out


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

    The per-analysis sums of the moment needs (everything the closed-form EE, DL,
    HS and HSk estimators, their standard errors and the fit need) are scatter-adds
    (``np.bincount`` with weights) over large blocks of studies, which costs less
    than the sort that grouping the studies would take.  The few analyses whose moment form needs an
    exact fallback are gathered into padded rows (:meth:`_rows`).  Levels that need
    explicit residuals (likelihood, Q-root searches) need the padded layout of
    :func:`kernel_from_padded`.
    """

    codes: IntArray = field(kw_only=True)

    def _io_sums(
        self, tau2: FloatArray, nsum: int, moments: bool, shifted: bool, logdet: bool = False
    ) -> list[FloatArray]:
        if not moments or logdet:
            raise NotImplementedError("these quantities need the padded layout")
        y, v, codes = self.Y, self.V, self.codes
        m, N = self.m, y.size
        # Each sum is one np.bincount with weights (a tight C loop, about three times
        # as fast per sum as np.add.at, real or complex), over large blocks of
        # studies: bincount returns a fresh m-vector per call, whose zero-filling and
        # adding must stay small beside the scatter itself.  The terms are made one
        # at a time in one buffer beside the weights (w, wy, wy² and w, w², w³ are
        # chains of products), so the scratch is two blocks: SCATTER_SPLIT blocks
        # make it 16/SCATTER_SPLIT bytes per study, against the input's 24.
        block = min(N, max(BLOCK_CELLS, -(-N // SCATTER_SPLIT)))
        buf = np.empty(2 * block)  # fresh: the per-thread scratch would keep its size
        sums: list[FloatArray | None] = [None] * nsum

        def add(j: int, term: FloatArray, cb: IntArray) -> None:
            part: FloatArray = np.bincount(cb, weights=term, minlength=m).astype(
                np.float64, copy=False
            )  # float64 with weights; the stubs say int
            acc = sums[j]
            if acc is None:
                sums[j] = part
            else:
                np.add(acc, part, out=acc)

        for lo in range(0, N, block):
            hi = min(N, lo + block)
            b = hi - lo
            cb = codes[lo:hi]
            w, t = buf[:b], buf[block : block + b]
            if shifted:
                np.take(tau2, cb, out=w, mode="clip")  # codes are valid: skip the check
                np.add(w, v[lo:hi], out=w)
                np.divide(1.0, w, out=w)
            else:
                np.divide(1.0, v[lo:hi], out=w)
            add(0, w, cb)
            yb = y[lo:hi]
            if nsum >= 2:  # Σwy, Σwy²
                np.multiply(w, yb, out=t)
                add(1, t, cb)
                if nsum >= 3:
                    np.multiply(t, yb, out=t)
                    add(2, t, cb)
            if nsum >= 4:  # Σw², Σw³
                np.multiply(w, w, out=t)
                add(3, t, cb)
                if nsum >= 5:
                    np.multiply(t, w, out=t)
                    add(4, t, cb)
        out: list[FloatArray] = [s_ for s_ in sums if s_ is not None]
        return out

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

    @lazy
    def unweighted(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        raise NotImplementedError("ScatterKernel has no padded layout")


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
    trPP = (rowdot(u, u) + rowdot(w2, _rest_sums(w2))) / S1**2
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
    trPVPV = (rowdot(uv, uv) + rowdot(a, _rest_sums(a))) / S1**2
    trPVP = rowdot(v, u * u + w2 * _rest_sums(w2)) / S1**2
    return trPVPV, trPVP


# ---------------------------------------------------------------------------
# Building kernels from user-shaped data
# ---------------------------------------------------------------------------


#: Data whose variances lie in [2^-UNIT, 2^UNIT] and effects in [-2^UNIT, 2^UNIT]
#: are used as they are: no intermediate quantity of the core (up to ``w⁴`` and
#: ``w³e²``) can then overflow or underflow.  Others are rescaled per analysis.
UNIT_EXP = 64
#: After rescaling, the variances of one analysis may span at most 2^SPREAD_EXP
#: (1.2e77), and the effects (centred) may lie at most 2^EFFECT_EXP (6e57) scaled
#: standard errors apart: beyond that Q, τ² or their derivatives leave double
#: precision, and the input is refused.
SPREAD_EXP = 256
EFFECT_EXP = 192


def in_unit_range(vmin: float, vmax: float, ymax: float) -> bool:
    """Whether data with these extremes need no rescaling (see :data:`UNIT_EXP`)."""
    lim = 2.0**UNIT_EXP
    return 1.0 / lim <= vmin and vmax <= lim and ymax <= lim


#: ``name(row, column) -> str``: how an error names a study of a padded array.
StudyNamer = Callable[[int, int], str]


def unit_scale(
    Y: FloatArray,
    V: FloatArray,
    present: BoolArray | None,
    name: StudyNamer | None = None,
    unit: bool = False,
) -> tuple[FloatArray | None, FloatArray, FloatArray, FloatArray | None]:
    """Rescale analyses whose data leave the unit range, by powers of two (exactly).

    Returns ``(scale, Y, V, shift)``: ``scale`` is None when the data lie in the
    unit range (:data:`UNIT_EXP`) and are returned as they are.  Otherwise each row
    is divided by ``s = 2^e`` (``Y/s``, ``V/s²``), with ``e`` centring the binary
    exponents of the row's variances on 0; rows whose scaled effects still lie
    beyond the unit range are shifted by their mid-range (``shift``, in scaled
    units, None if no row is).  The model is equivariant under both, so every
    estimate is the same number in rescaled units.  ``present`` marks the present
    studies (None: all); ``name`` names a study in errors (default: ``#j`` for one
    row, else ``analysis i, study j``); ``unit=True`` asserts that the caller has
    checked the unit range already.

    Raises
    ------
    InvalidStudyError
        Where a row's variances span more than 2^SPREAD_EXP, or its effects more
        than 2^EFFECT_EXP scaled standard errors: such input cannot be computed in
        double precision.
    """
    if unit:
        return None, Y, V, None
    if present is None:
        vmin, vmax = float(V.min()), float(V.max())
        ymax = max(float(Y.max()), -float(Y.min()))
        if vmin == 0.0:  # vi = 0 (allowed where tau^2 > 0): the range of the others
            vmin = float(np.min(np.where(V > 0, V, np.inf)))
    else:
        vmin = float(np.min(np.where(present & (V > 0), V, np.inf)))
        vmax = float(np.max(np.where(present, V, 0.0)))
        ymax = float(np.max(np.where(present, np.abs(Y), 0.0)))
    if in_unit_range(vmin, vmax, ymax):
        return None, Y, V, None
    m = V.shape[0]
    where = name if name is not None else (lambda i, j: _where(i, j, m))
    pres = np.ones(V.shape, dtype=bool) if present is None else present
    # exponents of the positive variances (a zero variance scales to zero)
    _, ev = np.frexp(np.where(pres & (V > 0), V, 1.0))
    big = np.iinfo(ev.dtype).max
    emin = np.min(np.where(pres, ev, big), axis=1).astype(np.int64)
    emax = np.max(np.where(pres, ev, -big), axis=1).astype(np.int64)
    emin = np.where(emin == big, 0, emin)
    emax = np.where(emax == -big, 0, emax)
    wide = np.flatnonzero(emax - emin > SPREAD_EXP)
    if wide.size:
        i = int(wide[0])
        row = np.where(pres[i], V[i], np.inf)
        j = int(np.argmin(row))
        raise InvalidStudyError(
            f"the sampling variances of this analysis span more than 2^{SPREAD_EXP} "
            f"(from {V[i, j]!r} to {float(np.max(np.where(pres[i], V[i], 0.0)))!r}): "
            "beyond double precision; drop the study or rescale the data",
            study=where(i, j),
            field="vi",
        )
    e = np.floor_divide(emin + emax, 4)
    scale = np.ldexp(1.0, e)
    Vs = np.where(pres, np.ldexp(V, -2 * e[:, None]), V)
    Ys = np.ldexp(Y, -e[:, None])
    lim = 2.0**UNIT_EXP
    ys_abs = np.where(pres, np.abs(Ys), 0.0)
    far = np.max(ys_abs, axis=1) > lim
    shift = None
    if far.any():
        ylo = np.min(np.where(pres, Ys, np.inf), axis=1)
        yhi = np.max(np.where(pres, Ys, -np.inf), axis=1)
        shift = np.where(far, 0.5 * ylo + 0.5 * yhi, 0.0)
        Ys = np.where(pres, Ys - shift[:, None], 0.0)
        dev = np.where(pres, np.abs(Ys), 0.0)
        bad = np.flatnonzero(np.max(dev, axis=1) > 2.0**EFFECT_EXP)
        if bad.size:
            i = int(bad[0])
            j = int(np.argmax(dev[i]))
            raise InvalidStudyError(
                f"the effect {Y[i, j]!r} lies more than 2^{EFFECT_EXP} standard errors "
                "from the other effects of its analysis: Q and tau^2 are beyond double "
                "precision",
                study=where(i, j),
                field="yi",
            )
    return scale, Ys, Vs, shift


def _where(i: int, j: int, m: int) -> str:
    """How an error names study ``j`` of analysis ``i`` (``#j`` for one analysis)."""
    return f"#{j}" if m == 1 else f"analysis {i}, study {j}"


def kernel_from_padded(
    Y: FloatArray,
    V: FloatArray,
    X: FloatArray | None = None,
    *,
    complete: bool = False,
    name: StudyNamer | None = None,
    unit: bool = False,
    present: BoolArray | None = None,
) -> Kernel:
    """Kernel from padded arrays where NaN (in both Y and V) marks an absent study.

    The caller has validated that NaNs coincide and that present variances are
    >= 0; ``complete=True`` asserts that no study is absent (skips the check for
    NaN).  A design ``X`` may be any full-rank design, with or without an intercept;
    a single column of ones is the intercept-only model (the closed-form kernel).
    ``present`` (intercept-only) gives the present studies explicitly, for padded
    arrays whose padding is 0 in ``Y`` and ``+inf`` in ``V``: absence is then a
    property of the layout, never inferred from a NaN value.
    Data outside the unit range are rescaled per row (:func:`unit_scale`, whose
    errors name studies by ``name``; ``unit=True`` asserts the data inside it).
    """
    if X is not None and X.ndim == 2 and X.shape[1] == 1 and bool(np.all(X == 1.0)):
        X = None
    if X is None:
        # Intercept-only: row-major and uncentred (every quadratic form of this
        # kernel is taken of explicit residuals y - mu, so centring buys nothing).
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        V = np.ascontiguousarray(V, dtype=np.float64)
        m, n = Y.shape
        if present is not None:
            k = present.sum(axis=1).astype(np.int64)
            scale, Y, V, shift = unit_scale(Y, V, present, name, unit)
            return Kernel(Y, V, k, np.zeros(m) if shift is None else shift, None, scale=scale)
        if complete or (n > 0 and not np.isnan(Y @ np.ones(n)).any()):  # no study absent
            k = np.full(m, n, dtype=np.int64)
            present = None
        else:
            present = ~np.isnan(Y)
            k = present.sum(axis=1).astype(np.int64)
            Y = np.where(present, Y, 0.0)
            V = np.where(present, V, np.inf)
        scale, Y, V, shift = unit_scale(Y, V, present, name, unit)
        center = np.zeros(m) if shift is None else shift
        return Kernel(Y, V, k, center, None, scale=scale)
    mask = ~np.isnan(Y)
    # Y is centred as metafor centres it (Ymc), whatever the design: τ² and QE come
    # from the centred effects; center_shift restores the coefficients of Y
    x0 = X[..., 0]
    intercept = bool(np.all((x0 == 1.0) | ~mask if X.ndim == 3 else x0 == 1.0))
    k = mask.sum(axis=1).astype(np.int64)
    Yz = np.where(mask, Y, 0.0)
    center = Yz.sum(axis=1) / np.maximum(k, 1)
    Yc = np.where(mask, Yz - center[:, None], 0.0)
    Vi = np.where(mask, V, np.inf)
    scale, Yc, Vi, shift = unit_scale(Yc, Vi, mask, name, unit)
    if scale is not None:
        center = center / scale + (0.0 if shift is None else shift)
    Xz = np.where(mask[..., None], X, 0.0) if X.ndim == 3 else np.asarray(X, dtype=float)
    return Kernel(Yc, Vi, k, center, Xz, intercept, scale)
