"""R-style model formulas (alliance_meta.data.formula) against R and metafor.

The references (tests/reference/formula.json, written by generate_formula.R with R
4.2.2 and metafor 3.8.1) hold R's string collation, number labels, deparsed
expressions, ``terms()`` of formulas, ``model.matrix`` of many formulas on four
metadat data sets, and ``rma(yi, vi, mods = FORMULA, ...)`` for each of them.
"""

from __future__ import annotations

import doctest
import json
import math
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.data import formula as fm
from alliance_meta.data.formula import (
    FormulaDesign,
    model_matrix,
    r_collation_key,
    r_number_string,
    redundant_columns,
)
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError

REF = Path(__file__).parent / "reference" / "formula.json"


@cache
def ref() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REF.read_text(encoding="utf-8"))
    return data


def frame(ds: dict[str, Any]) -> pd.DataFrame:
    """The R data frame as pandas: R factors become Categoricals with R's levels."""
    cols: dict[str, Any] = {}
    for name, c in ds["columns"].items():
        v = c["values"]
        if c["type"] == "factor":
            cols[name] = pd.Categorical(v, categories=c["levels"])
        elif c["type"] == "integer":
            cols[name] = np.array(v, dtype=np.int64)
        elif c["type"] == "numeric":
            cols[name] = np.array(v, dtype=np.float64)
        elif c["type"] == "logical":
            cols[name] = np.array(v, dtype=bool)
        else:
            cols[name] = pd.array(v, dtype="str")
    return pd.DataFrame(cols)


def r_names(names: list[str]) -> list[str]:
    return ["intrcpt" if n == "(Intercept)" else n for n in names]


def _cases() -> list[Any]:
    out = []
    for ds in ref()["datasets"]:
        for f in ds["formulas"]:
            out.append(pytest.param(ds["name"], f["formula"], id=f"{ds['name']}:{f['formula']}"))
    return out


def _case(dataset: str, formula: str) -> tuple[dict[str, Any], dict[str, Any]]:
    ds = next(d for d in ref()["datasets"] if d["name"] == dataset)
    f = next(f for f in ds["formulas"] if f["formula"] == formula)
    return ds, f


@cache
def _design(dataset: str, formula: str) -> FormulaDesign:
    ds, _ = _case(dataset, formula)
    return model_matrix(formula, frame(ds))


CASES = _cases()


# ---------------------------------------------------------------------------
# R's text forms
# ---------------------------------------------------------------------------


def test_collation_is_Rs_sort() -> None:
    c = ref()["collation"]
    assert sorted(c["input"], key=r_collation_key) == c["sorted"]
    # factor() of strings sorts in the same collation, not by code point
    assert fm._as_factor(fm._ChrV(np.array(["b", "C", "a", "B", "c", "A"], dtype=object))
                         ).levels == tuple(c["factor_levels"])
    assert sorted(["b", "C"]) == ["C", "b"]  # Python's order differs: the test can fail


def test_number_labels_are_Rs_as_character() -> None:
    n = ref()["numbers"]
    got = [r_number_string(float(x)) for x in n["doubles"]]
    assert got == n["doubles_chr"]
    assert [r_number_string(x, integer=True) for x in n["integers"]] == n["integers_chr"]


@pytest.mark.parametrize("i", range(len(ref()["deparse"]["input"])))
def test_variable_names_are_Rs_deparse(i: int) -> None:
    d = ref()["deparse"]
    assert fm._deparse(fm._parse_expression(d["input"][i])) == d["deparsed"][i]


@pytest.mark.parametrize("t", ref()["terms"], ids=lambda t: t["formula"])
def test_terms_and_their_coding_are_Rs(t: dict[str, Any]) -> None:
    st = fm._parse_formula(t["formula"])
    assert [":".join(st.names[v] for v in term) for term in st.terms] == t["term_labels"]
    assert st.intercept == bool(t["intercept"])
    # R's "factors" matrix: 1 = contrasts, 2 = indicators (terms() assumes an intercept)
    codes = fm._term_codes(st.terms, True, [True] * len(st.names))
    rvars = t["variables"]
    got = [{rvars.index(st.names[v]): c for v, c in code.items()} for code in codes]
    want = [{i: c for i, c in enumerate(row) if c} for row in t["factors"]]
    assert got == want


