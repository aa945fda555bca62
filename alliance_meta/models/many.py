"""Many analyses at once: :func:`pool_many` and its results.

Every analysis is pooled by the same batched core as :func:`random_effects`, in
chunks of rows (:mod:`alliance_meta.core.layout`); the results hold one array per
field.  dask collections are pooled blockwise by :mod:`alliance_meta.models.dask`.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt

from alliance_meta._optional import pandas_instance
from alliance_meta._types import FloatArray, Measure, Method, NanPolicy, Test
from alliance_meta.core.estimators import MOMENT_METHODS, CoreMethod, tau2_se
from alliance_meta.core.heterogeneity import concat_qprofiles, i2_h2, q_pvalue, qprofile
from alliance_meta.core.inference import (
    critical_value,
    prediction_interval,
    residual_df,
    two_sided_pvalue,
)
from alliance_meta.core.kernel import in_unit_range
from alliance_meta.core.layout import (
    LongData,
    ManyData,
    fit_chunks,
    iter_kernels,
    map_chunks,
    row_indices,
)
from alliance_meta.core.vcov import TESTS, CoreTest
from alliance_meta.exceptions import (
    ConvergenceWarning,
    DataOmittedWarning,
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models._inputs import (
    as_float_array,
    check_level,
    check_measure,
    check_method,
    check_test,
    long_columns,
)
from alliance_meta.models.dask import is_dask_collection
from alliance_meta.models.pooling import frame_columns, reset_message
from alliance_meta.results.base import IntervalArray, freeze_arrays, readonly
from alliance_meta.results.display import ResultDisplay
from alliance_meta.results.summary import frame_summary

if TYPE_CHECKING:
    import pandas as pd
    from statsmodels.iolib.summary import Summary

__all__ = ["ManyHeterogeneityCI", "ManyPoolResult", "pool_many"]


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class ManyHeterogeneityCI(ResultDisplay):
    """Q-profile intervals for τ², I² and H² of many analyses."""

    _repr_fields = ('level',)

    tau2: IntervalArray
    I2: IntervalArray
    H2: IntervalArray
    level: float
    groups: npt.NDArray[Any] = attrs.field(eq=False, repr=False)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd
        frame: pd.DataFrame = pd.DataFrame(
            {
                "tau2_low": self.tau2.low,
                "tau2_high": self.tau2.high,
                "I2_low": self.I2.low,
                "I2_high": self.I2.high,
                "H2_low": self.H2.low,
                "H2_high": self.H2.high,
            },
            index=pd.Index(self.groups, name="group"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary of the bounds' distribution over the analyses."""
        return frame_summary(
            "Q-profile confidence intervals of many analyses",
            [("Analyses:", str(len(self.groups))), ("Level:", f"{self.level:g}")],
            _describe(self.to_frame()),
            ["Rows: quantiles over the analyses; to_frame() gives each analysis."],
        )

    def __str__(self) -> str:
        return str(self.summary())


