"""Radial (Galbraith) plots (metafor's ``radial``).

:func:`radial_layout` computes the coordinates (precision against standardized
effect), the line of the pooled estimate with its ±z band, and the values of the
arc on the right that reads slopes as effect sizes; :func:`radial` draws them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.core.inference import z_critical
from alliance_meta.exceptions import ModelSpecificationError
from alliance_meta.models._inputs import check_level
from alliance_meta.models.pooling import PoolResult
from alliance_meta.plot.scale import Scale
from alliance_meta.plot.style import (
    FONT_SIZE,
    fmt_fixed,
    label_axes,
    require_matplotlib,
    root_figure,
)
from alliance_meta.results.base import freeze_arrays

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["RadialLayout", "radial", "radial_layout"]


@attrs.frozen(field_transformer=freeze_arrays)
class RadialLayout:
    """What a radial plot shows.

    Attributes
    ----------
    x : ndarray
        Precision ``1/√(v_i + τ̂²)``.
    y : ndarray
        Standardized effect ``y_i/√(v_i + τ̂²)`` (``(y_i - μ̂)/√(v_i + τ̂²)`` when
        centred).
    labels : tuple of str
        Study labels.
    slope : float
        The pooled estimate (0 when centred): the line ``y = slope · x``.
    ci : (float, float)
        The pooled estimate's confidence bounds (centred like ``slope``).
    zcrit : float
        The band ``y = slope · x ± zcrit`` holds the studies consistent with the
        pooled estimate at the plot's level.
    xlim : (float, float)
        ``(0, 1.3 max x)``, metafor's x range.
    arc_values : ndarray
        The effect sizes marked on the arc (analysis scale, centred like
        ``slope``): ``steps`` values from the smallest to the largest effect.
    arc_labels : tuple of str
        Their labels, on the natural scale unless ``transform=False``.
    center : float
        What was subtracted from the effects (the pooled estimate, or 0).
    level : float
        The level of the band and of the CI.
    """

    x: FloatArray = attrs.field(eq=False)
    y: FloatArray = attrs.field(eq=False)
    labels: tuple[str, ...]
    slope: float
    ci: tuple[float, float]
    zcrit: float
    xlim: tuple[float, float]
    arc_values: FloatArray = attrs.field(eq=False)
    arc_labels: tuple[str, ...]
    center: float
    level: float


def radial_layout(
    fit: PoolResult,
    *,
    center: bool = False,
    level: float | None = None,
    steps: int = 7,
    transform: bool = True,
    digits: int = 2,
) -> RadialLayout:
    """The data of a radial plot of ``fit`` (see :func:`radial`); draws nothing.

    Raises
    ------
    ModelSpecificationError
        For a model with moderators (metafor draws radial plots of models without
        moderators only), or a bad ``level`` or ``steps``.
    """
    if not isinstance(fit, PoolResult):
        raise ModelSpecificationError(
            "radial plots are for models without moderators (a PoolResult), as in metafor"
        )
    lv = fit.level if level is None else check_level(level)
    if steps < 2:
        raise ModelSpecificationError(f"steps must be at least 2, got {steps}")
    yi = np.asarray(fit.yi, dtype=np.float64)
    vi = np.asarray(fit.vi, dtype=np.float64)
    shift = fit.estimate if center else 0.0
    y_c = yi - shift
    sd = np.sqrt(vi + fit.tau2)
    x = 1.0 / sd
    z = y_c / sd
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(z))):
        raise ModelSpecificationError(
            "a radial plot needs v_i + tau^2 > 0 for every study (an infinite precision)"
        )
    arc = np.linspace(float(np.min(y_c)), float(np.max(y_c)), steps)
    scale = Scale(fit.measure, transform)
    arc_lab = tuple(fmt_fixed(float(v), digits) for v in scale.to_plot(arc + shift))
    return RadialLayout(
        x=x,
        y=z,
        labels=tuple(fit.labels),
        slope=fit.estimate - shift,
        ci=(fit.ci.low - shift, fit.ci.high - shift),
        zcrit=z_critical(lv),
        xlim=(0.0, 1.3 * float(np.max(x))),
        arc_values=arc,
        arc_labels=arc_lab,
        center=shift,
        level=lv,
    )


def _arc_points(values: FloatArray, radius: float, asp: float) -> tuple[FloatArray, FloatArray]:
    """Points on the arc of (visual) radius ``radius`` (x units) at slopes ``values``:
    ``x = √(r²/(1 + (b/asp)²))``, ``y = b x`` (metafor's construction, with ``asp``
    the y units per x unit of the axes, so that the arc looks circular)."""
    xs = np.sqrt(radius**2 / (1.0 + (values / asp) ** 2))
    out: tuple[FloatArray, FloatArray] = (xs, xs * values)
    return out


def radial(
    fit: PoolResult,
    *,
    ax: Axes | None = None,
    center: bool = False,
    level: float | None = None,
    steps: int = 7,
    transform: bool = True,
    digits: int = 2,
    title: str | None = None,
) -> Figure:
    """Radial (Galbraith) plot of a pooled result (metafor's ``radial``).

    Parameters
    ----------
    fit : PoolResult
        A fixed- or random-effects result (no moderators).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new 6 x 5 inch figure when omitted.
    center : bool
        Centre the effects on the pooled estimate (the line becomes horizontal).
    level : float, optional
        Level of the ±z band (the fit's level by default).
    steps : int
        Number of effect sizes marked on the arc.
    transform : bool
        Arc labels on the natural scale (r, ratios) or, if False, the analysis scale.
    digits : int
        Decimals of the arc labels.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Study i is at ``(1/√(v_i + τ̂²), y_i/√(v_i + τ̂²))`` (Galbraith, 1988; with τ̂²
    added for a random-effects model, as metafor).  The slope of the line from the
    origin through a study is its effect size, read off the arc on the right; the
    solid line has slope ``μ̂`` and the shaded band ``μ̂ x ± z_{1-α/2}`` holds the
    studies whose effect is consistent with ``μ̂``.  The short arc inside it marks
    the CI of ``μ̂``.  gids: ``"radial-point"`` (one collection, study order),
    ``"radial-line"``, ``"radial-band"``, ``"radial-arc"``, ``"radial-ci-arc"``,
    ``"arc-label"``.

    References
    ----------
    Galbraith, R. F. (1988). Graphical display of estimates having differing
    standard errors. *Technometrics*, 30(3), 271-281.
    """
    require_matplotlib()
    import matplotlib.pyplot as plt

    lay = radial_layout(fit, center=center, level=level, steps=steps, transform=transform,
                        digits=digits)  # fmt: skip
    own = ax is None
    if ax is None:
        ax = plt.figure(figsize=(6.0, 5.0)).add_subplot(1, 1, 1)
    fig = root_figure(ax)
    x0, x1 = lay.xlim
    b, zc = lay.slope, lay.zcrit
    ci_x = x1 + 0.12 * (x1 - x0)  # metafor's positions of the CI arc and the effect arc
    ya_x = x1 + 0.14 * (x1 - x0)
    all_b = np.concatenate([lay.arc_values, [lay.ci[0], lay.ci[1]]])
    ylo = min(-5.0, 1.1 * float(np.min(lay.y)), 1.1 * float(np.min(all_b)) * ya_x,
              -1.1 * zc + x1 * b)  # fmt: skip
    yhi = max(5.0, 1.1 * float(np.max(lay.y)), 1.1 * float(np.max(all_b)) * ya_x,
              1.1 * zc + x1 * b)  # fmt: skip
    ax.set_xlim(x0, x1)
    ax.set_ylim(ylo, yhi)
    ax.fill([0.0, x1, x1, 0.0], [zc, zc + x1 * b, -zc + x1 * b, -zc], color="0.9",
            linewidth=0, zorder=0, gid="radial-band")  # fmt: skip
    ax.plot([0.0, x1], [0.0, x1 * b], color="black", linewidth=1.0, zorder=2,
            gid="radial-line")  # fmt: skip
    for s in (-zc, zc):
        ax.plot([0.0, x1], [s, s + x1 * b], color="black", linestyle=":", linewidth=0.9,
                zorder=2, gid="radial-band-bound")  # fmt: skip
    ax.scatter(lay.x, lay.y, s=16.0, color="black", zorder=4, gid="radial-point")
    # the arcs: their shape depends on the axes' aspect ratio (y units per x unit)
    fig.draw_without_rendering()
    bbox = ax.get_window_extent()
    asp = ((yhi - ylo) / bbox.height) / ((x1 - x0) / bbox.width)
    fine = np.linspace(float(np.min(lay.arc_values)), float(np.max(lay.arc_values)), 100)
    ax_, ay_ = _arc_points(fine, ya_x, asp)
    ax.plot(ax_, ay_, color="black", linewidth=0.9, clip_on=False, gid="radial-arc")
    tick_l = _arc_points(lay.arc_values, ya_x, asp)
    tick_u = _arc_points(lay.arc_values, ya_x + 0.015 * (x1 - x0), asp)
    lab = _arc_points(lay.arc_values, ya_x + 0.02 * (x1 - x0), asp)
    for i in range(lay.arc_values.size):
        ax.plot([tick_l[0][i], tick_u[0][i]], [tick_l[1][i], tick_u[1][i]], color="black",
                linewidth=0.9, clip_on=False, gid="radial-arc-tick")  # fmt: skip
        ax.text(lab[0][i], lab[1][i], " " + lay.arc_labels[i], ha="left", va="center",
                fontsize=FONT_SIZE - 0.5, clip_on=False, gid="arc-label")  # fmt: skip
    ci_fine = np.linspace(lay.ci[0], lay.ci[1], 25)
    cx, cy = _arc_points(ci_fine, ci_x, asp)
    ax.plot(cx, cy, color="black", linewidth=1.4, clip_on=False, gid="radial-ci-arc")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_yticks([-2.0, 0.0, 2.0])
    vlabel = "v_i" if fit.method == "EE" else "v_i + \\tau^2"
    num = "(y_i - \\hat{\\mu})" if center else "y_i"
    label_axes(
        ax,
        xlabel=f"$x_i = 1/\\sqrt{{{vlabel}}}$",
        ylabel=f"$z_i = {num}/\\sqrt{{{vlabel}}}$",
        title=title,
    )
    if own:
        fig.subplots_adjust(left=0.13, right=0.8, bottom=0.12, top=0.93)
    return fig
