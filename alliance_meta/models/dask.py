"""dask input for :func:`alliance_meta.pool_many` (the ``dask`` extra).

Two layouts are accepted, and both are pooled blockwise by the same numpy core as
in-memory input, so results equal numpy results:

* a 2-D ``dask.array`` of shape ``(n_analyses, n_studies)`` chunked along rows only
  (NaN marks an absent study, as for numpy input);
* long-format data in a ``dask.dataframe.DataFrame`` with columns ``yi``, ``vi`` and
  a group column, partitioned so that no analysis spans two partitions (e.g. after
  ``set_index(group)`` or ``shuffle(group)``).

The result is a lazy :class:`DaskPoolResult` whose fields are dask arrays (2-D
input) or one dask DataFrame (long input); nothing is computed until asked.
dask is imported only when such input is passed.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pandas as pd

from alliance_meta._types import FloatArray

#: Fields of :class:`~alliance_meta.ManyPoolResult` computed blockwise.
DASK_FIELDS: tuple[str, ...] = (
    "estimate", "se", "statistic", "pvalue", "df", "ci_low", "ci_high", "pi_low", "pi_high",
    "tau2", "tau2_se", "Q", "Q_df", "Q_pvalue", "I2", "H2", "k", "iterations", "converged",
)


def is_dask_collection(obj: object) -> bool:
    """True for dask arrays/dataframes, without importing dask unless it is loaded."""
    mod = type(obj).__module__
    return mod.startswith("dask.") or mod.startswith("dask_expr")


def _block_fields(
    y: FloatArray, v: FloatArray, method: str, test: str, level: float
) -> FloatArray:
    """Pool one row block with :func:`pool_many`; returns ``(rows, len(DASK_FIELDS))``."""
    from alliance_meta.models.many import pool_many

    m = y.shape[0]
    out = np.empty((m, len(DASK_FIELDS)))
    if m == 0:
        return out
    res = pool_many(
        np.asarray(y, dtype=np.float64),
        np.asarray(v, dtype=np.float64),
        method=method,  # type: ignore[arg-type]
        test=test,  # type: ignore[arg-type]
        level=level,
    )
    for j, name in enumerate(DASK_FIELDS):
        if name in ("ci_low", "ci_high", "pi_low", "pi_high"):
            iv = res.ci if name.startswith("ci") else res.pi
            out[:, j] = iv.low if name.endswith("low") else iv.high
        else:
            out[:, j] = getattr(res, name)
    return out


@attrs.frozen
class DaskPoolResult:
    """Lazy pooled results of dask input.

    ``fields`` maps each name of :data:`DASK_FIELDS` to a 1-D dask array (2-D input),
    or ``frame`` holds one dask DataFrame indexed by group (long input).  Call
    :meth:`compute` for a numpy-backed dict, or write fields with ``dask.array.to_npy_stack``
    / ``to_zarr`` without materialising them.
    """

    method: str
    test: str
    level: float
    fields: dict[str, Any] | None = attrs.field(default=None, eq=False)
    frame: Any = attrs.field(default=None, eq=False)

    def __getattr__(self, name: str) -> Any:
        if name in DASK_FIELDS:
            if self.fields is not None:
                return self.fields[name]
            return self.frame[name]
        raise AttributeError(name)

    def compute(self) -> dict[str, np.ndarray[Any, Any]] | pd.DataFrame:
        import dask.base

        if self.fields is not None:
            (vals,) = dask.base.compute(self.fields)  # type: ignore[no-untyped-call]
            return {k: np.asarray(a) for k, a in vals.items()}
        frame: pd.DataFrame = self.frame.compute()
        return frame


def pool_many_dask(
    yi: Any, vi: Any, groups: Any, *, method: str, test: str, level: float
) -> DaskPoolResult:
    """Lazy blockwise pooling of dask input (see the module docstring)."""
    if groups is None:
        if not (hasattr(yi, "map_blocks") and hasattr(vi, "map_blocks")):
            raise TypeError("2-D dask input needs yi and vi as dask arrays")
        return _pool_array(yi, vi, method, test, level)
    if not all(hasattr(x, "map_partitions") for x in (yi, vi, groups)):
        raise TypeError(
            "long-format dask input needs yi, vi and groups as dask Series of one "
            "DataFrame (e.g. ddf.yi, ddf.vi, ddf.group)"
        )
    return _pool_frame(yi, vi, groups, method, test, level)


def _pool_array(yi: Any, vi: Any, method: str, test: str, level: float) -> DaskPoolResult:
    import dask.array as da

    if yi.ndim != 2 or vi.ndim != 2 or yi.shape != vi.shape:
        raise ValueError("dask yi and vi must be 2-D arrays of the same shape")
    n = yi.shape[1]
    # one chunk along studies: every analysis lies within one block
    yi = yi.rechunk({1: n})
    vi = vi.rechunk(yi.chunks)
    block = da.map_blocks(  # type: ignore[no-untyped-call]
        _block_fields,
        yi,
        vi,
        method,
        test,
        level,
        dtype=np.float64,
        chunks=(yi.chunks[0], (len(DASK_FIELDS),)),
        meta=np.empty((0, 0)),
    )
    fields = {name: block[:, j] for j, name in enumerate(DASK_FIELDS)}
    return DaskPoolResult(method, test, level, fields=fields)


def _partition_pool(
    y: pd.Series, v: pd.Series, g: pd.Series, method: str, test: str, level: float
) -> pd.DataFrame:
    from alliance_meta.models.many import pool_many

    if len(y) == 0:
        return _empty_frame()
    res = pool_many(
        y.to_numpy(np.float64),
        v.to_numpy(np.float64),
        g.to_numpy(),
        method=method,  # type: ignore[arg-type]
        test=test,  # type: ignore[arg-type]
        level=level,
    )
    frame: pd.DataFrame = res.to_frame()[list(DASK_FIELDS_FRAME)]
    return frame


DASK_FIELDS_FRAME = (
    "k", "estimate", "se", "statistic", "pvalue", "df", "ci_low", "ci_high", "pi_low",
    "pi_high", "tau2", "tau2_se", "Q", "Q_df", "Q_pvalue", "I2", "H2", "iterations", "converged",
)


def _empty_frame() -> pd.DataFrame:
    cols: dict[str, Any] = {c: pd.Series(dtype=np.float64) for c in DASK_FIELDS_FRAME}
    cols["k"] = pd.Series(dtype=np.int64)
    cols["iterations"] = pd.Series(dtype=np.int64)
    cols["converged"] = pd.Series(dtype=bool)
    frame: pd.DataFrame = pd.DataFrame(cols)
    frame.index.name = "group"
    return frame


def _pool_frame(
    yi: Any, vi: Any, groups: Any, method: str, test: str, level: float
) -> DaskPoolResult:
    import dask.dataframe as dd

    frame = dd.map_partitions(  # type: ignore[no-untyped-call]
        _partition_pool, yi, vi, groups, method, test, level, meta=_empty_frame(),
        align_dataframes=False,
    )
    return DaskPoolResult(method, test, level, frame=frame)


__all__ = ["DASK_FIELDS", "DaskPoolResult", "is_dask_collection", "pool_many_dask"]
