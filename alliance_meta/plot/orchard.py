"""Orchard plots (Nakagawa et al., 2021): every effect size as a point ("fruit")
sized by its precision, over each group's pooled estimate with its confidence
interval (the "trunk") and prediction interval (the "twigs").

:func:`orchard_layout` computes what is plotted and :func:`orchard` draws it.  It
reads any fit through the fitted-model protocol plus ``predict`` (see
:mod:`alliance_meta.plot._fits`): subgroup analyses, meta-regressions on a
categorical moderator, pooled results, and multilevel models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from alliance_meta._types import FloatArray
from alliance_meta.core.inference import critical_value, prediction_interval
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError
from alliance_meta.models.pooling import PoolResult
from alliance_meta.models.subgroup import SubgroupResult
from alliance_meta.plot._fits import has_intercept, predict_rows
from alliance_meta.plot.scale import Scale
from alliance_meta.plot.style import FONT_SIZE, label_axes, require_matplotlib, root_figure
from alliance_meta.results.base import freeze_arrays

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["OrchardGroup", "OrchardLayout", "orchard", "orchard_layout"]

IntArray = npt.NDArray[np.int64]

#: Marker area (pt²) of the most precise effect.
MAX_POINT_AREA = 140.0


@attrs.frozen
class OrchardGroup:
    """One group of an orchard plot (on the plotted scale).

    Attributes
    ----------
    name : str
        The group's label.
    position : float
        Its vertical position (the first group on top).
    estimate, ci_low, ci_high, pi_low, pi_high : float
        The group's prediction and the bounds of its confidence and prediction
        intervals (NaN where the fit gives no PI).
    k : int
        Number of effects in the group.
    n_clusters : int or None
        Number of distinct clusters (e.g. studies) among them, when ``cluster`` was
        given.
    """

    name: str
    position: float
    estimate: float
    ci_low: float
    ci_high: float
    pi_low: float
    pi_high: float
    k: int
    n_clusters: int | None = None

    @property
    def k_text(self) -> str:
        """``"k = 12"`` or, with clusters, ``"k = 12 (5)"``."""
        return f"k = {self.k}" + ("" if self.n_clusters is None else f" ({self.n_clusters})")


@attrs.frozen(field_transformer=freeze_arrays)
class OrchardLayout:
    """What an orchard plot shows.

    Attributes
    ----------
    groups : tuple of OrchardGroup
        The groups, top to bottom.
    x : ndarray
        The effect sizes on the plotted scale, in study order.
    y : ndarray
        Their vertical positions: their group's position plus a uniform jitter in
        ``[-jitter, jitter]`` (reproducible: ``seed``).
    group : ndarray of int
        Each effect's group (index into ``groups``).
    precision : ndarray
        ``1/√v_i``.
    size : ndarray
        Marker areas (pt²), proportional to the precision.
    labels : tuple of str
        Effect labels.
    scale : Scale
        The effect axis (x).
    level : float
        The level of the intervals.
    """

    groups: tuple[OrchardGroup, ...]
    x: FloatArray = attrs.field(eq=False)
    y: FloatArray = attrs.field(eq=False)
    group: IntArray = attrs.field(eq=False)
    precision: FloatArray = attrs.field(eq=False)
    size: FloatArray = attrs.field(eq=False)
    labels: tuple[str, ...]
    scale: Scale
    level: float


def _levels(values: Sequence[object]) -> tuple[list[str], IntArray]:
    """Group labels in R's factor order (a Categorical's categories, else sorted) and
    each value's code."""
    if isinstance(values, pd.Categorical) or isinstance(
        getattr(values, "dtype", None), pd.CategoricalDtype
    ):
        cat = pd.Categorical(values)
        present = [c for c in cat.categories if (cat == c).any()]
        names = [str(c) for c in present]
        codes = np.array([present.index(v) for v in cat], dtype=np.int64)
        return names, codes
    keys = [str(v) for v in values]
    try:
        order = sorted(set(values), key=lambda v: (0, float(v)))  # type: ignore[arg-type]
        names = [str(v) for v in order]
    except (TypeError, ValueError):
        names = sorted(set(keys))
    where = {n: i for i, n in enumerate(names)}
    return names, np.array([where[key] for key in keys], dtype=np.int64)


