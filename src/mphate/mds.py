"""Multidimensional scaling: classical MDS as the start, then metric MDS by SMACOF."""
from __future__ import annotations

import numpy as np
from sklearn.utils.extmath import randomized_svd


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows, shape (n, n), float64, exact zero diagonal."""
    points = np.asarray(points, dtype=np.float64)
    sq = np.einsum("ij,ij->i", points, points)
    dist = points @ points.T
    dist *= -2.0
    dist += sq[:, None]
    dist += sq[None, :]
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def classical_mds_from_points(points: np.ndarray, n_components: int, random_state=None) -> np.ndarray:
    """Classical MDS of the Euclidean distances between rows of ``points``.

    For Euclidean distances classical MDS equals PCA of the centred points, which avoids
    double-centring an n x n matrix.

    Parameters
    ----------
    points : ndarray, shape (n, d)

    Returns
    -------
    ndarray, shape (n, n_components)
    """
    centred = points - points.mean(axis=0)
    u, s, _ = randomized_svd(centred, n_components, n_iter=7, random_state=random_state)
    return u * s


def stress(dissimilarities: np.ndarray, embedding: np.ndarray) -> float:
    """Normalised (Kruskal stress-1) mismatch between target and embedded distances."""
    dist = pairwise_distances(embedding)
    return float(np.sqrt(((dist - dissimilarities) ** 2).sum() / (dissimilarities**2).sum()))


def smacof(
    dissimilarities: np.ndarray,
    init: np.ndarray,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> tuple[np.ndarray, int]:
    """Metric MDS by SMACOF (Guttman transform) with unit weights.

    Each iteration ``X <- B(X) X / n``, with ``B_ij = -delta_ij / d_ij(X)`` off the diagonal and
    rows summing to zero, never increases the raw stress. Stops when the relative decrease of
    the stress falls below ``tol``.

    Parameters
    ----------
    dissimilarities : ndarray, shape (n, n), symmetric, zero diagonal
    init : ndarray, shape (n, n_components)

    Returns
    -------
    embedding : ndarray, shape (n, n_components)
    n_iter : int
    """
    delta = np.asarray(dissimilarities, dtype=np.float64)
    n = delta.shape[0]
    coords = np.array(init, dtype=np.float64)
    coords -= coords.mean(axis=0)
    # start at the scale that best fits the targets, so the first steps are not spent rescaling
    dist = pairwise_distances(coords)
    denom = (dist * dist).sum()
    if denom > 0:
        coords *= (delta * dist).sum() / denom
    previous = np.inf
    n_iter = 0
    ratio = np.empty_like(delta)
    for n_iter in range(1, max_iter + 1):
        dist = pairwise_distances(coords)
        raw_stress = ((dist - delta) ** 2).sum() / 2
        np.fill_diagonal(dist, 1.0)
        np.divide(delta, dist, out=ratio)
        np.fill_diagonal(ratio, 0.0)
        # B X with B = diag(rowsum(ratio)) - ratio
        coords = (ratio.sum(axis=1)[:, None] * coords - ratio @ coords) / n
        if np.isfinite(previous) and previous - raw_stress <= tol * previous:
            break
        previous = raw_stress
    return coords, n_iter
