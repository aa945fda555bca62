"""Baujat plots (metafor's ``baujat``): each study's contribution to the
heterogeneity against its influence on the pooled estimate (or fitted value).

:func:`baujat_layout` computes the coordinates from the k leave-one-out refits (one
call of the vectorised core) and :func:`baujat` draws them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs
import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.diagnostics.influence import _loo_fit_model
from alliance_meta.exceptions import ModelSpecificationError
from alliance_meta.models.protocol import UnivariateModel
from alliance_meta.plot.style import FONT_SIZE, label_axes, require_matplotlib, root_figure
from alliance_meta.results.base import freeze_arrays

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["BaujatLayout", "baujat", "baujat_layout"]

#: Residuals smaller than this count as 0, as in metafor's ``residuals.rma``.
_RESID_ZERO = 100.0 * float(np.finfo(np.float64).eps)


@attrs.frozen(field_transformer=freeze_arrays)
class BaujatLayout:
    """The coordinates of a Baujat plot.

    Attributes
    ----------
    x : ndarray
        Each study's squared Pearson residual ``(y_i - x_i'β̂)² / (v_i + τ̂²)``: its
        contribution to the (residual) heterogeneity statistic.
    y : ndarray
        Each study's influence ``(x_i'β̂₍₋ᵢ₎ - x_i'β̂)² / (x_i' Var(β̂₍₋ᵢ₎) x_i)``; NaN
        where deleting it leaves a model that cannot be fitted (as metafor's NA).
    labels : tuple of str
        Study labels.
    xlabel, ylabel : str
        metafor's axis titles for this model.
    """

    x: FloatArray = attrs.field(eq=False)
    y: FloatArray = attrs.field(eq=False)
    labels: tuple[str, ...]
    xlabel: str
    ylabel: str


def baujat_layout(fit: UnivariateModel) -> BaujatLayout:
    """The coordinates of a Baujat plot of ``fit`` (see :func:`baujat`); draws nothing.

    Raises
    ------
    ModelSpecificationError
        For a fit of one study, or one where no deletion leaves a model to fit.
    """
    if fit.k < 2:
        raise ModelSpecificationError("a Baujat plot needs at least 2 studies (k = 1)")
    X = np.asarray(fit.X, dtype=np.float64)
    coef = np.asarray(fit.coef, dtype=np.float64)
    yi = np.asarray(fit.yi, dtype=np.float64)
    vi = np.asarray(fit.vi, dtype=np.float64)
    pred_full = X @ coef
    resid = yi - pred_full
    resid = np.where(np.abs(resid) < _RESID_ZERO, 0.0, resid)
    x = resid**2 / (fit.tau2 + vi)
    loo, valid = _loo_fit_model(fit)
    Xv = X[valid]
    delpred = np.einsum("ij,ij->i", Xv, loo.beta)
    vdelpred = np.einsum("ij,ijk,ik->i", Xv, loo.vb, Xv)
    y = np.full(fit.k, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        y[valid] = (delpred - pred_full[valid]) ** 2 / vdelpred
    int_only = fit.p == 1 and bool(np.all(X[:, 0] == 1.0))
    if fit.method == "EE":
        xlabel = "Contribution to " + ("overall" if int_only else "residual") + " heterogeneity"
    else:
        xlabel = "Squared Pearson residual"
    ylabel = "Influence on overall result" if int_only else "Influence on fitted value"
    return BaujatLayout(x=x, y=y, labels=tuple(fit.labels), xlabel=xlabel, ylabel=ylabel)


def baujat(
    fit: UnivariateModel,
    *,
    ax: Axes | None = None,
    symbol: Literal["ids", "labels", "points"] = "ids",
    title: str | None = None,
    grid: bool = True,
) -> Figure:
    """Baujat plot: contribution to heterogeneity against influence on the result
    (Baujat et al., 2002; metafor's ``baujat``).

    Parameters
    ----------
    fit : PoolResult or MetaRegressionResult
        A univariate fit (any :class:`~alliance_meta.models.protocol.UnivariateModel`).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new 5.5 x 4.5 inch figure when omitted.
    symbol : {"ids", "labels", "points"}
        Mark each study by its position (1, 2, ..., metafor's default), its label,
        or a point.
    title : str, optional
        Axes title.
    grid : bool
        Draw a light grid, as metafor does.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    With ``β̂``, ``τ̂²`` from the fit and ``β̂₍₋ᵢ₎``, ``Var(β̂₍₋ᵢ₎)`` from the fit
    without study i (same method, test and level; τ² re-estimated), study i is
    plotted at ``x_i = (y_i - x_i'β̂)² / (v_i + τ̂²)`` and
    ``y_i = (x_i'β̂₍₋ᵢ₎ - x_i'β̂)² / (x_i' Var(β̂₍₋ᵢ₎) x_i)``, as metafor's
    ``baujat.rma`` (for an equal-effects model ``x_i`` is the study's term of Q).
    Studies at the top right both drive the heterogeneity and move the result.
    gids: ``"baujat-point"`` (one collection, study order) and ``"baujat-label"``.

    References
    ----------
    Baujat, B., Mahé, C., Pignon, J.-P., & Hill, C. (2002). A graphical method for
    exploring heterogeneity in meta-analyses: Application to a meta-analysis of 65
    trials. *Statistics in Medicine*, 21(18), 2641-2652.
    """
    require_matplotlib()
    import matplotlib.pyplot as plt

    if symbol not in ("ids", "labels", "points"):
        raise ModelSpecificationError(
            f"symbol must be 'ids', 'labels' or 'points', got {symbol!r}"
        )
    lay = baujat_layout(fit)
    own = ax is None
    if ax is None:
        ax = plt.figure(figsize=(5.5, 4.5)).add_subplot(1, 1, 1)
    fig = root_figure(ax)
    ok = np.isfinite(lay.y)
    ax.scatter(lay.x, lay.y, s=14.0 if symbol == "points" else 0.0, color="black",
               zorder=3, gid="baujat-point")  # fmt: skip
    if symbol != "points":
        texts = [str(i + 1) for i in range(lay.x.size)] if symbol == "ids" else lay.labels
        for xv, yv, t in zip(lay.x[ok], lay.y[ok], np.asarray(texts, dtype=object)[ok],
                             strict=True):  # fmt: skip
            ax.text(xv, yv, str(t), ha="center", va="center", fontsize=FONT_SIZE - 0.5,
                    zorder=4, gid="baujat-label")  # fmt: skip
    xr = (float(np.min(lay.x)), float(np.max(lay.x)))
    yr = (float(np.min(lay.y[ok])), float(np.max(lay.y[ok]))) if ok.any() else (0.0, 1.0)
    for lim, setter in ((xr, ax.set_xlim), (yr, ax.set_ylim)):
        pad = 0.06 * (lim[1] - lim[0]) or 0.5
        setter(lim[0] - pad, lim[1] + pad)
    if grid:
        ax.grid(True, color="0.88", linewidth=0.6, zorder=0)
        ax.set_axisbelow(True)
    label_axes(ax, xlabel=lay.xlabel, ylabel=lay.ylabel, title=title)
    if own:
        fig.tight_layout()
    return fig
