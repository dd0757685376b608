"""The multislice kernel: intraslice alpha-decay blocks plus per-unit interslice Gaussians.

Points are indexed slice-major: point ``g = slice * n_units + unit``.

The intraslice part is block diagonal (one sparse block per slice, thresholded), stored as
sparse row chunks of whole slices so that products with it split over threads. The
interslice part links each unit only with itself at other slices, so it is ``n_units`` dense
``(n_slices, n_slices)`` blocks; we keep those blocks (or recompute them on demand when they
would not fit in memory) instead of a sparse matrix, because batched dense products over them
run at BLAS speed and need a quarter of the memory of the equivalent CSR matrix.

Any kernel the later stages accept follows :class:`Kernel`: the multislice kernel here, and
the flattened baseline's plain sparse kernel (:class:`mphate.embed.flat.SparseKernel`).
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from mphate.runtime import parallel_map

#: kernel values below this are dropped (the paper's sparsity threshold)
KERNEL_THRESHOLD = 1e-4

# working-set size of one chunk of distance blocks (one unit of work for a thread)
_CHUNK_BYTES = 2**23
# keep interslice blocks in memory up to this size; beyond, recompute them per use
_MAX_STORED_BLOCK_BYTES = 2 * 2**30


@runtime_checkable
class Kernel(Protocol):
    """What the landmark and diffusion stages need of a symmetric affinity kernel ``K``, (N, N).

    Implemented by :class:`MultisliceKernel` (structured by slices and units) and
    :class:`mphate.embed.flat.SparseKernel` (one sparse matrix). A kernel with slices adds
    ``n_slices``, ``n_units`` and ``subsample_slices``, which the
    spectral step uses when it runs on a subsample of the slices.
    """

    shape: tuple[int, int]
    n_threads: int

    def degrees(self) -> np.ndarray:
        """Row sums of ``K``, shape (N,), float64."""

    def matmat(self, vectors: np.ndarray, *, scale: np.ndarray | None = None, out: np.ndarray | None = None,
               epilogue: Callable | None = None) -> np.ndarray:
        """``K v`` (or ``S K S v`` with ``S = diag(scale)``), shape (N, m), into ``out`` (float32).

        ``epilogue(part)``, when given, runs once per finished part of the result (on the thread
        that made it): ``part(array)`` is that part's rows of any (N, m) array.
        """

    def aggregate(self, labels: np.ndarray, n_groups: int) -> sp.csr_matrix:
        """``K M``, shape (N, n_groups), with ``M`` the one-hot matrix of ``labels`` (N,)."""

    def to_sparse(self) -> sp.csr_matrix:
        """``K`` as one sparse matrix, shape (N, N)."""


def _chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    size = max(1, int(size))
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def _chunks_of(n_items: int, item_bytes: int) -> list[tuple[int, int]]:
    """Split ``n_items`` into ranges of about ``_CHUNK_BYTES`` each."""
    return _chunk_ranges(n_items, _CHUNK_BYTES // max(1, item_bytes))


def batched_sq_distances(points: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances within each batch, with an exactly zero diagonal.

    Parameters
    ----------
    points : ndarray, shape (n_batch, n_points, n_features), float32

    Returns
    -------
    ndarray, shape (n_batch, n_points, n_points), float32, non-negative
    """
    sq_norms = np.einsum("bij,bij->bi", points, points)
    # (-2 x) y^T: the factor rides on the small operand instead of a pass over the result
    dist = np.matmul(points * np.float32(-2.0), points.transpose(0, 2, 1))
    dist += sq_norms[:, :, None]
    dist += sq_norms[:, None, :]
    np.maximum(dist, 0.0, out=dist)
    diag = np.arange(points.shape[1])
    dist[:, diag, diag] = 0.0
    return dist


