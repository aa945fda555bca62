"""Selection models for publication bias (metafor's ``selmodel``): likelihood and fit.

The model (Hedges, 1992; Vevea & Hedges, 1995; Citkowicz & Vevea, 2017) is the
random- or equal-effects meta-regression ``y_i ~ N(x_i'β, v_i + τ²)`` in which a
study with one-sided or two-sided p-value ``p_i`` is observed with relative
probability ``w(p_i; δ)``.  The density of an observed study is

    f(y_i) = w(p_i) φ(y_i; μ_i, V_i) / A_i,    A_i = ∫ w(p(y)) φ(y; μ_i, V_i) dy,

with ``μ_i = x_i'β``, ``V_i = v_i + τ²`` and ``p(y)`` the p-value of ``y / √v_i``
(``1 - Φ(z)`` for ``"greater"``, ``Φ(z)`` for ``"less"``, ``2(1 - Φ(|z|))`` for
``"two.sided"``).  Every weight function of metafor 3.8.1's ``selmodel`` is here:
``stepfun`` (``w = δ_j`` on the j-th p-value interval, ``δ_1 = 1``), ``beta``
(``p^{δ1-1} (1-p)^{δ2-1}``), ``halfnorm`` (``exp(-δ p²)``), ``negexp``
(``exp(-δ p)``), ``logistic`` (``2 exp(-δ p)/(1 + exp(-δ p))``) and ``power``
(``(1-p)^δ``); the last four take an optional threshold ``α`` (``steps``) below
which ``w = 1`` and are divided by their value at ``α`` above it.  p-values are
clamped to ``[pval_min, 1 - pval_min]`` as metafor does (``1e-5`` for ``beta`` and
``power``, else 0), in the data and in the integral.

``A_i`` is closed-form for step functions (normal probabilities of the p-value
intervals).  For the continuous weight functions it is computed on the standard
scale ``z = y/√v_i``, where the weight ``w(p(z))`` is the same function for every
study: constant outside ``|z| ≤ 9`` (there ``p < 2·10⁻¹⁹``, so ``w`` is constant to
``δ·10⁻¹⁹``) and integrated there exactly as a normal probability; inside, by
composite 10-point Gauss–Legendre quadrature on panels of width 0.25 whose edges
include every kink of ``w(p(z))`` (``z = 0`` for two-sided p-values, the threshold,
the clamping points), graded geometrically towards ``z = 0`` where a two-sided
beta or power weight behaves like ``|z|^γ``.  The weights and their δ-derivatives
are computed once per evaluation for all studies; each ``A_i`` is scaled by its own
largest term so that nothing underflows.  ``log A_i`` is accurate to ~1e-13 over
metafor's whole range of δ (``[0, 100]``), threshold and study position (checked
against adaptive and dense quadrature in the tests).
metafor integrates each ``A_i`` with ``integrate`` at ``rel.tol = 1.2e-4``.

Gradient and Hessian are analytic (the integrals of ``w φ`` times the derivatives
of the normal density, and of ``∂w/∂δ φ``).  The maximisation (:func:`selection_fit`)
first profiles the likelihood over a grid of δ (maximising over ``β, τ²`` at each
δ), because selection-model likelihoods can have several maxima, some far from
the fit without selection; it then runs damped, projected Newton steps with the
exact Hessian from the best profile points and metafor's start, to a Newton
decrement at rounding level.  Standard errors come from the same exact observed
information in the natural parametrisation ``(β, τ², δ)``, where metafor inverts
``numDeriv::hessian``.

References
----------
Citkowicz, M., & Vevea, J. L. (2017). A parsimonious weight function for modeling
publication bias. *Psychological Methods*, 22(1), 28-41.

Hedges, L. V. (1992). Modeling publication selection effects in meta-analysis.
*Statistical Science*, 7(2), 246-255.

Preston, C., Ashby, D., & Smyth, R. (2004). Adjusting for publication bias:
Modelling the selection process. *Journal of Evaluation in Clinical Practice*,
10(2), 313-322.

Vevea, J. L., & Hedges, L. V. (1995). A general linear model for estimating effect
size in the presence of publication bias. *Psychometrika*, 60(3), 419-435.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy import special as spc

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "ALTERNATIVES",
    "SELECTION_TYPES",
    "MLFit",
    "SelectionFit",
    "SelectionSpec",
    "interval_groups",
    "make_spec",
    "ml_fit",
    "selection_fit",
    "selection_loglik",
    "selection_pvalues",
    "study_pvalues",
    "weight_function",
]

SELECTION_TYPES = ("stepfun", "beta", "halfnorm", "negexp", "logistic", "power")
ALTERNATIVES = ("two.sided", "greater", "less")

_LOG2PI = math.log(2.0 * math.pi)
#: half-width of the standardised window integrated numerically
_ZWIN = 9.0
#: panel width and Gauss–Legendre order of the window quadrature
_PANEL = 0.25
_GL_ORDER = 10


# ---------------------------------------------------------------------------
# Specification
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectionSpec:
    """A selection model's weight function, as metafor's ``selmodel`` sets it up.

    ``steps`` are the right ends of the p-value intervals of a step function
    (ending with 1), or ``[α]`` (the threshold, 0 when none) of a continuous weight
    function.  ``delta_fixed`` holds the fixed δ values, NaN where δ is estimated.
    ``delta_min``/``delta_max`` bound the estimated δ (metafor's ``delta.min``,
    ``delta.max``), ``delta_h0`` is the value of no selection, ``delta_lb`` the
    lower end of the parameter space (CIs are truncated there).
    """

    type: str
    alternative: str
    steps: FloatArray
    delta_fixed: FloatArray
    delta_min: FloatArray
    delta_max: FloatArray
    delta_h0: FloatArray
    delta_lb: FloatArray
    delta_init: FloatArray
    pval_min: float

    @property
    def n_delta(self) -> int:
        """Number of selection parameters (fixed ones included)."""
        return int(self.delta_fixed.size)

    @property
    def delta_free(self) -> BoolArray:
        """Which δ are estimated."""
        out: BoolArray = np.isnan(self.delta_fixed)
        return out


def make_spec(
    type: str,
    alternative: str,
    steps: FloatArray | None,
    delta: FloatArray | None,
) -> SelectionSpec:
    """The specification of a selection model (no input checking: see the public shell).

    Parameters
    ----------
    type : {"stepfun", "beta", "halfnorm", "negexp", "logistic", "power"}
    alternative : {"two.sided", "greater", "less"}
    steps : array or None
        Strictly increasing values in (0, 1]; a 1 is appended when the last value
        is below 1.  Required for ``stepfun``; at most one value below 1 otherwise.
    delta : array or None
        Fixed δ (NaN = estimated), of length ``n_delta`` (or 1, then repeated).
    """
    if type == "stepfun":
        assert steps is not None
        st = np.asarray(steps, dtype=np.float64)
        if st[-1] != 1.0:
            st = np.append(st, 1.0)
        nd = st.size
        dmin, dmax, h0, lb, init = 0.0, 100.0, 1.0, 0.0, 1.0
        pmin = 0.0
    else:
        thr = 0.0 if steps is None or np.asarray(steps).size == 0 else float(np.asarray(steps)[0])
        st = np.array([thr])
        if type == "beta":
            nd, dmin, dmax, h0, lb, init, pmin = 2, 1e-5, 100.0, 1.0, 0.0, 1.0, 1e-5
        else:
            nd, dmin, dmax, h0, lb, init = 1, 0.0, 100.0, 0.0, 0.0, 1.0
            pmin = 1e-5 if type == "power" else 0.0
    if delta is None:
        fixed = np.full(nd, np.nan)
    else:
        d = np.asarray(delta, dtype=np.float64).ravel()
        fixed = np.full(nd, d[0]) if d.size == 1 else d.copy()
    if type == "stepfun" and np.isnan(fixed[0]):
        fixed[0] = 1.0  # the reference interval (metafor: delta[1] <- 1)
    delta_min = np.full(nd, dmin)
    delta_max = np.full(nd, dmax)
    return SelectionSpec(
        type=type,
        alternative=alternative,
        steps=st,
        delta_fixed=fixed,
        delta_min=delta_min,
        delta_max=delta_max,
        delta_h0=np.full(nd, h0),
        delta_lb=np.full(nd, lb),
        delta_init=np.full(nd, init),
        pval_min=pmin,
    )


# ---------------------------------------------------------------------------
# p-values and weight functions
# ---------------------------------------------------------------------------


def selection_pvalues(yi: FloatArray, vi: FloatArray, alternative: str) -> FloatArray:
    """One- or two-sided p-values of ``z_i = y_i/√v_i`` (metafor's ``.selmodel.pval``)."""
    z = np.asarray(yi, dtype=np.float64) / np.sqrt(vi)
    return _pval_of_z(z, alternative)


def study_pvalues(yi: FloatArray, vi: FloatArray, spec: SelectionSpec) -> FloatArray:
    """The p-values the model uses: clamped to ``[pval_min, 1 - pval_min]``."""
    return _clamp(selection_pvalues(yi, vi, spec.alternative), spec.pval_min)


def _pval_of_z(z: FloatArray, alternative: str) -> FloatArray:
    if alternative == "two.sided":
        out: FloatArray = 2.0 * spc.ndtr(-np.abs(z))
    elif alternative == "greater":
        out = spc.ndtr(-z)
    else:
        out = spc.ndtr(z)
    return out


def _clamp(p: FloatArray, pmin: float) -> FloatArray:
    if pmin <= 0.0:
        return p
    return np.clip(p, pmin, 1.0 - pmin)


def interval_groups(p: FloatArray, steps: FloatArray) -> IntArray:
    """0-based p-value interval of each study: the first ``j`` with ``p <= steps[j]``."""
    out: IntArray = np.searchsorted(steps, p, side="left").astype(np.int64)
    return out


def _log_weight(
    x: FloatArray, delta: FloatArray, spec: SelectionSpec, order: int
) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """``L = log w(x; δ)`` of a continuous weight function at clamped p-values ``x``,
    with its δ-gradient ``(n, d)`` and δ-Hessian ``(n, d, d)`` when ``order >= 1, 2``."""
    t = spec.type
    n = x.size
    nd = spec.n_delta
    dL = np.zeros((n, nd)) if order >= 1 else None
    d2L = np.zeros((n, nd, nd)) if order >= 2 else None
    if t == "beta":
        a, b = float(delta[0]), float(delta[1])
        lx, l1x = np.log(x), np.log1p(-x)
        L = (a - 1.0) * lx + (b - 1.0) * l1x
        if dL is not None:
            dL[:, 0], dL[:, 1] = lx, l1x
        return L, dL, d2L
    s1 = float(spec.steps[0])
    d = float(delta[0])
    above = x > s1
    if t == "halfnorm":
        u = np.where(above, x * x - s1 * s1, 0.0)
        L = -d * u
        if dL is not None:
            dL[:, 0] = -u
    elif t == "negexp":
        u = np.where(above, x - s1, 0.0)
        L = -d * u
        if dL is not None:
            dL[:, 0] = -u
    elif t == "power":
        u = np.where(above, np.log1p(-x) - math.log1p(-s1), 0.0)
        L = d * u
        if dL is not None:
            dL[:, 0] = u
    elif t == "logistic":
        # w = (1 + e^{δ s1}) / (1 + e^{δ x}) above the threshold
        L = np.where(above, np.logaddexp(0.0, d * s1) - np.logaddexp(0.0, d * x), 0.0)
        if dL is not None or d2L is not None:
            sx, ss = spc.expit(d * x), spc.expit(d * s1)
            if dL is not None:
                dL[:, 0] = np.where(above, s1 * ss - x * sx, 0.0)
            if d2L is not None:
                d2L[:, 0, 0] = np.where(
                    above, s1 * s1 * ss * (1.0 - ss) - x * x * sx * (1.0 - sx), 0.0
                )
    else:  # pragma: no cover - guarded by the shell
        raise ValueError(f"unknown selection type {t!r}")
    return L, dL, d2L


def weight_function(p: FloatArray, delta: FloatArray, spec: SelectionSpec) -> FloatArray:
    """The selection function ``w(p; δ)`` at p-values ``p`` (metafor's ``wi.fun``).

    Step functions give ``δ_j`` on ``(α_{j-1}, α_j]``; the others are evaluated at
    ``p`` as given (metafor's ``plot`` evaluates ``wi.fun`` on
    ``[pval_min, 1 - pval_min]``).
    """
    p = np.asarray(p, dtype=np.float64)
    if spec.type == "stepfun":
        g = interval_groups(p, spec.steps)
        out: FloatArray = np.asarray(delta, dtype=np.float64)[np.minimum(g, spec.n_delta - 1)]
        return out
    L, _, _ = _log_weight(p.ravel(), np.asarray(delta, dtype=np.float64), spec, 0)
    res: FloatArray = np.exp(L).reshape(p.shape)
    return res


# ---------------------------------------------------------------------------
# Normal probabilities of z-intervals and their (μ, V) derivatives
# ---------------------------------------------------------------------------


def _edge_terms(
    c: FloatArray, mu: FloatArray, V: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """``F = Φ((c - μ)/√V)`` and its derivatives ``F_μ, F_V, F_μμ, F_μV, F_VV``
    (any broadcastable shapes; ``c = ±inf`` gives 1 or 0 and zero derivatives)."""
    sd = np.sqrt(V)
    with np.errstate(invalid="ignore"):
        a = (c - mu) / sd
    fin = np.isfinite(a)
    af = np.where(fin, a, 0.0)
    ph = np.where(fin, np.exp(-0.5 * af * af) / math.sqrt(2.0 * math.pi), 0.0)
    F = spc.ndtr(a)
    Fm = -ph / sd
    FV = -ph * af / (2.0 * V)
    Fmm = -af * ph / V
    FmV = ph * (1.0 - af * af) / (2.0 * V * sd)
    FVV = ph * af * (3.0 - af * af) / (4.0 * V * V)
    return F, Fm, FV, Fmm, FmV, FVV


def _interval_prob(
    lo: FloatArray, hi: FloatArray, mu: FloatArray, V: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """``P(lo < Y < hi)`` for ``Y ~ N(μ, V)`` and its μ/V derivatives.

    The probability is formed from upper tails where the interval lies above μ, so
    that it keeps full relative precision in either tail."""
    L = _edge_terms(lo, mu, V)
    H = _edge_terms(hi, mu, V)
    sd = np.sqrt(V)
    with np.errstate(invalid="ignore"):
        alo = (lo - mu) / sd
        ahi = (hi - mu) / sd
    upper = alo > 0
    with np.errstate(invalid="ignore"):
        p_up = spc.ndtr(-alo) - spc.ndtr(-ahi)
    P = np.where(upper, p_up, H[0] - L[0])
    return (P, H[1] - L[1], H[2] - L[2], H[3] - L[3], H[4] - L[4], H[5] - L[5])


def _z_edges(steps: FloatArray, alternative: str) -> list[list[tuple[float, float]]]:
    """For each p-value interval ``(α_{j-1}, α_j]``, the z-intervals it maps to."""
    out: list[list[tuple[float, float]]] = []
    prev = 0.0
    for a in steps:
        a = float(a)
        if alternative == "greater":
            out.append([(_zq(a), _zq(prev))])
        elif alternative == "less":
            out.append([(-_zq(prev), -_zq(a))])
        else:
            hi, lo = _zq(prev / 2.0), _zq(a / 2.0)
            out.append([(lo, hi), (-hi, -lo)])
        prev = a
    return out


def _zq(p: float) -> float:
    """``z`` with ``1 - Φ(z) = p`` (``+inf`` at 0, ``-inf`` at 1)."""
    if p <= 0.0:
        return math.inf
    if p >= 1.0:
        return -math.inf
    return float(-spc.ndtri(p))


# ---------------------------------------------------------------------------
# Quadrature nodes of the continuous weight functions
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _window_nodes(
    kinks: tuple[float, ...], grade_to: float, panel: float, order: int
) -> tuple[FloatArray, FloatArray]:
    """Gauss–Legendre nodes and weights on ``[-Z, Z]`` with panel edges at ``kinks``.

    ``grade_to > 0`` adds geometrically graded edges ``±panel·2⁻ʲ`` around ``z = 0``
    down to ``grade_to``: a two-sided p-value makes ``(1 - p)^γ`` behave like
    ``|z|^γ`` there (beta and power weights)."""
    n_pan = round(2 * _ZWIN / panel)
    edges = np.linspace(-_ZWIN, _ZWIN, n_pan + 1)
    ks = [k for k in kinks if -_ZWIN < k < _ZWIN]
    if grade_to > 0:
        g = panel * 0.5 ** np.arange(1, 60)
        g = g[g >= grade_to / 2.0]
        ks.extend(np.concatenate([g, -g]).tolist())
    edges = np.unique(np.concatenate([edges, np.array(ks, dtype=np.float64)]))
    x, w = np.polynomial.legendre.leggauss(order)
    a, b = edges[:-1], edges[1:]
    half, mid = (b - a) / 2.0, (b + a) / 2.0
    nodes = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    weights = (half[:, None] * w[None, :]).ravel()
    nodes.flags.writeable = False
    weights.flags.writeable = False
    return nodes, weights


def _nodes(spec: SelectionSpec) -> tuple[FloatArray, FloatArray]:
    grade = 0.0
    if spec.alternative == "two.sided" and spec.type in ("beta", "power"):
        grade = _zq((1.0 - spec.pval_min) / 2.0)  # the clamping point next to z = 0
    return _window_nodes(_kinks(spec), grade, _PANEL, _GL_ORDER)


def _kinks(spec: SelectionSpec) -> tuple[float, ...]:
    """z-values where ``w(p(z))`` is not smooth."""
    ps = [spec.pval_min, 1.0 - spec.pval_min] if spec.pval_min > 0 else []
    s1 = float(spec.steps[0])
    if 0.0 < s1 < 1.0:
        ps.append(s1)
    out: list[float] = []
    for p in ps:
        if spec.alternative == "greater":
            out.append(_zq(p))
        elif spec.alternative == "less":
            out.append(-_zq(p))
        else:
            out.extend([_zq(p / 2.0), -_zq(p / 2.0)])
    if spec.alternative == "two.sided":
        out.append(0.0)
    return tuple(sorted(round(v, 15) for v in out if math.isfinite(v)))


# ---------------------------------------------------------------------------
# The normalising integrals A_i and their derivatives
# ---------------------------------------------------------------------------


@dataclass
class _ADerivs:
    """``A_i`` (up to a per-study factor ``e^{c_i}``) and its derivatives in (μ_i, V_i, δ)."""

    A: FloatArray  # (k,)
    logc: FloatArray  # (k,)
    Am: FloatArray | None = None  # (k,)
    AV: FloatArray | None = None
    Ad: FloatArray | None = None  # (k, d)
    Amm: FloatArray | None = None
    AmV: FloatArray | None = None
    AVV: FloatArray | None = None
    Amd: FloatArray | None = None  # (k, d)
    AVd: FloatArray | None = None
    Add: FloatArray | None = None  # (k, d, d)


def _A_stepfun(
    mu: FloatArray,
    V: FloatArray,
    vi: FloatArray,
    delta: FloatArray,
    spec: SelectionSpec,
    order: int,
) -> _ADerivs:
    k, nd = mu.size, spec.n_delta
    si = np.sqrt(vi)
    P = np.zeros((k, nd))
    D = [np.zeros((k, nd)) for _ in range(5)]
    for j, pieces in enumerate(_z_edges(spec.steps, spec.alternative)):
        for lo, hi in pieces:
            t = _interval_prob(lo * si, hi * si, mu, V)
            P[:, j] += t[0]
            for q in range(5):
                D[q][:, j] += t[q + 1]
    out = _ADerivs(A=P @ delta, logc=np.zeros(k))
    if order >= 1:
        out.Am, out.AV, out.Ad = D[0] @ delta, D[1] @ delta, P
    if order >= 2:
        out.Amm, out.AmV, out.AVV = D[2] @ delta, D[3] @ delta, D[4] @ delta
        out.Amd, out.AVd = D[0], D[1]
        out.Add = np.zeros((k, nd, nd))
    return out


def _tail_factors(a: FloatArray, sd: FloatArray, V: FloatArray, upper: bool) -> list[FloatArray]:
    """Derivatives ``(P_μ, P_V, P_μμ, P_μV, P_VV) / P`` of a normal tail probability
    ``P = Φ(a)`` (``upper=False``) or ``1 - Φ(a)`` (``upper=True``), ``a = (c - μ)/√V``,
    through the inverse Mills ratio (stable far in the tails)."""
    logq = spc.log_ndtr(-a if upper else a)
    lam = np.exp(-0.5 * a * a - 0.5 * _LOG2PI - logq)  # φ(a) / P
    sg = 1.0 if upper else -1.0
    return [
        sg * lam / sd,
        sg * lam * a / (2.0 * V),
        sg * lam * a / V,
        -sg * lam * (1.0 - a * a) / (2.0 * V * sd),
        -sg * lam * a * (3.0 - a * a) / (4.0 * V * V),
    ]


def _A_continuous(
    mu: FloatArray,
    V: FloatArray,
    vi: FloatArray,
    delta: FloatArray,
    spec: SelectionSpec,
    order: int,
    with_delta: bool = True,
) -> _ADerivs:
    z, om = _nodes(spec)
    x = _clamp(_pval_of_z(z, spec.alternative), spec.pval_min)
    L, dL, d2L = _log_weight(x, delta, spec, order)
    # the constant weights beyond the window (the p-values at z = -Z and z = +Z)
    xt = _clamp(_pval_of_z(np.array([-_ZWIN, _ZWIN]), spec.alternative), spec.pval_min)
    Lt, dLt, d2Lt = _log_weight(xt, delta, spec, order)

    # window: z = y/s_i has density N(m_i, R_i) with m = μ/s_i, R = V/v_i
    si = np.sqrt(vi)
    sd = np.sqrt(V)
    m = mu / si
    R = V / vi
    e = z[None, :] - m[:, None]  # (k, N)
    E = L[None, :] - 0.5 * e * e / R[:, None] - 0.5 * np.log(2.0 * math.pi * R)[:, None]
    # tails: log of w times the normal probability below -Z s_i and above +Z s_i
    a_lo = (-_ZWIN * si - mu) / sd
    a_hi = (_ZWIN * si - mu) / sd
    t_lo = Lt[0] + spc.log_ndtr(a_lo)
    t_hi = Lt[1] + spc.log_ndtr(-a_hi)
    # per-study scale c_i: A_i is formed as e^{c_i} Σ(...) so that it never underflows
    c = np.maximum(np.maximum(E.max(axis=1), t_lo), t_hi)
    G = np.exp(E - c[:, None])  # w φ, scaled
    T_lo = np.exp(t_lo - c)
    T_hi = np.exp(t_hi - c)
    M0 = G @ om
    out = _ADerivs(A=M0 + T_lo + T_hi, logc=c)
    if order == 0:
        return out
    assert dL is not None and dLt is not None
    f_lo = _tail_factors(a_lo, sd, V, upper=False)
    f_hi = _tail_factors(a_hi, sd, V, upper=True)
    Ge = G * e
    Ge2 = Ge * e
    M1 = Ge @ om
    M2 = Ge2 @ om
    # φ_m/φ = e/R, φ_R/φ = (e² - R)/(2R²); ∂/∂μ = (1/s) ∂/∂m, ∂/∂V = (1/v) ∂/∂R
    out.Am = M1 / (R * si) + T_lo * f_lo[0] + T_hi * f_hi[0]
    out.AV = (M2 - R * M0) / (2.0 * R * R * vi) + T_lo * f_lo[1] + T_hi * f_hi[1]
    k, nd = mu.size, spec.n_delta
    if with_delta:
        Wd = om[:, None] * dL  # (N, d)
        D0 = G @ Wd
        out.Ad = D0 + np.outer(T_lo, dLt[0]) + np.outer(T_hi, dLt[1])
    else:  # derivatives in δ not wanted (profile over β, τ²)
        out.Ad = np.zeros((k, nd))
    if order < 2:
        return out
    assert d2L is not None and d2Lt is not None
    M3 = (Ge2 * e) @ om
    M4 = (Ge2 * e * e) @ om
    # φ_mm/φ = (e² - R)/R², φ_mR/φ = e(e² - 3R)/(2R³), φ_RR/φ = (e⁴ - 6Re² + 3R²)/(4R⁴)
    out.Amm = (M2 - R * M0) / (R * R * vi) + T_lo * f_lo[2] + T_hi * f_hi[2]
    out.AmV = (M3 - 3.0 * R * M1) / (2.0 * R**3 * vi * si) + T_lo * f_lo[3] + T_hi * f_hi[3]
    out.AVV = (M4 - 6.0 * R * M2 + 3.0 * R * R * M0) / (4.0 * R**4 * vi * vi)
    out.AVV += T_lo * f_lo[4] + T_hi * f_hi[4]
    if not with_delta:
        out.Amd = out.AVd = np.zeros((k, nd))
        out.Add = np.zeros((k, nd, nd))
        return out
    D1 = Ge @ Wd
    D2 = Ge2 @ Wd
    out.Amd = D1 / (R * si)[:, None] + np.outer(T_lo * f_lo[0], dLt[0])
    out.Amd += np.outer(T_hi * f_hi[0], dLt[1])
    out.AVd = (D2 - R[:, None] * D0) / (2.0 * R * R * vi)[:, None]
    out.AVd += np.outer(T_lo * f_lo[1], dLt[0]) + np.outer(T_hi * f_hi[1], dLt[1])
    # w_δδ / w = L' L'ᵀ + L''
    wdd = om[:, None, None] * (dL[:, :, None] * dL[:, None, :] + d2L)
    wdd_t = dLt[:, :, None] * dLt[:, None, :] + d2Lt
    out.Add = np.einsum("kn,nab->kab", G, wdd)
    out.Add += T_lo[:, None, None] * wdd_t[0][None] + T_hi[:, None, None] * wdd_t[1][None]
    return out


# ---------------------------------------------------------------------------
# Log-likelihood
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    yi: FloatArray
    vi: FloatArray
    X: FloatArray
    x_obs: FloatArray  # clamped p-values of the studies
    group: IntArray  # step-function interval of each study (0-based)


def _make_data(yi: FloatArray, vi: FloatArray, X: FloatArray, spec: SelectionSpec) -> _Data:
    p = study_pvalues(yi, vi, spec)
    g = interval_groups(p, spec.steps) if spec.type == "stepfun" else np.zeros(yi.size, np.int64)
    return _Data(yi, vi, X, p, g)


def selection_loglik(
    theta: FloatArray,
    yi: FloatArray,
    vi: FloatArray,
    X: FloatArray,
    spec: SelectionSpec,
    order: int = 0,
) -> tuple[float, FloatArray | None, FloatArray | None]:
    """Log-likelihood of a selection model at ``θ = (β, τ², δ)`` (all δ, fixed ones too).

    Returns ``(ll, gradient, Hessian)`` with respect to the whole ``θ`` (the
    gradient when ``order >= 1``, the Hessian when ``order >= 2``, else None).

    Notes
    -----
    ``ll = Σ_i [log w(p_i) + log φ(y_i; x_i'β, v_i + τ²) - log A_i]`` (metafor's
    ``.selmodel.ll.stepfun`` / ``.selmodel.ll.cont``).  The function is defined
    for ``τ² > -min v_i``; the fit keeps ``τ² >= 0``.
    """
    return _loglik(theta, _make_data(yi, vi, X, spec), spec, order)


def _loglik(
    theta: FloatArray, data: _Data, spec: SelectionSpec, order: int, with_delta: bool = True
) -> tuple[float, FloatArray | None, FloatArray | None]:
    X, yi, vi = data.X, data.yi, data.vi
    k, p = X.shape
    nd = spec.n_delta
    beta = theta[:p]
    tau2 = float(theta[p])
    delta = theta[p + 1 :]
    mu = X @ beta
    V = vi + tau2
    r = yi - mu
    if spec.type == "stepfun":
        with np.errstate(divide="ignore"):
            logd = np.log(delta)
        lw = logd[data.group]
        Ad = _A_stepfun(mu, V, vi, delta, spec, order)
    else:
        lw, dLo, d2Lo = _log_weight(data.x_obs, delta, spec, order)
        Ad = _A_continuous(mu, V, vi, delta, spec, order, with_delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        logA = np.log(Ad.A) + Ad.logc
    ll = float(np.sum(lw - 0.5 * (_LOG2PI + np.log(V)) - 0.5 * r * r / V - logA))
    if order == 0:
        return ll, None, None
    if not math.isfinite(ll):
        return ll, np.full(theta.size, np.nan), (
            np.full((theta.size, theta.size), np.nan) if order >= 2 else None
        )
    assert Ad.Am is not None and Ad.AV is not None and Ad.Ad is not None
    A = Ad.A
    # per-study derivatives in the local parameters (μ_i, V_i, δ)
    gm = r / V - Ad.Am / A
    gV = -0.5 / V + 0.5 * r * r / (V * V) - Ad.AV / A
    if spec.type == "stepfun":
        dlw = np.zeros((k, nd))
        dlw[np.arange(k), data.group] = 1.0 / delta[data.group]
    else:
        assert dLo is not None
        dlw = dLo
    gd = dlw - Ad.Ad / A[:, None]
    grad = np.concatenate([X.T @ gm, [gV.sum()], gd.sum(axis=0)])
    if order < 2:
        return ll, grad, None
    assert Ad.Amm is not None and Ad.AmV is not None and Ad.AVV is not None
    assert Ad.Amd is not None and Ad.AVd is not None and Ad.Add is not None
    am, aV, ad = Ad.Am / A, Ad.AV / A, Ad.Ad / A[:, None]
    hmm = -1.0 / V - (Ad.Amm / A - am * am)
    hmV = -r / (V * V) - (Ad.AmV / A - am * aV)
    hVV = 0.5 / (V * V) - r * r / V**3 - (Ad.AVV / A - aV * aV)
    hmd = -(Ad.Amd / A[:, None] - am[:, None] * ad)
    hVd = -(Ad.AVd / A[:, None] - aV[:, None] * ad)
    hdd = -(Ad.Add / A[:, None, None] - ad[:, :, None] * ad[:, None, :])
    if spec.type == "stepfun":
        d2lw = np.zeros((nd, nd))
        cnt = np.bincount(data.group, minlength=nd).astype(np.float64)
        d2lw[np.diag_indices(nd)] = -cnt / (delta * delta)
        hdd_sum = hdd.sum(axis=0) + d2lw
    else:
        assert d2Lo is not None
        hdd_sum = hdd.sum(axis=0) + d2Lo.sum(axis=0)
    n = p + 1 + nd
    H = np.empty((n, n))
    Hbb = X.T @ (hmm[:, None] * X)
    H[:p, :p] = 0.5 * (Hbb + Hbb.T)
    H[:p, p] = H[p, :p] = X.T @ hmV
    H[p, p] = hVV.sum()
    H[:p, p + 1 :] = X.T @ hmd
    H[p + 1 :, :p] = H[:p, p + 1 :].T
    H[p, p + 1 :] = H[p + 1 :, p] = hVd.sum(axis=0)
    H[p + 1 :, p + 1 :] = hdd_sum
    return ll, grad, H


# ---------------------------------------------------------------------------
# The model without selection (ML)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MLFit:
    """ML fit of ``y ~ N(Xβ, v + τ²)`` (τ² = 0 for the equal-effects model)."""

    beta: FloatArray
    tau2: float
    loglik: float


def _normal_loglik(
    theta: FloatArray, yi: FloatArray, vi: FloatArray, X: FloatArray, order: int
) -> tuple[float, FloatArray | None, FloatArray | None]:
    p = X.shape[1]
    beta, tau2 = theta[:p], float(theta[p])
    V = vi + tau2
    r = yi - X @ beta
    ll = float(-0.5 * np.sum(_LOG2PI + np.log(V) + r * r / V))
    if order == 0:
        return ll, None, None
    g = np.concatenate([X.T @ (r / V), [np.sum(-0.5 / V + 0.5 * r * r / (V * V))]])
    if order < 2:
        return ll, g, None
    H = np.empty((p + 1, p + 1))
    H[:p, :p] = -(X.T @ (X / V[:, None]))
    H[:p, p] = H[p, :p] = -(X.T @ (r / (V * V)))
    H[p, p] = np.sum(0.5 / (V * V) - r * r / V**3)
    return ll, g, H


def _gls(yi: FloatArray, V: FloatArray, X: FloatArray) -> FloatArray:
    w = 1.0 / V
    out: FloatArray = np.linalg.solve(X.T @ (X * w[:, None]), X.T @ (w * yi))
    return out


def ml_fit(yi: FloatArray, vi: FloatArray, X: FloatArray, tau2_free: bool) -> MLFit:
    """Maximum-likelihood fit without selection (metafor's ``rma(method="ML")``).

    The profile log-likelihood of τ² is scanned on a grid, the best cell refined
    by bounded Brent search, and the joint maximum polished by Newton steps on
    ``(β, τ²)`` with the analytic Hessian.
    """
    if not tau2_free:
        beta = _gls(yi, vi, X)
        th = np.concatenate([beta, [0.0]])
        return MLFit(beta, 0.0, _normal_loglik(th, yi, vi, X, 0)[0])

    def prof(t2: float) -> float:
        V = vi + t2
        b = _gls(yi, V, X)
        r = yi - X @ b
        return float(-0.5 * np.sum(_LOG2PI + np.log(V) + r * r / V))

    scale = max(float(np.var(yi)), float(np.median(vi)), 1e-12)
    grid = np.concatenate([[0.0], scale * np.logspace(-8, 3, 45)])
    vals = np.array([prof(float(t)) for t in grid])
    j = int(np.argmax(vals))
    lo = grid[max(j - 1, 0)]
    hi = grid[min(j + 1, grid.size - 1)]
    t2 = float(grid[j])
    if hi > lo:
        r = optimize.minimize_scalar(
            lambda t: -prof(t), bounds=(lo, hi), method="bounded", options={"xatol": 1e-14 * scale}
        )
        if -float(r.fun) > vals[j]:
            t2 = float(r.x)
    th0 = np.concatenate([_gls(yi, vi + t2, X), [t2]])

    def fun(th: FloatArray, order: int) -> tuple[float, FloatArray | None, FloatArray | None]:
        return _normal_loglik(th, yi, vi, X, order)

    p = X.shape[1]
    lower = np.concatenate([np.full(p, -np.inf), [0.0]])
    upper = np.full(p + 1, np.inf)
    th, ll, _, _ = _newton(fun, th0, lower, upper)
    return MLFit(th[:p].copy(), float(th[p]), ll)


# ---------------------------------------------------------------------------
# Bounded maximisation
# ---------------------------------------------------------------------------

_Fun = Callable[[FloatArray, int], tuple[float, FloatArray | None, FloatArray | None]]


def _newton(
    fun: _Fun,
    x0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    max_iter: int = 200,
    tol: float = 0.0,
) -> tuple[FloatArray, float, float, int]:
    """Maximise ``fun`` from ``x0`` by damped, projected Newton steps with the exact Hessian.

    Parameters at a bound whose gradient points outward are held there.  On the
    others the step solves ``(-H + μI) Δ = g`` in variables scaled to a unit
    Hessian diagonal, with ``μ`` the least shift that makes ``-H + μI`` positive
    definite plus a Levenberg–Marquardt damping that shrinks after accepted steps
    and grows after rejected ones; the iterate is projected onto the bounds and
    accepted when the objective increases.  Returns ``(x, f, decrement, iters)``
    with the Newton decrement ``λ² = gᵀ(-H)⁻¹g`` of the free parameters at ``x``
    (``λ²/2`` is the remaining gain predicted by the quadratic model; ``inf``
    where ``-H`` is not positive definite).  ``tol`` stops earlier, at ``λ² < tol``.
    """
    x = np.clip(np.asarray(x0, dtype=np.float64).copy(), lower, upper)
    f, g, H = fun(x, 2)
    lam2 = math.inf
    damp = 0.0
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        assert g is not None and H is not None
        if not (math.isfinite(f) and np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            lam2 = math.inf
            break
        at_lo = (x <= lower) & (g < 0)
        at_hi = (x >= upper) & (g > 0)
        free = ~(at_lo | at_hi)
        if not free.any():
            lam2 = 0.0
            break
        gf = g[free]
        Hf = -H[np.ix_(free, free)]
        dg = np.sqrt(np.abs(np.diag(Hf)))
        dg[dg == 0] = 1.0
        ev, U = np.linalg.eigh(Hf / np.outer(dg, dg))
        gs = U.T @ (gf / dg)
        top = max(float(ev[-1]), 1.0)
        pd = bool(ev[0] > 1e-12 * top)
        lam2 = float(np.sum(gs * gs / ev)) if pd else math.inf
        tiny = 1e-13 * max(1.0, abs(f))
        if pd and lam2 < max(1e-2 * tiny, tol):
            break
        shift = 0.0 if pd else 1e-8 * top - float(ev[0])
        accepted = False
        for _ in range(50):
            step = np.zeros_like(x)
            step[free] = (U @ (gs / (ev + shift + damp))) / dg
            xn = np.clip(x + step, lower, upper)
            fn = fun(xn, 0)[0]
            near = pd and damp == 0.0 and lam2 < tiny and fn >= f - tiny
            if math.isfinite(fn) and (fn > f or near):
                accepted = True
                break
            damp = max(4.0 * damp, 1e-4 * top)
        if not accepted:
            break
        damp = 0.0 if damp < 1e-3 * top else damp / 8.0
        moved = bool(np.any(xn != x))
        x = xn
        f, g, H = fun(x, 2)
        if not moved or (pd and lam2 < tiny):
            # one more pass to report the decrement at the final point
            continue
    return x, f, lam2, n_iter


# ---------------------------------------------------------------------------
# Fitting the selection model
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectionFit:
    """The maximum-likelihood fit of a selection model.

    ``theta = (β, τ², δ)`` over all parameters; ``free`` marks the estimated ones.
    ``vcov`` is ``(-H)⁻¹`` over the free parameters embedded in the full θ (NaN
    rows/columns for fixed parameters, all NaN when ``-H`` is not positive
    definite).  ``at_lower``/``at_upper`` mark estimates on a bound of the
    parameter space (τ² = 0, ``δ = delta_min``/``delta_max``).  ``decrement`` is
    the Newton decrement ``gᵀ(-H)⁻¹g`` at the estimate (twice the log-likelihood
    still to gain, by the quadratic model).  ``vcov_status`` is ``"full"``,
    ``"conditional"`` (``-H`` was not positive definite; the covariance is that of
    the parameters off their bounds, with the bound ones held) or ``"singular"``
    (NaN).
    """

    theta: FloatArray
    p: int
    loglik: float
    free: BoolArray
    hessian: FloatArray
    vcov: FloatArray
    converged: bool
    decrement: float
    at_lower: BoolArray
    at_upper: BoolArray
    null: MLFit
    start_logliks: FloatArray
    vcov_status: str = "full"

    @property
    def beta(self) -> FloatArray:
        """Coefficients."""
        return self.theta[: self.p]

    @property
    def tau2(self) -> float:
        """Heterogeneity variance."""
        return float(self.theta[self.p])

    @property
    def delta(self) -> FloatArray:
        """Selection parameters (fixed ones included)."""
        return self.theta[self.p + 1 :]


def _delta_candidates(data: _Data, spec: SelectionSpec, null: MLFit) -> list[FloatArray]:
    """Candidate δ vectors for the profile scan (free entries only vary)."""
    nd = spec.n_delta
    free = spec.delta_free
    fixed = spec.delta_fixed

    def fill(d: FloatArray) -> FloatArray:
        out = np.where(free, d, fixed)
        lo = np.where(free, spec.delta_min, -np.inf)
        hi = np.where(free, spec.delta_max, np.inf)
        res: FloatArray = np.clip(out, lo, hi)
        return res

    cands = [fill(spec.delta_init), fill(spec.delta_h0)]
    if not free.any():
        return cands[:1]
    if spec.type == "stepfun":
        # observed / expected counts per interval under the fit without selection
        mu = data.X @ null.beta
        V = data.vi + null.tau2
        si = np.sqrt(data.vi)
        exp_n = np.zeros(nd)
        for j, pieces in enumerate(_z_edges(spec.steps, spec.alternative)):
            for lo, hi in pieces:
                exp_n[j] += _interval_prob(lo * si, hi * si, mu, V)[0].sum()
        obs = np.bincount(data.group, minlength=nd).astype(np.float64)
        ratio = (obs + 0.5) / (exp_n + 0.5)
        cands.append(fill(np.clip(ratio / ratio[0], 0.01, 50.0)))
        # uniform and decreasing weight patterns
        pos = np.arange(nd, dtype=np.float64) / max(nd - 1, 1)
        for c in (0.05, 0.2, 0.5, 2.0):
            cands.append(fill(np.full(nd, c)))
            cands.append(fill(c**pos))
    elif nd == 1:
        cands += [fill(np.array([v])) for v in (0.1, 0.3, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0)]
    else:
        g = (0.1, 0.3, 0.7, 1.5, 4.0, 15.0)
        cands += [fill(np.array([a, b])) for a in g for b in g]
    uniq: list[FloatArray] = []
    for cand in cands:
        if not any(np.allclose(cand, u) for u in uniq):
            uniq.append(cand)
    return uniq


def _profile_starts(
    data: _Data,
    spec: SelectionSpec,
    null: MLFit,
    tau2_free: bool,
    lower: FloatArray,
    upper: FloatArray,
    n_keep: int = 3,
) -> list[FloatArray]:
    """Starting points of the full maximisation: for each candidate δ, the maximum
    over ``(β, τ²)`` with δ held (a coarse profile likelihood of δ); the best
    ``n_keep`` distinct profile points, and always the one at metafor's start."""
    p = data.X.shape[1]
    idx_bt = np.arange(p + (1 if tau2_free else 0))
    base = np.concatenate([null.beta, [null.tau2]])
    out: list[tuple[float, FloatArray]] = []
    for d in _delta_candidates(data, spec, null):
        template = np.concatenate([base, d])

        def f(
            x: FloatArray, order: int, template: FloatArray = template
        ) -> tuple[float, FloatArray | None, FloatArray | None]:
            th = template.copy()
            th[idx_bt] = x
            ll, g, H = _loglik(th, data, spec, order, with_delta=False)
            return ll, None if g is None else g[idx_bt], (
                None if H is None else H[np.ix_(idx_bt, idx_bt)]
            )

        x0 = template[idx_bt]
        if not math.isfinite(f(x0, 0)[0]):
            continue
        xb, ll, _, _ = _newton(f, x0, lower[idx_bt], upper[idx_bt], max_iter=15, tol=1e-6)
        th = template.copy()
        th[idx_bt] = xb
        out.append((ll, th))
    if not out:
        return [np.concatenate([base, _delta_candidates(data, spec, null)[0]])]
    first = out[0][1]  # metafor's δ start, profiled
    ranked = sorted(out, key=lambda t: -t[0] if math.isfinite(t[0]) else math.inf)
    keep = [first]
    for _, th in ranked:
        if len(keep) > n_keep:
            break
        if not any(np.allclose(th, q, rtol=1e-3, atol=1e-6) for q in keep):
            keep.append(th)
    return keep


def selection_fit(
    yi: FloatArray, vi: FloatArray, X: FloatArray, spec: SelectionSpec, tau2_free: bool
) -> SelectionFit:
    """Maximum-likelihood fit of a selection model (metafor's ``selmodel``).

    Parameters
    ----------
    yi, vi : (k,) arrays
        Effects and positive sampling variances.
    X : (k, p) array
        Design matrix (a column of ones for the intercept-only model).
    spec : SelectionSpec
        The weight function (:func:`make_spec`).
    tau2_free : bool
        Estimate τ² (random effects); False fixes τ² = 0 (equal effects).

    Notes
    -----
    The log-likelihood (:func:`selection_loglik`) is maximised over
    ``β ∈ ℝᵖ``, ``τ² ∈ [0, ∞)`` and the free ``δ ∈ [delta_min, delta_max]``: from
    the ML fit without selection combined with several δ (metafor's start, no
    selection, and data-driven values: observed/expected counts per interval
    for step functions, the best cells of a δ scan otherwise), each by damped,
    projected Newton steps with the analytic Hessian (:func:`_newton`).  The best
    end point is kept; ``converged`` requires its Newton decrement to be below
    ``1e-10·max(1, |ll|)`` (at the end it is typically ~1e-20: the log-likelihood
    is within rounding of its maximum).
    """
    p = X.shape[1]
    data = _make_data(yi, vi, X, spec)
    null = ml_fit(yi, vi, X, tau2_free)
    free = np.concatenate([np.ones(p, bool), [tau2_free], spec.delta_free])
    lower = np.concatenate([np.full(p, -np.inf), [0.0], spec.delta_min])
    upper = np.concatenate([np.full(p, np.inf), [np.inf], spec.delta_max])
    if spec.type == "stepfun":
        # log δ_j enters the likelihood; its maximum is interior for intervals with studies
        lower[p + 1 :] = np.maximum(lower[p + 1 :], 1e-12)

    def fun(th: FloatArray, order: int) -> tuple[float, FloatArray | None, FloatArray | None]:
        return _loglik(th, data, spec, order)

    starts = _profile_starts(data, spec, null, tau2_free, lower, upper)

    idx = np.flatnonzero(free)
    lo_f, hi_f = lower[idx], upper[idx]
    template = np.clip(starts[0], lower, upper)

    def f(xf: FloatArray, order: int) -> tuple[float, FloatArray | None, FloatArray | None]:
        th = template.copy()
        th[idx] = xf
        ll, g, H = fun(th, order)
        return ll, None if g is None else g[idx], None if H is None else H[np.ix_(idx, idx)]

    # projected Newton with the exact Hessian from every start; the best end point
    # wins.  (No quasi-Newton stage: with the analytic Hessian, Newton converges in a
    # few steps, and scipy's L-BFGS-B spends its time in threaded BLAS calls.)
    best: tuple[float, FloatArray, float] | None = None
    ends = []
    for st in starts:
        x0 = np.clip(st, lower, upper)[idx]
        if not math.isfinite(f(x0, 0)[0]):
            ends.append(-math.inf)
            continue
        xf, ll, lam2, _ = _newton(f, x0, lo_f, hi_f)
        ends.append(ll)
        if math.isfinite(ll) and (best is None or ll > best[0]):
            th = template.copy()
            th[idx] = xf
            best = (ll, th, lam2)
    start_ll = np.array(ends)
    if best is None:
        raise FloatingPointError("the selection-model log-likelihood is not finite at any start")
    ll, theta, lam2 = best
    _, g, H = fun(theta, 2)
    assert H is not None and g is not None
    # estimates on a bound of the model (stepfun's internal 1e-12 floor is not one)
    model_lower = np.concatenate([np.full(p, -np.inf), [0.0], spec.delta_min])
    at_lower = free & (theta <= model_lower) & (g <= 0)
    at_upper = free & (theta >= upper) & (g >= 0)
    vcov = np.full((theta.size, theta.size), np.nan)
    vcov_status = "full"
    inv_idx = _inverse_information(H, idx)
    if inv_idx is None:
        # not positive definite: condition on the parameters that sit on a bound
        rest = np.flatnonzero(free & ~(at_lower | at_upper))
        inv_rest = _inverse_information(H, rest) if rest.size < idx.size else None
        if inv_rest is not None:
            vcov[np.ix_(rest, rest)] = inv_rest
            vcov_status = "conditional"
        else:
            vcov_status = "singular"
    else:
        vcov[np.ix_(idx, idx)] = inv_idx
    converged = bool(math.isfinite(lam2) and lam2 <= 1e-10 * max(1.0, abs(ll)))
    return SelectionFit(
        theta=theta,
        p=p,
        loglik=ll,
        free=free,
        hessian=H,
        vcov=vcov,
        converged=converged,
        decrement=lam2,
        at_lower=at_lower,
        at_upper=at_upper,
        null=null,
        start_logliks=np.array(start_ll),
        vcov_status=vcov_status,
    )


def _inverse_information(H: FloatArray, idx: npt.NDArray[np.intp]) -> FloatArray | None:
    """``(-H)⁻¹`` over the parameters ``idx`` by Cholesky (None if not positive
    definite, as metafor's ``chol2inv(chol(H))``)."""
    if idx.size == 0:
        return np.zeros((0, 0))
    try:
        Lc = np.linalg.cholesky(-H[np.ix_(idx, idx)])
    except np.linalg.LinAlgError:
        return None
    inv = np.linalg.inv(Lc)
    out: FloatArray = inv.T @ inv
    return out

