"""Multidimensional scaling: classical MDS as the start, then metric MDS by SMACOF."""
from __future__ import annotations

import threading

import numpy as np
from sklearn.utils.extmath import randomized_svd

from mphate.runtime import parallel_map


def pairwise_distances(points: np.ndarray, dtype=np.float64, center: bool = True) -> np.ndarray:
    """Euclidean distances between rows, shape (n, n), exact zero diagonal."""
    points = np.asarray(points, dtype=dtype)
    if center:
        # centring first keeps the |x|^2 + |y|^2 - 2xy expansion from cancelling badly
        points = points - points.mean(axis=0)
    sq = np.einsum("ij,ij->i", points, points)
    dist = points @ points.T
    dist *= -2.0
    dist += sq[:, None]
    dist += sq[None, :]
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def classical_mds_from_points(
    points: np.ndarray, n_components: int, rng: np.random.Generator, center: bool = True
) -> np.ndarray:
    """Classical MDS of the Euclidean distances between rows of ``points``.

    For Euclidean distances classical MDS equals PCA of the centred points, which avoids
    double-centring an n x n matrix.

    Parameters
    ----------
    points : ndarray, shape (n, d)
    n_components : int
    rng : numpy.random.Generator
        Seeds the randomized SVD.
    center : bool
        False when the caller already centred ``points`` (saves an n x d copy).

    Returns
    -------
    ndarray, shape (n, n_components)
    """
    centred = points - points.mean(axis=0) if center else points
    # scikit-learn's randomized SVD takes a seed, not a Generator: draw one from ours
    seed = int(rng.integers(2**31 - 1))
    u, s, _ = randomized_svd(centred, n_components, n_iter=7, random_state=seed)
    return u * s


def stress(dissimilarities: np.ndarray, embedding: np.ndarray) -> float:
    """Normalised (Kruskal stress-1) mismatch between target and embedded distances."""
    dist = pairwise_distances(embedding)
    return float(np.sqrt(((dist - dissimilarities) ** 2).sum() / (dissimilarities**2).sum()))


def smacof(
    dissimilarities: np.ndarray,
    init: np.ndarray,
    max_iter: int = 300,
    tol: float = 1e-3,
    n_threads: int = 1,
) -> tuple[np.ndarray, int]:
    """Metric MDS by SMACOF (Guttman transform) with unit weights.

    Each iteration ``X <- B(X) X / n``, with ``B_ij = -delta_ij / d_ij(X)`` off the diagonal and
    rows summing to zero, never increases the raw stress. Stops when the relative decrease of
    the stress falls below ``tol``. Works in float32 on whole n x n arrays in place: an
    iteration is a few memory-bound passes plus two skinny matrix products.

    Parameters
    ----------
    dissimilarities : ndarray, shape (n, n), symmetric, zero diagonal
    init : ndarray, shape (n, n_components)
    max_iter : int
    tol : float
    n_threads : int
        Threads of each sweep over the rows.

    Returns
    -------
    embedding : ndarray, shape (n, n_components), float64
    n_iter : int
    """
    delta = np.asarray(dissimilarities, dtype=np.float32)
    coords = np.array(init, dtype=np.float64)
    coords -= coords.mean(axis=0)
    return guttman_iterations(lambda x, scale_only=False: _guttman_pass(delta, x, n_threads, scale_only),
                              coords, n=delta.shape[0], delta_sq_sum=float(np.vdot(delta, delta)),
                              max_iter=max_iter, tol=tol)


def guttman_iterations(guttman, coords, *, n: int, delta_sq_sum: float, max_iter: int, tol: float):
    """SMACOF's loop, for any array library: scale the start, iterate, stop on the stress.

    ``guttman(coords, scale_only=False)`` returns ``(cross, updated)``: the cross term
    ``sum_ij delta_ij d_ij(X)`` and the Guttman transform ``B(X) X / n`` (None when
    ``scale_only``). ``coords`` (n, d) is centred; any array with ``mean(0)`` and ``sum()``
    works. Returns (coords, iterations).
    """
    # start at the scale that best fits the targets, so the first steps are not spent rescaling
    cross, _ = guttman(coords, scale_only=True)
    denom = 2 * n * float((coords * coords).sum())  # sum_ij d_ij^2 for centred points
    if denom > 0 and cross > 0:
        coords = coords * (cross / denom)
    previous = np.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        coords = coords - coords.mean(0)
        cross, updated = guttman(coords)
        # raw stress = sum_ij (d - delta)^2 / 2; for centred points sum_ij d^2 = 2 n sum_i |x_i|^2
        dist_sq_sum = 2 * n * float((coords * coords).sum())
        raw_stress = (dist_sq_sum - 2 * cross + delta_sq_sum) / 2
        coords = updated
        if np.isfinite(previous) and previous - raw_stress <= tol * previous:
            break
        previous = raw_stress
    return coords, n_iter


def _guttman_pass(delta: np.ndarray, coords: np.ndarray, n_threads: int, scale_only: bool = False,
                  chunk: int = 256):
    """One sweep over the rows of ``delta``: the cross term ``sum_ij delta_ij d_ij`` and the
    Guttman transform ``B(X) X / n``, a block of rows at a time (on the worker threads) so the
    scratch stays small.
    """
    n = delta.shape[0]
    points = coords.astype(np.float32)
    updated = np.empty_like(coords)
    scratch = threading.local()

    def sweep(start):
        stop = min(n, start + chunk)
        buffer = getattr(scratch, "buffer", None)
        if buffer is None:
            buffer = scratch.buffer = np.empty((min(chunk, n), n), dtype=np.float32)
        dist = buffer[: stop - start]
        _distances_into(points[start:stop], dist, points)
        cross = float(np.vdot(delta[start:stop], dist))
        if not scale_only:
            # delta / d, with coincident points (and the diagonal) pulling nothing
            np.divide(delta[start:stop], dist, out=dist, where=dist > 0)
            ratio_sums = dist.sum(axis=1, dtype=np.float64)
            updated[start:stop] = (ratio_sums[:, None] * coords[start:stop] - dist @ points) / n
        return cross

    cross = sum(parallel_map(sweep, range(0, n, chunk), n_threads))
    return cross, updated


def _distances_into(rows: np.ndarray, out: np.ndarray, points: np.ndarray) -> None:
    """Euclidean distances from ``rows`` to every row of low-dimensional ``points``, into ``out``.

    ``|x|^2 + |y|^2 - 2 x.y`` comes out of one matrix product of augmented coordinates, so the
    output is written once rather than built up over several passes.
    """
    row_sq = np.einsum("ij,ij->i", rows, rows)[:, None]
    point_sq = np.einsum("ij,ij->i", points, points)[:, None]
    left = np.hstack([rows, np.ones_like(row_sq), row_sq])
    right = np.hstack([-2.0 * points, point_sq, np.ones_like(point_sq)])
    np.matmul(left, right.T, out=out)
    np.maximum(out, 0.0, out=out)
    np.sqrt(out, out=out)
