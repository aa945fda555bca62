"""Model-based covariance of the coefficients, one registry entry per ``test``.

metafor's ``test`` chooses both the covariance of the coefficients and the
reference distribution of their tests: the inverse information ``(X'WX)⁻¹`` with
normal (``"z"``) or t (``"t"``) tests, or that matrix scaled by the Knapp & Hartung
(2003) factor (``"knha"``, and ``"adhoc"``, which floors the factor at 1) with t
tests.  Each is one :class:`CoefCovariance` in :data:`TESTS`.  Cluster-robust
(sandwich) covariances of fitted models live in :mod:`alliance_meta.core.sandwich`.

References
----------
Knapp, G., & Hartung, J. (2003). Improved tests for a random effects
meta-regression with a single covariate. *Statistics in Medicine*, 22(17),
2693-2710.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from alliance_meta.core.arrays import FloatArray, IntArray
from alliance_meta.core.kernel import Kernel, Need

__all__ = ["TESTS", "CoefCovariance", "CoreTest", "location"]

#: metafor's ``test``.
CoreTest = Literal["z", "t", "knha", "adhoc"]

_EPS = float(np.finfo(np.float64).eps)

#: ``scale(Q, k - p, k) -> s²`` multiplying ``(X'WX)⁻¹``.
ScaleFn = Callable[[FloatArray, FloatArray, IntArray], FloatArray]


@dataclass(frozen=True)
class CoefCovariance:
    """One choice of coefficient covariance and test reference.

    Attributes
    ----------
    name : str
        metafor's ``test``.
    description : str
        What it is.
    t_reference : bool
        Tests and intervals use t on ``k - p`` df (else the normal).
    scale : callable or None
        The factor ``s²`` applied to ``(X'WX)⁻¹``, from the weighted residual sum
        of squares ``Q = y'Py`` at the estimated τ² (None: no scaling).
    """

    name: CoreTest
    description: str
    t_reference: bool
    scale: ScaleFn | None


def _knha(Q: FloatArray, dfr: FloatArray, k: IntArray) -> FloatArray:
    """``s² = y'Py / (k-p)``, 0 when ``y'Py`` is below machine epsilon (metafor)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s2w = np.where(Q <= _EPS, 0.0, Q / np.where(dfr > 0, dfr, np.nan))
    out: FloatArray = np.where(k <= 1, 1.0, s2w)
    return out


def _adhoc(Q: FloatArray, dfr: FloatArray, k: IntArray) -> FloatArray:
    """The Knapp-Hartung factor floored at 1 (Knapp & Hartung, 2003, sec. 4)."""
    out: FloatArray = np.maximum(_knha(Q, dfr, k), 1.0)
    return out


TESTS: dict[CoreTest, CoefCovariance] = {
    c.name: c
    for c in (
        CoefCovariance("z", "inverse information, normal tests", False, None),
        CoefCovariance("t", "inverse information, t tests on k - p df", True, None),
        CoefCovariance("knha", "Knapp-Hartung scaling, t tests on k - p df", True, _knha),
        CoefCovariance("adhoc", "Knapp-Hartung scaling floored at 1, t tests", True, _adhoc),
    )
}

assert set(get_args(CoreTest)) == set(TESTS)


def center_shift(kern: Kernel, tau2: FloatArray, vb: FloatArray) -> FloatArray:
    """Undo the per-row centring of ``Y`` on the coefficients.

    Centring ``y`` by ``c`` shifts the coefficients by ``c (X'WX)⁻¹ X'W 1``: by ``c``
    on the intercept when column 0 is one (and 0 elsewhere), and by ``c`` times the
    weighted regression of a column of ones on ``X`` for a design without one
    (``vb`` is ``(X'WX)⁻¹`` at the weights ``1/(v + τ²)``).
    """
    out = np.zeros((kern.m, kern.p))
    if kern.intercept:
        out[:, 0] = kern.center
        return out
    w = 1.0 / (kern.V + tau2[:, None])
    XtW1 = np.einsum("mnp,mn->mp", kern._Xfull(), w)
    shift: FloatArray = np.einsum("mpq,mq->mp", vb, XtW1) * kern.center[:, None]
    return shift


def _uncentred_rss(kern: Kernel, tau2: FloatArray, beta: FloatArray) -> FloatArray:
    """``Σ w_i (y_i - x_i'β)²`` of the uncentred effects (metafor's ``RSS.knha``)."""
    w = 1.0 / (kern.V + tau2[:, None])
    resid = kern.Y + kern.center[:, None] - np.einsum("mnp,mp->mn", kern._Xfull(), beta)
    resid = np.where(np.isfinite(kern.V), resid, 0.0)
    out: FloatArray = np.einsum("mn,mn,mn->m", w, resid, resid)
    return out


def location(
    kern: Kernel, tau2: FloatArray, test: CoreTest
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(beta, vcov, s2)`` at the given τ², with the covariance of ``test``.

    ``s2`` is the scale applied to ``(X'WX)⁻¹`` (1 without scaling).
    """
    sc = kern.scale
    if sc is None:
        return location_k(kern, tau2, test)
    beta, vb, s2w = location_k(kern, tau2 / (sc * sc), test)
    return beta * sc[:, None], vb * (sc * sc)[:, None, None], s2w


def location_k(
    kern: Kernel, tau2: FloatArray, test: CoreTest
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`location` in the kernel's own units (τ² and the results)."""
    spec = TESTS[test]
    # Q at τ² is needed by the Knapp-Hartung scaling only
    st = kern.weighted(tau2, Need.FIT if spec.scale is not None else Need.BETA)
    beta, vb = st.beta, st.cov()
    Q = st.Q
    if kern.X is not None or kern.scale is not None:  # centred (or shifted) kernels
        beta = beta + center_shift(kern, tau2, vb)
        if kern.X is not None and not kern.intercept and spec.scale is not None:
            # without an intercept the centred y'Py is not the residual sum of
            # squares of y (unless the design spans one): metafor scales by the latter
            Q = _uncentred_rss(kern, tau2, beta)
    if spec.scale is None:
        return beta, vb, np.ones(kern.m)
    s2w = spec.scale(Q, kern.dfr, kern.k)
    return beta, vb * s2w[:, None, None], s2w
