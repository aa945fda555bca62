"""The funnel and forest plots of a meta-regression and the funnel of a trim-and-fill
result, against what metafor 3.8.1 plots (tests/reference/plots.json, from
generate_plots.R: ``funnel(fit)``, ``predict(fit)`` and ``funnel(trimfill(fit))``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import alliance_meta as am  # noqa: E402
from alliance_meta.exceptions import ModelSpecificationError  # noqa: E402
from alliance_meta.plot import forest, forest_layout, funnel  # noqa: E402

REF = json.loads(
    (Path(__file__).parent / "reference" / "plots.json").read_text(encoding="utf-8")
)
CASES = {c["name"]: c for c in REF["cases"]}

# Residuals and their standard errors depend on τ̂² (and β̂ through it); both sides
# solve τ² to ~1e-10 relative, so the plotted values agree to 1e-6 relative, the
# library's standard.  Compared in units of each point's SE so that residuals near
# 0 are not held to a relative tolerance they cannot meet.
TAU2_RTOL = 1e-6
# metafor's trimfill() refits without the fit's control=, at metafor's default
# stopping rules (threshold 1e-5 for ML's Fisher scoring, uniroot's default tolerance
# for PM), so its adjusted estimate, and the imputed points mirrored about the
# estimate of the trimmed data, carry errors of ~1e-4 relative (2e-4 seen for molloy
# ML/PM); REML and DL converge past that (seen: < 1e-9).
TRIMFILL_RTOL = {"ML": 1e-3, "PM": 1e-3}
# Values that do not depend on τ̂² (the data, √v_i, trim-and-fill's mirrored
# points about an estimate solved to 1e-10): 1e-9 relative allows for rounding.
EXACT_RTOL = 1e-9


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    plt.close("all")


def fit_of(case: dict[str, Any]) -> Any:
    X = np.asarray(case["X"], dtype=float)
    names = case["coef_names"][1:]
    kw: dict[str, Any] = {"method": case["method"], "test": case["test"]}
    if names:
        mods = {n: X[:, j + 1] for j, n in enumerate(names)}
        return am.meta_regression(yi=case["yi"], vi=case["vi"], moderators=mods, **kw)
    return am.random_effects(yi=case["yi"], vi=case["vi"], **kw)


def points(fig: Any, gid: str = "study-point") -> tuple[np.ndarray, np.ndarray]:
    pts = fig.findobj(lambda a: a.get_gid() == gid)
    return (np.array([float(p.get_xdata()[0]) for p in pts]),
            np.array([float(p.get_ydata()[0]) for p in pts]))  # fmt: skip


REG_CASES = [n for n, c in CASES.items() if "fitted" in c]
TF_CASES = [n for n, c in CASES.items() if "trimfill_funnel" in c]


def test_reference_has_the_cases() -> None:
    # the knha case checks that rstandard's SE is not Knapp-Hartung scaled
    assert {"bcg_ablat_REML", "bcg_ablat_knha", "syn_x_EE"} <= set(REG_CASES)
    assert len(TF_CASES) >= 3


@pytest.mark.parametrize("name", REG_CASES)
def test_funnel_of_meta_regression_plots_metafors_residuals(name: str) -> None:
    case = CASES[name]
    fit = fit_of(case)
    assert isinstance(fit, am.MetaRegressionResult)
    fig = funnel(fit)
    x, y = points(fig)
    ex, ey = np.asarray(case["funnel"]["x"]), np.asarray(case["funnel"]["y"])
    np.testing.assert_allclose((x - ex) / ey, 0.0, atol=TAU2_RTOL)
    np.testing.assert_allclose(y, ey, rtol=TAU2_RTOL)
    (line,) = fig.findobj(lambda a: a.get_gid() == "estimate-line")
    assert float(line.get_xdata()[0]) == case["funnel"]["refline"] == 0.0
    assert fig.axes[0].get_xlabel() == "Residual value"


def test_funnel_of_intercept_only_meta_regression_is_the_plain_funnel() -> None:
    case = CASES["bcg_REML"]
    import pandas as pd

    fit = am.meta_regression(yi="yi", vi="vi", moderators="~ 1",
                             data=pd.DataFrame({"yi": case["yi"], "vi": case["vi"]}))  # fmt: skip
    x, y = points(funnel(fit, transform=False))
    np.testing.assert_allclose(x, case["funnel"]["x"], rtol=EXACT_RTOL)
    np.testing.assert_allclose(y, case["funnel"]["y"], rtol=EXACT_RTOL)


@pytest.mark.parametrize("name", TF_CASES)
def test_funnel_of_trim_and_fill_result(name: str) -> None:
    case = CASES[name]
    ref = case["trimfill_funnel"]
    tf = am.trim_and_fill(fit_of(case))
    assert tf.k0 == ref["k0"]
    fill = np.asarray(ref["fill"], dtype=bool)
    fig = funnel(tf, transform=False)
    xo, yo = points(fig)
    xf, yf = points(fig, "filled-study")
    ex, ey = np.asarray(ref["x"]), np.asarray(ref["y"])
    np.testing.assert_allclose(xo, ex[~fill], rtol=EXACT_RTOL)
    np.testing.assert_allclose(yo, ey[~fill], rtol=EXACT_RTOL)
    # imputed studies mirror observed ones about the trimmed data's estimate
    rtol = TRIMFILL_RTOL.get(case["method"], TAU2_RTOL)
    np.testing.assert_allclose(np.sort(xf), np.sort(ex[fill]), rtol=rtol)
    np.testing.assert_allclose(np.sort(yf), np.sort(ey[fill]), rtol=EXACT_RTOL)
    (line,) = fig.findobj(lambda a: a.get_gid() == "estimate-line")
    assert float(line.get_xdata()[0]) == pytest.approx(ref["refline"], rel=rtol)
    # the same as funnel(fit, trim_and_fill=tf)
    fig2 = funnel(fit_of(case), trim_and_fill=tf, transform=False)
    np.testing.assert_array_equal(points(fig2)[0], xo)
    np.testing.assert_array_equal(points(fig2, "filled-study")[0], xf)


def test_funnel_rejects_other_objects_naming_the_accepted_types() -> None:
    case = CASES["bcg_REML"]
    tf = am.trim_and_fill(fit_of(case))
    with pytest.raises(ModelSpecificationError, match=r"TrimAndFillResult.*not a dict"):
        funnel({"yi": [1.0]})  # type: ignore[arg-type]
    with pytest.raises(ModelSpecificationError, match="pass one"):
        funnel(tf, trim_and_fill=tf)
    with pytest.raises(ModelSpecificationError, match="not a TrimAndFillResult"):
        funnel(tf, pet_peese=True)
    reg = fit_of(CASES["bcg_ablat_REML"])
    with pytest.raises(ModelSpecificationError, match="not a MetaRegressionResult"):
        funnel(reg, trim_and_fill=tf)


@pytest.mark.parametrize("name", REG_CASES)
def test_forest_of_meta_regression_shows_fitted_values(name: str) -> None:
    case = CASES[name]
    fit = fit_of(case)
    lay = forest_layout(fit, transform=False)
    studies = lay.rows_of("study")
    assert [r.index for r in studies] == list(range(fit.k))
    assert not lay.rows_of("overall") and not lay.rows_of("pi")
    ref = case["fitted"]
    got = np.array([[r.fitted, r.fitted_lo, r.fitted_hi] for r in studies])
    exp = np.column_stack([ref["pred"], ref["ci_lb"], ref["ci_ub"]])
    np.testing.assert_allclose(got, exp, rtol=TAU2_RTOL, atol=TAU2_RTOL)
    np.testing.assert_allclose([r.weight for r in studies], case["weights"], rtol=TAU2_RTOL)
    notes = [r.text for r in lay.rows_of("note")]
    assert notes[0].startswith("Residual heterogeneity:")
    assert notes[1].startswith("Test of moderators: " + ("F(" if case["test"] != "z" else "QM("))

    fig = forest(fit, transform=False)
    polys = fig.findobj(lambda a: a.get_gid() == "fitted-value")
    assert len(polys) == fit.k
    drawn = np.array([np.asarray(p.get_xy())[:3, 0] for p in polys])  # low, centre, high
    np.testing.assert_allclose(drawn, exp[:, [1, 0, 2]], rtol=TAU2_RTOL, atol=TAU2_RTOL)
    assert not fig.findobj(lambda a: a.get_gid() in ("diamond-overall", "estimate-line"))


def test_forest_of_meta_regression_on_natural_scale_and_sorted() -> None:
    case = CASES["bcg_ablat_REML"]
    fit = am.meta_regression(yi=case["yi"], vi=case["vi"], measure="RR",
                             moderators={"ablat": np.asarray(case["X"])[:, 1]})  # fmt: skip
    fig = forest(fit, sort_by="yi")
    polys = fig.findobj(lambda a: a.get_gid() == "fitted-value")
    lay = forest_layout(fit, sort_by="yi")
    # the fitted log risk ratios drawn as risk ratios on the log axis
    centres = np.array([np.asarray(p.get_xy())[1, 0] for p in polys])
    np.testing.assert_allclose(centres, np.exp([r.fitted for r in lay.rows_of("study")]),
                               rtol=EXACT_RTOL)  # fmt: skip
    assert [r.yi for r in lay.rows_of("study")] == sorted(case["yi"])
    with pytest.raises(ModelSpecificationError, match="meta-regression"):
        forest_layout(fit, common=True)


def test_forest_rejects_other_objects() -> None:
    tf = am.trim_and_fill(fit_of(CASES["bcg_REML"]))
    with pytest.raises(ModelSpecificationError, match=r"MetaRegressionResult.*TrimAndFill"):
        forest(tf)  # type: ignore[arg-type]
