"""Forest and funnel plots (the optional ``plot`` extra: ``pip install 'alliance_meta[plot]'``).

This module is not imported by ``import alliance_meta``; matplotlib is imported only
when a plotting function is called, so the core library works without it.

Both functions return the matplotlib :class:`~matplotlib.figure.Figure` and accept an
``ax`` to draw into, so they compose into larger figures.  Every drawn element carries a
gid (:meth:`matplotlib.artist.Artist.get_gid`) so that it can be found again:

=========================  ============================================================
gid                        element
=========================  ============================================================
``"study-row"``            a study's square (forest) — one per study
``"study-ci"``             a study's confidence-interval whisker (forest)
``"study-label"``          a study's label in the left column (forest)
``"estimate-text"``        a row's "estimate [CI]" text in the right column (forest)
``"weight-text"``          a study's weight (%) in the right column (forest)
``"diamond-overall"``      the pooled estimate's diamond (forest)
``"diamond-subgroup"``     a subgroup's diamond (forest, subgroup results)
``"prediction-interval"``  the prediction-interval bar (forest)
``"null-line"``            the vertical reference line at the null (forest and funnel)
``"study-point"``          an observed study (funnel)
``"filled-study"``         a study imputed by trim-and-fill (funnel)
``"funnel-triangle"``      the pseudo-confidence region around the estimate (funnel)
``"contour-<p>"``          a significance contour region, e.g. ``"contour-0.05"`` (funnel)
=========================  ============================================================

Scales
------
With ``transform=True`` (the default) values are plotted on the **natural scale** —
correlations for Fisher's z (``ZCOR``), ratios for log ratios (``OR``, ``RR``,
``ROM``) — on an axis whose *spacing* is the analysis scale: a
``"function"``             scale with ``atanh``/``tanh`` for ``ZCOR`` and a ``"log"`` scale for
log ratios.  Confidence intervals that are symmetric on the analysis scale therefore
look symmetric, while data and tick labels are in r or in ratios.  With
``transform=False`` the analysis-scale values are plotted on a linear axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
from scipy import stats

from alliance_meta._bias import TrimAndFillResult
from alliance_meta._pooling import PoolResult, random_effects
from alliance_meta._subgroup import SubgroupResult
from alliance_meta._types import FloatArray
from alliance_meta.data.measures import back_transform

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

__all__ = ["forest", "funnel"]

_INSTALL_HINT = "pip install 'alliance_meta[plot]'"

_LOG_MEASURES = frozenset({"OR", "RR", "ROM"})

_AXIS_NAMES: dict[str, str] = {
    "ZCOR": "Correlation (r)",
    "COR": "Correlation (r)",
    "UCOR": "Correlation (r)",
    "OR": "Odds ratio (log scale)",
    "RR": "Risk ratio (log scale)",
    "ROM": "Ratio of means (log scale)",
    "SMD": "Standardized mean difference (Hedges' g)",
    "SMDH": "Standardized mean difference (heteroscedastic)",
    "MD": "Mean difference",
    "RD": "Risk difference",
    "GEN": "Effect size",
}

_ANALYSIS_NAMES: dict[str, str] = {
    "ZCOR": "Fisher's z",
    "OR": "Log odds ratio",
    "RR": "Log risk ratio",
    "ROM": "Log ratio of means",
}

_SHORT_NAMES: dict[str, str] = {
    "ZCOR": "r",
    "COR": "r",
    "UCOR": "r",
    "OR": "OR",
    "RR": "RR",
    "ROM": "ROM",
    "SMD": "g",
    "SMDH": "SMD",
    "MD": "MD",
    "RD": "RD",
    "GEN": "Estimate",
}

# Typography and geometry (points and inches); chosen to resemble journal figures.
_FONT_SIZE = 9.0
_ROW_HEIGHT_IN = 0.24
_PLOT_WIDTH_IN = 3.6
_COLUMN_GAP_PT = 14.0
_MAX_SQUARE_PT = 11.0
_MIN_SQUARE_PT = 3.0
_DIAMOND_HALF_HEIGHT = 0.36


def _require_matplotlib() -> None:
    """Import matplotlib or raise an ImportError that names the ``plot`` extra."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "alliance_meta.plot needs matplotlib, which is the optional 'plot' extra: "
            f"{_INSTALL_HINT}"
        ) from exc


