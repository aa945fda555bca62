"""The numerical core: kernel quantities and cache, the registries, the inference layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from scipy import stats

from alliance_meta._types import Method
from alliance_meta.core import inference
from alliance_meta.core.estimators import ESTIMATORS, METHOD_ALIASES, MOMENT_METHODS
from alliance_meta.core.kernel import Kernel, Need, kernel_from_padded
from alliance_meta.core.vcov import TESTS

REF = Path(__file__).parent / "reference"

# ---------------------------------------------------------------------------
# Kernel quantities against an explicit projection matrix
# ---------------------------------------------------------------------------


def _data(with_design: bool) -> tuple[Kernel, np.ndarray, np.ndarray, np.ndarray]:
    """Three ragged analyses (NaN = absent study) and their dense pieces."""
    rng = np.random.default_rng(3)
    m, n = 3, 9
    Y = rng.normal(0.3, 0.4, (m, n))
    V = rng.uniform(0.01, 0.2, (m, n))
    Y[1, 7:] = V[1, 7:] = np.nan
    Y[2, 4:] = V[2, 4:] = np.nan
    X = np.column_stack([np.ones(n), rng.normal(size=n)]) if with_design else None
    return kernel_from_padded(Y, V, X), Y, V, np.ones((n, 1)) if X is None else X


def _dense(Y: np.ndarray, V: np.ndarray, X: np.ndarray, tau2: np.ndarray, row: int) -> dict:
    """Every quantity of P = W - WX(X'WX)⁻¹X'W for one analysis, by brute force."""
    keep = ~np.isnan(Y[row])
    y, v, x = Y[row, keep], V[row, keep], X[keep]
    W = np.diag(1.0 / (v + tau2[row]))
    vb = np.linalg.inv(x.T @ W @ x)
    P = W - W @ x @ vb @ x.T @ W
    Vd = np.diag(v)
    return {
        "beta": vb @ x.T @ W @ y,
        "S1": np.trace(W),
        "Q": y @ P @ y,
        "S2": np.sum(np.diag(W) ** 2),
        "trP": np.trace(P),
        "trPP": np.trace(P @ P),
        "yPPy": y @ P @ P @ y,
        "yPPPy": y @ P @ P @ P @ y,
        "trPVPV": np.trace(P @ Vd @ P @ Vd),
        "trPVP": np.trace(P @ Vd @ P),
    }


#: Which Stats fields each single flag promises.
_FIELDS = {
    Need.BETA: ("beta", "S1"),
    Need.Q: ("Q",),
    Need.TRP: ("S2", "trP"),
    Need.TRPP: ("trPP",),
    Need.YPPY: ("yPPy",),
    Need.YPPPY: ("yPPPy",),
    Need.VTRACES: ("trPVPV", "trPVP"),
}


@pytest.mark.parametrize("with_design", [False, True], ids=["intercept", "design"])
@pytest.mark.parametrize("flag", list(_FIELDS), ids=lambda f: f.name)
@pytest.mark.parametrize("at_zero", [True, False], ids=["tau2=0", "tau2>0"])
def test_each_quantity_equals_the_explicit_projection(
    with_design: bool, flag: Need, at_zero: bool
) -> None:
    """Asking for one quantity gives it as P defines it (both kernels, ragged rows).

    1e-10 relative: the kernels use closed forms, QR and cancellation-safe sums
    where the brute force uses dense inverses; both are exact to ~1e-13 here.
    """
    kern, Y, V, X = _data(with_design)
    tau2 = kern.zeros if at_zero else np.array([0.05, 0.0, 0.3])
    st = kern.weighted(tau2, flag | Need.BETA)
    for row in range(kern.m):
        exp = _dense(Y, V, X, tau2, row)
        for name in _FIELDS[flag]:
            got = getattr(st, name)
            assert got is not None, name
            val = got[row]
            if name == "beta":
                val = val + (kern.center[row] * (np.arange(kern.p) == 0) if with_design else 0)
            np.testing.assert_allclose(val, exp[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_named_needs_are_unions_of_their_parts() -> None:
    """The named combinations nest as the estimators rely on (have & want == want)."""
    assert Need.FIT & Need.BETA == Need.BETA
    for small, big in [
        (Need.FIT, Need.DL), (Need.DL, Need.MOMENTS), (Need.FIT, Need.QROOT),
        (Need.QROOT, Need.SCORE), (Need.SCORE, Need.LIKELIHOOD), (Need.MOMENTS, Need.LIKELIHOOD),
        (Need.LIKELIHOOD, Need.ALL),
    ]:  # fmt: skip
        assert big & small == small, (small, big)
    assert Need.MOMENTS & Need.QROOT != Need.QROOT  # moments hold no y'PPy


def test_kernel_cache_serves_covered_requests_only() -> None:
    """The last τ² and τ² = 0 are cached; a request they cover is the same object, a
    deeper request or another τ² is recomputed."""
    kern, *_ = _data(False)
    t = np.array([0.05, 0.1, 0.2])
    a = kern.weighted(t, Need.DL)
    assert kern.weighted(t.copy(), Need.FIT) is a  # equal values, covered
    b = kern.weighted(t, Need.YPPY)
    assert b is not a and b.yPPy is not None
    z = kern.weighted(kern.zeros, Need.MOMENTS)
    assert kern.weighted(np.zeros(3), Need.DL) is z  # τ² = 0 recognised by value
    assert kern.weighted(t, Need.QROOT) is b  # the last-τ² slot survives a τ² = 0 call
    c = kern.weighted(t * 2, Need.FIT)
    assert c is not b


# ---------------------------------------------------------------------------
# Registries
# ---------------------------------------------------------------------------


def test_method_literal_is_the_estimator_registry() -> None:
    """Method, METHOD_ALIASES and the registry list the same names; every moment
    estimator's needs are moment needs."""
    assert set(get_args(Method)) == set(METHOD_ALIASES)
    assert {METHOD_ALIASES[a] for a in METHOD_ALIASES} == set(ESTIMATORS)
    assert METHOD_ALIASES["FE"] == METHOD_ALIASES["CE"] == "EE"
    for name in MOMENT_METHODS:
        est = ESTIMATORS[name]
        assert (est.needs | est.se_needs) & (Need.YPPY | Need.YPPPY | Need.VTRACES) == Need(0)


def test_every_estimator_and_test_has_metafor_references() -> None:
    """A new registry entry must come with metafor references (pool_*.json)."""
    seen: set[tuple[str, str]] = set()
    for path in REF.glob("pool_*.json"):
        for case in json.loads(path.read_text())["cases"]:
            seen.add((case["method"], case["test"]))
    for method in ESTIMATORS:
        assert (method, "z") in seen, method
    for test in TESTS:
        if test != "adhoc":  # adhoc is knha floored at 1, tested in test_pooling_api
            assert ("REML", test) in seen, test


# ---------------------------------------------------------------------------
# The inference layer
# ---------------------------------------------------------------------------


def test_coefficient_inference_with_per_coefficient_df() -> None:
    """df of shape (m, p) (Satterthwaite) give each coefficient its own t quantile;
    NaN df use the normal.  Reference: scipy.stats (1e-12: the same special
    functions, called directly)."""
    beta = np.array([[0.5, -1.0, 2.0]])
    vcov = np.diag([0.04, 0.25, 1.0])[None]
    df = np.array([[3.0, np.nan, 12.5]])
    ct = inference.coef_inference(beta, vcov, df, 0.9)
    se = np.array([0.2, 0.5, 1.0])
    np.testing.assert_allclose(ct.se[0], se, rtol=1e-15)
    crit = [stats.t.ppf(0.95, 3.0), stats.norm.ppf(0.95), stats.t.ppf(0.95, 12.5)]
    np.testing.assert_allclose(ct.crit[0], crit, rtol=1e-12)
    z = beta[0] / se
    p = [2 * stats.t.sf(abs(z[0]), 3), 2 * stats.norm.sf(abs(z[1])), 2 * stats.t.sf(z[2], 12.5)]
    np.testing.assert_allclose(ct.pvalue[0], p, rtol=1e-12)
    np.testing.assert_allclose(ct.ci_low[0], beta[0] - np.array(crit) * se, rtol=1e-12)


def test_wald_test_chi2_and_f() -> None:
    """QM = b'V⁻¹b over the chosen coefficients; F divides by q (1e-12: as above)."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 3))
    vcov = (A @ A.T + np.eye(3))[None]
    beta = np.array([[0.1, 0.7, -0.4]])
    btt = np.array([1, 2])
    qm = beta[0, btt] @ np.linalg.solve(vcov[0][np.ix_(btt, btt)], beta[0, btt])
    chi = inference.wald_test(beta, vcov, btt)
    np.testing.assert_allclose(chi.statistic, [qm], rtol=1e-12)
    np.testing.assert_allclose(chi.pvalue, [stats.chi2.sf(qm, 2)], rtol=1e-12)
    assert np.isnan(chi.df2).all()
    f = inference.wald_test(beta, vcov, btt, np.array([7.0]))
    np.testing.assert_allclose(f.statistic, [qm / 2], rtol=1e-12)
    np.testing.assert_allclose(f.pvalue, [stats.f.sf(qm / 2, 2, 7)], rtol=1e-12)