def exact_sq_distances(points: np.ndarray) -> np.ndarray:
    """Squared distances within each batch, (n_batch, n, n), in float64 from batch-centred points.

    The ``|x|^2 + |y|^2 - 2 x.y`` expansion of :func:`batched_sq_distances` in float32 cancels
    badly when a batch's points lie close together far from the origin, as one unit's history
    does in an embedding: the rounding then exceeds the distances between neighbours. Scores
    that rank neighbours (:mod:`mphate.metrics`, the t search) use this instead.
    """
    points = np.asarray(points, dtype=np.float64)
    return batched_sq_distances(points - points.mean(axis=1, keepdims=True))


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
    k = 2 that left 17 (96 units) to about 250 (800 or 2,048 units) of a row's entries on
    real traces.

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
    # (a float32 mean: the floor only has to be tiny against the spread, and a float64 pass
    # over the batch's n_units^2 distances cost 3 ms of a 2,048-unit slice's 60)
    floor = sq.mean(axis=(1, 2), dtype=np.float32).astype(np.float64) * 1e-12
    sigma_sq = np.maximum(kth_sq, np.maximum(floor, np.finfo(np.float32).tiny)[:, None])
    sigma_sq = sigma_sq.astype(np.float32).reshape(-1)  # by flat row: batch * n_units + unit
    reach_sq = np.float32(np.log(1.0 / threshold) ** (2.0 / decay) * (1 + 1e-4))  # rounding margin
    # candidate when d_ij is within reach of sigma_i or of sigma_j. Both tests read d_ij itself,
    # the distance the entry's value is computed from below, so every entry that passes the
    # threshold is a candidate even where rounding leaves d_ij and d_ji a hair apart. Two
    # contiguous comparisons: OR-ing the first with its transpose walked the (n_units, n_units)
    # mask across rows and took 16 of a 2,048-unit slice's 60 ms
    reach_by_row = (sigma_sq * reach_sq).reshape(n_batch, n_units)
    row_ok = sq <= reach_by_row[:, :, None]
    row_ok |= sq <= reach_by_row[:, None, :]
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
    data: np.ndarray, knn: int, decay: float, threshold: float = KERNEL_THRESHOLD, n_threads: int = 1
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
    return parallel_map(
        lambda bounds: _intraslice_block(data, bounds, knn, decay, threshold),
        _intraslice_ranges(n_slices, n_units),
        n_threads,
    )


def _intraslice_ranges(n_slices: int, n_units: int) -> list[tuple[int, int]]:
    return _chunks_of(n_slices, 4 * 3 * n_units * n_units)


def _intraslice_block(data, bounds, knn, decay, threshold) -> tuple[int, sp.csr_matrix]:
    """The intraslice kernel of slices ``bounds = (s0, s1)`` as (first_row, square CSR block)."""
    s0, s1 = bounds
    n_units = data.shape[1]
    with np.errstate(over="ignore", under="ignore"):
        row_counts, cols, vals = _intraslice_chunk(data[s0:s1], knn, decay, threshold)
    n = (s1 - s0) * n_units
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row_counts, out=indptr[1:])
    index_dtype = np.int32 if max(n, indptr[-1]) < 2**31 else np.int64
    block = sp.csr_matrix((vals, cols.astype(index_dtype), indptr.astype(index_dtype)), shape=(n, n))
    return s0 * n_units, block


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


def _stack_rows(parts: list, n_cols: int) -> sp.csr_matrix:
    """CSR matrices of ``n_cols`` columns stacked by rows, in order; empties ``parts``.

    ``sp.vstack`` would do, but it converts every part to COO first; this joins the CSR
    arrays directly, one field at a time, so that two copies of a field never coexist.
    """
    n_rows = sum(part.shape[0] for part in parts)
    nnz = sum(part.nnz for part in parts)
    index_dtype = np.int32 if max(n_rows, n_cols, nnz) < 2**31 else np.int64
    indptr = np.zeros(n_rows + 1, dtype=index_dtype)
    if parts:
        np.cumsum(np.concatenate([np.diff(part.indptr) for part in parts]), out=indptr[1:])
    indices = [part.indices.astype(index_dtype, copy=False) for part in parts]
    data = [part.data for part in parts]
    parts.clear()
    indices = _concatenate_and_clear(indices) if indices else np.zeros(0, index_dtype)
    data = _concatenate_and_clear(data) if data else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def _concatenate_and_clear(pieces: list) -> np.ndarray:
    """``np.concatenate(pieces)``, emptying the list so its arrays can be freed."""
    joined = np.concatenate(pieces)
    pieces.clear()
    return joined


