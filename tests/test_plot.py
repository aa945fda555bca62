"""Tests of :mod:`alliance_meta.plot`: what is drawn, not merely that nothing crashes."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import alliance_meta as am  # noqa: E402
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError  # noqa: E402
from alliance_meta.plot import forest, forest_layout, funnel  # noqa: E402

# Plotted coordinates are float64 copies of the results' values, passed through
# tanh/exp at most once; 1e-12 absolute allows for that rounding only.
ATOL = 1e-12


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def by_gid(fig: Figure, gid: str) -> list[Any]:
    """Every artist of ``fig`` with this gid."""
    return [a for a in fig.findobj(lambda a: a.get_gid() == gid)]


def main_axes(fig: Figure) -> Axes:
    return fig.axes[0]


def diamond_xy(poly: Polygon) -> tuple[float, float, float]:
    """``(low, centre, high)`` x of a diamond polygon: left, top and right vertices."""
    xy = np.asarray(poly.get_xy())
    return float(xy[0, 0]), float(xy[1, 0]), float(xy[2, 0])


@pytest.fixture(scope="module")
def alliance() -> am.PoolResult:
    return am.random_effects(am.datasets.load_alliance_example().studies())


@pytest.fixture(scope="module")
def bcg() -> am.PoolResult:
    return am.random_effects(am.datasets.load_bcg().studies(measure="RR"))


@pytest.fixture(scope="module")
def molloy() -> am.PoolResult:
    return am.random_effects(am.datasets.load_molloy2014().studies())


# ---------------------------------------------------------------------------
# forest
# ---------------------------------------------------------------------------


def test_forest_rows_and_labels(alliance: am.PoolResult) -> None:
    fig = forest(alliance)
    assert isinstance(fig, Figure)
    assert len(by_gid(fig, "study-row")) == alliance.k == 12
    assert len(by_gid(fig, "study-ci")) == alliance.k
    labels = [t.get_text() for t in by_gid(fig, "study-label")]
    assert labels == list(alliance.labels)
    assert len(by_gid(fig, "diamond-overall")) == 1
    assert len(by_gid(fig, "diamond-subgroup")) == 0
    assert len(by_gid(fig, "prediction-interval")) == 1
    weights = [t.get_text() for t in by_gid(fig, "weight-text")]
    assert weights == [f"{w:.1f}%" for w in alliance.weights]


def test_forest_zcor_is_drawn_in_r_on_a_z_spaced_axis(alliance: am.PoolResult) -> None:
    fig = forest(alliance)
    ax = main_axes(fig)
    # natural scale (r) with atanh spacing
    assert ax.get_xscale() == "function"
    lo, mid, hi = diamond_xy(by_gid(fig, "diamond-overall")[0])
    bt = alliance.back_transformed()
    assert mid == pytest.approx(bt.estimate, abs=ATOL)
    assert lo == pytest.approx(bt.ci.low, abs=ATOL)
    assert hi == pytest.approx(bt.ci.high, abs=ATOL)
    # squares at tanh(z_i), whiskers at tanh(z_i ± 1.96 se_i)
    xs = [float(line.get_xdata()[0]) for line in by_gid(fig, "study-row")]
    np.testing.assert_allclose(xs, np.tanh(alliance.yi), atol=ATOL)
    whisk = np.array([line.get_xdata() for line in by_gid(fig, "study-ci")], dtype=float)
    crit = 1.959963984540054  # qnorm(0.975)
    np.testing.assert_allclose(
        whisk[:, 0], np.tanh(alliance.yi - crit * np.sqrt(alliance.vi)), atol=1e-9
    )  # 1e-9: crit above is rounded to 16 digits
    # the display is linear in z: equal z steps are equal pixel steps
    tr = ax.transData
    p = [tr.transform((math.tanh(z), 1.0))[0] for z in (-0.4, -0.2, 0.0)]
    assert p[1] - p[0] == pytest.approx(p[2] - p[1], rel=1e-9)  # float rounding only
    # tick labels are correlations, all within (-1, 1)
    ticks = [float(t.get_text().replace("\u2212", "-")) for t in ax.get_xticklabels()]
    assert ticks and all(-1 < t < 1 for t in ticks)
    assert 0.0 in ticks
    # reference line at r = 0
    null = by_gid(fig, "null-line")[0]
    assert list(null.get_xdata()) == [0.0, 0.0]
    # text column: pooled r and CI as "est [lo, hi]" with true minus signs
    texts = [t.get_text() for t in by_gid(fig, "estimate-text")]
    expected = f"{bt.estimate:.2f} [{bt.ci.low:.2f}, {bt.ci.high:.2f}]".replace("-", "\u2212")
    assert expected in texts
    assert ax.get_xlabel() == "Correlation (r)"


def test_forest_untransformed_is_linear_in_z(alliance: am.PoolResult) -> None:
    fig = forest(alliance, transform=False)
    ax = main_axes(fig)
    assert ax.get_xscale() == "linear"
    lo, mid, hi = diamond_xy(by_gid(fig, "diamond-overall")[0])
    assert (lo, mid, hi) == pytest.approx(
        (alliance.ci.low, alliance.estimate, alliance.ci.high), abs=ATOL
    )
    assert ax.get_xlabel() == "Fisher's z"


def test_forest_log_ratio_uses_log_axis(bcg: am.PoolResult) -> None:
    fig = forest(bcg)
    ax = main_axes(fig)
    assert ax.get_xscale() == "log"
    lo, mid, hi = diamond_xy(by_gid(fig, "diamond-overall")[0])
    assert (lo, mid, hi) == pytest.approx(
        (math.exp(bcg.ci.low), math.exp(bcg.estimate), math.exp(bcg.ci.high)), rel=1e-12
    )  # exp of the stored value: rounding only
    assert list(by_gid(fig, "null-line")[0].get_xdata()) == [1.0, 1.0]
    ticks = [float(t.get_text()) for t in ax.get_xticklabels()]
    assert 1.0 in ticks and all(t > 0 for t in ticks)
    assert "Risk ratio" in ax.get_xlabel()
    pi = by_gid(fig, "prediction-interval")[0]
    np.testing.assert_allclose(pi.get_xdata(), np.exp([bcg.pi.low, bcg.pi.high]), rtol=1e-12)


def test_forest_xlim_cuts_intervals_with_arrows(bcg: am.PoolResult) -> None:
    """xlim fixes the axis; intervals past a limit stop there with an arrowhead
    (one per cut end), the others are drawn whole."""
    lim = (0.2, 2.0)
    fig = forest(bcg, xlim=lim)
    ax = main_axes(fig)
    assert ax.get_xlim() == pytest.approx(lim, rel=1e-12)  # exact: no padding asked
    z = 1.959963984540054  # 95% normal quantile: the study whiskers are Wald intervals
    lo = np.exp(bcg.yi - z * np.sqrt(bcg.vi))
    hi = np.exp(bcg.yi + z * np.sqrt(bcg.vi))
    n_cut = int(np.sum(lo < lim[0]) + np.sum(hi > lim[1]))
    assert n_cut > 0  # the limits do cut this data set
    arrows = by_gid(fig, "study-ci-arrow")
    assert len(arrows) == n_cut
    for seg in by_gid(fig, "study-ci"):
        x0, x1 = seg.get_xdata()
        assert lim[0] - 1e-12 <= x0 <= x1 <= lim[1] + 1e-12
    pi_cut = int(math.exp(bcg.pi.low) < lim[0]) + int(math.exp(bcg.pi.high) > lim[1])
    assert len(by_gid(fig, "prediction-interval-arrow")) == pi_cut == 1
    assert len(by_gid(fig, "prediction-interval-cap")) == 1  # the uncut end keeps its cap
    with pytest.raises(ValueError, match="xlim"):
        forest(bcg, xlim=(-1.0, 2.0))  # not positive on a ratio axis


def test_forest_square_area_proportional_to_weight(alliance: am.PoolResult) -> None:
    fig = forest(alliance)
    sizes = np.array([line.get_markersize() for line in by_gid(fig, "study-row")])
    w = alliance.weights
    # side ∝ sqrt(weight) (area ∝ weight) unless floored at the minimum size
    ratio = sizes**2 / w
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)  # float rounding only


def test_forest_subgroups() -> None:
    studies = am.datasets.load_alliance_example().studies()
    sg = am.subgroup_analysis(studies, by="rater")
    fig = forest(sg, subgroup_title="Rater")
    assert len(by_gid(fig, "study-row")) == 12
    diamonds = by_gid(fig, "diamond-subgroup")
    assert len(diamonds) == len(sg.groups) == 2
    for poly, res in zip(diamonds, sg.groups.values(), strict=True):
        lo, mid, hi = diamond_xy(poly)
        bt = res.back_transformed()
        assert (lo, mid, hi) == pytest.approx((bt.ci.low, bt.estimate, bt.ci.high), abs=ATOL)
    overall = am.random_effects(studies)
    _, mid, _ = diamond_xy(by_gid(fig, "diamond-overall")[0])
    # the overall diamond is all 12 studies re-pooled; REML converges to 1e-10 relative
    assert mid == pytest.approx(overall.back_transformed().estimate, abs=1e-8)
    headers = [t.get_text() for t in by_gid(fig, "header-label")]
    assert headers == [f"Rater: {g}" for g in sg.groups]
    notes = " ".join(t.get_text() for t in by_gid(fig, "note-text"))
    assert "Test for subgroup differences: Q(1)" in notes


def test_forest_draws_into_given_axes(alliance: am.PoolResult) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    out = forest(alliance, ax=ax2)
    assert out is fig
    assert len(by_gid(fig, "study-row")) == alliance.k
    assert not ax1.lines  # nothing leaked into the other axes
    assert all(line.axes is ax2 for line in by_gid(fig, "study-row"))


def test_forest_text_does_not_overlap(alliance: am.PoolResult) -> None:
    """Left labels, estimate and weight columns do not overlap each other or the plot."""
    fig = forest(alliance, title="A title")
    fig.canvas.draw()
    ax = main_axes(fig)
    axbox = ax.get_window_extent()
    figbox = fig.bbox
    labels = by_gid(fig, "study-label")
    ests = by_gid(fig, "estimate-text")
    wts = by_gid(fig, "weight-text")
    for t in labels:
        box = t.get_window_extent()
        assert box.x1 < axbox.x0 and box.x0 >= figbox.x0
    for t in ests:
        assert t.get_window_extent().x0 > axbox.x1
    max_est = max(t.get_window_extent().x1 for t in ests)
    for t in wts:
        box = t.get_window_extent()
        assert box.x0 > max_est and box.x1 <= figbox.x1
    # rows do not overlap vertically
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.y0)
    for a, b in itertools.pairwise(boxes):
        assert a.y1 <= b.y0


def test_forest_height_grows_with_rows(molloy: am.PoolResult, alliance: am.PoolResult) -> None:
    h16 = forest(molloy).get_figheight()
    h12 = forest(alliance).get_figheight()
    assert h16 > h12


def test_forest_rejects_wrong_number_of_labels(alliance: am.PoolResult) -> None:
    with pytest.raises(ValueError, match="labels"):
        forest(alliance, labels=["a", "b"])


def test_forest_custom_labels(alliance: am.PoolResult) -> None:
    names = [f"S{i}" for i in range(alliance.k)]
    fig = forest(alliance, labels=names, show_weights=False, show_pi=False)
    assert [t.get_text() for t in by_gid(fig, "study-label")] == names
    assert not by_gid(fig, "weight-text")
    assert not by_gid(fig, "prediction-interval")


# ---------------------------------------------------------------------------
# funnel
# ---------------------------------------------------------------------------


def test_funnel_points_and_inverted_axis(molloy: am.PoolResult) -> None:
    fig = funnel(molloy, transform=False)
    ax = main_axes(fig)
    pts = by_gid(fig, "study-point")
    assert len(pts) == molloy.k
    xy = np.array([(line.get_xdata()[0], line.get_ydata()[0]) for line in pts], dtype=float)
    np.testing.assert_allclose(xy[:, 0], molloy.yi, atol=ATOL)
    np.testing.assert_allclose(xy[:, 1], np.sqrt(molloy.vi), atol=ATOL)
    y0, y1 = ax.get_ylim()
    assert y0 > y1 == 0.0  # inverted: SE 0 at the top
    tri = by_gid(fig, "funnel-triangle")[0]
    tx = np.asarray(tri.get_xdata(), dtype=float)
    assert tx[1] == pytest.approx(molloy.estimate, abs=ATOL)
    # the triangle's half-width at the bottom is 1.96 * SE_max (to rounding of qnorm)
    assert (tx[2] - tx[1]) == pytest.approx(1.959963984540054 * y0, rel=1e-12)
    assert not by_gid(fig, "filled-study")


def test_funnel_trim_and_fill_filled_points(molloy: am.PoolResult) -> None:
    tf = am.trim_and_fill(molloy)
    assert tf.k0 > 0  # molloy2014: metafor's trimfill imputes studies on the left
    fig = funnel(molloy, trim_and_fill=tf, transform=False)
    filled = by_gid(fig, "filled-study")
    assert len(filled) == tf.k0
    assert len(by_gid(fig, "study-point")) == molloy.k
    fx = sorted(float(line.get_xdata()[0]) for line in filled)
    np.testing.assert_allclose(fx, np.sort(tf.yi[tf.filled]), atol=ATOL)
    for line in filled:  # drawn as open markers
        assert line.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))
    # centred on the adjusted estimate
    tri = by_gid(fig, "funnel-triangle")[0]
    assert float(tri.get_xdata()[1]) == pytest.approx(tf.result.estimate, abs=ATOL)


def test_funnel_subgroups() -> None:
    """One colour and one triangle per subgroup, centred on that subgroup's estimate."""
    sg = am.subgroup_analysis(am.datasets.load_alliance_example().studies(), by="rater")
    fig = funnel(sg, transform=False)
    pts = by_gid(fig, "study-point")
    tris = by_gid(fig, "funnel-triangle")
    assert len(pts) == sg.k and len(tris) == len(sg.groups) == 2
    start = 0
    for tri, res in zip(tris, sg.groups.values(), strict=True):
        assert float(tri.get_xdata()[1]) == pytest.approx(res.estimate, abs=ATOL)
        mine = pts[start : start + res.k]
        start += res.k
        np.testing.assert_allclose([p.get_xdata()[0] for p in mine], res.yi, atol=ATOL)
        assert len({p.get_markerfacecolor() for p in mine}) == 1
        assert tri.get_color() == mine[0].get_markerfacecolor()  # triangle in its colour
    colours = {pts[0].get_markerfacecolor(), pts[-1].get_markerfacecolor()}
    assert len(colours) == 2
    labels = [t.get_text() for t in main_axes(fig).get_legend().get_texts()]
    assert labels == [f"{name} (k = {res.k})" for name, res in sg.groups.items()]
    with pytest.raises(ValueError, match="PoolResult"):
        funnel(sg, trim_and_fill=am.trim_and_fill(next(iter(sg.groups.values()))))


