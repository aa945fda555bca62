"""Plot of an estimated selection function (metafor's ``plot.rma.uni.selmodel``).

matplotlib is imported inside the function, so that the library does not need it
unless a plot is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from alliance_meta.core import selection as core
from alliance_meta.exceptions import ModelSpecificationError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from alliance_meta.diagnostics.selection import _SelectionMixin

FloatArray = npt.NDArray[np.float64]

__all__ = ["selection_function", "selection_function_curve"]

_DECREASING = ("halfnorm", "negexp", "logistic", "power")


def selection_function_curve(
    result: _SelectionMixin,
    *,
    n: int = 1000,
    xlim: tuple[float, float] | None = None,
    ci: Literal[False, "wald", "boot"] = False,
    reps: int = 1000,
    seed: int | None = None,
    scale: bool = False,
) -> tuple[FloatArray, FloatArray, FloatArray | None, FloatArray | None]:
    """The points metafor's ``plot(sel)`` draws: ``(p, w, w_low, w_high)``.

    ``p`` is ``n`` equally spaced p-values over ``xlim`` (default
    ``[pval_min, 1 - pval_min]``), plus the step boundaries of a step function;
    ``w`` the estimated selection function there.  With ``ci="wald"``, the bounds
    are the function at the lower and upper Wald limits of δ (one δ, or a step
    function); with ``ci="boot"``, pointwise ``level`` quantiles of the function
    over ``reps`` draws of δ from ``N(δ̂, Var(δ̂))`` clipped to
    ``[delta_min, delta_max]`` (a random ``seed`` makes them reproducible; the draws
    differ from R's).  ``scale=True`` rescales all curves to ``[0, 1]`` by the
    range of ``w``.
    """
    spec = result._spec
    pmin = spec.pval_min
    lo, hi = (pmin, 1.0 - pmin) if xlim is None else sorted(xlim)
    if lo < 0 or hi > 1:
        raise ModelSpecificationError("xlim must lie within [0, 1] (p-values)")
    ps = np.linspace(lo, hi, int(n))
    if spec.type == "stepfun":
        ps = np.unique(np.concatenate([ps, spec.steps]))
        ps = ps[(ps >= lo) & (ps <= hi)]
    delta = result.delta
    ys = core.weight_function(ps, delta, spec)
    y_lo: FloatArray | None = None
    y_hi: FloatArray | None = None
    if ci == "wald":
        free = ~result.delta_fixed
        if spec.type != "stepfun" and int(free.sum()) >= 2:
            raise ModelSpecificationError(
                "Wald bands of the selection function need a single δ (or a step function)"
            )
        dl = np.where(free, result.delta_ci.low, delta)
        dh = np.where(free, result.delta_ci.high, delta)
        if np.all(np.isfinite(dl)) and np.all(np.isfinite(dh)):
            y_lo = core.weight_function(ps, dl, spec)
            y_hi = core.weight_function(ps, dh, spec)
    elif ci == "boot":
        vd = result.vcov[-delta.size :, -delta.size :].copy()
        bad = ~np.isfinite(np.diag(vd))
        vd[bad, :] = 0.0
        vd[:, bad] = 0.0
        if np.all(np.isfinite(vd)) and not bad.all():
            rng = np.random.default_rng(seed)
            sims = rng.multivariate_normal(delta, vd, size=int(reps), method="eigh")
            sims = np.clip(sims, spec.delta_min, spec.delta_max)
            curves = np.array([core.weight_function(ps, d, spec) for d in sims])
            alpha = 1.0 - result.level
            y_lo = np.quantile(curves, alpha / 2.0, axis=0)
            y_hi = np.quantile(curves, 1.0 - alpha / 2.0, axis=0)
    elif ci is not False:
        raise ModelSpecificationError(f"ci must be False, 'wald' or 'boot', got {ci!r}")
    if scale:
        fin = ys[np.isfinite(ys)]
        rng_y = float(fin.max() - fin.min())
        if rng_y > np.finfo(float).eps ** 0.5:
            mn = float(fin.min())
            ys = (ys - mn) / rng_y
            y_lo = None if y_lo is None else (y_lo - mn) / rng_y
            y_hi = None if y_hi is None else (y_hi - mn) / rng_y
    ys = np.maximum(ys, 0.0)
    y_lo = None if y_lo is None else np.maximum(y_lo, 0.0)
    y_hi = None if y_hi is None else np.maximum(y_hi, 0.0)
    return ps, ys, y_lo, y_hi


def selection_function(
    result: _SelectionMixin,
    ax: Axes | None = None,
    *,
    n: int = 1000,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    ci: Literal[False, "wald", "boot"] = False,
    reps: int = 1000,
    seed: int | None = None,
    rug: bool = True,
    scale: bool = False,
    add: bool = False,
    **line_kwargs: Any,
) -> Axes:
    """Draw the estimated selection function, as metafor's ``plot(sel)``.

    Parameters
    ----------
    result : SelectionModelResult or SelectionMetaRegressionResult
        The fitted selection model.
    ax : matplotlib Axes, optional
        Where to draw (a new figure when omitted).
    n, xlim, ci, reps, seed, scale
        See :func:`selection_function_curve`.
    ylim : (float, float), optional
        Default ``(0, 1)`` for the half-normal, negative-exponential, logistic and
        power functions, else the range of the curve (and its bands).
    rug : bool
        Mark the studies' p-values along the x axis.
    add : bool
        Only add the curve (and bands) to ``ax``, leaving its limits, labels and
        rug alone (metafor's ``add=TRUE``, e.g. to compare selection functions).
    **line_kwargs
        Passed to ``Axes.plot`` for the curve (e.g. ``color``, ``label``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    ps, ys, y_lo, y_hi = selection_function_curve(
        result, n=n, xlim=xlim, ci=ci, reps=reps, seed=seed, scale=scale
    )
    if ax is None:
        _, ax = plt.subplots()
    step = result.type == "stepfun"
    kw: dict[str, Any] = {"linewidth": 2.0, "color": "black"}
    kw.update(line_kwargs)
    if step:
        kw.setdefault("drawstyle", "steps-post")
    (line,) = ax.plot(ps, ys, **kw)
    if y_lo is not None and y_hi is not None:
        band: dict[str, Any] = {"linestyle": "dotted", "linewidth": 1.0, "color": line.get_color()}
        if step:
            band["drawstyle"] = "steps-post"
        ax.plot(ps, y_lo, **band)
        ax.plot(ps, y_hi, **band)
    if not add:
        if ylim is None:
            if result.type in _DECREASING:
                ylim = (0.0, 1.0)
            else:
                parts = [ys] + [b for b in (y_lo, y_hi) if b is not None]
                allv = np.concatenate(parts)
                allv = allv[np.isfinite(allv)]
                ylim = (float(allv.min()), float(allv.max()))
        ax.set_ylim(*ylim)
        ax.set_xlabel("p-value")
        ax.set_ylabel("Relative likelihood of selection")
        if rug:
            ax.plot(
                result.pvalues,
                np.zeros_like(result.pvalues),
                linestyle="none",
                marker="|",
                markersize=10,
                color="gray",
                transform=ax.get_xaxis_transform(),
            )
    elif ylim is not None:
        ax.set_ylim(*ylim)
    return ax
