"""Compress the diffusion operator onto landmarks.

Landmarks are groups of points that the diffusion cannot tell apart at short time scales:
spectral clustering of the diffusion operator. The landmark operator is the two-step walk
point -> landmark -> point -> landmark.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.utils import check_random_state


def spectral_features(
    kernel, n_components: int, random_state=None, n_rounds: int = 3, degree: int = 4
) -> np.ndarray:
    """Diffusion-map coordinates of every point from the leading eigenvectors of the kernel.

    Works on the symmetric conjugate ``A = D^-1/2 K D^-1/2`` of the diffusion operator
    ``P = D^-1 K`` (same eigenvalues; P's right eigenvectors are ``D^-1/2`` times A's). The
    multislice graph has hundreds of eigenvalues within a hair of 1 (each unit's history is a
    well-connected chain), so plain subspace iteration converges slowly. Chebyshev-filtered
    subspace iteration converges several times faster per product with the kernel: each round
    passes the block through a Chebyshev polynomial of the given degree that is bounded by 1
    on ``[-1, cutoff]`` and grows fast above it, with the cutoff set to the smallest Ritz
    value of the previous round, then orthonormalises and rotates onto Ritz vectors.

    Parameters
    ----------
    kernel : MultisliceKernel
    n_components : int
    n_rounds, degree : int
        ``n_rounds * degree`` products with the kernel in all.

    Returns
    -------
    ndarray, shape (N, n_components), float32
    """
    rng = check_random_state(random_state)
    n = kernel.shape[0]
    n_components = min(n_components, n - 2)
    block = min(n, n_components + 1 + 10)
    inv_sqrt_deg = (1.0 / np.sqrt(kernel.degrees())).astype(np.float32)[:, None]

    def apply(vectors):
        # scale in place and back rather than copy: a block is tens of MB at 100k points
        vectors *= inv_sqrt_deg
        result = kernel.matmat(vectors)
        vectors /= inv_sqrt_deg
        result *= inv_sqrt_deg
        return result

    def axpy(alpha, x, y):
        # y += alpha * x without an n x block temporary (BLAS updates y in place)
        flat = y.reshape(-1)
        result = scipy.linalg.blas.saxpy(x.reshape(-1), flat, a=alpha)
        if not np.shares_memory(result, y):  # not contiguous float32: BLAS worked on a copy
            y[...] = result.reshape(y.shape)

    generator = np.random.default_rng(rng.randint(2**31 - 1))
    basis = _orthonormalize(generator.standard_normal((n, block), dtype=np.float32))
    applied = apply(basis)
    cutoff = 0.5
    for _ in range(n_rounds):
        # Chebyshev recurrence on x = (A - centre) / half_width, which maps [-1, cutoff] onto
        # [-1, 1]: T_k+1 = 2 x T_k - T_k-1, updated in place to keep three blocks alive
        centre, half_width = (cutoff - 1.0) / 2, (cutoff + 1.0) / 2
        previous = basis
        current = applied
        axpy(-centre, basis, current)
        current /= half_width
        for _ in range(2, degree + 1):
            following = apply(current)
            axpy(-centre, current, following)
            following *= 2.0 / half_width
            following -= previous
            previous, current = current, following
        del previous
        basis = _orthonormalize(current)
        del current
        applied = apply(basis)
        ritz_values, ritz_vectors = np.linalg.eigh(_symmetric_part(basis.T @ applied))
        order = np.argsort(ritz_values)[::-1]
        ritz_values, ritz_vectors = ritz_values[order], ritz_vectors[:, order].astype(np.float32)
        basis, applied = basis @ ritz_vectors, applied @ ritz_vectors
        cutoff = float(np.clip(ritz_values[-1], 0.0, 0.999))
    del applied
    keep = slice(1, n_components + 1)  # drop the trivial (constant) eigenvector
    coords = basis[:, keep] * inv_sqrt_deg
    coords *= np.abs(ritz_values[keep]).astype(np.float32)
    return coords


def _symmetric_part(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.astype(np.float64)
    return (matrix + matrix.T) / 2


def _orthonormalize(vectors: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of a tall matrix, shape (n, m), by Cholesky QR twice.

    Householder QR of a 100k x 100 matrix runs unblocked and takes seconds; two rounds of
    ``Q = Z R^-1`` with ``R`` from the Cholesky factor of the small Gram matrix take
    milliseconds and are as accurate for the power iterations here.
    """
    for _ in range(2):
        gram = (vectors.T @ vectors).astype(np.float64)
        gram += np.eye(len(gram)) * (1e-10 * np.trace(gram) / len(gram) + 1e-30)
        chol = np.linalg.cholesky(gram)
        inv_upper = scipy.linalg.solve_triangular(chol, np.eye(len(gram)), lower=True).T
        vectors = vectors @ inv_upper.astype(np.float32)
    return vectors


