"""Tests of the command line: ``python -m alliance_meta demo`` and ``analyze``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
