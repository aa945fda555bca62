"""The τ² estimators, one registry entry each.

Every estimator of metafor's ``rma.uni`` is one :class:`Tau2Estimator` in
:data:`ESTIMATORS`: its name and aliases, the quantities it asks of a kernel, its
estimate, its standard error and whether it is a closed-form moment estimator (whose
fit long-format data can supply ungrouped).  The public ``Method`` literal, the
command line's choices and the tests' parametrisations are read from this table;
adding an estimator means adding its two functions and one entry here.

References
----------
Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators in
the random-effects model. *Journal of Educational and Behavioral Statistics*, 30(3),
261-293.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from alliance_meta.core.arrays import BoolArray, FloatArray, IntArray, rowdot, rowsum
from alliance_meta.core.inference import chi2_ppf
from alliance_meta.core.kernel import Kernel, Need, Stats, wls_qr
from alliance_meta.core.roots import (
    Profile,
    fisher_scoring,
    global_max,
    positive_root,
    q_root,
    zero_variance_rows,
)
from alliance_meta.core.stopping import RULE_METHODS, StopRule, estimate_with_rule
from alliance_meta.exceptions import InvalidStudyError

__all__ = [
    "ESTIMATORS",
    "METHOD_ALIASES",
    "MOMENT_METHODS",
    "CoreMethod",
    "Method",
    "Tau2Estimator",
    "Tau2Result",
    "estimate_tau2",
    "profile_loglik",
    "tau2_se",
]

#: Canonical estimator names (metafor's ``method``).
CoreMethod = Literal["EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM"]

#: τ² estimators as the public API accepts them: the canonical names and their
#: aliases (``FE`` and ``CE`` for ``EE``).
Method = Literal[
    "EE", "FE", "CE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM"
]


@dataclass(frozen=True)
class Tau2Result:
    """τ² of m analyses, with standard errors and the search's report."""

    tau2: FloatArray
    se: FloatArray
    iterations: IntArray
    converged: BoolArray
    #: rows whose ML/REML maximum is higher than the local maximum metafor's Fisher
    #: scoring (with its ll0check) stops at
    differs: BoolArray
    #: τ² in the kernel's own units (``tau2 / s²``, see ``Kernel.scale``)
    tau2_k: FloatArray


#: ``estimate(kern, extra) -> (tau2, iterations, converged, differs)`` (see
#: :class:`Tau2Result`); ``extra`` is what the caller will ask of the kernel at
#: τ² = 0 next (the SE's needs), so that one pass computes both.
Estimate = tuple[FloatArray, IntArray, BoolArray, BoolArray]
EstimateFn = Callable[[Kernel, Need], Estimate]
#: ``se(kern, tau2) -> standard errors``.
SeFn = Callable[[Kernel, FloatArray], FloatArray]


@dataclass(frozen=True)
class Tau2Estimator:
    """One τ² estimator.

    Attributes
    ----------
    name : str
        metafor's name.
    aliases : tuple of str
        Other names accepted for it.
    description : str
        The estimator and its source.
    needs : Need
        The quantities its estimate asks of a kernel (the deepest of them).
    se_needs : Need
        The quantities at τ² = 0 its standard error asks for (prefetched with the
        estimate when both are wanted).
    estimate, se : callables
        See :data:`EstimateFn` and :data:`SeFn`.
    moment : bool
        A closed form in weight moments: the fit and the SE need no explicit
        residuals, so long-format data can be read ungrouped (a scatter kernel).
    iterative : bool
        Solved by a root search (reports iterations and convergence).
    """

    name: CoreMethod
    aliases: tuple[str, ...]
    description: str
    needs: Need
    se_needs: Need
    estimate: EstimateFn
    se: SeFn
    moment: bool
    iterative: bool


def _closed(tau2: FloatArray) -> Estimate:
    m = tau2.shape[0]
    return (
        tau2,
        np.zeros(m, dtype=np.int64),
        np.ones(m, dtype=bool),
        np.zeros(m, dtype=bool),
    )


