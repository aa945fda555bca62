"""Bundled datasets: contents, citations, and effect sizes against metafor."""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import numpy as np
import pandas as pd
import pytest

from alliance_meta import StudySet, datasets
from alliance_meta.datasets import _make_alliance_example

REF = Path(__file__).parent / "reference"
# metafor agreement required by issue 2 (see tests/test_escalc.py for the reasoning).
RTOL = 1e-10

LOADERS = {
    "molloy2014": datasets.load_molloy2014,
    "bcg": datasets.load_bcg,
    "normand1999": datasets.load_normand1999,
    "alliance_example": datasets.load_alliance_example,
    "alliance_dependent": datasets.load_alliance_dependent,
}


@pytest.mark.parametrize("name", LOADERS)
def test_dataset_object(name: str) -> None:
    ds = LOADERS[name]()
    assert isinstance(ds, datasets.Dataset)
    assert ds.name == name
    assert isinstance(ds.data, pd.DataFrame) and len(ds.data) > 0
    assert ds.citation and ds.description
    s = ds.studies()
    assert isinstance(s, StudySet) and len(s) == len(ds.data)
    assert s.measure == ds.default_measure
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ds.name = "x"  # type: ignore[misc]
    # each call returns a fresh copy: editing one cannot corrupt the next
    ds.data.iloc[0, 0] = None
    assert LOADERS[name]().data.iloc[0, 0] is not None


def test_citations() -> None:
    assert "Molloy" in datasets.load_molloy2014().citation
    assert "47(1)" in datasets.load_molloy2014().citation
    assert "Colditz" in datasets.load_bcg().citation and "271(9)" in datasets.load_bcg().citation
    assert "Normand" in datasets.load_normand1999().citation
    assert "18(3)" in datasets.load_normand1999().citation


def test_molloy_matches_metafor() -> None:
    ds = datasets.load_molloy2014()
    assert len(ds.data) == 16
    assert list(ds.data.columns) == [
        "authors", "year", "ni", "ri", "controls", "design",
        "a_measure", "c_measure", "meanage", "quality",
    ]  # fmt: skip
    for measure, stem in (("ZCOR", "pool_molloy2014_zcor"), ("COR", "pool_molloy2014_cor")):
        ref = json.loads((REF / f"{stem}.json").read_text())
        s = ds.studies(measure)
        np.testing.assert_allclose(s.yi, ref["yi"], rtol=RTOL, atol=1e-14)  # atol: r = 0 rows
        np.testing.assert_allclose(s.vi, ref["vi"], rtol=RTOL)
    assert ds.studies().labels[0] == "Axelsson et al. (2009)"
    assert set(ds.studies().moderator("design")) == {"cross-sectional", "prospective"}


def test_bcg_matches_metafor() -> None:
    ds = datasets.load_bcg()
    assert len(ds.data) == 13
    ref = json.loads((REF / "pool_bcg_rr.json").read_text())
    s = ds.studies()
    np.testing.assert_allclose(s.yi, ref["yi"], rtol=RTOL)
    np.testing.assert_allclose(s.vi, ref["vi"], rtol=RTOL)
    ref = json.loads((REF / "escalc_bcg.json").read_text())
    for measure in ("OR", "RD"):
        np.testing.assert_allclose(
            ds.studies(measure).yi, ref["measures"][measure]["yi"], rtol=RTOL
        )
    assert ds.studies().moderator_spec("alloc").coef_names == ("allocrandom", "allocsystematic")


def test_normand_matches_metafor() -> None:
    ds = datasets.load_normand1999()
    ref = json.loads((REF / "escalc_normand1999.json").read_text())
    for measure in ("SMD", "MD", "SMDH", "ROM"):
        s = ds.studies(measure)
        np.testing.assert_allclose(s.yi, ref["measures"][measure]["yi"], rtol=RTOL)
        np.testing.assert_allclose(s.vi, ref["measures"][measure]["vi"], rtol=RTOL)
    assert ds.studies().labels[0] == "Edinburgh"


def test_alliance_example_is_labelled_simulated() -> None:
    ds = datasets.load_alliance_example()
    seed = str(datasets.ALLIANCE_EXAMPLE_SEED)
    for text in (ds.citation, ds.description, datasets.load_alliance_example.__doc__ or ""):
        assert "SIMULATED FOR ILLUSTRATION" in text
        assert seed in text
    assert "not published" in ds.citation.lower()
    assert _make_alliance_example.SEED == datasets.ALLIANCE_EXAMPLE_SEED
    assert "SIMULATED" in (_make_alliance_example.__doc__ or "")
    assert all(lab.startswith("Simulated study") for lab in ds.data["study"])
    assert set(ds.data["rater"]) == {"therapist", "patient"}
    assert 10 <= len(ds.data) <= 14


def test_alliance_example_regenerates_exactly() -> None:
    fresh = _make_alliance_example.make()
    pd.testing.assert_frame_equal(fresh, datasets.load_alliance_example().data, check_dtype=False)


def test_alliance_example_subgroup_means() -> None:
    s = datasets.load_alliance_example().studies()
    for rater, target in (("therapist", -0.31), ("patient", 0.04)):
        g = s.where("rater", rater)
        w = 1.0 / g.vi
        pooled_r = math.tanh(float(np.sum(w * g.yi) / np.sum(w)))
        # Designed so the fixed-effect pooled r is the target before r is rounded to
        # 2 decimals; rounding moves it by far less than 0.01.
        assert pooled_r == pytest.approx(target, abs=0.01)
    assert s.moderator("experience").dtype == np.float64


def test_alliance_dependent_is_simulated_and_dependent() -> None:
    """Four effects per study of the same 12 simulated studies, labelled simulated,
    regenerated exactly by its script, with each cell's pooled r at its target."""
    ds = datasets.load_alliance_dependent()
    for text in (ds.citation, ds.description, datasets.load_alliance_dependent.__doc__ or ""):
        assert "SIMULATED FOR ILLUSTRATION" in text
    fresh = _make_alliance_example.make_dependent()
    pd.testing.assert_frame_equal(fresh, ds.data, check_dtype=False)
    s = ds.studies()
    assert s.k == 48 and s.n_studies == 12
    assert all(len(v) == 4 for v in s.shared_studies.values())
    base = datasets.load_alliance_example().data
    assert sorted(set(s.study_labels)) == sorted(base["study"])
    assert datasets.ALLIANCE_DEPENDENT_RHO == _make_alliance_example.RHO_WITHIN
    dim, rater = s.moderator("dimension"), s.moderator("rater")
    for (d, r), target in _make_alliance_example.TARGET_DEPENDENT.items():
        sel = (dim == d) & (rater == r)
        w = 1.0 / s.vi[sel]
        # the script shifts each cell to its target before rounding r (as above)
        assert math.tanh(float(np.sum(w * s.yi[sel]) / np.sum(w))) == pytest.approx(
            target, abs=0.01
        )