def test_funnel_contours(molloy: am.PoolResult) -> None:
    fig = funnel(molloy, contours=True)
    ax = main_axes(fig)
    assert ax.get_xscale() == "function"
    for p in (0.1, 0.05, 0.01):
        assert len(by_gid(fig, f"contour-{p:g}")) == 1
    legend = ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert "p < .01" in labels and "p > .10" in labels
    fig2 = funnel(molloy, contours=(0.05,))
    assert len(by_gid(fig2, "contour-0.05")) == 1
    assert not by_gid(fig2, "contour-0.1")
    with pytest.raises(ValueError, match="contour"):
        funnel(molloy, contours=(1.5,))


def test_funnel_contour_width_matches_critical_value(molloy: am.PoolResult) -> None:
    fig = funnel(molloy, contours=(0.05,), transform=False)
    coll = by_gid(fig, "contour-0.05")[0]
    verts = np.concatenate([p.vertices for p in coll.get_paths()])
    se_max = main_axes(fig).get_ylim()[0]
    # widest vertex: 1.96 * se_max from zero (to rounding of qnorm)
    assert np.max(np.abs(verts[:, 0])) == pytest.approx(1.959963984540054 * se_max, rel=1e-9)


def test_funnel_log_scale(bcg: am.PoolResult) -> None:
    fig = funnel(bcg)
    assert main_axes(fig).get_xscale() == "log"