def _row_name(row: FloatArray, names: Sequence[str], intercept: bool) -> str:
    start = 1 if intercept else 0
    on = [j for j in range(start, row.size) if row[j] != 0.0]
    if not on:
        return names[0] if intercept else "all zero"
    if len(on) == 1 and row[on[0]] == 1.0:
        return names[on[0]]
    return ", ".join(f"{names[j]} = {row[j]:g}" for j in on)


def _group_fit(
    fit: Any, by: Sequence[object] | None
) -> tuple[list[str], IntArray, FloatArray]:
    """Groups of a protocol fit: names, each effect's code, and each group's design row."""
    X = np.asarray(fit.X, dtype=np.float64)
    k = X.shape[0]
    if by is None:
        rows, codes = np.unique(X, axis=0, return_inverse=True)
        codes = np.asarray(codes, dtype=np.int64).reshape(-1)
        # groups in the order of the coefficients their rows switch on
        intercept = has_intercept(fit)
        start = 1 if intercept else 0
        key = [tuple((r[start:] != 0.0)[::-1]) for r in rows]
        perm = sorted(range(len(rows)), key=lambda g: key[g])
        rank = np.empty(len(rows), dtype=np.int64)
        rank[perm] = np.arange(len(rows))
        names = [_row_name(rows[g], fit.coef_names, intercept) for g in perm]
        if X.shape[1] == 1 and intercept:
            names = ["Overall"]  # intercept only: one group of every effect
        return names, rank[codes], rows[perm]
    values = list(by) if not isinstance(by, pd.Categorical) else by
    if len(values) != k:
        raise InvalidStudyError(f"by has {len(values)} values but the fit has {k} effects",
                                field="by")  # fmt: skip
    names, codes = _levels(values)
    rows = np.empty((len(names), X.shape[1]))
    for g, name in enumerate(names):
        Xg = X[codes == g]
        if np.any(Xg != Xg[0]):
            raise ModelSpecificationError(
                f"the design varies within group {name!r}: an orchard plot shows one "
                "prediction per group, so the model's moderators must be the grouping "
                "variable alone (fit ~ factor(group), or ~ factor(group) - 1)"
            )
        rows[g] = Xg[0]
    return names, codes, rows


