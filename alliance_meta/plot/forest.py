"""Forest plots: a row layout (what to show) and a renderer (how to draw it).

:func:`forest_layout` turns a result into rows (studies, subgroup headers and
diamonds, the overall diamond, the prediction interval, notes) without drawing
anything; :func:`forest` draws such a layout with matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.core.inference import z_critical
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError
from alliance_meta.models.pooling import PoolResult
from alliance_meta.models.subgroup import SubgroupResult
from alliance_meta.plot.scale import Scale
from alliance_meta.plot.style import (
    COLUMN_GAP_PT,
    DIAMOND_HALF_HEIGHT,
    FONT_SIZE,
    MAX_SQUARE_PT,
    MIN_SQUARE_PT,
    PLOT_WIDTH_IN,
    ROW_HEIGHT_IN,
    auto_digits,
    minus,
    pvalue_text,
    require_matplotlib,
    root_figure,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

__all__ = ["ForestLayout", "ForestRow", "forest", "forest_layout"]

@attrs.frozen
class ForestRow:
    """One row of the forest plot (y decreases downwards)."""

    kind: str  # "study", "header", "group-diamond", "overall", "pi", "note", "blank"
    label: str = ""
    yi: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    weight: float = math.nan
    text: str = ""


def _study_ci(yi: FloatArray, vi: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    crit = z_critical(level)
    se = np.sqrt(vi)
    return yi - crit * se, yi + crit * se


def _heterogeneity_text(res: PoolResult) -> str:
    tau2 = f"{res.tau2:.3f}" if res.tau2 >= 0.001 or res.tau2 == 0 else f"{res.tau2:.2g}"
    return (
        f"Heterogeneity: \u03c4\u00b2 = {tau2}, I\u00b2 = {res.I2:.0f}%, "
        f"Q({res.Q_df}) = {res.Q:.2f}, {minus(pvalue_text(res.Q_pvalue))}"
    )


def _model_name(res: PoolResult) -> str:
    if res.method == "EE":
        return "Equal-effects model"
    return f"Random-effects model ({res.method})"


def _subgroup_test_text(result: SubgroupResult) -> str:
    q, df, p = result.Q_between, result.Q_between_df, result.Q_between_pvalue
    if result.Q_between_df2 is not None:  # F test under a common tau^2 with t-type tests
        stat = f"F({df}, {result.Q_between_df2}) = {q:.2f}"
    else:
        stat = f"Q({df}) = {q:.2f}"
    return f"Test for subgroup differences: {stat}, {minus(pvalue_text(p))}"


def _ci_text(scale: Scale, est: float, lo: float, hi: float, digits: int) -> str:
    f = scale.format_value
    return f"{f(est, digits)} [{f(lo, digits)}, {f(hi, digits)}]"


_INTERVAL_ROWS = ("study", "group-diamond", "overall", "pi")


@attrs.frozen
class ForestLayout:
    """The rows of a forest plot, top to bottom, and what they are drawn against.

    Attributes
    ----------
    rows : tuple of ForestRow
        ``kind`` is one of "study", "header", "group-diamond", "overall", "pi",
        "note" and "blank"; interval rows hold their estimate and bounds on the
        analysis scale and study rows their weight (percent).
    overall : PoolResult
        The result of the overall diamond.
    scale : Scale
        The x axis (natural or analysis scale of the measure).
    level : float
        The confidence level of every interval.
    is_subgroup : bool
        Whether the rows come in subgroup blocks.
    """

    rows: tuple[ForestRow, ...]
    overall: PoolResult
    scale: Scale
    level: float
    is_subgroup: bool


def forest_layout(
    result: PoolResult | SubgroupResult,
    *,
    labels: Sequence[str] | None = None,
    transform: bool = True,
    show_pi: bool = True,
    show_heterogeneity: bool = True,
    subgroup_title: str | None = None,
) -> ForestLayout:
    """The rows a forest plot of ``result`` shows (see :func:`forest`); draws nothing.

    Raises
    ------
    InvalidStudyError
        If ``labels`` does not give one label per study.
    ModelSpecificationError
        For a subgroup result without groups.
    """
    is_subgroup = isinstance(result, SubgroupResult)
    if isinstance(result, SubgroupResult):
        sub = result
        if not sub.groups:
            raise ModelSpecificationError("the subgroup result has no groups")
        overall = sub.overall
        blocks: list[tuple[str | None, PoolResult]] = [
            (str(name), res) for name, res in sub.groups.items()
        ]
    else:
        overall = result
        blocks = [(None, result)]

    scale = Scale(overall.measure, transform)
    level = overall.level
    n_studies = sum(res.k for _, res in blocks)
    if labels is not None and len(labels) != n_studies:
        raise InvalidStudyError(
            f"labels has {len(labels)} entries but there are {n_studies} studies",
            field="labels",
        )

    # ---- rows ---------------------------------------------------------------
    rows: list[ForestRow] = []
    label_iter = iter(labels) if labels is not None else None
    for name, res in blocks:
        if name is not None:
            head = f"{subgroup_title}: {name}" if subgroup_title else str(name)
            rows.append(ForestRow("header", label=head))
        ci_lo, ci_hi = _study_ci(res.yi, res.vi, level)
        # Overall weights for a subgroup display are the within-subgroup weights,
        # as in metafor's and RevMan's subgroup forest plots.
        w = res.weights
        for i in range(res.k):
            lab = next(label_iter) if label_iter is not None else res.labels[i]
            rows.append(
                ForestRow("study", label=str(lab), yi=float(res.yi[i]), lo=float(ci_lo[i]),
                     hi=float(ci_hi[i]), weight=float(w[i]))
            )  # fmt: skip
        if name is not None:
            rows.append(
                ForestRow("group-diamond", label=f"Subtotal ({res.method}, k = {res.k})",
                     yi=res.estimate, lo=res.ci.low, hi=res.ci.high)
            )  # fmt: skip
            if show_heterogeneity and res.k > 1:
                rows.append(ForestRow("note", text=_heterogeneity_text(res)))
            rows.append(ForestRow("blank"))
    if not is_subgroup:
        rows.append(ForestRow("blank"))
    rows.append(
        ForestRow("overall", label=_model_name(overall) if not is_subgroup else
             f"Overall, {_model_name(overall)[0].lower()}{_model_name(overall)[1:]}",
             yi=overall.estimate, lo=overall.ci.low, hi=overall.ci.high)
    )  # fmt: skip
    has_pi = show_pi and overall.method != "EE"
    if has_pi:
        rows.append(
            ForestRow("pi", label="Prediction interval", yi=overall.estimate, lo=overall.pi.low,
                 hi=overall.pi.high)
        )  # fmt: skip
    if show_heterogeneity:
        rows.append(ForestRow("note", text=_heterogeneity_text(overall)))
    if isinstance(result, SubgroupResult):
        rows.append(ForestRow("note", text=_subgroup_test_text(result)))

    return ForestLayout(tuple(rows), overall, scale, level, is_subgroup)



def forest(
    result: PoolResult | SubgroupResult,
    *,
    ax: Axes | None = None,
    labels: Sequence[str] | None = None,
    transform: bool = True,
    show_weights: bool = True,
    show_pi: bool = True,
    show_heterogeneity: bool = True,
    title: str | None = None,
    xlabel: str | None = None,
    digits: int | None = None,
    color: str = "black",
    diamond_color: str = "#2f4f6f",
    subgroup_title: str | None = None,
    xlim: tuple[float, float] | None = None,
) -> Figure:
    """Draw a forest plot of a pooled result or a subgroup analysis.

    Parameters
    ----------
    result : PoolResult or SubgroupResult
        A pooled result (one row per study, then the pooled diamond), or a subgroup
        result with ``groups`` (label → PoolResult): one block per subgroup with its
        header, studies and diamond, then the overall diamond and the test for
        subgroup differences (``Q_between``, ``Q_between_df``, ``Q_between_pvalue``).
        The overall diamond is ``result.overall`` (every study pooled with the
        subgroups' method).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into.  The label and text columns are drawn *outside* the axes
        (to its left and right), so leave room for them, e.g. with
        ``fig.subplots_adjust`` or ``bbox_inches="tight"`` when saving.  When omitted
        a new figure is created whose size and margins fit the table (height
        proportional to the number of rows).
    labels : sequence of str, optional
        Study labels, in study order; ``result.labels`` by default.
    transform : bool
        Plot on the natural scale (r for ``ZCOR`` on a tanh-spaced axis, ratios on a
        log axis) — the default — or, if False, on the analysis scale.
    show_weights : bool
        Add the weight (%) column.
    show_pi : bool
        Add the prediction-interval bar under the overall diamond (random-effects
        models only).
    show_heterogeneity : bool
        Add the heterogeneity line (τ², I², Q) under the overall estimate.
    title : str, optional
        Axes title.
    xlabel : str, optional
        x-axis label; by default the natural-scale name of the measure.
    digits : int, optional
        Decimals of the text column; 2 (or 3 for small values) by default.
    color : str
        Colour of the study squares and whiskers.
    diamond_color : str
        Fill colour of the diamonds.
    subgroup_title : str, optional
        Prefix of subgroup headers, e.g. ``"Rater"`` gives "Rater: patient".
    xlim : (float, float), optional
        x-axis limits on the plotted scale (e.g. ``(-0.6, 0.4)`` for r, ``(0.1, 10)``
        for ratios), instead of limits that hold every interval.  Intervals that
        extend past a limit are cut there and end in an arrowhead, as in metafor's
        ``forest(..., alim=)``; the text columns still give their full values.

    Returns
    -------
    matplotlib.figure.Figure
        The figure containing ``ax``.

    Raises
    ------
    ImportError
        If matplotlib (the ``plot`` extra) is not installed.

    Notes
    -----
    Study squares have an area proportional to the study's weight in the model;
    whiskers are Wald intervals ``y_i ± z_{1-α/2} √v_i`` at the result's level; the
    diamond spans the pooled CI; the prediction interval is drawn as a bar from
    ``pi.low`` to ``pi.high``.  See the module docstring for gids and scales.

    Examples
    --------
    >>> import alliance_meta as am
    >>> from alliance_meta.plot import forest
    >>> res = am.random_effects(am.datasets.load_molloy2014().studies())
    >>> fig = forest(res)  # doctest: +SKIP
    >>> fig.savefig("forest.png", dpi=200)  # doctest: +SKIP
    """
    require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib import transforms
    from matplotlib.patches import Polygon

    lay = forest_layout(
        result, labels=labels, transform=transform, show_pi=show_pi,
        show_heterogeneity=show_heterogeneity, subgroup_title=subgroup_title,
    )  # fmt: skip
    rows, scale, overall, level = lay.rows, lay.scale, lay.overall, lay.level
    is_subgroup = lay.is_subgroup
    all_vals = [v for r in rows if r.kind in _INTERVAL_ROWS for v in (r.lo, r.hi, r.yi)]
    if digits is None:
        digits = auto_digits([float(v) for v in scale.to_plot(np.array(all_vals))])

    n_rows = len(rows)
    ys = [float(n_rows - i) for i in range(n_rows)]  # top row at y = n_rows
    header_y = n_rows + 1.3

    # ---- figure and axes ----------------------------------------------------
    own_figure = ax is None
    if ax is None:
        height = ROW_HEIGHT_IN * (n_rows + 2.0 + (1.5 if title else 0.0)) + 0.75
        fig_new = plt.figure(figsize=(9.0, height))
        ax = fig_new.add_subplot(1, 1, 1)
    fig = root_figure(ax)

    if xlim is not None:
        x_lo, x_hi = (float(x) for x in xlim)
        bad = not (x_lo < x_hi) or (scale.kind == "log" and x_lo <= 0) or (
            scale.kind == "r" and not -1.0 < x_lo < x_hi < 1.0
        )
        if bad:
            raise ModelSpecificationError(
                f"xlim {xlim!r} is not an increasing range on the plotted scale"
            )
        scale.configure(ax, x_lo, x_hi, exact=True)
    else:
        pv = scale.to_plot(np.array(all_vals, dtype=np.float64))
        x_lo, x_hi = float(np.min(pv)), float(np.max(pv))
        x_lo, x_hi = min(x_lo, scale.null), max(x_hi, scale.null)
        scale.configure(ax, x_lo, x_hi)
        x_lo, x_hi = -math.inf, math.inf  # nothing to clip
    title_y = header_y + 1.5
    ax.set_ylim(0.4, (title_y if title else header_y) + 0.6)

    # ---- plot elements ------------------------------------------------------
    study_w = [r.weight for r in rows if r.kind == "study"]
    w_max = max(study_w) if study_w else 1.0
    top_study_y = max((y for r, y in zip(rows, ys, strict=True) if r.kind == "study"), default=1.0)
    ax.plot(
        [scale.null, scale.null], [ys[-1] - 0.5, top_study_y + 0.6], color="0.35",
        linewidth=0.8, zorder=1, gid="null-line",
    )  # fmt: skip
    ax.plot(
        [scale.to_plot_scalar(overall.estimate)] * 2, [ys[-1] - 0.5, top_study_y + 0.6],
        color=diamond_color, linewidth=0.7, linestyle=(0, (3, 3)), alpha=0.6, zorder=1,
        gid="estimate-line",
    )  # fmt: skip
    for r, y in zip(rows, ys, strict=True):
        if r.kind == "study":
            x, lo, hi = scale.row_values(r)
            ax.plot([max(lo, x_lo), min(hi, x_hi)], [y, y], color=color, linewidth=0.9,
                    zorder=2, gid="study-ci", solid_capstyle="butt")  # fmt: skip
            for end, beyond, mark in ((x_lo, lo < x_lo, "<"), (x_hi, hi > x_hi, ">")):
                if beyond:
                    ax.plot([end], [y], marker=mark, markersize=4.5, color=color,
                            linestyle="none", zorder=3, clip_on=False,
                            gid="study-ci-arrow")  # fmt: skip
            size = max(MIN_SQUARE_PT, MAX_SQUARE_PT * math.sqrt(r.weight / w_max))
            ax.plot([x], [y], marker="s", markersize=size, color=color, linestyle="none",
                    zorder=3, gid="study-row")  # fmt: skip
        elif r.kind in ("group-diamond", "overall"):
            x, lo, hi = (min(max(v, x_lo), x_hi) for v in scale.row_values(r))
            poly = Polygon(
                [(lo, y), (x, y + DIAMOND_HALF_HEIGHT), (hi, y), (x, y - DIAMOND_HALF_HEIGHT)],
                closed=True, facecolor=diamond_color if r.kind == "overall" else "white",
                edgecolor=diamond_color, linewidth=1.0, zorder=3,
            )  # fmt: skip
            poly.set_gid("diamond-overall" if r.kind == "overall" else "diamond-subgroup")
            ax.add_patch(poly)
        elif r.kind == "pi":
            _, lo, hi = scale.row_values(r)
            ax.plot([max(lo, x_lo), min(hi, x_hi)], [y, y], color=diamond_color,
                    linewidth=2.2, zorder=3, solid_capstyle="butt",
                    gid="prediction-interval")  # fmt: skip
            for end, cut, mark in ((lo, lo < x_lo, "<"), (hi, hi > x_hi, ">")):
                if cut:  # cut by xlim: an arrowhead at the limit instead of a cap
                    ax.plot([x_lo if mark == "<" else x_hi], [y], marker=mark, markersize=5.5,
                            color=diamond_color, linestyle="none", zorder=3, clip_on=False,
                            gid="prediction-interval-arrow")  # fmt: skip
                else:
                    ax.plot([end, end], [y - 0.18, y + 0.18], color=diamond_color,
                            linewidth=1.0, zorder=3, gid="prediction-interval-cap")  # fmt: skip

    # ---- axes styling -------------------------------------------------------
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_linewidth(0.8)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=FONT_SIZE, width=0.8, length=3.5)
    ax.set_xlabel(xlabel if xlabel is not None else scale.axis_label, fontsize=FONT_SIZE)

    # ---- text columns -------------------------------------------------------
    base = transforms.blended_transform_factory(ax.transAxes, ax.transData)
    left_texts: list[Text] = []
    left_notes: list[Text] = []
    est_texts: list[Text] = []
    wt_texts: list[Text] = []
    kw: dict[str, Any] = {"fontsize": FONT_SIZE, "va": "center", "clip_on": False}
    for r, y in zip(rows, ys, strict=True):
        if r.kind == "blank":
            continue
        if r.kind == "note":
            t = ax.text(0.0, y, r.text, ha="left", fontsize=FONT_SIZE - 1, va="center",
                        clip_on=False, color="0.25", gid="note-text")  # fmt: skip
            left_notes.append(t)
            continue
        weight = "bold" if r.kind in ("header", "overall", "group-diamond") else "normal"
        style = "italic" if r.kind == "pi" else "normal"
        gid = "study-label" if r.kind == "study" else f"{r.kind}-label"
        indent = "   " if is_subgroup and r.kind in ("study", "group-diamond") else ""
        left_texts.append(
            ax.text(0.0, y, indent + r.label, ha="left", fontweight=weight, fontstyle=style,
                    gid=gid, **kw)
        )  # fmt: skip
        if r.kind == "header":
            continue
        x, lo, hi = scale.row_values(r)
        if r.kind == "pi":
            f = scale.format_value
            txt = f"[{f(lo, digits)}, {f(hi, digits)}]"
        else:
            txt = _ci_text(scale, x, lo, hi, digits)
        est_texts.append(
            ax.text(0.0, y, txt, ha="right", fontweight=weight, fontstyle=style,
                    gid="estimate-text", **kw)
        )  # fmt: skip
        if show_weights and r.kind in ("study", "overall"):
            wtxt = f"{r.weight:.1f}%" if r.kind == "study" else "100%"
            if r.kind == "overall" and is_subgroup:
                continue
            wt_texts.append(
                ax.text(0.0, y, wtxt, ha="right", fontweight=weight,
                        gid="weight-text" if r.kind == "study" else "weight-total", **kw)
            )  # fmt: skip
    header_kw: dict[str, Any] = {**kw, "fontweight": "bold"}
    h_study = ax.text(0.0, header_y, "Study", ha="left", gid="header-text", **header_kw)
    pct = f"{100 * level:g}%"
    h_est = ax.text(0.0, header_y, f"{scale.short_name} [{pct} CI]", ha="right",
                    gid="header-text", **header_kw)  # fmt: skip
    if title:
        left_notes.append(
            ax.text(0.0, title_y, title, ha="left", va="center", fontsize=FONT_SIZE + 1.5,
                    fontweight="bold", clip_on=False, gid="title-text")
        )  # fmt: skip
    h_wt = (
        ax.text(0.0, header_y, "Weight", ha="right", gid="header-text", **header_kw)
        if show_weights
        else None
    )

    # Measure the text (in points) to lay the columns out without overlap.
    fig.draw_without_rendering()
    to_pt = 72.0 / fig.dpi

    def width_pt(ts: Sequence[Text]) -> float:
        return max((t.get_window_extent().width * to_pt for t in ts), default=0.0)

    left_w = width_pt([*left_texts, h_study])
    est_w = width_pt([*est_texts, h_est])
    wt_w = width_pt([*wt_texts, h_wt]) if h_wt is not None else 0.0
    gap = COLUMN_GAP_PT

    def place(t: Text, dx_pt: float, x_axes: float) -> None:
        t.set_transform(
            base + transforms.ScaledTranslation(dx_pt / 72.0, 0.0, fig.dpi_scale_trans)
        )
        t.set_x(x_axes)

    for t in [*left_texts, h_study, *left_notes]:
        place(t, -(left_w + gap), 0.0)
    for t in [*est_texts, h_est]:
        place(t, gap + est_w, 1.0)
    right_w = gap + est_w
    if h_wt is not None:
        for t in [*wt_texts, h_wt]:
            place(t, gap + est_w + gap + wt_w, 1.0)
        right_w += gap + wt_w

    if own_figure:
        # Size the figure so that the columns fit: left column, plot, right column.
        fig.draw_without_rendering()
        note_w = width_pt(left_notes)
        # A note may run under the plot, but not beyond the right column.
        plot_w = max(PLOT_WIDTH_IN * 72.0, note_w - left_w - gap + 6.0 - right_w)
        margin = 10.0
        total_w = margin + left_w + gap + plot_w + right_w + margin
        fig.set_figwidth(total_w / 72.0)
        height_in = float(fig.get_figheight())
        bottom_in = 0.55
        top_in = 0.12
        fig.subplots_adjust(
            left=(margin + left_w + gap) / total_w,
            right=1.0 - (right_w + margin) / total_w,
            bottom=bottom_in / height_in,
            top=1.0 - top_in / height_in,
        )
    return fig