def test_plot_module_not_imported_by_package() -> None:
    code = (
        "import sys, alliance_meta; "
        "print('matplotlib' in sys.modules, 'alliance_meta.plot' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    assert out == ["False", "False"]


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    import alliance_meta.plot as plot_mod

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"alliance_meta\[plot\]"):
        plot_mod.forest(am.random_effects(yi=[0.1, 0.2], vi=[0.01, 0.02]))


def test_forest_layout_is_data_and_errors_are_library_errors() -> None:
    """forest_layout gives the rows without drawing; plot errors are AllianceMetaError."""
    from alliance_meta.exceptions import AllianceMetaError
    from alliance_meta.plot.forest import forest_layout

    studies = am.datasets.load_alliance_example().studies()
    sub = am.subgroup_analysis(studies, by="rater")
    lay = forest_layout(sub, subgroup_title="Rater")
    kinds = [r.kind for r in lay.rows]
    assert kinds.count("study") == studies.k
    assert kinds.count("group-diamond") == len(sub.groups)
    assert kinds.count("overall") == 1
    overall = next(r for r in lay.rows if r.kind == "overall")
    assert overall.yi == sub.overall.estimate
    headers = [r.label for r in lay.rows if r.kind == "header"]
    assert headers == [f"Rater: {g}" for g in sub.groups]
    with pytest.raises(AllianceMetaError, match="labels"):
        forest_layout(sub, labels=["a"])