def orchard_layout(
    fit: Any,
    *,
    by: Sequence[object] | None = None,
    cluster: Sequence[object] | None = None,
    transform: bool = True,
    jitter: float = 0.3,
    seed: int = 0,
) -> OrchardLayout:
    """The data of an orchard plot of ``fit`` (see :func:`orchard`); draws nothing.

    Raises
    ------
    InvalidStudyError
        If ``by`` or ``cluster`` does not give one value per effect.
    ModelSpecificationError
        If the design varies within a group of ``by``, or the fit has no
        ``predict``.
    """
    names: list[str]
    if isinstance(fit, SubgroupResult):
        if by is not None:
            raise ModelSpecificationError("a subgroup result has its groups: leave by unset")
        from alliance_meta.plot.forest import _overall_positions

        pos = _overall_positions(fit)
        overall = fit.overall
        k = overall.k
        names = [str(g) for g in fit.groups]
        codes = np.empty(k, dtype=np.int64)
        for g, name in enumerate(names):
            codes[pos[name]] = g
        yi, vi = np.asarray(overall.yi), np.asarray(overall.vi)
        labels = tuple(overall.labels)
        measure, level = overall.measure, overall.level
        if fit.tau2_mode == "common" and fit.common_estimate is not None:
            est = np.asarray(fit.common_estimate, dtype=np.float64)
            se = np.asarray(fit.common_se, dtype=np.float64)
            assert fit.common_ci is not None and fit.tau2 is not None
            ci_lo, ci_hi = np.asarray(fit.common_ci.low), np.asarray(fit.common_ci.high)
            df = np.nan if fit.test == "z" else float(k - len(names))
            crit = critical_value(np.full(est.shape, df), level)
            pi_lo, pi_hi = prediction_interval(est, se, np.full(est.shape, fit.tau2), crit)
        else:
            parts = list(fit.groups.values())
            est = np.array([p.estimate for p in parts])
            ci_lo = np.array([p.ci.low for p in parts])
            ci_hi = np.array([p.ci.high for p in parts])
            pi_lo = np.array([p.pi.low for p in parts])
            pi_hi = np.array([p.pi.high for p in parts])
    else:
        yi = np.asarray(fit.yi, dtype=np.float64)
        vi = np.asarray(fit.vi, dtype=np.float64)
        k = yi.size
        labels = tuple(fit.labels)
        measure, level = fit.measure, float(fit.level)
        if isinstance(fit, PoolResult):
            if by is not None:
                raise ModelSpecificationError(
                    "a pooled result has one group: for an orchard plot by group, fit "
                    "subgroup_analysis(..., by=...) or a meta-regression on the grouping "
                    "moderator"
                )
            names, codes = ["Overall"], np.zeros(k, dtype=np.int64)
            rows = np.ones((1, 1))
        else:
            names, codes, rows = _group_fit(fit, by)
        bands = predict_rows(fit, rows)
        est, ci_lo, ci_hi = bands.pred, bands.ci_low, bands.ci_high
        pi_lo, pi_hi = bands.pi_low, bands.pi_high
        if getattr(fit, "method", None) == "EE":
            pi_lo = pi_hi = np.full(est.shape, np.nan)
    n_clusters: list[int | None] = [None] * len(names)
    if cluster is not None:
        cl = list(cluster)
        if len(cl) != k:
            raise InvalidStudyError(
                f"cluster has {len(cl)} values but there are {k} effects", field="cluster"
            )
        for g in range(len(names)):
            n_clusters[g] = len({str(cl[i]) for i in np.flatnonzero(codes == g)})
    if not 0.0 <= jitter < 0.5:
        raise ModelSpecificationError(f"jitter must lie in [0, 0.5), got {jitter!r}")
    scale = Scale(measure, transform)
    tp = scale.to_plot
    G = len(names)
    position = np.arange(G, 0, -1, dtype=np.float64)  # the first group on top
    rng = np.random.default_rng(seed)
    y = position[codes] + rng.uniform(-jitter, jitter, size=k)
    precision = 1.0 / np.sqrt(vi)
    groups = tuple(
        OrchardGroup(
            name=names[g], position=float(position[g]), estimate=float(tp(est[g])),
            ci_low=float(tp(ci_lo[g])), ci_high=float(tp(ci_hi[g])),
            pi_low=float(tp(pi_lo[g])), pi_high=float(tp(pi_hi[g])),
            k=int(np.sum(codes == g)), n_clusters=n_clusters[g],
        )
        for g in range(G)
    )
    return OrchardLayout(
        groups=groups,
        x=tp(yi),
        y=y,
        group=codes,
        precision=precision,
        size=MAX_POINT_AREA * precision / np.max(precision),
        labels=labels,
        scale=scale,
        level=level,
    )


