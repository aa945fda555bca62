"""R formulas in the models, data= everywhere, and one rule for factor levels.

The formula fits themselves are checked against metafor in test_formula.py (every
formula of formula.json through ``meta_regression(data=, moderators=FORMULA)``);
here: the model functions' handling of formulas, data frames and studies, and
``predict`` of formula models against metafor's (tests/reference/rstyle.json).
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.exceptions import (
    InvalidStudyError,
    ModelSpecificationError,
    ModelSpecificationWarning,
)

REF = Path(__file__).parent / "reference" / "rstyle.json"
#: the contract's tolerance (issue 15); the references are tight-control fits
RTOL = 1e-6


@cache
def ref() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REF.read_text(encoding="utf-8"))
    return data


def bcg() -> pd.DataFrame:
    """dat.bcg (metadat 1.2) with escalc("RR")'s yi and vi."""
    d = ref()["control_default"]["bcg"]
    return pd.DataFrame({
        "yi": d["yi"], "vi": d["vi"],
        "ablat": [44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33],
        "year": [1948, 1949, 1960, 1977, 1973, 1953, 1973, 1980, 1968, 1961, 1974, 1969,
                 1976],
        "alloc": ["random"] * 4 + ["alternate"] * 2 + ["random"] * 3 + ["systematic"] * 4,
    })


# ---------------------------------------------------------------------------
# data=
# ---------------------------------------------------------------------------


def test_data_equals_the_array_call_exactly() -> None:
    df = bcg()
    arrays = am.random_effects(yi=df["yi"].to_numpy(), vi=df["vi"].to_numpy())
    assert am.random_effects(data=df, yi="yi", vi="vi") == arrays
    assert am.random_effects(data=df) == arrays  # metafor's escalc column names
    assert am.random_effects(df) == arrays  # a data frame where studies go
    assert am.fixed_effect(data=df) == am.fixed_effect(yi=df["yi"], vi=df["vi"])
    renamed = df.rename(columns={"yi": "logrr", "vi": "var"})
    fit = am.random_effects(data=renamed, yi="logrr", vi="var", method="DL", test="knha")
    assert fit == am.random_effects(yi=df["yi"], vi=df["vi"], method="DL", test="knha")


def test_data_through_the_interchange_protocol() -> None:
    df = bcg()
    with warnings.catch_warnings():  # pandas 3 deprecates the protocol it still reads
        warnings.simplefilter("ignore", DeprecationWarning)
        proto = df.__dataframe__()
    assert am.random_effects(data=proto) == am.random_effects(data=df)
    reg = am.meta_regression(data=proto, moderators="~ ablat + alloc")
    assert reg.coef_names == ("intrcpt", "ablat", "allocrandom", "allocsystematic")


def test_a_data_frame_as_studies_says_what_to_do() -> None:
    no_yi = bcg().rename(columns={"yi": "logrr"})
    with pytest.raises(ModelSpecificationError, match=r"give yi=.*columns: 'logrr'"):
        am.random_effects(no_yi)
    with pytest.raises(ModelSpecificationError, match=r"Study objects.*data=df"):
        am.random_effects(["a", "b"])  # type: ignore[list-item]
    with pytest.raises(ModelSpecificationError, match="only with data="):
        am.random_effects(yi="yi", vi="vi")
    with pytest.raises(InvalidStudyError, match="no column 'vj'") as info:
        am.random_effects(data=bcg(), vi="vj")
    assert info.value.field == "vi"
    with pytest.raises(ModelSpecificationError, match="once"):
        am.random_effects(bcg(), data=bcg())


def test_data_with_missing_effects_names_the_study() -> None:
    df = bcg()
    df.loc[2, "yi"] = np.nan
    with pytest.raises(InvalidStudyError, match="missing value") as info:
        am.random_effects(data=df)
    assert (info.value.study, info.value.field) == ("Study 3", "yi")


def test_pool_many_with_data() -> None:
    df = pd.DataFrame({"yi": np.arange(12) / 20, "vi": np.full(12, 0.02),
                       "outcome": list("aaabbbbcccdd")})
    many = am.pool_many(data=df, groups="outcome", method="DL")
    same = am.pool_many(df["yi"].to_numpy(), df["vi"].to_numpy(), df["outcome"].to_numpy(),
                        method="DL")
    np.testing.assert_array_equal(many.estimate, same.estimate)
    with pytest.raises(ModelSpecificationError, match="groups="):
        am.pool_many(data=df)