# ---------------------------------------------------------------------------
# forest: the layout's data (positions, texts, weights) and what is drawn of it
# ---------------------------------------------------------------------------

MINUS = "\u2212"
_NUMBER = re.compile(r"[-\u2212]?\d+(?:\.\d+)?")


def negative_zeros(text: str) -> list[str]:
    """Numbers in ``text`` printed with a minus sign whose value is zero ("−0.00")."""
    return [
        m for m in _NUMBER.findall(text)
        if m[0] in "-\u2212" and float(m[1:]) == 0.0
    ]  # fmt: skip


def all_texts(fig: Figure) -> list[str]:
    fig.canvas.draw()
    out = [t.get_text() for t in fig.findobj(Text)]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.get_xticklabels()]
    return out


def r_text(z: float, lo: float, hi: float) -> str:
    """Independent formatting of an estimate text on the r scale (2 decimals)."""
    def f(x: float) -> str:
        s = f"{math.tanh(x):.2f}"
        return ("0.00" if float(s) == 0.0 else s).replace("-", MINUS)

    return f"{f(z)} [{f(lo)}, {f(hi)}]"


@pytest.fixture(scope="module")
def alliance_studies() -> am.StudySet:
    return am.datasets.load_alliance_example().studies()


@pytest.fixture(scope="module")
def by_rater(alliance_studies: am.StudySet) -> am.SubgroupResult:
    return am.subgroup_analysis(alliance_studies, by="rater")


