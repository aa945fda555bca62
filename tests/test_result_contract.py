"""Every public result class: frozen, with ``summary()`` (statsmodels) and ``to_frame()``."""

from __future__ import annotations

import copy
import math
import pickle
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np
import pandas as pd
import pytest
from statsmodels.iolib.summary import Summary

import alliance_meta as am
from alliance_meta.results.display import ResultDisplay

#: Public attrs classes that are inputs or value types, not results.
NOT_RESULTS = {
    "EffectSize",
    "Study",
    "StudySet",
    "Moderator",
    "ConfidenceInterval",
    "Control",
    "IntervalArray",
}


def _studies() -> am.StudySet:
    return am.datasets.load_alliance_example().studies()


def _fit() -> am.PoolResult:
    return am.random_effects(_studies())


def _reg() -> am.MetaRegressionResult:
    return am.meta_regression(_studies(), moderators=["rater", "experience"])


def _dep() -> am.StudySet:
    return am.datasets.load_alliance_dependent().studies()


def _dep_fit() -> am.PoolResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", am.exceptions.DependentEffectsWarning)
        return am.random_effects(_dep())


def _dep_reg() -> am.MetaRegressionResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", am.exceptions.DependentEffectsWarning)
        return am.meta_regression(_dep(), moderators=["rater", "dimension"])


def _ml() -> am.MultilevelResult:
    return am.multilevel(_dep(), levels=("study", "label"), moderators="~ rater")


#: One instance of each result class, from the bundled data set.
BUILDERS: dict[str, Callable[[], Any]] = {
    "PoolResult": _fit,
    "BackTransformed": lambda: _fit().back_transformed(),
    "HeterogeneityCI": lambda: _fit().heterogeneity_ci(),
    "ManyPoolResult": lambda: am.pool_many(
        np.arange(24.0).reshape(4, 6) / 40, np.full((4, 6), 0.02), method="DL"
    ),
    "ManyHeterogeneityCI": lambda: am.pool_many(
        np.arange(24.0).reshape(4, 6) / 40, np.full((4, 6), 0.02)
    ).heterogeneity_ci(),
    "SubgroupResult": lambda: am.subgroup_analysis(_studies(), by="rater"),
    "MetaRegressionResult": _reg,
    "RobustResult": lambda: am.robust(_dep_fit(), _dep().study_labels),
    "MultilevelResult": lambda: _ml(),
    "VarianceComponentCI": lambda: _ml().profile_ci(),
    "LikelihoodRatioTest": lambda: am.likelihood_ratio_test(
        _ml(),
        am.multilevel(_dep(), levels=("study", "label"), moderators="~ rater", sigma2=[0.0, None]),
    ),
    "AggregateResult": lambda: am.aggregate(_dep(), cluster="study", rho=0.5),
    "CHEResult": lambda: am.che(_dep(), rho=0.5, moderators="~ rater"),
    "CHESensitivity": lambda: am.che_sensitivity(_dep(), rho=(0.3, 0.7)),
    "RobustWaldTest": lambda: am.robust(_dep_reg(), _dep().study_labels).wald_test(),
    "Prediction": lambda: _reg().predict({"rater": "therapist", "experience": 10.0}),
    "PermutationTestResult": lambda: _reg().permutation_test(n=50, seed=1),
    "EggerTest": lambda: am.egger_test(_fit()),
    "PetPeeseResult": lambda: am.pet_peese(_fit()),
    "RankCorrelationTest": lambda: am.rank_correlation_test(_fit()),
    "TrimAndFillResult": lambda: am.trim_and_fill(_fit()),
    "FailSafeN": lambda: am.fail_safe_n(_fit()),
    "LeaveOneOutResult": lambda: am.leave_one_out(_fit()),
    "CumulativeResult": lambda: am.cumulative(_fit()),
    "InfluenceResult": lambda: am.influence(_fit()),
    "MultilevelLeaveOneOutResult": lambda: am.leave_one_out(_ml()),
    "MultilevelInfluenceResult": lambda: am.influence(_ml(), cluster="study"),
    "EscalcResult": lambda: am.escalc(
        "SMD",
        m1i=[1.0, 2.0, 3.0],
        m2i=0.0,
        sd1i=1.0,
        sd2i=1.0,
        n1i=[10, 20, 30],
        n2i=12,
        flip=[False, True, False],
    ),
    "ModelWaldTest": lambda: _reg().wald_test(),
    "SelectionModelResult": lambda: am.selection_model(_fit(), "halfnorm"),
    "SelectionMetaRegressionResult": lambda: am.selection_model(_reg(), "negexp"),
}


