"""The funnel plot's PET-PEESE lines and selection-model estimate: what is drawn."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import alliance_meta as am  # noqa: E402
from alliance_meta.exceptions import ModelSpecificationError  # noqa: E402
from alliance_meta.plot import funnel  # noqa: E402

# Plotted coordinates are float64 copies of the results' values, passed through
# tanh/exp at most once; 1e-12 absolute allows for that rounding only.
ATOL = 1e-12


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def by_gid(fig: Figure, gid: str) -> list[Any]:
    return [a for a in fig.findobj(lambda a: a.get_gid() == gid)]


@pytest.fixture(scope="module")
def molloy() -> am.PoolResult:
    return am.random_effects(am.datasets.load_molloy2014().studies())


def _xy(line: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)


def test_pet_and_peese_lines_are_the_regressions(molloy: am.PoolResult) -> None:
    pp = am.pet_peese(molloy)
    fig = funnel(molloy, pet_peese=True, transform=False)
    (pet,) = by_gid(fig, "pet-line")
    (peese,) = by_gid(fig, "peese-line")
    x, se = _xy(pet)
    assert se[0] == 0.0 and se[-1] == pytest.approx(fig.axes[0].get_ylim()[0], abs=ATOL)
    # at SE = 0 each line meets its limit estimate; along it, b0 + b1 SE (PET) and
    # b0 + b1 SE² (PEESE)
    assert x[0] == pytest.approx(pp.pet.limit_estimate, abs=ATOL)
    np.testing.assert_allclose(x, pp.pet.intercept + pp.pet.slope * se, atol=ATOL)
    x2, se2 = _xy(peese)
    assert x2[0] == pytest.approx(pp.peese.limit_estimate, abs=ATOL)
    np.testing.assert_allclose(x2, pp.peese.intercept + pp.peese.slope * se2**2, atol=ATOL)
    # the chosen regression (PET for molloy2014: p = .32) is solid, the other dashed
    assert pp.chosen == "PET"
    assert pet.get_linestyle() == "-" and peese.get_linestyle() != "-"
    # a result passed in is drawn as given
    fig2 = funnel(molloy, pet_peese=am.pet_peese(molloy, alpha=0.5), transform=False)
    assert by_gid(fig2, "peese-line")[0].get_linestyle() == "-"  # p = .32 < .5: PEESE
    assert not by_gid(funnel(molloy, transform=False), "pet-line")


def test_lines_on_the_natural_scale() -> None:
    bcg = am.random_effects(am.datasets.load_bcg().studies(measure="RR"))
    pp = am.pet_peese(bcg)
    fig = funnel(bcg, pet_peese=pp)  # risk ratios on a log axis
    x, se = _xy(by_gid(fig, "pet-line")[0])
    np.testing.assert_allclose(np.log(x), pp.pet.intercept + pp.pet.slope * se, atol=ATOL)


def test_selection_model_estimate_line(molloy: am.PoolResult) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", am.exceptions.AllianceMetaWarning)
        sel = am.selection_model(molloy, "beta")
        fig = funnel(molloy, selection=sel, transform=False)
        by_name = funnel(molloy, selection="beta", transform=False)
    (line,) = by_gid(fig, "selection-estimate")
    x, se = _xy(line)
    np.testing.assert_allclose(x, [sel.estimate, sel.estimate], atol=ATOL)
    assert se[1] == 0.0
    (line2,) = by_gid(by_name, "selection-estimate")
    np.testing.assert_allclose(_xy(line2)[0], x, atol=ATOL)
    # the legend names it
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("Selection model (beta)" in t for t in texts)
    assert not by_gid(funnel(molloy, transform=False), "selection-estimate")


def test_adjustments_refused_where_not_defined(molloy: am.PoolResult) -> None:
    sg = am.subgroup_analysis(am.datasets.load_alliance_example().studies(), by="rater")
    with pytest.raises(ModelSpecificationError, match="PoolResult"):
        funnel(sg, pet_peese=True)
    with pytest.raises(ModelSpecificationError, match="PoolResult"):
        funnel(sg, selection="halfnorm")
    with pytest.raises(ModelSpecificationError, match="pet_peese must be"):
        funnel(molloy, pet_peese="yes")  # type: ignore[arg-type]
    with pytest.raises(ModelSpecificationError, match="SelectionModelResult"):
        funnel(molloy, selection=3.0)  # type: ignore[arg-type]