def test_forest_layout_rows_positions_texts_weights(alliance: am.PoolResult) -> None:
    lay = forest_layout(alliance)
    ys = [r.y for r in lay.rows]
    assert ys == [float(len(ys) - i) for i in range(len(ys))]  # top to bottom, 1 apart
    studies = lay.rows_of("study")
    assert [r.index for r in studies] == list(range(alliance.k))
    assert [r.label for r in studies] == list(alliance.labels)
    z = 1.959963984540054  # qnorm(0.975): the whiskers are Wald intervals
    se = np.sqrt(alliance.vi)
    for r, y, s in zip(studies, alliance.yi, se, strict=True):
        assert r.estimate_text == r_text(y, y - z * s, y + z * s)
    assert lay.weight_columns == ("Weight",)
    w = 1.0 / (alliance.vi + alliance.tau2)
    np.testing.assert_allclose(
        [r.weights[0] for r in studies], 100 * w / w.sum(), rtol=1e-12
    )  # the same sums in another order: rounding only
    assert [r.weight_texts[0] for r in studies] == [f"{x:.1f}%" for x in 100 * w / w.sum()]
    (overall,) = lay.rows_of("overall")
    assert overall.weight_texts == ("100%",)
    assert overall.estimate_text == r_text(
        alliance.estimate, alliance.ci.low, alliance.ci.high
    )
    (pi,) = lay.rows_of("pi")
    lo, hi = (f"{math.tanh(v):.2f}".replace("-", MINUS) for v in alliance.pi)
    assert pi.estimate_text == f"[{lo}, {hi}]"
    assert lay.estimate_header == "r [95% CI]"