# ---------------------------------------------------------------------------
# Formulas in meta_regression and subgroup_analysis
# ---------------------------------------------------------------------------


def test_formula_with_data_names_coefficients_as_r() -> None:
    fit = am.meta_regression(data=bcg(), moderators="~ ablat * year")
    assert fit.coef_names == ("intrcpt", "ablat", "year", "ablat:year")
    assert fit.formula == "~ ablat * year"
    fit = am.meta_regression(data=bcg(), moderators="~ I(year - 1950) + factor(alloc)")
    assert fit.coef_names == ("intrcpt", "I(year - 1950)", "factor(alloc)random",
                              "factor(alloc)systematic")
    fit = am.meta_regression(data=bcg(), moderators="~ relevel(factor(alloc), ref='random')")
    assert fit.coef_names[1:] == ('relevel(factor(alloc), ref = "random")alternate',
                                  'relevel(factor(alloc), ref = "random")systematic')


def test_formula_equals_the_names_and_the_values() -> None:
    df = bcg()
    by_formula = am.meta_regression(data=df, moderators="~ ablat + alloc")
    by_names = am.meta_regression(data=df, moderators=["ablat", "alloc"])
    by_values = am.meta_regression(yi=df["yi"], vi=df["vi"],
                                   moderators={"ablat": df["ablat"], "alloc": df["alloc"]})
    for other in (by_names, by_values):
        assert other.coef_names == by_formula.coef_names
        np.testing.assert_allclose(other.coef, by_formula.coef, rtol=1e-12)  # same design
        # predicting the data themselves (a frame with other columns too) refits nothing
        np.testing.assert_allclose(other.predict(df).pred, other.fitted(), rtol=1e-12)


def test_formula_on_studies_without_declared_moderators() -> None:
    df = bcg().assign(label=[f"s{i}" for i in range(13)])
    studies = am.StudySet.from_dataframe(df, yi="yi", vi="vi", label="label")
    assert set(studies.moderator_names) == {"ablat", "year", "alloc"}
    fit = am.meta_regression(studies, moderators="~ ablat + factor(alloc)")
    same = am.meta_regression(data=df, moderators="~ ablat + factor(alloc)")
    np.testing.assert_allclose(fit.coef, same.coef, rtol=1e-12)
    assert fit.labels[0] == "s0"


def test_no_intercept_formula_fits_and_tests_every_coefficient() -> None:
    fit = am.meta_regression(data=bcg(), moderators="~ alloc - 1")
    assert fit.coef_names == ("allocalternate", "allocrandom", "allocsystematic")
    assert not fit.intercept
    assert fit.QM_df == (3, None)  # metafor's btt: every coefficient
    assert fit.R2 is None  # metafor: no R^2 without an intercept
    # the subgroup means of the common-tau^2 model, as metafor's ~ factor(g) - 1
    sub = am.subgroup_analysis(data=bcg(), by="alloc", tau2="common")
    np.testing.assert_allclose(fit.coef, sub.common_estimate, rtol=1e-10)
    # a design that does not span the intercept: refits and permutations use it
    slope = am.meta_regression(data=bcg(), moderators="~ ablat - 1", method="DL")
    assert slope.coef_names == ("ablat",)
    perm = slope.permutation_test(n=200, seed=1)
    assert perm.coef_names == ("ablat",) and 0 < perm.pvalue[0] <= 1
    inf = am.influence(slope)
    assert inf.hat.sum() == pytest.approx(1.0, rel=1e-10)  # trace of the hat matrix = p


def test_redundant_columns_dropped_as_metafor_with_a_warning() -> None:
    df = bcg().assign(lat2=lambda d: 2 * d["ablat"])
    with pytest.warns(ModelSpecificationWarning, match="lat2"):
        fit = am.meta_regression(data=df, moderators="~ ablat + lat2")
    assert fit.dropped == ("lat2",)
    assert fit.coef_names == ("intrcpt", "ablat")
    assert "lat2" in str(fit.summary())


