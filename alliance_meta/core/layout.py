"""Array layout of many analyses: padding, long format, chunks and threads.

Analyses arrive as padded 2-D arrays (NaN where a study is absent) or in long
format (one row per study with a group code).  This module turns either into the
kernels of :mod:`alliance_meta.core.kernel`, chunk by chunk so that temporaries stay
in cache: long-format groups are sorted once by size (so padding stays below twice
the data), or read ungrouped by a scatter kernel where only weight moments are
needed.  :func:`map_chunks` runs chunks on a few threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from alliance_meta.core.arrays import FloatArray
from alliance_meta.core.estimators import MOMENT_METHODS, CoreMethod
from alliance_meta.core.kernel import Kernel, kernel_from_long, kernel_from_padded
from alliance_meta.core.stopping import StopRule
from alliance_meta.core.univariate import CoreFit, concat_fits, fit, fit_slim, permute_rows
from alliance_meta.core.vcov import CoreTest
from alliance_meta.exceptions import ModelSpecificationError

__all__ = [
    "CHUNK_CELLS",
    "CHUNK_ROWS",
    "GroupedLong",
    "LongData",
    "ManyData",
    "Rows",
    "fit_chunks",
    "fit_groups",
    "group_long",
    "iter_kernels",
    "map_chunks",
    "row_indices",
]

#: Rows processed together at most; bounds the memory of temporaries.
CHUNK_ROWS = 16384

@dataclass(eq=False)
class LongData:
    """Validated long-format studies with group codes ``0..m-1``, grouped on demand.

    The moment-level fits read them in input order through a
    :class:`alliance_meta.core.kernel.ScatterKernel`; everything else (likelihood and
    Q-root searches) needs them grouped into padded chunks, which costs a sort and is
    done once, when first needed.
    """

    y: FloatArray
    v: FloatArray
    codes: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    _grouped: GroupedLong | None = field(default=None, init=False, repr=False)

    def grouped(self) -> GroupedLong:
        if self._grouped is None:
            self._grouped = group_long(self.y, self.v, self.codes, self.counts.size, self.counts)
        return self._grouped


@dataclass(frozen=True)
class ManyData:
    """The validated input of :func:`pool_many`, kept for ``heterogeneity_ci``."""

    padded_y: FloatArray | None
    padded_v: FloatArray | None
    long: LongData | None = None
    #: the padded input is known to have no absent study (no NaN)
    complete: bool = False
    #: every variance and effect lies in the range where no rescaling is needed
    #: (:func:`alliance_meta.core.kernel.in_unit_range`); long-format data outside it
    #: are fitted grouped, never by the (unscaled) scatter kernel
    unit: bool = True


#: Target number of cells (analyses x studies) per chunk: large enough that numpy's
#: per-call overhead is negligible, small enough that a chunk's temporaries stay in
#: cache (see docs/benchmarks.rst).
CHUNK_CELLS = 98304

_T = TypeVar("_T")
_R = TypeVar("_R")


def n_threads(compute_bound: bool = True) -> int:
    """Worker threads for chunked pooling (``ALLIANCE_META_NUM_THREADS``; by default
    two for compute-bound work where there are two cores, one for memory-bound work).

    The default comes from measurements on the 2-core reference machine
    (``benchmarks/goals.py``, docs/benchmarks.rst), always with other work running:
    the moment estimators (DL and its kin: a few passes over the data, bound by memory
    traffic) took 0.55x, 2.3x and 1.5x the wall time of one thread with two — no
    reliable gain, sometimes a loss; the iterative ones (REML, ML, PM, ...: many
    kernel evaluations per chunk) took 0.77x, 0.61x and 0.94x.  More threads were not
    measured.
    """
    env = os.environ.get("ALLIANCE_META_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ModelSpecificationError(
                f"ALLIANCE_META_NUM_THREADS must be a whole number of threads, got {env!r}"
            ) from None
    if not compute_bound:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def map_chunks(
    fn: Callable[[_T], _R], items: Iterable[_T], compute_bound: bool = True
) -> Iterator[tuple[_T, _R]]:
    """``(item, fn(item))`` in order, on a few threads with a bounded number in flight.

    numpy and BLAS release the GIL inside their loops, so chunks pool in parallel;
    at most one chunk per thread (plus one) is materialised at a time, keeping memory flat.
    ``compute_bound``: see :func:`n_threads`.
    """
    nt = n_threads(compute_bound)
    if nt == 1:
        for it in items:
            yield it, fn(it)
        return
    with ThreadPoolExecutor(max_workers=nt) as ex:
        pending: list[tuple[_T, Future[_R]]] = []
        for it in items:
            pending.append((it, ex.submit(fn, it)))
            if len(pending) > nt:
                first, fut = pending.pop(0)
                yield first, fut.result()
        for it, fut in pending:
            yield it, fut.result()


def chunk_rows(width: int) -> int:
    return max(1, min(CHUNK_ROWS, CHUNK_CELLS // max(width, 1)))


@dataclass(frozen=True)
class GroupedLong:
    """Long-format rows with their order by (group size, group code), to slice into chunks."""

    y: FloatArray  # values in input order
    v: FloatArray
    order: npt.NDArray[np.int64]  # input positions in by-size, by-group order
    groups: npt.NDArray[np.int64]  # group codes in by-size order
    sizes: npt.NDArray[np.int64]  # their sizes
    starts: npt.NDArray[np.int64]  # first sorted row of each group (len G + 1)


#: Rows per block when building the sort keys (keeps temporaries under 128 KiB).
_KEY_BLOCK = 16000


def group_long(
    y: FloatArray,
    v: FloatArray,
    codes: npt.NDArray[np.int64],
    G: int,
    counts: npt.NDArray[np.int64] | None = None,
) -> GroupedLong:
    """Order long-format rows by (size of their group, group code, original position).

    One ``np.sort`` of a combined int64 key replaces a stable argsort (which numpy
    runs as a much slower merge sort); groups of equal size end up adjacent, so most
    chunks are plain reshapes.  Only the key array is as long as the input: it is
    built block by block, sorted and masked in place, and the values are gathered
    chunk by chunk when the chunks are fitted (large fresh arrays cost page faults
    that dominate this step).
    """
    N = codes.size
    if counts is None:
        counts = np.bincount(codes, minlength=G).astype(np.int64)
    if G and int(counts.min()) == int(counts.max()):
        by_size = np.arange(G, dtype=np.int64)  # equal sizes: the code is the rank
        rank = None
    else:
        by_size = np.argsort(counts, kind="stable").astype(np.int64)
        rank = np.empty(G, dtype=np.int64)
        rank[by_size] = np.arange(G, dtype=np.int64)
    bits = max(1, int(N - 1).bit_length())
    if G < 2 ** (62 - bits):
        # (rank, position) packed into one int64: sort the keys, then mask out the
        # positions (cheaper than an argsort, and than a modulo)
        key = np.empty(N, dtype=np.int64)
        pos = np.arange(_KEY_BLOCK, dtype=np.int64)
        for lo in range(0, N, _KEY_BLOCK):
            hi = min(N, lo + _KEY_BLOCK)
            kb = key[lo:hi]
            if rank is None:
                np.left_shift(codes[lo:hi], bits, out=kb)
            else:
                np.take(rank, codes[lo:hi], out=kb)
                np.left_shift(kb, bits, out=kb)
            kb |= pos[: hi - lo]
            pos += hi - lo
        key.sort()
        order = np.bitwise_and(key, (1 << bits) - 1, out=key)
    else:  # pragma: no cover - astronomically large inputs
        order = np.argsort(codes if rank is None else rank[codes], kind="stable")
    sizes = counts[by_size]
    starts = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    return GroupedLong(y, v, order.astype(np.int64, copy=False), by_size, sizes, starts)


def iter_grouped(
    gl: GroupedLong, unit: bool = False
) -> Iterator[tuple[Kernel, npt.NDArray[np.int64]]]:
    G = gl.groups.size
    i = 0
    while i < G:
        width = int(gl.sizes[i])
        j = min(G, i + chunk_rows(width))
        # groups are sorted by size: close the chunk where padding to the largest
        # group would exceed twice the chunk's cells
        if gl.sizes[j - 1] != width:
            cells = gl.starts[i + 1 : j + 1] - gl.starts[i]
            rows = np.arange(1, j - i + 1)
            ok = rows * gl.sizes[i:j] <= 2 * cells + 4096
            if not ok.all():
                j = i + max(1, int(np.argmin(ok)))
        a, b = int(gl.starts[i]), int(gl.starts[j])
        sz = gl.sizes[i:j]
        w = int(sz[-1])
        idx = gl.order[a:b]

        def name(r: int, c: int, i: int = i) -> str:
            # study c of the chunk's row r is this row of the long-format input
            return f"#{int(gl.order[int(gl.starts[i + r]) + c])}"

        if int(sz[0]) == w:
            Y = np.take(gl.y, idx).reshape(j - i, w)
            V = np.take(gl.v, idx).reshape(j - i, w)
            yield kernel_from_padded(Y, V, complete=True, name=name, unit=unit), gl.groups[i:j]
        else:
            row = np.repeat(np.arange(j - i), sz)
            pos = np.arange(b - a) - np.repeat(gl.starts[i:j] - a, sz)
            # the padding is structural (0 and +inf, marked in `present`): a NaN
            # value is never taken for padding
            Y = np.zeros((j - i, w))
            V = np.full((j - i, w), np.inf)
            present = np.zeros((j - i, w), dtype=bool)
            Y[row, pos] = np.take(gl.y, idx)
            V[row, pos] = np.take(gl.v, idx)
            present[row, pos] = True
            yield (
                kernel_from_padded(Y, V, name=name, unit=unit, present=present),
                gl.groups[i:j],
            )
        i = j


#: The analyses a chunk holds: a slice of consecutive rows (2-D input) or indices.
Rows = slice | npt.NDArray[np.int64]


def row_indices(rows: Rows) -> npt.NDArray[np.int64]:
    if isinstance(rows, slice):
        return np.arange(rows.start, rows.stop, dtype=np.int64)
    return rows


def iter_kernels(
    data: ManyData, moments: bool = False
) -> Iterable[tuple[Kernel, Rows]]:
    """Kernels of consecutive chunks with the analyses they hold.

    ``moments``: the caller needs only the moment levels of the intercept-only
    kernel, which long-format data supply ungrouped, as one scatter kernel.
    """
    if data.padded_y is not None:
        assert data.padded_v is not None
        m, n = data.padded_y.shape
        step = chunk_rows(n)
        for start in range(0, m, step):
            stop = min(start + step, m)

            def name(r: int, c: int, start: int = start) -> str:
                return f"analysis {start + r}, study {c}"

            kern = kernel_from_padded(
                data.padded_y[start:stop],
                data.padded_v[start:stop],
                complete=data.complete,
                name=name,
                unit=data.unit,
            )
            yield kern, slice(start, stop)
    else:
        long = data.long
        assert long is not None
        if moments and data.unit:
            kern = kernel_from_long(long.y, long.v, long.codes, long.counts)
            yield kern, slice(0, long.counts.size)
        else:
            yield from iter_grouped(long.grouped(), data.unit)


def fit_groups(
    y: FloatArray,
    v: FloatArray,
    codes: npt.NDArray[np.int64],
    n_groups: int,
    method: CoreMethod,
    test: CoreTest,
    level: float,
    rule: StopRule | None = None,
) -> CoreFit:
    """Full core fits of every group of long-format data, row ``g`` for code ``g``.

    The groups are laid out exactly as in :func:`pool_many` (one grouping, chunked
    by size) and fitted chunk by chunk with :func:`alliance_meta.core.univariate.fit`
    (``rule``: metafor's stopping rule, see :mod:`alliance_meta.core.stopping`).
    """
    fits: list[CoreFit] = []
    rows: list[npt.NDArray[np.int64]] = []
    for kern, grp in iter_grouped(group_long(y, v, codes, n_groups)):
        fits.append(fit(kern, method, test, level, rule=rule))
        rows.append(grp)
    return permute_rows(concat_fits(fits), np.concatenate(rows).astype(np.intp))


_MANY_FIELDS = (
    "estimate", "se", "tau2", "QE", "h", "k", "iterations", "converged",
)


def fit_chunks(
    data: ManyData,
    m: int,
    method: CoreMethod,
    test: CoreTest,
    with_se: bool = False,
) -> dict[str, npt.NDArray[Any]]:
    """Fit every chunk and scatter the estimation results into m-arrays.

    ``with_se`` adds ``tau2_se`` (in the same passes), for callers that need every
    field anyway.
    """
    out: dict[str, npt.NDArray[Any]] = {}
    names = (*_MANY_FIELDS, "tau2_differs", *(("tau2_se",) if with_se else ()))
    kernels = iter_kernels(data, moments=method in MOMENT_METHODS)
    for (_, rows), part in map_chunks(
        lambda kr: fit_slim(kr[0], method, test, with_se), kernels,
        compute_bound=method not in MOMENT_METHODS,
    ):
        if isinstance(rows, slice) and rows == slice(0, m):  # one chunk holds all
            return {name: getattr(part, name) for name in names}
        for name in names:
            val = getattr(part, name)
            if name not in out:
                out[name] = np.empty(m, dtype=val.dtype)
            out[name][rows] = val
    return out


def cluster_index(codes: npt.NDArray[np.int64], n_clusters: int | None = None) -> npt.NDArray[
    np.int64
]:
    """Positions of each cluster's rows, padded: ``(G, b)`` with -1 for padding.

    ``codes`` are cluster codes ``0..G-1``, one per row, in any order; within a
    cluster the positions keep their input order.
    """
    codes = np.asarray(codes, dtype=np.int64)
    G = int(codes.max()) + 1 if n_clusters is None else n_clusters
    counts = np.bincount(codes, minlength=G)
    order = np.argsort(codes, kind="stable")
    b = int(counts.max()) if counts.size else 0
    starts = np.cumsum(counts) - counts
    col = np.arange(codes.size) - np.repeat(starts, counts)
    index = np.full((G, b), -1, dtype=np.int64)
    index[codes[order], col] = order
    return index


def diagonal_blocks(
    index: npt.NDArray[np.int64], diag: FloatArray
) -> FloatArray:
    """``(G, b, b)`` blocks of ``diag(d)`` by the padded ``index`` of
    :func:`cluster_index` (identity on the padding)."""
    G, b = index.shape
    present = index >= 0
    vals = np.where(present, diag[np.where(present, index, 0)], 1.0)
    M = np.zeros((G, b, b))
    ii = np.arange(b)
    M[:, ii, ii] = vals
    return M
