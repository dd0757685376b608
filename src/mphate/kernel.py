"""The multislice kernel: intraslice alpha-decay blocks plus per-unit interslice Gaussians.

Points are indexed slice-major: point ``g = slice * n_units + unit``.

The intraslice part is block diagonal (one sparse block per slice, thresholded), stored as
sparse row chunks of whole slices so that products with it split over threads. The
interslice part links each unit only with itself at other slices, so it is ``n_units`` dense
``(n_slices, n_slices)`` blocks; we keep those blocks (or recompute them on demand when they
would not fit in memory) instead of a sparse matrix, because batched dense products over them
run at BLAS speed and need a quarter of the memory of the equivalent CSR matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mphate._parallel import parallel_map

#: kernel values below this are dropped (the paper's sparsity threshold)
KERNEL_THRESHOLD = 1e-4

# working-set size of one chunk of distance blocks (one unit of work for a thread)
_CHUNK_BYTES = 2**24
# keep interslice blocks in memory up to this size; beyond, recompute them per use
_MAX_STORED_BLOCK_BYTES = 2 * 2**30


def _chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    size = max(1, int(size))
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def _chunks_of(n_items: int, item_bytes: int) -> list[tuple[int, int]]:
    """Split ``n_items`` into ranges of about ``_CHUNK_BYTES`` each."""
    return _chunk_ranges(n_items, _CHUNK_BYTES // max(1, item_bytes))


def batched_sq_distances(points: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances within each batch.

    Parameters
    ----------
    points : ndarray, shape (n_batch, n_points, n_features), float32

    Returns
    -------
    ndarray, shape (n_batch, n_points, n_points), float32, non-negative, exact zeros on the
    diagonal
    """
    sq_norms = np.einsum("bij,bij->bi", points, points)
    # (-2 x) x^T: the factor rides on the small operand instead of a pass over the result
    dist = np.matmul(points * np.float32(-2.0), points.transpose(0, 2, 1))
    dist += sq_norms[:, :, None]
    dist += sq_norms[:, None, :]
    np.maximum(dist, 0.0, out=dist)
    diag = np.arange(points.shape[1])
    dist[:, diag, diag] = 0.0
    return dist


