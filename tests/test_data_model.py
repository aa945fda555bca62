"""EffectSize, Study, Moderator and StudySet."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import attrs
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import alliance_meta
from alliance_meta import EffectSize, Moderator, Study, StudySet
from alliance_meta.exceptions import DataOmittedWarning, InvalidStudyError
from alliance_meta.results.base import ConfidenceInterval

REF = Path(__file__).parent / "reference"
# metafor agreement required by issue 2 (see tests/test_escalc.py for the reasoning).
RTOL = 1e-10


# ------------------------------------------------------------------ EffectSize


def test_contract_from_correlation() -> None:
    es = alliance_meta.EffectSize.from_correlation(r=0.3, n=103, measure="ZCOR")
    # atanh(0.3) and 1/(103 - 3), computed independently: a few ulps.
    assert es.value == pytest.approx(math.atanh(0.3), rel=1e-14)
    assert es.variance == pytest.approx(0.01, rel=1e-14)
    assert es.measure == "ZCOR"
    assert es.se == pytest.approx(0.1, rel=1e-14)


@pytest.mark.parametrize(
    ("value", "variance", "field"),
    [
        (0.1, 0.0, "variance"),
        (0.1, -1.0, "variance"),
        (0.1, float("nan"), "variance"),
        (0.1, float("inf"), "variance"),
        (float("nan"), 0.1, "value"),
        (float("inf"), 0.1, "value"),
        ("abc", 0.1, "value"),
    ],
)
def test_contract_direct_constructor_rejects(value: float, variance: float, field: str) -> None:
    with pytest.raises(ValueError) as exc:
        alliance_meta.EffectSize(value=value, variance=variance)
    assert isinstance(exc.value, InvalidStudyError)
    assert exc.value.field == field
    assert repr(field) in str(exc.value)


def test_effect_size_is_frozen_and_hashable() -> None:
    es = EffectSize(0.2, 0.04)
    assert es.measure == "GEN" and not es.corrected
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        es.value = 1.0  # type: ignore[misc]
    assert hash(es) == hash(EffectSize(0.2, 0.04))


def test_confidence_interval() -> None:
    es = EffectSize(0.5, 0.04)
    ci = es.confidence_interval()
    assert isinstance(ci, ConfidenceInterval)
    z = stats.norm.ppf(0.975)
    # value ± z·se: the same operations, a few ulps.
    assert ci.low == pytest.approx(0.5 - z * 0.2, rel=1e-14)
    assert ci.high == pytest.approx(0.5 + z * 0.2, rel=1e-14)
    low, high = es.confidence_interval(0.9)
    assert high - low < ci.width
    with pytest.raises(ValueError, match="level"):
        es.confidence_interval(1.5)


def test_named_constructors_match_metafor() -> None:
    ref = json.loads((REF / "escalc_nielweise2007.json").read_text())
    raw = ref["raw"]
    for measure in ("OR", "RR", "RD"):
        for i in range(len(raw["ai"])):
            es = EffectSize.from_counts(
                a=raw["ai"][i], b=raw["bi"][i], c=raw["ci"][i], d=raw["di"][i], measure=measure
            )
            assert es.value == pytest.approx(ref["measures"][measure]["yi"][i], rel=RTOL, abs=1e-14)
            assert es.variance == pytest.approx(ref["measures"][measure]["vi"][i], rel=RTOL)
            assert es.corrected == raw["corrected"][i]
    ref = json.loads((REF / "escalc_normand1999.json").read_text())
    raw = ref["raw"]
    for measure in ("SMD", "MD", "SMDH", "ROM"):
        es = EffectSize.from_means(
            m1=raw["m1i"][0], sd1=raw["sd1i"][0], n1=raw["n1i"][0],
            m2=raw["m2i"][0], sd2=raw["sd2i"][0], n2=raw["n2i"][0], measure=measure,
        )  # fmt: skip
        assert es.value == pytest.approx(ref["measures"][measure]["yi"][0], rel=RTOL)
        assert es.variance == pytest.approx(ref["measures"][measure]["vi"][0], rel=RTOL)
    ref = json.loads((REF / "escalc_molloy2014.json").read_text())
    for measure in ("ZCOR", "COR", "UCOR"):
        es = EffectSize.from_correlation(
            r=ref["raw"]["ri"][0], n=ref["raw"]["ni"][0], measure=measure
        )
        assert es.value == pytest.approx(ref["measures"][measure]["yi"][0], rel=RTOL)
        assert es.variance == pytest.approx(ref["measures"][measure]["vi"][0], rel=RTOL)


def test_named_constructor_errors_name_label_and_field() -> None:
    with pytest.raises(InvalidStudyError) as exc:
        EffectSize.from_correlation(r=1.0, n=50, label="Smith 2001")
    assert exc.value.study == "Smith 2001" and exc.value.field == "r"
    with pytest.raises(InvalidStudyError) as exc:
        EffectSize.from_correlation(r=0.2, n=3)
    assert exc.value.field == "n"
    with pytest.raises(InvalidStudyError) as exc:
        EffectSize.from_means(m1=1, sd1=0, n1=10, m2=2, sd2=1, n2=10, label="x")
    assert exc.value.field == "sd1" and "'x'" in str(exc.value)
    with pytest.raises(InvalidStudyError) as exc:
        EffectSize.from_counts(a=1, b=2.5, c=3, d=4, label="y")
    assert exc.value.field == "b"
    with pytest.raises(InvalidStudyError, match="measure"):
        EffectSize.from_counts(a=1, b=2, c=3, d=4, measure="SMD")  # type: ignore[arg-type]


# ----------------------------------------------------------------------- Study


def test_study_moderators_are_immutable_and_hashable() -> None:
    mods = {"rater": "patient", "years": 3, "blind": True}
    s = Study("A", EffectSize(0.1, 0.01), n=40, moderators=mods)
    mods["rater"] = "therapist"
    assert s.moderators["rater"] == "patient"
    assert s.moderators["years"] == 3.0 and isinstance(s.moderators["years"], float)
    with pytest.raises(TypeError):
        s.moderators["rater"] = "x"  # type: ignore[index]
    assert hash(s) == hash(Study("A", EffectSize(0.1, 0.01), n=40, moderators=dict(s.moderators)))
    assert Study("B", EffectSize(0.1, 0.01)).moderators == {}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"moderators": {"years": float("nan")}}, "years"),
        ({"moderators": {"years": None}}, "years"),
        ({"moderators": {"years": [1, 2]}}, "years"),
        ({"n": 0}, "n"),
        ({"n": 10.5}, "n"),
    ],
)
def test_study_rejects_bad_fields(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError) as exc:
        Study("Jones 2003", EffectSize(0.1, 0.01), **kwargs)  # type: ignore[arg-type]
    assert isinstance(exc.value, InvalidStudyError)
    assert exc.value.field == field
    if field != "n":
        assert exc.value.study == "Jones 2003"


def test_study_label_must_be_nonempty() -> None:
    with pytest.raises(InvalidStudyError, match="label"):
        Study("", EffectSize(0.1, 0.01))


# ------------------------------------------------------------------- Moderator


def test_moderator_infer_categorical_sorted_first_is_reference() -> None:
    m = Moderator.infer("alloc", ["random", "systematic", "alternate", "random"])
    assert m.kind == "categorical"
    assert m.levels == ("alternate", "random", "systematic")
    assert m.reference == "alternate"
    names, cols = m.design_columns(["random", "systematic", "alternate", "random"])
    assert names == ("allocrandom", "allocsystematic")
    np.testing.assert_array_equal(cols, [[1, 0], [0, 1], [0, 0], [1, 0]])


def test_moderator_continuous_and_logical() -> None:
    m = Moderator.infer("ablat", [44, 55.5, 13])
    assert m == Moderator.continuous("ablat")
    names, cols = m.design_columns([44, 55.5, 13])
    assert names == ("ablat",)
    np.testing.assert_array_equal(cols[:, 0], [44, 55.5, 13])
    b = Moderator.infer("blind", [True, False])
    assert b.levels == ("FALSE", "TRUE")  # R spells logicals TRUE/FALSE: coef "blindTRUE"
    assert b.coef_names == ("blindTRUE",)


def test_moderator_explicit_levels_and_reference() -> None:
    m = Moderator.categorical("rater", levels=["therapist", "patient"], reference="patient")
    assert m.coef_names == ("ratertherapist",)
    _, cols = m.design_columns(["patient", "therapist"])
    np.testing.assert_array_equal(cols, [[0], [1]])
    lazy = Moderator.categorical("rater")
    assert lazy.levels is None
    names, _ = lazy.design_columns(["therapist", "patient"])
    assert names == ("ratertherapist",)  # levels sorted: patient is the reference
    with pytest.raises(InvalidStudyError):
        Moderator.categorical("rater", levels=["a", "b"], reference="c")
    with pytest.raises(InvalidStudyError):
        Moderator.categorical("rater", levels=["a", "a"])


@pytest.mark.parametrize(
    ("moderator", "values"),
    [
        (Moderator.continuous("years"), [1.0, "ten"]),
        (Moderator.categorical("rater"), ["patient", 2.0]),
        (Moderator.categorical("rater", levels=["patient", "therapist"]), ["patient", "peer"]),
        (Moderator.continuous("years"), [1.0, float("nan")]),
    ],
)
def test_moderator_wrong_kind_or_unknown_level(moderator: Moderator, values: list[object]) -> None:
    with pytest.raises(ValueError) as exc:
        moderator.design_columns(values, labels=["s1", "s2"])
    assert isinstance(exc.value, InvalidStudyError)
    assert exc.value.study == "s2"
    assert exc.value.field == moderator.name


def test_moderator_infer_mixed_kinds() -> None:
    with pytest.raises(InvalidStudyError) as exc:
        Moderator.infer("x", ["a", 1.0], labels=["s1", "s2"])
    assert exc.value.study == "s2" and exc.value.field == "x"


# -------------------------------------------------------------------- StudySet


def _small() -> StudySet:
    return StudySet.from_arrays(
        yi=[0.1, -0.2, 0.3, 0.05],
        vi=[0.01, 0.02, 0.03, 0.04],
        labels=["a", "b", "c", "d"],
        measure="ZCOR",
        moderators={"rater": ["patient", "therapist", "patient", "therapist"], "yrs": [1, 2, 3, 4]},
    )


def test_studyset_sequence_protocol() -> None:
    s = _small()
    assert len(s) == 4 and s.k == 4
    assert [x.label for x in s] == ["a", "b", "c", "d"]
    assert s[1].label == "b" and s["c"].effect.value == 0.3
    assert s[-1].label == "d"
    assert isinstance(s[1:3], StudySet) and s[1:3].labels == ("b", "c")
    assert "a" in s and "z" not in s
    with pytest.raises(KeyError):
        s["z"]
    np.testing.assert_array_equal(s.yi, [0.1, -0.2, 0.3, 0.05])
    np.testing.assert_array_equal(s.vi, [0.01, 0.02, 0.03, 0.04])
    assert s.yi.dtype == np.float64 and not s.yi.flags.writeable
    assert s.measure == "ZCOR"
    assert s.moderator_names == ("rater", "yrs")
    assert s.moderator("rater").dtype == object
    assert s.moderator("yrs").dtype == np.float64
    hash(s)


def test_studyset_subsets() -> None:
    s = _small()
    assert s.subset(rater="patient").labels == ("a", "c")
    assert s.where("rater", "therapist").labels == ("b", "d")
    assert s.subset(rater="patient", yrs=3).labels == ("c",)
    assert s.subset(yrs=[1, 4]).labels == ("a", "d")
    groups = s.groupby("rater")
    assert list(groups) == ["patient", "therapist"]
    assert groups["therapist"].labels == ("b", "d")
    spec = s.moderator_spec("rater")
    assert spec.coef_names == ("ratertherapist",)


def test_studyset_duplicate_labels() -> None:
    with pytest.raises(ValueError) as exc:
        StudySet.from_arrays(yi=[0.1, 0.2, 0.3], vi=[0.1, 0.1, 0.1], labels=["x", "y", "x"])
    assert isinstance(exc.value, InvalidStudyError)
    assert exc.value.study == "x" and exc.value.field == "label"
    es = EffectSize(0.1, 0.1)
    with pytest.raises(InvalidStudyError, match="duplicate"):
        StudySet([Study("x", es), Study("x", es)])


def test_studyset_mixed_measures() -> None:
    with pytest.raises(InvalidStudyError) as exc:
        StudySet(
            [Study("a", EffectSize(0.1, 0.1, "ZCOR")), Study("b", EffectSize(0.1, 0.1, "SMD"))]
        )
    assert exc.value.study == "b" and exc.value.field == "measure"


@pytest.mark.parametrize(
    ("vi", "field"),
    [(0.0, "variance"), (-0.1, "variance"), (float("nan"), "variance"), (float("inf"), "variance")],
)
def test_from_arrays_bad_variance(vi: float, field: str) -> None:
    with pytest.raises(InvalidStudyError) as exc:
        StudySet.from_arrays(yi=[0.1, 0.2], vi=[0.1, vi], labels=["ok", "Lee 2010"])
    assert exc.value.study == "Lee 2010" and exc.value.field == field


def test_unknown_moderator_names_it_and_the_known_ones() -> None:
    s = StudySet([Study("a", EffectSize(0.1, 0.1), moderators={"rater": "patient"})])
    with pytest.raises(InvalidStudyError, match="'rater'") as exc:
        s.moderator("rated_by")
    assert exc.value.field == "rated_by" and exc.value.study is None
    assert isinstance(exc.value, ValueError)


def test_moderator_mixed_kind_across_studies() -> None:
    s = StudySet(
        [
            Study("a", EffectSize(0.1, 0.1), moderators={"g": "x"}),
            Study("b", EffectSize(0.1, 0.1), moderators={"g": 2.0}),
        ]
    )
    with pytest.raises(InvalidStudyError) as exc:
        s.moderator("g")
    assert exc.value.study == "b" and exc.value.field == "g"
    s2 = StudySet(
        [Study("a", EffectSize(0.1, 0.1), moderators={"g": "x"}), Study("b", EffectSize(0.1, 0.1))]
    )
    with pytest.raises(InvalidStudyError) as exc:
        s2.moderator("g")
    assert exc.value.study == "b"


# ----------------------------------------------------------- from_dataframe / csv


def _molloy_frame() -> pd.DataFrame:
    ref = json.loads((REF / "escalc_molloy2014.json").read_text())
    return pd.DataFrame(
        {
            "study": [f"S{i}" for i in range(len(ref["raw"]["ri"]))],
            "ri": ref["raw"]["ri"],
            "ni": ref["raw"]["ni"],
            "design": ["pro" if i % 3 else "cross" for i in range(len(ref["raw"]["ri"]))],
            "age": np.linspace(20, 60, len(ref["raw"]["ri"])),
        }
    )


def test_from_dataframe_correlations_match_metafor() -> None:
    ref = json.loads((REF / "escalc_molloy2014.json").read_text())
    df = _molloy_frame()
    for measure in ("ZCOR", "COR", "UCOR"):
        s = StudySet.from_dataframe(
            df, label="study", r="ri", n="ni", measure=measure, moderators=["design", "age"]
        )
        np.testing.assert_allclose(s.yi, ref["measures"][measure]["yi"], rtol=RTOL)
        np.testing.assert_allclose(s.vi, ref["measures"][measure]["vi"], rtol=RTOL)
    assert s.measure == "UCOR"
    assert s[0].n == 109
    assert s.moderator("design")[0] == "cross"


def test_from_dataframe_means_counts_and_generic() -> None:
    ref = json.loads((REF / "escalc_normand1999.json").read_text())
    s = StudySet.from_dataframe(
        pd.DataFrame(ref["raw"]), m1="m1i", sd1="sd1i", n1="n1i", m2="m2i", sd2="sd2i", n2="n2i"
    )
    assert s.measure == "SMD" and s.labels[0] == "1"
    np.testing.assert_allclose(s.yi, ref["measures"]["SMD"]["yi"], rtol=RTOL)
    ref = json.loads((REF / "escalc_nielweise2007.json").read_text())
    df = pd.DataFrame({k: ref["raw"][k] for k in ("ai", "bi", "ci", "di")})
    s = StudySet.from_dataframe(df, a="ai", b="bi", c="ci", d="di", measure="RD")
    np.testing.assert_allclose(s.vi, ref["measures"]["RD"]["vi"], rtol=RTOL)
    np.testing.assert_array_equal(s.corrected, ref["raw"]["corrected"])
    g = StudySet.from_dataframe(pd.DataFrame({"y": [0.1, 0.2], "s": [0.1, 0.2]}), yi="y", se="s")
    np.testing.assert_allclose(g.vi, [0.01, 0.04], rtol=1e-15)  # se² exactly up to rounding
    with pytest.raises(ValueError, match="one kind"):
        StudySet.from_dataframe(df, a="ai", b="bi", c="ci", d="di", yi="ai", vi="bi")
    with pytest.raises(ValueError, match="measure"):
        StudySet.from_dataframe(df, a="ai", b="bi", c="ci", d="di", measure="SMD")


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("ri", 1.5, "ri"),
        ("ri", -1.0, "ri"),
        ("ni", 3, "ni"),
        ("ri", np.nan, "ri"),
        ("ni", np.nan, "ni"),
        ("age", np.nan, "age"),
        ("ri", "abc", "ri"),
    ],
)
def test_from_dataframe_errors_name_label_and_column(
    column: str, value: object, field: str
) -> None:
    df = _molloy_frame().astype({column: object})
    df.loc[4, column] = value
    with pytest.raises(ValueError) as exc:
        StudySet.from_dataframe(df, label="study", r="ri", n="ni", moderators=["design", "age"])
    assert isinstance(exc.value, InvalidStudyError)
    assert exc.value.study == "S4" and exc.value.field == field
    assert "S4" in str(exc.value) and field in str(exc.value)


def test_from_dataframe_bad_variance_and_duplicates() -> None:
    df = pd.DataFrame({"id": ["a", "b", "c"], "y": [0.1, 0.2, 0.3], "v": [0.1, 0.0, 0.1]})
    with pytest.raises(InvalidStudyError) as exc:
        StudySet.from_dataframe(df, label="id", yi="y", vi="v")
    assert exc.value.study == "b" and exc.value.field == "v"
    df["id"] = ["a", "b", "a"]
    df["v"] = 0.1
    with pytest.raises(InvalidStudyError) as exc:
        StudySet.from_dataframe(df, label="id", yi="y", vi="v")
    assert exc.value.study == "a" and exc.value.field == "label"


def test_from_dataframe_wrong_kind_moderator() -> None:
    df = _molloy_frame().astype({"age": object})
    df.loc[2, "age"] = "old"
    s = StudySet.from_dataframe(df, label="study", r="ri", n="ni", moderators=["age"])
    with pytest.raises(InvalidStudyError) as exc:
        s.moderator("age")
    assert exc.value.field == "age" and exc.value.study == "S2"


def test_nan_policy_omit() -> None:
    df = _molloy_frame()
    df.loc[[2, 7], "ri"] = np.nan
    df.loc[9, "design"] = None
    with pytest.warns(DataOmittedWarning, match="S2.*S7.*S9"):
        s = StudySet.from_dataframe(
            df, label="study", r="ri", n="ni", moderators="design", nan_policy="omit"
        )
    assert s.dropped == ("S2", "S7", "S9")
    assert len(s) == len(df) - 3 and "S2" not in s
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = StudySet.from_dataframe(
            _molloy_frame(), label="study", r="ri", n="ni", nan_policy="omit"
        )
    assert clean.dropped == ()


def test_csv_round_trip(tmp_path: Path) -> None:
    df = _molloy_frame()
    path = tmp_path / "studies.csv"
    df.to_csv(path, index=False)
    s = StudySet.from_csv(path, label="study", r="ri", n="ni", moderators=["design", "age"])
    out = s.to_dataframe()
    assert list(out.columns[:7]) == ["label", "yi", "vi", "se", "measure", "n", "corrected"]
    assert list(out["label"]) == list(df["study"])
    np.testing.assert_array_equal(out["yi"], s.yi)
    assert list(out["design"]) == list(df["design"])
    back = StudySet.from_dataframe(
        out, label="label", yi="yi", vi="vi", n="n", measure="ZCOR", moderators=["design", "age"]
    )
    assert back == s


def test_hundred_thousand_rows_from_dataframe() -> None:
    rng = np.random.default_rng(1)
    k = 100_000
    df = pd.DataFrame({"r": rng.uniform(-0.9, 0.9, k), "n": rng.integers(10, 500, k)})
    s = StudySet.from_dataframe(df, r="r", n="n")
    assert len(s) == k
    # metafor's 0.5·log((1+r)/(1−r)) and numpy's arctanh differ by ~1e-16 absolute,
    # which is large relative to z for |r| ~ 1e-6; hence the absolute floor.
    np.testing.assert_allclose(s.yi, np.arctanh(df["r"].to_numpy()), rtol=1e-12, atol=1e-15)


# -- bad input found by a user review: each names the study and the field ------


def test_duplicate_labels_in_a_list_of_studies() -> None:
    e = EffectSize(value=0.1, variance=0.01, measure="GEN")
    with pytest.raises(InvalidStudyError, match="duplicate study label") as err:
        alliance_meta.random_effects([Study("A", e), Study("B", e), Study("A", e)])
    assert err.value.study == "A"
    assert err.value.field == "label"


def test_from_arrays_names_a_non_numeric_entry() -> None:
    with pytest.raises(InvalidStudyError, match="'x' is not numeric") as err:
        StudySet.from_arrays(yi=[0.1, "x"], vi=[0.01, 0.1], labels=["A", "B"])
    assert err.value.field == "yi"
    assert err.value.study == "row 1"


def test_from_dataframe_takes_a_mapping_and_rejects_no_rows() -> None:
    data = {"r": [0.1, 0.2, 0.3], "n": [50, 60, 70]}
    assert StudySet.from_dataframe(data, r="r", n="n") == StudySet.from_dataframe(
        pd.DataFrame(data), r="r", n="n"
    )
    with pytest.raises(InvalidStudyError, match="no rows"):
        StudySet.from_dataframe(pd.DataFrame({"r": [], "n": []}), r="r", n="n")


def test_missing_group_value_names_the_study() -> None:
    # numpy alone would turn this list into the strings "a", "b", "nan", "a"
    with pytest.raises(InvalidStudyError, match="missing group value") as err:
        alliance_meta.subgroup_analysis(
            yi=[0.1, 0.2, 0.3, 0.4], vi=[0.01] * 4, groups=["a", "b", np.nan, "a"]
        )
    assert err.value.study == "Study 3"
    assert err.value.field == "groups"


def test_subgroups_by_a_numeric_moderator_must_be_declared_categorical() -> None:
    studies = alliance_meta.datasets.load_alliance_example().studies()
    with pytest.raises(alliance_meta.exceptions.ModelSpecificationError, match="categorical"):
        alliance_meta.subgroup_analysis(studies, by="experience")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", alliance_meta.exceptions.FewStudiesWarning)
        by_value = alliance_meta.subgroup_analysis(
            studies, by=Moderator("experience", "categorical")
        )
    assert len(by_value.groups) == len(set(studies.moderator("experience")))


def test_sample_sizes_beyond_exact_doubles_are_refused() -> None:
    """A sample size above 2**53 (1e300 in a CSV file) is an input error naming the
    study, not a traceback from the Int64 column of to_dataframe()."""
    with pytest.raises(InvalidStudyError, match=r"study 'b', field 'n'.*2\*\*53"):
        StudySet.from_arrays(yi=[0.1, 0.2], vi=[0.01, 0.02], labels=["a", "b"],
                             n=[10, 1e300])  # fmt: skip
    with pytest.raises(InvalidStudyError, match=r"2\*\*53"):
        Study("a", EffectSize(0.1, 0.01), n=2**53 + 2)
    ok = StudySet.from_arrays(yi=[0.1], vi=[0.01], n=[2**53])  # the largest accepted
    assert ok.to_dataframe()["n"].iloc[0] == 2**53


# ---------------------------------------------------------------------------
# Several effect sizes per study (issue 13's data model)
# ---------------------------------------------------------------------------


def _dependent_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "study": ["Ames 2019", "Ames 2019", "Bo 2020", "Cruz 2021", "Cruz 2021", "Cruz 2021"],
        "r": [-0.3, 0.05, -0.2, -0.25, 0.1, -0.15],
        "n": [80, 80, 120, 60, 60, 60],
        "rater": ["therapist", "patient", "therapist", "therapist", "patient", "patient"],
        "year": [2019, 2019, 2020, 2021, 2021, 2021],
    })  # fmt: skip


def test_several_effects_per_study_from_a_frame() -> None:
    """One row per effect; the study is a grouping; labels are made from the study."""
    s = StudySet.from_dataframe(
        _dependent_frame(), study="study", r="r", n="n", moderators=["rater", "year"]
    )
    assert s.k == 6 and s.n_studies == 3
    assert s.labels == (
        "Ames 2019 #1", "Ames 2019 #2", "Bo 2020", "Cruz 2021 #1", "Cruz 2021 #2", "Cruz 2021 #3"
    )  # fmt: skip
    assert s.study_labels[:3] == ("Ames 2019", "Ames 2019", "Bo 2020")
    assert s.shared_studies == {
        "Ames 2019": ("Ames 2019 #1", "Ames 2019 #2"),
        "Cruz 2021": ("Cruz 2021 #1", "Cruz 2021 #2", "Cruz 2021 #3"),
    }
    assert s["Bo 2020"].study is None and s["Cruz 2021 #2"].study == "Cruz 2021"
    assert list(s.column("study")) == list(_dependent_frame()["study"])
    assert list(s.moderator("rater")) == list(_dependent_frame()["rater"])
    frame = s.to_dataframe()
    assert list(frame.columns[:2]) == ["label", "study"]


def test_dependent_effects_round_trip_through_csv(tmp_path: Path) -> None:
    path = tmp_path / "dep.csv"
    _dependent_frame().to_csv(path, index=False)
    s = StudySet.from_csv(path, study="study", r="r", n="n", moderators="rater")
    assert s.n_studies == 3 and s.k == 6


def test_missing_study_is_named() -> None:
    df = _dependent_frame()
    df.loc[3, "study"] = None
    with pytest.raises(InvalidStudyError, match="missing study") as err:
        StudySet.from_dataframe(df, study="study", r="r", n="n")
    assert err.value.study == "row 3" and err.value.field == "study"
    with pytest.raises(InvalidStudyError, match="3 study labels for 4 effects"):
        StudySet.from_arrays([0.1] * 4, [0.01] * 4, study=["a", "a", "b"])


@pytest.mark.parametrize("fit", ["random_effects", "meta_regression", "subgroup_analysis"])
def test_univariate_models_warn_about_dependent_effects(fit: str) -> None:
    """Pooling effects that share a study as independent warns, naming the studies."""
    from alliance_meta.exceptions import DependentEffectsWarning

    s = StudySet.from_dataframe(_dependent_frame(), study="study", r="r", n="n",
                                moderators=["rater"])  # fmt: skip
    kwargs = {"meta_regression": {"moderators": "rater"},
              "subgroup_analysis": {"by": "rater"}}.get(fit, {})  # fmt: skip
    with pytest.warns(DependentEffectsWarning, match=r"'Ames 2019' \(2 effects\)") as rec:
        getattr(alliance_meta, fit)(s, **kwargs)
    assert "'Cruz 2021' (3 effects)" in str(rec[0].message)
    assert "multilevel" in str(rec[0].message)
    independent = StudySet.from_dataframe(_dependent_frame().drop_duplicates("study"),
                                          study="study", r="r", n="n")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DependentEffectsWarning)
        alliance_meta.random_effects(independent)