# -- EE ------------------------------------------------------------------------


def _ee(kern: Kernel, extra: Need) -> Estimate:
    return _closed(np.zeros(kern.m))


def _no_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    return np.full(kern.m, np.nan)


# -- DL, HS, HSk: weight moments at τ² = 0 -------------------------------------


def _dl(kern: Kernel, extra: Need) -> Estimate:
    """DerSimonian & Laird (1986): ``(Q - (k-p)) / tr(P)`` at weights ``1/v``."""
    st = kern.weighted(kern.zeros, Need.DL | extra)
    assert st.trP is not None
    return _closed(np.maximum((st.Q - kern.dfr) / st.trP, 0.0))


def _hs(kern: Kernel, extra: Need) -> Estimate:
    """Hunter & Schmidt (2004): ``(Q - k) / Σw``."""
    st = kern.weighted(kern.zeros, Need.DL | extra)
    return _closed(np.maximum((st.Q - kern.k) / st.S1, 0.0))


def _hsk(kern: Kernel, extra: Need) -> Estimate:
    """Hunter & Schmidt with the k-correction: ``(k/(k-p) Q - k) / Σw``."""
    st = kern.weighted(kern.zeros, Need.DL | extra)
    kf = kern.k.astype(np.float64)
    return _closed(np.maximum((kf / kern.dfr * st.Q - kf) / st.S1, 0.0))


def _moment_se(kern: Kernel, tau2: FloatArray, denom_is_trp: bool) -> FloatArray:
    st = kern.weighted(kern.zeros, Need.MOMENTS)
    assert st.trP is not None and st.trPP is not None
    denom = st.trP if denom_is_trp else st.S1
    out: FloatArray = (
        np.sqrt(2.0 * kern.dfr + tau2 * (4.0 * st.trP + 2.0 * tau2 * st.trPP)) / denom
    )
    return out


def _dl_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    """``sqrt(2(k-p) + 4τ² tr(P) + 2τ⁴ tr(PP)) / tr(P)`` at ``1/v``."""
    return _moment_se(kern, tau2, True)


def _hs_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    """DL's numerator over ``Σ 1/v``."""
    return _moment_se(kern, tau2, False)


def _hsk_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    """HS's standard error times ``k/(k-p)``."""
    out: FloatArray = kern.k / kern.dfr * _moment_se(kern, tau2, False)
    return out


# -- HE: ordinary least squares ------------------------------------------------


def _he_value(kern: Kernel) -> FloatArray:
    rss, trPV, _ = kern.unweighted
    out: FloatArray = np.maximum((rss - trPV) / kern.dfr, 0.0)
    return out


def _he(kern: Kernel, extra: Need) -> Estimate:
    """Hedges (1983): ``(RSS - tr(PV)) / (k-p)`` with the OLS projection."""
    return _closed(_he_value(kern))


def _he_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    """``sqrt(2 tr(PVPV) + 4τ² tr(PV) + 2τ⁴ (k-p)) / (k-p)`` with OLS ``P``."""
    _, trPV, trPVPV = kern.unweighted
    dfr = kern.dfr
    out: FloatArray = np.sqrt((2.0 * trPVPV + 4.0 * tau2 * trPV + 2.0 * tau2**2 * dfr) / dfr**2)
    return out


# -- SJ ------------------------------------------------------------------------


def _sj_start(kern: Kernel) -> FloatArray:
    """Sidik-Jonkman starting value ``var(y) (k-1)/k`` (metafor's default, any model)."""
    mask = kern.mask
    kf = kern.k.astype(np.float64)
    ybar = kern.Y.sum(axis=1) / kf
    e = np.where(mask, kern.Y - ybar[:, None], 0.0)
    out: FloatArray = rowdot(e, e) / kf
    return out


def _sj(kern: Kernel, extra: Need) -> Estimate:
    """Sidik & Jonkman (2005): ``τ₀ Q(τ₀) / (k-p)`` from the start ``τ₀``."""
    tau0 = _sj_start(kern)
    # every quantity at τ₀, so that the SE (at the same τ₀) is a cache hit
    st = kern.weighted(tau0, Need.ALL)
    return _closed(np.maximum(tau0 * st.Q / kern.dfr, 0.0))


