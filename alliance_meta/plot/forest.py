"""Forest plots: a row layout (what to show) and a renderer (how to draw it).

:func:`forest_layout` turns a result into rows (studies, subgroup headers and
diamonds, the overall diamonds, the prediction interval, notes) with every text,
weight and vertical position already decided, without drawing anything;
:func:`forest` draws such a layout with matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
import numpy as np
import pandas as pd

from alliance_meta._types import FloatArray
from alliance_meta.core.inference import z_critical
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError
from alliance_meta.models.metareg import MetaRegressionResult
from alliance_meta.models.multilevel import MultilevelResult
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
    fmt_cell,
    fmt_fixed,
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

#: Which model a diamond (or weight column) belongs to.
Model = Literal["random", "common"]

#: Row kinds, top to bottom.
RowKind = Literal["study", "header", "group-diamond", "overall", "pi", "note", "blank"]


@attrs.frozen
class ForestRow:
    """One row of the forest plot, with everything it shows.

    Attributes
    ----------
    kind : str
        "study", "header" (a subgroup's title), "group-diamond" (a subgroup's
        pooled estimate), "overall" (a pooled estimate of all studies), "pi" (the
        prediction interval), "note" (heterogeneity and test lines) or "blank".
    label : str
        The text of the left column (study label, subgroup title, model name).
    yi, lo, hi : float
        Estimate and interval bounds on the analysis scale (interval rows).
    weight : float
        A study's weight (percent) in the model it is drawn with: the subgroup's
        model for a subgroup analysis, else the pooled model.
    text : str
        The text of a note row.
    y : float
        Vertical position (data units; the top row is highest, rows 1 apart).
    model : {"random", "common", ""}
        The model of a diamond row ("random" is the result's own model, whatever
        its method; "common" the equal-effects refit asked for with ``common``).
    estimate_text : str
        "estimate [low, high]" on the plotted scale (interval rows), with true
        minus signs and never "−0.00".
    cells : tuple of str
        The texts of the extra columns (``ForestLayout.columns``), study rows only.
    weights : tuple of float
        One value per weight column (``ForestLayout.weight_columns``), NaN where the
        row shows none.
    weight_texts : tuple of str
        The texts of the weight columns ("" where none).
    index : int
        A study's position in the result's study order (``result.labels``; for a
        subgroup analysis the order of ``result.overall``); -1 for other rows.
    fitted, fitted_lo, fitted_hi : float
        For a study of a meta-regression: its fitted value ``x_iβ̂`` and the
        bounds of that value's confidence interval (analysis scale), drawn as a
        grey diamond on the study's row (metafor's ``addfit``); NaN otherwise.
    """

    kind: str
    label: str = ""
    yi: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    weight: float = math.nan
    text: str = ""
    y: float = math.nan
    model: str = ""
    estimate_text: str = ""
    cells: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    weight_texts: tuple[str, ...] = ()
    index: int = -1
    fitted: float = math.nan
    fitted_lo: float = math.nan
    fitted_hi: float = math.nan


@attrs.frozen
class ForestLayout:
    """The rows of a forest plot, top to bottom, and what they are drawn against.

    Attributes
    ----------
    rows : tuple of ForestRow
        The rows, top to bottom (see :class:`ForestRow`).
    overall : PoolResult, MultilevelResult or MetaRegressionResult
        The result of the overall (random-effects, or the result's own) diamond;
        for a meta-regression (no overall diamond) the fit itself.
    scale : Scale
        The x axis (natural or analysis scale of the measure).
    level : float
        The confidence level of every interval.
    is_subgroup : bool
        Whether the rows come in subgroup blocks.
    columns : tuple of str
        Headers of the extra columns, drawn between the labels and the plot.
    column_align : tuple of str
        "right" for a column of numbers, "left" for text.
    weight_columns : tuple of str
        Headers of the weight columns, saying which weight each is: "Weight" for a
        pooled result; "Weight\\nin subgroup" and "Weight\\noverall" for a
        subgroup analysis; with ``common``, "Weight (random)" and "Weight (common)".
    estimate_header : str
        Header of the estimate column, e.g. "r [95% CI]".
    favours : tuple of str, or None
        The labels under the axis, left and right of the null.
    digits : int
        Decimals of the estimate texts.
    common : PoolResult or None
        The overall equal-effects refit, when ``common`` was asked for.
    group_level : str or None
        For a multilevel fit: the level whose clusters (studies) head the blocks of
        effects ("header" rows, each with the cluster's total weight); None when
        every cluster holds one effect (no headers then).
    """

    rows: tuple[ForestRow, ...]
    overall: PoolResult | MultilevelResult | MetaRegressionResult
    scale: Scale
    level: float
    is_subgroup: bool
    columns: tuple[str, ...] = ()
    column_align: tuple[str, ...] = ()
    weight_columns: tuple[str, ...] = ()
    estimate_header: str = ""
    favours: tuple[str, str] | None = None
    digits: int = 2
    common: PoolResult | None = None
    group_level: str | None = None

    def rows_of(self, kind: str) -> tuple[ForestRow, ...]:
        """The rows of one kind, top to bottom."""
        return tuple(r for r in self.rows if r.kind == kind)


# ---------------------------------------------------------------------------
# texts
# ---------------------------------------------------------------------------


def _study_ci(yi: FloatArray, vi: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    crit = z_critical(level)
    se = np.sqrt(vi)
    return yi - crit * se, yi + crit * se


def _tau2_text(tau2: float) -> str:
    if tau2 == 0 or tau2 >= 0.001:
        return fmt_fixed(tau2, 3)
    return minus(f"{tau2:.2g}")


def _heterogeneity_text(res: PoolResult) -> str:
    return (
        f"Heterogeneity: \u03c4\u00b2 = {_tau2_text(res.tau2)}, "
        f"I\u00b2 = {fmt_fixed(res.I2, 0)}%, "
        f"Q({res.Q_df}) = {fmt_fixed(res.Q, 2)}, {minus(pvalue_text(res.Q_pvalue))}"
    )


def _model_name(res: PoolResult) -> str:
    if res.method == "EE":
        return "Common-effect model"
    return f"Random-effects model ({res.method})"


def _subgroup_test_text(result: SubgroupResult) -> str:
    q, df, p = result.Q_between, result.Q_between_df, result.Q_between_pvalue
    if result.Q_between_df2 is not None:  # F test under a common tau^2 with t-type tests
        stat = f"F({df}, {result.Q_between_df2}) = {fmt_fixed(q, 2)}"
    else:
        stat = f"Q({df}) = {fmt_fixed(q, 2)}"
    return f"Test for subgroup differences: {stat}, {minus(pvalue_text(p))}"


def _interval_text(scale: Scale, yi: float, lo: float, hi: float, digits: int, pi: bool) -> str:
    x, a, b = (float(v) for v in scale.to_plot(np.array([yi, lo, hi])))
    f = scale.format_value
    if pi:
        return f"[{f(a, digits)}, {f(b, digits)}]"
    return f"{f(x, digits)} [{f(a, digits)}, {f(b, digits)}]"


def _pct(w: float) -> str:
    if math.isnan(w):
        return ""
    if abs(w - 100.0) < 1e-9:
        return "100%"
    return f"{fmt_fixed(w, 1)}%"


# ---------------------------------------------------------------------------
# extra columns and sorting
# ---------------------------------------------------------------------------

#: Extra columns: names of columns of ``data``, or a mapping header -> values (one
#: per study, in study order) or header -> name of a column of ``data``.
ColumnSpec = Mapping[str, Sequence[object] | str] | Sequence[str]


def _data_frame(data: object, k: int) -> pd.DataFrame | None:
    """``data`` as a frame with one row per study, in study order."""
    if data is None:
        return None
    from alliance_meta.data.study import StudySet

    if isinstance(data, StudySet):
        frame = data.to_dataframe()
    elif isinstance(data, pd.DataFrame):
        frame = data.reset_index(drop=True)
    elif isinstance(data, Mapping):
        frame = pd.DataFrame(dict(data))
    elif hasattr(data, "__dataframe__"):
        frame = pd.api.interchange.from_dataframe(data)
    else:
        raise ModelSpecificationError(
            f"data must be a StudySet, a pandas DataFrame or a mapping of columns, got "
            f"{type(data).__name__}"
        )
    if len(frame) != k:
        raise InvalidStudyError(
            f"data has {len(frame)} rows but the result has {k} studies; give the data the "
            "model was fitted to, one row per study in the same order",
            field="data",
        )
    return frame


def _column_values(
    header: str, spec: object, frame: pd.DataFrame | None, k: int
) -> list[object]:
    if isinstance(spec, str):
        if frame is None:
            raise ModelSpecificationError(
                f"column {header!r} names {spec!r}: give data= (the StudySet or data frame "
                "the model was fitted to) to look it up"
            )
        if spec not in frame.columns:
            raise InvalidStudyError(
                f"no column {spec!r} in data; it has {', '.join(map(str, frame.columns))}",
                field=spec,
            )
        return list(frame[spec].to_numpy(dtype=object))
    try:
        values: list[object] = list(spec)  # type: ignore[call-overload]  # any sequence
    except TypeError:
        raise InvalidStudyError(
            f"column {header!r} must be a sequence of values or a column name, got "
            f"{type(spec).__name__}",
            field=header,
        ) from None
    if len(values) != k:
        raise InvalidStudyError(
            f"column {header!r} has {len(values)} values but there are {k} studies",
            field=header,
        )
    return values


def _extra_columns(
    columns: object, frame: pd.DataFrame | None, k: int
) -> tuple[tuple[str, ...], list[list[object]]]:
    if columns is None:
        return (), []
    if isinstance(columns, str):
        columns = [columns]
    if isinstance(columns, Mapping):
        items = [(str(h), v) for h, v in columns.items()]
    else:
        items = [(str(name), name) for name in columns]  # type: ignore[attr-defined]
    headers = tuple(h for h, _ in items)
    return headers, [_column_values(h, v, frame, k) for h, v in items]


def _is_numeric_column(values: Sequence[object]) -> bool:
    present = [v for v in values if fmt_cell(v, 2) != ""]
    return bool(present) and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        for v in present
    )


def _sort_keys(
    sort_by: object,
    *,
    yi: FloatArray,
    vi: FloatArray,
    weights: FloatArray,
    labels: Sequence[str],
    headers: Sequence[str],
    values: Sequence[Sequence[object]],
    frame: pd.DataFrame | None,
) -> tuple[list[object], bool]:
    """One sort key per study (study order) and whether to sort descending."""
    k = len(labels)
    descending = False
    if isinstance(sort_by, str):
        name = sort_by
        if name.startswith("-"):
            descending, name = True, name[1:]
        builtin: dict[str, Callable[[], list[object]]] = {
            "yi": lambda: list(yi),
            "effect": lambda: list(yi),
            "se": lambda: list(np.sqrt(vi)),
            "precision": lambda: list(1.0 / np.sqrt(vi)),
            "weight": lambda: list(weights),
            "label": lambda: list(labels),
        }
        if name in builtin:
            return builtin[name](), descending
        if name in headers:
            return list(values[list(headers).index(name)]), descending
        if frame is not None and name in frame.columns:
            return list(frame[name].to_numpy(dtype=object)), descending
        raise InvalidStudyError(
            f"cannot sort by {name!r}: not one of {', '.join(builtin)}, an extra column"
            + (" or a column of data" if frame is not None else " (give data= to sort by a "
               "column of the data)"),
            field="sort_by",
        )
    keys = list(sort_by)  # type: ignore[call-overload]  # a sequence of sort keys
    if len(keys) != k:
        raise InvalidStudyError(
            f"sort_by has {len(keys)} keys but there are {k} studies", field="sort_by"
        )
    return keys, descending


def _order(keys: Sequence[object], idx: Sequence[int], descending: bool) -> list[int]:
    """``idx`` sorted by ``keys[i]`` (stable; missing keys last either way)."""

    def missing(v: object) -> bool:
        return fmt_cell(v, 2) == "" and not isinstance(v, str)

    present = [i for i in idx if not missing(keys[i])]
    absent = [i for i in idx if missing(keys[i])]
    try:
        present.sort(key=lambda i: keys[i], reverse=descending)  # type: ignore[arg-type,return-value]
    except TypeError:
        present.sort(key=lambda i: str(keys[i]), reverse=descending)
    return present + absent


def _overall_positions(sub: SubgroupResult) -> dict[str, list[int]]:
    """Each subgroup's studies as positions in ``sub.overall`` (matched by label)."""
    where: dict[str, list[int]] = {}
    for i, lab in enumerate(sub.overall.labels):
        where.setdefault(lab, []).append(i)
    out: dict[str, list[int]] = {}
    for name, res in sub.groups.items():
        pos = []
        for lab in res.labels:
            spots = where.get(lab)
            if not spots:
                raise ModelSpecificationError(
                    f"study {lab!r} of subgroup {name!r} is not among the studies of the "
                    "overall result"
                )
            pos.append(spots.pop(0))
        out[str(name)] = pos
    return out


# ---------------------------------------------------------------------------
# the layout
# ---------------------------------------------------------------------------


def forest_layout(
    result: PoolResult | SubgroupResult | MultilevelResult | MetaRegressionResult,
    *,
    labels: Sequence[str] | None = None,
    transform: bool = True,
    show_weights: bool = True,
    show_pi: bool = True,
    show_heterogeneity: bool = True,
    subgroup_title: str | None = None,
    columns: ColumnSpec | None = None,
    data: object = None,
    sort_by: str | Sequence[object] | None = None,
    common: bool = False,
    favours: tuple[str, str] | None = None,
    digits: int | None = None,
) -> ForestLayout:
    """The rows a forest plot of ``result`` shows (see :func:`forest`); draws nothing.

    The parameters are those of :func:`forest` that decide *what* is shown.

    Returns
    -------
    ForestLayout
        The rows top to bottom, with their positions, texts and weights.

    Raises
    ------
    InvalidStudyError
        If ``labels``, a column or ``sort_by`` does not give one entry per study, or
        names a column that ``data`` does not have.
    ModelSpecificationError
        For a subgroup result without groups, a column name without ``data``, or a
        result that is none of the accepted types.

    Examples
    --------
    >>> import alliance_meta as am
    >>> from alliance_meta.plot import forest_layout
    >>> studies = am.datasets.load_alliance_example().studies()
    >>> sub = am.subgroup_analysis(studies, by="rater")
    >>> lay = forest_layout(sub, columns={"N": "n"}, data=studies)
    >>> [r.label for r in lay.rows_of("header")]
    ['Rater: patient', 'Rater: therapist']
    >>> lay.weight_columns
    ('Weight\\nin subgroup', 'Weight\\noverall')
    """
    if isinstance(result, MetaRegressionResult):
        return _metareg_layout(
            result, labels=labels, transform=transform, show_weights=show_weights,
            show_heterogeneity=show_heterogeneity, columns=columns, data=data,
            sort_by=sort_by, common=common, favours=favours, digits=digits,
        )  # fmt: skip
    if not isinstance(result, PoolResult | SubgroupResult | MultilevelResult):
        raise ModelSpecificationError(
            "forest() draws a PoolResult, SubgroupResult, MultilevelResult or "
            "MetaRegressionResult (from random_effects, subgroup_analysis, "
            f"multilevel/multivariate or meta_regression), not a {type(result).__name__}"
        )
    if isinstance(result, MultilevelResult):
        return _multilevel_layout(
            result, labels=labels, transform=transform, show_weights=show_weights,
            show_pi=show_pi, show_heterogeneity=show_heterogeneity, columns=columns,
            data=data, sort_by=sort_by, common=common, favours=favours, digits=digits,
        )  # fmt: skip
    if isinstance(result, SubgroupResult):
        if not result.groups:
            raise ModelSpecificationError("the subgroup result has no groups")
        overall = result.overall
        positions = _overall_positions(result)
        blocks: list[tuple[str | None, PoolResult, list[int]]] = [
            (str(name), res, positions[str(name)]) for name, res in result.groups.items()
        ]
        if subgroup_title is None:
            subgroup_title = result.by[:1].upper() + result.by[1:]
    else:
        overall = result
        blocks = [(None, result, list(range(result.k)))]
    is_subgroup = isinstance(result, SubgroupResult)
    scale = Scale(overall.measure, transform)
    level = overall.level
    k = overall.k
    study_labels = _row_labels(labels, overall.labels, "studies")

    # ---- the models: the result's own, and an equal-effects refit if asked ----
    models: list[Model] = ["random"]
    if common and overall.method != "EE":
        models.append("common")

    def fit_of(res: PoolResult, model: Model) -> PoolResult:
        return res if model == "random" else res.refit(method="EE")

    overall_fits = {m: fit_of(overall, m) for m in models}
    block_fits = [{m: fit_of(res, m) for m in models} for _, res, _ in blocks]

    # ---- weight columns: (model, scope) ---------------------------------------
    scopes = ("subgroup", "overall") if is_subgroup else ("overall",)
    wcols: list[tuple[Model, str]] = (
        [(m, sc) for m in models for sc in scopes] if show_weights else []
    )

    def wheader(model: Model, scope: str) -> str:
        head = f"Weight ({model})" if len(models) > 1 else "Weight"
        if is_subgroup:
            head += "\nin subgroup" if scope == "subgroup" else "\noverall"
        return head

    overall_w = {m: np.asarray(f.weights, dtype=np.float64) for m, f in overall_fits.items()}

    # ---- extra columns and sort keys (study order) ----------------------------
    frame = _data_frame(data, k)
    headers, col_values = _extra_columns(columns, frame, k)
    keys: list[object] | None = None
    descending = False
    if sort_by is not None:
        keys, descending = _sort_keys(
            sort_by, yi=np.asarray(overall.yi), vi=np.asarray(overall.vi),
            weights=overall_w["random"], labels=study_labels, headers=headers,
            values=col_values, frame=frame,
        )  # fmt: skip

    # ---- digits of the estimate texts ------------------------------------------
    if digits is None:
        vals: list[float] = []
        for _, res, _ in blocks:
            lo, hi = _study_ci(res.yi, res.vi, level)
            vals += [*res.yi, *lo, *hi]
        vals += [overall.estimate, overall.ci.low, overall.ci.high]
        digits = auto_digits([float(v) for v in scale.to_plot(np.array(vals))])

    def interval_row(
        kind: str, label: str, fit: PoolResult, model: Model, wts: list[float]
    ) -> ForestRow:
        return ForestRow(
            kind, label=label, yi=fit.estimate, lo=fit.ci.low, hi=fit.ci.high, model=model,
            estimate_text=_interval_text(scale, fit.estimate, fit.ci.low, fit.ci.high,
                                         digits, pi=False),
            weights=tuple(wts), weight_texts=tuple(_pct(w) for w in wts),
        )  # fmt: skip

    # ---- rows ---------------------------------------------------------------
    rows: list[ForestRow] = []
    nan = math.nan
    for (name, res, pos), fits in zip(blocks, block_fits, strict=True):
        if name is not None:
            head = f"{subgroup_title}: {name}" if subgroup_title else name
            rows.append(ForestRow("header", label=head))
        ci_lo, ci_hi = _study_ci(res.yi, res.vi, level)
        within = {m: np.asarray(f.weights, dtype=np.float64) for m, f in fits.items()}
        order = list(range(res.k))
        if keys is not None:
            inv = {j: i for i, j in enumerate(pos)}
            order = [inv[j] for j in _order(keys, pos, descending)]
        for i in order:
            j = pos[i]
            wts = [
                float(within[m][i]) if sc == "subgroup" else float(overall_w[m][j])
                for m, sc in wcols
            ]
            rows.append(
                ForestRow(
                    "study", label=study_labels[j], yi=float(res.yi[i]), lo=float(ci_lo[i]),
                    hi=float(ci_hi[i]), weight=float(within["random"][i]),
                    estimate_text=_interval_text(scale, float(res.yi[i]), float(ci_lo[i]),
                                                 float(ci_hi[i]), digits, pi=False),
                    cells=tuple(fmt_cell(v[j], digits) for v in col_values),
                    weights=tuple(wts), weight_texts=tuple(_pct(w) for w in wts), index=j,
                )
            )  # fmt: skip
        if name is not None:
            for m in models:
                fit = fits[m]
                wts = [
                    (100.0 if sc == "subgroup" else float(np.sum(overall_w[m][pos])))
                    if mm == m else nan
                    for mm, sc in wcols
                ]
                what = (
                    "Subtotal" if len(models) == 1
                    else f"Subtotal, {'common effect' if m == 'common' else 'random effects'}"
                )
                meth = "" if fit.method == "EE" else f"{fit.method}, "
                rows.append(interval_row("group-diamond", f"{what} ({meth}k = {fit.k})",
                                         fit, m, wts))  # fmt: skip
            if show_heterogeneity and res.k > 1:
                rows.append(ForestRow("note", text=_heterogeneity_text(res)))
            rows.append(ForestRow("blank"))
    if not is_subgroup:
        rows.append(ForestRow("blank"))
    for m in models:
        fit = overall_fits[m]
        wts = [100.0 if (mm == m and sc == "overall") else nan for mm, sc in wcols]
        name = _model_name(fit)
        label = f"Overall, {name[0].lower()}{name[1:]}" if is_subgroup else name
        rows.append(interval_row("overall", label, fit, m, wts))
    if show_pi and overall.method != "EE":
        rows.append(
            ForestRow("pi", label="Prediction interval", yi=overall.estimate, lo=overall.pi.low,
                      hi=overall.pi.high, model="random",
                      estimate_text=_interval_text(scale, overall.estimate, overall.pi.low,
                                                   overall.pi.high, digits, pi=True))
        )  # fmt: skip
    if show_heterogeneity:
        rows.append(ForestRow("note", text=_heterogeneity_text(overall)))
    if isinstance(result, SubgroupResult):
        rows.append(ForestRow("note", text=_subgroup_test_text(result)))

    return _finish_layout(
        rows, overall, scale, level, headers, col_values,
        tuple(wheader(m, sc) for m, sc in wcols), favours, digits,
        is_subgroup=is_subgroup, common=overall_fits.get("common"),
    )


def _row_labels(given: Sequence[object] | None, default: Sequence[str], what: str) -> list[str]:
    """The row labels: ``given`` (as text, one per row) or the fit's own."""
    if given is None:
        return list(default)
    out = [str(x) for x in given]
    if len(out) != len(default):
        raise InvalidStudyError(
            f"labels has {len(out)} entries but there are {len(default)} {what}", field="labels"
        )
    return out


def _finish_layout(
    rows: list[ForestRow],
    overall: Any,
    scale: Scale,
    level: float,
    headers: tuple[str, ...],
    col_values: Sequence[Sequence[object]],
    weight_columns: tuple[str, ...],
    favours: tuple[object, object] | None,
    digits: int,
    **extra: Any,
) -> ForestLayout:
    """Number the rows top to bottom and assemble the layout every forest shares."""
    n_rows = len(rows)
    numbered = tuple(attrs.evolve(r, y=float(n_rows - i)) for i, r in enumerate(rows))
    return ForestLayout(
        rows=numbered,
        overall=overall,
        scale=scale,
        level=level,
        columns=headers,
        column_align=tuple("right" if _is_numeric_column(v) else "left" for v in col_values),
        weight_columns=weight_columns,
        estimate_header=f"{scale.short_name} [{100 * level:g}% CI]",
        favours=None if favours is None else (str(favours[0]), str(favours[1])),
        digits=digits,
        **extra,
    )


# ---------------------------------------------------------------------------
# multilevel and multivariate fits
# ---------------------------------------------------------------------------


def _overall_center(lay: ForestLayout) -> float | None:
    """The pooled estimate of the layout's overall model (the dashed line); None for
    a meta-regression, which has none."""
    if isinstance(lay.overall, MetaRegressionResult):
        return None
    if isinstance(lay.overall, MultilevelResult):
        return float(lay.overall.coef[0])
    return float(lay.overall.estimate)


def _short_label(label: str, cluster: str) -> str:
    """An effect's label without its study's name in front ("Study 1: anxiety" ->
    "anxiety" under the header "Study 1"); the whole label when nothing is left."""
    if label.startswith(cluster) and len(label) > len(cluster):
        rest = label[len(cluster):].lstrip(" :,;/.-–|")
        if rest and not label[len(cluster)].isalnum():
            return rest
    return label


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _variance_text(name: str, value: float) -> str:
    return f"{name} = {_tau2_text(value)}"


def _ml_heterogeneity_text(fit: MultilevelResult) -> str:
    """``Heterogeneity: σ²(study) = ..., σ²(es) = ..., I² = ..% (..), Q(df) = .., p``
    (multivariate fits: τ² and ρ)."""
    parts: list[str] = []
    names = fit.level_names if fit.struct is None else ()
    for nm, v in zip(names, fit.sigma2, strict=True):
        parts.append(_variance_text(f"\u03c3\u00b2({nm})", v))
    if fit.struct is not None:
        outs = fit.outcome_levels if len(fit.tau2) > 1 else ("",)
        for o, v in zip(outs, fit.tau2, strict=True):
            parts.append(_variance_text(f"\u03c4\u00b2({o})" if o else "\u03c4\u00b2", v))
        if fit.rho:
            rho = ", ".join(minus(fmt_fixed(r, 2)) for r in fit.rho)
            parts.append(f"\u03c1 = {rho}")
    if fit.I2 is not None:
        by_level = ", ".join(
            f"{nm} {fmt_fixed(v, 0)}%" for nm, v in zip(names, fit.I2_levels, strict=True)
        )
        parts.append(f"I\u00b2 = {fmt_fixed(fit.I2, 0)}% ({by_level})")
    parts.append(f"Q({fit.QE_df}) = {fmt_fixed(fit.QE, 2)}, {minus(pvalue_text(fit.QE_pvalue))}")
    return "Heterogeneity: " + ", ".join(parts)


def _multilevel_model_name(fit: MultilevelResult) -> str:
    if fit.struct is not None:
        return f"Multivariate model ({fit.struct}, {fit.method})"
    n_lev = len(fit.level_names) + 1
    what = {2: "Two-level", 3: "Three-level", 4: "Four-level"}.get(n_lev, f"{n_lev}-level")
    return f"{what} model ({fit.method})"


def _multilevel_layout(
    fit: MultilevelResult,
    *,
    labels: Sequence[str] | None,
    transform: bool,
    show_weights: bool,
    show_pi: bool,
    show_heterogeneity: bool,
    columns: ColumnSpec | None,
    data: object,
    sort_by: str | Sequence[object] | None,
    common: bool,
    favours: tuple[str, str] | None,
    digits: int | None,
) -> ForestLayout:
    """The rows of a multilevel or multivariate fit: its effects grouped by the
    outer level's clusters, each block under a header with the cluster's weight,
    then the pooled diamond, the prediction interval and the heterogeneity line.

    Weights are each effect's share of the pooled estimate, ``w_i = [(X'WX)⁻¹X'W]_i``
    with ``W = M⁻¹`` (summing to 100%), not metafor's ``weights()`` (the diagonal of
    ``W``; metafor issue #52); a cluster's weight is the sum of its effects'.
    """
    from alliance_meta.diagnostics.multilevel import estimate_weights

    if fit.p != 1 or not (fit.coef_names[0] == "intrcpt" and np.all(fit.X[:, 0] == 1.0)):
        raise ModelSpecificationError(
            "a forest plot of a multilevel fit shows one pooled estimate: fit it without "
            f"moderators (this fit has coefficients {', '.join(fit.coef_names)}); for a "
            "model with moderators use orchard() or bubble()"
        )
    if common:
        raise ModelSpecificationError(
            "common=True adds an equal-effects refit of a pooled result; it does not apply "
            "to a multilevel fit"
        )
    k = fit.k
    scale = Scale(fit.measure, transform)
    level = fit.level
    effect_labels = _row_labels(labels, fit.labels, "effects")
    group_level = fit.level_names[0]
    groups = [str(g) for g in np.asarray(fit.levels[group_level])]
    shares = 100.0 * estimate_weights(fit)[0]
    frame = _data_frame(data, k)
    headers, col_values = _extra_columns(columns, frame, k)
    yi, vi = np.asarray(fit.yi, dtype=np.float64), np.asarray(fit.vi, dtype=np.float64)
    keys: list[object] | None = None
    descending = False
    if sort_by is not None:
        keys, descending = _sort_keys(
            sort_by, yi=yi, vi=vi, weights=shares, labels=effect_labels, headers=headers,
            values=col_values, frame=frame,
        )  # fmt: skip
    est = float(fit.coef[0])
    ci_lo, ci_hi = float(fit.ci.low[0]), float(fit.ci.high[0])
    lo, hi = _study_ci(yi, vi, level)
    if digits is None:
        vals = [*yi, *lo, *hi, est, ci_lo, ci_hi]
        digits = auto_digits([float(v) for v in scale.to_plot(np.array(vals))])
    pred = fit.predict()
    has_pi = show_pi and np.asarray(pred.pred).size == 1
    order_of: dict[str, list[int]] = {}
    for j, g in enumerate(groups):
        order_of.setdefault(g, []).append(j)
    # one effect per cluster: no headers (a plain list of the effects)
    grouped = any(len(m) > 1 for m in order_of.values())
    rows: list[ForestRow] = []
    for g, members in order_of.items():
        total = float(np.sum(shares[members]))
        wts = (total,) if show_weights else ()
        if grouped:
            # bare numbers (district 11, trial 3) get the level's name in front
            head = f"{group_level[:1].upper()}{group_level[1:]} {g}" if _is_number(g) else g
            rows.append(ForestRow("header", label=head, weights=wts,
                                  weight_texts=tuple(_pct(w) for w in wts)))  # fmt: skip
        idx = members if keys is None else _order(keys, members, descending)
        for j in idx:
            w = float(shares[j])
            wj = (w,) if show_weights else ()
            short = labels is None and grouped
            lab = _short_label(effect_labels[j], g) if short else effect_labels[j]
            rows.append(
                ForestRow(
                    "study", label=lab, yi=float(yi[j]), lo=float(lo[j]), hi=float(hi[j]),
                    weight=w,
                    estimate_text=_interval_text(scale, float(yi[j]), float(lo[j]),
                                                 float(hi[j]), digits, pi=False),
                    cells=tuple(fmt_cell(v[j], digits) for v in col_values),
                    weights=wj, weight_texts=tuple(_pct(x) for x in wj), index=j,
                )
            )  # fmt: skip
    rows.append(ForestRow("blank"))
    n_cl = len(order_of)
    wts_all = (100.0,) if show_weights else ()
    rows.append(
        ForestRow(
            "overall",
            label=f"{_multilevel_model_name(fit)}: k = {k} in {n_cl} clusters ({group_level})",
            yi=est, lo=ci_lo, hi=ci_hi, model="random",
            estimate_text=_interval_text(scale, est, ci_lo, ci_hi, digits, pi=False),
            weights=wts_all, weight_texts=tuple(_pct(w) for w in wts_all),
        )
    )  # fmt: skip
    if has_pi:
        pi_lo, pi_hi = float(pred.pi.low[0]), float(pred.pi.high[0])
        rows.append(
            ForestRow("pi", label="Prediction interval", yi=est, lo=pi_lo, hi=pi_hi,
                      model="random",
                      estimate_text=_interval_text(scale, est, pi_lo, pi_hi, digits, pi=True))
        )  # fmt: skip
    if show_heterogeneity:
        rows.append(ForestRow("note", text=_ml_heterogeneity_text(fit)))
    return _finish_layout(
        rows, fit, scale, level, headers, col_values,
        ("Weight",) if show_weights else (), favours, digits,
        is_subgroup=False, group_level=group_level if grouped else None,
    )


# ---------------------------------------------------------------------------
# meta-regressions
# ---------------------------------------------------------------------------


def _metareg_notes(fit: MetaRegressionResult) -> list[str]:
    """The residual-heterogeneity and moderator-test lines of a meta-regression."""
    parts = [] if fit.method == "EE" else [
        f"\u03c4\u00b2 = {_tau2_text(fit.tau2)}", f"I\u00b2 = {fmt_fixed(fit.I2, 0)}%"
    ]  # fmt: skip
    parts.append(
        f"QE({fit.QE_df}) = {fmt_fixed(fit.QE, 2)}, {minus(pvalue_text(fit.QE_pvalue))}"
    )
    het = "Residual heterogeneity: " + ", ".join(parts)
    df1, df2 = fit.QM_df
    stat = f"F({df1}, {df2})" if df2 is not None else f"QM({df1})"
    test = (
        f"Test of moderators: {stat} = {fmt_fixed(fit.QM, 2)}, "
        f"{minus(pvalue_text(fit.QM_pvalue))}"
    )
    return [het, test]


def _metareg_layout(
    fit: MetaRegressionResult,
    *,
    labels: Sequence[str] | None,
    transform: bool,
    show_weights: bool,
    show_heterogeneity: bool,
    columns: ColumnSpec | None,
    data: object,
    sort_by: str | Sequence[object] | None,
    common: bool,
    favours: tuple[str, str] | None,
    digits: int | None,
) -> ForestLayout:
    """The rows of a meta-regression, as metafor's ``forest`` of an ``rma.uni`` fit
    with moderators: each study with its observed effect and CI and, on the same
    row, its fitted value ``x_iβ̂`` with that value's confidence interval (from
    ``predict()``); no overall diamond (there is no single pooled estimate), then
    the residual heterogeneity and the test of the moderators."""
    if common:
        raise ModelSpecificationError(
            "common=True adds an equal-effects refit of a pooled result; it does not apply "
            "to a meta-regression (fit it with method='EE' instead)"
        )
    k = fit.k
    scale = Scale(fit.measure, transform)
    level = fit.level
    study_labels = _row_labels(labels, fit.labels, "studies")
    yi, vi = np.asarray(fit.yi, dtype=np.float64), np.asarray(fit.vi, dtype=np.float64)
    weights = np.asarray(fit.weights, dtype=np.float64)
    pred = fit.predict()
    f_est = np.asarray(pred.pred, dtype=np.float64).reshape(-1)
    f_lo = np.asarray(pred.ci.low, dtype=np.float64).reshape(-1)
    f_hi = np.asarray(pred.ci.high, dtype=np.float64).reshape(-1)
    frame = _data_frame(data, k)
    headers, col_values = _extra_columns(columns, frame, k)
    order = list(range(k))
    if sort_by is not None:
        keys, descending = _sort_keys(
            sort_by, yi=yi, vi=vi, weights=weights, labels=study_labels, headers=headers,
            values=col_values, frame=frame,
        )  # fmt: skip
        order = _order(keys, order, descending)
    lo, hi = _study_ci(yi, vi, level)
    if digits is None:
        digits = auto_digits([float(v) for v in scale.to_plot(np.concatenate([yi, lo, hi]))])
    wts_of = (lambda j: (float(weights[j]),)) if show_weights else (lambda j: ())
    rows: list[ForestRow] = []
    for j in order:
        wj = wts_of(j)
        rows.append(
            ForestRow(
                "study", label=study_labels[j], yi=float(yi[j]), lo=float(lo[j]),
                hi=float(hi[j]), weight=float(weights[j]),
                estimate_text=_interval_text(scale, float(yi[j]), float(lo[j]),
                                             float(hi[j]), digits, pi=False),
                cells=tuple(fmt_cell(v[j], digits) for v in col_values),
                weights=wj, weight_texts=tuple(_pct(w) for w in wj), index=j,
                fitted=float(f_est[j]), fitted_lo=float(f_lo[j]), fitted_hi=float(f_hi[j]),
            )
        )  # fmt: skip
    if show_heterogeneity:
        rows.append(ForestRow("blank"))
        rows += [ForestRow("note", text=t) for t in _metareg_notes(fit)]
    return _finish_layout(
        rows, fit, scale, level, headers, col_values,
        ("Weight",) if show_weights else (), favours, digits, is_subgroup=False,
    )


# ---------------------------------------------------------------------------
# the renderer
# ---------------------------------------------------------------------------

_DIAMOND_GIDS = {
    ("overall", "random"): "diamond-overall",
    ("overall", "common"): "diamond-overall-common",
    ("group-diamond", "random"): "diamond-subgroup",
    ("group-diamond", "common"): "diamond-subgroup-common",
}
#: Height of one header line, in rows (a 9 pt line in a 0.24 in row).
_HEADER_LINE = 0.62


def forest(
    result: PoolResult | SubgroupResult | MultilevelResult | MetaRegressionResult,
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
    columns: ColumnSpec | None = None,
    data: object = None,
    sort_by: str | Sequence[object] | None = None,
    common: bool = False,
    favours: tuple[str, str] | None = None,
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
        subgroups' method).  A multilevel or multivariate fit without moderators
        (:func:`~alliance_meta.multilevel`, :func:`~alliance_meta.multivariate`)
        shows its effects grouped by the clusters of its outer level (the
        studies): a header row per study with the study's weight, its effects
        (labels without the study's name in front), then the multilevel pooled
        diamond (``coef`` and its CI), the prediction interval of ``predict()``
        (every variance component; none for a multivariate fit with several
        ``τ²``) and the variance components, I² and QE.  A meta-regression
        (:func:`~alliance_meta.meta_regression`) is drawn as metafor's ``forest``
        draws an ``rma.uni`` fit with moderators: each study's effect and CI and,
        on its row, a grey diamond (gid ``"fitted-value"``) spanning the
        confidence interval of its fitted value ``x_iβ̂`` (``predict()``); no
        overall diamond and no prediction interval (``show_pi`` does not apply),
        and the residual heterogeneity and the test of the moderators as notes.
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
        Add the weight columns.  A pooled result has one, "Weight" (percent of the
        pooled model's total weight).  A subgroup analysis has two, each labelled:
        the weight within the study's subgroup ("in subgroup", 100% per subgroup)
        and within the overall model ("overall", 100% over all studies; a
        subgroup's diamond row shows its studies' share).  With ``common`` each
        comes for both models.  For a multilevel fit "Weight" is each effect's
        *share of the pooled estimate*: ``β̂ = Σ_i w_i y_i`` with
        ``w = (X'WX)⁻¹X'W`` and ``W = M⁻¹`` the inverse of the fitted marginal
        covariance (``w_i = (1'W)_i / 1'W1``, the row sums of ``W``; they sum to
        100% and may be negative), and a study's weight is the sum over its
        effects.  This is metafor's ``weights(fit, type = "rowsum")``, not its
        default ``weights()`` of an ``rma.mv`` fit, the diagonal of ``W``, which
        ignores the covariance between a study's effects and so is not an
        effect's contribution to the estimate (metafor issue #52).
    show_pi : bool
        Add the prediction-interval bar under the overall diamond (random-effects
        models only).
    show_heterogeneity : bool
        Add the heterogeneity line (τ², I², Q) under each pooled estimate.
    title : str, optional
        Title above the table.
    xlabel : str, optional
        x-axis label; by default the natural-scale name of the measure.
    digits : int, optional
        Decimals of the estimate texts; 2 (or 3 for small values) by default.
    color : str
        Colour of the study squares and whiskers.
    diamond_color : str
        Fill colour of the diamonds.
    subgroup_title : str, optional
        Prefix of subgroup headers; by default the moderator's name, capitalised
        ("Rater: patient").  ``""`` gives the bare level names.
    xlim : (float, float), optional
        x-axis limits on the plotted scale (e.g. ``(-0.6, 0.4)`` for r, ``(0.1, 10)``
        for ratios), instead of limits that hold every interval.  Intervals that
        extend past a limit are cut there and end in an arrowhead, as in metafor's
        ``forest(..., alim=)``; the text columns still give their full values.
    columns : sequence of str, or mapping of str to values or str, optional
        Extra columns between the labels and the plot (metafor's ``ilab``, meta's
        ``leftcols``): names of columns of ``data`` (moderators, ``n``, or any column
        of a data frame), or a mapping header → values (one per study, in study
        order) or header → column name, e.g. ``{"N": "n", "Events/total":
        ["4/123", ...], "Rater": "rater"}``.  Whole numbers print without decimals,
        other numbers with ``digits`` decimals.
    data : StudySet, pandas.DataFrame or mapping, optional
        Where the names in ``columns`` and ``sort_by`` are looked up: the data the
        model was fitted to, one row per study in study order.
    sort_by : str or sequence, optional
        Order of the studies (within each subgroup): ``"yi"`` (or ``"effect"``),
        ``"se"``, ``"precision"``, ``"weight"``, ``"label"``, the header of an extra
        column, a column of ``data``, or one sort key per study (in study order);
        a leading ``"-"`` sorts descending.  Studies keep their order by default.
    common : bool
        Also draw the common-effect (equal-effects) diamond of every pooled
        estimate under the random-effects one (meta's ``common = TRUE``), with its
        own weight columns; the refit uses the result's test and level.
    favours : (str, str), optional
        Labels under the axis, left and right of the null line, e.g.
        ``("Favours control", "Favours treatment")``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure containing ``ax``.

    Raises
    ------
    ImportError
        If matplotlib (the ``plot`` extra) is not installed.
    InvalidStudyError, ModelSpecificationError
        See :func:`forest_layout`; and for an ``xlim`` that is not an increasing
        range on the plotted scale.

    Notes
    -----
    Study squares have an area proportional to the study's weight in the model
    it is drawn with; whiskers are Wald intervals ``y_i ± z_{1-α/2} √v_i`` at the
    result's level; the diamond spans the pooled CI; the prediction interval is
    drawn as a bar from ``pi.low`` to ``pi.high``.  What is shown (rows, texts,
    weights, positions) is :func:`forest_layout`'s; this function only draws it.
    See the module docstring for gids and scales.

    Examples
    --------
    >>> import alliance_meta as am
    >>> from alliance_meta.plot import forest
    >>> studies = am.datasets.load_alliance_example().studies()
    >>> res = am.subgroup_analysis(studies, by="rater")
    >>> fig = forest(res, columns={"N": "n"}, data=studies, sort_by="yi",
    ...              favours=("Weaker alliance", "Stronger alliance"))  # doctest: +SKIP
    >>> fig.savefig("forest.png", dpi=200)  # doctest: +SKIP
    """
    require_matplotlib()
    lay = forest_layout(
        result, labels=labels, transform=transform, show_weights=show_weights,
        show_pi=show_pi, show_heterogeneity=show_heterogeneity,
        subgroup_title=subgroup_title, columns=columns, data=data, sort_by=sort_by,
        common=common, favours=favours, digits=digits,
    )  # fmt: skip
    return draw_forest(
        lay, ax=ax, title=title, xlabel=xlabel, color=color, diamond_color=diamond_color,
        xlim=xlim,
    )  # fmt: skip


def draw_forest(
    lay: ForestLayout,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    color: str = "black",
    diamond_color: str = "#2f4f6f",
    xlim: tuple[float, float] | None = None,
) -> Figure:
    """Draw a :class:`ForestLayout` (the renderer behind :func:`forest`).

    Parameters
    ----------
    lay : ForestLayout
        What to draw, from :func:`forest_layout` (possibly edited with
        ``attrs.evolve``).
    ax, title, xlabel, color, diamond_color, xlim
        As in :func:`forest`.

    Returns
    -------
    matplotlib.figure.Figure
        The figure containing ``ax``.
    """
    require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib import transforms
    from matplotlib.patches import Polygon

    rows, scale = lay.rows, lay.scale
    center = _overall_center(lay)
    indented = lay.is_subgroup or lay.group_level is not None
    n_rows = len(rows)
    bottom_y = min((r.y for r in rows), default=1.0)
    top_y = max((r.y for r in rows), default=1.0)
    headers = ["Study", *lay.columns, lay.estimate_header, *lay.weight_columns]
    n_lines = max(h.count("\n") + 1 for h in headers)
    header_y = top_y + 0.75  # headers sit on this line and grow upwards
    header_top = header_y + _HEADER_LINE * n_lines
    title_y = header_top + 0.75

    # ---- figure and axes ----------------------------------------------------
    own_figure = ax is None
    fav_in = 0.22 if lay.favours else 0.0
    if ax is None:
        height = ROW_HEIGHT_IN * (n_rows + (header_top - top_y) + (1.2 if title else 0.3))
        height += 0.6 + fav_in
        fig_new = plt.figure(figsize=(9.0, height))
        ax = fig_new.add_subplot(1, 1, 1)
    fig = root_figure(ax)

    interval_rows = [r for r in rows if r.kind in ("study", "group-diamond", "overall", "pi")]
    if xlim is not None:
        x_lo, x_hi = (float(x) for x in xlim)
        with np.errstate(all="ignore"):  # limits outside the measure's domain
            z = scale.spec.to_analysis(np.array([x_lo, x_hi]), n=scale.n)
        bad = not (x_lo < x_hi) or (scale.natural and not np.isfinite(z).all())
        if bad:
            raise ModelSpecificationError(
                f"xlim {xlim!r} is not an increasing range on the plotted scale"
            )
        scale.configure(ax, x_lo, x_hi, exact=True)
    else:
        vals = [v for r in interval_rows for v in (r.lo, r.hi, r.yi)]
        vals += [v for r in interval_rows if r.kind == "study" and math.isfinite(r.fitted)
                 for v in (r.fitted_lo, r.fitted_hi)]  # fmt: skip
        pv = scale.to_plot(np.array(vals, dtype=np.float64))
        x_lo, x_hi = float(np.nanmin(pv)), float(np.nanmax(pv))
        x_lo, x_hi = min(x_lo, scale.null), max(x_hi, scale.null)
        scale.configure(ax, x_lo, x_hi)
        x_lo, x_hi = -math.inf, math.inf  # nothing to clip
    ax.set_ylim(bottom_y - 0.6, (title_y if title else header_top) + 0.4)

    # ---- plot elements ------------------------------------------------------
    study_w = [r.weight for r in rows if r.kind == "study"]
    w_max = max(max(study_w) if study_w else 1.0, 1e-300)
    top_study_y = max((r.y for r in rows if r.kind == "study"), default=1.0)
    ax.plot(
        [scale.null, scale.null], [bottom_y - 0.5, top_study_y + 0.6], color="0.35",
        linewidth=0.8, zorder=1, gid="null-line",
    )  # fmt: skip
    if center is not None:
        ax.plot(
            [scale.to_plot_scalar(center)] * 2, [bottom_y - 0.5, top_study_y + 0.6],
            color=diamond_color, linewidth=0.7, linestyle=(0, (3, 3)), alpha=0.6, zorder=1,
            gid="estimate-line",
        )  # fmt: skip
    for r in rows:
        y = r.y
        if r.kind == "study":
            x, lo, hi = scale.row_values(r)
            ax.plot([max(lo, x_lo), min(hi, x_hi)], [y, y], color=color, linewidth=0.9,
                    zorder=2, gid="study-ci", solid_capstyle="butt")  # fmt: skip
            for end, beyond, mark in ((x_lo, lo < x_lo, "<"), (x_hi, hi > x_hi, ">")):
                if beyond:
                    ax.plot([end], [y], marker=mark, markersize=4.5, color=color,
                            linestyle="none", zorder=3, clip_on=False,
                            gid="study-ci-arrow")  # fmt: skip
            # a weight may be negative (a multilevel fit's share of the estimate)
            size = max(MIN_SQUARE_PT, MAX_SQUARE_PT * math.sqrt(max(r.weight, 0.0) / w_max))
            ax.plot([x], [y], marker="s", markersize=size, color=color, linestyle="none",
                    zorder=3, gid="study-row")  # fmt: skip
            if math.isfinite(r.fitted):  # a meta-regression's fitted value and its CI
                fx, flo, fhi = (
                    min(max(float(v), x_lo), x_hi)
                    for v in scale.to_plot(np.array([r.fitted, r.fitted_lo, r.fitted_hi]))
                )
                fpoly = Polygon(
                    [(flo, y), (fx, y + DIAMOND_HALF_HEIGHT), (fhi, y),
                     (fx, y - DIAMOND_HALF_HEIGHT)],
                    closed=True, facecolor="0.6", edgecolor="0.45", linewidth=0.6,
                    zorder=2.5,
                )  # fmt: skip
                fpoly.set_gid("fitted-value")
                ax.add_patch(fpoly)
        elif r.kind in ("group-diamond", "overall"):
            x, lo, hi = (min(max(v, x_lo), x_hi) for v in scale.row_values(r))
            is_common = r.model == "common"
            edge = "0.35" if is_common else diamond_color
            if r.kind == "overall":
                face = "0.72" if is_common else diamond_color
            else:
                face = "white"
            poly = Polygon(
                [(lo, y), (x, y + DIAMOND_HALF_HEIGHT), (hi, y), (x, y - DIAMOND_HALF_HEIGHT)],
                closed=True, facecolor=face, edgecolor=edge, linewidth=1.0, zorder=3,
            )  # fmt: skip
            poly.set_gid(_DIAMOND_GIDS[(r.kind, "common" if is_common else "random")])
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
    ax.set_xlabel(xlabel if xlabel is not None else scale.axis_label, fontsize=FONT_SIZE,
                  labelpad=16.0 if lay.favours else 4.0)  # fmt: skip
    if lay.favours:
        fav_kw: dict[str, Any] = {
            "xycoords": ("data", "axes fraction"), "textcoords": "offset points",
            "va": "top", "fontsize": FONT_SIZE - 0.5, "color": "0.2", "annotation_clip": False,
        }  # fmt: skip
        left, right = lay.favours
        ax.annotate("\u2190 " + left, xy=(scale.null, 0.0), xytext=(-5.0, -17.0), ha="right",
                    gid="favours-left", **fav_kw)  # fmt: skip
        ax.annotate(right + " \u2192", xy=(scale.null, 0.0), xytext=(5.0, -17.0), ha="left",
                    gid="favours-right", **fav_kw)  # fmt: skip

    # ---- text columns -------------------------------------------------------
    base = transforms.blended_transform_factory(ax.transAxes, ax.transData)
    kw: dict[str, Any] = {"fontsize": FONT_SIZE, "va": "center", "clip_on": False}
    hkw: dict[str, Any] = {
        "fontsize": FONT_SIZE, "va": "bottom", "clip_on": False, "fontweight": "bold",
        "gid": "header-text", "linespacing": 1.1,
    }  # fmt: skip
    n_cols = len(lay.columns)
    n_w = len(lay.weight_columns)
    # one list of texts per column, its header and its horizontal alignment
    label_texts: list[Text] = []
    cell_texts: list[list[Text]] = [[] for _ in range(n_cols)]
    est_texts: list[Text] = []
    wt_texts: list[list[Text]] = [[] for _ in range(n_w)]
    notes: list[Text] = []
    for r in rows:
        y = r.y
        if r.kind == "blank":
            continue
        if r.kind == "note":
            notes.append(ax.text(0.0, y, r.text, ha="left", fontsize=FONT_SIZE - 1,
                                 va="center", clip_on=False, color="0.25",
                                 gid="note-text"))  # fmt: skip
            continue
        weight = "bold" if r.kind in ("header", "overall", "group-diamond") else "normal"
        style = "italic" if r.kind == "pi" else "normal"
        gid = "study-label" if r.kind == "study" else f"{r.kind}-label"
        indent = "   " if indented and r.kind in ("study", "group-diamond") else ""
        label_texts.append(ax.text(0.0, y, indent + r.label, ha="left", fontweight=weight,
                                   fontstyle=style, gid=gid, **kw))  # fmt: skip
        if r.kind == "header":
            for j, wtxt in enumerate(r.weight_texts):  # a study's total (multilevel fits)
                if wtxt:
                    wt_texts[j].append(ax.text(0.0, y, wtxt, ha="right", fontweight=weight,
                                               gid="weight-cluster", **kw))  # fmt: skip
            continue
        for j, cell in enumerate(r.cells):
            cell_texts[j].append(ax.text(0.0, y, cell, ha=lay.column_align[j],
                                         gid="column-text", **kw))  # fmt: skip
        est_texts.append(ax.text(0.0, y, r.estimate_text, ha="right", fontweight=weight,
                                 fontstyle=style, gid="estimate-text", **kw))  # fmt: skip
        for j, wtxt in enumerate(r.weight_texts):
            if wtxt:
                wt_texts[j].append(ax.text(
                    0.0, y, wtxt, ha="right", fontweight=weight,
                    gid="weight-text" if r.kind == "study" else "weight-total", **kw))  # fmt: skip
    h_study = ax.text(0.0, header_y, "Study", ha="left", **hkw)
    h_cols = [ax.text(0.0, header_y, h, ha=lay.column_align[j], **hkw)
              for j, h in enumerate(lay.columns)]  # fmt: skip
    h_est = ax.text(0.0, header_y, lay.estimate_header, ha="right", **hkw)
    h_wts = [ax.text(0.0, header_y, h, ha="right", multialignment="right", **hkw)
             for h in lay.weight_columns]  # fmt: skip
    if title:
        notes.append(
            ax.text(0.0, title_y, title, ha="left", va="center", fontsize=FONT_SIZE + 1.5,
                    fontweight="bold", clip_on=False, gid="title-text")
        )  # fmt: skip

    # Measure the text (in points) to lay the columns out without overlap.
    fig.draw_without_rendering()
    to_pt = 72.0 / fig.dpi

    def width_pt(ts: Sequence[Text]) -> float:
        return max((t.get_window_extent().width * to_pt for t in ts), default=0.0)

    def place(t: Text, dx_pt: float, x_axes: float) -> None:
        t.set_transform(
            base + transforms.ScaledTranslation(dx_pt / 72.0, 0.0, fig.dpi_scale_trans)
        )
        t.set_x(x_axes)

    gap = COLUMN_GAP_PT
    # left: the labels, then the extra columns; the last ends one gap before the plot
    left_cols: list[tuple[list[Text], str]] = [([*label_texts, h_study], "left")]
    left_cols += [([*cell_texts[j], h_cols[j]], lay.column_align[j]) for j in range(n_cols)]
    widths = [width_pt(ts) for ts, _ in left_cols]
    left_w = sum(w + gap for w in widths)
    cursor = -left_w
    for (ts, ha), w in zip(left_cols, widths, strict=True):
        for t in ts:
            place(t, cursor if ha == "left" else cursor + w, 0.0)
        cursor += w + gap
    for t in notes:
        place(t, -left_w, 0.0)
    # right: the estimates, then the weights, each right-aligned
    right_cols: list[list[Text]] = [[*est_texts, h_est]]
    right_cols += [[*wt_texts[j], h_wts[j]] for j in range(n_w)]
    cursor = 0.0
    for ts in right_cols:
        w = width_pt(ts)
        for t in ts:
            place(t, cursor + gap + w, 1.0)
        cursor += gap + w
    right_w = cursor

    if own_figure:
        # Size the figure so that the columns fit: left columns, plot, right columns.
        fig.draw_without_rendering()
        note_w = width_pt(notes)
        # A note may run under the plot, but not beyond the right columns.
        plot_w = max(PLOT_WIDTH_IN * 72.0, note_w - left_w + 6.0 - right_w)
        margin = 10.0
        total_w = margin + left_w + plot_w + right_w + margin
        fig.set_figwidth(total_w / 72.0)
        height_in = float(fig.get_figheight())
        bottom_in = 0.55 + fav_in
        top_in = 0.12
        fig.subplots_adjust(
            left=(margin + left_w) / total_w,
            right=1.0 - (right_w + margin) / total_w,
            bottom=bottom_in / height_in,
            top=1.0 - top_in / height_in,
        )
    return fig