def test_forest_subgroup_weights_are_labelled_within_and_overall(
    by_rater: am.SubgroupResult,
) -> None:
    lay = forest_layout(by_rater)
    assert lay.weight_columns == ("Weight\nin subgroup", "Weight\noverall")
    ov = by_rater.overall
    w_all = 1.0 / (ov.vi + ov.tau2)
    w_all = 100 * w_all / w_all.sum()
    studies = lay.rows_of("study")
    within = np.array([r.weights[0] for r in studies])
    overall_w = np.array([r.weights[1] for r in studies])
    # the overall column: each study's weight in the model of all studies
    np.testing.assert_allclose(overall_w, w_all[[r.index for r in studies]], rtol=1e-12)
    assert overall_w.sum() == pytest.approx(100.0, rel=1e-12)  # rounding only
    start = 0
    diamonds = lay.rows_of("group-diamond")
    for g, dia in zip(by_rater.groups.values(), diamonds, strict=True):
        part = slice(start, start + g.k)
        start += g.k
        w_g = 1.0 / (g.vi + g.tau2)
        np.testing.assert_allclose(within[part], 100 * w_g / w_g.sum(), rtol=1e-12)
        assert [r.label for r in studies[part]] == list(g.labels)
        # the subgroup's diamond: 100% of its own model, its studies' share of the overall
        assert dia.weight_texts[0] == "100%"
        assert dia.weights[1] == pytest.approx(overall_w[part].sum(), rel=1e-12)
        assert dia.estimate_text == r_text(g.estimate, g.ci.low, g.ci.high)
    (overall,) = lay.rows_of("overall")
    assert overall.weight_texts == ("", "100%")
    # default headers name the moderator
    assert [r.label for r in lay.rows_of("header")] == [f"Rater: {g}" for g in by_rater.groups]
    bare = forest_layout(by_rater, subgroup_title="")
    assert [r.label for r in bare.rows_of("header")] == list(by_rater.groups)
    fig = forest(by_rater)
    headers = [t.get_text() for t in by_gid(fig, "header-text")]
    assert "Weight\nin subgroup" in headers and "Weight\noverall" in headers
    assert len(by_gid(fig, "weight-text")) == 2 * by_rater.k