@pytest.mark.parametrize("case", ["interaction", "relevel", "no_intercept"])
def test_predict_codes_new_data_as_the_formula_did(case: str) -> None:
    r = ref()["predict"][case]
    fit = am.meta_regression(data=bcg(), moderators=r["formula"],
                             test="knha" if case == "relevel" else "z")
    pred = fit.predict(pd.DataFrame(r["new"]))
    for field, got in (("pred", pred.pred), ("se", pred.se), ("ci_lb", pred.ci.low),
                       ("ci_ub", pred.ci.high), ("pi_lb", pred.pi.low),
                       ("pi_ub", pred.pi.high)):
        np.testing.assert_allclose(got, r["plain"][field], rtol=RTOL, err_msg=field)
    # the same rows from a mapping, and the fitted values from predict()
    np.testing.assert_array_equal(fit.predict(r["new"]).pred, pred.pred)
    np.testing.assert_allclose(fit.predict().pred, fit.fitted(), rtol=1e-12)


def test_predict_refuses_levels_the_data_did_not_have() -> None:
    fit = am.meta_regression(data=bcg(), moderators="~ ablat + alloc")
    with pytest.raises(InvalidStudyError, match="'quasi' is not a level"):
        fit.predict({"ablat": 30, "alloc": "quasi"})


def test_subgroups_by_column_formula_and_groups_agree() -> None:
    df = bcg()
    by_col = am.subgroup_analysis(data=df, by="alloc", tau2="common")
    by_groups = am.subgroup_analysis(yi=df["yi"], vi=df["vi"], groups=df["alloc"],
                                     tau2="common")
    by_formula = am.subgroup_analysis(data=df, by="~ factor(alloc)", tau2="common")
    for other in (by_groups, by_formula):
        assert list(other.groups) == list(by_col.groups) == ["alternate", "random",
                                                             "systematic"]
        assert other.Q_between == pytest.approx(by_col.Q_between, rel=1e-12)
    # relevel() changes the reference of the common-tau^2 model, not the test
    rel = am.subgroup_analysis(data=df, by="~ relevel(factor(alloc), ref = 'random')",
                               tau2="common")
    assert list(rel.groups) == ["random", "alternate", "systematic"]
    assert rel.by == 'relevel(factor(alloc), ref = "random")'
    assert rel.Q_between == pytest.approx(by_col.Q_between, rel=1e-10)
    with pytest.raises(ModelSpecificationError, match="one factor"):
        am.subgroup_analysis(data=df, by="~ ablat")


# ---------------------------------------------------------------------------
# Factor levels: R's collation and a Categorical's order, on every path
# ---------------------------------------------------------------------------


def _rated() -> pd.DataFrame:
    return pd.DataFrame({
        "yi": [0.1, 0.3, 0.35, 0.2, 0.5, 0.4, 0.25], "vi": [0.01, 0.02, 0.015, 0.01, 0.02,
                                                           0.01, 0.03],
        "rater": ["b", "C", "a", "b", "C", "a", "b"],
    })


def test_levels_sort_as_r_sorts_on_every_path() -> None:
    df = _rated()
    # R: sort(c("b", "C", "a")) is a, b, C; Python's sorted() gives C, a, b
    assert sorted(["b", "C", "a"]) == ["C", "a", "b"]
    want = ("intrcpt", "raterb", "raterC")
    assert am.meta_regression(data=df, moderators="~ rater").coef_names == want
    assert am.meta_regression(data=df, moderators=["rater"]).coef_names == want
    assert am.meta_regression(yi=df["yi"], vi=df["vi"],
                              moderators={"rater": df["rater"].tolist()}).coef_names == want
    studies = am.StudySet.from_dataframe(df, yi="yi", vi="vi", moderators="rater")
    assert am.meta_regression(studies, moderators="rater").coef_names == want
    assert list(am.subgroup_analysis(data=df, by="rater", method="DL").groups) == ["a", "b", "C"]
    assert list(studies.groupby("rater")) == ["a", "b", "C"]
    assert am.Moderator.infer("rater", ["b", "C", "a"]).levels == ("a", "b", "C")


