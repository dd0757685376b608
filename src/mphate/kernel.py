"""The multislice kernel: intraslice alpha-decay blocks plus per-unit interslice Gaussians.

Points are indexed slice-major: point ``g = slice * n_units + unit``.

The intraslice part is stored sparse (block diagonal, thresholded). The interslice part links
each unit only with itself at other slices, so it is ``n_units`` dense ``(n_slices, n_slices)``
blocks; we keep those blocks (or recompute them on demand when they would not fit in memory)
instead of a sparse matrix, because batched dense products over them run at BLAS speed and
need a quarter of the memory of the equivalent CSR matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: kernel values below this are dropped (the paper's sparsity threshold)
KERNEL_THRESHOLD = 1e-4

# working-set size for batched distance blocks
_CHUNK_BYTES = 2**25
# keep interslice blocks in memory up to this size; beyond, recompute them per use
_MAX_STORED_BLOCK_BYTES = 2 * 2**30


def _chunk_ranges(n: int, size: int):
    size = max(1, int(size))
    for start in range(0, n, size):
        yield start, min(n, start + size)


def batched_distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distances within each batch.

    Parameters
    ----------
    points : ndarray, shape (n_batch, n_points, n_features), float32

    Returns
    -------
    ndarray, shape (n_batch, n_points, n_points), float32, exact zeros on the diagonal
    """
    sq_norms = np.einsum("bij,bij->bi", points, points)
    dist = np.matmul(points, points.transpose(0, 2, 1))
    dist *= -2.0
    dist += sq_norms[:, :, None]
    dist += sq_norms[:, None, :]
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)
    diag = np.arange(points.shape[1])
    dist[:, diag, diag] = 0.0
    return dist


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
    """Distance from each point to its k-th nearest *other* point.

    Parameters
    ----------
    dist : ndarray, shape (n_batch, n_points, n_points), zero diagonal
    k : int, 1 <= k < n_points

    Returns
    -------
    ndarray, shape (n_batch, n_points)
    """
    # the point itself is the 0-th neighbour (distance 0 on the diagonal), so take index k;
    # an exact duplicate ties with it, which is the intended "other" neighbour
    return np.partition(dist, k, axis=2)[:, :, k]


def _bandwidth_floor(dist: np.ndarray) -> np.ndarray:
    """Per-batch positive floor for bandwidths, so duplicated points never divide by zero."""
    scale = dist.mean(axis=(1, 2))
    return np.maximum(scale * 1e-6, np.finfo(np.float32).tiny)