def test_forest_extra_columns(alliance_studies: am.StudySet, by_rater: am.SubgroupResult) -> None:
    k = alliance_studies.k
    events = [f"{i}/{10 * i}" for i in range(1, k + 1)]
    lay = forest_layout(
        by_rater, data=alliance_studies,
        columns={"N": "n", "Events/total": events, "Rater": "rater"},
    )  # fmt: skip
    assert lay.columns == ("N", "Events/total", "Rater")
    assert lay.column_align == ("right", "left", "left")
    n = alliance_studies.n
    raters = alliance_studies.moderator("rater")
    for r in lay.rows_of("study"):
        assert r.cells == (str(int(n[r.index])), events[r.index], str(raters[r.index]))
    for r in lay.rows_of("overall"):
        assert r.cells == ()
    # a sequence of names, looked up in a data frame
    frame = alliance_studies.to_dataframe()
    lay2 = forest_layout(am.random_effects(alliance_studies), columns=["n"], data=frame)
    assert [r.cells for r in lay2.rows_of("study")] == [(str(int(v)),) for v in n]
    # floats get the estimate's decimals, with true minus signs and no −0.00
    lay3 = forest_layout(
        am.random_effects(alliance_studies),
        columns={"x": [-0.001, 1.234, -2.5, np.nan, *[1.0] * (k - 4)]},
    )  # fmt: skip
    cells = [r.cells[0] for r in lay3.rows_of("study")][:4]
    assert cells == ["0.00", "1.23", f"{MINUS}2.50", ""]
    fig = forest(by_rater, data=alliance_studies, columns={"N": "n"})
    texts = by_gid(fig, "column-text")
    assert sorted(t.get_text() for t in texts) == sorted(str(int(v)) for v in n)
    fig.canvas.draw()
    ax_x0 = main_axes(fig).get_window_extent().x0
    label_x1 = max(t.get_window_extent().x1 for t in by_gid(fig, "study-label"))
    for t in texts:  # between the labels and the plot
        box = t.get_window_extent()
        assert label_x1 < box.x0 and box.x1 < ax_x0
    with pytest.raises(ModelSpecificationError, match="data="):
        forest_layout(by_rater, columns=["n"])
    with pytest.raises(InvalidStudyError, match="no column 'nope'"):
        forest_layout(by_rater, columns=["nope"], data=alliance_studies)
    with pytest.raises(InvalidStudyError, match="3 values"):
        forest_layout(by_rater, columns={"N": [1, 2, 3]})
    with pytest.raises(InvalidStudyError, match="rows"):
        forest_layout(by_rater, columns=["n"], data=frame.iloc[:3])


def test_forest_sort_by(alliance_studies: am.StudySet, by_rater: am.SubgroupResult) -> None:
    fit = am.random_effects(alliance_studies)
    lay = forest_layout(fit, sort_by="yi")
    assert [r.index for r in lay.rows_of("study")] == list(np.argsort(fit.yi, kind="stable"))
    lay = forest_layout(fit, sort_by="-weight")
    assert [r.index for r in lay.rows_of("study")] == list(
        np.argsort(-fit.weights, kind="stable")
    )
    keys = list(range(fit.k, 0, -1))
    lay = forest_layout(fit, sort_by=keys)
    assert [r.index for r in lay.rows_of("study")] == list(range(fit.k))[::-1]
    lay = forest_layout(fit, sort_by="n", data=alliance_studies)
    assert [r.index for r in lay.rows_of("study")] == list(
        np.argsort(alliance_studies.n, kind="stable")
    )
    # within each subgroup: the blocks stay, the studies inside are sorted
    lay = forest_layout(by_rater, sort_by="yi")
    studies = lay.rows_of("study")
    start = 0
    for g in by_rater.groups.values():
        ys = [r.yi for r in studies[start : start + g.k]]
        assert ys == sorted(g.yi)
        start += g.k
    with pytest.raises(InvalidStudyError, match="sort"):
        forest_layout(fit, sort_by="nope")


