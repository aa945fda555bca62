"""Funnel plots, with trim-and-fill studies and significance contours."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.core.inference import z_critical
from alliance_meta.diagnostics.bias import TrimAndFillResult
from alliance_meta.diagnostics.pet_peese import PetPeeseResult
from alliance_meta.diagnostics.pet_peese import pet_peese as _fit_pet_peese
from alliance_meta.diagnostics.selection import (
    SelectionModelResult,
    SelectionType,
    selection_model,
)
from alliance_meta.exceptions import ModelSpecificationError
from alliance_meta.models.metareg import MetaRegressionResult
from alliance_meta.models.multilevel import MultilevelResult
from alliance_meta.models.pooling import PoolResult
from alliance_meta.models.subgroup import SubgroupResult
from alliance_meta.plot.scale import Scale
from alliance_meta.plot.style import FONT_SIZE, label_axes, require_matplotlib, root_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["funnel"]

def _filled_data(tf: TrimAndFillResult) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """``(yi_obs, vi_obs, yi_filled, vi_filled)`` from a trim-and-fill result."""
    yi = np.asarray(tf.yi, dtype=np.float64)
    vi = np.asarray(tf.vi, dtype=np.float64)
    mask = np.asarray(tf.filled, dtype=np.bool_)
    return yi[~mask], vi[~mask], yi[mask], vi[mask]


def _multilevel_data(fit: MultilevelResult) -> tuple[FloatArray, FloatArray, float, bool]:
    """``(x, se, centre, is_residual)`` of a multilevel fit, as metafor's ``funnel``
    of an ``rma.mv`` fit: the effects against ``√v_i`` around the estimate for an
    intercept-only model, else the residuals ``y_i - x_iβ̂`` against their standard
    errors (``rstandard``) around 0."""
    from alliance_meta.diagnostics.multilevel import standardized_residuals

    X = np.asarray(fit.X, dtype=np.float64)
    if fit.p == 1 and fit.coef_names[0] == "intrcpt" and bool(np.all(X[:, 0] == 1.0)):
        return (np.asarray(fit.yi, dtype=np.float64), np.sqrt(np.asarray(fit.vi)),
                float(fit.coef[0]), False)  # fmt: skip
    e, se = standardized_residuals(fit)
    return e, se, 0.0, True


#: Residuals below this are 0, as in metafor's ``rstandard`` (``100 * .Machine$double.eps``).
_RESID_ZERO = 100.0 * float(np.finfo(np.float64).eps)


def _regression_data(fit: MetaRegressionResult) -> tuple[FloatArray, FloatArray, float, bool]:
    """``(x, se, centre, is_residual)`` of a meta-regression, as metafor's ``funnel``
    of an ``rma.uni`` fit: the effects against ``√v_i`` around the estimate for an
    intercept-only model, else the residuals ``e_i = y_i - x_iβ̂`` against their
    standard errors ``√((I - H)M(I - H)')_ii = √(M_ii - x_i(X'WX)⁻¹x_i')`` around 0
    (metafor's ``rstandard``), with ``M = diag(v_i + τ̂²)``, ``W = M⁻¹`` and
    ``H = X(X'WX)⁻¹X'W``; ``(X'WX)⁻¹`` is never Knapp-Hartung scaled there."""
    X = np.asarray(fit.X, dtype=np.float64)
    yi = np.asarray(fit.yi, dtype=np.float64)
    vi = np.asarray(fit.vi, dtype=np.float64)
    if fit.p == 1 and fit.coef_names[0] == "intrcpt" and bool(np.all(X[:, 0] == 1.0)):
        return yi, np.sqrt(vi), float(fit.coef[0]), False
    m = vi + fit.tau2
    xtwx = X.T @ (X / m[:, None])
    e = yi - X @ np.asarray(fit.coef, dtype=np.float64)
    e = np.where(np.abs(e) < _RESID_ZERO, 0.0, e)
    h = np.einsum("ij,ji->i", X, np.linalg.solve(xtwx, X.T))
    return e, np.sqrt(np.maximum(m - h, 0.0)), 0.0, True


def funnel(
    result: PoolResult
    | SubgroupResult
    | MultilevelResult
    | MetaRegressionResult
    | TrimAndFillResult,
    *,
    ax: Axes | None = None,
    contours: bool | Sequence[float] = False,
    trim_and_fill: TrimAndFillResult | None = None,
    transform: bool = True,
    level: float = 0.95,
    title: str | None = None,
    xlabel: str | None = None,
    legend: bool = True,
    pet_peese: bool | PetPeeseResult = False,
    selection: SelectionModelResult | str | None = None,
) -> Figure:
    """Draw a funnel plot: effect sizes against their standard errors.

    Parameters
    ----------
    result : PoolResult, SubgroupResult, MultilevelResult, MetaRegressionResult or TrimAndFillResult
        The pooled result; for a subgroup analysis each subgroup's studies get
        their own colour (gid ``"study-point"``, legend entry with the subgroup's
        name) and their own pseudo-confidence triangle around the subgroup's
        estimate (gid ``"funnel-triangle"``, in subgroup order).  A multilevel or
        multivariate fit is drawn as metafor's ``funnel`` draws an ``rma.mv`` fit:
        without moderators, every effect against ``√v_i`` around the pooled
        estimate; with moderators, the residuals ``y_i - x_iβ̂`` against their
        standard errors ``√(M_ii - x_i Var(β̂) x_i')`` (metafor's ``rstandard``)
        around 0, on the analysis scale.  A meta-regression is drawn the same way
        (metafor's ``funnel`` of an ``rma.uni`` fit with moderators): the
        residuals against ``√(v_i + τ̂² - x_i(X'WX)⁻¹x_i')`` (``rstandard``) around
        0.  A :func:`~alliance_meta.trim_and_fill` result is drawn as
        ``funnel(fit, trim_and_fill=result)`` (metafor's
        ``funnel(trimfill(fit))``): the observed and the imputed studies around
        the adjusted estimate.
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
        Add a legend (contours, filled studies, PET-PEESE lines and the selection
        model's estimate only).
    pet_peese : bool or PetPeeseResult
        Draw the PET and PEESE regressions (Stanley & Doucouliagos, 2014) on the
        funnel's axes: the limit-estimate curves ``x = b0 + b1 SE`` (gid
        ``"pet-line"``) and ``x = b0 + b1 SE²`` (gid ``"peese-line"``), which meet
        the top of the plot (SE = 0) at their limit estimates; the regression
        PET-PEESE chooses is solid, the other dashed.  True fits
        :func:`alliance_meta.pet_peese` with its defaults; or pass a result.
        Pooled results only.
    selection : SelectionModelResult or str, optional
        A vertical line (gid ``"selection-estimate"``) at the estimate adjusted by
        a selection model: a :func:`alliance_meta.selection_model` result without
        moderators, or its weight function's name (``"halfnorm"``, ``"beta"``,
        ...; not ``"stepfun"``, which needs ``steps``), fitted to ``result``.
        Pooled results only.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib (the ``plot`` extra) is not installed.
    ModelSpecificationError
        If ``result`` is none of the accepted types, or ``trim_and_fill`` is given
        with anything but a PoolResult.

    Notes
    -----
    The y axis is the standard error ``√v_i``, inverted so that the most precise
    studies are at the top, as in metafor's ``funnel``.  The pseudo-confidence
    triangle is centred on the pooled estimate (one per subgroup, on its own
    estimate, for a subgroup analysis: asymmetry is judged within each subgroup);
    significance contours are centred on zero (on the analysis scale).
    """
    require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if isinstance(result, TrimAndFillResult):
        if trim_and_fill is not None:
            raise ModelSpecificationError(
                "funnel() got a TrimAndFillResult and trim_and_fill= as well: pass one "
                "(funnel(tf), or funnel(fit, trim_and_fill=tf))"
            )
        # PET-PEESE and selection lines are for the funnel of the fit itself
        _adjustments(result, pet_peese, selection)
        trim_and_fill = result
        result = result.result  # the fit to the filled data: measure, level, centre
    if not isinstance(
        result, PoolResult | SubgroupResult | MultilevelResult | MetaRegressionResult
    ):
        raise ModelSpecificationError(
            "funnel() draws a PoolResult, SubgroupResult, MultilevelResult, "
            "MetaRegressionResult or TrimAndFillResult (from random_effects, "
            "subgroup_analysis, multilevel/multivariate, meta_regression or "
            f"trim_and_fill), not a {type(result).__name__}"
        )
    pp, sel = _adjustments(result, pet_peese, selection)

    # one series (label, yi, vi, centre, colour) per subgroup, or one for the result
    series: list[tuple[str | None, FloatArray, FloatArray, float, Any]]
    residual = False
    if isinstance(result, MultilevelResult):
        if trim_and_fill is not None:
            raise ModelSpecificationError(
                "trim_and_fill needs a PoolResult, not a MultilevelResult"
            )
        x_ml, se_ml, center_ml, residual = _multilevel_data(result)
        series = [(None, x_ml, se_ml**2, center_ml, "black")]
    elif isinstance(result, MetaRegressionResult):
        if trim_and_fill is not None:
            raise ModelSpecificationError(
                "trim_and_fill needs a PoolResult, not a MetaRegressionResult"
            )
        x_mr, se_mr, center_mr, residual = _regression_data(result)
        series = [(None, x_mr, se_mr**2, center_mr, "black")]
    elif isinstance(result, SubgroupResult):
        if trim_and_fill is not None:
            raise ModelSpecificationError("trim_and_fill needs a PoolResult, not a SubgroupResult")
        palette = plt.get_cmap("tab10")
        series = [(name, part.yi, part.vi, part.estimate, palette(i % 10))
                  for i, (name, part) in enumerate(result.groups.items())]  # fmt: skip
    else:
        center = result.estimate if trim_and_fill is None else trim_and_fill.result.estimate
        if trim_and_fill is not None and result is trim_and_fill.result:  # funnel(tf)
            y_obs, v_obs, _, _ = _filled_data(trim_and_fill)
        else:
            y_obs, v_obs = result.yi, result.vi
        series = [(None, y_obs, v_obs, center, "black")]
    # residuals are plotted on the analysis scale (their natural-scale values mean nothing)
    scale = Scale(result.measure, transform and not residual)
    if trim_and_fill is not None:
        _, _, yf, vf = _filled_data(trim_and_fill)
    else:
        yf = vf = np.empty(0)
    yo = np.concatenate([sr[1] for sr in series])
    se_o, se_f = np.sqrt(np.concatenate([sr[2] for sr in series])), np.sqrt(vf)
    se_max = float(max(np.max(se_o), np.max(se_f) if se_f.size else 0.0)) * 1.05
    crit = z_critical(level)
    centers = [float(sr[3]) for sr in series]

    if contours is True:
        levels: tuple[float, ...] = (0.10, 0.05, 0.01)
    elif contours is False:
        levels = ()
    else:
        levels = tuple(sorted((float(p) for p in contours), reverse=True))
        if any(not 0.0 < p < 1.0 for p in levels):
            raise ModelSpecificationError(f"contour levels must lie in (0, 1), got {contours!r}")

    own_figure = ax is None
    if ax is None:
        wide = legend and (bool(levels) or trim_and_fill is not None or len(series) > 1
                           or pp is not None or sel is not None)
        fig_new = plt.figure(figsize=(7.2 if wide else 5.5, 4.5))
        ax = fig_new.add_subplot(1, 1, 1)
    fig = root_figure(ax)

    # x range (analysis scale): points, triangle and contours at se_max
    half = crit * se_max
    xs = [float(np.min(yo)), float(np.max(yo)), min(centers) - half, max(centers) + half, 0.0]
    if yf.size:
        xs += [float(np.min(yf)), float(np.max(yf))]
    if pp is not None:
        for curve in _pet_peese_curves(pp, np.array([0.0, se_max])).values():
            xs += [float(curve[0]), float(curve[-1])]
    if sel is not None:
        xs.append(float(sel.estimate))
    if levels:
        zmax = z_critical(1.0 - min(levels))
        xs += [-zmax * se_max * 1.15, zmax * se_max * 1.15]
    a_lo, a_hi = min(xs), max(xs)
    if scale.kind == "function":  # keep the analysis-scale range inside a bounded scale
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
            z = z_critical(1.0 - p)
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

    if pp is not None:
        for name, curve in _pet_peese_curves(pp, se_grid).items():
            chosen = name == pp.chosen
            ls: Any = "-" if chosen else (0, (2, 2))
            color = "#b2182b" if name == "PET" else "#2166ac"
            ax.plot(scale.to_plot(curve), se_grid, color=color, linestyle=ls,
                    linewidth=1.4 if chosen else 1.0, zorder=3,
                    gid=f"{name.lower()}-line")  # fmt: skip
            limit = float(curve[0])
            handles.append(Line2D([], [], color=color, linestyle=ls,
                                  label=f"{name}{' (chosen)' if chosen else ''}: "
                                  f"{scale.to_plot_scalar(limit):.3g}"))  # fmt: skip
    if sel is not None:
        s_plot = scale.to_plot_scalar(float(sel.estimate))
        ax.plot([s_plot, s_plot], [se_max, 0.0], color="#1b7837", linewidth=1.2,
                linestyle=(0, (6, 2)), zorder=3, gid="selection-estimate")  # fmt: skip
        handles.append(Line2D([], [], color="#1b7837", linestyle=(0, (6, 2)),
                              label=f"Selection model ({sel.type}): {s_plot:.3g}"))

    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    default_xlabel = "Residual value" if residual else scale.axis_label
    label_axes(
        ax,
        xlabel=xlabel if xlabel is not None else default_xlabel,
        ylabel="Standard error",
        title=title,
    )
    if legend and handles:
        # outside the axes, so that it never hides a study
        ax.legend(handles=handles, fontsize=FONT_SIZE - 1, frameon=False, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # fmt: skip
    if own_figure:
        fig.tight_layout()
    return fig


def _adjustments(
    result: object, pp_arg: bool | PetPeeseResult, sel_arg: SelectionModelResult | str | None
) -> tuple[PetPeeseResult | None, SelectionModelResult | None]:
    """The PET-PEESE result and the selection model to draw (fitted if asked for)."""
    if (pp_arg is not False or sel_arg is not None) and not isinstance(result, PoolResult):
        raise ModelSpecificationError(
            "PET-PEESE lines and the selection-model estimate are drawn on the funnel "
            f"of a PoolResult, not a {type(result).__name__}"
        )
    pp: PetPeeseResult | None
    if isinstance(pp_arg, PetPeeseResult):
        pp = pp_arg
    elif pp_arg is True:
        assert isinstance(result, PoolResult)
        pp = _fit_pet_peese(result)
    elif pp_arg is False:
        pp = None
    else:
        raise ModelSpecificationError(
            f"pet_peese must be True, False or a PetPeeseResult, got {pp_arg!r}"
        )
    sel: SelectionModelResult | None
    if sel_arg is None or isinstance(sel_arg, SelectionModelResult):
        sel = sel_arg
    elif isinstance(sel_arg, str):
        assert isinstance(result, PoolResult)
        sel = selection_model(result, cast(SelectionType, sel_arg))  # the name is checked there
    else:
        raise ModelSpecificationError(
            "selection must be a SelectionModelResult (without moderators) or a weight "
            f"function's name, got {type(sel_arg).__name__}"
        )
    return pp, sel


def _pet_peese_curves(pp: PetPeeseResult, se: FloatArray) -> dict[str, FloatArray]:
    """The PET (``b0 + b1 SE``) and PEESE (``b0 + b1 SE²``) lines at ``se``."""
    pet, peese = pp.pet, pp.peese
    return {
        "PET": pet.intercept + pet.slope * se,
        "PEESE": peese.intercept + peese.slope * se**2,
    }


def _fmt_p(p: float | None) -> str:
    """APA-style p without the leading zero: ``.10``, ``.05``, ``.001``."""
    if p is None:
        return ""
    s = f"{p:.2f}" if round(p, 2) == p else f"{p:g}"
    return s.lstrip("0") or "0"