def intraslice_kernel(
    data: np.ndarray, knn: int, decay: float, threshold: float = KERNEL_THRESHOLD
) -> sp.csr_matrix:
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
    csr_matrix, shape (N, N) with N = n_slices * n_units, block diagonal, float32
    """
    n_slices, n_units, _ = data.shape
    n = n_slices * n_units
    chunk = _CHUNK_BYTES // (4 * n_units * n_units * 3)
    index_dtype = np.int32 if n < 2**31 else np.int64
    row_counts, cols, vals = [], [], []
    with np.errstate(over="ignore", under="ignore"):
        for s0, s1 in _chunk_ranges(n_slices, chunk):
            dist = batched_distances(data[s0:s1])
            sigma = kth_neighbor_distance(dist, knn)
            sigma = np.maximum(sigma, _bandwidth_floor(dist)[:, None])
            dist /= sigma[:, :, None]
            _power_inplace(dist, decay)
            np.negative(dist, out=dist)
            affinity = np.exp(dist, out=dist)
            affinity += affinity.transpose(0, 2, 1).copy()
            affinity *= 0.5
            keep = affinity >= threshold
            # row-major order of the kept entries is CSR order: only the column indices and
            # the per-row counts are needed
            row_counts.append(keep.sum(axis=2).ravel())
            flat_row, col = np.nonzero(keep.reshape(-1, n_units))
            cols.append((col + (flat_row // n_units + s0) * n_units).astype(index_dtype))
            vals.append(affinity[keep])
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.concatenate(row_counts), out=indptr[1:])
    if indptr[-1] >= 2**31:
        index_dtype = np.int64
    return sp.csr_matrix(
        (np.concatenate(vals), np.concatenate(cols).astype(index_dtype, copy=False),
         indptr.astype(index_dtype)),
        shape=(n, n),
    )


def interslice_bandwidth(unit_major: np.ndarray, knn: int) -> float:
    """The single interslice bandwidth: mean over units of the median over slices of the
    distance to the ``knn``-th nearest other slice of the same unit.

    Parameters
    ----------
    unit_major : ndarray, shape (n_units, n_slices, n_features), float32
    """
    n_units, n_slices, _ = unit_major.shape
    chunk = _CHUNK_BYTES // (4 * n_slices * n_slices * 2)
    medians = np.empty(n_units)
    for u0, u1 in _chunk_ranges(n_units, chunk):
        dist = batched_distances(unit_major[u0:u1])
        medians[u0:u1] = np.median(kth_neighbor_distance(dist, knn), axis=1)
    return _mean_bandwidth(medians)


def _mean_bandwidth(medians: np.ndarray) -> float:
    eps = float(medians.mean())
    if not eps > 0:
        # every unit identical at every slice: any positive bandwidth links them fully
        eps = 1.0
    return eps


def _interslice_affinity(dist: np.ndarray, eps: float, threshold: float) -> np.ndarray:
    """Gaussian interslice affinity in place; zero diagonal (self links live in the intraslice part)."""
    dist /= eps
    np.square(dist, out=dist)
    np.negative(dist, out=dist)
    affinity = np.exp(dist, out=dist)
    affinity[affinity < threshold] = 0.0
    diag = np.arange(dist.shape[1])
    affinity[:, diag, diag] = 0.0
    return affinity


class MultisliceKernel:
    """The symmetric multislice kernel, stored by structure.

    Do not construct directly; use :func:`multislice_kernel`.

    Attributes
    ----------
    intraslice : csr_matrix, shape (N, N)
    interslice_eps : float
    n_slices, n_units : int
    """

    def __init__(self, intraslice, unit_major, blocks, interslice_eps, threshold):
        self.intraslice = intraslice
        self._unit_major = unit_major  # (n_units, n_slices, n_features) or None
        self._blocks = blocks  # (n_units, n_slices, n_slices) float32 or None
        self.interslice_eps = interslice_eps
        self.threshold = threshold
        self.n_units = (unit_major if unit_major is not None else blocks).shape[0]
        self.n_slices = (unit_major if unit_major is not None else blocks).shape[1]
        self._degrees = None

    @property
    def shape(self):
        n = self.n_slices * self.n_units
        return (n, n)

    @property
    def nbytes(self) -> int:
        size = self.intraslice.data.nbytes + self.intraslice.indices.nbytes
        size += self.intraslice.indptr.nbytes
        if self._blocks is not None:
            size += self._blocks.nbytes
        return size

    def interslice_blocks(self):
        """Yield ``(u0, u1, blocks)`` with blocks of shape (u1 - u0, n_slices, n_slices)."""
        if self._blocks is not None:
            chunk = max(1, _CHUNK_BYTES // (4 * self.n_slices * self.n_slices))
            for u0, u1 in _chunk_ranges(self.n_units, chunk):
                yield u0, u1, self._blocks[u0:u1]
            return
        chunk = _CHUNK_BYTES // (4 * self.n_slices * self.n_slices * 2)
        with np.errstate(under="ignore"):
            for u0, u1 in _chunk_ranges(self.n_units, chunk):
                dist = batched_distances(self._unit_major[u0:u1])
                yield u0, u1, _interslice_affinity(dist, self.interslice_eps, self.threshold)

    def degrees(self) -> np.ndarray:
        """Row sums, shape (N,), float64."""
        if self._degrees is None:
            deg = np.asarray(self.intraslice.sum(axis=1), dtype=np.float64).ravel()
            per_slice = deg.reshape(self.n_slices, self.n_units)
            for u0, u1, blocks in self.interslice_blocks():
                per_slice[:, u0:u1] += blocks.sum(axis=2, dtype=np.float64).T
            self._degrees = deg
        return self._degrees

    def matmat(self, vectors: np.ndarray) -> np.ndarray:
        """Kernel times a block of vectors.

        Parameters
        ----------
        vectors : ndarray, shape (N, m)

        Returns
        -------
        ndarray, shape (N, m), float32
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        m = vectors.shape[1]
        out = np.asarray(self.intraslice @ vectors, dtype=np.float32)
        by_slice_in = vectors.reshape(self.n_slices, self.n_units, m)
        by_slice_out = out.reshape(self.n_slices, self.n_units, m)
        for u0, u1, blocks in self.interslice_blocks():
            unit_major = np.ascontiguousarray(by_slice_in[:, u0:u1, :].transpose(1, 0, 2))
            by_slice_out[:, u0:u1, :] += np.matmul(blocks, unit_major).transpose(1, 0, 2)
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
        onehot = sp.csr_matrix(
            (np.ones(n, dtype=np.float32), (np.arange(n), labels)), shape=(n, n_groups)
        )
        intra = (self.intraslice @ onehot).tocoo()
        rows = [intra.row.astype(index_dtype)]
        cols = [intra.col.astype(index_dtype)]
        vals = [intra.data.astype(np.float32)]
        del intra
        labels_by_slice = labels.reshape(self.n_slices, self.n_units)
        slice_offsets = (np.arange(self.n_slices) * self.n_units).astype(index_dtype)
        for u0, u1, blocks in self.interslice_blocks():
            for unit in range(u0, u1):
                groups, inverse = np.unique(labels_by_slice[:, unit], return_inverse=True)
                order = np.argsort(inverse, kind="stable")
                starts = np.searchsorted(inverse[order], np.arange(len(groups)))
                summed = np.add.reduceat(
                    blocks[unit - u0][:, order], starts, axis=1, dtype=np.float64
                )
                r, c = np.nonzero(summed)
                rows.append(slice_offsets[r] + unit)
                cols.append(groups[c].astype(index_dtype))
                vals.append(summed[r, c].astype(np.float32))
        # float32 entries and int32 indices: this matrix has ~50 entries per point
        result = sp.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n_groups),
        )
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
    # one pass of distances: keep them, take the bandwidth from them, then turn them into
    # affinities in place
    blocks = np.empty((n_units, n_slices, n_slices), dtype=np.float32)
    chunk = max(1, _CHUNK_BYTES // (4 * n_slices * n_slices))
    medians = np.empty(n_units)
    for u0, u1 in _chunk_ranges(n_units, chunk):
        blocks[u0:u1] = batched_distances(unit_major[u0:u1])
        medians[u0:u1] = np.median(kth_neighbor_distance(blocks[u0:u1], interslice_knn), axis=1)
    del unit_major
    eps = _mean_bandwidth(medians)
    with np.errstate(under="ignore"):
        for u0, u1 in _chunk_ranges(n_units, chunk):
            _interslice_affinity(blocks[u0:u1], eps, threshold)
    return MultisliceKernel(intra, None, blocks, eps, threshold)
