"""dask input for :func:`alliance_meta.pool_many` (the ``dask`` extra).

Two layouts are accepted, and both are pooled blockwise by the same numpy core as
in-memory input, so results equal numpy results:

* a 2-D ``dask.array`` of shape ``(n_analyses, n_studies)`` chunked along rows only
  (NaN marks an absent study, as for numpy input);
* long-format data in a ``dask.dataframe.DataFrame`` with columns ``yi``, ``vi`` and
  a group column, in any partitioning: the rows are shuffled by group first, so that
  every analysis lies in one partition (pooling parts of an analysis separately
  would be silently wrong).

The result is a lazy :class:`DaskPoolResult` whose fields are dask arrays (2-D
input) or one dask DataFrame (long input); nothing is computed until asked.
dask is imported only when such input is passed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.exceptions import InvalidStudyError

if TYPE_CHECKING:
    import pandas as pd

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
    y: FloatArray,
    v: FloatArray,
    method: str,
    test: str,
    level: float,
    nan_policy: str = "raise",
    block_info: dict[Any, Any] | None = None,
) -> FloatArray:
    """Pool one row block with :func:`pool_many`; returns ``(rows, len(DASK_FIELDS))``.

    Errors name the analysis by its row in the whole array, not in the block.
    """
    from alliance_meta.models.many import pool_many

    m = y.shape[0]
    out = np.empty((m, len(DASK_FIELDS)))
    if m == 0:
        return out
    offset = 0
    if block_info is not None and None in block_info:
        offset = int(block_info[None]["array-location"][0][0])
    try:
        res = pool_many(
            np.asarray(y, dtype=np.float64),
            np.asarray(v, dtype=np.float64),
            method=method,  # type: ignore[arg-type]
            test=test,  # type: ignore[arg-type]
            level=level,
            nan_policy=nan_policy,  # type: ignore[arg-type]
        )
    except InvalidStudyError as err:
        raise _global_row(err, offset) from None
    for j, name in enumerate(DASK_FIELDS):
        if name in ("ci_low", "ci_high", "pi_low", "pi_high"):
            iv = res.ci if name.startswith("ci") else res.pi
            out[:, j] = iv.low if name.endswith("low") else iv.high
        else:
            out[:, j] = getattr(res, name)
    return out


_ANALYSIS = re.compile(r"^analysis (\d+)")


def _global_row(err: InvalidStudyError, offset: int) -> InvalidStudyError:
    """``err`` with its ``analysis i`` (a row of one block) shifted to the whole array."""
    study = err.study
    if study is not None and offset:
        study = _ANALYSIS.sub(lambda mt: f"analysis {int(mt.group(1)) + offset}", study)
    msg = str(err)
    prefix = ", ".join(
        p for p in (
            f"study {err.study!r}" if err.study is not None else None,
            f"field {err.field!r}" if err.field is not None else None,
        ) if p
    )
    if prefix and msg.startswith(prefix + ": "):
        msg = msg[len(prefix) + 2 :]
    return InvalidStudyError(msg, study=study, field=err.field)


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
    yi: Any, vi: Any, groups: Any, *, method: str, test: str, level: float,
    nan_policy: str = "raise",
) -> DaskPoolResult:
    """Lazy blockwise pooling of dask input (see the module docstring)."""
    if groups is None:
        if not (hasattr(yi, "map_blocks") and hasattr(vi, "map_blocks")):
            raise InvalidStudyError("2-D dask input needs yi and vi as dask arrays", field="yi")
        return _pool_array(yi, vi, method, test, level, nan_policy)
    if not all(hasattr(x, "map_partitions") for x in (yi, vi, groups)):
        raise InvalidStudyError(
            "long-format dask input needs yi, vi and groups as dask Series of one "
            "DataFrame (e.g. ddf.yi, ddf.vi, ddf.group)",
            field="groups",
        )
    return _pool_frame(yi, vi, groups, method, test, level, nan_policy)


def _pool_array(
    yi: Any, vi: Any, method: str, test: str, level: float, nan_policy: str
) -> DaskPoolResult:
    import dask.array as da

    if yi.ndim != 2 or vi.ndim != 2 or yi.shape != vi.shape:
        raise InvalidStudyError("dask yi and vi must be 2-D arrays of the same shape", field="vi")
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
        nan_policy,
        dtype=np.float64,
        chunks=(yi.chunks[0], (len(DASK_FIELDS),)),
        meta=np.empty((0, 0)),
    )
    fields = {name: block[:, j] for j, name in enumerate(DASK_FIELDS)}
    return DaskPoolResult(method, test, level, fields=fields)


def _partition_pool(
    part: pd.DataFrame, method: str, test: str, level: float, nan_policy: str
) -> pd.DataFrame:
    from alliance_meta.models.many import pool_many

    if len(part) == 0:
        return _empty_frame()
    res = pool_many(
        part["yi"].to_numpy(np.float64),
        part["vi"].to_numpy(np.float64),
        part[_GROUP].to_numpy(),
        method=method,  # type: ignore[arg-type]
        test=test,  # type: ignore[arg-type]
        level=level,
        nan_policy=nan_policy,  # type: ignore[arg-type]
    )
    frame: pd.DataFrame = res.to_frame()[list(DASK_FIELDS_FRAME)]
    return frame


#: The group column of the frame :func:`_pool_frame` shuffles.
_GROUP = "__alliance_meta_group__"


DASK_FIELDS_FRAME = (
    "k", "estimate", "se", "statistic", "pvalue", "df", "ci_low", "ci_high", "pi_low",
    "pi_high", "tau2", "tau2_se", "Q", "Q_df", "Q_pvalue", "I2", "H2", "iterations", "converged",
)


def _empty_frame() -> pd.DataFrame:
    import pandas as pd
    cols: dict[str, Any] = {c: pd.Series(dtype=np.float64) for c in DASK_FIELDS_FRAME}
    cols["k"] = pd.Series(dtype=np.int64)
    cols["iterations"] = pd.Series(dtype=np.int64)
    cols["converged"] = pd.Series(dtype=bool)
    frame: pd.DataFrame = pd.DataFrame(cols)
    frame.index.name = "group"
    return frame


def _pool_frame(
    yi: Any, vi: Any, groups: Any, method: str, test: str, level: float, nan_policy: str
) -> DaskPoolResult:
    import dask.dataframe as dd

    # one frame of the three columns, shuffled so that each group lies in one
    # partition: pooling the parts of a group that spans partitions separately
    # would return several partial analyses under one label
    frame = dd.concat(  # type: ignore[no-untyped-call]
        [yi.rename("yi"), vi.rename("vi"), groups.rename(_GROUP)], axis=1
    )
    frame = frame.shuffle(on=_GROUP)
    out = frame.map_partitions(
        _partition_pool, method, test, level, nan_policy, meta=_empty_frame(),
    )
    return DaskPoolResult(method, test, level, frame=out)


__all__ = ["DASK_FIELDS", "DaskPoolResult", "is_dask_collection", "pool_many_dask"]