def batched_distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distances within each batch, shape (n_batch, n_points, n_points), float32."""
    return np.sqrt(batched_sq_distances(points))


def _power_inplace(values: np.ndarray, exponent: float) -> None:
    """``values **= exponent``; small integer exponents by repeated squaring (pow() is ~10x slower)."""
    if float(exponent).is_integer() and 1 <= exponent <= 16:
        exponent = int(exponent)
        base = values.copy() if exponent > 1 else None
        values[...] = 1.0 if exponent & 1 == 0 else values
        bit = 1
        square = base
        while exponent >> bit:
            np.multiply(square, square, out=square)
            if (exponent >> bit) & 1:
                values *= square
            bit += 1
    else:
        np.power(values, exponent, out=values)


def kth_neighbor_distance(dist: np.ndarray, k: int) -> np.ndarray:
    """k-th smallest entry of each row, the row's own zero counted as the 0-th.

    Given distances (or squared distances) with a zero diagonal this is the distance to the
    k-th nearest *other* point; an exact duplicate ties with the point itself, which is the
    intended "other" neighbour.

    Parameters
    ----------
    dist : ndarray, shape (n_batch, n_points, n_points), zero diagonal
    k : int, 1 <= k < n_points

    Returns
    -------
    ndarray, shape (n_batch, n_points)
    """
    return np.partition(dist, k, axis=2)[:, :, k]


def _intraslice_chunk(data: np.ndarray, knn: int, decay: float, threshold: float):
    """Thresholded, symmetrised alpha-decay kernel of a few slices, in CSR pieces.

    Only candidate pairs are evaluated: ``(K_ij + K_ji) / 2 >= threshold`` needs
    ``K_ij >= threshold`` or ``K_ji >= threshold``, that is ``d_ij <= r * sigma_i`` or
    ``d_ij <= r * sigma_j`` with ``r = log(1 / threshold) ** (1 / decay)``. With the default
    k = 2 that leaves a few dozen of each row's hundreds of entries.

    Returns
    -------
    row_counts : ndarray, shape (n_batch * n_units,)
    cols : ndarray, column of each kept entry within these slices' rows, in row-major order
    vals : ndarray, float32
    """
    n_batch, n_units, _ = data.shape
    sq = batched_sq_distances(data)
    kth_sq = kth_neighbor_distance(sq, knn)
    # a unit with knn exact duplicates has sigma 0: floor it far below any real spread
    floor = sq.mean(axis=(1, 2), dtype=np.float64) * 1e-12
    sigma_sq = np.maximum(kth_sq, np.maximum(floor, np.finfo(np.float32).tiny)[:, None])
    sigma_sq = sigma_sq.astype(np.float32).reshape(-1)  # by flat row: batch * n_units + unit
    reach_sq = np.float32(np.log(1.0 / threshold) ** (2.0 / decay) * (1 + 1e-4))  # rounding margin
    row_ok = sq <= (sigma_sq * reach_sq).reshape(n_batch, n_units, 1)
    row_ok |= row_ok.transpose(0, 2, 1)
    # flat index = (batch * n_units + row) * n_units + col, in row-major (CSR) order
    flat = np.flatnonzero(row_ok)
    del row_ok
    pair_sq = sq.reshape(-1)[flat]
    del sq
    flat_row, col = np.divmod(flat, n_units)
    del flat
    flat_col = flat_row - flat_row % n_units + col  # the column's flat row in the same slice
    values = np.zeros(len(pair_sq), dtype=np.float32)
    for source in (flat_row, flat_col):  # K_ij with sigma_i, then K_ji with sigma_j
        ratio = pair_sq / sigma_sq[source]
        np.sqrt(ratio, out=ratio)
        _power_inplace(ratio, decay)
        np.negative(ratio, out=ratio)
        values += np.exp(ratio, out=ratio)
    values *= np.float32(0.5)
    keep = values >= threshold
    row_counts = np.bincount(flat_row[keep], minlength=n_batch * n_units)
    return row_counts, flat_col[keep], values[keep]


def intraslice_kernel(
    data: np.ndarray, knn: int, decay: float, threshold: float = KERNEL_THRESHOLD
) -> list[tuple[int, sp.csr_matrix]]:
    """Adaptive alpha-decay kernel between the units of each slice.

    ``K(i, j) = exp(-(d(i, j) / sigma_i) ** decay)`` with ``sigma_i`` the distance from unit i to
    its ``knn``-th nearest other unit in that slice, symmetrised as ``(K + K.T) / 2`` and
    thresholded.

    Parameters
    ----------
    data : ndarray, shape (n_slices, n_units, n_features), float32
    knn : int
    decay : float

    Returns
    -------
    list of (first_row, csr_matrix)
        The block-diagonal kernel as diagonal blocks of whole slices: each block, float32 and
        square, covers rows and columns ``first_row : first_row + block.shape[0]``.
    """
    n_slices, n_units, _ = data.shape
    ranges = _chunks_of(n_slices, 4 * 3 * n_units * n_units)

    def build(bounds):
        s0, s1 = bounds
        with np.errstate(over="ignore", under="ignore"):
            row_counts, cols, vals = _intraslice_chunk(data[s0:s1], knn, decay, threshold)
        n = (s1 - s0) * n_units
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(row_counts, out=indptr[1:])
        index_dtype = np.int32 if max(n, indptr[-1]) < 2**31 else np.int64
        block = sp.csr_matrix(
            (vals, cols.astype(index_dtype), indptr.astype(index_dtype)), shape=(n, n)
        )
        return s0 * n_units, block

    return parallel_map(build, ranges)


def _assemble_block_diagonal(blocks, n: int) -> sp.csr_matrix:
    """One CSR matrix, shape (n, n), from diagonal CSR blocks given as (first_row, block)."""
    nnz = sum(block.nnz for _, block in blocks)
    index_dtype = np.int32 if max(n, nnz) < 2**31 else np.int64
    indices = np.concatenate([block.indices.astype(index_dtype) + start for start, block in blocks])
    counts = np.concatenate([np.diff(block.indptr) for _, block in blocks])
    indptr = np.zeros(n + 1, dtype=index_dtype)
    np.cumsum(counts, out=indptr[1:])
    data = np.concatenate([block.data for _, block in blocks])
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def _concatenate_and_clear(pieces: list) -> np.ndarray:
    """``np.concatenate(pieces)``, emptying the list so its arrays can be freed."""
    joined = np.concatenate(pieces)
    pieces.clear()
    return joined


def _median_kth_distance(unit_major: np.ndarray, knn: int, out_sq=None) -> np.ndarray:
    """Per unit, the median over slices of the distance to the knn-th nearest other slice.

    Parameters
    ----------
    unit_major : ndarray, shape (n_units, n_slices, n_features), float32
    out_sq : ndarray, shape (n_units, n_slices, n_slices), optional
        Filled with the squared distances when given (one pass serves both).

    Returns
    -------
    ndarray, shape (n_units,)
    """
    n_units, n_slices, _ = unit_major.shape
    medians = np.empty(n_units)

    def work(bounds):
        u0, u1 = bounds
        sq = batched_sq_distances(unit_major[u0:u1])
        kth = np.sqrt(kth_neighbor_distance(sq, knn).astype(np.float64))
        medians[u0:u1] = np.median(kth, axis=1)
        if out_sq is not None:
            out_sq[u0:u1] = sq

    parallel_map(work, _chunks_of(n_units, 4 * 2 * n_slices * n_slices))
    return medians


def interslice_bandwidth(unit_major: np.ndarray, knn: int) -> float:
    """The single interslice bandwidth: mean over units of the median over slices of the
    distance to the ``knn``-th nearest other slice of the same unit.

    Parameters
    ----------
    unit_major : ndarray, shape (n_units, n_slices, n_features), float32
    """
    return _mean_bandwidth(_median_kth_distance(unit_major, knn))


def _mean_bandwidth(medians: np.ndarray) -> float:
    eps = float(medians.mean())
    if not eps > 0:
        # every unit identical at every slice: any positive bandwidth links them fully
        eps = 1.0
    return eps


def _interslice_affinity(sq_dist: np.ndarray, eps: float, threshold: float) -> np.ndarray:
    """Gaussian interslice affinity from squared distances, in place; zero diagonal (self
    links live in the intraslice part)."""
    with np.errstate(under="ignore"):
        sq_dist *= np.float32(-1.0 / (eps * eps))
        affinity = np.exp(sq_dist, out=sq_dist)
    affinity[affinity < threshold] = 0.0
    diag = np.arange(sq_dist.shape[1])
    affinity[:, diag, diag] = 0.0
    return affinity


class MultisliceKernel:
    """The symmetric multislice kernel, stored by structure.

    Do not construct directly; use :func:`multislice_kernel`.

    Attributes
    ----------
    intraslice_blocks : list of (first_row, csr_matrix)
        The block-diagonal intraslice kernel, see :func:`intraslice_kernel`.
    interslice_eps : float
    n_slices, n_units : int
    """

    def __init__(self, intraslice_blocks, unit_major, blocks, interslice_eps, threshold):
        self.intraslice_blocks = intraslice_blocks
        self._unit_major = unit_major  # (n_units, n_slices, n_features) or None
        self._blocks = blocks  # (n_units, n_slices, n_slices) float32 or None
        self.interslice_eps = interslice_eps
        self.threshold = threshold
        source = unit_major if unit_major is not None else blocks
        self.n_units, self.n_slices = source.shape[0], source.shape[1]
        self._degrees = None

    @property
    def shape(self):
        n = self.n_slices * self.n_units
        return (n, n)

    @property
    def nbytes(self) -> int:
        size = sum(b.data.nbytes + b.indices.nbytes + b.indptr.nbytes for _, b in self.intraslice_blocks)
        if self._blocks is not None:
            size += self._blocks.nbytes
        return size

    @property
    def intraslice(self) -> sp.csr_matrix:
        """The intraslice kernel as one sparse matrix, shape (N, N)."""
        return _assemble_block_diagonal(self.intraslice_blocks, self.shape[0])

    def _unit_chunks(self):
        return _chunks_of(self.n_units, 4 * 2 * self.n_slices * self.n_slices)

    def _interslice_chunk(self, u0: int, u1: int) -> np.ndarray:
        """Interslice blocks of units u0..u1, shape (u1 - u0, n_slices, n_slices)."""
        if self._blocks is not None:
            return self._blocks[u0:u1]
        sq = batched_sq_distances(self._unit_major[u0:u1])
        return _interslice_affinity(sq, self.interslice_eps, self.threshold)

    def interslice_blocks(self):
        """Yield ``(u0, u1, blocks)`` with blocks of shape (u1 - u0, n_slices, n_slices)."""
        for u0, u1 in self._unit_chunks():
            yield u0, u1, self._interslice_chunk(u0, u1)

    def degrees(self) -> np.ndarray:
        """Row sums, shape (N,), float64."""
        if self._degrees is None:
            deg = np.empty(self.shape[0])
            for start, block in self.intraslice_blocks:
                deg[start : start + block.shape[0]] = block.sum(axis=1, dtype=np.float64).ravel()
            per_slice = deg.reshape(self.n_slices, self.n_units)

            def add_interslice(bounds):
                u0, u1 = bounds
                blocks = self._interslice_chunk(u0, u1)
                per_slice[:, u0:u1] += blocks.sum(axis=2, dtype=np.float64).T

            parallel_map(add_interslice, self._unit_chunks())
            self._degrees = deg
        return self._degrees

    def matmat(self, vectors: np.ndarray, *, scale=None, out=None, epilogue=None) -> np.ndarray:
        """Kernel times a block of vectors: ``K v``, or ``S K S v`` with ``S = diag(scale)``.

        Parameters
        ----------
        vectors : ndarray, shape (N, m)
        scale : ndarray, shape (N,), optional
            Symmetric row and column scaling (``D^-1/2`` gives the normalised kernel).
        out : ndarray, shape (N, m), float32, C-contiguous, optional
            Where to write the result; must not overlap ``vectors``.
        epilogue : callable, optional
            ``epilogue(part)`` is called once for each finished part of the result, on the
            worker thread that made it; ``part(array)`` returns the same rows of any (N, m)
            array as a view. It fuses elementwise follow-up work into the product's threads
            instead of further passes over all N rows.

        Returns
        -------
        ndarray, shape (N, m), float32
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, m = vectors.shape
        if out is None:
            out = np.empty((n, m), dtype=np.float32)
        if scale is not None:
            scale = np.asarray(scale, dtype=np.float32).reshape(n, 1)

        def intraslice_product(item):
            start, block = item
            rows = slice(start, start + block.shape[0])
            source = vectors[rows] if scale is None else vectors[rows] * scale[rows]
            out[rows] = block @ source

        parallel_map(intraslice_product, self.intraslice_blocks)
        shape3 = (self.n_slices, self.n_units, -1)
        by_slice_in, by_slice_out = vectors.reshape(shape3), out.reshape(shape3)

        def interslice_product(bounds):
            # different units are disjoint (strided) rows of the result: safe in parallel
            u0, u1 = bounds

            def part(array):
                return array.reshape(shape3)[:, u0:u1, :]

            blocks = self._interslice_chunk(u0, u1)
            unit_major = np.ascontiguousarray(by_slice_in[:, u0:u1, :].transpose(1, 0, 2))
            if scale is not None:
                unit_major *= part(scale).transpose(1, 0, 2)
            target = by_slice_out[:, u0:u1, :]
            target += np.matmul(blocks, unit_major).transpose(1, 0, 2)
            if scale is not None:
                target *= part(scale)
            if epilogue is not None:
                epilogue(part)

        parallel_map(interslice_product, self._unit_chunks())
        return out

    def aggregate(self, labels: np.ndarray, n_groups: int) -> sp.csr_matrix:
        """Kernel summed over the columns of each group: ``K @ onehot(labels)``.

        Parameters
        ----------
        labels : ndarray of int, shape (N,), values in [0, n_groups)

        Returns
        -------
        csr_matrix, shape (N, n_groups), float32
        """
        n = self.shape[0]
        index_dtype = np.int32 if n < 2**31 else np.int64
        labels = np.asarray(labels)
        onehot = sp.csr_matrix(
            (np.ones(n, dtype=np.float32), (np.arange(n), labels)), shape=(n, n_groups)
        )

        def intraslice_part(item):
            start, block = item
            part = (block @ onehot[start : start + block.shape[0]]).tocoo()
            return (part.row + start).astype(index_dtype), part.col.astype(index_dtype), part.data

        labels_by_slice = labels.reshape(self.n_slices, self.n_units)
        slice_offsets = (np.arange(self.n_slices) * self.n_units).astype(index_dtype)

        def interslice_part(bounds):
            u0, u1 = bounds
            blocks = self._interslice_chunk(u0, u1)
            rows, cols, vals = [], [], []
            for unit in range(u0, u1):
                groups, inverse = np.unique(labels_by_slice[:, unit], return_inverse=True)
                order = np.argsort(inverse, kind="stable")
                starts = np.searchsorted(inverse[order], np.arange(len(groups)))
                summed = np.add.reduceat(blocks[unit - u0][:, order], starts, axis=1, dtype=np.float64)
                r, c = np.nonzero(summed)
                rows.append(slice_offsets[r] + unit)
                cols.append(groups[c].astype(index_dtype))
                vals.append(summed[r, c].astype(np.float32))
            return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)

        parts = parallel_map(intraslice_part, self.intraslice_blocks)
        parts += parallel_map(interslice_part, self._unit_chunks())
        # float32 entries and int32 indices: this matrix has ~50 entries per point. Join
        # one field at a time, dropping its pieces, so that two copies never coexist
        columns = [list(field) for field in zip(*parts)]
        del parts
        rows, cols, vals = (_concatenate_and_clear(field) for field in columns)
        result = sp.coo_matrix((vals, (rows, cols)), shape=(n, n_groups))
        del rows, cols, vals
        result = result.tocsr()
        result.sum_duplicates()
        return result

    def to_sparse(self) -> sp.csr_matrix:
        """The whole kernel as one sparse matrix, shape (N, N), float32 (can be large)."""
        rows, cols, vals = [], [], []
        for u0, u1, blocks in self.interslice_blocks():
            unit, s_from, s_to = np.nonzero(blocks)
            rows.append(s_from * self.n_units + unit + u0)
            cols.append(s_to * self.n_units + unit + u0)
            vals.append(blocks[unit, s_from, s_to])
        inter = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=self.shape,
            dtype=np.float32,
        )
        return (self.intraslice + inter).tocsr()