def test_a_categoricals_order_is_respected_on_every_path() -> None:
    df = _rated().assign(rater=lambda d: pd.Categorical(d["rater"], categories=["C", "b", "a"]))
    want = ("intrcpt", "raterb", "ratera")  # "C", the first category, is the reference
    assert am.meta_regression(data=df, moderators="~ rater").coef_names == want
    assert am.meta_regression(data=df, moderators=["rater"]).coef_names == want
    assert am.meta_regression(yi=df["yi"], vi=df["vi"],
                              moderators={"rater": df["rater"]}).coef_names == want
    assert list(am.subgroup_analysis(data=df, by="rater", method="DL").groups) == ["C", "b", "a"]
    assert list(am.subgroup_analysis(yi=df["yi"], vi=df["vi"], groups=df["rater"],
                                     method="DL").groups
                ) == ["C", "b", "a"]
    # unused categories: a redundant zero column in a regression (as R's ~ f), dropped
    # from the subgroups (as R's factor())
    extra = df.assign(rater=lambda d: d["rater"].cat.add_categories(["z"]))
    with pytest.warns(ModelSpecificationWarning, match="raterz"):
        fit = am.meta_regression(data=extra, moderators=["rater"])
    assert fit.dropped == ("raterz",)
    assert list(am.subgroup_analysis(data=extra, by="rater", method="DL").groups) == ["C", "b", "a"]
    # a Moderator's levels still win
    fixed = am.meta_regression(data=df, moderators=[am.Moderator.categorical(
        "rater", ["a", "b", "C"])])
    assert fixed.coef_names == ("intrcpt", "raterb", "raterC")


def test_formula_errors_name_the_study_and_column() -> None:
    df = bcg()
    df["alloc"] = df["alloc"].astype(object)
    df.loc[4, "alloc"] = None
    with pytest.raises(InvalidStudyError, match="missing value") as info:
        am.meta_regression(data=df, moderators="~ ablat + alloc")
    assert (info.value.study, info.value.field) == ("Study 5", "alloc")
    with pytest.raises(InvalidStudyError, match="not a column") as info:
        am.meta_regression(data=bcg(), moderators="~ latitude")
    assert info.value.field == "latitude"
    with pytest.raises(ModelSpecificationError, match="needs the data"):
        am.meta_regression(yi=[0.1, 0.2, 0.3], vi=[0.1, 0.1, 0.1], moderators="~ x")
    with pytest.raises(ModelSpecificationError, match="no coefficients"):
        am.meta_regression(data=bcg(), moderators="~ 0")


def test_undeclared_columns_are_moderators_with_their_gaps() -> None:
    df = bcg().assign(
        when=pd.to_datetime(["2020-01-01"] * 13),  # not a moderator type: left out
        blinded=[True, False] * 6 + [None],  # a missing value: that study lacks it
    )
    studies = am.StudySet.from_dataframe(df, yi="yi", vi="vi")
    assert "when" not in studies.moderator_names
    assert "blinded" not in studies[12].moderators
    assert am.meta_regression(studies, moderators="~ ablat").coef_names == ("intrcpt", "ablat")
    with pytest.raises(InvalidStudyError, match="missing value") as info:
        am.meta_regression(studies, moderators="~ blinded")
    assert (info.value.study, info.value.field) == ("13", "blinded")
    declared = am.StudySet.from_dataframe(df, yi="yi", vi="vi", moderators=["ablat"])
    assert declared.moderator_names == ("ablat",)  # declaring still limits them


def test_nan_policy_omit_drops_studies_as_metafor() -> None:
    """metafor's na.omit: a study with a missing yi, vi or moderator the model uses
    is dropped with a warning; the fit equals the fit of the other studies."""
    df = bcg().astype({"alloc": object})
    df.loc[2, "ablat"] = np.nan
    df.loc[7, "alloc"] = None
    df.loc[10, "vi"] = np.nan
    complete = df.drop(index=[2, 7, 10])
    with pytest.warns(am.exceptions.DataOmittedWarning, match="Study 3, Study 8, Study 11"):
        fit = am.meta_regression(data=df, moderators="~ ablat + factor(alloc)",
                                 nan_policy="omit")
    same = am.meta_regression(data=complete, moderators="~ ablat + factor(alloc)")
    np.testing.assert_array_equal(fit.coef, same.coef)
    assert fit.k == 10 and fit.labels[2] == "Study 4"  # numbered as in the data
    # only the columns the model uses count: ablat's gap does not drop study 3 here
    with pytest.warns(am.exceptions.DataOmittedWarning, match=r"values: Study 8, Study 11 \("):
        sub = am.subgroup_analysis(data=df, by="alloc", nan_policy="omit")
    assert sub.k == 11
    with pytest.warns(am.exceptions.DataOmittedWarning, match="Study 11"):
        assert am.random_effects(data=df, nan_policy="omit").k == 12
    with pytest.raises(InvalidStudyError, match="nan_policy='omit'"):
        am.random_effects(data=df)
