"""The escalc() entry point: data columns, metafor's argument aliases, nan_policy,
sign alignment, bad input naming row and field, and the result's bridges."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta import EffectSize, StudySet
from alliance_meta.exceptions import AllianceMetaError, DataOmittedWarning, InvalidStudyError


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": ["A", "B", "C", "D"],
            "r": [0.3, -0.1, 0.45, 0.2],
            "n": [50, 80, 35, 120],
            "reversed": [False, True, False, False],
            "group": ["x", "y", "x", "y"],
        }
    )


def test_columns_of_data_and_labels() -> None:
    df = _frame()
    res = am.escalc("ZCOR", ri="r", ni="n", data=df, slab="study")
    direct = am.escalc("ZCOR", ri=df["r"].to_numpy(), ni=df["n"].to_numpy())
    np.testing.assert_array_equal(res.yi, direct.yi)  # the same computation
    assert res.labels == ("A", "B", "C", "D")
    frame = res.to_frame()
    assert list(frame.index) == ["A", "B", "C", "D"]
    assert list(frame.columns) == ["yi", "vi", "sei", "ni", "corrected", "flipped"]


def test_to_studyset_with_moderators_and_labels() -> None:
    df = _frame()
    res = am.escalc("ZCOR", ri="r", ni="n", data=df)
    s = res.to_studyset(labels="study", moderators=["group"])
    assert isinstance(s, StudySet)
    assert s.labels == ("A", "B", "C", "D") and s.measure == "ZCOR"
    np.testing.assert_array_equal(s.yi, res.yi)
    assert [st.n for st in s] == [50, 80, 35, 120]
    fit = am.random_effects(s)
    assert np.isfinite(fit.estimate)


def test_metafor_argument_aliases() -> None:
    # bi = n1i - ai, di = n2i - ci (metafor); mi = ni - xi for proportions; sei for vi
    a = am.escalc("OR", ai=[4, 6], bi=[119, 300], ci=[11, 29], di=[128, 274])
    b = am.escalc("OR", ai=[4, 6], n1i=[123, 306], ci=[11, 29], n2i=[139, 303])
    np.testing.assert_array_equal(a.yi, b.yi)
    p = am.escalc("PLO", xi=[3, 10], ni=[20, 25])
    q = am.escalc("PLO", xi=[3, 10], mi=[17, 15])
    np.testing.assert_array_equal(p.yi, q.yi)
    g = am.escalc("GEN", yi=[0.1, 0.2], sei=[0.1, 0.2])
    np.testing.assert_allclose(g.vi, [0.01, 0.04], rtol=1e-15)  # se² up to rounding
    with pytest.raises(InvalidStudyError) as exc:
        am.escalc("OR", ai=[4, 6], bi=[119, 300], n1i=[123, 300], ci=[11, 29], di=[1, 2])
    assert exc.value.field == "n1i" and exc.value.study == "row 1"


def test_unused_metafor_arguments_are_ignored_and_typos_are_not() -> None:
    base = am.escalc("SMCR", m1i=5, m2i=4, sd1i=2, ni=30, ri=0.5)
    with_sd2 = am.escalc("SMCR", m1i=5, m2i=4, sd1i=2, sd2i=3, ni=30, ri=0.5)
    assert base.yi[0] == with_sd2.yi[0]  # metafor's SMCR ignores sd2i
    with pytest.raises(AllianceMetaError, match="not an argument"):
        am.escalc("SMCR", m1i=5, m2i=4, sd1=2, ni=30, ri=0.5)


def test_nan_policy() -> None:
    r, n = [0.3, np.nan, 0.2], [50, 40, np.nan]
    with pytest.raises(InvalidStudyError) as exc:
        am.escalc("COR", ri=r, ni=n)
    assert exc.value.study == "row 1" and exc.value.field == "ri"
    with pytest.warns(DataOmittedWarning, match="omitted 2 of 3"):
        omitted = am.escalc("COR", ri=r, ni=n, nan_policy="omit")
    assert omitted.k == 1 and list(omitted.rows) == [0] and list(omitted.omitted) == [1, 2]
    kept = am.escalc("COR", ri=r, ni=n, nan_policy="propagate")
    assert kept.k == 3 and np.isnan(kept.yi[1]) and np.isnan(kept.vi[2])
    assert kept.yi[0] == omitted.yi[0]
    with pytest.warns(DataOmittedWarning):
        s = kept.to_studyset()
    assert len(s) == 1


def test_flip_and_direction_are_recorded() -> None:
    df = _frame()
    base = am.escalc("COR", ri="r", ni="n", data=df)
    res = am.escalc("COR", ri="r", ni="n", data=df, flip="reversed", slab="study")
    np.testing.assert_array_equal(res.flipped, [False, True, False, False])
    np.testing.assert_array_equal(res.yi, np.where(res.flipped, -base.yi, base.yi))
    np.testing.assert_array_equal(res.vi, base.vi)
    assert "Sign reversed (flip): B" in str(res)
    dir_res = am.escalc("COR", ri="r", ni="n", data=df, direction=[1, -1, 1, 1])
    np.testing.assert_array_equal(dir_res.yi, res.yi)
    with pytest.raises(InvalidStudyError, match="direction"):
        am.escalc("COR", ri=0.3, ni=50, direction=0.5)
    with pytest.raises(InvalidStudyError, match="no meaning"):
        am.escalc("PR", xi=3, ni=20, flip=True)


@pytest.mark.parametrize(
    ("measure", "inputs", "field", "message"),
    [
        # a proportion outside [0, 1] (the p-value and R² inputs)
        ("SMD", dict(pi=[0.04, 1.3], n1i=20, n2i=20), "pi", "p-value"),
        ("SPCOR", dict(ti=2, ni=100, mi=3, r2i=[0.3, 1.2]), "r2i", "R\\^2"),
        # counts above n
        ("PR", dict(xi=[3, 25], ni=[20, 20]), "xi", "exceeds"),
        ("RR", dict(ai=[3, 25], n1i=20, ci=3, n2i=20), "ai", "exceeds"),
        # negative times
        ("IR", dict(xi=[3, 2], ti=[10.0, -5.0]), "ti", "person-time"),
        ("IRR", dict(x1i=[3, 2], x2i=4, t1i=10, t2i=[8.0, 0.0]), "t2i", "person-time"),
        # alpha outside (-inf, 1)
        ("ARAW", dict(ai=[0.8, 1.0], mi=10, ni=100), "ai", "alpha"),
        ("ABT", dict(ai=[0.8, 1.3], mi=10, ni=100), "ai", "alpha"),
        # r outside (-1, 1)
        ("COR", dict(ri=[0.3, 1.2], ni=50), "ri", "correlation"),
        ("SMCR", dict(m1i=5, m2i=4, sd1i=2, ni=30, ri=[0.5, -1.5]), "ri", "correlation"),
        # a t without df
        ("COR", dict(ti=[2.0, 1.5], ni=[30, np.nan]), "ni", "degrees of freedom"),
        ("SMD", dict(ti=[2.0, 1.5], n1i=[30, np.nan], n2i=30), "n1i", "degrees of freedom"),
        # mi >= ni - 1 for a partial correlation
        ("PCOR", dict(ti=2.0, ni=[50, 20], mi=[3, 19]), "mi", "ni - 1"),
        # others
        ("RTET", dict(ai=[10, 0], bi=12, ci=8, di=15), "ai", "zero cell"),
        ("MNLN", dict(mi=[2.0, -1.0], sdi=1, ni=20), "mi", "> 0"),
    ],
)
def test_bad_input_names_row_and_field(
    measure: str, inputs: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidStudyError, match=message) as exc:
        am.escalc(measure, slab=["fine", "broken"], **inputs)  # type: ignore[arg-type]
    assert exc.value.study == "broken"
    assert exc.value.field == field


def test_vtype_per_row_and_unknown_vtype() -> None:
    rows = am.escalc("PR", xi=[3, 10], ni=[20, 25], vtype=["LS", "UB"])
    ls = am.escalc("PR", xi=[3, 10], ni=[20, 25], vtype="LS")
    ub = am.escalc("PR", xi=[3, 10], ni=[20, 25], vtype="UB")
    assert rows.vi[0] == ls.vi[0] and rows.vi[1] == ub.vi[1]
    # metafor ignores vtype for a measure with one estimator: so does escalc, with a
    # warning; it refuses a vtype the measure's estimators do not include
    with pytest.warns(am.exceptions.AllianceMetaWarning, match="ignored"):
        ub_or = am.escalc("OR", ai=1, bi=2, ci=3, di=4, vtype="UB")
    assert ub_or.vi[0] == am.escalc("OR", ai=1, bi=2, ci=3, di=4).vi[0]
    with pytest.raises(AllianceMetaError, match="not available for measure 'SMDH'"):
        am.escalc("SMDH", m1i=1, m2i=0, sd1i=1, sd2i=1, n1i=10, n2i=10, vtype="UB")
    with pytest.raises(AllianceMetaError, match="not available for measure 'ZCOR'"):
        am.escalc("ZCOR", ri=0.3, ni=30, vtype="UB")
    with pytest.raises(AllianceMetaError, match="unknown vtype"):
        am.escalc("PR", xi=3, ni=20, vtype="XX")


def test_effect_size_and_from_dataframe_take_the_new_measures() -> None:
    es = EffectSize.from_counts(a=4, b=119, c=11, d=128, measure="PETO")
    ref = am.escalc("PETO", ai=4, bi=119, ci=11, di=128)
    assert es.value == ref.yi[0] and es.variance == ref.vi[0]
    es2 = EffectSize.from_means(m1=5, sd1=2, n1=30, m2=4, sd2=2.5, n2=35, measure="RBIS")
    assert es2.measure == "RBIS"
    with pytest.raises(InvalidStudyError, match="not computed from this input"):
        EffectSize.from_correlation(r=0.3, n=50, measure="PETO")
    df = pd.DataFrame({"a": [4, 6], "b": [119, 300], "c": [11, 29], "d": [128, 274]})
    s = StudySet.from_dataframe(df, a="a", b="b", c="c", d="d", measure="YUQ")
    np.testing.assert_array_equal(
        s.yi, am.escalc("YUQ", ai=df["a"], bi=df["b"], ci=df["c"], di=df["d"]).yi
    )


def test_summary_and_repr() -> None:
    res = am.escalc("SMD", m1i=np.arange(40.0), m2i=0, sd1i=5, sd2i=5, n1i=20, n2i=20)
    assert len(repr(res)) < 1200
    text = str(res.summary())
    assert "SMD" in text and "Studies:" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(res) == 40


@pytest.mark.parametrize(
    ("measure", "means", "field", "message"),
    [
        # a log ratio of means needs a positive ratio m1/m2
        ("ROM", {"m1i": [2.0, -1.0], "m2i": [1.0, 3.0]}, "m2i", "same sign"),
        ("ROM", {"m1i": [2.0, 0.0], "m2i": [1.0, 3.0]}, "m1i", "non-zero mean"),
        ("ROMC", {"m1i": [2.0, 1.0], "m2i": [1.0, -3.0]}, "m2i", "same sign"),
        # a coefficient of variation needs positive means
        ("CVR", {"m1i": [2.0, 1.0], "m2i": [1.0, -3.0]}, "m2i", "CVR needs a mean"),
        ("CVRC", {"m1i": [-2.0, 1.0], "m2i": [1.0, 3.0]}, "m1i", "CVRC needs a mean"),
    ],
)
def test_ratio_of_means_needs_usable_means(
    measure: str, means: dict[str, list[float]], field: str, message: str
) -> None:
    sds = {"sd1i": [1.0, 1.0], "sd2i": [1.0, 1.0]}
    ns = {"ni": [20, 20], "ri": [0.5, 0.5]} if measure.endswith("C") else {
        "n1i": [20, 20], "n2i": [20, 20]}
    with pytest.raises(InvalidStudyError, match=message) as exc:
        am.escalc(measure, **means, **sds, **ns)  # type: ignore[arg-type]
    assert exc.value.field == field
