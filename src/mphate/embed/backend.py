"""The array library of the stages, chosen once per fit.

The kernel stage's one pass over every unit's history (the interslice bandwidth) runs on the
backend; the rest of the kernel (intraslice neighbours, affinities) is built on NumPy/SciPy, or
by a GPU with room in the landmark stage. The landmark stage (spectral coordinates, the
k-means, the landmark operator) and the dense stages after it (eigendecomposition, the power
``P^t``, the potential, distances, SMACOF, on ``n_landmark x n_landmark`` arrays) are the part
a GPU speeds up. They reach their array library only through a backend, which
:func:`get_backend` picks once from the estimator's ``device`` parameter:
:class:`NumpyBackend` for ``"cpu"``, :class:`TorchBackend` (PyTorch, an optional extra) for
``"cuda"``, ``"mps"`` or ``"torch"`` (PyTorch on the CPU, how CI checks the torch path). The
stages call the backend's operations and never branch on it.

Every backend offers the same operations; arrays between them stay on the device, and
:meth:`to_numpy` brings a result home. What comes home is small: labels (N,), the
point-to-landmark transitions (sparse) and layouts (L, n_components), never an (L, L) array.
"""
from __future__ import annotations

import numpy as np

from mphate.embed import diffusion, kernel as kernel_mod, landmarks, mds, t_search
from mphate.embed.kernel import MultisliceKernel

DEVICES = ("cpu", "torch", "cuda", "mps")


class NumpyBackend:
    """NumPy/SciPy on the CPU (the default)."""

    name = "numpy"
    device = "cpu"

    def interslice_bandwidth(self, features: np.ndarray, knn: int, *, n_threads: int) -> float:
        """:func:`mphate.embed.kernel.interslice_bandwidth` of NumPy ``features``
        (n_slices, n_units, n_features) float32: a float."""
        return kernel_mod.interslice_bandwidth(features, knn, n_threads)

    def landmark_kernel(self, kernel):
        """The kernel as this backend's landmark steps take it (:meth:`landmark_features`,
        :meth:`landmark_operator`), made once for both: here the kernel itself."""
        return kernel

    def landmark_features(self, kernel, n_components: int, rng: np.random.Generator, *, stride, n_threads: int):
        """Spectral coordinates of every point (:func:`mphate.embed.landmarks.landmark_features`)
        of a :meth:`landmark_kernel`: float32 (N, n_components), on the backend. The kernel
        works on its own ``n_threads``."""
        return landmarks.landmark_features(kernel, n_components, rng, stride=stride)

    def cluster_landmarks(self, features, n_landmark: int, rng: np.random.Generator, *, n_threads: int,
                          seeding: str) -> np.ndarray:
        """:func:`mphate.embed.landmarks.cluster_landmarks` of ``features`` (N, d) as
        :meth:`landmark_features` gave them: NumPy int labels (N,)."""
        return landmarks.cluster_landmarks(features, n_landmark, rng, n_threads=n_threads, seeding=seeding)

    def landmark_operator(self, kernel, labels: np.ndarray, *, n_threads: int):
        """:func:`mphate.embed.landmarks.landmark_operator`; its ``symmetric`` (L, L) is on the
        backend, ``point_to_landmark`` a SciPy CSR matrix and ``scale`` NumPy on every backend."""
        return landmarks.landmark_operator(kernel, labels, n_threads=n_threads)

    def spectral_decomposition(self, symmetric: np.ndarray, scale: np.ndarray):
        """Eigendecomposition of ``C^-1/2 S C^1/2`` from ``S`` (L, L) and ``C`` (L,).

        Returns an object with ``eigenvalues`` (L,) (NumPy, descending) and ``power(t)``.
        """
        return diffusion.SpectralDecomposition(symmetric, scale)

    def potential(self, transition, gamma: float):
        """The potential of ``P^t`` (L, L), overwriting it where it can."""
        return diffusion.potential(transition, gamma, inplace=True)

    def center_columns(self, points):
        points -= points.mean(axis=0)
        return points

    def classical_mds(self, points, n_components: int, rng: np.random.Generator) -> np.ndarray:
        """Classical MDS of the rows of centred ``points`` (n, d): NumPy float64 (n, n_components).

        Draws one seed from ``rng``; every backend makes the same test matrix from it."""
        return mds.classical_mds_from_points(points, n_components, rng, center=False)

    def pairwise_distances(self, points):
        """Euclidean distances between the rows of centred ``points`` (L, d): (L, L) float32."""
        return mds.pairwise_distances(points, dtype=np.float32, center=False)

    def smacof(self, distances, init, *, max_iter: int, tol: float, n_threads: int):
        """Metric MDS from ``init`` (L, n_components), or from each of a list of starts keeping
        the least stress: (embedding as NumPy float64, iterations)."""
        # the caller hands the distances over: the refinement may reuse their storage
        return mds.smacof(distances, init, max_iter=max_iter, tol=tol, n_threads=n_threads, overwrite=True)

    def nearest_neighbors(self, points: np.ndarray, k: int, *, n_threads: int = 1) -> np.ndarray:
        """Indices of the k nearest other rows within each batch of NumPy ``points`` (b, n, d):
        NumPy (b, n, k) (the t search's scores, :func:`mphate.embed.t_search.nearest_neighbors`)."""
        return t_search.nearest_neighbors(points, k, n_threads)

    def to_numpy(self, array) -> np.ndarray:
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait for the backend's queued work (NumPy has none: it returns when done)."""

    def __str__(self) -> str:
        return "numpy"


