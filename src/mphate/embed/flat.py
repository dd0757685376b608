"""PHATE on the rows of one matrix ("flattened"): the baseline that ignores the slice structure.

Every (slice, unit) point becomes one row; the kernel is PHATE's adaptive alpha-decay kernel
on a k-nearest-neighbour graph (:class:`SparseKernel`, a second implementation of the kernel
protocol in :mod:`mphate.embed.kernel`), and the rest of the pipeline is M-PHATE's own.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from mphate import runtime
from mphate.embed.diffusion import AmbiguousKneeWarning
from mphate.embed.mds import SMACOF_TOL
from mphate.embed.pipeline import (
    STAGE_NAMES,
    DiffusionTimeStage,
    EmbeddingStage,
    LandmarkStage,
    PipelineState,
    Resources,
    SpectrumStage,
    Stage,
    fingerprint,
    run_pipeline,
)


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
    """One symmetric sparse matrix as a :class:`~mphate.embed.kernel.Kernel`.

    Parameters
    ----------
    matrix : sparse matrix, shape (N, N), symmetric
    """

    def __init__(self, matrix: sp.csr_matrix):
        self.matrix = matrix.tocsr().astype(np.float64)
        self.shape = self.matrix.shape
        self.n_threads = 1  # SciPy's sparse products run on one thread

    def degrees(self) -> np.ndarray:
        return np.asarray(self.matrix.sum(axis=1)).ravel()

    def matmat(self, vectors, *, scale=None, out=None, epilogue=None):
        """``K v`` or ``S K S v``; see :meth:`mphate.embed.kernel.Kernel.matmat`."""
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


class FlatKernelStage(Stage):
    """First stage of flattened PHATE: the alpha-decay kernel on the rows of ``state.data``.

    Params: ``knn`` (bandwidth neighbour), ``decay``. ``state.data`` is (N, n_features): each
    row one point, no slices.
    """

    name = "kernel"

    def run(self, state, res):
        with res.log.step("kernel"):
            rows = np.asarray(state.data, dtype=np.float64)
            dist, idx = knn(rows, max(30, 6 * self.params["knn"]))
            state.kernel = SparseKernel(alpha_decay_kernel(dist, idx, self.params["knn"], self.params["decay"]))
        state.data = None


def phate_flattened(X: np.ndarray, *, knn_k: int = 5, decay: float = 40, n_landmark: int = 2000,
                    gamma: float = 1, n_svd: int = 100, random_state=0) -> np.ndarray:
    """PHATE's published method on the rows of ``X`` (N, n_features), with PHATE's defaults,
    run through M-PHATE's own stages after the kernel. Returns (N, 2)."""
    stages = [
        FlatKernelStage(knn=knn_k, decay=decay),
        LandmarkStage(n_landmark=n_landmark, n_svd=n_svd, stride=1),
        SpectrumStage(),
        DiffusionTimeStage(t="knee", t_max=100),  # PHATE's own rule
        # t_max None: SMACOF from classical MDS alone, as PHATE lays out
        EmbeddingStage(gamma=gamma, n_components=2, mds="metric", mds_max_iter=300, mds_tol=SMACOF_TOL, t_max=None),
    ]
    data = np.asarray(X)
    state = PipelineState(data=data, fingerprint=fingerprint(data))
    resources = Resources(rngs=runtime.stage_generators(random_state, STAGE_NAMES))
    with warnings.catch_warnings():
        # the knee's ambiguity is M-PHATE's warning to its users, not the baseline's
        warnings.simplefilter("ignore", AmbiguousKneeWarning)
        run_pipeline(stages, state, resources)
    return state.embedding