def _sj_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    """``τ₀/(k-p) sqrt(2 tr(PVPV) + 4τ² tr(PVP) + 2τ⁴ tr(PP))`` at ``1/(v+τ₀)``."""
    tau0 = _sj_start(kern)
    st = kern.weighted(tau0, Need.ALL)
    assert st.trPVPV is not None and st.trPVP is not None and st.trPP is not None
    out: FloatArray = np.sqrt(
        tau0**2
        / kern.dfr**2
        * (2.0 * st.trPVPV + 4.0 * tau2 * st.trPVP + 2.0 * tau2**2 * st.trPP)
    )
    return out


# -- ML and REML ---------------------------------------------------------------


#: ``gain(kernel, t, rows) -> ℓ(t) - ℓ(0)`` of the rows ``rows`` of the kernel the
#: search started from (``kernel`` holds those rows, in that order).
GainFn = Callable[[Kernel, FloatArray, npt.NDArray[np.intp]], FloatArray]


def _log_det(st: Stats, intercept_only: bool) -> FloatArray:
    """``D = log|X'WX|`` of REML (``log Σw`` without a design)."""
    if intercept_only:
        return np.log(st.S1)
    out: FloatArray = -np.linalg.slogdet(st.cov())[1]
    return out


def _gain_fn(kern: Kernel, reml: bool) -> GainFn:
    """The (restricted) log-likelihood at ``t`` minus that at τ² = 0, profiled over
    the coefficients: ``-1/2 [Σ log(1 + t/v) + Q(t) - Q(0) + log|X'W(t)X| -
    log|X'W(0)X|]`` (the last two terms for REML only).

    The values at τ² = 0 are taken once from ``kern`` (its cached pass at 0), so
    the gain of rows gathered into smaller kernels needs no second pass at 0.
    ``Σ log(1 + t/v)`` comes from the same pass as ``Q(t)`` (``Need.LOGDET``, exact
    to a few ulps absolute); where the gain is so small that those ulps could
    decide its sign (metafor's ``ll0check``), it is recomputed with ``log1p``.
    """
    st0 = kern.weighted(kern.zeros, Need.FIT)
    io = kern.X is None
    Q0 = st0.Q
    D0 = _log_det(st0, io) if reml else None
    need = Need.FIT | Need.LOGDET

    def gain(K: Kernel, t: FloatArray, rows: npt.NDArray[np.intp]) -> FloatArray:
        st = K.weighted(t, need)
        assert st.dL is not None
        g = -0.5 * (st.dL + (st.Q - Q0[rows]))
        if D0 is not None:
            g -= 0.5 * (_log_det(st, io) - D0[rows])
        small = np.flatnonzero(np.abs(g) < 1e-12 * (1.0 + np.abs(st.Q)))
        if small.size:  # Σ log1p(t/v) exact for small t
            V = K.V[small]
            logs = np.log1p(t[small, None] / V, out=np.zeros_like(V), where=np.isfinite(V))
            g[small] += 0.5 * (st.dL[small] - rowsum(logs))
        out: FloatArray = g
        return out

    return gain


def _reml_fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Twice the REML score ``y'PPy - tr(P)``, its derivative and -2 x information."""
    st = K.weighted(t, Need.LIKELIHOOD)
    assert st.yPPy is not None and st.trP is not None
    assert st.trPP is not None and st.yPPPy is not None
    return st.yPPy - st.trP, st.trPP - 2.0 * st.yPPPy, -st.trPP