def _unit_slab(data: np.ndarray, u0: int, u1: int) -> np.ndarray:
    """Units u0..u1 of a slice-major trace as unit-major rows, each unit's history centred
    (moved to its mean over slices), shape (u1 - u0, n_slices, n_features), float32.

    Centred because the interslice distances are taken by the ``|x|^2 + |y|^2 - 2 x.y``
    expansion (:func:`batched_sq_distances`), and a unit's history lies close together far from
    the origin (z-scored vectors have |x|^2 = n_features): in float32 that cancels badly. On the
    pre-activation SGD 0.1 panel run, uncentred, the bandwidth came out 0.4 % off and single
    affinities up to 0.11 off the float64 values; centred, 4e-6 and 8e-5
    (benchmarks/interslice_precision.py). Distances do not change under the shift, so every
    caller may centre on its own slab.
    """
    slab = np.ascontiguousarray(data[:, u0:u1, :].transpose(1, 0, 2))
    # the shift's own rounding is harmless (any shift leaves distances alone); x - mean is
    # exact to float32's rounding of the (small) difference
    slab -= slab.mean(axis=1, keepdims=True, dtype=np.float64).astype(slab.dtype)
    return slab


def _median_kth_distance(data: np.ndarray, knn: int, out_sq=None, n_threads: int = 1) -> np.ndarray:
    """Per unit, the median over slices of the distance to the knn-th nearest other slice.

    Parameters
    ----------
    data : ndarray, shape (n_slices, n_units, n_features), float32
    out_sq : ndarray, shape (n_units, n_slices, n_slices), optional
        Filled with the squared distances when given (one pass serves both).

    Returns
    -------
    ndarray, shape (n_units,)
    """
    n_slices, n_units, _ = data.shape
    medians = np.empty(n_units)

    def work(bounds):
        u0, u1 = bounds
        sq = batched_sq_distances(_unit_slab(data, u0, u1))
        kth = np.sqrt(kth_neighbor_distance(sq, knn).astype(np.float64))
        medians[u0:u1] = np.median(kth, axis=1)
        if out_sq is not None:
            out_sq[u0:u1] = sq

    parallel_map(work, _chunks_of(n_units, 4 * 2 * n_slices * n_slices), n_threads)
    return medians


def interslice_bandwidth(data: np.ndarray, knn: int, n_threads: int = 1) -> float:
    """The single interslice bandwidth: mean over units of the median over slices of the
    distance to the ``knn``-th nearest other slice of the same unit.

    Parameters
    ----------
    data : ndarray, shape (n_slices, n_units, n_features), float32
    """
    return mean_bandwidth(_median_kth_distance(data, knn, n_threads=n_threads))


def mean_bandwidth(medians: np.ndarray) -> float:
    """The interslice bandwidth from each unit's median k-th neighbour distance, shape (n_units,)."""
    eps = float(medians.mean())
    if not eps > 0:
        # every unit identical at every slice: any positive bandwidth links them fully
        eps = 1.0
    return eps


def _interslice_affinity(sq_dist: np.ndarray, eps: float, threshold: float) -> np.ndarray:
    """Gaussian interslice affinity from squared distances, in place, thresholded, with a zero
    diagonal (in the multislice kernel the self links live in the intraslice part)."""
    with np.errstate(under="ignore"):
        sq_dist *= np.float32(-1.0 / (eps * eps))
        affinity = np.exp(sq_dist, out=sq_dist)
    affinity[affinity < threshold] = 0.0
    diag = np.arange(sq_dist.shape[1])
    affinity[:, diag, diag] = 0.0
    return affinity


def _interslice_blocks_of(features: np.ndarray, u0: int, u1: int, eps: float, threshold: float) -> np.ndarray:
    """Interslice blocks of units u0..u1 computed from slice-major features,
    shape (u1 - u0, n_slices, n_slices)."""
    return _interslice_affinity(batched_sq_distances(_unit_slab(features, u0, u1)), eps, threshold)


