"""The array library of the dense stages, chosen once per fit.

The sparse stages (kernel, spectral coordinates, landmark clustering, landmark operator) run
on NumPy/SciPy, whose sparse kernels have no equal on the CPU. The dense stages that follow
(eigendecomposition, the power ``P^t``, the potential, distances, SMACOF) work on
``n_landmark x n_landmark`` arrays and are the part a GPU speeds up. They reach their array
library only through a :class:`Backend`, which :func:`get_backend` picks from the
estimator's ``device`` parameter: NumPy for ``"cpu"``, PyTorch (an optional extra) for
``"cuda"``, ``"mps"`` or ``"torch"`` (PyTorch on the CPU, how CI checks the torch path).

A backend converts at the boundary only: :meth:`Backend.asarray` in, :meth:`Backend.to_numpy`
out; everything between stays on the device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEVICES = ("cpu", "torch", "cuda", "mps")


@dataclass(frozen=True)
class Backend:
    """An array library and the device its arrays live on.

    Attributes
    ----------
    name : {"numpy", "torch"}
    device : str
        ``"cpu"`` for NumPy; a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
        ``"mps"``) for torch.
    """

    name: str
    device: str = "cpu"

    @property
    def is_numpy(self) -> bool:
        return self.name == "numpy"

    def asarray(self, array, dtype=None):
        """``array`` as this backend's array on its device (no copy when already there)."""
        if self.is_numpy:
            return np.asarray(array, dtype=dtype)
        torch = _torch()
        tensor = torch.as_tensor(array, device=self.device)
        return tensor if dtype is None else tensor.to(_torch_dtype(dtype))

    def to_numpy(self, array) -> np.ndarray:
        """``array`` as a NumPy array on the host."""
        if self.is_numpy or isinstance(array, np.ndarray):
            return np.asarray(array)
        return array.detach().cpu().numpy()

    def __str__(self) -> str:
        return "numpy" if self.is_numpy else f"torch:{self.device}"


NUMPY = Backend("numpy")


def get_backend(device) -> Backend:
    """The backend for an estimator's ``device`` parameter.

    ``"cpu"`` (or None) is NumPy; ``"torch"`` is PyTorch on the CPU; ``"cuda"``, ``"cuda:N"``
    and ``"mps"`` are PyTorch on that accelerator, with a clear error when torch is missing or
    the device is not available.
    """
    if device is None or device == "cpu":
        return NUMPY
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))} (or 'cuda:N'); got {device!r}")
    torch = _torch()
    torch_device = "cpu" if device == "torch" else device
    if torch_device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but PyTorch sees no CUDA device here; use device='cpu'")
    if torch_device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("device='mps', but PyTorch sees no Apple GPU here; use device='cpu'")
    return Backend("torch", torch_device)


def _torch():
    from mphate.optional import require

    return require("torch", "MPHATE(device=...) other than 'cpu'")


def _torch_dtype(dtype):
    torch = _torch()
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
