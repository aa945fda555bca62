"""Padded block layout and batched linear algebra for block-diagonal covariances.

The marginal covariance of a multilevel or multivariate meta-analysis,
``M = V + Σ_c g_c K_c``, is block-diagonal: effects of different outer clusters
are independent unless the known sampling covariance ``V`` links them.  This module

* finds the blocks: the connected components of the outer grouping(s) and of the
  non-zero pattern of ``V`` (:func:`connected_blocks`);
* lays them out in *buckets* of blocks of similar size, each padded to the size of
  its largest block, so that a few large clusters never pad thousands of small
  ones (:func:`make_layout`, bucket sizes chosen by :func:`plan_buckets`);
* reads vectors, design rows and covariance matrices (dense, scipy.sparse or a
  diagonal) block by block into ``(n_blocks, b, ...)`` arrays, with identity on
  the padding so that padded blocks stay positive definite and contribute nothing
  (:func:`pad_vector`, :func:`pad_rows`, :func:`pad_covariance`);
* offers the batched Cholesky factor, inverse and log-determinant that the models
  sum over blocks (:func:`cholesky`, :func:`spd_inverse`, :func:`chol_logdet`).

No function here forms a dense ``k × k`` matrix: memory is ``Σ_blocks b²``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.sparse import csgraph

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

__all__ = [
    "BlockLayout",
    "Bucket",
    "chol_logdet",
    "cholesky",
    "connected_blocks",
    "forward_solve",
    "make_layout",
    "nonpd_blocks",
    "pad_covariance",
    "pad_rows",
    "pad_vector",
    "plan_buckets",
    "same_group",
    "spd_inverse",
]

#: Cost model of :func:`plan_buckets`, in microseconds: a fixed cost per bucket (the
#: numpy calls of one likelihood evaluation), a cost per block (one small LAPACK call
#: per matrix) and a cost per ``b³`` (the arithmetic of a padded ``b × b`` block).
_BUCKET_COST = 20.0
_BLOCK_COST = 1.0
_CUBE_COST = 1e-3


@dataclass(frozen=True)
class Bucket:
    """Blocks padded to a common size ``b``.

    Attributes
    ----------
    blocks : (n,) int64
        Block ids held by this bucket, in order.
    index : (n, b) int64
        Position (0..k-1) of each effect of each block, ``-1`` on padding.
    mask : (n, b) bool
        True where ``index`` is a real effect.
    """

    blocks: IntArray
    index: IntArray
    mask: BoolArray

    @property
    def size(self) -> int:
        """The padded block size ``b``."""
        return int(self.index.shape[1])


@dataclass(frozen=True)
class BlockLayout:
    """Where each of ``k`` effects sits in the padded, bucketed block arrays.

    Attributes
    ----------
    k, n_blocks : int
    block_of : (k,) int64
        Block id of each effect (blocks numbered by first appearance).
    pos : (k,) int64
        Position of each effect within its block (order of appearance).
    bucket_of, slot_of : (n_blocks,) int64
        Bucket holding each block and the block's row in that bucket.
    buckets : tuple of Bucket
    """

    k: int
    n_blocks: int
    block_of: IntArray
    pos: IntArray
    bucket_of: IntArray
    slot_of: IntArray
    buckets: tuple[Bucket, ...]

    @property
    def block_sizes(self) -> IntArray:
        """Number of effects in each block."""
        return np.bincount(self.block_of, minlength=self.n_blocks).astype(np.int64)

    @property
    def padded_size(self) -> int:
        """``Σ_buckets n·b²``: the number of entries of one padded matrix array."""
        return int(sum(b.index.shape[0] * b.size**2 for b in self.buckets))


def _first_appearance_labels(labels: npt.NDArray[np.int64]) -> IntArray:
    """Relabel integer labels 0..m-1 in order of first appearance."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first, kind="stable"), kind="stable")
    return np.asarray(order[inv.ravel()], dtype=np.int64)


def _coo(V: object, k: int) -> tuple[IntArray, IntArray, FloatArray]:
    """Rows, columns and values of the non-zero entries of ``V`` (without densifying
    a sparse matrix; a dense array is scanned as given; a tuple is taken as the
    entries already)."""
    if isinstance(V, tuple):  # already (rows, cols, values)
        rows, cols, vals = V
        return rows, cols, vals
    if sparse.issparse(V):
        if isinstance(V, sparse.csr_matrix) and V.has_canonical_format:
            C = V.tocoo(copy=False)
        else:
            C = sparse.coo_matrix(V)  # type: ignore[call-overload]
            C.sum_duplicates()
        nz = C.data != 0
        return (
            C.row[nz].astype(np.int64),
            C.col[nz].astype(np.int64),
            np.asarray(C.data[nz], dtype=np.float64),
        )
    A = np.asarray(V, dtype=np.float64)
    if A.ndim == 1:
        idx = np.flatnonzero(A).astype(np.int64)
        return idx, idx, A[idx]
    r, c = np.nonzero(A)
    return r.astype(np.int64), c.astype(np.int64), A[r, c]