class MultisliceKernel:
    """The symmetric multislice kernel, stored by structure.

    Do not construct directly; use :func:`multislice_kernel`. Two modes:

    - stored: the intraslice blocks (sparse) and interslice blocks (dense) are kept;
    - lean: only the (normalised) features and the bandwidths' inputs are kept, and both
      parts are recomputed chunk by chunk whenever they are used. For traces whose kernel
      does not fit in memory; the estimator then touches the whole kernel in only a few
      passes (see :func:`mphate.embed.landmarks.landmark_features`).

    Attributes
    ----------
    interslice_eps : float
    n_slices, n_units : int
    lean : bool
    n_threads : int
        Worker threads of :meth:`degrees`, :meth:`matmat`, :meth:`aggregate` and the others.
    """

    def __init__(self, *, n_slices, n_units, intraslice_knn, decay, threshold, interslice_eps,
                 features=None, intraslice_blocks=None, interslice_blocks=None, n_threads=1):
        self.n_slices, self.n_units = n_slices, n_units
        # worker threads of the chunked operations; the pipeline sets it from n_jobs
        self.n_threads = n_threads
        self.intraslice_knn, self.decay, self.threshold = intraslice_knn, decay, threshold
        self.interslice_eps = interslice_eps
        self._features = features  # (n_slices, n_units, n_features) float32, lean mode
        self._intraslice_blocks = intraslice_blocks  # list of (first_row, csr), stored mode
        self._blocks = interslice_blocks  # (n_units, n_slices, n_slices) float32, stored mode
        self._degrees = None

    @property
    def lean(self) -> bool:
        return self._blocks is None

    @property
    def features(self) -> np.ndarray | None:
        """A lean kernel's (normalised) features, shape (n_slices, n_units, n_features) float32,
        from which both parts are recomputed; None when stored."""
        return self._features

    @property
    def stored_blocks(self) -> np.ndarray | None:
        """A stored kernel's interslice blocks, shape (n_units, n_slices, n_slices) float32 (zero
        diagonals); None when lean."""
        return self._blocks

    @property
    def shape(self):
        n = self.n_slices * self.n_units
        return (n, n)

    @property
    def nbytes(self) -> int:
        """Memory held by the kernel's arrays."""
        size = 0
        for _, block in self._intraslice_blocks or []:
            size += block.data.nbytes + block.indices.nbytes + block.indptr.nbytes
        for array in (self._blocks, self._features):
            size += 0 if array is None else array.nbytes
        return size

    # ------------------------------------------------------------------ the two parts by chunk
    def _intraslice_items(self) -> list:
        """Work items for :meth:`_intraslice_part`: stored blocks, or slice ranges to build."""
        if self._intraslice_blocks is not None:
            return self._intraslice_blocks
        return _intraslice_ranges(self.n_slices, self.n_units)

    def _intraslice_part(self, item) -> tuple[int, sp.csr_matrix]:
        """(first_row, square CSR block) of the intraslice kernel for one work item."""
        if self._intraslice_blocks is not None:
            return item
        return _intraslice_block(self._features, item, self.intraslice_knn, self.decay, self.threshold)

    def _unit_chunks(self):
        return _chunks_of(self.n_units, 4 * 2 * self.n_slices * self.n_slices)

    def _interslice_chunk(self, u0: int, u1: int) -> np.ndarray:
        """Interslice blocks of units u0..u1, shape (u1 - u0, n_slices, n_slices)."""
        if self._blocks is not None:
            return self._blocks[u0:u1]
        return _interslice_blocks_of(self._features, u0, u1, self.interslice_eps, self.threshold)

    def interslice_blocks(self):
        """Yield ``(u0, u1, blocks)`` with blocks of shape (u1 - u0, n_slices, n_slices)."""
        for u0, u1 in self._unit_chunks():
            yield u0, u1, self._interslice_chunk(u0, u1)

    @property
    def intraslice(self) -> sp.csr_matrix:
        """The intraslice kernel as one sparse matrix, shape (N, N)."""
        parts = parallel_map(self._intraslice_part, self._intraslice_items(), self.n_threads)
        return _assemble_block_diagonal(parts, self.shape[0])

    # ------------------------------------------------------------------ operations
    def degrees(self) -> np.ndarray:
        """Row sums, shape (N,), float64."""
        if self._degrees is None:
            deg = np.empty(self.shape[0])

            def add_intraslice(item):
                start, block = self._intraslice_part(item)
                deg[start : start + block.shape[0]] = block.sum(axis=1, dtype=np.float64).ravel()

            parallel_map(add_intraslice, self._intraslice_items(), self.n_threads)
            per_slice = deg.reshape(self.n_slices, self.n_units)

            def add_interslice(bounds):
                u0, u1 = bounds
                blocks = self._interslice_chunk(u0, u1)
                per_slice[:, u0:u1] += blocks.sum(axis=2, dtype=np.float64).T

            parallel_map(add_interslice, self._unit_chunks(), self.n_threads)
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
            start, block = self._intraslice_part(item)
            rows = slice(start, start + block.shape[0])
            source = vectors[rows] if scale is None else vectors[rows] * scale[rows]
            out[rows] = block @ source

        parallel_map(intraslice_product, self._intraslice_items(), self.n_threads)
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

        parallel_map(interslice_product, self._unit_chunks(), self.n_threads)
        return out

    def aggregate(self, labels: np.ndarray, n_groups: int) -> sp.csr_matrix:
        """Kernel summed over the columns of each group: ``K @ onehot(labels)``.

        Parameters
        ----------
        labels : ndarray of int, shape (N,), values in [0, n_groups)

        Returns
        -------
        csr_matrix, shape (N, n_groups), float32, sorted indices without duplicates
        """
        n = self.shape[0]
        labels = np.asarray(labels)
        onehot = sp.csr_matrix(
            (np.ones(n, dtype=np.float32), (np.arange(n), labels)), shape=(n, n_groups)
        )

        def intraslice_part(item):
            start, block = self._intraslice_part(item)
            part = block @ onehot[start : start + block.shape[0]]
            # sorted here, on the worker threads: the sum below then takes SciPy's path for
            # sorted rows and gives sorted rows (unsorted, it and a sort after it took 5 s
            # on one thread at 1,000 x 2,048 instead of 3)
            part.sort_indices()
            return part

        # the parts are whole slices in order, so stacking them gives the slice-major rows
        within = _stack_rows(parallel_map(intraslice_part, self._intraslice_items(), self.n_threads),
                             n_groups)
        labels_by_slice = labels.reshape(self.n_slices, self.n_units)

        def interslice_part(bounds):
            # rows of units u0..u1 in unit-major order (unit, then slice), each row's groups sorted
            u0, u1 = bounds
            blocks = self._interslice_chunk(u0, u1)
            counts, cols, vals = [], [], []
            for unit in range(u0, u1):
                groups, inverse = np.unique(labels_by_slice[:, unit], return_inverse=True)
                order = np.argsort(inverse, kind="stable")
                starts = np.searchsorted(inverse[order], np.arange(len(groups)))
                summed = np.add.reduceat(blocks[unit - u0][:, order], starts, axis=1, dtype=np.float64)
                r, c = np.nonzero(summed)
                counts.append(np.bincount(r, minlength=self.n_slices))
                cols.append(groups[c].astype(np.int32))
                vals.append(summed[r, c].astype(np.float32))
            return sp.csr_matrix((np.concatenate(vals), np.concatenate(cols),
                                  np.concatenate([[0], np.cumsum(np.concatenate(counts))])),
                                 shape=((u1 - u0) * self.n_slices, n_groups))

        across_by_unit = _stack_rows(parallel_map(interslice_part, self._unit_chunks(), self.n_threads),
                                     n_groups)
        # to slice-major rows: row s * n_units + u is unit-major row u * n_slices + s. Rows are
        # gathered and the two parts added by SciPy's compiled routines; a COO of every entry
        # sorted into CSR took 9 of the 1,000 x 2,048 trace's 43 s here on one thread, the
        # stacking, gather and sum below 6
        to_slice_major = np.arange(n).reshape(self.n_units, self.n_slices).T.ravel()
        across = across_by_unit[to_slice_major]
        del across_by_unit
        result = within + across  # merges the groups a row reaches through both parts
        del within, across
        result.sum_duplicates()  # a no-op when SciPy already marks the sum canonical
        return result

    def subsample_slices(self, slices) -> "MultisliceKernel":
        """The kernel restricted to some slices (the induced subgraph on their points).

        Every entry equals the full kernel's (same intraslice blocks, same interslice
        bandwidth); the subgraph is in stored mode.

        Parameters
        ----------
        slices : sequence of int, increasing
        """
        slices = np.asarray(slices)
        n_units = self.n_units
        if self._features is not None:
            features = self._features[slices]
            intra = intraslice_kernel(features, self.intraslice_knn, self.decay, self.threshold, self.n_threads)
            blocks = np.empty((n_units, len(slices), len(slices)), dtype=np.float32)

            def fill(bounds):
                u0, u1 = bounds
                blocks[u0:u1] = _interslice_blocks_of(features, u0, u1, self.interslice_eps, self.threshold)

            parallel_map(fill, _chunks_of(n_units, 4 * 2 * len(slices) ** 2), self.n_threads)
        else:
            starts = [start for start, _ in self._intraslice_blocks]
            intra = []
            for new_index, s in enumerate(slices):
                row = s * n_units
                # the chunk holding slice s; its rows of slice s only link within slice s
                start, block = self._intraslice_blocks[np.searchsorted(starts, row, side="right") - 1]
                local = row - start
                part = block[local : local + n_units]
                part = sp.csr_matrix((part.data, part.indices - local, part.indptr), shape=(n_units, n_units))
                intra.append((new_index * n_units, part))
            blocks = np.ascontiguousarray(self._blocks[:, slices][:, :, slices])
        return MultisliceKernel(
            n_slices=len(slices), n_units=n_units, intraslice_knn=self.intraslice_knn,
            decay=self.decay, threshold=self.threshold, interslice_eps=self.interslice_eps,
            intraslice_blocks=intra, interslice_blocks=blocks, n_threads=self.n_threads,
        )

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