def test_forest_common_and_random_diamonds(
    alliance: am.PoolResult, by_rater: am.SubgroupResult
) -> None:
    lay = forest_layout(alliance, common=True)
    overall = lay.rows_of("overall")
    assert [r.model for r in overall] == ["random", "common"]
    ee = am.random_effects(yi=alliance.yi, vi=alliance.vi, method="EE")
    assert overall[1].yi == pytest.approx(ee.estimate, rel=1e-12)  # the same closed form
    assert (overall[1].lo, overall[1].hi) == pytest.approx(tuple(ee.ci), rel=1e-12)
    assert overall[1].label == "Common-effect model"
    assert lay.weight_columns == ("Weight (random)", "Weight (common)")
    w = 1.0 / alliance.vi
    np.testing.assert_allclose(
        [r.weights[1] for r in lay.rows_of("study")], 100 * w / w.sum(), rtol=1e-12
    )  # rounding only
    assert overall[0].weight_texts == ("100%", "")
    assert overall[1].weight_texts == ("", "100%")
    fig = forest(by_rater, common=True)
    assert len(by_gid(fig, "diamond-overall")) == 1
    assert len(by_gid(fig, "diamond-overall-common")) == 1
    assert len(by_gid(fig, "diamond-subgroup")) == len(by_rater.groups)
    common_dias = by_gid(fig, "diamond-subgroup-common")
    assert len(common_dias) == len(by_rater.groups)
    for poly, g in zip(common_dias, by_rater.groups.values(), strict=True):
        gee = am.random_effects(yi=g.yi, vi=g.vi, method="EE")
        _, mid, _ = diamond_xy(poly)
        assert mid == pytest.approx(math.tanh(gee.estimate), rel=1e-12)  # rounding only
    # an equal-effects result has one diamond whatever common says
    assert len(forest_layout(ee, common=True).rows_of("overall")) == 1


def test_forest_favours_labels(bcg: am.PoolResult) -> None:
    fig = forest(bcg, favours=("Favours vaccine", "Favours control"))
    fig.canvas.draw()
    (left,) = by_gid(fig, "favours-left")
    (right,) = by_gid(fig, "favours-right")
    assert "Favours vaccine" in left.get_text() and "Favours control" in right.get_text()
    ax = main_axes(fig)
    null_px = ax.transData.transform((1.0, 0.0))[0]
    assert left.get_window_extent().x1 < null_px < right.get_window_extent().x0
    ax_y0 = ax.get_window_extent().y0
    assert left.get_window_extent().y1 < ax_y0  # under the axis
    assert forest_layout(bcg, favours=("a", "b")).favours == ("a", "b")


def test_forest_never_prints_negative_zero() -> None:
    # effects and bounds that round to zero from below, on the r and linear scales
    yi = [-0.004, -0.0049, 0.3, -0.2, 0.1]
    vi = [0.01, 0.02, 0.015, 0.01, 0.02]
    for measure in ("ZCOR", "GEN"):
        res = am.random_effects(yi=yi, vi=vi, measure=measure)
        lay = forest_layout(res)
        texts = [r.estimate_text for r in lay.rows] + [r.text for r in lay.rows]
        assert not any(negative_zeros(t) for t in texts), texts
        fig = forest(res, columns={"x": [-0.001, -0.0, 0.0, 1.0, 2.0]})
        bad = [t for t in all_texts(fig) if negative_zeros(t)]
        assert bad == []
    assert lay.rows_of("study")[0].estimate_text.startswith("0.00 [")
    assert negative_zeros(f"{MINUS}0.00 [x]") == [f"{MINUS}0.00"]  # the check can fail


def test_forest_labels_must_be_one_per_row() -> None:
    """A wrong number of row labels is refused, naming the field, on each forest path
    (pooled, meta-regression, multilevel)."""
    from alliance_meta.exceptions import InvalidStudyError
    from alliance_meta.plot import forest_layout

    y, v = [0.1, 0.3, 0.2, 0.5, 0.4, 0.25], [0.01, 0.02, 0.015, 0.01, 0.02, 0.01]
    fits = [
        am.random_effects(yi=y, vi=v),
        am.meta_regression(yi=y, vi=v, moderators={"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}),
        am.multilevel(yi=y, vi=v, levels={"study": ["a", "a", "b", "b", "c", "c"]}),
    ]
    for fit in fits:
        with pytest.raises(InvalidStudyError, match="labels has 2 entries") as info:
            forest_layout(fit, labels=["one", "two"])
        assert info.value.field == "labels"
        shown = {r.label for r in forest_layout(fit, labels=list("pqrstu")).rows}
        assert set("pqrstu") <= shown  # the given labels name the rows
