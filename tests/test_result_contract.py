"""Every public result class: frozen, with ``summary()`` (statsmodels) and ``to_frame()``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np
import pandas as pd
import pytest
from statsmodels.iolib.summary import Summary

import alliance_meta as am

#: Public attrs classes that are inputs or value types, not results.
NOT_RESULTS = {"EffectSize", "Study", "StudySet", "Moderator", "ConfidenceInterval",
               "IntervalArray"}


def _studies() -> am.StudySet:
    return am.datasets.load_alliance_example().studies()


def _fit() -> am.PoolResult:
    return am.random_effects(_studies())


def _reg() -> am.MetaRegressionResult:
    return am.meta_regression(_studies(), moderators=["rater", "experience"])


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
    "Prediction": lambda: _reg().predict({"rater": "therapist", "experience": 10.0}),
    "PermutationTestResult": lambda: _reg().permutation_test(n=50, seed=1),
    "EggerTest": lambda: am.egger_test(_fit()),
    "RankCorrelationTest": lambda: am.rank_correlation_test(_fit()),
    "TrimAndFillResult": lambda: am.trim_and_fill(_fit()),
    "FailSafeN": lambda: am.fail_safe_n(_fit()),
    "LeaveOneOutResult": lambda: am.leave_one_out(_fit()),
    "CumulativeResult": lambda: am.cumulative(_fit()),
    "InfluenceResult": lambda: am.influence(_fit()),
    "SelectionModelResult": lambda: am.selection_model(_fit(), "halfnorm"),
    "SelectionMetaRegressionResult": lambda: am.selection_model(_reg(), "negexp"),
}


def test_every_public_result_class_is_covered() -> None:
    public = {
        name for name in am.__all__
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
    return found


def test_result_arrays_are_read_only(result: Any) -> None:
    arrays = _public_arrays(result)
    if type(result).__name__ not in {"BackTransformed", "HeterogeneityCI", "RankCorrelationTest",
                                     "FailSafeN", "EggerTest"}:
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


def test_reprs_stay_short(result: Any) -> None:
    text = repr(result)
    assert text.startswith(type(result).__name__ + "(")
    # arrays and label tuples are elided in the middle (brief_repr), so a result of
    # 12 studies prints in about a screenful; before, leave-one-out took 2,400 chars
    assert len(text) < 1800
    studies = _studies()
    assert len(repr(studies)) < 300
    assert "k=12" in repr(studies)
