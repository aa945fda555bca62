"""pool_many (vectorised, chunked, threaded) against a loop of the scalar API.

The scalar ``random_effects`` is the m = 1 call of the same core, so agreement is
limited only by floating-point summation order (chunking, padding and the study-major
layout change which terms are added together), hence the tolerances below.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alliance_meta as am
from alliance_meta import pool_many
from alliance_meta.core.estimators import ESTIMATORS

METHODS = list(ESTIMATORS)  # every estimator of the registry
# τ² and estimates agree to 1e-10: the iterative estimators stop at 1e-10 relative
# step size, and two paths that sum in a different order can stop one Newton step
# apart; closed-form estimators agree to a few ulps.
RTOL = 1e-10
ATOL = 1e-12  # absolute floor for quantities that are exactly 0 on one side (τ² = 0)


def _ragged(seed: int, G: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # very unequal group sizes including k = 1 and k = 2
    sizes = rng.choice([1, 2, 3, 5, 12, 40, 150], size=G, p=[0.1, 0.15, 0.2, 0.2, 0.2, 0.1, 0.05])
    labels = rng.permutation(G) * 3 + 7  # non-contiguous integer labels
    g = np.repeat(labels, sizes)
    n = g.size
    v = rng.uniform(0.005, 0.3, n) * rng.choice([1.0, 10.0], n)
    tau = rng.choice([0.0, 0.1, 0.4], G)
    mu = rng.normal(0.2, 1, G).repeat(sizes) * 0.3
    y = mu + rng.normal(0, np.repeat(tau, sizes)) + rng.normal(0, np.sqrt(v))
    perm = rng.permutation(n)
    return y[perm], v[perm], g[perm]


def _scalar(y: np.ndarray, v: np.ndarray, method: str) -> am.PoolResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return am.random_effects(yi=y, vi=v, method=method)  # type: ignore[arg-type]


def _se(res: am.PoolResult) -> float:
    """The scalar result's τ² standard error, NaN where it reports none (EE, k = 1)."""
    return np.nan if res.tau2_se is None else res.tau2_se


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("method", METHODS)
def test_ragged_equals_scalar_loop(method: str) -> None:
    y, v, g = _ragged(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pool_many(y, v, g, method=method)  # type: ignore[arg-type]
    assert np.array_equal(res.groups, np.unique(g))
    for i, lab in enumerate(res.groups):
        sel = g == lab
        ref = _scalar(y[sel], v[sel], method)
        assert res.k[i] == ref.k
        _close(np.array([res.tau2[i], res.estimate[i], res.se[i], res.Q[i], res.I2[i],
                         res.tau2_se[i]]),
               np.array([ref.tau2, ref.estimate, ref.se, ref.Q, ref.I2, _se(ref)]))


@pytest.mark.parametrize("method", METHODS)
def test_nan_padded_equals_scalar_loop(method: str) -> None:
    rng = np.random.default_rng(2)
    m, n = 200, 15
    v = rng.uniform(0.01, 0.2, (m, n))
    y = rng.normal(0, 0.4, (m, n))
    kk = rng.integers(1, n + 1, m)
    absent = np.arange(n)[None, :] >= kk[:, None]
    # scatter the absences so they are not all trailing
    for i in range(m):
        absent[i] = rng.permutation(absent[i])
    y[absent] = np.nan
    v[absent] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pool_many(y, v, method=method)  # type: ignore[arg-type]
    for i in range(m):
        keep = ~absent[i]
        ref = _scalar(y[i, keep], v[i, keep], method)
        _close(np.array([res.tau2[i], res.estimate[i], res.se[i], res.Q[i], res.tau2_se[i]]),
               np.array([ref.tau2, ref.estimate, ref.se, ref.Q, _se(ref)]))


@pytest.mark.filterwarnings("ignore::alliance_meta.exceptions.FewStudiesWarning")  # k = 1 groups
# two of the 2000 random analyses have a REML maximum above the local one metafor stops
# at (pool_many warns); the test compares chunkings, not those warnings
@pytest.mark.filterwarnings(
    "ignore:the REML likelihood:alliance_meta.exceptions.ConvergenceWarning"
)
def test_many_chunks_and_threads_equal_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    y, v, g = _ragged(3, G=2000)
    res = pool_many(y, v, g, method="REML")
    monkeypatch.setenv("ALLIANCE_META_NUM_THREADS", "1")
    monkeypatch.setattr("alliance_meta.core.layout.CHUNK_CELLS", 37)
    small = pool_many(y, v, g, method="REML")
    # same per-analysis arithmetic; only the chunk boundaries differ
    np.testing.assert_allclose(small.tau2, res.tau2, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(small.estimate, res.estimate, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("method", ["DL", "REML"])
def test_long_with_labels_0_to_g_equals_2d(method: str, ragged: bool) -> None:
    """Shuffled long input labelled 0..G-1 (its own group codes) equals the 2-D input.

    Equal group sizes take the path where the code is the size rank; ``ragged``
    removes studies so that sizes differ (compared with the NaN-padded 2-D input).
    """
    rng = np.random.default_rng(5)
    m, n = 700, 7
    y = rng.normal(0.2, 0.5, (m, n))
    v = rng.uniform(0.01, 0.3, (m, n))
    if ragged:
        absent = rng.random((m, n)) < 0.3
        absent[:, 0] = False  # every analysis keeps a study, so every label occurs
        y[absent] = np.nan
        v[absent] = np.nan
    g = np.repeat(np.arange(m), n)
    keep = ~np.isnan(y.ravel())
    perm = rng.permutation(int(keep.sum()))
    yl, vl, gl = y.ravel()[keep][perm], v.ravel()[keep][perm], g[keep][perm]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wide = pool_many(y, v, method=method)  # type: ignore[arg-type]
        long = pool_many(yl, vl, gl, method=method)  # type: ignore[arg-type]
    assert np.array_equal(long.groups, np.arange(m))
    assert np.array_equal(long.k, wide.k)
    for name in ("tau2", "estimate", "se", "Q"):
        _close(getattr(long, name), getattr(wide, name))


def test_heterogeneity_ci_equals_scalar() -> None:
    y, v, g = _ragged(4, G=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pool_many(y, v, g, method="REML")
    ci = res.heterogeneity_ci()
    for i, lab in enumerate(res.groups):
        sel = g == lab
        if sel.sum() < 2:
            continue
        ref = _scalar(y[sel], v[sel], "REML").heterogeneity_ci()
        _close(np.array([ci.tau2.low[i], ci.tau2.high[i]]), np.array([ref.tau2.low, ref.tau2.high]))


def test_derived_fields_are_lazy_and_match_scalar() -> None:
    """ManyPoolResult computes tests, intervals, I², H² on first access, with the
    same values as the scalar path (1e-12: identical formulas, array round-off)."""
    rng = np.random.default_rng(7)
    y = rng.normal(0, 1, (40, 6))
    v = rng.uniform(0.05, 0.5, (40, 6))
    for test in ("z", "knha"):
        many = pool_many(y, v, method="DL", test=test, level=0.9)
        for i in (0, 17, 39):
            one = am.random_effects(yi=y[i], vi=v[i], method="DL", test=test, level=0.9)
            got = [many.statistic[i], many.pvalue[i], many.ci.low[i], many.pi.high[i],
                   many.Q_pvalue[i], many.I2[i], many.H2[i]]
            want = [one.statistic, one.pvalue, one.ci.low, one.pi.high, one.Q_pvalue,
                    one.I2, one.H2]
            np.testing.assert_allclose(got, want, rtol=1e-12)
            assert (many.df[i] == one.df) if one.df is not None else np.isnan(many.df[i])


# -- properties -------------------------------------------------------------

_data = st.integers(min_value=0, max_value=2**32 - 1)


def _random_2d(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m, n = 30, int(rng.integers(2, 12))
    v = rng.uniform(0.01, 0.5, (m, n))
    y = rng.normal(0, 1, (m, n)) * rng.uniform(0.05, 1.0, (m, 1))
    return y, v


PROP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Random data sometimes have an ML/REML maximum above the local one metafor stops at,
# which pool_many reports with a warning; the properties below are about invariances
# and ranges, which that warning does not change.
LL0_WARNING = pytest.mark.filterwarnings(
    "ignore:the (ML|REML) likelihood:alliance_meta.exceptions.ConvergenceWarning"
)


@LL0_WARNING
@PROP
@given(_data, st.sampled_from(["DL", "REML", "PM", "ML", "SJ"]))
def test_order_invariance(seed: int, method: str) -> None:
    y, v = _random_2d(seed)
    perm = np.random.default_rng(seed + 1).permutation(y.shape[1])
    a = pool_many(y, v, method=method)  # type: ignore[arg-type]
    b = pool_many(y[:, perm], v[:, perm], method=method)  # type: ignore[arg-type]
    # permuting studies only reorders sums: ulp-level changes, amplified by the
    # 1e-10 stopping rule of the iterative estimators
    np.testing.assert_allclose(b.tau2, a.tau2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.estimate, a.estimate, rtol=1e-9, atol=1e-12)


@LL0_WARNING
@PROP
@given(_data, st.sampled_from(METHODS))
def test_ranges(seed: int, method: str) -> None:
    y, v = _random_2d(seed)
    r = pool_many(y, v, method=method)  # type: ignore[arg-type]
    assert (r.tau2 >= 0).all()  # exact: every estimator is truncated at 0
    assert ((r.I2 >= 0) & (r.I2 <= 100)).all()  # exact: a ratio of non-negatives


@LL0_WARNING
@PROP
@given(_data, st.floats(min_value=-50, max_value=50), st.sampled_from(["DL", "REML", "PM"]))
def test_shift(seed: int, c: float, method: str) -> None:
    y, v = _random_2d(seed)
    a = pool_many(y, v, method=method)  # type: ignore[arg-type]
    b = pool_many(y + c, v, method=method)  # type: ignore[arg-type]
    # a shift perturbs the effects by rounding of order eps * |c|, and Q keeps its
    # moment form only where that is accurate to ~1e-12 relative (else residuals);
    # τ² then moves by a relative 1e-10 at most (stop rule)
    np.testing.assert_allclose(b.estimate, a.estimate + c, rtol=0, atol=1e-12 * (1 + abs(c)) * 100)
    np.testing.assert_allclose(b.tau2, a.tau2, rtol=1e-8, atol=1e-12 * (1 + abs(c)))


@LL0_WARNING
@PROP
@given(_data, st.floats(min_value=0.01, max_value=100), st.sampled_from(["DL", "REML", "PM", "HE"]))
def test_scale(seed: int, c: float, method: str) -> None:
    y, v = _random_2d(seed)
    a = pool_many(y, v, method=method)  # type: ignore[arg-type]
    b = pool_many(y * c, v * c * c, method=method)  # type: ignore[arg-type]
    # every estimator is equivariant: τ² scales by c²; rounding of the scaled inputs
    # and the 1e-10 stopping rule allow ~1e-9 relative
    np.testing.assert_allclose(b.tau2, a.tau2 * c * c, rtol=1e-8, atol=1e-14 * c * c)
    np.testing.assert_allclose(b.estimate, a.estimate * c, rtol=1e-8, atol=1e-13 * c)


@pytest.mark.parametrize("long", [False, True])
@pytest.mark.parametrize("method", ["EE", "DL", "HS", "PM"])
def test_q_is_shift_invariant_for_large_offsets(method: str, long: bool) -> None:
    """Q, τ² and the estimate's deviation do not depend on where the effects sit.

    The kernel takes Q at fixed weights from moments, Σwy² - (Σwy)²/S1, which
    cancels catastrophically when the pooled z² dwarfs Q; those rows must fall back
    to explicit residuals.  An offset of 1e4 makes Σwy²/Q about 1e9 here, so the
    moment form alone would lose about 9 digits.  1e-9: the offset itself rounds
    each effect at 1e4 * eps = 2e-12 absolute, i.e. ~1e-11 relative in Q.  Shuffled
    long input takes the ungrouped scatter kernel for EE, DL and HS, whose fallback
    gathers those rows.
    """
    rng = np.random.default_rng(11)
    y = rng.normal(0, 0.3, (500, 9))
    v = rng.uniform(0.01, 0.1, (500, 9))
    g = None
    if long:
        perm = rng.permutation(y.size)
        y, v = y.ravel()[perm], v.ravel()[perm]
        g = np.repeat(np.arange(500), 9)[perm]
    base = pool_many(y, v, g, method=method)  # type: ignore[arg-type]
    far = pool_many(y + 1e4, v, g, method=method)  # type: ignore[arg-type]
    np.testing.assert_allclose(far.Q, base.Q, rtol=1e-9)
    np.testing.assert_allclose(far.tau2, base.tau2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(far.estimate - 1e4, base.estimate, rtol=0, atol=1e-9)


@pytest.mark.parametrize("need", ["BETA", "FIT", "DL", "MOMENTS"])
def test_scatter_kernel_equals_padded_kernel(need: str) -> None:
    """The ungrouped long-format kernel gives the padded kernel's moment-level Stats.

    Groups of every size from 1 to 40 (padding), a study dominating its group's
    weights (the trace fallback) and a 1e5 offset in some groups (the Q fallback);
    both at τ² = 0 and at positive τ².  The sums are taken in another order, hence
    1e-12 relative (1e-12 absolute for quantities that cancel to near 0).
    """
    from alliance_meta.core.kernel import Need, kernel_from_long, kernel_from_padded

    level = Need[need]

    rng = np.random.default_rng(5)
    G = 400
    sizes = rng.integers(1, 41, G)
    g = np.repeat(np.arange(G), sizes)
    v = rng.uniform(0.01, 0.3, g.size)
    first = np.cumsum(sizes) - sizes
    v[first[::7]] = 1e-6  # dominant study
    y = rng.normal(0, 0.5, g.size) + np.repeat(np.where(np.arange(G) % 5 == 0, 1e5, 0.0), sizes)
    perm = rng.permutation(g.size)
    scat = kernel_from_long(y[perm], v[perm], g[perm], sizes.astype(np.int64))
    n = int(sizes.max())
    Y = np.full((G, n), np.nan)
    V = np.full((G, n), np.nan)
    col = np.arange(g.size) - np.repeat(first, sizes)
    Y[g, col], V[g, col] = y, v
    pad = kernel_from_padded(Y, V)
    for tau2 in (np.zeros(G), rng.uniform(0, 0.5, G)):
        a, b = scat.weighted(tau2, level), pad.weighted(tau2, level)
        for name in ("S1", "beta", "Q", "S2", "trP", "trPP"):
            x, z = getattr(a, name), getattr(b, name)
            if name == "Q" and not level & Need.Q:
                continue  # not computed for this need (NaN)
            if z is None:
                assert x is None
            else:
                np.testing.assert_allclose(x, z, rtol=1e-12, atol=1e-12, err_msg=name)


_BAD_METHODS = ["EE", "DL", "HE", "SJ", "REML", "PM"]


@pytest.mark.parametrize("method", _BAD_METHODS)
@pytest.mark.parametrize(
    ("field", "value"),
    [("yi", np.nan), ("yi", np.inf), ("yi", -np.inf), ("vi", np.nan), ("vi", np.inf),
     ("vi", 0.0), ("vi", -0.1)],
)
def test_long_bad_value_is_named(method: str, field: str, value: float) -> None:
    """A bad value in long input raises an error naming its row and field, and nothing
    else is emitted first (no RuntimeWarning from the core, whichever path it took)."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 6)[rng.permutation(240)]
    y, v = rng.normal(size=240), rng.uniform(0.01, 0.2, 240)
    (y if field == "yi" else v)[37] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(am.exceptions.InvalidStudyError) as info:
            pool_many(y, v, g, method=method)  # type: ignore[arg-type]
    assert info.value.field == field
    assert info.value.study == "#37"


@pytest.mark.parametrize("method", _BAD_METHODS)
@pytest.mark.parametrize(
    ("yv", "field", "study"),
    [
        ((np.inf, 0.1), "yi", "analysis 3, study 2"),
        ((1.0, 0.0), "vi", "analysis 3, study 2"),
        ((1.0, -1.0), "vi", "analysis 3, study 2"),
        # NaN marks an absent study in both arrays; the error names the one lacking it
        ((np.nan, 0.1), "vi", "analysis 3, study 2"),
        ((0.5, np.nan), "yi", "analysis 3, study 2"),
    ],
)
def test_padded_bad_value_is_named(
    method: str, yv: tuple[float, float], field: str, study: str
) -> None:
    rng = np.random.default_rng(1)
    y, v = rng.normal(size=(6, 5)), rng.uniform(0.01, 0.2, (6, 5))
    y[3, 2], v[3, 2] = yv
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(am.exceptions.InvalidStudyError) as info:
            pool_many(y, v, method=method)  # type: ignore[arg-type]
    assert (info.value.field, info.value.study) == (field, study)


def test_shape_errors_and_empty_analysis() -> None:
    y, v = np.ones((3, 4)), np.full((3, 4), 0.1)
    y[1], v[1] = np.nan, np.nan
    with pytest.raises(am.exceptions.InvalidStudyError, match="empty") as info:
        pool_many(y, v)
    assert info.value.study == "analysis 1"
    with pytest.raises(am.exceptions.InvalidStudyError) as info:
        pool_many(np.ones(4), np.ones(4))  # 1-D without groups
    assert info.value.field == "yi"
    with pytest.raises(am.exceptions.InvalidStudyError) as info:
        pool_many(np.ones(4), np.ones(4), [0, 0, 1])
    assert info.value.field == "groups"
    with pytest.raises(am.exceptions.InvalidStudyError) as info:
        pool_many(np.ones((2, 3)), np.ones((2, 4)))
    assert info.value.field == "vi"


@pytest.mark.filterwarnings("ignore::alliance_meta.exceptions.FewStudiesWarning")  # k = 1 groups
@pytest.mark.parametrize("kind", ["str", "object", "float", "wide_int"])
def test_group_labels_of_any_kind(kind: str) -> None:
    """Labels are sorted as ``np.unique`` sorts them, and each group pools exactly as
    the same rows with integer labels.  (A missing label is refused, or dropped under
    nan_policy="omit": tests/test_never_silently_wrong.py.)"""
    y, v, g = _ragged(4, G=60)
    base = pool_many(y, v, g, method="DL")
    rename = {
        "str": lambda i: f"rs{i:05d}",
        "object": lambda i: f"gene-{i}",
        "float": lambda i: i * 0.5,
        "wide_int": lambda i: i * 10**12,
    }[kind]
    names = np.array([rename(i) for i in g], dtype=object if kind == "object" else None)
    res = pool_many(y, v, names, method="DL")
    expected = np.unique(names)
    np.testing.assert_array_equal(res.groups, expected)
    # row of base holding the integer label behind each new label
    back = {str(rename(int(lab))): i for i, lab in enumerate(base.groups)}
    idx = [back[str(lab)] for lab in res.groups]
    _close(res.estimate, base.estimate[idx])
    _close(res.tau2, base.tau2[idx])


def test_default_threads_follow_the_kind_of_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread for the memory-bound moment estimators, two (where there are two
    cores) for the iterative ones; the environment variable overrides both."""
    from alliance_meta.core import layout

    monkeypatch.delenv("ALLIANCE_META_NUM_THREADS", raising=False)
    monkeypatch.setattr(layout.os, "cpu_count", lambda: 8)
    assert layout.n_threads(compute_bound=False) == 1
    assert layout.n_threads(compute_bound=True) == 2
    monkeypatch.setattr(layout.os, "cpu_count", lambda: 1)
    assert layout.n_threads(compute_bound=True) == 1
    monkeypatch.setenv("ALLIANCE_META_NUM_THREADS", "3")
    assert layout.n_threads(compute_bound=False) == 3
