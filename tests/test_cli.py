"""Tests of the command line: ``python -m alliance_meta demo`` and ``analyze``."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.__main__ import main

POOLED_LINE = re.compile(
    r"^Pooled r = (-?\d\.\d\d), 95% CI \[(-?\d\.\d\d), (-?\d\.\d\d)\]$"
)


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_demo_report_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "forest.png"
    assert main(["demo", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    # the data are labelled as simulated, with the seed
    assert "SIMULATED" in out and str(am.datasets.ALLIANCE_EXAMPLE_SEED) in out
    for part in ("Random-effects model", "Heterogeneity", "Q-profile", "I^2",
                 "Subgroup analysis by rater", "Test for subgroup differences", "Egger"):
        assert part in out, part
    # the dependent-effects section: the naive pooling (with its warning) beside the
    # three-level model and CHE + CR2, with the library's standard errors
    assert "Dependent effects: four per study" in out
    assert "random_effects warns (DependentEffectsWarning): 12 studies give several" in out
    dep = am.datasets.load_alliance_dependent().studies()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", am.exceptions.DependentEffectsWarning)
        naive_se = am.random_effects(dep).se
    ml = am.multilevel(dep, levels=("study", "label"))
    robust_se = am.che(dep, rho=am.datasets.ALLIANCE_DEPENDENT_RHO).se[0]
    for name, se in (("naive: 48 effects", naive_se), ("three-level:", ml.se[0]),
                     ("CHE (rho = 0.5) + CR2", robust_se)):
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        assert line.endswith(f"{se:.4f}"), line
    # ends with the pooled r, equal to the library's back-transformed estimate
    m = POOLED_LINE.match(last_line(out))
    assert m is not None, last_line(out)
    bt = am.random_effects(am.datasets.load_alliance_example().studies()).back_transformed()
    assert [float(g) for g in m.groups()] == [
        round(bt.estimate, 2), round(bt.ci.low, 2), round(bt.ci.high, 2)
    ]
    if has_matplotlib():
        assert png.is_file() and png.stat().st_size > 10_000  # a real image, not a stub
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(png.resolve()) in out
    else:
        assert "pip install 'alliance_meta[plot]'" in out


def test_demo_default_png_and_no_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "alliance_forest.png").exists()
    assert "Forest plot" not in out
    assert POOLED_LINE.match(last_line(out))
    if has_matplotlib():
        assert main(["demo"]) == 0
        assert (tmp_path / "alliance_forest.png").is_file()


def test_demo_shows_its_dependent_effects_warning_without_raising_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the naive analysis's DependentEffectsWarning is part of the report, not a
    # stray warning: the demo passes under an error filter (python -W error)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["demo", "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert "DependentEffectsWarning" in captured.out and captured.err == ""


def test_demo_runs_as_module(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alliance_meta", "demo", "--no-plot"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert POOLED_LINE.match(last_line(proc.stdout))


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("name,corr,size,rater\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


GOOD_ROWS = [
    "Alpha,0.10,120,therapist",
    "Beta,0.25,80,patient",
    "Gamma,0.05,200,therapist",
    "Delta,0.30,60,patient",
    "Epsilon,0.18,150,therapist",
]


def test_analyze_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(tmp_path / "data.csv", GOOD_ROWS)
    png = tmp_path / "out.png"
    code = main(["analyze", str(csv), "--r", "corr", "--n", "size", "--by", "rater",
                 "--label", "name", "--method", "DL", "--out", str(png)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "Alpha" in out and "Subgroup analysis by rater" in out
    m = POOLED_LINE.match(last_line(out))
    assert m is not None
    studies = am.StudySet.from_csv(csv, r="corr", n="size", label="name")
    bt = am.random_effects(studies, method="DL").back_transformed()
    assert float(m.group(1)) == round(bt.estimate, 2)
    if has_matplotlib():
        assert png.is_file()


def test_analyze_without_by(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(tmp_path / "data.csv", GOOD_ROWS)
    assert main(["analyze", str(csv), "--r", "corr", "--n", "size", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "Subgroup" not in out
    assert POOLED_LINE.match(last_line(out))


@pytest.mark.parametrize(
    ("bad_row", "field"),
    [
        ("Broken study,1.5,100,patient", "corr"),  # |r| > 1
        ("Broken study,0.2,3,patient", "size"),  # n <= 3 for Fisher's z
        ("Broken study,abc,100,patient", "corr"),  # not a number
        ("Broken study,,100,patient", "corr"),  # missing value
    ],
)
def test_analyze_bad_data_exits_2_naming_study_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad_row: str, field: str
) -> None:
    csv = write_csv(tmp_path / "bad.csv", [*GOOD_ROWS, bad_row])
    code = main(["analyze", str(csv), "--r", "corr", "--n", "size", "--label", "name",
                 "--no-plot"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert "Broken study" in lines[0] and field in lines[0]
    assert "Traceback" not in err


def test_analyze_missing_column_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "data.csv", GOOD_ROWS)
    assert main(["analyze", str(csv), "--r", "nope", "--n", "size", "--no-plot"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.csv"), "--r", "r", "--n", "n"]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_bad_subcommand_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_unwritable_plot_directory_fails_before_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--out", str(tmp_path / "no" / "such" / "dir" / "f.png")])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing half-printed
    assert "no directory" in captured.err


def test_warnings_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(tmp_path / "one.csv", GOOD_ROWS[:1])
    assert main(["analyze", str(csv), "--r", "corr", "--n", "size", "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert POOLED_LINE.match(last_line(captured.out))
    assert captured.err.startswith("warning: ") and "Traceback" not in captured.err


# ---------------------------------------------------------------------------
# analyze: any measure, conventional columns, subgroups, meta-regression, JSON/CSV
# ---------------------------------------------------------------------------


def write_frame(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def bcg_frame() -> pd.DataFrame:
    d = am.datasets.load_bcg().data
    return pd.DataFrame({
        "study": d["author"].astype(str) + " " + d["year"].astype(str),
        "ai": d["tpos"], "bi": d["tneg"], "ci": d["cpos"], "di": d["cneg"],
        "ablat": d["ablat"], "alloc": d["alloc"],
    })  # fmt: skip


def test_analyze_finds_conventional_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text("study,r,n,rater\n" + "\n".join(GOOD_ROWS) + "\n", encoding="utf-8")
    assert main(["analyze", str(csv), "--by", "rater", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "measure ZCOR from columns ri = 'r', ni = 'n'; labels from 'study'" in out
    assert "Alpha" in out and "Subgroup analysis by rater" in out
    studies = am.StudySet.from_csv(csv, r="r", n="n", label="study")
    bt = am.random_effects(studies).back_transformed()
    m = POOLED_LINE.match(last_line(out))
    assert m is not None and float(m.group(1)) == round(bt.estimate, 2)


def test_analyze_two_group_means_and_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    means = pd.DataFrame({
        "id": ["a", "b", "c", "d"], "m1i": [10.2, 11.0, 9.5, 12.1],
        "SD1": [2.0, 2.5, 1.8, 2.2], "n1": [20, 35, 18, 40], "m2": [9.0, 10.1, 9.4, 10.0],
        "sd2": [2.1, 2.4, 2.0, 2.5], "n2": [22, 30, 20, 41],
    })  # fmt: skip
    csv = write_frame(tmp_path / "means.csv", means)
    js = tmp_path / "means.json"
    assert main(["analyze", str(csv), "--no-plot", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "measure SMD from columns m1i = 'm1i'" in out
    assert "sd1i = 'SD1'" in out  # any case
    ref = am.random_effects(am.StudySet.from_dataframe(
        means, label="id", m1="m1i", sd1="SD1", n1="n1", m2="m2", sd2="sd2", n2="n2"))  # fmt: skip
    doc = json.loads(js.read_text(encoding="utf-8"))
    assert doc["input"]["measure"] == "SMD"
    assert doc["pooled"]["estimate"] == pytest.approx(ref.estimate, rel=1e-12)  # same fit
    assert last_line(out).startswith("Pooled SMD = ")
    # 2x2 tables: OR by default, RR when asked
    csv2 = write_frame(tmp_path / "bcg.csv", bcg_frame())
    assert main(["analyze", str(csv2), "--measure", "rr", "--no-plot", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    doc = json.loads(js.read_text(encoding="utf-8"))
    bcg = am.random_effects(am.datasets.load_bcg().studies(measure="RR"))
    assert doc["input"]["measure"] == "RR"
    assert doc["pooled"]["estimate"] == pytest.approx(bcg.estimate, rel=1e-12)
    assert doc["pooled_natural_scale"]["estimate"] == pytest.approx(math.exp(bcg.estimate))
    assert last_line(out) == (
        f"Pooled RR = {math.exp(bcg.estimate):.2f}, 95% CI "
        f"[{math.exp(bcg.ci.low):.2f}, {math.exp(bcg.ci.high):.2f}]"
    )


def test_analyze_generic_effects_with_se(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.DataFrame({"yi": [0.1, 0.3, 0.2, 0.5], "se": [0.1, 0.15, 0.12, 0.2],
                          "N": [100, 50, 80, 30]})  # fmt: skip
    csv = write_frame(tmp_path / "gen.csv", frame)
    assert main(["analyze", str(csv), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "measure GEN from columns yi = 'yi', sei = 'se', ni = 'N'" in out
    ref = am.random_effects(yi=frame["yi"], vi=frame["se"] ** 2)
    assert last_line(out).startswith(f"Pooled GEN = {ref.estimate:.2f}")


def test_analyze_lists_the_columns_it_found_when_one_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.DataFrame({"study": ["a", "b"], "m1": [1.0, 2.0], "sd1": [1.0, 1.0],
                          "n1": [10, 12], "m2": [0.5, 1.0], "n2": [11, 13]})  # fmt: skip
    csv = write_frame(tmp_path / "m.csv", frame)
    assert main(["analyze", str(csv), "--measure", "SMD", "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "measure SMD needs columns for m1i, m2i, sd1i, sd2i, n1i, n2i" in err
    assert "found m1i = 'm1', m2i = 'm2', sd1i = 'sd1'" in err
    assert "no column for sd2i (looked for sd2i, sd2; give --sd2i COLUMN)" in err
    assert "The columns of" in err and "study, m1, sd1, n1, m2, n2" in err
    # nothing recognisable, no measure given
    csv2 = write_frame(tmp_path / "x.csv", pd.DataFrame({"foo": [1], "bar": [2]}))
    assert main(["analyze", str(csv2), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert "cannot tell which effect size" in err and "foo, bar" in err
    # an unknown measure
    assert main(["analyze", str(csv), "--measure", "NOPE", "--no-plot"]) == 2
    assert "unknown measure 'NOPE'" in capsys.readouterr().err


def test_analyze_measures_come_from_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measures and their inputs are read from the measure registry
    (``measures.names()``, ``measures.get(name).inputs``) once it is filled."""
    from alliance_meta.data import measures

    specs = {
        "ZCOR": measures.MeasureSpec("ZCOR", "correlation", "Fisher's z", inputs=("ri", "ni")),
        "PLO": measures.MeasureSpec("PLO", "proportion", "logit", inputs=("xi", "ni")),
    }
    monkeypatch.setattr(measures, "names", lambda family=None: tuple(specs))
    monkeypatch.setattr(measures, "get", lambda name, field="measure": specs[name])
    frame = pd.DataFrame({"study": ["a", "b"], "events": [3, 5], "ni": [20, 30]})
    csv = write_frame(tmp_path / "p.csv", frame)
    assert main(["analyze", str(csv), "--measure", "PLO", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert "measure PLO needs columns for xi, ni" in err and "found ni = 'ni'" in err
    assert main(["analyze", str(csv), "--measure", "SMD", "--no-plot"]) == 2
    assert "expected one of ZCOR, PLO" in capsys.readouterr().err


def test_analyze_meta_regression_json_and_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_frame(tmp_path / "bcg.csv", bcg_frame())
    js, out_csv, png = tmp_path / "res.json", tmp_path / "res.csv", tmp_path / "f.png"
    code = main(["analyze", str(csv), "--measure", "RR", "--moderators", "ablat",
                 "--by", "alloc", "--json", str(js), "--csv", str(out_csv),
                 "--out", str(png)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "Meta-regression (ablat)" in out and "Subgroup analysis by alloc" in out
    studies = am.datasets.load_bcg().studies(measure="RR")
    mr = am.meta_regression(studies, moderators=["ablat"])
    sg = am.subgroup_analysis(studies, by="alloc")
    doc = json.loads(js.read_text(encoding="utf-8"))
    coefs = {c["coefficient"]: c["coef"] for c in doc["meta_regression"]["coefficients"]}
    assert coefs == pytest.approx(dict(zip(mr.coef_names, mr.coef, strict=True)), rel=1e-12)
    assert doc["meta_regression"]["QM"] == pytest.approx(mr.QM, rel=1e-12)
    groups = {g["alloc"]: g["estimate"] for g in doc["subgroups"]["groups"]}
    assert groups == pytest.approx({k: g.estimate for k, g in sg.groups.items()}, rel=1e-12)
    assert doc["subgroups"]["test"]["Q_between"] == pytest.approx(sg.Q_between, rel=1e-12)
    assert len(doc["studies"]) == 13 and doc["studies"][0]["label"] == "Aronson 1948"
    table = pd.read_csv(out_csv)
    assert list(table["section"]) == (
        ["pooled"] + ["subgroup alloc"] * 4 + ["meta-regression"] * 2
    )
    row = table[table["term"] == "ablat"].iloc[0]
    assert row["estimate"] == pytest.approx(mr.coef[1], rel=1e-12)
    assert row["ci_low"] == pytest.approx(mr.ci.low[1], rel=1e-12)
    pooled = table.iloc[0]
    assert pooled["k"] == 13 and pooled["estimate_natural"] == pytest.approx(
        math.exp(pooled["estimate"]), rel=1e-12
    )
    if has_matplotlib():
        assert png.is_file() and (tmp_path / "f-bubble.png").is_file()
        assert f"Bubble plot of the meta-regression written to {tmp_path / 'f-bubble.png'}" in out


def test_analyze_passes_formulas_to_meta_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--moderators "~ ..."`` goes to meta_regression(moderators=...) as written, with
    the columns it names as moderators of the studies."""
    import alliance_meta.__main__ as cli

    seen: dict[str, object] = {}

    def fake(studies: am.StudySet, *, moderators: object, **kw: object) -> object:
        seen["moderators"] = moderators
        seen["names"] = studies.moderator_names
        return am.meta_regression(studies, moderators=["ablat"], **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "meta_regression", fake)
    csv = write_frame(tmp_path / "bcg.csv", bcg_frame())
    assert main(["analyze", str(csv), "--moderators", "~ ablat * alloc", "--no-plot"]) == 0
    assert seen == {"moderators": "~ ablat * alloc", "names": ("ablat", "alloc")}
    assert "Meta-regression (~ ablat * alloc)" in capsys.readouterr().out
    assert main(["analyze", str(csv), "--moderators", "nope", "--no-plot"]) == 2
    assert "'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# issue 18, item 10: bad outputs and sizes end in one line, and -W error works
# ---------------------------------------------------------------------------


def test_out_with_an_unknown_format_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    assert main(["demo", "--out", str(tmp_path / "x.xyz")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before the report
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "unknown image format 'xyz'" in err and "png" in err
    assert not (tmp_path / "x.xyz").exists()
    assert main(["demo", "--out", str(tmp_path / "x.PDF")]) == 0  # any case
    assert (tmp_path / "x.PDF").read_bytes()[:4] == b"%PDF"


def test_out_directory_and_bare_name_report_the_file_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    folder = tmp_path / "plots"
    folder.mkdir()
    assert main(["demo", "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    written = folder / "alliance_forest.png"
    assert written.is_file()
    assert f"Forest plot written to {written.resolve()}" in out
    assert not (tmp_path / "plots.png").exists()
    assert main(["demo", "--out", str(tmp_path / "forest")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "forest.png").is_file()
    assert f"Forest plot written to {(tmp_path / 'forest.png').resolve()}" in out


def test_huge_sample_size_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "big.csv", [*GOOD_ROWS, "Huge,0.2,1e300,patient"])
    code = main(["analyze", str(csv), "--r", "corr", "--n", "size", "--label", "name",
                 "--no-plot"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "study 'Huge', field 'n'" in err and "2**53" in err


def test_json_and_csv_outputs_are_checked_before_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--no-plot", "--json", str(tmp_path / "no" / "x.json")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no directory" in captured.err
    assert main(["demo", "--no-plot", "--csv", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_warning_filters_are_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``main()`` shows warnings as one line but keeps the filters: an error filter
    (``python -W error``) makes a warning end the run with exit status 2."""
    csv = write_csv(tmp_path / "one.csv", GOOD_ROWS[:1])
    args = ["analyze", str(csv), "--r", "corr", "--n", "size", "--no-plot"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "FewStudiesWarning" in err
    assert len(err.splitlines()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    assert capsys.readouterr().err == ""  # ignored, as the filter says


def test_python_W_error_turns_warnings_into_errors(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "one.csv", GOOD_ROWS[:1])
    args = ["-m", "alliance_meta", "analyze", str(csv), "--r", "corr", "--n", "size",
            "--no-plot"]  # fmt: skip
    plain = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                           cwd=tmp_path, check=False)  # fmt: skip
    assert plain.returncode == 0 and plain.stderr.startswith("warning: ")
    strict = subprocess.run([sys.executable, "-W", "error", *args],
                            capture_output=True, text=True, cwd=tmp_path, check=False)  # fmt: skip
    assert strict.returncode == 2, strict.stderr
    assert strict.stderr.startswith("error: ") and "Traceback" not in strict.stderr
