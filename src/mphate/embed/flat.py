"""PHATE on the rows of one matrix ("flattened"): the baseline that ignores the slice structure.

Every (slice, unit) point becomes one row; the kernel is PHATE's adaptive alpha-decay kernel
on a k-nearest-neighbour graph (:class:`SparseKernel`, a second implementation of the kernel
protocol in :mod:`mphate.embed.kernel`), and the rest of the pipeline is M-PHATE's own.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def knn(X: np.ndarray, k: int):
    """The k nearest other rows of X (Euclidean): distances and indices, shape (N, k), ascending."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(X) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(X)
    dist, idx = nn.kneighbors(X)
    # drop each point itself (usually column 0; with duplicates it may sit elsewhere)
    own = idx == np.arange(len(X))[:, None]
    own[own.sum(axis=1) == 0, -1] = True
    keep = ~own
    return dist[keep].reshape(len(X), k), idx[keep].reshape(len(X), k)


def alpha_decay_kernel(dist: np.ndarray, idx: np.ndarray, knn: int = 5, decay: float = 40,
                       threshold: float = 1e-4) -> sp.csr_matrix:
    """PHATE's adaptive alpha-decay kernel on a neighbour graph.

    ``K(i, j) = exp(-(d(i, j) / sigma_i) ** decay)``, ``sigma_i`` the distance to the ``knn``-th
    nearest other point, over the given neighbours (enough of them that the kernel has fallen
    below ``threshold`` at the last one for most points), symmetrised as ``(K + K^T) / 2``, with
    ones on the diagonal.
    """
    n, k = idx.shape
    sigma = dist[:, knn - 1].copy()
    floor = max(float(np.mean(dist)) * 1e-6, np.finfo(np.float64).tiny)
    sigma = np.maximum(sigma, floor)
    with np.errstate(over="ignore", under="ignore"):
        values = np.exp(-np.power(dist / sigma[:, None], decay))
    keep = values >= threshold
    rows = np.repeat(np.arange(n), k)[keep.ravel()]
    K = sp.csr_matrix((values[keep], (rows, idx[keep])), shape=(n, n))
    K = (K + K.T) * 0.5
    K = K + sp.identity(n, format="csr")
    return K.tocsr()


class SparseKernel:
    """A plain sparse kernel with the interface the landmark stages expect."""

    def __init__(self, matrix: sp.csr_matrix):
        self.matrix = matrix.tocsr().astype(np.float64)
        self.shape = self.matrix.shape

    def degrees(self) -> np.ndarray:
        return np.asarray(self.matrix.sum(axis=1)).ravel()

    def matmat(self, vectors, *, scale=None, out=None, epilogue=None):
        """``K v`` or ``S K S v``; see :meth:`mphate.embed.kernel.MultisliceKernel.matmat`."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if scale is not None:
            scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1)
            vectors = vectors * scale
        result = self.matrix @ vectors
        if scale is not None:
            result *= scale
        if out is None:
            out = np.empty(result.shape, dtype=np.float32)
        out[...] = result
        if epilogue is not None:
            epilogue(lambda array: array)  # the whole result is one part
        return out

    def aggregate(self, labels, n_groups):
        n = self.shape[0]
        onehot = sp.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, n_groups))
        return (self.matrix @ onehot).tocsr()

    def to_sparse(self):
        return self.matrix


def phate_flattened(X: np.ndarray, *, knn_k: int = 5, decay: float = 40, n_landmark: int = 2000,
                    gamma: float = 1, n_svd: int = 100, random_state=0) -> np.ndarray:
    """PHATE's published method on the rows of ``X`` (our implementation, PHATE's defaults)."""
    from sklearn.utils import check_random_state

    from mphate.embed import diffusion, landmarks, mds

    dist, idx = knn(X, max(30, 6 * knn_k))
    kernel = SparseKernel(alpha_decay_kernel(dist, idx, knn_k, decay))
    rng = check_random_state(random_state)
    if n_landmark is None or len(X) <= n_landmark:
        operator = landmarks.exact_operator(kernel)
    else:
        coords = landmarks.spectral_features(kernel, n_svd, random_state=rng)
        labels = landmarks.cluster_landmarks(coords, n_landmark, random_state=rng)
        operator = landmarks.landmark_operator(kernel, labels)
    spectrum = diffusion.SpectralDecomposition(operator.symmetric, operator.scale)
    t, _ = diffusion.select_t(spectrum.eigenvalues, 100)
    potential = diffusion.potential(spectrum.power(t), gamma)
    init = mds.classical_mds_from_points(potential, 2, random_state=check_random_state(random_state))
    embedding, _ = mds.smacof(mds.pairwise_distances(potential, dtype=np.float32), init)
    return np.asarray(operator.point_to_landmark @ embedding, dtype=np.float64)