# ---------------------------------------------------------------------------
# model.matrix
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("dataset", "formula"), CASES)
def test_model_matrix_is_Rs(dataset: str, formula: str) -> None:
    ds, f = _case(dataset, formula)
    d = _design(dataset, formula)
    assert list(d.column_names) == r_names(f["colnames"])
    assert list(d.assign) == f["assign"]
    assert d.intercept == ("(Intercept)" in f["colnames"])
    X = np.array(f["X"], dtype=np.float64).reshape(ds["k"], -1)
    # the JSON holds 15 significant digits (jsonlite's maximum): 1e-13 relative
    np.testing.assert_allclose(d.X, X, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("dataset", "formula"), [c for c in CASES if "rma" in
                                                  _case(*c.values)[1]])
def test_redundant_columns_are_the_ones_metafor_drops(dataset: str, formula: str) -> None:
    _, f = _case(dataset, formula)
    for fit in f["rma"].values():
        assert list(_design(dataset, formula).redundant()) == fit["dropped"]


@pytest.mark.parametrize(("dataset", "formula"), CASES)
def test_new_rows_of_the_same_data_rebuild_the_design(dataset: str, formula: str) -> None:
    ds, _ = _case(dataset, formula)
    d = _design(dataset, formula)
    np.testing.assert_array_equal(d.new_rows(frame(ds)), d.X)


# ---------------------------------------------------------------------------
# rma(yi, vi, mods = FORMULA, data = dat): meta_regression(data=, moderators=FORMULA)
# ---------------------------------------------------------------------------