def connected_blocks(k: int, groups: Sequence[IntArray], V: object | None = None) -> IntArray:
    """Block id of each effect: connected components of groupings and of ``V``.

    Parameters
    ----------
    k : int
        Number of effects.
    groups : sequence of (k,) int arrays
        Group codes (e.g. the outer cluster); effects sharing a code are linked.
    V : scipy.sparse matrix, (k, k) array, (k,) diagonal, (rows, cols, values) or None
        Effects ``i ≠ j`` with ``V_ij ≠ 0`` are linked.

    Returns
    -------
    (k,) int64
        Block ids ``0..n_blocks-1`` numbered by first appearance.
    """
    if len(groups) == 1 and V is not None:
        # the usual case: V only links effects of one group, whose codes then are the
        # blocks (no graph needed)
        g0 = np.asarray(groups[0], dtype=np.int64)
        r, c, _ = _coo(V, k)
        if np.array_equal(g0[r], g0[c]):
            return _first_appearance_labels(g0)
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    for g in groups:
        g = np.asarray(g, dtype=np.int64)
        order = np.argsort(g, kind="stable")
        same = g[order[1:]] == g[order[:-1]]
        rows.append(order[1:][same].astype(np.int64))
        cols.append(order[:-1][same].astype(np.int64))
    if V is not None:
        r, c, _ = _coo(V, k)
        off = r != c
        rows.append(r[off])
        cols.append(c[off])
    r_all = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c_all = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    adj = sparse.csr_matrix((np.ones(r_all.size, dtype=np.int8), (r_all, c_all)), shape=(k, k))
    _, labels = csgraph.connected_components(adj, directed=False)
    return _first_appearance_labels(np.asarray(labels, dtype=np.int64))


def plan_buckets(sizes: IntArray) -> list[tuple[int, int]]:
    """Split the distinct block sizes into contiguous ranges, one bucket each.

    Parameters
    ----------
    sizes : (n_blocks,) int
        Block sizes.

    Returns
    -------
    list of (low, cap)
        Blocks of size ``low <= s <= cap`` go to a bucket padded to ``cap``.

    Notes
    -----
    Dynamic programming over the sorted distinct sizes minimises the modelled cost
    ``Σ_buckets [c_0 + n_bucket (c_1 + c_3 cap³)]``: merging buckets saves the fixed
    per-bucket overhead of the numpy calls, padding costs ``cap³`` arithmetic per
    block.  So a few clusters of 50 effects never pad 20,000 clusters of 3 to 50,
    while 200 clusters of 1-6 effects share one bucket.
    """
    uniq, counts = np.unique(np.asarray(sizes, dtype=np.int64), return_counts=True)
    d = uniq.size
    cum = np.concatenate([[0], np.cumsum(counts)])
    best = np.full(d + 1, np.inf)
    best[0] = 0.0
    split = np.zeros(d + 1, dtype=np.int64)
    for j in range(1, d + 1):  # group uniq[i:j], cap = uniq[j-1]
        cap = float(uniq[j - 1])
        n_in = cum[j] - cum[:j]
        cost = best[:j] + _BUCKET_COST + n_in * (_BLOCK_COST + _CUBE_COST * cap**3)
        i = int(np.argmin(cost))
        best[j] = cost[i]
        split[j] = i
    out: list[tuple[int, int]] = []
    j = d
    while j > 0:
        i = int(split[j])
        out.append((int(uniq[i]), int(uniq[j - 1])))
        j = i
    return out[::-1]