# ---------------------------------------------------------------------------
# Scales
# ---------------------------------------------------------------------------


@attrs.frozen
class _Scale:
    """How analysis-scale values are mapped to, and shown on, the x axis."""

    measure: str
    transform: bool

    @property
    def kind(self) -> str:
        """``"r"`` (tanh/atanh function scale), ``"log"`` or ``"linear"``."""
        if not self.transform:
            return "linear"
        if self.measure == "ZCOR":
            return "r"
        if self.measure in _LOG_MEASURES:
            return "log"
        return "linear"

    def to_plot(self, x: Any) -> FloatArray:
        """Map analysis-scale values to plotted (data) values."""
        arr = np.asarray(x, dtype=np.float64)
        if self.kind == "linear":
            return arr
        out: FloatArray = np.asarray(back_transform(arr, self.measure), dtype=np.float64)
        return out

    def to_plot_scalar(self, x: float) -> float:
        """:meth:`to_plot` for one value."""
        return float(self.to_plot(np.array([x]))[0])

    def row_values(self, row: _Row) -> tuple[float, float, float]:
        """A row's ``(estimate, low, high)`` on the plotted scale."""
        x, lo, hi = (float(v) for v in self.to_plot(np.array([row.yi, row.lo, row.hi])))
        return x, lo, hi

    @property
    def null(self) -> float:
        """The null value on the plotted scale (1 for ratios, else 0)."""
        return 1.0 if self.kind == "log" else 0.0

    @property
    def axis_label(self) -> str:
        """Default x-axis label."""
        if self.transform or self.measure not in _ANALYSIS_NAMES:
            return _AXIS_NAMES.get(self.measure, self.measure)
        return _ANALYSIS_NAMES[self.measure]

    @property
    def short_name(self) -> str:
        """Short name for the estimate column header."""
        if not self.transform and self.measure in _ANALYSIS_NAMES:
            return {"ZCOR": "z"}.get(self.measure, "log " + self.measure)
        return _SHORT_NAMES.get(self.measure, self.measure)

    def configure(self, ax: Axes, lo: float, hi: float, exact: bool = False) -> None:
        """Set the axis scale, limits and natural-scale ticks for plotted range [lo, hi]
        (padded by 4 % of the range unless ``exact``)."""
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        kind = self.kind
        frac = 0.0 if exact else 0.04
        if kind == "r":
            ax.set_xscale("function", functions=(_atanh_clipped, np.tanh))
            zlo, zhi = math.atanh(lo), math.atanh(hi)
            pad = frac * (zhi - zlo)
            ax.set_xlim(math.tanh(zlo - pad), math.tanh(zhi + pad))
            ax.xaxis.set_major_locator(FixedLocator(_nice_ticks(lo, hi, bounded=True)))
            ax.xaxis.set_major_formatter(FuncFormatter(_fmt_tick))
        elif kind == "log":
            ax.set_xscale("log")
            llo, lhi = math.log(lo), math.log(hi)
            pad = frac * (lhi - llo)
            ax.set_xlim(math.exp(llo - pad), math.exp(lhi + pad))
            ax.xaxis.set_major_locator(FixedLocator(_ratio_ticks(lo, hi)))
            ax.xaxis.set_major_formatter(FuncFormatter(_fmt_tick))
            ax.xaxis.set_minor_locator(NullLocator())
        else:
            pad = frac * (hi - lo)
            ax.set_xlim(lo - pad, hi + pad)
            ax.xaxis.set_major_locator(FixedLocator(_nice_ticks(lo, hi, bounded=False)))
            ax.xaxis.set_major_formatter(FuncFormatter(_fmt_tick))

    def format_value(self, x: float, digits: int) -> str:
        """Format a plotted value for the text column (with a true minus sign)."""
        return _minus(f"{x:.{digits}f}")


def _root_figure(ax: Axes) -> Figure:
    """The top-level Figure holding ``ax`` (also when ``ax`` is in a SubFigure)."""
    from matplotlib.figure import Figure

    fig: Any = ax.figure
    while not isinstance(fig, Figure):
        fig = fig.figure
    return fig