def test_every_public_result_class_is_covered() -> None:
    public = {
        name
        for name in am.__all__
        if isinstance(getattr(am, name), type) and attrs.has(getattr(am, name))
    }
    # a new result class must be added to BUILDERS (and so get these checks)
    assert public - NOT_RESULTS == set(BUILDERS)


@pytest.fixture(params=sorted(BUILDERS))
def result(request: pytest.FixtureRequest) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", am.exceptions.AllianceMetaWarning)
        res = BUILDERS[request.param]()
    assert type(res).__name__ == request.param
    return res


def test_summary_is_a_statsmodels_summary_and_is_str(result: Any) -> None:
    smry = result.summary()
    assert isinstance(smry, Summary)
    text = str(smry)
    assert text.strip()
    assert str(result) == text


def test_to_frame_is_a_dataframe(result: Any) -> None:
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) >= 1


def test_result_is_frozen(result: Any) -> None:
    name = attrs.fields(type(result))[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(result, name, None)


def test_summaries_show_the_numbers() -> None:
    fit = _fit()
    egger = am.egger_test(fit)
    assert f"{egger.statistic:.4f}" in str(egger.summary())
    assert f"{egger.intercept:.4f}" in str(egger.summary())
    rank = am.rank_correlation_test(fit)
    assert f"{rank.tau:.4f}" in str(rank.summary())
    fsn = am.fail_safe_n(fit)
    assert f"{fsn.n:g}" in str(fsn.summary())
    tf = am.trim_and_fill(fit)
    assert f"{tf.result.estimate:.4f}" in str(tf.summary())
    loo = am.leave_one_out(fit)
    text = str(loo.summary())
    assert all(label in text for label in loo.labels)
    assert f"{loo.estimate[0]:.4f}" in text
    bt = fit.back_transformed()
    assert f"{bt.ci.low:.4f}" in str(bt.summary())
    assert bt.to_frame().loc[0, "estimate"] == bt.estimate
    het = fit.heterogeneity_ci()
    assert f"{het.tau2.high:.4f}" in str(het.summary())
    many = am.pool_many(np.arange(24.0).reshape(4, 6) / 40, np.full((4, 6), 0.02))
    # the median row of the quantile table
    assert f"{np.median(many.estimate):.4f}" in str(many.summary())


def _public_arrays(obj: Any, path: str = "") -> list[tuple[str, np.ndarray]]:
    """Every ndarray reachable from ``obj``'s public attributes (and nested results)."""
    found = []
    for name in dir(obj):
        if name.startswith("_"):
            continue
        value = getattr(obj, name)
        if callable(value):
            continue
        if isinstance(value, np.ndarray):
            found.append((f"{path}{name}", value))
        elif attrs.has(type(value)) and type(value).__module__.startswith("alliance_meta"):
            found += _public_arrays(value, f"{path}{name}.")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if attrs.has(type(item)):
                    found += _public_arrays(item, f"{path}{name}[{key!r}].")
        elif isinstance(value, tuple):
            for key, item in enumerate(value):
                if attrs.has(type(item)):
                    found += _public_arrays(item, f"{path}{name}[{key}].")
    return found


def test_result_arrays_are_read_only(result: Any) -> None:
    arrays = _public_arrays(result)
    if type(result).__name__ not in {
        "BackTransformed",
        "HeterogeneityCI",
        "RankCorrelationTest",
        "FailSafeN",
        "EggerTest",
        "PetPeeseResult",
        "RobustWaldTest",
        "ModelWaldTest",
        "LikelihoodRatioTest",
    }:
        assert arrays  # these results do hold arrays: the check below is not vacuous
    writable = [name for name, arr in arrays if arr.flags.writeable]
    assert writable == []


def test_read_only_results_do_not_freeze_the_callers_arrays() -> None:
    yi, vi = np.array([0.1, 0.3, 0.35, 0.2]), np.array([0.01, 0.02, 0.015, 0.01])
    fit = am.random_effects(yi=yi, vi=vi)
    with pytest.raises(ValueError, match="read-only"):
        fit.yi[0] = 5.0
    yi[0] = 0.2  # the caller's own array stays writable ...
    assert yi.flags.writeable
    assert fit.yi[0] == 0.1  # ... and the result keeps its own copy
    assert am.egger_test(fit) == am.egger_test(am.random_effects(yi=[0.1, 0.3, 0.35, 0.2], vi=vi))


def test_reprs_are_short_one_liners(result: Any) -> None:
    """A result's repr is its headline numbers on one line (issue 15: before, a long
    one-line dump of every field): the class must define it, not attrs."""
    text = repr(result)
    assert text.startswith(type(result).__name__ + "(")
    assert "\n" not in text
    # about two lines of a terminal; leave-one-out once took 2,400 characters
    assert len(text) < 200
    # the repr of the display mixin (or one of the class's own), not attrs' field dump
    assert isinstance(result, ResultDisplay)
    assert not getattr(type(result).__repr__, "__module__", "").startswith("attr")
    assert "=" in text  # it shows values, not only the class name
    studies = _studies()
    assert len(repr(studies)) < 300
    assert "k=12" in repr(studies)


def test_results_have_a_notebook_view(result: Any) -> None:
    """``_repr_html_`` (Jupyter's rich display): the summary as an HTML table."""
    html = result._repr_html_()
    assert isinstance(html, str)
    assert "<table" in html


# ---------------------------------------------------------------------------
# Equality, hashing, pickling and read-only arrays (issue 18, item 7)
# ---------------------------------------------------------------------------

#: Before: ManyPoolResult, IntervalArray and Prediction compared (and hashed) equal
#: whatever their arrays held; SubgroupResult could not be pickled or deep-copied (a
#: mappingproxy); a result with NaN fields was not equal to itself; read-only arrays
#: could be made writable again with setflags(write=True).

ALL_CLASSES = {
    **BUILDERS,
    "IntervalArray": lambda: am.IntervalArray(np.array([0.1, np.nan]), np.array([0.3, 0.4])),
    "ConfidenceInterval": lambda: am.ConfidenceInterval(0.1, math.nan),
}


@pytest.fixture(params=sorted(ALL_CLASSES))
def built(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """Two independently built, equal instances of each result class."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", am.exceptions.AllianceMetaWarning)
        return ALL_CLASSES[request.param](), ALL_CLASSES[request.param]()


def test_equal_by_value_and_hash_agrees(built: tuple[Any, Any]) -> None:
    a, b = built
    assert a is not b
    assert a == b and not (a != b)
    assert hash(a) == hash(b)
    assert a == a  # NaN fields included (e.g. a NaN se, the k = 1 subgroups)
    assert len({a, b}) == 1


def test_pickle_and_deepcopy_round_trip(built: tuple[Any, Any]) -> None:
    a, _ = built
    for c in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a), copy.copy(a)):
        assert type(c) is type(a)
        assert c == a and hash(c) == hash(a)


def _arrays_of(obj: Any) -> list[np.ndarray]:
    return [arr for _, arr in _public_arrays(obj)] + [
        getattr(obj, f.name)
        for f in attrs.fields(type(obj))
        if isinstance(getattr(obj, f.name), np.ndarray)
    ]


def test_arrays_cannot_be_made_writable_again(built: tuple[Any, Any]) -> None:
    a, _ = built
    for arr in _arrays_of(a):
        with pytest.raises(ValueError):
            arr.setflags(write=True)
        assert not arr.flags.writeable


def _with_changed_array(obj: Any) -> Any | None:
    """``obj`` with the first float entry of one of its array fields changed."""
    for f in attrs.fields(type(obj)):
        val = getattr(obj, f.name)
        if isinstance(val, np.ndarray) and val.dtype.kind == "f" and val.size:
            new = np.array(val, copy=True)
            new.reshape(-1)[0] = 123.456 if new.reshape(-1)[0] != 123.456 else 0.5
            return attrs.evolve(obj, **{f.name.lstrip("_"): new})
    return None


def test_arrays_take_part_in_equality(built: tuple[Any, Any]) -> None:
    a, _ = built
    changed = _with_changed_array(a)
    if changed is None:  # results without float array fields
        assert not any(
            isinstance(getattr(a, f.name), np.ndarray) and getattr(a, f.name).dtype.kind == "f"
            for f in attrs.fields(type(a))
        )
        return
    assert changed != a


def test_many_pool_results_with_other_numbers_differ() -> None:
    """The issue's example: results of different data compared equal."""
    one = am.pool_many(np.arange(24.0).reshape(4, 6) / 40, np.full((4, 6), 0.02), method="DL")
    two = am.pool_many(np.arange(24.0).reshape(4, 6) / 20, np.full((4, 6), 0.02), method="DL")
    assert one != two and hash(one) != hash(two)
    assert am.IntervalArray(np.zeros(2), np.ones(2)) != am.IntervalArray(np.ones(2), np.ones(2))
    sub = _studies()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", am.exceptions.AllianceMetaWarning)
        res = am.subgroup_analysis(sub, by="rater")
    assert pickle.loads(pickle.dumps(res)) == res