def make_layout(block_of: IntArray) -> BlockLayout:
    """The padded, bucketed layout of blocks given each effect's block id.

    Parameters
    ----------
    block_of : (k,) int
        Block ids ``0..n_blocks-1`` (as from :func:`connected_blocks`).
    """
    block_of = np.asarray(block_of, dtype=np.int64)
    k = int(block_of.size)
    n_blocks = int(block_of.max()) + 1 if k else 0
    sizes = np.bincount(block_of, minlength=n_blocks).astype(np.int64)
    # position of each effect within its block, in order of appearance
    order = np.argsort(block_of, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.empty(k, dtype=np.int64)
    pos[order] = np.arange(k, dtype=np.int64) - np.repeat(starts, sizes)
    bucket_of = np.empty(n_blocks, dtype=np.int64)
    slot_of = np.empty(n_blocks, dtype=np.int64)
    buckets: list[Bucket] = []
    for bi, (low, cap) in enumerate(plan_buckets(sizes)):
        blocks = np.flatnonzero((sizes >= low) & (sizes <= cap)).astype(np.int64)
        n = blocks.size
        bucket_of[blocks] = bi
        slot_of[blocks] = np.arange(n, dtype=np.int64)
        index = np.full((n, cap), -1, dtype=np.int64)
        buckets.append(Bucket(blocks=blocks, index=index, mask=np.zeros((n, cap), bool)))
    eff_bucket = bucket_of[block_of]
    eff_slot = slot_of[block_of]
    for bi, b in enumerate(buckets):
        sel = np.flatnonzero(eff_bucket == bi)
        b.index[eff_slot[sel], pos[sel]] = sel
        b.mask[eff_slot[sel], pos[sel]] = True
    return BlockLayout(k, n_blocks, block_of, pos, bucket_of, slot_of, tuple(buckets))


def pad_vector(layout: BlockLayout, x: npt.ArrayLike, fill: float = 0.0) -> list[FloatArray]:
    """``x`` (k,) as one ``(n, b)`` array per bucket, ``fill`` on padding."""
    xa = np.asarray(x, dtype=np.float64)
    out = []
    for b in layout.buckets:
        arr = np.where(b.mask, xa[np.maximum(b.index, 0)], fill)
        out.append(np.asarray(arr, dtype=np.float64))
    return out


def pad_rows(layout: BlockLayout, X: FloatArray) -> list[FloatArray]:
    """Rows of ``X`` (k, p) as one ``(n, b, p)`` array per bucket, zero on padding."""
    Xa = np.asarray(X, dtype=np.float64)
    out = []
    for b in layout.buckets:
        arr = Xa[np.maximum(b.index, 0)]
        arr[~b.mask] = 0.0
        out.append(arr)
    return out


def same_group(layout: BlockLayout, codes: IntArray) -> list[FloatArray]:
    """Per bucket ``(n, b, b)``: 1 where two real effects share a code, else 0."""
    ca = np.asarray(codes, dtype=np.int64)
    out = []
    for b in layout.buckets:
        c = np.where(b.mask, ca[np.maximum(b.index, 0)], -1)
        eq = (c[:, :, None] == c[:, None, :]) & b.mask[:, :, None] & b.mask[:, None, :]
        out.append(eq.astype(np.float64))
    return out


def pad_covariance(layout: BlockLayout, V: object) -> list[FloatArray]:
    """A covariance matrix read block by block: one ``(n, b, b)`` array per bucket.

    Parameters
    ----------
    layout : BlockLayout
    V : scipy.sparse matrix, (k, k) array, (k,) diagonal or (rows, cols, values)
        Every non-zero entry must link two effects of the same block (true for a
        layout made by :func:`connected_blocks` with this ``V``).

    Returns
    -------
    list of (n, b, b) float64
        The blocks of ``V``, with identity on the padding.
    """
    r, c, v = _coo(V, layout.k)
    br, bc = layout.block_of[r], layout.block_of[c]
    if np.any(br != bc):
        i = int(np.flatnonzero(br != bc)[0])
        raise ValueError(f"V links effects {int(r[i])} and {int(c[i])} of different blocks")
    bk = layout.bucket_of[br]
    slot = layout.slot_of[br]
    pr, pc = layout.pos[r], layout.pos[c]
    out = []
    for bi, b in enumerate(layout.buckets):
        n, cap = b.index.shape
        arr = np.zeros((n, cap, cap))
        sel = bk == bi
        arr[slot[sel], pr[sel], pc[sel]] = v[sel]
        pad = ~b.mask
        ii = np.nonzero(pad)
        arr[ii[0], ii[1], ii[1]] = 1.0
        out.append(arr)
    return out


# ---------------------------------------------------------------------------
# Batched linear algebra
# ---------------------------------------------------------------------------


def nonpd_blocks(M: FloatArray) -> BoolArray:
    """Which of a stack of symmetric matrices ``(..., b, b)`` are not positive definite."""
    flat = M.reshape(-1, M.shape[-2], M.shape[-1])
    bad = np.zeros(flat.shape[0], dtype=bool)
    for start in range(0, flat.shape[0], 4096):
        chunk = flat[start : start + 4096]
        try:
            np.linalg.cholesky(chunk)
        except np.linalg.LinAlgError:
            for i in range(chunk.shape[0]):
                try:
                    np.linalg.cholesky(chunk[i])
                except np.linalg.LinAlgError:
                    bad[start + i] = True
    return bad.reshape(M.shape[:-2])


#: Largest block size factored by the batch-vectorised loops below; larger blocks use
#: LAPACK (whose per-matrix call overhead then no longer dominates).
SMALL_BLOCK = 16
#: Up to this many matrices LAPACK's batched Cholesky is faster than the vectorised
#: loop (whose cost is a fixed number of numpy calls).
_LAPACK_BATCH = 500


def _cholesky_small(flat: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Cholesky factors of ``(N, b, b)`` matrices by a loop over the ``b`` columns,
    each step vectorised over all ``N`` matrices (held batch-last, so every step is a
    contiguous elementwise operation: fast for many small blocks)."""
    N, b, _ = flat.shape
    Mt = np.ascontiguousarray(flat.transpose(1, 2, 0))  # (b, b, N)
    Lt = np.zeros_like(Mt)
    bad = np.zeros(N, dtype=bool)
    for j in range(b):
        Lj = Lt[j, :j]  # (j, N)
        d = Mt[j, j] - np.einsum("in,in->n", Lj, Lj)
        badj = ~(d > 0)
        if badj.any():
            bad |= badj
            d = np.where(badj, 1.0, d)
        dj = np.sqrt(d)
        Lt[j, j] = dj
        if j + 1 < b:
            col = Mt[j + 1 :, j] - np.einsum("ijn,jn->in", Lt[j + 1 :, :j], Lj)
            Lt[j + 1 :, j] = col / dj
    return Lt.transpose(2, 0, 1), bad


def cholesky(M: FloatArray) -> tuple[FloatArray, BoolArray | None]:
    """Batched lower Cholesky factors of ``M`` (..., b, b).

    Returns
    -------
    L : (..., b, b)
        The factors; identity where a matrix is not positive definite.
    bad : bool array (...) or None
        None when every matrix is positive definite, else which are not.
    """
    b = M.shape[-1]
    n_mat = int(np.prod(M.shape[:-2]))
    if b <= SMALL_BLOCK and n_mat > _LAPACK_BATCH:
        flat = M.reshape(-1, b, b)
        L, bad = _cholesky_small(flat)
        if not bad.any():
            return L.reshape(M.shape), None
        L[bad] = np.eye(b)
        return L.reshape(M.shape), bad.reshape(M.shape[:-2])
    try:
        Lf = np.asarray(np.linalg.cholesky(M), dtype=np.float64)
        return Lf, None
    except np.linalg.LinAlgError:
        badm = nonpd_blocks(M)
        Mf = M.copy()
        Mf[badm] = np.eye(b)
        Lb = np.asarray(np.linalg.cholesky(Mf), dtype=np.float64)
        return Lb, badm


def _forward_last(Lt: FloatArray, Rt: FloatArray) -> FloatArray:
    """``L⁻¹R`` batch-last: ``Lt (b, b, N)``, ``Rt (b, r, N)``."""
    b = Lt.shape[0]
    Z = np.empty_like(Rt)
    for i in range(b):
        acc = Rt[i] - np.einsum("mn,mjn->jn", Lt[i, :i], Z[:i]) if i else Rt[i]
        Z[i] = acc / Lt[i, i]
    return Z


def forward_solve(L: FloatArray, R: FloatArray) -> FloatArray:
    """``L⁻¹ R`` for lower-triangular ``L (..., b, b)`` and ``R (..., b, r)``."""
    b = L.shape[-1]
    if b > SMALL_BLOCK:
        return np.asarray(np.linalg.solve(L, R), dtype=np.float64)
    shape = np.broadcast_shapes(L.shape[:-2], R.shape[:-2])
    r = R.shape[-1]
    Lt = np.broadcast_to(L, (*shape, b, b)).reshape(-1, b, b).transpose(1, 2, 0)
    Rt = np.ascontiguousarray(
        np.broadcast_to(R, (*shape, b, r)).reshape(-1, b, r).transpose(1, 2, 0)
    )
    Z = _forward_last(np.ascontiguousarray(Lt), Rt)
    out: FloatArray = Z.transpose(2, 0, 1).reshape(*shape, b, r)
    return out


def chol_logdet(L: FloatArray) -> FloatArray:
    """``log det M = 2 Σ log L_ii`` of each factor (padding contributes 0)."""
    d = np.diagonal(L, axis1=-2, axis2=-1)
    return np.asarray(2.0 * np.log(d).sum(axis=-1), dtype=np.float64)


def spd_inverse(L: FloatArray) -> FloatArray:
    """``M⁻¹ = L⁻ᵀ L⁻¹`` from the Cholesky factor (symmetric by construction)."""
    b = L.shape[-1]
    if b > SMALL_BLOCK:
        Li = np.linalg.inv(L)
        W: FloatArray = np.matmul(np.swapaxes(Li, -1, -2), Li)
        return W
    shape = L.shape[:-2]
    Lt = np.ascontiguousarray(L.reshape(-1, b, b).transpose(1, 2, 0))
    eye = np.ascontiguousarray(np.broadcast_to(np.eye(b)[:, :, None], Lt.shape))
    Zt = _forward_last(Lt, eye)  # L⁻¹, batch-last
    Wt = np.einsum("min,mjn->ijn", Zt, Zt)
    out: FloatArray = Wt.transpose(2, 0, 1).reshape(*shape, b, b)
    return out