def _atanh_clipped(x: Any) -> Any:
    """``atanh`` for the function scale, clipped inside (-1, 1) so that it stays finite."""
    return np.arctanh(np.clip(x, -0.999999, 0.999999))


def _minus(s: str) -> str:
    return s.replace("-", "\u2212")


def _fmt_tick(x: float, _pos: object = None) -> str:
    """Tick label: shortest clean decimal, true minus sign, no ``-0``."""
    if abs(x) < 1e-12:
        return "0"
    s = f"{x:.3f}".rstrip("0").rstrip(".")
    return _minus(s)


def _nice_ticks(lo: float, hi: float, *, bounded: bool) -> list[float]:
    """Round tick values covering [lo, hi]: 4-7 ticks at a 1/2/2.5/5 x 10^k step."""
    span = max(hi - lo, 1e-12)
    raw = span / 5.0
    mag = 10.0 ** math.floor(math.log10(raw))
    step = mag
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = m * mag
        if span / step <= 6.0:
            break
    first = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    t = first
    while t <= hi + 1e-9 * step:
        val = round(t, 10)
        if not bounded or abs(val) < 1.0:
            ticks.append(0.0 if abs(val) < 1e-12 else val)
        t += step
    return ticks


def _ratio_ticks(lo: float, hi: float) -> list[float]:
    """Ratio ticks (0.1, 0.25, 0.5, 1, 2, 4, ...) inside [lo, hi], always with a few."""
    fine = [0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 20.0, 50.0, 100.0]
    coarse = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
    inside = [c for c in fine if lo <= c <= hi]
    if len(inside) > 8 or lo < fine[0] or hi > fine[-1]:
        inside = [c for c in coarse if lo <= c <= hi]
    if len(inside) < 3:
        inside = [float(f"{c:.2g}") for c in (lo, 1.0, hi) if lo <= c <= hi]
    return sorted(set(inside))