def _describe(frame: pd.DataFrame) -> pd.DataFrame:
    """Minimum, quartiles and maximum of each column over the rows."""
    import pandas as pd
    q: pd.DataFrame = frame.quantile([0.0, 0.25, 0.5, 0.75, 1.0])
    q.index = pd.Index(["min", "25%", "median", "75%", "max"])
    return q


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class ManyPoolResult(ResultDisplay):
    """Pooled results of many analyses; every field is an array with one entry each.

    Field names match :class:`PoolResult`.  ``groups`` holds the sorted group labels
    (or ``0..m-1`` for 2-D input).  The estimation results (``estimate``, ``se``,
    ``tau2``, ``Q``, ``k``, ``iterations``, ``converged``) are computed by
    :func:`pool_many`; the quantities derived from them and the data (``tau2_se``,
    ``statistic``, ``pvalue``, ``df``, ``ci``, ``pi``, ``Q_df``, ``Q_pvalue``,
    ``I2``, ``H2``) are computed on first access by the same core functions as for
    :class:`PoolResult`, and cached, like statsmodels' results (p-values over
    millions of analyses cost more than the pooling itself, and many uses never
    read them; the standard error of a DL τ² needs a weight moment that nothing
    else does).
    """

    _repr_fields = ('method', 'test', 'level', 'measure')

    groups: npt.NDArray[Any] = attrs.field(eq=False)
    estimate: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    tau2: FloatArray = attrs.field(eq=False)
    Q: FloatArray = attrs.field(eq=False)
    k: npt.NDArray[np.int64] = attrs.field(eq=False)
    iterations: npt.NDArray[np.int64] = attrs.field(eq=False)
    converged: npt.NDArray[np.bool_] = attrs.field(eq=False)
    method: CoreMethod
    test: CoreTest
    level: float
    measure: Measure
    #: τ²/vt (metafor's typical within-study variance), from which I² and H² follow
    _h: FloatArray = attrs.field(eq=False, repr=False, alias="h")
    _data: ManyData = attrs.field(
        eq=False, repr=False, alias="data", metadata={"cache": True}
    )
    _tau2_se_known: FloatArray | None = attrs.field(
        default=None, eq=False, repr=False, alias="tau2_se_known", metadata={"cache": True}
    )
    #: studies left out under ``nan_policy="omit"``: input rows (long format) or flat
    #: positions (2-D input)
    omitted: npt.NDArray[np.int64] = attrs.field(
        factory=lambda: np.empty(0, dtype=np.int64), eq=False, repr=False
    )

    @functools.cached_property
    def tau2_se(self) -> FloatArray:
        """Standard error of τ² (NaN for EE and where k = 1), as :class:`PoolResult`."""
        if self._tau2_se_known is not None:
            return self._tau2_se_known
        out = np.empty(len(self))
        method = self.method
        for kern, rows in iter_kernels(self._data, moments=method in MOMENT_METHODS):
            out[rows] = tau2_se(kern, method, self.tau2[rows])
        return readonly(out)

    @functools.cached_property
    def df(self) -> FloatArray:
        """Degrees of freedom of the test (NaN under z, and where k = 1)."""
        t_ref = TESTS[self.test].t_reference
        return readonly(residual_df(self.k, 1, t_ref))

    @functools.cached_property
    def _tests(self) -> tuple[FloatArray, FloatArray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = self.estimate / self.se
        return readonly(stat), readonly(two_sided_pvalue(stat, self.df))

    @property
    def statistic(self) -> FloatArray:
        """z or t statistic of the pooled estimate."""
        return self._tests[0]

    @property
    def pvalue(self) -> FloatArray:
        """Two-sided p-value of the pooled estimate."""
        return self._tests[1]

    @functools.cached_property
    def _crit(self) -> FloatArray:
        return critical_value(self.df, self.level)

    @functools.cached_property
    def ci(self) -> IntervalArray:
        """Confidence interval of the pooled estimate."""
        half = self._crit * self.se
        return IntervalArray(self.estimate - half, self.estimate + half)

    @functools.cached_property
    def pi(self) -> IntervalArray:
        """Prediction interval (metafor's ``predict``)."""
        lo, hi = prediction_interval(self.estimate, self.se, self.tau2, self._crit)
        return IntervalArray(lo, hi)

    @functools.cached_property
    def Q_df(self) -> FloatArray:
        """Degrees of freedom of Q, ``k - 1``."""
        return readonly((self.k - 1).astype(np.float64))

    @functools.cached_property
    def Q_pvalue(self) -> FloatArray:
        """p-value of the Q test of heterogeneity."""
        return readonly(q_pvalue(self.Q, self.Q_df))

    @functools.cached_property
    def _i2_h2(self) -> tuple[FloatArray, FloatArray]:
        ones = np.ones_like(self._h)
        i2, h2 = i2_h2(self.Q, self.Q_df, self._h, ones, self.method == "EE")
        return readonly(i2), readonly(h2)

    @property
    def I2(self) -> FloatArray:
        """I² in percent."""
        return self._i2_h2[0]

    @property
    def H2(self) -> FloatArray:
        """H²."""
        return self._i2_h2[1]

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    def heterogeneity_ci(self, level: float | None = None) -> ManyHeterogeneityCI:
        """Q-profile CIs for every analysis, computed by the vectorised core."""
        lv = self.level if level is None else check_level(level)
        parts = []
        order_parts = []
        for (_, rows), qp_part in map_chunks(
            lambda kr: qprofile(kr[0], lv), iter_kernels(self._data)
        ):
            parts.append(qp_part)
            order_parts.append(row_indices(rows))
        qp = concat_qprofiles(parts)
        order = np.concatenate(order_parts)
        fields = {}
        for name in ("tau2_low", "tau2_high", "I2_low", "I2_high", "H2_low", "H2_high"):
            arr = np.empty(order.size)
            arr[order] = getattr(qp, name)
            fields[name] = arr
        return ManyHeterogeneityCI(
            tau2=IntervalArray(fields["tau2_low"], fields["tau2_high"]),
            I2=IntervalArray(fields["I2_low"], fields["I2_high"]),
            H2=IntervalArray(fields["H2_low"], fields["H2_high"]),
            level=lv,
            groups=self.groups,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per analysis, indexed by group."""
        import pandas as pd
        cols = frame_columns(self)
        cols.update(iterations=self.iterations, converged=self.converged)
        frame: pd.DataFrame = pd.DataFrame(cols, index=pd.Index(self.groups, name="group"))
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary of the results' distribution over the analyses."""
        import pandas as pd
        cols = ["k", "estimate", "se", "pvalue", "tau2", "Q", "I2"]
        frame = pd.DataFrame({c: np.asarray(getattr(self, c), dtype=float) for c in cols})
        n_bad = int((~self.converged).sum())
        return frame_summary(
            "Many meta-analyses",
            [
                ("Analyses:", str(len(self))),
                ("Studies:", str(int(self.k.sum()))),
                ("Method:", self.method),
                ("Test:", self.test),
                ("Level:", f"{self.level:g}"),
                ("Not converged:", str(n_bad)),
            ],
            _describe(frame),
            ["Rows: quantiles over the analyses; to_frame() gives each analysis."],
        )

    def __str__(self) -> str:
        return str(self.summary())


def _owned(arr: FloatArray, source: object) -> FloatArray:
    """``arr``, copied unless it is a fresh array (not the caller's, nor a view of it).

    The result reads its input again later (``tau2_se``, ``heterogeneity_ci()``), so
    it must not share memory with arrays the caller may change.
    """
    if arr is source or arr.base is not None or not arr.flags.owndata:
        out: FloatArray = arr.copy()
        return out
    return arr


def _prepare_padded(y: FloatArray, v: FloatArray, nan_policy: NanPolicy) -> tuple[
    FloatArray, FloatArray, bool, npt.NDArray[np.int64], bool
]:
    """Validate 2-D input: ``(y, v, complete, omitted, unit)``.

    ``complete``: no study is absent.  ``min``/``max`` propagate NaN and expose ±inf,
    so four reductions prove every value present and finite and every variance
    positive.  Anything else goes to :func:`_validate_padded`, which names the
    offending entry; under ``nan_policy="omit"`` an entry with NaN in only one of
    ``yi``, ``vi`` is made absent and reported (``omitted``: flat positions).
    """
    none = np.empty(0, dtype=np.int64)
    if y.shape == v.shape and y.size > 0:
        vmin, vmax, ymin, ymax = float(v.min()), float(v.max()), float(y.min()), float(y.max())
        if vmin > 0 and vmax < math.inf and math.isfinite(ymin) and math.isfinite(ymax):
            return y, v, True, none, in_unit_range(vmin, vmax, max(ymax, -ymin))
    omitted = none
    if nan_policy == "omit" and y.shape == v.shape:
        half = np.isnan(y) != np.isnan(v)
        if half.any():
            omitted = np.flatnonzero(half).astype(np.int64)
            y = np.where(half, np.nan, y)
            v = np.where(half, np.nan, v)
    _validate_padded(y, v)
    return y, v, False, omitted, _in_unit_range(y, v)


def _validate_padded(Y: FloatArray, V: FloatArray) -> None:
    if Y.shape != V.shape:
        raise InvalidStudyError(f"yi has shape {Y.shape} but vi has shape {V.shape}", field="vi")
    if Y.size == 0:
        raise InvalidStudyError("no studies given (empty input)", field="yi")
    ny, nv = np.isnan(Y), np.isnan(V)
    mismatch = ny != nv
    if mismatch.any():
        i, j = np.argwhere(mismatch)[0]
        raise InvalidStudyError(
            "NaN marks an absent study and must appear in both yi and vi "
            "(nan_policy='omit' makes such studies absent)",
            study=f"analysis {i}, study {j}",
            field="vi" if ny[i, j] else "yi",
        )
    for field, arr in (("yi", Y), ("vi", V)):
        bad = np.isinf(arr)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InvalidStudyError(
                f"value is {arr[i, j]!r} (must be finite)", study=f"analysis {i}, study {j}",
                field=field,
            )
    bad = V <= 0
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InvalidStudyError(
            f"sampling variance must be > 0, got {V[i, j]!r}",
            study=f"analysis {i}, study {j}",
            field="vi",
        )
    empty = (~ny).sum(axis=1) == 0
    if empty.any():
        i = int(np.argmax(empty))
        raise InvalidStudyError("analysis has no studies (empty group)", study=f"analysis {i}",
                                field="yi")


def _factorize(
    g: npt.NDArray[Any],
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted unique labels, the code of each row and the count of each code.

    Like ``np.unique(..., return_inverse=True)``.  Non-negative integer labels of
    moderate range take an O(n) path through ``bincount`` instead of a sort; labels
    that are already ``0..G-1`` are their own codes.  Other labels go through
    ``pandas.factorize`` (hashing, then a sort of the unique labels only), which is
    2-6x faster than ``np.unique`` for string labels (1.2 million rows of 100,000
    gene-like names: 115-180 ms against 340-670 ms).  Missing labels have been
    refused or dropped by :func:`_check_labels`.
    """
    if g.size and g.dtype.kind in "iu":
        lo, hi = int(g.min()), int(g.max())
        if lo >= 0 and hi < 4 * g.size + 1024:
            counts = np.bincount(g, minlength=hi + 1).astype(np.int64, copy=False)
            present = counts > 0
            if present.all():
                return np.arange(hi + 1, dtype=g.dtype), g.astype(np.int64, copy=False), counts
            labels = np.flatnonzero(present).astype(g.dtype)
            remap = np.cumsum(present, dtype=np.int64) - 1
            return labels, remap[g], counts[present]
    if g.dtype.kind in "iu":  # wide-ranging integers: a sort is as fast as hashing
        labels, inv = np.unique(g, return_inverse=True)
        codes = inv.astype(np.int64).reshape(-1)
        return labels, codes, np.bincount(codes, minlength=labels.size).astype(np.int64)
    import pandas as pd

    inverse, uniques = pd.factorize(g, sort=True, use_na_sentinel=False)
    labels = np.asarray(uniques)
    codes = np.asarray(inverse, dtype=np.int64)
    return labels, codes, np.bincount(codes, minlength=labels.size).astype(np.int64)


#: Kinds of label that name an analysis: ``pandas.api.types.infer_dtype`` results.
_LABEL_KINDS = frozenset({
    "integer", "string", "bytes", "floating", "boolean", "categorical",
    "date", "datetime", "datetime64", "timedelta", "timedelta64", "period", "decimal",
})


def _as_labels(groups: object) -> npt.NDArray[Any]:
    """The group labels as an array, refusing labels of mixed kinds.

    ``np.asarray([1, "1"])`` makes both the string ``"1"``, merging two groups:
    labels are read as objects and their kinds checked first.
    """
    if isinstance(groups, np.ndarray) and groups.dtype != object:
        return groups
    if pandas_instance(groups, "Series", "Index", "Categorical"):
        arr = np.asarray(groups)
    else:
        arr = np.asarray(groups, dtype=object) if not isinstance(groups, np.ndarray) else groups
        if arr.ndim != 1:
            arr = np.asarray(groups)
    if arr.dtype == object and arr.size:
        import pandas as pd

        kind = pd.api.types.infer_dtype(arr, skipna=True)
        if kind in _LABEL_KINDS and np.asarray(pd.isna(arr)).any():
            return arr  # missing labels: refused or dropped by _validate_long
        if kind == "mixed-integer-float":  # 1 and 2.5: numbers, compared as numbers
            return arr.astype(np.float64)
        if kind not in _LABEL_KINDS and kind != "empty":
            kinds = sorted({type(x).__name__ for x in arr.tolist() if not pd.isna(x)})
            raise InvalidStudyError(
                f"group labels mix kinds ({', '.join(kinds)}): 1 and '1' would name "
                "different analyses but look alike; use one kind of label",
                field="groups",
            )
        if kind == "integer":
            return arr.astype(np.int64)
        if kind == "string":
            return arr.astype(str)
    return arr


def _missing_labels(g: npt.NDArray[Any]) -> npt.NDArray[np.bool_] | None:
    """Where a group label is missing (None, NaN, NaT); None if none can be."""
    if g.dtype.kind in "iubUS":
        return None
    if g.dtype.kind == "f":
        out: npt.NDArray[np.bool_] = np.isnan(g)
    else:
        import pandas as pd

        out = np.asarray(pd.isna(g), dtype=bool)
    return out if out.any() else None


def _validate_long(
    y: FloatArray, v: FloatArray, g: npt.NDArray[Any], nan_policy: NanPolicy
) -> tuple[FloatArray, FloatArray, npt.NDArray[Any], npt.NDArray[np.int64], bool]:
    """Validate long-format input: ``(y, v, groups, omitted, unit)``.

    Four reductions prove every effect and variance present and finite and every
    variance positive; otherwise the offending row is named (under
    ``nan_policy="raise"``), or rows with a missing effect, variance or group label
    are dropped and reported (``"omit"``: their input positions in ``omitted``).
    """
    none = np.empty(0, dtype=np.int64)
    miss_g = _missing_labels(g)
    if y.size > 0:
        vmin, vmax, ymin, ymax = float(v.min()), float(v.max()), float(y.min()), float(y.max())
        ok = vmin > 0 and vmax < math.inf and math.isfinite(ymin) and math.isfinite(ymax)
        if ok and miss_g is None:
            return y, v, g, none, in_unit_range(vmin, vmax, max(ymax, -ymin))
    if nan_policy == "omit":
        drop = np.isnan(y) | np.isnan(v)
        if miss_g is not None:
            drop |= miss_g
        if drop.any():
            omitted = np.flatnonzero(drop).astype(np.int64)
            keep = ~drop
            y, v, g = y[keep], v[keep], g[keep]
            if y.size == 0:
                raise InvalidStudyError(
                    "every row has a missing effect, variance or group label", field="yi"
                )
            kept = np.flatnonzero(keep)
            if not (float(v.min()) > 0 and math.isfinite(float(v.max()))
                    and math.isfinite(float(y.min())) and math.isfinite(float(y.max()))):
                _name_bad_long(y, v, kept)
            return y, v, g, omitted, _in_unit_range(y, v)
    if miss_g is not None:
        i = int(np.argmax(miss_g))
        raise InvalidStudyError(
            f"group label is missing ({g[i]!r}); nan_policy='omit' drops such rows",
            study=f"#{i}",
            field="groups",
        )
    _name_bad_long(y, v, np.arange(y.size))
    return y, v, g, none, True  # not reached: _name_bad_long raises


def _name_bad_long(y: FloatArray, v: FloatArray, rows: npt.NDArray[np.intp]) -> None:
    """Raise for the first invalid effect or variance, naming its input row."""
    if y.size == 0:
        raise InvalidStudyError("no studies given (empty input)", field="yi")
    for field, arr in (("yi", y), ("vi", v)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            hint = " (nan_policy='omit' drops rows with missing values)" if np.isnan(
                arr[i]
            ) else ""
            raise InvalidStudyError(
                f"value is {float(arr[i])!r} (must be finite){hint}",
                study=f"#{int(rows[i])}",
                field=field,
            )
    bad = v <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidStudyError(
            f"sampling variance must be > 0, got {float(v[i])!r}",
            study=f"#{int(rows[i])}",
            field="vi",
        )


def _many_result(
    fit: dict[str, npt.NDArray[Any]],
    labels: npt.NDArray[Any],
    method: CoreMethod,
    test: CoreTest,
    level: float,
    measure: Measure,
    data: ManyData,
    omitted: npt.NDArray[np.int64],
) -> ManyPoolResult:
    return ManyPoolResult(
        groups=labels,
        estimate=fit["estimate"],
        se=fit["se"],
        tau2=fit["tau2"],
        Q=fit["QE"],
        k=fit["k"],
        iterations=fit["iterations"],
        converged=fit["converged"],
        method=method,
        test=test,
        level=level,
        measure=measure,
        h=fit["h"],
        data=data,
        tau2_se_known=fit.get("tau2_se"),
        omitted=omitted,
    )


def pool_many(
    yi: npt.ArrayLike | str | None = None,
    vi: npt.ArrayLike | str | None = None,
    groups: npt.ArrayLike | str | None = None,
    *,
    data: object = None,
    method: Method = "REML",
    test: Test = "z",
    level: float = 0.95,
    measure: Measure = "GEN",
    nan_policy: NanPolicy = "raise",
) -> ManyPoolResult:
    """Pool many meta-analyses at once with one call of the vectorised core.

    Parameters
    ----------
    yi, vi : array_like
        Either 1-D long-format effects and variances with ``groups`` labels (in any
        order, any group sizes), or 2-D arrays of shape ``(n_analyses, n_studies)``
        where NaN (in both) marks an absent study.
    groups : array_like, optional
        Analysis label of each row of 1-D input, all of one kind (numbers, or
        strings, ...).  Results are ordered by the sorted unique labels, available as
        ``result.groups``.
    data : DataFrame, optional
        A long-format data frame (or any object with the DataFrame interchange
        protocol): ``yi``, ``vi`` and ``groups`` then name its columns (``yi`` and
        ``vi`` by default), e.g. ``pool_many(data=df, groups="outcome")``.
    method, test, level, measure
        As for :func:`random_effects`.
    nan_policy : {"raise", "omit"}
        ``"raise"`` (default): a missing (NaN) effect or variance of long-format
        input, a missing group label, or a NaN in only one of ``yi``, ``vi`` of 2-D
        input raises, naming the row.  ``"omit"``: such studies are left out, a
        :class:`~alliance_meta.exceptions.DataOmittedWarning` says how many and
        which, and ``result.omitted`` holds their positions (input rows of long
        format, flat positions of 2-D input).  Infinite values always raise.

    Returns
    -------
    ManyPoolResult
        Arrays with the field names of :class:`PoolResult`.

    Raises
    ------
    InvalidStudyError
        For invalid input, naming the row (or analysis and study) and the field.

    Notes
    -----
    dask input (the ``dask`` extra) -- a 2-D dask array chunked along rows, or dask
    Series ``yi``, ``vi``, ``groups`` of one DataFrame -- returns a lazy
    :class:`alliance_meta.models.dask.DaskPoolResult` computed blockwise by the same
    core (long-format partitions are regrouped so that no analysis spans two).

    The result keeps its own copy of the input (the fields computed on first
    access, ``tau2_se`` and ``heterogeneity_ci()``, read it), so changing the
    caller's arrays afterwards changes nothing.  The result's own arrays are
    read-only.

    Row ``i`` equals ``random_effects(yi=..., vi=...)`` on that analysis alone (the
    scalar API is the m = 1 case of the same core).  Data are processed in chunks
    of rows.  Long-format input is read in input order for EE, DL, HS and HSk, whose
    fits need only per-analysis weight moments (scatter-added, no sort); for the
    other estimators, and for ``heterogeneity_ci``, its groups are put in order once,
    sorted by size so that padding stays below twice the data.
    """
    core_method = check_method(method)
    core_test = check_test(test)
    lv = check_level(level)
    measure = check_measure(measure)
    if nan_policy not in ("raise", "omit"):
        raise ModelSpecificationError(
            f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}"
        )
    if is_dask_collection(yi):
        from alliance_meta.models.dask import pool_many_dask

        return pool_many_dask(  # type: ignore[return-value]
            yi, vi, groups, method=core_method, test=core_test, level=lv,
            nan_policy=nan_policy,
        )
    if data is not None:
        yi, vi, groups = long_columns(data, yi, vi, groups)
    elif yi is None or vi is None:
        raise ModelSpecificationError("give yi and vi (arrays), or data= with its columns")
    y = _owned(as_float_array(yi, "yi"), yi)
    v = _owned(as_float_array(vi, "vi"), vi)
    if groups is None:
        if y.ndim != 2:
            raise InvalidStudyError(
                "pool_many needs 2-D (n_analyses, n_studies) arrays or 1-D arrays with groups",
                field="yi",
            )
        y, v, complete, omitted, unit = _prepare_padded(y, v, nan_policy)
        data = ManyData(y, v, complete=complete, unit=unit)
        labels: npt.NDArray[Any] = np.arange(y.shape[0])
        m = y.shape[0]
    else:
        g = _as_labels(groups)
        if y.ndim != 1 or v.ndim != 1 or g.ndim != 1:
            raise InvalidStudyError("with groups, yi, vi and groups must be 1-D", field="groups")
        if not (y.size == v.size == g.size):
            raise InvalidStudyError(
                f"lengths differ: yi {y.size}, vi {v.size}, groups {g.size}", field="groups"
            )
        y, v, g, omitted, unit = _validate_long(y, v, g, nan_policy)
        labels, codes, counts = _factorize(g)
        m = labels.size
        data = ManyData(None, None, LongData(y, v, codes, counts), unit=unit)
    if omitted.size:
        shown = ", ".join(str(int(i)) for i in omitted[:10])
        more = f", ... ({omitted.size} in all)" if omitted.size > 10 else ""
        where = "rows" if groups is not None else "positions (flat) of studies"
        warnings.warn(
            f"omitted {omitted.size} studies with a missing value (nan_policy='omit'): "
            f"{where} {shown}{more}; see result.omitted",
            DataOmittedWarning,
            stacklevel=2,
        )
    fit = fit_chunks(data, m, core_method, core_test)
    n_bad = int((~fit["converged"]).sum())
    if n_bad:
        warnings.warn(
            f"the {core_method} estimator did not converge for {n_bad} of {m} analyses "
            "(see result.converged)",
            ConvergenceWarning,
            stacklevel=2,
        )
    n_differs = int(fit["tau2_differs"].sum())
    if n_differs:
        warnings.warn(
            reset_message(core_method, f" in {n_differs} of {m} analyses"),
            ConvergenceWarning,
            stacklevel=2,
        )
    if (fit["k"] == 1).any():
        warnings.warn(
            f"{int((fit['k'] == 1).sum())} analyses have k = 1: tau^2 is 0 and inference uses z",
            FewStudiesWarning,
            stacklevel=2,
        )
    return _many_result(fit, labels, core_method, core_test, lv, measure, data, omitted)


def _in_unit_range(y: FloatArray, v: FloatArray) -> bool:
    """Whether validated data need no rescaling (absent studies are NaN in both)."""
    vmin, vmax = float(np.nanmin(v)), float(np.nanmax(v))
    ymax = max(float(np.nanmax(y)), -float(np.nanmin(y)))
    return in_unit_range(vmin, vmax, ymax)