def _ml_fun(K: Kernel, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Twice the ML score ``y'PPy - Σw``, its derivative and -2 x information."""
    st = K.weighted(t, Need.LIKELIHOOD)
    assert st.yPPy is not None and st.S2 is not None and st.yPPPy is not None
    return st.yPPy - st.S1, st.S2 - 2.0 * st.yPPPy, -st.S2


def _profile(K: Kernel, t: FloatArray, reml: bool) -> Profile:
    """The parts of the (restricted) log-likelihood at ``t`` (see :class:`Profile`)."""
    # dL from the same pass (exact to a few ulps absolute, all the bounds need)
    st = K.weighted(t, Need.LIKELIHOOD | Need.LOGDET)
    assert st.yPPy is not None and st.trP is not None and st.S2 is not None
    assert st.dL is not None and st.yPPPy is not None and st.trPP is not None
    dL = st.dL
    Q2 = 2.0 * st.yPPPy
    if not reml:
        zero = np.zeros(K.m)
        return Profile(dL, st.S1, st.S2, st.Q, -st.yPPy, zero, zero, st.yPPy - st.S1, Q2)
    D = _log_det(st, K.X is None)
    # -d²(dL + D)/dτ⁴ = tr(PP); d/dτ² log|X'WX| = -tr((X'WX)⁻¹X'W²X) = tr(P) - Σw
    return Profile(dL, st.S1, st.trPP, st.Q, -st.yPPy, D, st.trP - st.S1,
                   st.yPPy - st.trP, Q2)


def _likelihood(kern: Kernel, reml: bool) -> Estimate:
    """The global maximum of the (restricted) likelihood on ``[0, ∞)``.

    First a local maximum (:func:`~alliance_meta.core.roots.positive_root`: the root
    reached from the HE start, where metafor's Fisher scoring stops on ordinary
    data).  Then
    :func:`~alliance_meta.core.roots.global_max` proves that no τ² has a higher
    likelihood, or finds the one that has.  Where it does, metafor's own iteration
    (:func:`~alliance_meta.core.roots.fisher_scoring` from the HE start, then its
    ``ll0check``) tells whether metafor stops at a lower local maximum: ``differs``.
    """
    fun = _reml_fun if reml else _ml_fun
    he = _he_value(kern)
    # the pass at τ² = 0 every later step reads (score, gain, profile at 0)
    fun(kern, kern.zeros)
    gain = _gain_fn(kern, reml)
    tau2, it, conv, g_start = positive_root(kern, fun, he, gain)
    differs = np.zeros(kern.m, dtype=bool)
    # rows with k <= p have no likelihood to search (τ² = 0, as metafor); rows with a
    # zero sampling variance have no finite likelihood at τ² = 0 to compare with, and
    # keep the root of positive_root
    idx = np.flatnonzero((kern.k > max(kern.p, 1)) & ~zero_variance_rows(kern))
    if idx.size == 0:
        return tau2, it, conv, differs
    whole = idx.size == kern.m
    K = kern if whole else kern.take(idx)
    p0 = _profile(kern, kern.zeros, reml)
    if not whole:
        p0 = Profile(*(getattr(p0, f)[idx] for f in Profile.__dataclass_fields__))
    tau2_start = tau2
    tg, moved, cert, _ = global_max(
        K, tau2[idx], fun, lambda Kt, t: _profile(Kt, t, reml), g_start[idx], p0
    )
    # metafor's answer where the maximum moved: its own Fisher scoring from the HE
    # start and its ll0check (the local search above stops where metafor does on
    # every reference set, but not necessarily on paths that jump over a peak)
    dj = np.flatnonzero(moved)
    if dj.size:
        Kd = K.take(dj)
        rows = idx[dj]
        tm, _ = fisher_scoring(Kd, fun, he[rows])
        gm = gain(Kd, tm, rows)
        tm = np.where(gm < 0.0, 0.0, tm)
        gm = np.maximum(gm, 0.0)
        gg = gain(Kd, tg[dj], rows)
        # the same peak (metafor stops within its threshold of it), or as high
        same = (np.abs(tm - tg[dj]) <= 1e-3 * tg[dj]) | (gg <= gm + 1e-9 * (1.0 + np.abs(gg)))
        moved[dj[same]] = False
    tau2 = tau2.copy()
    tau2[idx] = tg
    differs[idx] = moved
    conv = conv.copy()
    conv[idx] = (conv[idx] | (tg != tau2_start[idx])) & cert
    return tau2, it, conv, differs


def _ml(kern: Kernel, extra: Need) -> Estimate:
    """Maximum likelihood: the global maximum of the likelihood (:func:`_likelihood`)."""
    return _likelihood(kern, reml=False)


def _reml(kern: Kernel, extra: Need) -> Estimate:
    """Restricted maximum likelihood: the global maximum of the restricted likelihood."""
    return _likelihood(kern, reml=True)


def _ml_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    """``sqrt(2 / Σw²)`` at ``1/(v+τ²)``."""
    st = kern.weighted(tau2, Need.LIKELIHOOD)
    assert st.S2 is not None
    out: FloatArray = np.sqrt(2.0 / st.S2)
    return out


def _reml_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    """``sqrt(2 / tr(PP))`` at ``1/(v+τ²)``."""
    st = kern.weighted(tau2, Need.LIKELIHOOD)
    assert st.trPP is not None
    out: FloatArray = np.sqrt(2.0 / st.trPP)
    return out


# -- PM, EB, PMM: roots of the generalised Q -----------------------------------


def _dl_start(kern: Kernel) -> FloatArray:
    st0 = kern.weighted(kern.zeros, Need.DL)
    assert st0.trP is not None
    out: FloatArray = np.maximum((st0.Q - kern.dfr) / st0.trP, 0.0)
    return out


def _q_equation(
    kern: Kernel, target: Callable[[Kernel], FloatArray]
) -> Estimate:
    t0 = _dl_start(kern)
    # DL needs the weights 1/v: rows with a zero variance (EB only) start at HE
    t0 = np.where(np.isfinite(t0), t0, _he_value(kern))
    tau2, it, conv = q_root(kern, target, t0)
    return tau2, it, conv, np.zeros(kern.m, dtype=bool)


def _pm(kern: Kernel, extra: Need) -> Estimate:
    """Paule & Mandel (1982): ``Q(τ²) = k - p``.  EB's (Morris, 1983) estimating
    equation ``Q(τ²) k/(k-p) = k`` has the same root."""
    return _q_equation(kern, lambda K: K.dfr)


def _pmm(kern: Kernel, extra: Need) -> Estimate:
    """The median-unbiased Paule-Mandel estimator: ``Q(τ²) = χ²_{k-p; 0.5}``."""
    return _q_equation(kern, lambda K: chi2_ppf(0.5, K.dfr))


def _pm_se(kern: Kernel, tau2: FloatArray) -> FloatArray:
    """``sqrt(2k² / ((k-p) (Σw)²))`` at ``1/(v+τ²)``."""
    st = kern.weighted(tau2, Need.FIT)
    out: FloatArray = np.sqrt(2.0 * kern.k**2 / kern.dfr / st.S1**2)
    return out


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

_NONE = Need(0)

ESTIMATORS: dict[CoreMethod, Tau2Estimator] = {
    e.name: e
    for e in (
        Tau2Estimator("EE", ("FE", "CE"), "equal effects (τ² = 0)",
                      Need(0), _NONE, _ee, _no_se, moment=True, iterative=False),
        Tau2Estimator("DL", (), "DerSimonian & Laird (1986)",
                      Need.DL, Need.MOMENTS, _dl, _dl_se, moment=True, iterative=False),
        Tau2Estimator("HE", (), "Hedges (1983), ordinary least squares",
                      Need(0), _NONE, _he, _he_se, moment=False, iterative=False),
        Tau2Estimator("HS", (), "Hunter & Schmidt (2004)",
                      Need.DL, Need.MOMENTS, _hs, _hs_se, moment=True, iterative=False),
        Tau2Estimator("HSk", (), "Hunter & Schmidt with the k/(k-p) correction",
                      Need.DL, Need.MOMENTS, _hsk, _hsk_se, moment=True, iterative=False),
        Tau2Estimator("SJ", (), "Sidik & Jonkman (2005)",
                      Need.ALL, _NONE, _sj, _sj_se, moment=False, iterative=False),
        Tau2Estimator("ML", (), "maximum likelihood (Viechtbauer, 2005)",
                      Need.LIKELIHOOD, _NONE, _ml, _ml_se, moment=False, iterative=True),
        Tau2Estimator("REML", (), "restricted maximum likelihood (Viechtbauer, 2005)",
                      Need.LIKELIHOOD, _NONE, _reml, _reml_se, moment=False, iterative=True),
        Tau2Estimator("EB", (), "empirical Bayes (Morris, 1983)",
                      Need.QROOT, _NONE, _pm, _pm_se, moment=False, iterative=True),
        Tau2Estimator("PM", (), "Paule & Mandel (1982)",
                      Need.QROOT, _NONE, _pm, _pm_se, moment=False, iterative=True),
        Tau2Estimator("PMM", (), "median-unbiased Paule & Mandel (Viechtbauer, 2021)",
                      Need.QROOT, _NONE, _pmm, _pm_se, moment=False, iterative=True),
    )
}

#: Every accepted name (canonical names and aliases) to its canonical name.
METHOD_ALIASES: dict[str, CoreMethod] = {
    alias: e.name for e in ESTIMATORS.values() for alias in (e.name, *e.aliases)
}

#: Estimators whose fit and τ² standard error need only weight moments, which a
#: scatter kernel of ungrouped long-format data provides.
MOMENT_METHODS: frozenset[CoreMethod] = frozenset(n for n, e in ESTIMATORS.items() if e.moment)

# The literals must list exactly the registry's names (a new estimator is added to
# both, in this file).
assert set(get_args(CoreMethod)) == set(ESTIMATORS)
assert set(get_args(Method)) == set(METHOD_ALIASES)


def estimate_tau2(
    kern: Kernel, method: CoreMethod, with_se: bool = True, rule: StopRule | None = None
) -> Tau2Result:
    """τ² and its standard error for every row, as metafor's ``rma.uni`` defines them.

    Rows with ``k == 1`` get τ² = 0 (the caller warns).  The standard errors are
    those of :func:`tau2_se`; with ``with_se=False`` they are left out (``se`` is
    NaN) and the closed-form estimators skip the weight moments only they need.
    With a ``rule``, the iterative estimators stop where metafor's ``control``
    stops them (:mod:`alliance_meta.core.stopping`) instead of at the root.
    """
    est = ESTIMATORS[method]
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule is not None and method in RULE_METHODS:
            # metafor's own iteration and stopping rule (control=): ``differs`` marks
            # its ll0check resets, which it warns about
            tau2, it, conv, differs = estimate_with_rule(kern, method, rule)
        else:
            tau2, it, conv, differs = est.estimate(kern, est.se_needs if with_se else _NONE)
    if kern.kmin <= 1:
        tau2 = np.where(kern.k <= 1, 0.0, tau2)
    se = _scaled_se(kern, method, tau2) if with_se else np.full(kern.m, np.nan)
    tau2_k = tau2
    s2 = kern.s2
    if s2 is not None:  # back from the kernel's units (an exact power of two)
        with np.errstate(over="ignore"):
            tau2, se = tau2 * s2, se * s2
        over = np.flatnonzero(np.isinf(tau2) & np.isfinite(tau2_k))
        if over.size:
            raise InvalidStudyError(
                f"tau^2 of this analysis exceeds the double-precision range "
                f"({float(tau2_k[over[0]])!r} x {float(s2[over[0]])!r}): the effects "
                "lie too far apart for their sampling variances",
                study=f"analysis {int(over[0])}" if kern.m > 1 else None,
                field="yi",
            )
    return Tau2Result(tau2, se, it, conv, differs, tau2_k)


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
    s2 = kern.s2
    if s2 is None:
        return _scaled_se(kern, method, tau2)
    out: FloatArray = _scaled_se(kern, method, tau2 / s2) * s2
    return out


def _scaled_se(kern: Kernel, method: CoreMethod, tau2: FloatArray) -> FloatArray:
    """:func:`tau2_se` in the kernel's own units."""
    with np.errstate(divide="ignore", invalid="ignore"):
        se = ESTIMATORS[method].se(kern, tau2)
    if kern.kmin <= 1:
        se = np.where(kern.k <= 1, np.nan, se)
    out: FloatArray = se
    return out


def profile_loglik(
    yi: FloatArray, vi: FloatArray, X: FloatArray | None, tau2: FloatArray, reml: bool
) -> tuple[FloatArray, FloatArray]:
    """The (restricted) log-likelihood of one model at each τ² of a grid.

    Parameters
    ----------
    yi, vi : ndarray, shape (k,)
        Effects and sampling variances of one analysis.
    X : ndarray, shape (k, p), or None
        The design (None: intercept only).
    tau2 : ndarray, shape (G,)
        The τ² values, all at once (one batched QR of ``W^½X`` per value).
    reml : bool
        The restricted likelihood (REML) or the full one (ML).

    Returns
    -------
    loglik : ndarray, shape (G,)
        The log-likelihood at each τ², profiled over the coefficients; NaN where
        ``v_i + τ² = 0`` for some study.
    coef : ndarray, shape (G, p)
        ``β̂(τ²) = (X'WX)⁻¹X'Wy``, the coefficients at each τ².

    Notes
    -----
    With ``W = diag(1/(v_i + τ²))`` and ``RSS = (y - Xβ̂)'W(y - Xβ̂)``, as
    metafor's ``rma.uni`` (``fit.stats``, which ``logLik`` and ``profile`` report):

    * ML: ``-k/2 log 2π - 1/2 Σ log(v_i + τ²) - RSS/2``;
    * REML: ``-(k-p)/2 log 2π + 1/2 log|X'X| - 1/2 Σ log(v_i + τ²)
      - 1/2 log|X'WX| - RSS/2``

    (Viechtbauer, 2005).  The least squares go through :func:`wls_qr`, so
    ``log|X'WX| = 2 Σ log|R_jj|`` comes from the same factorisation.
    """
    y = np.asarray(yi, dtype=np.float64)
    v = np.asarray(vi, dtype=np.float64)
    t = np.asarray(tau2, dtype=np.float64).reshape(-1)
    k = y.size
    Xd = np.ones((k, 1)) if X is None else np.asarray(X, dtype=np.float64)
    p = Xd.shape[1]
    tot = v[None, :] + t[:, None]  # (G, k)
    ok = np.all(tot > 0.0, axis=1)
    w = 1.0 / np.where(tot > 0.0, tot, 1.0)
    Qf, Rinv = wls_qr(np.broadcast_to(Xd, (t.size, k, p)), w)
    z = np.sqrt(w) * y[None, :]
    qz = np.einsum("gkp,gk->gp", Qf, z)
    coef: FloatArray = np.einsum("gpq,gq->gp", Rinv, qz)
    resid = z - np.einsum("gkp,gp->gk", Qf, qz)
    rss = rowdot(resid, resid)
    sum_log = rowsum(np.log(np.where(tot > 0.0, tot, 1.0)))
    log2pi = math.log(2.0 * math.pi)
    if reml:
        # log|X'WX| = -2 Σ log|diag R⁻¹|; log|X'X| from the unweighted factorisation
        logdet_xwx = -2.0 * np.sum(np.log(np.abs(np.diagonal(Rinv, axis1=1, axis2=2))), axis=1)
        r0 = np.linalg.qr(Xd, mode="r")
        logdet_xx = 2.0 * float(np.sum(np.log(np.abs(np.diagonal(r0)))))
        ll = -0.5 * (k - p) * log2pi + 0.5 * logdet_xx - 0.5 * sum_log - 0.5 * logdet_xwx
    else:
        ll = -0.5 * k * log2pi - 0.5 * sum_log
    ll = ll - 0.5 * rss
    out: FloatArray = np.where(ok, ll, np.nan)
    coef[~ok] = np.nan
    return out, coef