class TorchBackend:
    """PyTorch on one device (CPU, CUDA or MPS); see :mod:`mphate.embed.torch_dense`."""

    name = "torch"

    def __init__(self, device: str):
        from mphate.embed import torch_dense

        self.device = device
        self._ops = torch_dense

    def interslice_bandwidth(self, features, knn, *, n_threads):
        return self._kernel_ops().interslice_bandwidth(features, knn, self.device)

    def landmark_kernel(self, kernel):
        """A :class:`~mphate.embed.torch_kernel.DeviceKernel` (copied, or built from a lean
        kernel's features on a GPU with room), or the host kernel where it stays on the host."""
        ops = self._kernel_ops()
        if isinstance(kernel, MultisliceKernel) and ops.fits_on_device(kernel, self.device):
            return ops.DeviceKernel.of(kernel, self.device)
        return kernel

    def _on_device(self, kernel) -> bool:
        return isinstance(kernel, self._kernel_ops().DeviceKernel)

    def landmark_features(self, kernel, n_components, rng, *, stride, n_threads):
        if not self._on_device(kernel):
            return NUMPY.landmark_features(kernel, n_components, rng, stride=stride, n_threads=n_threads)
        return self._landmark_ops().landmark_features(kernel, n_components, rng, stride=stride)

    def cluster_landmarks(self, features, n_landmark, rng, *, n_threads, seeding):
        if seeding != "random":  # k-means++ seeding is sequential: the host's (few points anyway)
            return NUMPY.cluster_landmarks(self.to_numpy(features), n_landmark, rng, n_threads=n_threads,
                                           seeding=seeding)
        return self._landmark_ops().cluster_landmarks(features, n_landmark, rng, self.device)

    def landmark_operator(self, kernel, labels, *, n_threads):
        if not self._on_device(kernel):
            return NUMPY.landmark_operator(kernel, labels, n_threads=n_threads)
        return self._landmark_ops().landmark_operator(kernel, labels)

    @staticmethod
    def _kernel_ops():
        from mphate.embed import torch_kernel

        return torch_kernel

    @staticmethod
    def _landmark_ops():
        from mphate.embed import torch_landmarks

        return torch_landmarks

    def spectral_decomposition(self, symmetric, scale):
        return self._ops.TorchSpectralDecomposition(symmetric, scale, self.device)

    def potential(self, transition, gamma: float):
        return self._ops.potential(transition, gamma)

    def center_columns(self, points):
        return points - points.mean(dim=0)

    def classical_mds(self, points, n_components: int, rng: np.random.Generator) -> np.ndarray:
        return self._ops.classical_mds(points, n_components, rng)

    def pairwise_distances(self, points):
        return self._ops.pairwise_distances(points)

    def smacof(self, distances, init, *, max_iter: int, tol: float, n_threads: int):
        return self._ops.smacof(distances, init, max_iter=max_iter, tol=tol)

    def nearest_neighbors(self, points, k, *, n_threads: int = 1):
        return self._ops.nearest_neighbors(points, k, self.device)

    def to_numpy(self, array) -> np.ndarray:
        if isinstance(array, np.ndarray):
            return array
        return array.detach().cpu().numpy()

    def synchronize(self) -> None:
        """Wait for the device's queued kernels, so that a timed step owns its own work."""
        torch = self._ops.torch
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
        elif self.device == "mps":
            torch.mps.synchronize()

    def __str__(self) -> str:
        return f"torch:{self.device}"


NUMPY = NumpyBackend()


def get_backend(device):
    """The backend for an estimator's ``device`` parameter.

    ``"cpu"`` (or None) is NumPy; ``"torch"`` is PyTorch on the CPU; ``"cuda"``, ``"cuda:N"``
    and ``"mps"`` are PyTorch on that accelerator, with a clear error when torch is missing or
    the device is not available.
    """
    if device is None or device == "cpu":
        return NUMPY
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))} (or 'cuda:N'); got {device!r}")
    from mphate.optional import require

    torch = require("torch", f"MPHATE(device={device!r})")
    torch_device = "cpu" if device == "torch" else device
    if torch_device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but PyTorch sees no CUDA device here; use device='cpu'")
    if torch_device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("device='mps', but PyTorch sees no Apple GPU here; use device='cpu'")
    return TorchBackend(torch_device)