def multislice_kernel(
    data: np.ndarray,
    *,
    intraslice_knn: int = 2,
    interslice_knn: int = 25,
    decay: float = 5.0,
    threshold: float = KERNEL_THRESHOLD,
    store_blocks: bool | None = None,
) -> MultisliceKernel:
    """Build the multislice kernel of a (normalised) trace.

    Parameters
    ----------
    data : ndarray, shape (n_slices, n_units, n_features), float32
    store_blocks : bool or None
        Keep the interslice blocks in memory (fast) or recompute them per use (lean).
        None chooses by size.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    n_slices, n_units, _ = data.shape
    intra = intraslice_kernel(data, intraslice_knn, decay, threshold)
    unit_major = np.ascontiguousarray(data.transpose(1, 0, 2))
    if store_blocks is None:
        store_blocks = 4 * n_units * n_slices * n_slices <= _MAX_STORED_BLOCK_BYTES
    if not store_blocks:
        eps = interslice_bandwidth(unit_major, interslice_knn)
        return MultisliceKernel(intra, unit_major, None, eps, threshold)
    # one pass of distances serves the bandwidth and, turned into affinities in place, the blocks
    blocks = np.empty((n_units, n_slices, n_slices), dtype=np.float32)
    eps = _mean_bandwidth(_median_kth_distance(unit_major, interslice_knn, out_sq=blocks))
    del unit_major

    def to_affinity(bounds):
        u0, u1 = bounds
        _interslice_affinity(blocks[u0:u1], eps, threshold)

    parallel_map(to_affinity, _chunks_of(n_units, 4 * n_slices * n_slices))
    return MultisliceKernel(intra, None, blocks, eps, threshold)
