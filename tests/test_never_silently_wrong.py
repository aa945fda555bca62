"""Never silently wrong (issue 18): missing values, scale, bad inputs, dask, copies.

Each test quotes the reproducer of the defect it guards against; every one of them
failed on main before the fix (the report lists before and after).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alliance_meta as am
from alliance_meta.core.estimators import ESTIMATORS
from alliance_meta.exceptions import (
    AllianceMetaWarning,
    ConvergenceWarning,
    DataOmittedWarning,
    InvalidStudyError,
    ModelSpecificationError,
)

METHODS = list(ESTIMATORS)

# ---------------------------------------------------------------------------
# Item 1: pool_many dropped studies with a NaN effect silently
# ---------------------------------------------------------------------------

#: y=[.1,nan,.3,.5,.2,.4,0]; v=[.01,.02,.03,.01,.02,.03,.02]; groups [0,0,0,0,1,1,1]
#: (unequal sizes): pool_many(..., method="REML").k was [3 3], with no error.
Y1 = [0.1, np.nan, 0.3, 0.5, 0.2, 0.4, 0.0]
V1 = [0.01, 0.02, 0.03, 0.01, 0.02, 0.03, 0.02]
G1 = [0, 0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("method", METHODS)
def test_long_format_nan_effect_raises_for_every_estimator(method: str) -> None:
    with pytest.raises(InvalidStudyError) as info:
        am.pool_many(Y1, V1, G1, method=method)  # type: ignore[arg-type]
    assert info.value.study == "#1" and info.value.field == "yi"
    v = list(V1)
    v[5] = np.nan
    y = [0.1, 0.2, 0.3, 0.5, 0.2, 0.4, 0.0]
    with pytest.raises(InvalidStudyError) as info:
        am.pool_many(y, v, G1, method=method)  # type: ignore[arg-type]
    assert info.value.study == "#5" and info.value.field == "vi"


@pytest.mark.parametrize("method", METHODS)
def test_nan_policy_omit_reports_what_it_dropped(method: str) -> None:
    with pytest.warns(DataOmittedWarning, match="omitted 1 studies") as rec:
        res = am.pool_many(Y1, V1, G1, method=method, nan_policy="omit")  # type: ignore[arg-type]
    assert "rows 1" in str(rec[0].message)
    assert res.k.tolist() == [3, 3]
    assert res.omitted.tolist() == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AllianceMetaWarning)
        ref = am.random_effects(yi=[0.1, 0.3, 0.5], vi=[0.01, 0.03, 0.01], method=method)  # type: ignore[arg-type]
    assert math.isclose(res.estimate[0], ref.estimate, rel_tol=1e-12)  # same arithmetic
    # a missing group label is omitted too; infinite values never are
    with pytest.warns(DataOmittedWarning):
        res = am.pool_many([0.1, 0.2, 0.3, 0.4], [0.1] * 4, ["a", None, "a", "a"],
                           method=method, nan_policy="omit")  # type: ignore[arg-type]
    assert res.groups.tolist() == ["a"] and res.omitted.tolist() == [1]
    with pytest.raises(InvalidStudyError):
        am.pool_many([0.1, np.inf, 0.3], [0.1] * 3, [0, 0, 0], method=method,  # type: ignore[arg-type]
                     nan_policy="omit")


def test_padded_nan_in_one_array_raises_or_is_omitted() -> None:
    y = np.array([[0.1, 0.2, np.nan], [0.3, 0.1, 0.2]])
    v = np.array([[0.01, 0.02, 0.03], [0.01, 0.02, 0.03]])
    with pytest.raises(InvalidStudyError) as info:
        am.pool_many(y, v, method="REML")
    assert info.value.study == "analysis 0, study 2"
    with pytest.warns(DataOmittedWarning):
        res = am.pool_many(y, v, method="REML", nan_policy="omit")
    assert res.k.tolist() == [2, 3] and res.omitted.tolist() == [2]
    with pytest.raises(ModelSpecificationError):
        am.pool_many(y, v, nan_policy="drop")  # type: ignore[arg-type]


def test_dask_long_format_nan_effect_raises() -> None:
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"yi": Y1, "vi": V1, "g": G1})
    ddf = dd.from_pandas(df, npartitions=1)  # both groups, of unequal sizes, together
    with pytest.raises(InvalidStudyError):
        am.pool_many(ddf.yi, ddf.vi, ddf.g, method="REML").compute()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Item 3: wrong numbers far from unit scale
# ---------------------------------------------------------------------------

#: Before: at c = 1e100 DL's τ² was 19% low and I² drifted; at c = 1e-80 DL gave
#: τ² = 0 and I² = NaN; a subnormal vi or yi = 1e200 gave NaN.
SCALES = [1e-120, 1e-60, 1.0, 1e60, 1e120]

_sets = st.integers(min_value=0, max_value=2**31 - 1)


def _data(seed: int, k: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.005, 0.3, k) * 10.0 ** rng.uniform(-2, 2)
    y = rng.normal(0.2, 1.0, k) * math.sqrt(float(np.median(v))) * rng.uniform(0.5, 3)
    return y, v


def _fields(r: Any) -> dict[str, float]:
    return {
        "tau2": r.tau2, "I2": r.I2, "H2": r.H2, "Q": r.Q, "estimate": r.estimate,
        "se": r.se, "ci_low": r.ci.low, "pi_high": r.pi.high,
        "tau2_se": math.nan if r.tau2_se is None else r.tau2_se,
    }


#: powers of c each field scales with
POWER = {"tau2": 2, "I2": 0, "H2": 0, "Q": 0, "estimate": 1, "se": 1, "ci_low": 1,
         "pi_high": 1, "tau2_se": 2}


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=_sets)
def test_scale_equivariance_every_estimator(method: str, seed: int) -> None:
    y, v = _data(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AllianceMetaWarning)
        base = _fields(am.random_effects(yi=y, vi=v, method=method))  # type: ignore[arg-type]
        for c in SCALES:
            got = _fields(am.random_effects(yi=y * c, vi=v * c * c, method=method))  # type: ignore[arg-type]
            many = am.pool_many(np.vstack([y, y]) * c, np.vstack([v, v]) * c * c,
                                method=method)  # type: ignore[arg-type]
            long = am.pool_many(np.concatenate([y, y]) * c, np.concatenate([v, v]) * c * c,
                                np.repeat([0, 1], y.size), method=method)  # type: ignore[arg-type]
            for name, p in POWER.items():
                want = base[name] * c**p
                # 1e-9 relative: y*c and v*c*c are themselves rounded (1 ulp each), and
                # iterative estimators stop at 1e-10 relative; absolute floor for a τ²
                # or I² that is 0 up to rounding
                floor = 1e-12 * (c**p if p else 100.0)
                if name != "tau2_se" or not math.isnan(want):
                    assert math.isclose(got[name], want, rel_tol=1e-9, abs_tol=floor), (name, c)
            for res in (many, long):
                for name in ("tau2", "I2", "estimate", "se", "Q"):
                    want = base[name] * c ** POWER[name]
                    floor = 1e-12 * (c ** POWER[name] if POWER[name] else 100.0)
                    assert math.isclose(float(getattr(res, name)[1]), want, rel_tol=1e-9,
                                        abs_tol=floor), (name, c)


def test_subnormal_variances_are_rescaled_exactly() -> None:
    """vi = 5e-320 etc. (subnormal): the same fit as the data times 2^500, 2^1000."""
    v = np.array([5e-320, 1e-319, 2.5e-320, 7e-320, 3e-320])
    y = np.array([1e-160, -2e-160, 3e-160, 0.5e-160, 2e-160])
    for method in METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AllianceMetaWarning)
            r = am.random_effects(yi=y, vi=v, method=method)  # type: ignore[arg-type]
            b = am.random_effects(yi=y * 2.0**500, vi=v * 2.0**1000, method=method)  # type: ignore[arg-type]
        assert np.isfinite([r.estimate, r.se, r.Q, r.I2]).all()
        # the input subnormals carry 8-11 bits, but the fit of the same numbers
        # rescaled by a power of two is the same to round-off
        assert math.isclose(r.estimate * 2.0**500, b.estimate, rel_tol=1e-12)
        assert math.isclose(r.I2, b.I2, rel_tol=1e-9, abs_tol=1e-9)


def test_huge_effects_are_rescaled_or_refused() -> None:
    """yi = 1e200: computed where the result is representable, else refused."""
    for method in METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AllianceMetaWarning)
            r = am.random_effects(yi=[1e200] * 4, vi=[0.01, 0.02, 0.03, 0.01], method=method)  # type: ignore[arg-type]
        assert r.estimate == 1e200 and r.tau2 == 0.0 and np.isfinite([r.se, r.I2]).all()
    # effects 1e199 apart with variances 1e298: tau^2 ~ 1e398 is beyond double range
    with pytest.raises(InvalidStudyError, match="tau\\^2"):
        am.random_effects(yi=[1e200, 1.2e200, 0.9e200, 1.1e200], vi=[4e298, 1e298, 2e298, 3e298])
    # 1e200 next to ordinary effects is ~1e200 standard errors away: Q ~ 1e400
    with pytest.raises(InvalidStudyError) as info:
        am.random_effects(yi=[1e200, 0.1, 0.3], vi=[1.0, 1.0, 1.0])
    assert info.value.field == "yi" and info.value.study == "#0"
    # variances 1e-320 and 0.01 in one analysis span beyond double precision
    with pytest.raises(InvalidStudyError) as info:
        am.pool_many([0.1, 0.2, 0.3, 0.1, 0.2], [1e-320, 0.01, 0.02, 0.01, 0.02],
                     [0, 0, 0, 1, 1], method="REML")
    assert info.value.field == "vi" and info.value.study == "#0"


# ---------------------------------------------------------------------------
# Item 5: inputs accepted silently
# ---------------------------------------------------------------------------


def test_measure_typo_is_refused() -> None:
    """measure="zcor" was accepted and left the estimate without back-transformation."""
    with pytest.raises(InvalidStudyError, match="did you mean 'ZCOR'"):
        am.random_effects(yi=[0.1, 0.2], vi=[0.1, 0.1], measure="zcor")  # type: ignore[arg-type]
    with pytest.raises(InvalidStudyError, match="unknown measure"):
        am.pool_many([[0.1, 0.2]], [[0.1, 0.1]], measure="ZCORR")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    [True, False, True],
    [1 + 2j, 1.0, 2.0],
    np.array([0.1 + 2j, 0.2, 0.3]),
    np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[D]"),
    np.array([1, 2, 3], dtype="timedelta64[s]"),
])
@pytest.mark.parametrize("field", ["yi", "vi"])
def test_non_numeric_effects_and_variances_are_refused(bad: Any, field: str) -> None:
    """bool, complex (imaginary part dropped), datetime64 and timedelta64 were read as
    numbers."""
    kw = {"yi": [0.1, 0.2, 0.3], "vi": [0.1, 0.1, 0.1], field: bad}
    with pytest.raises(InvalidStudyError) as info:
        am.random_effects(**kw)
    assert info.value.field == field
    with pytest.raises(InvalidStudyError):
        am.pool_many(kw["yi"], kw["vi"], [0, 0, 0])


def test_mixed_and_missing_group_labels() -> None:
    """Labels [1, "1"] were merged into one group; None and NaN labels formed groups
    of their own and unsorted the groups."""
    with pytest.raises(InvalidStudyError, match="mix kinds") as info:
        am.pool_many([0.1, 0.2, 0.3, 0.4], [0.1] * 4, [1, "1", 1, "1"], method="DL")
    assert info.value.field == "groups"
    for missing in (None, np.nan):
        with pytest.raises(InvalidStudyError, match="missing") as info:
            am.pool_many([0.1, 0.2, 0.3, 0.4, 0.5], [0.1] * 5,
                         ["b", missing, "a", "a", "b"], method="DL")
        assert info.value.study == "#1" and info.value.field == "groups"


def test_study_set_sample_sizes_and_moderators() -> None:
    """from_arrays(n=[10.5, -3]) stored NaN; a wrong-length n raised IndexError;
    moderators={"x": "ab"} was split into characters."""
    with pytest.raises(InvalidStudyError) as info:
        am.StudySet.from_arrays([0.1, 0.2], [0.01, 0.01], n=[10.5, -3])
    assert info.value.field == "n" and info.value.study == "1"
    with pytest.raises(InvalidStudyError, match="3 values for 2 studies"):
        am.StudySet.from_arrays([0.1, 0.2], [0.01, 0.01], n=[10, 20, 30])
    with pytest.raises(InvalidStudyError) as info:
        am.StudySet.from_arrays([0.1, 0.2], [0.01, 0.01], moderators={"x": "ab"})
    assert info.value.field == "x"


def test_level_none_and_thread_count() -> None:
    """level=None raised a raw TypeError, a non-integer ALLIANCE_META_NUM_THREADS a raw
    ValueError."""
    with pytest.raises(ModelSpecificationError, match="level"):
        am.random_effects(yi=[0.1, 0.2], vi=[0.1, 0.1], level=None)  # type: ignore[arg-type]
    with pytest.raises(ModelSpecificationError, match="level"):
        am.pool_many([[0.1, 0.2]], [[0.1, 0.1]], level="0.95")  # type: ignore[arg-type]


def test_thread_count_must_be_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIANCE_META_NUM_THREADS", "two")
    with pytest.raises(ModelSpecificationError, match="ALLIANCE_META_NUM_THREADS"):
        am.pool_many([[0.1, 0.2], [0.3, 0.1]], [[0.1, 0.1], [0.1, 0.2]], method="DL")


# ---------------------------------------------------------------------------
# Item 6: dask
# ---------------------------------------------------------------------------


def test_dask_groups_spanning_partitions() -> None:
    """Long format did not check that each group lies in one partition: 50 groups
    came back as 200 rows of partial analyses."""
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(6)
    g = np.tile(np.arange(50), 8)  # every group spread over every partition
    y = rng.normal(0, 0.3, g.size)
    v = rng.uniform(0.01, 0.1, g.size)
    ddf = dd.from_pandas(pd.DataFrame({"yi": y, "vi": v, "g": g}), npartitions=4, sort=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AllianceMetaWarning)
        out = am.pool_many(ddf.yi, ddf.vi, ddf.g, method="REML").compute()  # type: ignore[attr-defined]
        ref = am.pool_many(y, v, g, method="REML")
    out = out.sort_index()
    assert len(out) == 50 and out["k"].tolist() == [8] * 50
    # same arithmetic on the same groups: round-off only
    np.testing.assert_allclose(out["tau2"].to_numpy(), ref.tau2, rtol=1e-12, atol=1e-14)


def test_dask_array_errors_name_the_global_row() -> None:
    """2-D errors named the row within the block ("analysis 1")."""
    da = pytest.importorskip("dask.array")
    y = np.full((10, 3), 0.1)
    v = np.full((10, 3), 0.02)
    v[7, 2] = -1.0
    lazy = am.pool_many(da.from_array(y, chunks=(3, 3)), da.from_array(v, chunks=(3, 3)))
    with pytest.raises(InvalidStudyError) as info:
        lazy.compute()  # type: ignore[attr-defined]
    assert info.value.study == "analysis 7, study 2" and info.value.field == "vi"


# ---------------------------------------------------------------------------
# Item 9: pool_many kept references to its inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["padded", "long"])
def test_changing_the_inputs_afterwards_changes_nothing(layout: str) -> None:
    """Changing the caller's arrays after pool_many changed tau2_se and
    heterogeneity_ci()."""
    rng = np.random.default_rng(9)
    y = rng.normal(0, 0.4, (6, 8))
    v = rng.uniform(0.01, 0.1, (6, 8))
    if layout == "padded":
        args: tuple[Any, ...] = (y, v)
    else:
        args = (y.ravel(), v.ravel(), np.repeat(np.arange(6), 8))
    res = am.pool_many(*args, method="DL")
    fresh = am.pool_many(*(np.copy(a) for a in args), method="DL")
    for a in args[:2]:
        a *= 3.0  # the caller reuses its buffers
    np.testing.assert_array_equal(res.tau2_se, fresh.tau2_se)
    np.testing.assert_array_equal(res.heterogeneity_ci().tau2.high,
                                  fresh.heterogeneity_ci().tau2.high)


# ---------------------------------------------------------------------------
# Item 4: bad moderators were dropped as "redundant", not refused
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.inf, -np.inf, 1e160, -3e200, 1e155])
@pytest.mark.parametrize("through", ["mapping", "studyset"])
def test_bad_moderator_is_refused_naming_it(bad: float, through: str) -> None:
    """An infinite moderator value, or one so large that the design overflows
    (>= 1e160), was dropped as redundant and the fit came back intercept-only."""
    y = [0.1, 0.3, 0.35, 0.2, 0.5, 0.4]
    v = [0.01, 0.02, 0.015, 0.01, 0.02, 0.03]
    x = [1.0, 2.0, 3.0, bad, 5.0, 6.0]
    with pytest.raises(InvalidStudyError) as info:
        if through == "mapping":
            am.meta_regression(yi=y, vi=v, moderators={"dose": x})
        else:
            ss = am.StudySet.from_arrays(y, v, moderators={"dose": x})
            am.meta_regression(ss, moderators=["dose"])
    assert info.value.field == "dose"
    assert info.value.study in ("Study 4", "4")


def test_large_but_representable_moderator_is_fitted() -> None:
    """1e100 is far from unit scale but computable: the slope is 1e-100 times the
    slope of the same data with x / 1e100 (not dropped, not wrong)."""
    y = [0.1, 0.3, 0.35, 0.2, 0.5, 0.4]
    v = [0.01, 0.02, 0.015, 0.01, 0.02, 0.03]
    x = np.array([1.0, 2.0, 3.0, 2.5, 5.0, 6.0])
    big = am.meta_regression(yi=y, vi=v, moderators={"x": x * 1e100}, method="REML")
    ref = am.meta_regression(yi=y, vi=v, moderators={"x": x}, method="REML")
    assert big.coef_names == ("intrcpt", "x")
    # 1e-9: x * 1e100 is rounded (1 ulp) and τ² is solved to 1e-10 relative
    assert math.isclose(big.coef[1] * 1e100, ref.coef[1], rel_tol=1e-9)
    assert math.isclose(big.tau2, ref.tau2, rel_tol=1e-9, abs_tol=1e-15)


# ---------------------------------------------------------------------------
# Item 8: refits hid their warnings and had no converged flag
# ---------------------------------------------------------------------------

#: Nine studies of dat.lau1992 (tests/reference/reml_peaks.json, lau1992_subset)
#: whose REML maximum metafor misses; with a tenth study added, the leave-one-out
#: refit without it is that set.
LAU_Y = [-0.973494728720767, -1.84054963339749, 0.950482096622434, -0.534542150383307,
         -0.293632172461735, -2.75066650325663, -0.8754687373539, -0.214873456771805,
         0.378653850657507]
LAU_V = [0.13597512393328, 0.602857142857143, 0.517537449762514, 0.654583333333333,
         0.0024963987305287, 2.22856078546151, 1.68333333333333, 0.00329905878367789,
         0.147032436162871]


def test_refits_surface_one_warning_naming_rows() -> None:
    """leave_one_out, influence and cumulative swallowed the ConvergenceWarnings of
    their inner fits and exposed no converged flag."""
    y = [*LAU_Y, 0.1]
    v = [*LAU_V, 0.05]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AllianceMetaWarning)
        fit = am.random_effects(yi=y, vi=v, method="REML")
    for fn in (am.leave_one_out, am.influence):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            res = fn(fit)
        msgs = [str(w.message) for w in rec if issubclass(w.category, ConvergenceWarning)]
        assert len(msgs) == 1 and "'Study 10'" in msgs[0]
        assert res.converged.shape == (10,) and res.converged.dtype == bool
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        cum = am.cumulative(fit)
    msgs = [str(w.message) for w in rec if issubclass(w.category, ConvergenceWarning)]
    assert len(msgs) == 1 and "'Study 9'" in msgs[0]  # the step that pools the nine
    assert cum.converged.all()  # the search converged; its maximum is metafor's miss


def test_refits_report_non_convergence(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refit whose τ² search did not converge is flagged and named."""
    import alliance_meta.core.univariate as uni

    real = uni.estimate_tau2

    def flaky(kern: Any, method: Any, with_se: bool = True, **kw: Any) -> Any:
        est = real(kern, method, with_se, **kw)
        conv = np.asarray(est.converged).copy()
        conv[0] = False  # the first refit of each batch "did not converge"
        return type(est)(est.tau2, est.se, est.iterations, conv, est.differs, est.tau2_k)

    fit = am.random_effects(yi=[0.1, 0.3, 0.35, 0.2, 0.5], vi=[0.01, 0.02, 0.015, 0.01, 0.02])
    monkeypatch.setattr(uni, "estimate_tau2", flaky)
    with pytest.warns(am.exceptions.ConvergenceWarning, match="did not converge: 'Study 1'"):
        res = am.leave_one_out(fit)
    assert res.converged.tolist() == [False, True, True, True, True]