def _allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` clusters over groups in proportion to their sizes (at least 1, at most size)."""
    share = sizes * (total / sizes.sum())
    counts = np.clip(np.floor(share).astype(int), 1, sizes)
    remainder = total - counts.sum()
    order = np.argsort(-(share - np.floor(share)))
    for idx in np.concatenate([order] * 2):
        if remainder <= 0:
            break
        if counts[idx] < sizes[idx]:
            counts[idx] += 1
            remainder -= 1
    return counts


def kmeans(points: np.ndarray, n_clusters: int, rng, n_iter: int = 10) -> np.ndarray:
    """Lloyd's k-means from randomly chosen points; empty clusters are re-seeded far away.

    Parameters
    ----------
    points : ndarray, shape (n, d), float32
    n_clusters : int, <= n
    rng : numpy.random.RandomState

    Returns
    -------
    labels : ndarray of int, shape (n,), every label in [0, n_clusters) used
    """
    n = len(points)
    if n_clusters >= n:
        return np.arange(n)
    centres = points[rng.choice(n, n_clusters, replace=False)].astype(np.float32)
    sq_norms = np.einsum("ij,ij->i", points, points)
    labels = None
    for _ in range(n_iter):
        scores = points @ centres.T
        scores *= -2.0
        scores += np.einsum("ij,ij->i", centres, centres)[None, :]
        new_labels = scores.argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        onehot = sp.csr_matrix(
            (np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(n_clusters, n)
        )
        counts = np.bincount(labels, minlength=n_clusters)
        sums = np.asarray(onehot @ points)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        if not filled.all():
            # move each empty centre onto one of the worst-fitted points
            residual = scores[np.arange(n), labels] + sq_norms
            worst = np.argsort(residual)[::-1][: int((~filled).sum())]
            centres[~filled] = points[worst]
    scores = points @ centres.T
    scores *= -2.0
    scores += np.einsum("ij,ij->i", centres, centres)[None, :]
    labels = scores.argmin(axis=1)
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def cluster_landmarks(features: np.ndarray, n_landmark: int, random_state=None) -> np.ndarray:
    """Partition points into about ``n_landmark`` groups by two-level k-means.

    A flat k-means into thousands of clusters costs O(N * n_landmark) per iteration; splitting
    first into about sqrt(n_landmark) coarse clusters and then each coarse cluster into its
    share of landmarks costs about sqrt(n_landmark) times less, with near-identical groups.

    Parameters
    ----------
    features : ndarray, shape (N, d)

    Returns
    -------
    labels : ndarray of int, shape (N,), every value in [0, n_groups) used, n_groups <= n_landmark
    """
    rng = check_random_state(random_state)
    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    n_coarse = int(min(n_landmark, max(1, round(np.sqrt(n_landmark)))))
    sample = np.sort(rng.choice(n, size=min(n, 50 * n_coarse), replace=False))
    sample_labels = kmeans(features[sample], n_coarse, rng, n_iter=30)
    n_coarse = int(sample_labels.max()) + 1
    centres = np.stack([features[sample][sample_labels == c].mean(axis=0) for c in range(n_coarse)])
    scores = features @ centres.T
    scores *= -2.0
    scores += np.einsum("ij,ij->i", centres, centres)[None, :]
    _, coarse_labels = np.unique(scores.argmin(axis=1), return_inverse=True)
    del scores
    sizes = np.bincount(coarse_labels)
    counts = _allocate(sizes, min(n_landmark, n))
    labels = np.empty(n, dtype=np.int64)
    next_label = 0
    members_by_group = np.split(np.argsort(coarse_labels, kind="stable"), np.cumsum(sizes)[:-1])
    for members, n_fine in zip(members_by_group, counts):
        fine = kmeans(features[members], int(n_fine), rng)
        labels[members] = fine + next_label
        next_label += int(fine.max()) + 1
    return labels


class LandmarkOperator:
    """The landmark diffusion operator and the maps between points and landmarks.

    Attributes
    ----------
    labels : ndarray, shape (N,)
        Landmark of each point.
    point_to_landmark : csr_matrix, shape (N, n_landmark)
        Transition probabilities from each point into each landmark (rows sum to 1).
    symmetric : ndarray, shape (n_landmark, n_landmark)
        ``S = C^-1/2 G C^-1/2``: the landmark operator ``P_L = C^-1 G`` is similar to it.
    scale : ndarray, shape (n_landmark,)
        ``C``: the landmarks' total affinity.
    """

    def __init__(self, labels, point_to_landmark, symmetric, scale):
        self.labels = labels
        self.point_to_landmark = point_to_landmark
        self.symmetric = symmetric
        self.scale = scale

    @property
    def n_landmark(self) -> int:
        return len(self.scale)


def landmark_operator(kernel, labels: np.ndarray) -> LandmarkOperator:
    """Build the landmark operator ``P_L = P_mn P_nm`` for a grouping of the points.

    With ``W = K M`` (M the point-to-group indicator), ``P_nm = D^-1 W`` (point -> landmark) and
    ``P_mn = C^-1 W^T`` (landmark -> point, C the column sums of W), so
    ``P_L = C^-1 W^T D^-1 W``, similar to the symmetric ``C^-1/2 W^T D^-1 W C^-1/2``.
    """
    n_groups = int(labels.max()) + 1
    affinity = kernel.aggregate(labels, n_groups)  # W, (N, n_groups)
    degrees = np.asarray(affinity.sum(axis=1, dtype=np.float64)).ravel()
    scale = np.asarray(affinity.sum(axis=0, dtype=np.float64)).ravel()
    point_to_landmark = (sp.diags(1.0 / degrees) @ affinity).astype(np.float32).tocsr()
    # G = W^T D^-1 W is the costly sparse product; float32 halves its memory traffic
    affinity_t = affinity.T.astype(np.float32).tocsr()
    del affinity
    symmetric = (affinity_t @ point_to_landmark).toarray()
    del affinity_t
    inv_sqrt_scale = (1.0 / np.sqrt(scale)).astype(np.float32)
    symmetric *= inv_sqrt_scale[:, None]
    symmetric *= inv_sqrt_scale[None, :]
    # symmetrise in place (rounding breaks exact symmetry): S <- (S + S^T) / 2
    symmetric += symmetric.T.copy()
    symmetric *= 0.5
    return LandmarkOperator(labels, point_to_landmark, symmetric, scale)


def exact_operator(kernel) -> LandmarkOperator:
    """Every point its own landmark: the plain diffusion operator ``P = D^-1 K`` (small N only)."""
    n = kernel.shape[0]
    dense = kernel.to_sparse().toarray().astype(np.float64)
    dense = (dense + dense.T) / 2
    degrees = dense.sum(axis=1)
    inv_sqrt = 1.0 / np.sqrt(degrees)
    symmetric = dense * inv_sqrt[:, None] * inv_sqrt[None, :]
    identity = sp.identity(n, format="csr")
    return LandmarkOperator(np.arange(n), identity, symmetric, degrees)