def stores_blocks(n_slices: int, n_units: int) -> bool:
    """Whether :func:`multislice_kernel` with ``store_blocks=None`` keeps the interslice blocks:
    when they take at most 2 GB (float32, n_units x n_slices x n_slices)."""
    return 4 * n_units * n_slices * n_slices <= _MAX_STORED_BLOCK_BYTES


def multislice_kernel(
    data: np.ndarray,
    *,
    intraslice_knn: int = 2,
    interslice_knn: int = 25,
    decay: float = 5.0,
    threshold: float = KERNEL_THRESHOLD,
    store_blocks: bool | None = None,
    interslice_eps: float | None = None,
    n_threads: int = 1,
) -> MultisliceKernel:
    """Build the multislice kernel of a (normalised) trace.

    Parameters
    ----------
    data : ndarray, shape (n_slices, n_units, n_features), float32
    store_blocks : bool or None
        Keep both parts in memory (fast), or keep a reference to ``data`` and recompute them
        chunk by chunk whenever they are used (lean). None chooses lean when the interslice
        blocks would take more than 2 GB (:func:`stores_blocks`).
    interslice_eps : float, optional
        A lean kernel's interslice bandwidth, when computed elsewhere (on a torch device:
        :func:`mphate.embed.torch_kernel.interslice_bandwidth`); default: computed here. A
        stored kernel computes it in the same pass as its blocks and takes none.
    n_threads : int
        Worker threads, for building the kernel and for its later operations.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    n_slices, n_units, _ = data.shape
    if store_blocks is None:
        store_blocks = stores_blocks(n_slices, n_units)
    if store_blocks and interslice_eps is not None:
        raise ValueError("interslice_eps is for lean kernels (store_blocks=False): a stored kernel "
                         "computes its bandwidth in the pass that makes its blocks")
    settings = dict(n_slices=n_slices, n_units=n_units, intraslice_knn=intraslice_knn,
                    decay=decay, threshold=threshold, n_threads=n_threads)
    if not store_blocks:
        # lean: keep only the (slice-major) features; both parts are recomputed when used
        if interslice_eps is None:
            interslice_eps = interslice_bandwidth(data, interslice_knn, n_threads)
        return MultisliceKernel(**settings, interslice_eps=float(interslice_eps), features=data)
    intra = intraslice_kernel(data, intraslice_knn, decay, threshold, n_threads)
    # one pass of distances serves the bandwidth and, turned into affinities in place, the blocks
    blocks = np.empty((n_units, n_slices, n_slices), dtype=np.float32)
    eps = mean_bandwidth(_median_kth_distance(data, interslice_knn, out_sq=blocks, n_threads=n_threads))

    def to_affinity(bounds):
        u0, u1 = bounds
        _interslice_affinity(blocks[u0:u1], eps, threshold)

    parallel_map(to_affinity, _chunks_of(n_units, 4 * n_slices * n_slices), n_threads)
    return MultisliceKernel(**settings, interslice_eps=eps, intraslice_blocks=intra, interslice_blocks=blocks)
