"""A numeric moderator with a typo ("4O" for 40) is coded as a factor, as R codes a
character column (metafor's ``rma(yi, vi, mods = ~ age)`` gives intrcpt, age40,
age4O, age50 too); alliance_meta warns, naming the column, the values that are not
numbers and their studies, and how to declare the intent."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.exceptions import ModelSpecificationWarning, NumericTextWarning

AGE = ["30", "40", "50"] * 4 + ["4O"]


def _frame(age: list[object]) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {"yi": rng.normal(0.3, 0.15, len(age)), "vi": np.full(len(age), 0.02), "age": age}
    )


def _quiet(**kw: object) -> am.MetaRegressionResult:
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericTextWarning)
        return am.meta_regression(**kw)  # type: ignore[arg-type]


def test_warning_is_a_model_specification_warning() -> None:
    assert issubclass(NumericTextWarning, ModelSpecificationWarning)


@pytest.mark.parametrize("moderators", ["~ age", ["age"], "age"])
def test_typo_in_numeric_column_warns_naming_column_value_and_study(moderators: object) -> None:
    d = _frame(AGE)
    with pytest.warns(NumericTextWarning) as rec:
        fit = am.meta_regression(yi="yi", vi="vi", data=d, moderators=moderators)
    # still coded as R codes it (metafor: intrcpt, age40, age4O, age50)
    assert fit.coef_names == ("intrcpt", "age40", "age4O", "age50")
    (w,) = [r for r in rec if r.category is NumericTextWarning]
    msg = str(w.message)
    assert "'age'" in msg and "12 of its 13" in msg
    assert "'4O' (study 'Study 13')" in msg
    remedy = "factor(age)" if str(moderators).startswith("~") else "Moderator('age'"
    assert remedy in msg and "correct the data" in msg
    assert w.filename == __file__  # points at the user's call


def test_mapping_and_studyset_paths_warn() -> None:
    d = _frame(AGE)
    with pytest.warns(NumericTextWarning, match="'4O' \\(study 'S13'\\)"):
        ss = am.StudySet.from_arrays(d["yi"], d["vi"], labels=[f"S{i + 1}" for i in range(13)],
                                     moderators={"age": AGE})  # fmt: skip
        am.meta_regression(ss, moderators=["age"])
    with pytest.warns(NumericTextWarning, match="'4O'"):
        am.meta_regression(yi=d["yi"], vi=d["vi"], moderators={"age": np.array(AGE)})


def test_several_bad_values_listed() -> None:
    age = ["30", "40", "50"] * 4 + ["x", "n/a", "30"]
    with pytest.warns(NumericTextWarning, match="'x' \\(study 'Study 13'\\), 'n/a' "
                      "\\(study 'Study 14'\\) are not"):  # fmt: skip
        am.meta_regression(yi="yi", vi="vi", data=_frame(age), moderators="~ age")


def test_no_warning_when_declared_or_plainly_categorical() -> None:
    d = _frame(AGE)
    # the user said it is categorical
    _quiet(yi="yi", vi="vi", data=d, moderators="~ factor(age)")
    _quiet(yi="yi", vi="vi", data=d, moderators="~ relevel(factor(age), ref = '50')")
    _quiet(yi="yi", vi="vi", data=d, moderators=[am.Moderator("age", "categorical")])
    # text that is not mostly numbers; numbers that are numbers; half numbers
    _quiet(yi="yi", vi="vi", data=_frame(["low", "high", "mid"] * 4 + ["4O"]),
           moderators="~ age")  # fmt: skip
    _quiet(yi="yi", vi="vi", data=_frame([30.0, 40.0, 50.0] * 4 + [45.0]),
           moderators="~ age")  # fmt: skip
    _quiet(yi="yi", vi="vi", data=_frame(["30", "40", "a", "b"] * 3), moderators="~ age")
    # every value a number spelled as text: codes, not a typo ("inf" is not finite)
    _quiet(yi="yi", vi="vi", data=_frame(["1", "2", "3"] * 4 + ["2"]), moderators="~ age")
