"""Bubble plots of a meta-regression (metafor's ``regplot``).

:func:`bubble_layout` computes what is plotted (the studies' moderator values,
effects and point sizes, the fitted line and its confidence and prediction bands)
and :func:`bubble` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError
from alliance_meta.plot._fits import has_intercept, predict_rows, study_weights
from alliance_meta.plot.scale import Scale
from alliance_meta.plot.style import FONT_SIZE, label_axes, require_matplotlib, root_figure
from alliance_meta.results.base import freeze_arrays

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["BubbleLayout", "bubble", "bubble_layout"]

#: Diameter (points) of a bubble of relative size 1 (metafor's ``cex = 1``).
BUBBLE_PT = 6.0


@attrs.frozen(field_transformer=freeze_arrays)
class BubbleLayout:
    """What a bubble plot shows, on the plotted scale.

    Attributes
    ----------
    moderator : str
        The design column on the x axis (its coefficient name).
    x, y : ndarray
        The studies' moderator values and effects (``y`` on the plotted scale).
    size : ndarray
        Relative point sizes (metafor's ``psize``): ``√weight`` mapped linearly onto
        ``plim``; a point's diameter is ``size × BUBBLE_PT`` points.
    weights : ndarray
        The studies' percentage weights.
    fitted : ndarray
        The fitted value at each study's moderator value with the other columns at
        ``at`` (metafor's ``pred`` of ``regplot``), plotted scale.
    grid, pred, ci_low, ci_high, pi_low, pi_high : ndarray
        The fitted line and its confidence and prediction bands over ``grid`` (the
        prediction band is NaN for an equal-effects model, which has none).
    at : mapping of str to float
        The values at which the other design columns are held.
    order : ndarray
        The order in which the points are drawn: larger first, as metafor, so that
        small points stay visible.
    labels : tuple of str
        Study labels.
    scale : Scale
        The effect axis (y).
    level : float
        The level of the intervals.
    """

    moderator: str
    x: FloatArray = attrs.field(eq=False)
    y: FloatArray = attrs.field(eq=False)
    size: FloatArray = attrs.field(eq=False)
    weights: FloatArray = attrs.field(eq=False)
    fitted: FloatArray = attrs.field(eq=False)
    grid: FloatArray = attrs.field(eq=False)
    pred: FloatArray = attrs.field(eq=False)
    ci_low: FloatArray = attrs.field(eq=False)
    ci_high: FloatArray = attrs.field(eq=False)
    pi_low: FloatArray = attrs.field(eq=False)
    pi_high: FloatArray = attrs.field(eq=False)
    at: Mapping[str, float]
    order: FloatArray = attrs.field(eq=False)
    labels: tuple[str, ...]
    scale: Scale
    level: float


def _resolve_column(names: tuple[str, ...], moderator: str | None, intercept: bool) -> int:
    """Position of ``moderator`` among the coefficient names (as metafor's ``mod``:
    an exact name or an unambiguous prefix; the only moderator if not given)."""
    start = 1 if intercept else 0
    candidates = list(range(start, len(names)))
    if moderator is None:
        if len(candidates) == 1:
            return candidates[0]
        raise ModelSpecificationError(
            "the model has several moderator columns; give the one for the x axis: "
            + ", ".join(names[j] for j in candidates)
        )
    if moderator in names[start:]:
        return names.index(moderator, start)
    hits = [j for j in candidates if names[j].startswith(moderator)]
    if len(hits) == 1:
        return hits[0]
    raise InvalidStudyError(
        f"no single design column {moderator!r} in the model; its columns are "
        + ", ".join(names[j] for j in candidates),
        field="moderator",
    )


def _psize(weights: FloatArray, plim: tuple[float, float]) -> FloatArray:
    wi = np.sqrt(weights)
    rng = float(np.max(wi) - np.min(wi))
    if rng <= math.sqrt(np.finfo(np.float64).eps):
        return np.ones_like(wi)
    out: FloatArray = (wi - np.min(wi)) / rng * (plim[1] - plim[0]) + plim[0]
    return out


def bubble_layout(
    fit: Any,
    moderator: str | None = None,
    *,
    at: Mapping[str, float] | None = None,
    transform: bool = True,
    n_points: int = 1000,
    plim: tuple[float, float] = (0.5, 3.0),
) -> BubbleLayout:
    """The data of a bubble plot of ``fit`` (see :func:`bubble`); draws nothing.

    Raises
    ------
    ModelSpecificationError
        For a model without moderator columns, several of them and no
        ``moderator``, or a fit without ``predict``.
    InvalidStudyError
        For a ``moderator`` or a key of ``at`` that is not a design column.
    """
    names = tuple(fit.coef_names)
    X = np.asarray(fit.X, dtype=np.float64)
    intercept = has_intercept(fit)
    if X.shape[1] <= (1 if intercept else 0):
        raise ModelSpecificationError(
            "a bubble plot needs a model with a moderator (this one is intercept-only)"
        )
    j = _resolve_column(names, moderator, intercept)
    base = X.mean(axis=0)  # metafor: the other columns at their means
    for key, value in (at or {}).items():
        if key not in names or (intercept and key == names[0]):
            raise InvalidStudyError(
                f"at: {key!r} is not a moderator column of the model ({', '.join(names)})",
                field="at",
            )
        if key == names[j]:
            raise InvalidStudyError(
                f"at: {key!r} is the column on the x axis", field="at"
            )
        base[names.index(key)] = float(value)
    if n_points < 2:
        raise ModelSpecificationError(f"n_points must be at least 2, got {n_points}")
    if not plim[0] < plim[1]:
        raise ModelSpecificationError(f"plim must be increasing, got {plim!r}")
    xi = X[:, j]
    rng = float(np.max(xi) - np.min(xi))
    grid = np.linspace(np.min(xi) - 0.04 * rng, np.max(xi) + 0.04 * rng, n_points)

    def rows_at(values: FloatArray) -> FloatArray:
        R = np.repeat(base[None, :], values.size, axis=0)
        R[:, j] = values
        return R

    band = predict_rows(fit, rows_at(grid))
    at_studies = predict_rows(fit, rows_at(xi))
    if getattr(fit, "method", None) == "EE":  # no heterogeneity: metafor has no PI
        nan = np.full(grid.shape, np.nan)
        band = band._replace(pi_low=nan, pi_high=nan)
    scale = Scale(fit.measure, transform)
    weights = study_weights(fit)
    size = _psize(weights, plim)
    tp = scale.to_plot
    return BubbleLayout(
        moderator=names[j],
        x=xi,
        y=tp(fit.yi),
        size=size,
        weights=weights,
        fitted=tp(at_studies.pred),
        grid=grid,
        pred=tp(band.pred),
        ci_low=tp(band.ci_low),
        ci_high=tp(band.ci_high),
        pi_low=tp(band.pi_low),
        pi_high=tp(band.pi_high),
        at={
            names[c]: float(base[c])
            for c in range(len(names))
            if c != j and not (intercept and c == 0)
        },
        order=np.argsort(-size, kind="stable").astype(np.float64),
        labels=tuple(fit.labels),
        scale=scale,
        level=float(fit.level),
    )


def bubble(
    fit: Any,
    moderator: str | None = None,
    *,
    ax: Axes | None = None,
    at: Mapping[str, float] | None = None,
    transform: bool = True,
    show_ci: bool = True,
    show_pi: bool = True,
    labels: bool = False,
    legend: bool = True,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    n_points: int = 1000,
    plim: tuple[float, float] = (0.5, 3.0),
) -> Figure:
    """Bubble plot of a meta-regression: effects against one moderator, with the
    fitted line and its confidence and prediction bands (metafor's ``regplot``).

    Parameters
    ----------
    fit : MetaRegressionResult or another fit with ``predict``
        A fitted model with at least one moderator column: a meta-regression, or any
        fit of the fitted-model protocol with ``predict(new_moderators)`` giving
        CI and PI (a multilevel model).
    moderator : str, optional
        The design column on the x axis, by its coefficient name (``"ablat"``) or
        an unambiguous prefix of it; needed when the model has several.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new 6 x 4.5 inch figure when omitted.
    at : mapping of str to float, optional
        Values of the other design columns; by default their means over the
        studies (metafor's choice), so the line is the prediction for an "average"
        study.
    transform : bool
        Effects on the natural scale (r, ratios on a log axis) or, if False, on the
        analysis scale.
    show_ci, show_pi : bool
        Draw the confidence band (shaded, dashed bounds) and the prediction band
        (lighter, dotted bounds).
    labels : bool
        Write each study's label next to its point.
    legend : bool
        Add a legend for the line and bands.
    title, xlabel, ylabel : str, optional
        Title and axis labels (by default the moderator's name and the measure's).
    n_points : int
        Points of the fitted line and bands.
    plim : (float, float)
        Smallest and largest relative point size (metafor's ``plim``).

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    As metafor's ``regplot``: the points have a diameter proportional to
    ``plim[0] + (plim[1] - plim[0]) (√w_i - min √w) / (max √w - min √w)`` with
    ``w_i`` the percentage weights (all 1 when the weights are equal); the line is
    ``x'β̂`` over the moderator's range widened by 4% on each side, with the other
    columns of ``x`` at ``at`` (their means), and the bands are ``predict``'s CI
    ``x'β̂ ± c SE`` and PI ``x'β̂ ± c √(SE² + τ²)``.  gids: ``"bubble-point"`` (one
    collection, points in ``layout.order``), ``"fitted-line"``, ``"ci-band"``,
    ``"ci-bound"``, ``"pi-band"``, ``"pi-bound"``.

    Examples
    --------
    >>> import alliance_meta as am
    >>> from alliance_meta.plot import bubble, bubble_layout
    >>> fit = am.meta_regression(am.datasets.load_bcg().studies(), moderators=["ablat"])
    >>> bubble_layout(fit).moderator
    'ablat'
    >>> fig = bubble(fit)  # doctest: +SKIP
    """
    require_matplotlib()
    import matplotlib.pyplot as plt

    lay = bubble_layout(fit, moderator, at=at, transform=transform, n_points=n_points,
                        plim=plim)  # fmt: skip
    own = ax is None
    if ax is None:
        ax = plt.figure(figsize=(6.0, 4.5)).add_subplot(1, 1, 1)
    fig = root_figure(ax)
    scale = lay.scale
    ys = [lay.y, lay.pred]
    show_pi = show_pi and bool(np.all(np.isfinite(lay.pi_low)))
    if show_pi:
        ys += [lay.pi_low, lay.pi_high]
    if show_ci:
        ys += [lay.ci_low, lay.ci_high]
    yall = np.concatenate(ys)
    yall = yall[np.isfinite(yall)]
    scale.configure(ax, float(np.min(yall)), float(np.max(yall)), axis="y")
    ax.set_xlim(float(lay.grid[0]), float(lay.grid[-1]))
    pct = f"{100 * lay.level:g}%"
    if show_pi:
        ax.fill_between(lay.grid, lay.pi_low, lay.pi_high, color="0.93", linewidth=0,
                        zorder=1, gid="pi-band", label=f"{pct} prediction interval")  # fmt: skip
        for b in (lay.pi_low, lay.pi_high):
            ax.plot(lay.grid, b, color="0.25", linestyle=":", linewidth=1.0, zorder=2,
                    gid="pi-bound")  # fmt: skip
    if show_ci:
        ax.fill_between(lay.grid, lay.ci_low, lay.ci_high, color="0.8", linewidth=0,
                        zorder=1.5, gid="ci-band", label=f"{pct} confidence interval")  # fmt: skip
        for b in (lay.ci_low, lay.ci_high):
            ax.plot(lay.grid, b, color="0.15", linestyle="--", linewidth=0.9, zorder=2,
                    gid="ci-bound")  # fmt: skip
    ax.plot(lay.grid, lay.pred, color="black", linewidth=2.2, zorder=3, gid="fitted-line",
            label="Fitted line")  # fmt: skip
    order = lay.order.astype(np.intp)
    ax.scatter(lay.x[order], lay.y[order], s=(BUBBLE_PT * lay.size[order]) ** 2,
               facecolor="0.55", edgecolor="black", linewidth=0.8, alpha=0.9, zorder=4,
               gid="bubble-point")  # fmt: skip
    if labels:
        for xv, yv, lab, sz in zip(lay.x, lay.y, lay.labels, lay.size, strict=True):
            ax.annotate(lab, (xv, yv), xytext=(0.0, BUBBLE_PT * sz / 2 + 2.0),
                        textcoords="offset points", ha="center", va="bottom",
                        fontsize=FONT_SIZE - 1.5, gid="point-label")  # fmt: skip
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    label_axes(
        ax,
        xlabel=xlabel if xlabel is not None else lay.moderator,
        ylabel=ylabel if ylabel is not None else scale.axis_label,
        title=title,
    )
    if legend:
        ax.legend(fontsize=FONT_SIZE - 1, frameon=False, loc="best")
    if own:
        fig.tight_layout()
    return fig