def orchard(
    fit: Any,
    *,
    ax: Axes | None = None,
    by: Sequence[object] | None = None,
    cluster: Sequence[object] | None = None,
    transform: bool = True,
    jitter: float = 0.3,
    seed: int = 0,
    title: str | None = None,
    xlabel: str | None = None,
    legend: bool = True,
) -> Figure:
    """Orchard plot (Nakagawa et al., 2021) of a model with a categorical moderator.

    Parameters
    ----------
    fit : SubgroupResult, MetaRegressionResult, PoolResult or multilevel result
        A subgroup analysis (its groups; separate τ² or, with ``tau2="common"``,
        the common-τ² estimates), a pooled result (one group), or any fit of the
        fitted-model protocol with ``predict`` (see below): a meta-regression or a
        multilevel model whose only moderator is the categorical one, with or
        without intercept.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure (height growing with the groups) when omitted.
    by : sequence, optional
        The group of each effect (in the fit's order).  Without it the groups are
        the distinct rows of the fit's design, named by the coefficient each row
        switches on (``intrcpt`` for the reference level); with it they are its
        levels (a pandas Categorical's order, else sorted) and the design must be
        constant within each.
    cluster : sequence, optional
        The cluster (e.g. study) of each effect, to print "k = effects (clusters)"
        as orchard plots of multilevel models do.
    transform : bool
        Effects on the natural scale (r, ratios on a log axis) or the analysis scale.
    jitter : float
        Half-width of the uniform vertical jitter of the points (in group spacings).
    seed : int
        Seed of the jitter, so that the plot is reproducible.
    title, xlabel : str, optional
        Title and x-axis label.
    legend : bool
        Add a legend of point sizes (precision) and intervals.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    What the fit must provide: ``coef_names``, ``X``, ``yi``, ``vi``, ``labels``,
    ``measure``, ``level`` (the fitted-model protocol) and ``predict(newmods)``
    taking the design columns without the intercept (a 2-D array, metafor's
    ``newmods``) and returning ``pred``, ``ci.low``/``ci.high`` and
    ``pi.low``/``pi.high``: the groups' estimates are the predictions at their
    design rows, the thick bars their confidence intervals and the thin bars their
    prediction intervals (for a multilevel model, with every variance component, as
    metafor's ``predict.rma``).  Each effect is a point of area proportional to its
    precision ``1/√v_i``.  gids: ``"orchard-point"`` (one collection, study order),
    ``"orchard-estimate"``, ``"orchard-ci"``, ``"orchard-pi"``, ``"orchard-k"``.

    References
    ----------
    Nakagawa, S., Lagisz, M., O'Dea, R. E., Rutkowska, J., Yang, Y., Noble, D. W. A.,
    & Senior, A. M. (2021). The orchard plot: Cultivating a forest plot for use in
    ecology, evolution, and beyond. *Research Synthesis Methods*, 12(1), 4-12.
    """
    require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    lay = orchard_layout(fit, by=by, cluster=cluster, transform=transform, jitter=jitter,
                         seed=seed)  # fmt: skip
    G = len(lay.groups)
    own = ax is None
    if ax is None:
        ax = plt.figure(figsize=(6.5, 1.3 + 0.9 * G)).add_subplot(1, 1, 1)
    fig = root_figure(ax)
    scale = lay.scale
    palette = plt.get_cmap("tab10")
    colors = [palette(int(g) % 10) for g in lay.group]
    vals = [lay.x] + [np.array([g.ci_low, g.ci_high, g.pi_low, g.pi_high]) for g in lay.groups]
    allv = np.concatenate(vals)
    allv = allv[np.isfinite(allv)]
    lo, hi = min(float(np.min(allv)), scale.null), max(float(np.max(allv)), scale.null)
    scale.configure(ax, lo, hi)
    ax.set_ylim(0.4, G + 0.6)
    ax.axvline(scale.null, color="0.5", linestyle="--", linewidth=0.8, zorder=1,
               gid="null-line")  # fmt: skip
    ax.scatter(lay.x, lay.y, s=lay.size, c=colors, alpha=0.5, edgecolor="0.2",
               linewidth=0.4, zorder=2, gid="orchard-point")  # fmt: skip
    for g in lay.groups:
        if np.isfinite(g.pi_low):
            ax.plot([g.pi_low, g.pi_high], [g.position] * 2, color="black", linewidth=1.3,
                    zorder=3, solid_capstyle="butt", gid="orchard-pi")  # fmt: skip
        ax.plot([g.ci_low, g.ci_high], [g.position] * 2, color="black", linewidth=5.0,
                zorder=4, solid_capstyle="butt", gid="orchard-ci")  # fmt: skip
        ax.annotate(g.k_text, xy=(0.01, g.position + 0.42), xycoords=("axes fraction", "data"),
                    ha="left", va="center", fontsize=FONT_SIZE - 0.5, fontstyle="italic",
                    gid="orchard-k")  # fmt: skip
    ax.scatter([g.estimate for g in lay.groups], [g.position for g in lay.groups], s=70.0,
               facecolor="white", edgecolor="black", linewidth=1.3, zorder=5,
               gid="orchard-estimate")  # fmt: skip
    ax.set_yticks([g.position for g in lay.groups])
    ax.set_yticklabels([g.name for g in lay.groups])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    label_axes(ax, xlabel=xlabel if xlabel is not None else scale.axis_label, title=title)
    if legend:
        pct = f"{100 * lay.level:g}%"
        handles: list[Any] = [
            Line2D([], [], color="black", linewidth=5.0, label=f"{pct} CI"),
            Line2D([], [], color="black", linewidth=1.3, label=f"{pct} PI"),
        ]
        pmax = float(np.max(lay.precision))
        for q in sorted({float(v) for v in np.quantile(lay.precision, [0.1, 0.5, 1.0])}):
            handles.append(Line2D([], [], linestyle="none", marker="o", color="0.5",
                                  markersize=float(np.sqrt(MAX_POINT_AREA * q / pmax)),
                                  label=f"1/SE = {q:.3g}"))  # fmt: skip
        ax.legend(handles=handles, fontsize=FONT_SIZE - 1, frameon=False, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # fmt: skip
    if own:
        fig.tight_layout()
    return fig
