"""The command line's repeated study labels (--unique-labels, the error that suggests
it) and --test (metafor's rma test choices)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import alliance_meta as am
from alliance_meta.__main__ import main

# The first nine rows of metadat's dat.landenberger2005 (two studies both labelled
# "Goldstein (1989)", as in the full data set).
LANDENBERGER = """study,n.ctrl.rec,n.ctrl.non,n.cbt.rec,n.cbt.non,id
Guerra (1990),23,29,10,19,a1
Leeman (1993),15,22,3,17,a2
Kownacki (1995),4,6,2,9,a3
Larson (1989),11,2,8,5,a4
Finn (1998),22,60,16,66,a5
Goldstein (1989),14,18,5,28,a6
Goldstein (1989),14,13,5,33,a7
Ross (1988),16,7,4,18,a8
Pullen (1996),6,14,7,13,a9
"""
OR_COLS = ["--measure", "OR", "--ai", "n.cbt.non", "--bi", "n.cbt.rec", "--ci", "n.ctrl.non",
           "--di", "n.ctrl.rec", "--no-plot"]  # fmt: skip


@pytest.fixture()
def csv(tmp_path: Path) -> Path:
    p = tmp_path / "land.csv"
    p.write_text(LANDENBERGER, encoding="utf-8")
    return p


def test_repeated_labels_error_suggests_the_options(
    csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(csv), *OR_COLS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'study' (found by its name)" in err
    assert "'Goldstein (1989)' is in data rows 6 and 7" in err
    assert "--unique-labels" in err and "--label COL" in err
    assert "columns with a distinct value per row: id" in err


def test_unique_labels_numbers_them_as_metafor(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert main(["analyze", str(csv), *OR_COLS, "--unique-labels", "--json", str(out)]) == 0
    labels = [s["label"] for s in json.loads(out.read_text())["studies"]]
    # metafor's .make.unique (what rma does to repeated slab)
    assert labels[5:7] == ["Goldstein (1989).1", "Goldstein (1989).2"]
    assert labels[0] == "Guerra (1990)"
    # a unique column as --label needs no numbering
    assert main(["analyze", str(csv), *OR_COLS, "--label", "id"]) == 0


@pytest.mark.parametrize("test", ["z", "t", "knha", "adhoc"])
def test_test_option_reaches_every_model(
    csv: Path, tmp_path: Path, test: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    code = main(["analyze", str(csv), *OR_COLS, "--label", "id", "--test", test,
                 "--moderators", "n.ctrl.rec", "--json", str(out)])  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["test"] == test
    studies = am.StudySet.from_csv(csv, a="n.cbt.non", b="n.cbt.rec", c="n.ctrl.non",
                                   d="n.ctrl.rec", label="id", measure="OR",
                                   moderators=["n.ctrl.rec"])  # fmt: skip
    fit = am.random_effects(studies, test=test)  # type: ignore[arg-type]
    # the CLI runs the same fit: equal to the last bit
    assert doc["pooled"]["ci_low"] == fit.ci.low and doc["pooled"]["ci_high"] == fit.ci.high
    assert doc["pooled"]["test"] == test
    mr = am.meta_regression(studies, moderators=["n.ctrl.rec"], test=test)  # type: ignore[arg-type]
    got = [c["ci_low"] for c in doc["meta_regression"]["coefficients"]]
    assert got == list(mr.ci.low)


def test_bad_test_is_a_usage_error(csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(csv), *OR_COLS, "--test", "wald"])
    assert exc.value.code == 2
    assert "knha" in capsys.readouterr().err
