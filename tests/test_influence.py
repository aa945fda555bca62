"""Leave-one-out, influence and cumulative diagnostics against metafor 3.8.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

import alliance_meta as am
from alliance_meta import core as _core
from alliance_meta._types import Method, Test

REF_DIR = Path(__file__).parent / "reference"
FILES = sorted(REF_DIR.glob("bias_*.json"))
IDS = [f.stem for f in FILES]

# Refit-based quantities: each of the k refits solves τ² iteratively; metafor's
# references are roots to 1e-12, ours to 1e-10 relative, and quantities such as
# cook_d or dffits combine several such roots (and differences of nearly equal
# estimates), so the contract for them is 1e-5 relative (observed: <= 4e-9).
RTOL_REFIT = 1e-5


@pytest.fixture(params=FILES, ids=IDS)
def ref(request: pytest.FixtureRequest) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(request.param).read_text())
    return data


def _fit(ref: dict[str, Any], **kw: Any) -> am.PoolResult:
    return am.random_effects(yi=np.array(ref["yi"]), vi=np.array(ref["vi"]), **kw)


# ---------------------------------------------------------------------------
# Leave-one-out
# ---------------------------------------------------------------------------


def test_leave_one_out_reference(ref: dict[str, Any]) -> None:
    exp = ref["leave1out_REML"]
    loo = am.leave_one_out(_fit(ref))
    for name in ("estimate", "se", "tau2", "Q", "I2"):
        np.testing.assert_allclose(getattr(loo, name), exp[name], rtol=RTOL_REFIT, err_msg=name)
    assert loo.labels == tuple(f"Study {i + 1}" for i in range(len(ref["yi"])))


@pytest.mark.parametrize(
    ("method", "test"),
    [(m, t) for m in ("REML", "DL", "PM", "ML", "SJ") for t in ("z", "knha")] + [("EE", "z")],
)
def test_leave_one_out_equals_loop(ref: dict[str, Any], method: Method, test: Test) -> None:
    fit = _fit(ref, method=method, test=test, level=0.9)
    loo = am.leave_one_out(fit)
    y, v = fit.yi, fit.vi
    for i in range(fit.k):
        keep = np.arange(fit.k) != i
        r = am.random_effects(yi=y[keep], vi=v[keep], method=method, test=test, level=0.9)
        got = [loo.estimate[i], loo.se[i], loo.tau2[i], loo.Q[i], loo.I2[i], loo.H2[i],
               loo.ci.low[i], loo.ci.high[i], loo.pvalue[i], loo.statistic[i]]
        want = [r.estimate, r.se, r.tau2, r.Q, r.I2, r.H2, r.ci.low, r.ci.high, r.pvalue,
                r.statistic]
        # Same estimator, one batched call vs k single calls: the batched root search
        # stops at the same 1e-10 relative tolerance but may take different Newton
        # steps per row, so agreement is to ~1e-10 (absolute floor for τ² = 0 rows).
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14, err_msg=f"study {i}")


def _count_core_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = _core.fit

    def counting(*args: Any, **kwargs: Any) -> _core.CoreFit:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_core, "fit", counting)
    return calls


def test_refits_are_one_core_call(ref: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    fit = _fit(ref)
    calls = _count_core_fits(monkeypatch)
    am.leave_one_out(fit)
    assert len(calls) == 1
    am.influence(fit)
    assert len(calls) == 2
    am.cumulative(fit)
    assert len(calls) == 3


def test_leave_one_out_frame_and_frozen(ref: dict[str, Any]) -> None:
    loo = am.leave_one_out(_fit(ref))
    df = loo.to_frame()
    assert df.shape == (len(ref["yi"]), 11)
    assert df.index.name == "omitted"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        loo.method = "DL"  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Influence
# ---------------------------------------------------------------------------


def test_influence_reference(ref: dict[str, Any]) -> None:
    exp = ref["influence_REML"]
    inf = am.influence(_fit(ref))
    for name in ("rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "QE_del", "hat", "weight"):
        np.testing.assert_allclose(getattr(inf, name), exp[name], rtol=RTOL_REFIT, err_msg=name)
    if "influence_REML_is_infl" in ref:
        np.testing.assert_array_equal(inf.influential, ref["influence_REML_is_infl"])


def test_influence_shares_leave_one_out(ref: dict[str, Any]) -> None:
    fit = _fit(ref)
    inf = am.influence(fit)
    loo = am.leave_one_out(fit)
    # Identical computation (the same batched refit): exact equality.
    np.testing.assert_array_equal(inf.tau2_del, loo.tau2)
    np.testing.assert_array_equal(inf.QE_del, loo.Q)
    # weights are the result's percentage weights (closed form: round-off only).
    np.testing.assert_allclose(inf.weight, fit.weights, rtol=1e-12)
    np.testing.assert_allclose(inf.hat.sum(), 1.0, rtol=1e-12)


def test_influence_flags_an_outlier() -> None:
    yi = np.array([0.10, 0.12, 0.08, 0.11, 0.09, 0.10, 1.50])
    vi = np.array([0.010, 0.012, 0.011, 0.009, 0.010, 0.012, 0.010])
    inf = am.influence(am.random_effects(yi=yi, vi=vi, method="DL"))
    assert inf.influential[-1]
    assert not inf.influential[:-1].any()
    assert inf.rstudent[-1] > 3
    text = str(inf)
    assert "rstudent" in text and "*" in text
    assert list(inf.to_frame().index) == list(inf.labels)


# ---------------------------------------------------------------------------
# Cumulative
# ---------------------------------------------------------------------------


def test_cumulative_reference(ref: dict[str, Any]) -> None:
    if "cumulative_REML" not in ref:
        pytest.skip("no cumulative reference in this file")
    exp = ref["cumulative_REML"]
    cum = am.cumulative(_fit(ref))
    for name in ("estimate", "se", "Q"):
        np.testing.assert_allclose(getattr(cum, name), exp[name], rtol=RTOL_REFIT, err_msg=name)
    np.testing.assert_allclose(cum.ci.low, exp["ci_lb"], rtol=RTOL_REFIT)
    np.testing.assert_allclose(cum.ci.high, exp["ci_ub"], rtol=RTOL_REFIT)
    # Where the REML root is at the boundary, metafor reports τ² ~ 1e-13 instead
    # of 0 (its Fisher scoring stops just inside), hence the absolute floors: 1e-10
    # for τ² and, since I² ≈ 100 τ²/ṽ with ṽ ~ 1e-2 here, 1e-6 (percent) for I².
    np.testing.assert_allclose(cum.tau2, exp["tau2"], rtol=RTOL_REFIT, atol=1e-10)
    np.testing.assert_allclose(cum.I2, exp["I2"], rtol=RTOL_REFIT, atol=1e-6)
    assert cum.k.tolist() == list(range(1, len(ref["yi"]) + 1))


def test_cumulative_order(ref: dict[str, Any]) -> None:
    fit = _fit(ref)
    k = fit.k
    key = -fit.vi  # sort key: most variable studies first
    by_key = am.cumulative(fit, order=key)
    idx = np.argsort(key, kind="stable")
    # a sort key, as metafor 3.8.1's cumul(order =): sorting by the inverse
    # permutation of idx puts the studies in the order idx
    by_inverse = am.cumulative(fit, order=np.argsort(idx))
    np.testing.assert_array_equal(by_key.order, idx)
    np.testing.assert_array_equal(by_key.estimate, by_inverse.estimate)
    # metafor: cumul(rma(...), order = c(2, 0, 1)) adds study 2 first, then 3, then 1
    three = am.random_effects(yi=[0.1, 0.2, 0.3], vi=[0.01, 0.02, 0.03])
    assert am.cumulative(three, order=[2, 0, 1]).labels == ("Study 2", "Study 3", "Study 1")
    assert by_key.labels == tuple(fit.labels[i] for i in idx)
    # First step is the first study alone; last step is the full fit (same estimator,
    # batched vs single root search: 1e-10 relative).
    assert by_key.estimate[0] == pytest.approx(fit.yi[idx[0]], rel=1e-12)
    assert by_key.tau2[0] == 0.0
    assert by_key.estimate[-1] == pytest.approx(fit.estimate, rel=1e-10)
    assert by_key.tau2[-1] == pytest.approx(fit.tau2, rel=1e-10)
    # A middle step equals random_effects on that prefix.
    j = k // 2
    r = am.random_effects(yi=fit.yi[idx[: j + 1]], vi=fit.vi[idx[: j + 1]])
    assert by_key.estimate[j] == pytest.approx(r.estimate, rel=1e-10)
    assert by_key.to_frame().shape[0] == k


def test_cumulative_bad_order() -> None:
    fit = am.random_effects(yi=[0.1, 0.2, 0.3], vi=[0.01, 0.02, 0.03])
    with pytest.raises(am.exceptions.ModelSpecificationError):
        am.cumulative(fit, order=[0, 1])


# ---------------------------------------------------------------------------
# Influence of meta-regressions (tests/reference/influence_metareg.json)
# ---------------------------------------------------------------------------

_INFL_MR = json.loads((REF_DIR / "influence_metareg.json").read_text())["cases"]


def _nan(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in values], dtype=float)


@pytest.mark.parametrize("case", _INFL_MR, ids=[c["name"] for c in _INFL_MR])
def test_influence_meta_regression_reference(case: dict[str, Any]) -> None:
    """influence() of a meta-regression equals metafor's influence.rma.uni.

    The design is passed as numeric columns (factor dummies included), which gives
    metafor's X exactly.  RTOL_REFIT as above; DFBETAS that are 0 in exact
    arithmetic (EE fits of a factor model) come out as ~1e-15 on both sides, hence
    the absolute floor.  The synthetic case deletes the only study of a level:
    metafor reports NA for it, and so do we (NaN, not flagged).
    """
    X = np.array(case["X"], dtype=float)
    names = case["coef_names"]
    mods = {names[j]: X[:, j] for j in range(1, X.shape[1])}
    res = am.meta_regression(
        yi=case["yi"], vi=case["vi"], moderators=mods, method=case["method"], test=case["test"]
    )
    np.testing.assert_allclose(res.X, X, rtol=0, atol=0)  # same design as metafor's
    inf = am.influence(res)
    assert inf.p == X.shape[1] and inf.coef_names == tuple(res.coef_names)
    for ours, theirs in (
        ("rstudent", "rstudent"), ("dffits", "dffits"), ("cook_d", "cook_d"),
        ("cov_r", "cov_r"), ("tau2_del", "tau2_del"), ("QE_del", "QE_del"),
        ("hat", "hat"), ("weight", "weight"),
    ):
        np.testing.assert_allclose(getattr(inf, ours), _nan(case[theirs]), rtol=RTOL_REFIT,
                                   atol=1e-10, err_msg=ours)
    want_dfbs = np.array([_nan(row) for row in case["dfbetas"]])
    assert inf.dfbetas.shape == want_dfbs.shape
    np.testing.assert_allclose(inf.dfbetas, want_dfbs, rtol=RTOL_REFIT, atol=1e-10)
    want_flag = np.array([bool(x) for x in case["is_infl"]])
    np.testing.assert_array_equal(inf.influential, want_flag)
    frame = inf.to_frame()
    assert [c for c in frame.columns if c.startswith("dfbetas")] == [
        f"dfbetas[{n}]" for n in res.coef_names
    ]


def test_influence_of_a_saturated_regression_is_an_error() -> None:
    """k = p: every deletion leaves a coefficient inestimable (metafor: all NA)."""
    res = am.meta_regression(
        yi=[0.1, 0.4, 0.2], vi=[0.02, 0.03, 0.04],
        moderators={"x": [0.0, 1.0, 3.0], "z": [1.0, 0.0, 2.0]}, method="EE",
    )
    with pytest.raises(am.exceptions.ModelSpecificationError, match="estimable"):
        am.influence(res)


def test_influence_when_deletions_leave_no_df_for_tau2() -> None:
    """k - 1 = p: each refit has as many coefficients as studies, which rma() fits
    under EE but not with τ² (metafor: all NA).  EE rstudent from R:
    influence(rma(yi, vi, mods = ~ x1 + x2 + x3, method = "EE"))."""
    data = {
        "yi": [0.1, 0.2, 0.3, 0.25, 0.4], "vi": [0.02, 0.017, 0.014, 0.0125, 0.03],
        "moderators": {"x1": [1.0, 2.0, 4.0, 3.0, 5.0], "x2": [3.0, 1.0, 2.0, 2.0, 6.0],
                       "x3": [5.0, 5.0, 1.0, 2.0, 3.0]},
    }
    reml = am.meta_regression(**data)  # type: ignore[arg-type]
    with pytest.raises(am.exceptions.ModelSpecificationError, match="residual df for tau"):
        am.influence(reml)
    ee = am.influence(am.meta_regression(**data, method="EE"))  # type: ignore[arg-type]
    # 1e-6: the metafor value is printed to 7 digits
    np.testing.assert_allclose(
        ee.rstudent, [-0.1338185, 0.1338185, -0.1338185, 0.1338185, 0.1338185], rtol=1e-6
    )


@pytest.mark.parametrize("method", ["EE", "REML"])
def test_uncentred_year_moderator_is_exact(method: str) -> None:
    """Diagnostics do not depend on centring a moderator such as a publication year.

    ``year`` and ``year - 2008`` span the same model, so every diagnostic that does
    not involve the intercept's own coefficient is identical in exact arithmetic.
    With years 2005-2012, ``cond(X'WX)`` is about 1e10: least squares by the normal
    equations lost up to 4e-6 relative in DFBETAS here (metafor loses as much); the
    QR route keeps errors near ``eps cond(W^½X)``, below 1e-8 (1e-7 for DFBETAS,
    differences of nearly equal coefficients).
    """
    rng = np.random.default_rng(3)
    k = 30
    year = rng.integers(2005, 2013, k).astype(float)
    g = rng.choice(["a", "b"], k)
    v = rng.uniform(0.01, 0.2, k)
    y = 0.02 * (year - 2000) + rng.normal(0, 0.6, k)
    raw = am.meta_regression(yi=y, vi=v, moderators={"g": g, "year": year}, method=method)
    cen = am.meta_regression(yi=y, vi=v, moderators={"g": g, "year": year - 2008},
                             method=method)
    # τ²: the iterative estimators stop at 1e-10 relative
    np.testing.assert_allclose(raw.tau2, cen.tau2, rtol=1e-10, atol=1e-14)
    a, b = am.influence(raw), am.influence(cen)
    for name in ("dffits", "rstudent", "cook_d", "cov_r", "hat"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-8, err_msg=name)
    np.testing.assert_allclose(a.dfbetas[:, 1:], b.dfbetas[:, 1:], rtol=1e-7)