def _auto_digits(values: Sequence[float]) -> int:
    """Decimals for the text column: 2, or 3 when the values are all small."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    if finite and max(finite) < 0.1:
        return 3
    return 2


# ---------------------------------------------------------------------------
# Forest plot
# ---------------------------------------------------------------------------


@attrs.frozen
class _Row:
    """One row of the forest plot (y decreases downwards)."""

    kind: str  # "study", "header", "group-diamond", "overall", "pi", "note", "blank"
    label: str = ""
    yi: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    weight: float = math.nan
    text: str = ""


def _study_ci(yi: FloatArray, vi: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    crit = float(stats.norm.ppf(1.0 - (1.0 - level) / 2.0))
    se = np.sqrt(vi)
    return yi - crit * se, yi + crit * se


def _pvalue_text(p: float) -> str:
    if p < 0.001:
        return "p < .001"
    return "p = " + f"{p:.3f}".lstrip("0")


def _heterogeneity_text(res: PoolResult) -> str:
    tau2 = f"{res.tau2:.3f}" if res.tau2 >= 0.001 or res.tau2 == 0 else f"{res.tau2:.2g}"
    return (
        f"Heterogeneity: \u03c4\u00b2 = {tau2}, I\u00b2 = {res.I2:.0f}%, "
        f"Q({res.Q_df}) = {res.Q:.2f}, {_minus(_pvalue_text(res.Q_pvalue))}"
    )


def _model_name(res: PoolResult) -> str:
    if res.method == "EE":
        return "Equal-effects model"
    return f"Random-effects model ({res.method})"


def _overall_of(result: SubgroupResult) -> PoolResult:
    """The overall pooled result of a subgroup analysis: all studies re-pooled."""
    parts = list(result.groups.values())
    first = parts[0]
    yi = np.concatenate([p.yi for p in parts])
    vi = np.concatenate([p.vi for p in parts])
    return random_effects(
        yi=yi,
        vi=vi,
        measure=first.measure,  # type: ignore[arg-type]
        method=first.method,  # type: ignore[arg-type]
        test=first.test,  # type: ignore[arg-type]
        level=first.level,
    )


def _subgroup_test_text(result: SubgroupResult) -> str:
    q, df, p = result.Q_between, result.Q_between_df, result.Q_between_pvalue
    if result.Q_between_df2 is not None:  # F test under a common tau^2 with t-type tests
        stat = f"F({df}, {result.Q_between_df2}) = {q:.2f}"
    else:
        stat = f"Q({df}) = {q:.2f}"
    return f"Test for subgroup differences: {stat}, {_minus(_pvalue_text(p))}"


def _ci_text(scale: _Scale, est: float, lo: float, hi: float, digits: int) -> str:
    f = scale.format_value
    return f"{f(est, digits)} [{f(lo, digits)}, {f(hi, digits)}]"


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
        The overall result is ``result.overall`` when present, otherwise all studies
        are re-pooled with the subgroups' method.
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
    _require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib import transforms
    from matplotlib.patches import Polygon

    is_subgroup = isinstance(result, SubgroupResult)
    if isinstance(result, SubgroupResult):
        sub = result
        if not sub.groups:
            raise ValueError("the subgroup result has no groups")
        overall = _overall_of(sub)
        blocks: list[tuple[str | None, PoolResult]] = [
            (str(name), res) for name, res in sub.groups.items()
        ]
    else:
        overall = result
        blocks = [(None, result)]

    scale = _Scale(overall.measure, transform)
    level = overall.level
    n_studies = sum(res.k for _, res in blocks)
    if labels is not None and len(labels) != n_studies:
        raise ValueError(f"labels has {len(labels)} entries but there are {n_studies} studies")

    # ---- rows ---------------------------------------------------------------
    rows: list[_Row] = []
    all_vals: list[float] = []
    label_iter = iter(labels) if labels is not None else None
    for name, res in blocks:
        if name is not None:
            head = f"{subgroup_title}: {name}" if subgroup_title else str(name)
            rows.append(_Row("header", label=head))
        ci_lo, ci_hi = _study_ci(res.yi, res.vi, level)
        # Overall weights for a subgroup display are the within-subgroup weights,
        # as in metafor's and RevMan's subgroup forest plots.
        w = res.weights
        for i in range(res.k):
            lab = next(label_iter) if label_iter is not None else res.labels[i]
            rows.append(
                _Row("study", label=str(lab), yi=float(res.yi[i]), lo=float(ci_lo[i]),
                     hi=float(ci_hi[i]), weight=float(w[i]))
            )  # fmt: skip
        if name is not None:
            rows.append(
                _Row("group-diamond", label=f"Subtotal ({res.method}, k = {res.k})",
                     yi=res.estimate, lo=res.ci.low, hi=res.ci.high)
            )  # fmt: skip
            if show_heterogeneity and res.k > 1:
                rows.append(_Row("note", text=_heterogeneity_text(res)))
            rows.append(_Row("blank"))
    if not is_subgroup:
        rows.append(_Row("blank"))
    rows.append(
        _Row("overall", label=_model_name(overall) if not is_subgroup else
             f"Overall, {_model_name(overall)[0].lower()}{_model_name(overall)[1:]}",
             yi=overall.estimate, lo=overall.ci.low, hi=overall.ci.high)
    )  # fmt: skip
    has_pi = show_pi and overall.method != "EE"
    if has_pi:
        rows.append(
            _Row("pi", label="Prediction interval", yi=overall.estimate, lo=overall.pi.low,
                 hi=overall.pi.high)
        )  # fmt: skip
    if show_heterogeneity:
        rows.append(_Row("note", text=_heterogeneity_text(overall)))
    if isinstance(result, SubgroupResult):
        rows.append(_Row("note", text=_subgroup_test_text(result)))

    for r in rows:
        if r.kind in ("study", "group-diamond", "overall", "pi"):
            all_vals.extend([r.lo, r.hi, r.yi])
    if digits is None:
        digits = _auto_digits([float(v) for v in scale.to_plot(np.array(all_vals))])

    n_rows = len(rows)
    ys = [float(n_rows - i) for i in range(n_rows)]  # top row at y = n_rows
    header_y = n_rows + 1.3

    # ---- figure and axes ----------------------------------------------------
    own_figure = ax is None
    if ax is None:
        height = _ROW_HEIGHT_IN * (n_rows + 2.0 + (1.5 if title else 0.0)) + 0.75
        fig_new = plt.figure(figsize=(9.0, height))
        ax = fig_new.add_subplot(1, 1, 1)
    fig = _root_figure(ax)

    if xlim is not None:
        x_lo, x_hi = (float(x) for x in xlim)
        bad = not (x_lo < x_hi) or (scale.kind == "log" and x_lo <= 0) or (
            scale.kind == "r" and not -1.0 < x_lo < x_hi < 1.0
        )
        if bad:
            raise ValueError(f"xlim {xlim!r} is not an increasing range on the plotted scale")
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
            size = max(_MIN_SQUARE_PT, _MAX_SQUARE_PT * math.sqrt(r.weight / w_max))
            ax.plot([x], [y], marker="s", markersize=size, color=color, linestyle="none",
                    zorder=3, gid="study-row")  # fmt: skip
        elif r.kind in ("group-diamond", "overall"):
            x, lo, hi = (min(max(v, x_lo), x_hi) for v in scale.row_values(r))
            poly = Polygon(
                [(lo, y), (x, y + _DIAMOND_HALF_HEIGHT), (hi, y), (x, y - _DIAMOND_HALF_HEIGHT)],
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
    ax.tick_params(axis="x", labelsize=_FONT_SIZE, width=0.8, length=3.5)
    ax.set_xlabel(xlabel if xlabel is not None else scale.axis_label, fontsize=_FONT_SIZE)

    # ---- text columns -------------------------------------------------------
    base = transforms.blended_transform_factory(ax.transAxes, ax.transData)
    left_texts: list[Text] = []
    left_notes: list[Text] = []
    est_texts: list[Text] = []
    wt_texts: list[Text] = []
    kw: dict[str, Any] = {"fontsize": _FONT_SIZE, "va": "center", "clip_on": False}
    for r, y in zip(rows, ys, strict=True):
        if r.kind == "blank":
            continue
        if r.kind == "note":
            t = ax.text(0.0, y, r.text, ha="left", fontsize=_FONT_SIZE - 1, va="center",
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
            ax.text(0.0, title_y, title, ha="left", va="center", fontsize=_FONT_SIZE + 1.5,
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
    gap = _COLUMN_GAP_PT

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
        plot_w = max(_PLOT_WIDTH_IN * 72.0, note_w - left_w - gap + 6.0 - right_w)
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


# ---------------------------------------------------------------------------
# Funnel plot
# ---------------------------------------------------------------------------


def _filled_data(tf: TrimAndFillResult) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """``(yi_obs, vi_obs, yi_filled, vi_filled)`` from a trim-and-fill result."""
    yi = np.asarray(tf.yi, dtype=np.float64)
    vi = np.asarray(tf.vi, dtype=np.float64)
    mask = np.asarray(tf.filled, dtype=np.bool_)
    return yi[~mask], vi[~mask], yi[mask], vi[mask]


def funnel(
    result: PoolResult | SubgroupResult,
    *,
    ax: Axes | None = None,
    contours: bool | Sequence[float] = False,
    trim_and_fill: TrimAndFillResult | None = None,
    transform: bool = True,
    level: float = 0.95,
    title: str | None = None,
    xlabel: str | None = None,
    legend: bool = True,
) -> Figure:
    """Draw a funnel plot: effect sizes against their standard errors.

    Parameters
    ----------
    result : PoolResult or SubgroupResult
        The pooled result; for a subgroup analysis each subgroup's studies get
        their own colour (gid ``"study-point"``, legend entry with the subgroup's
        name) and their own pseudo-confidence triangle around the subgroup's
        estimate (gid ``"funnel-triangle"``, in subgroup order).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new 5.5 x 4.5 inch figure when omitted.
    contours : bool or sequence of float
        False (default) for a plain funnel; True for a contour-enhanced funnel
        (Peters et al., 2008) shading the regions where a study's two-sided test of
        zero has p > .10, .10-.05, .05-.01 and < .01; or the p-value levels to use,
        e.g. ``(0.10, 0.05, 0.01)``.
    trim_and_fill : TrimFillResult, optional
        A result of :func:`alliance_meta.trim_and_fill`: its imputed studies are
        added as open markers (gid ``"filled-study"``), and the funnel is centred on
        its adjusted estimate ``trim_and_fill.result.estimate``.
    transform : bool
        Natural-scale axis (r, ratios) as in :func:`forest`, or the analysis scale.
    level : float
        Level of the pseudo-confidence region around the estimate
        (``estimate ± z_{1-α/2} · SE``).
    title, xlabel : str, optional
        Axes title and x-axis label.
    legend : bool
        Add a legend (contours and filled studies only).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib (the ``plot`` extra) is not installed.

    Notes
    -----
    The y axis is the standard error ``√v_i``, inverted so that the most precise
    studies are at the top, as in metafor's ``funnel``.  The pseudo-confidence
    triangle is centred on the pooled estimate (one per subgroup, on its own
    estimate, for a subgroup analysis: asymmetry is judged within each subgroup);
    significance contours are centred on zero (on the analysis scale).
    """
    _require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    scale = _Scale(result.measure, transform)
    # one series (label, yi, vi, centre, colour) per subgroup, or one for the result
    series: list[tuple[str | None, FloatArray, FloatArray, float, Any]]
    if isinstance(result, SubgroupResult):
        if trim_and_fill is not None:
            raise ValueError("trim_and_fill needs a PoolResult, not a SubgroupResult")
        palette = plt.get_cmap("tab10")
        series = [(name, part.yi, part.vi, part.estimate, palette(i % 10))
                  for i, (name, part) in enumerate(result.groups.items())]  # fmt: skip
    else:
        center = result.estimate if trim_and_fill is None else trim_and_fill.result.estimate
        series = [(None, result.yi, result.vi, center, "black")]
    if trim_and_fill is not None:
        _, _, yf, vf = _filled_data(trim_and_fill)
    else:
        yf = vf = np.empty(0)
    yo = np.concatenate([sr[1] for sr in series])
    se_o, se_f = np.sqrt(np.concatenate([sr[2] for sr in series])), np.sqrt(vf)
    se_max = float(max(np.max(se_o), np.max(se_f) if se_f.size else 0.0)) * 1.05
    crit = float(stats.norm.ppf(1.0 - (1.0 - level) / 2.0))
    centers = [float(sr[3]) for sr in series]

    if contours is True:
        levels: tuple[float, ...] = (0.10, 0.05, 0.01)
    elif contours is False:
        levels = ()
    else:
        levels = tuple(sorted((float(p) for p in contours), reverse=True))
        if any(not 0.0 < p < 1.0 for p in levels):
            raise ValueError(f"contour levels must lie in (0, 1), got {contours!r}")

    own_figure = ax is None
    if ax is None:
        wide = legend and (bool(levels) or trim_and_fill is not None or len(series) > 1)
        fig_new = plt.figure(figsize=(7.2 if wide else 5.5, 4.5))
        ax = fig_new.add_subplot(1, 1, 1)
    fig = _root_figure(ax)

    # x range (analysis scale): points, triangle and contours at se_max
    half = crit * se_max
    xs = [float(np.min(yo)), float(np.max(yo)), min(centers) - half, max(centers) + half, 0.0]
    if yf.size:
        xs += [float(np.min(yf)), float(np.max(yf))]
    if levels:
        zmax = float(stats.norm.ppf(1.0 - min(levels) / 2.0))
        xs += [-zmax * se_max * 1.15, zmax * se_max * 1.15]
    a_lo, a_hi = min(xs), max(xs)
    if scale.kind == "r":  # keep the analysis-scale range inside the bounds of r
        a_lo, a_hi = max(a_lo, -5.0), min(a_hi, 5.0)
    p_lo, p_hi = scale.to_plot_scalar(a_lo), scale.to_plot_scalar(a_hi)
    scale.configure(ax, p_lo, p_hi)
    ax.set_ylim(se_max, 0.0)  # inverted: precise studies on top
    handles: list[Any] = []

    se_grid = np.linspace(0.0, se_max, 200)
    if levels:
        shades = ["white", "0.62", "0.80", "0.90", "0.95"]
        x0, x1 = ax.get_xlim()
        ax.set_facecolor("0.90" if len(levels) == 3 else "0.95")
        bg = ax.get_facecolor()
        handles.append(Patch(facecolor=bg, edgecolor="0.5", linewidth=0.5,
                             label=f"p < {_fmt_p(levels[-1])}"))  # fmt: skip
        # widest region (smallest p) first, so narrower regions are drawn on top
        for i, p in enumerate(reversed(levels)):
            z = float(stats.norm.ppf(1.0 - p / 2.0))
            shade = shades[len(levels) - 1 - i]
            lo_c, hi_c = scale.to_plot(-z * se_grid), scale.to_plot(z * se_grid)
            poly = ax.fill_betweenx(se_grid, lo_c, hi_c, facecolor=shade, edgecolor="none",
                                    zorder=0.5)  # fmt: skip
            poly.set_gid(f"contour-{p:g}")
            nxt = levels[len(levels) - 2 - i] if i < len(levels) - 1 else None
            lab = f"{_fmt_p(p)} < p < {_fmt_p(nxt)}" if nxt is not None else f"p > {_fmt_p(p)}"
            handles.append(Patch(facecolor=shade, edgecolor="0.5", linewidth=0.5, label=lab))
        ax.set_xlim(x0, x1)
        handles = [handles[0], *handles[1:]]

    if not levels:
        ax.plot([scale.null, scale.null], [se_max, 0.0], color="0.6", linewidth=0.7,
                linestyle=":", zorder=1, gid="null-line")  # fmt: skip
    for name, yi_g, vi_g, center, color in series:
        line_color = "0.2" if name is None else color
        # pseudo-confidence triangle around the (adjusted or subgroup's) estimate
        tri_x = scale.to_plot(np.array([center - half, center, center + half]))
        ax.plot(tri_x, [se_max, 0.0, se_max], color=line_color, linestyle=(0, (4, 3)),
                linewidth=0.9, zorder=2, gid="funnel-triangle")  # fmt: skip
        c_plot = scale.to_plot_scalar(center)
        ax.plot([c_plot, c_plot], [se_max, 0.0], color=line_color, linewidth=0.9, zorder=2,
                gid="estimate-line")  # fmt: skip
        for x, s in zip(scale.to_plot(yi_g), np.sqrt(vi_g), strict=True):
            ax.plot([x], [s], marker="o", markersize=5.5, markerfacecolor=color,
                    markeredgecolor=color, linestyle="none", zorder=4,
                    gid="study-point")  # fmt: skip
        if name is not None:
            handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor=color,
                                  markeredgecolor=color,
                                  label=f"{name} (k = {yi_g.size})"))  # fmt: skip
    for x, s in zip(scale.to_plot(yf), se_f, strict=True):
        ax.plot([x], [s], marker="o", markersize=5.5, markerfacecolor="white",
                markeredgecolor="black", markeredgewidth=1.0, linestyle="none", zorder=4,
                gid="filled-study")  # fmt: skip
    if yf.size:
        handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="black",
                              markeredgecolor="black", label="Observed studies"))  # fmt: skip
        handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="white",
                              markeredgecolor="black",
                              label=f"Imputed by trim-and-fill (k0 = {trim_and_fill.k0})"
                              if trim_and_fill is not None else "Imputed"))  # fmt: skip

    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=_FONT_SIZE)
    ax.set_xlabel(xlabel if xlabel is not None else scale.axis_label, fontsize=_FONT_SIZE)
    ax.set_ylabel("Standard error", fontsize=_FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=_FONT_SIZE + 1.5, fontweight="bold", loc="left")
    if legend and handles:
        # outside the axes, so that it never hides a study
        ax.legend(handles=handles, fontsize=_FONT_SIZE - 1, frameon=False, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # fmt: skip
    if own_figure:
        fig.tight_layout()
    return fig


def _fmt_p(p: float | None) -> str:
    """APA-style p without the leading zero: ``.10``, ``.05``, ``.001``."""
    if p is None:
        return ""
    s = f"{p:.2f}" if round(p, 2) == p else f"{p:g}"
    return s.lstrip("0") or "0"

