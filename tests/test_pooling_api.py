"""The public pooling API: input handling, errors, warnings and result objects."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.exceptions import (
    ConvergenceWarning,
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)

YI = [0.19, 0.16, 0.35, 0.33, 0.28, 0.0, 0.18]
VI = [0.0094, 0.0013, 0.0192, 0.0096, 0.0145, 0.0161, 0.0058]


def test_studies_and_arrays_give_the_same_fit() -> None:
    studies = am.StudySet.from_arrays(yi=YI, vi=VI, measure="ZCOR")
    a = am.random_effects(studies)
    b = am.random_effects(yi=YI, vi=VI, measure="ZCOR")
    assert a.measure == "ZCOR"
    assert a.labels == studies.labels
    # identical inputs through one code path: bitwise equality is expected
    assert a.estimate == b.estimate
    assert a.tau2 == b.tau2


def test_fixed_effect_is_method_ee() -> None:
    fe = am.fixed_effect(yi=YI, vi=VI)
    ee = am.random_effects(yi=YI, vi=VI, method="EE")
    fe_alias = am.random_effects(yi=YI, vi=VI, method="FE")
    assert fe.method == ee.method == fe_alias.method == "EE"
    assert fe.tau2 == 0.0
    assert fe.estimate == ee.estimate == fe_alias.estimate
    w = 1 / np.asarray(VI)
    # the textbook inverse-variance mean; 1e-12 allows summation-order round-off
    assert math.isclose(fe.estimate, float(w @ YI / w.sum()), rel_tol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"yi": [], "vi": []}, "yi"),
        ({"yi": [0.1, math.nan], "vi": [0.1, 0.1]}, "yi"),
        ({"yi": [0.1, 0.2], "vi": [0.1, math.inf]}, "vi"),
        # vi = 0 is accepted where tau^2 > 0 makes the weights finite; here the REML
        # estimate is 0 (the two effects differ less than vi predicts): an error
        ({"yi": [0.1, 0.2], "vi": [0.1, 0.0]}, "vi"),
        ({"yi": [0.1, 0.2], "vi": [0.1, -1.0]}, "vi"),
        ({"yi": [0.1, 0.2, 0.3], "vi": [0.1, 0.1]}, "vi"),
        ({"yi": ["a", "b"], "vi": [0.1, 0.1]}, "yi"),
        ({"yi": [[0.1, 0.2]], "vi": [[0.1, 0.1]]}, "yi"),
    ],
)
def test_bad_input_raises_value_error_naming_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidStudyError) as info:
        am.random_effects(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert field in str(info.value)


def test_bad_study_is_named() -> None:
    with pytest.raises(InvalidStudyError, match="Study 2"):
        am.random_effects(yi=[0.1, 0.2], vi=[0.1, -0.5])
    with pytest.raises(InvalidStudyError, match="Study 2") as info:
        am.random_effects(yi=[0.1, 0.2], vi=[0.1, 0.0])  # REML's tau^2 is 0
    assert info.value.field == "vi"
    with pytest.raises(InvalidStudyError, match=r"Study 2.*equal-effects"):
        am.fixed_effect(yi=[0.1, 0.2], vi=[0.1, 0.0])


@pytest.mark.parametrize(
    "kwargs", [{"method": "XYZ"}, {"test": "wald"}, {"level": 1.5}, {"level": 0.0}]
)
def test_bad_options_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ModelSpecificationError):
        am.random_effects(yi=YI, vi=VI, **kwargs)  # type: ignore[arg-type]


def test_k1_warns_and_sets_tau2_zero() -> None:
    with pytest.warns(FewStudiesWarning):
        res = am.random_effects(yi=[0.3], vi=[0.04], test="knha")
    assert res.tau2 == 0.0
    assert res.test == "z"  # metafor switches to z for k = 1
    assert res.Q == 0.0 and res.Q_pvalue == 1.0
    # one study: the pooled estimate is the study itself, exactly
    assert res.estimate == 0.3
    assert math.isclose(res.se, 0.2, rel_tol=1e-15)


def test_no_convergence_warning_on_ordinary_data() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = am.random_effects(yi=YI, vi=VI, method="REML")
    assert res.converged
    assert 1 <= res.iterations < 50


def test_back_transformation_zcor_and_log_ratio() -> None:
    z = am.random_effects(yi=YI, vi=VI, measure="ZCOR")
    bt = z.back_transformed()
    assert bt.scale == "r"
    # tanh is applied elementwise; 1e-15 is round-off only
    assert math.isclose(bt.estimate, math.tanh(z.estimate), rel_tol=1e-15)
    assert math.isclose(bt.ci.low, math.tanh(z.ci.low), rel_tol=1e-15)
    lr = am.random_effects(yi=YI, vi=VI, measure="RR")
    bl = lr.back_transformed()
    assert bl.scale == "RR"
    assert math.isclose(bl.pi.high, math.exp(lr.pi.high), rel_tol=1e-15)
    gen = am.random_effects(yi=YI, vi=VI).back_transformed()
    assert gen.estimate == am.random_effects(yi=YI, vi=VI).estimate


def test_result_is_frozen_and_has_frames_and_summary() -> None:
    res = am.random_effects(yi=YI, vi=VI, measure="ZCOR", test="knha")
    with pytest.raises(AttributeError):
        res.estimate = 0.0  # type: ignore[misc]
    frame = res.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert frame.loc[0, "estimate"] == res.estimate
    assert frame.loc[0, "df"] == len(YI) - 1
    text = str(res.summary())
    assert "Random-effects model" in text
    assert "REML" in text
    assert "r scale" in text  # back-transformed row for ZCOR
    assert res.df == len(YI) - 1
    weights = res.weights
    # percentage weights sum to 100 up to round-off
    assert math.isclose(float(weights.sum()), 100.0, rel_tol=1e-12)


def test_heterogeneity_ci_contains_estimate_and_is_method_free() -> None:
    reml = am.random_effects(yi=YI, vi=VI, method="REML")
    dl = am.random_effects(yi=YI, vi=VI, method="DL")
    a, b = reml.heterogeneity_ci(), dl.heterogeneity_ci()
    assert a == b  # the Q-profile interval depends on the data and level only
    assert a.tau2.low <= reml.tau2 <= a.tau2.high
    assert 0.0 <= a.I2.low <= a.I2.high <= 100.0
    narrower = reml.heterogeneity_ci(level=0.8)
    assert narrower.tau2.high <= a.tau2.high
    assert list(a.to_frame().index) == ["tau2", "I2", "H2"]


def test_heterogeneity_ci_of_one_study_is_an_error() -> None:
    # metafor: confint(rma(0.1, 0.01)) stops with "Stopped because k = 1."
    with pytest.warns(FewStudiesWarning):
        one = am.random_effects(yi=[0.1], vi=[0.01])
    with pytest.raises(ModelSpecificationError, match="k = 1"):
        one.heterogeneity_ci()


def test_confidence_interval_at_other_level_matches_refit() -> None:
    res = am.random_effects(yi=YI, vi=VI)
    ci90 = res.confidence_interval(0.90)
    ref = am.random_effects(yi=YI, vi=VI, level=0.90).ci
    assert ci90 == ref
    assert res.confidence_interval() == res.ci


def test_prediction_interval_uses_t_under_knha() -> None:
    res = am.random_effects(yi=YI, vi=VI, test="knha")
    from scipy import stats

    crit = stats.t.isf(0.025, len(YI) - 1)
    half = crit * math.sqrt(res.se**2 + res.tau2)
    # the PI definition of metafor's predict(); 1e-12 is round-off
    assert math.isclose(res.pi.high - res.estimate, half, rel_tol=1e-12)


def test_mixed_measures_rejected() -> None:
    s1 = am.Study(label="a", effect=am.EffectSize(value=0.1, variance=0.01, measure="ZCOR"))
    s2 = am.Study(label="b", effect=am.EffectSize(value=0.1, variance=0.01, measure="SMD"))
    with pytest.raises(ModelSpecificationError):
        am.random_effects([s1, s2])


def test_studies_and_arrays_together_rejected() -> None:
    studies = am.StudySet.from_arrays(yi=YI, vi=VI)
    with pytest.raises(ModelSpecificationError):
        am.random_effects(studies, yi=YI, vi=VI)