def _fit_like_metafor(dataset: str, formula: str, method: str, test: str) -> dict[str, Any]:
    """``meta_regression(data=df, moderators=formula)``, as metafor's ``rma`` call."""
    ds, _ = _case(dataset, formula)
    df = frame(ds).assign(yi=np.array(ds["yi"]), vi=np.array(ds["vi"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", am.exceptions.ModelSpecificationWarning)
        fit = am.meta_regression(data=df, yi="yi", vi="vi", moderators=formula,
                                 method=method, test=test)
    return {"names": list(fit.coef_names), "tau2": fit.tau2, "QE": fit.QE,
            "QE_p": fit.QE_pvalue, "QE_df": fit.QE_df, "coef": fit.coef, "se": fit.se,
            "statistic": fit.statistic, "pvalue": fit.pvalue, "ci_lb": fit.ci.low,
            "ci_ub": fit.ci.high, "QM": fit.QM, "QM_df": list(fit.QM_df),
            "QM_p": fit.QM_pvalue, "dropped": list(fit.dropped)}


def _rma_cases() -> list[Any]:
    out = []
    for ds in ref()["datasets"]:
        for f in ds["formulas"]:
            for key in f.get("rma", {}):
                out.append(pytest.param(ds["name"], f["formula"], key,
                                        id=f"{ds['name']}:{f['formula']}:{key}"))
    return out


#: the contract's tolerance (issue 15): 1e-6 relative; metafor ran with
#: threshold = tol = 1e-12, so the remaining differences are root-finding noise
RTOL = 1e-6
#: absolute floor for values that are 0 in exact arithmetic (a τ² of 0, a
#: coefficient of a centred design), where a relative tolerance cannot apply
ATOL = 1e-10


@pytest.mark.parametrize(("dataset", "formula", "key"), _rma_cases())
def test_rma_with_the_formula_matches_metafor(dataset: str, formula: str, key: str) -> None:
    _, f = _case(dataset, formula)
    r = f["rma"][key]
    assert "error" not in r, r.get("error")
    method, test = key.split("_")
    got = _fit_like_metafor(dataset, formula, method, test)
    assert got["names"] == r["coef_names"]
    assert got["dropped"] == r["dropped"]
    for field in ("coef", "se", "statistic", "pvalue", "ci_lb", "ci_ub"):
        np.testing.assert_allclose(got[field], r[field], rtol=RTOL, atol=ATOL, err_msg=field)
    for field in ("tau2", "QE", "QE_p", "QM", "QM_p"):
        np.testing.assert_allclose(got[field], r[field], rtol=RTOL, atol=ATOL, err_msg=field)
    assert got["QE_df"] == r["QE_df"]
    assert got["QM_df"] == r["QM_df"]


# ---------------------------------------------------------------------------
# Behaviour: categorical coding, new data, inputs
# ---------------------------------------------------------------------------


def test_categorical_order_is_respected_and_first_category_is_reference() -> None:
    df = pd.DataFrame({
        "g": pd.Categorical(["lo", "hi", "mid", "hi", "lo"], categories=["mid", "lo", "hi"]),
        "x": [1.0, 2.0, 3.0, 4.0, 5.0],
    })
    d = model_matrix("~ g + x", df)
    assert d.column_names == ("intrcpt", "glo", "ghi", "x")
    assert d.variables[0].levels == ("mid", "lo", "hi")
    assert d.variables[0].reference == "mid"
    # the same strings as plain text: sorted levels, "hi" the reference
    d2 = model_matrix("~ g + x", df.assign(g=df["g"].astype(str)))
    assert d2.column_names == ("intrcpt", "glo", "gmid", "x")


def test_unused_categories_give_zero_columns_which_are_redundant() -> None:
    df = pd.DataFrame({"g": pd.Categorical(["a", "b", "a", "b"], categories=["a", "b", "z"]),
                       "x": [1.0, 2.0, 4.0, 3.0]})
    d = model_matrix("~ g", df)
    assert d.column_names == ("intrcpt", "gb", "gz")
    assert not d.X[:, 2].any()
    assert d.redundant() == ("gz",)
    assert model_matrix("~ factor(g)", df).column_names == ("intrcpt", "factor(g)b")


def test_formula_quotes_and_spacing_do_not_change_the_names() -> None:
    df = pd.DataFrame({"g": ["a", "b", "c", "b"], "year": [1950, 1960, 1970, 1980]})
    a = model_matrix("~ relevel(factor(g), ref = 'b')", df)
    b = model_matrix('~relevel(factor(g),ref="b")', df)
    assert a.column_names == b.column_names == (
        "intrcpt", 'relevel(factor(g), ref = "b")a', 'relevel(factor(g), ref = "b")c')
    assert model_matrix("~ I(year-1950)", df).column_names == ("intrcpt", "I(year - 1950)")
    np.testing.assert_array_equal(model_matrix("~ I(year-1950)", df).X[:, 1], [0, 10, 20, 30])


def test_new_rows_keep_the_coding_of_the_fit_data() -> None:
    df = pd.DataFrame({"g": ["a", "b", "c", "b", "a", "c"], "x": [1.0, 2, 3, 4, 5, 6]})
    d = model_matrix("~ relevel(factor(g), ref = 'b') * scale(x)", df)
    new = pd.DataFrame({"g": ["c"], "x": [5.0]})  # one level only, no "b"
    row = d.new_rows(new)
    xs = (5.0 - 3.5) / np.std(df["x"], ddof=1)  # the centre and scale of the fit data
    # intrcpt, a, c, scale(x), a:scale(x), c:scale(x)
    np.testing.assert_allclose(row, [[1, 0, 1, xs, 0, xs]], atol=1e-15)
    assert d.variables[1].transforms[0][:2] == ("scale(x)", 3.5)
    with pytest.raises(InvalidStudyError, match="'d' is not a level") as err:
        d.new_rows(pd.DataFrame({"g": ["d"], "x": [1.0]}))
    assert err.value.field == 'relevel(factor(g), ref = "b")'
    plain = model_matrix("~ g + x", df)
    # one new row given as scalars (a string is one value, not a sequence of letters)
    np.testing.assert_array_equal(plain.new_rows({"g": "c", "x": 2.5}), [[1, 0, 1, 2.5]])
    with pytest.raises(InvalidStudyError, match="numeric in the new data but was a factor"):
        plain.new_rows(pd.DataFrame({"g": [1.0], "x": [1.0]}))
    with pytest.raises(InvalidStudyError, match="character in the new data but was numeric"):
        plain.new_rows(pd.DataFrame({"g": ["a"], "x": ["1"]}))
    with pytest.raises(InvalidStudyError, match="not a column"):
        plain.new_rows(pd.DataFrame({"g": ["a"]}))


def test_mapping_and_interchange_inputs_equal_the_dataframe() -> None:
    df = pd.DataFrame({"g": ["a", "b", "c", "b"], "x": [1.0, 2, 3, 4], "l": [True, False,
                                                                         True, True]})
    d = model_matrix("~ g * x + l", df)
    m = model_matrix("~ g * x + l", {c: df[c].tolist() for c in df.columns})
    with warnings.catch_warnings():  # pandas 3 deprecates the interchange protocol
        warnings.simplefilter("ignore")
        i = model_matrix("~ g * x + l", df.__dataframe__())
    for other in (m, i):
        assert other.column_names == d.column_names
        np.testing.assert_array_equal(other.X, d.X)
    assert d.column_names == ("intrcpt", "gb", "gc", "x", "lTRUE", "gb:x", "gc:x")


def test_design_is_frozen_and_describes_itself() -> None:
    df = pd.DataFrame({"g": ["a", "b", "c", "b"], "x": [1.0, 2, 3, 4]})
    d = model_matrix("~ g + x - 1", df)
    assert not d.intercept
    assert d.column_names == ("ga", "gb", "gc", "x")
    assert d.term_columns == {"g": (0, 1, 2), "x": (3,)}
    with pytest.raises(ValueError, match="read-only"):
        d.X[0, 0] = 5.0
    assert list(d.to_frame().columns) == list(d.column_names)
    assert repr(d) == "FormulaDesign('~ g + x - 1', k=4, p=4: ga, gb, gc, x)"
    assert model_matrix("~ 1", df).column_names == ("intrcpt",)
    assert model_matrix("~ 0", df).X.shape == (4, 0)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["ablat", "y ~ ablat", "", None, 3, ["~ x"], "~", "~  "])
def test_a_formula_must_be_a_string_starting_with_tilde(bad: Any) -> None:
    with pytest.raises(ModelSpecificationError, match="formula"):
        model_matrix(bad, pd.DataFrame({"ablat": [1.0, 2.0]}))


@pytest.mark.parametrize(("formula", "match"), [
    ("~ x > 1", "wrap an expression in I()"),
    ("~ b %in% a", "%in% as a formula operator"),
    ("~ poly(x, 2)", "not supported"),
    ("~ foo(x)", "unknown or unsupported function foo"),
    ("~ I(x && x)", "'&&'"),
    ("~ .", "'.'"),
    ("~ x + (", "unbalanced"),
    ("~ x + )", "unbalanced"),
    ("~ x +", "cannot parse the formula"),
    ("~ I(x", "unbalanced"),
    ("~ round(x, 1)", "digits"),
    ("~ relevel(g, ref = 'a')", "relevel\\(\\) needs a factor"),
    ("~ relevel(factor(g), ref = 'q')", "'q' is not a level"),
    ("~ factor(one)", "1 level"),
    ("~ x + g:x ~ z", "not a formula operator"),
    ("~ I(g + 1)", "needs a number"),
])
def test_unsupported_or_wrong_formulas_raise_clearly(formula: str, match: str) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "g": ["a", "b", "a"], "a": ["u", "v", "u"],
                       "b": ["s", "s", "t"], "one": ["k", "k", "k"]})
    with pytest.raises(ModelSpecificationError, match=match):
        model_matrix(formula, df)


