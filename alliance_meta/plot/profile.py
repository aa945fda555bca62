"""Profile-likelihood plots of τ² (metafor's ``profile.rma.uni``).

:func:`profile_layout` evaluates the (restricted) log-likelihood over a grid of τ²
values in one batched call of the core (:func:`alliance_meta.core.estimators.
profile_loglik`); :func:`profile` draws it with the estimate marked.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import attrs
import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.core.estimators import profile_loglik
from alliance_meta.core.heterogeneity import qprofile
from alliance_meta.core.inference import z_critical
from alliance_meta.core.kernel import kernel_from_padded
from alliance_meta.exceptions import ConvergenceWarning, ModelSpecificationError
from alliance_meta.models.protocol import UnivariateModel
from alliance_meta.plot.style import FONT_SIZE, label_axes, require_matplotlib, root_figure
from alliance_meta.results.base import freeze_arrays

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["ProfileLayout", "profile", "profile_layout"]

#: metafor's ``lltol``: a profiled value this far above the fit's log-likelihood
#: means the fit did not reach the maximum.
LL_TOL = 1e-3


@attrs.frozen(field_transformer=freeze_arrays)
class ProfileLayout:
    """The profile of the log-likelihood over τ².

    Attributes
    ----------
    tau2 : ndarray
        The grid (``steps`` equally spaced values over ``xlim``).
    loglik : ndarray
        The log-likelihood at each grid value, the coefficients profiled out: the
        restricted one for a REML fit, the full one otherwise (as metafor's
        ``logLik``).
    coef : ndarray, shape (steps, p)
        The coefficients at each grid value.
    coef_names : tuple of str
        Their names.
    estimate : float
        The fitted τ̂².
    max_loglik : float
        The log-likelihood at τ̂² (the fit's ``logLik``).
    xlim : (float, float)
        The range of the grid.
    method : str
        The fit's τ² estimator.
    reml : bool
        Whether ``loglik`` is the restricted log-likelihood.
    curve_tau2, curve_loglik : ndarray
        The same function on a fine grid over ``xlim`` (401 points and τ̂² when it
        lies inside), for the line through the grid's points.
    """

    tau2: FloatArray = attrs.field(eq=False)
    loglik: FloatArray = attrs.field(eq=False)
    coef: FloatArray = attrs.field(eq=False)
    coef_names: tuple[str, ...]
    estimate: float
    max_loglik: float
    xlim: tuple[float, float]
    method: str
    reml: bool
    curve_tau2: FloatArray = attrs.field(eq=False)
    curve_loglik: FloatArray = attrs.field(eq=False)

    @property
    def ylabel(self) -> str:
        return "Restricted log-likelihood" if self.reml else "Log-likelihood"


def _default_xlim(fit: UnivariateModel, X: FloatArray | None) -> tuple[float, float]:
    """metafor's: the Q-profile CI of τ² widened to hold τ̂² and 0.1; else τ̂² ± z_.995 SE;
    else (τ̂²/4, 4τ̂²)."""
    tau2 = float(fit.tau2)
    lb = ub = math.nan
    try:
        kern = kernel_from_padded(fit.yi[None, :], fit.vi[None, :], X)
        with np.errstate(divide="ignore", invalid="ignore"):
            qp = qprofile(kern, float(fit.level))
        lb, ub = float(qp.tau2_low[0]), float(qp.tau2_high[0])
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        pass
    if math.isfinite(lb) and math.isfinite(ub):
        return min(tau2, lb), max(0.1, tau2, ub)
    se = getattr(fit, "tau2_se", None)
    if se is not None and math.isfinite(float(se)):
        half = z_critical(0.99) * float(se)
        return max(0.0, tau2 - half), max(0.1, tau2 + half)
    return max(0.0, tau2 / 4.0), max(0.1, tau2 * 4.0)


def profile_layout(
    fit: UnivariateModel,
    *,
    xlim: tuple[float, float] | None = None,
    steps: int = 20,
) -> ProfileLayout:
    """The profile of ``fit``'s log-likelihood over τ² (see :func:`profile`).

    Raises
    ------
    ModelSpecificationError
        For an equal-effects fit (no τ² to profile), ``steps < 2`` or a bad
        ``xlim``.

    Warns
    -----
    ConvergenceWarning
        For an ML or REML fit, if a profiled value exceeds the fit's log-likelihood
        by more than 1e-3 (the fit missed the maximum), as metafor warns.
    """
    if fit.method == "EE":
        raise ModelSpecificationError(
            "cannot profile tau^2 of an equal-effects model (it has none), as in metafor"
        )
    if steps < 2:
        raise ModelSpecificationError(f"steps must be at least 2, got {steps}")
    X = np.asarray(fit.X, dtype=np.float64)
    Xk = None if X.shape[1] == 1 and np.all(X[:, 0] == 1.0) else X
    if xlim is None:
        lim = _default_xlim(fit, Xk)
    else:
        lo, hi = sorted(float(v) for v in xlim)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or lo == hi:
            raise ModelSpecificationError(
                f"xlim must be two different, finite, non-negative tau^2 values, got {xlim!r}"
            )
        lim = (lo, hi)
    grid = np.linspace(lim[0], lim[1], steps)
    reml = fit.method == "REML"
    yi, vi = np.asarray(fit.yi), np.asarray(fit.vi)
    ll, coef = profile_loglik(yi, vi, X, grid, reml)
    llmax = float(profile_loglik(yi, vi, X, np.array([fit.tau2]), reml)[0][0])
    fine = np.linspace(lim[0], lim[1], 401)
    if lim[0] < fit.tau2 < lim[1]:
        fine = np.sort(np.append(fine, fit.tau2))
    fine_ll, _ = profile_loglik(yi, vi, X, fine, reml)
    if fit.method in ("ML", "REML") and np.any(ll > llmax + LL_TOL):
        at = float(grid[int(np.nanargmax(ll))])
        warnings.warn(
            f"the profiled {'restricted ' if reml else ''}log-likelihood at tau^2 = {at:.6g} "
            f"exceeds the fit's ({llmax:.6g} at tau^2 = {fit.tau2:.6g}) by more than "
            f"{LL_TOL:g}: the fit did not reach the maximum",
            ConvergenceWarning,
            stacklevel=2,
        )
    return ProfileLayout(
        tau2=grid,
        loglik=ll,
        coef=coef,
        coef_names=tuple(fit.coef_names),
        estimate=float(fit.tau2),
        max_loglik=llmax,
        xlim=lim,
        method=str(fit.method),
        reml=reml,
        curve_tau2=fine,
        curve_loglik=fine_ll,
    )


def profile(
    fit: UnivariateModel,
    *,
    ax: Axes | None = None,
    xlim: tuple[float, float] | None = None,
    steps: int = 20,
    title: str | None = None,
) -> Figure:
    """Profile-likelihood plot of τ² (metafor's ``profile.rma.uni``).

    Parameters
    ----------
    fit : PoolResult or MetaRegressionResult
        A random- or mixed-effects fit (any
        :class:`~alliance_meta.models.protocol.UnivariateModel` but equal-effects).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new 5.5 x 4 inch figure when omitted.
    xlim : (float, float), optional
        The τ² range.  By default metafor's: the Q-profile confidence interval of τ²
        (Viechtbauer, 2007), widened to hold τ̂² and to reach at least 0.1.
    steps : int
        Number of grid values (metafor's default, 20).  The likelihood of the whole
        grid is one batched computation, so a fine grid (``steps=200``) is cheap.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    At each τ² the coefficients are profiled out, ``β̂(τ²) = (X'WX)⁻¹X'Wy`` with
    ``W = diag(1/(v_i + τ²))``, and the log-likelihood is

    * ML: ``-k/2 log 2π - 1/2 Σ log(v_i + τ²) - RSS/2``,
    * REML: ``-(k-p)/2 log 2π + 1/2 log|X'X| - 1/2 Σ log(v_i + τ²) - 1/2 log|X'WX| -
      RSS/2``,

    with ``RSS = (y - Xβ̂)'W(y - Xβ̂)`` (Viechtbauer, 2005), the restricted one for a
    REML fit and the full one for any other estimator, as metafor's ``logLik``.
    The dashed lines mark τ̂² and the log-likelihood there: for ML and REML the
    curve peaks where they cross.  gids: ``"profile-points"`` (the grid's values, as
    metafor draws them), ``"profile-curve"`` (the fine curve through them),
    ``"profile-estimate"`` (vertical) and ``"profile-max"`` (horizontal).

    References
    ----------
    Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators
    in the random-effects model. *Journal of Educational and Behavioral Statistics*,
    30(3), 261-293.
    """
    require_matplotlib()
    import matplotlib.pyplot as plt

    lay = profile_layout(fit, xlim=xlim, steps=steps)
    own = ax is None
    if ax is None:
        ax = plt.figure(figsize=(5.5, 4.0)).add_subplot(1, 1, 1)
    fig = root_figure(ax)
    ax.plot(lay.curve_tau2, lay.curve_loglik, color="black", linewidth=1.0, zorder=3,
            gid="profile-curve")  # fmt: skip
    ax.plot(lay.tau2, lay.loglik, color="black", linestyle="none", marker="o",
            markersize=3.5, zorder=4, gid="profile-points")  # fmt: skip
    ax.axvline(lay.estimate, color="0.35", linestyle="--", linewidth=0.9, zorder=2,
               gid="profile-estimate")  # fmt: skip
    ax.axhline(lay.max_loglik, color="0.35", linestyle="--", linewidth=0.9, zorder=2,
               gid="profile-max")  # fmt: skip
    finite = np.concatenate([lay.loglik, lay.curve_loglik])
    finite = finite[np.isfinite(finite)]
    lo = float(min(np.min(finite), lay.max_loglik)) if finite.size else lay.max_loglik
    hi = float(max(np.max(finite), lay.max_loglik)) if finite.size else lay.max_loglik
    ax.set_ylim(lo - 0.1, hi + 0.1)  # metafor's ylim
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    label_axes(ax, xlabel="$\\tau^2$", ylabel=lay.ylabel, title=title,
               xlabel_size=FONT_SIZE + 1)
    if own:
        fig.tight_layout()
    return fig