def test_unknown_column_is_named() -> None:
    with pytest.raises(InvalidStudyError, match="not a column") as err:
        model_matrix("~ ablat + log(year)", pd.DataFrame({"ablat": [1.0, 2.0]}))
    assert err.value.field == "year"


@pytest.mark.parametrize("column", [
    [1.0, np.nan, 3.0],
    ["a", None, "b"],
    pd.array([1, None, 3], dtype="Int64"),
    pd.array([True, None, False], dtype="boolean"),
    pd.Categorical(["a", None, "b"]),
])
def test_missing_values_name_the_row_and_column(column: Any) -> None:
    df = pd.DataFrame({"m": column, "x": [1.0, 2.0, 3.0]}, index=["s1", "s2", "s3"])
    with pytest.raises(InvalidStudyError, match="missing value") as err:
        model_matrix("~ x + m", df)
    assert (err.value.study, err.value.field) == ("s2", "m")


def test_non_finite_values_of_a_variable_name_the_row() -> None:
    df = pd.DataFrame({"x": [1.0, 0.0, 3.0]})
    with pytest.raises(InvalidStudyError, match="-Inf") as err:
        model_matrix("~ log(x)", df)
    assert (err.value.study, err.value.field) == ("1", "log(x)")


def test_factor_levels_argument_and_values_outside_them() -> None:
    df = pd.DataFrame({"g": ["a", "b", "c"]})
    d = model_matrix("~ factor(g, levels = c('c', 'b', 'a'))", df)
    assert d.column_names[1:] == ("factor(g, levels = c(\"c\", \"b\", \"a\"))b",
                                  "factor(g, levels = c(\"c\", \"b\", \"a\"))a")
    with pytest.raises(InvalidStudyError, match="not among the levels") as err:
        model_matrix("~ factor(g, levels = c('a', 'b'))", df)
    assert err.value.study == "2"


# ---------------------------------------------------------------------------
# R's lm QR (dqrdc2)
# ---------------------------------------------------------------------------


def test_redundant_columns_keep_the_earlier_columns() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 10))
    X = np.column_stack([np.ones(10), a, b, 2 * a - b, np.zeros(10), a + 1e-3 * rng.normal(
        size=10)])
    assert redundant_columns(X).tolist() == [False, False, False, True, True, False]
    # beyond the rank of the rows: more columns than rows
    assert redundant_columns(rng.normal(size=(3, 5))).tolist() == [False] * 3 + [True] * 2
    # the tolerance is relative to each column's norm, as dqrdc2's
    Y = np.column_stack([np.ones(10), 1 + 1e-9 * a])
    assert redundant_columns(Y).tolist() == [False, True]
    assert redundant_columns(Y, tol=1e-12).tolist() == [False, False]


def test_redundant_columns_agree_with_a_rank_check() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        k, p = rng.integers(3, 12), rng.integers(1, 8)
        base = rng.normal(size=(k, p))
        # make some columns combinations of earlier ones
        for j in range(1, p):
            if rng.random() < 0.3:
                base[:, j] = base[:, :j] @ rng.normal(size=j)
        red = redundant_columns(base)
        kept = base[:, ~red]
        assert np.linalg.matrix_rank(kept) == kept.shape[1] == np.linalg.matrix_rank(base)
        # a column is dropped only if it is spanned by the kept columns before it
        for j in np.flatnonzero(red):
            before = base[:, :j][:, ~red[:j]]
            if before.shape[1] and before.shape[1] < k:
                resid = base[:, j] - before @ np.linalg.lstsq(before, base[:, j], rcond=None)[0]
                assert np.linalg.norm(resid) <= 1e-6 * max(np.linalg.norm(base[:, j]), 1e-300)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(fm, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_nan_is_never_a_level() -> None:
    assert r_number_string(math.nan) == "NaN"
    assert r_number_string(-math.inf) == "-Inf"
