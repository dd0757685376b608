"""Data sets for examples and experiments, all offline.

* :func:`load_digits_split`: scikit-learn's bundled 8x8 digits (1797 images, 10 classes), the
  offline stand-in for MNIST.
* :func:`load_mnist`: MNIST from files the user already has (nothing is downloaded): the four
  IDX files (``train-images-idx3-ubyte`` etc., optionally gzipped, also with the common
  ``train-images.idx3-ubyte`` spelling) or Keras's ``mnist.npz``.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from mphate.traces._npz import read_npz

__all__ = ["load_digits_split", "load_mnist", "read_idx"]


def load_digits_split(test_size=0.2, random_state=0, flatten=True):
    """scikit-learn's 8x8 digits, scaled to [0, 1], split in a stratified, seeded way.

    Parameters
    ----------
    test_size : float, default 0.2
        Fraction of the 1797 images held out.
    random_state : int, default 0
    flatten : bool, default True
        Images as 64-vectors (True) or 8x8 arrays (False).

    Returns
    -------
    X_train : ndarray float32, shape (n_train, 64) or (n_train, 8, 8)
    y_train : ndarray int64, shape (n_train,)
    X_test, y_test : likewise for the held-out images
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    if not flatten:
        X = X.reshape(-1, 8, 8)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=random_state, stratify=y
    )
    return X_train, y_train, X_test, y_test


# ---------------------------------------------------------------------------------------------
# MNIST from local files

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_MNIST_FILES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (the format MNIST ships in), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated (incomplete IDX header)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} holds {len(raw) - header} data bytes, but its header announces shape {shape} "
            f"({expected} bytes): the file is truncated or damaged"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(data_dir: Path, names) -> Path | None:
    for name in names:
        for candidate in (data_dir / name, data_dir / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def load_mnist(path, flatten=True, normalize=True):
    """Load MNIST from local files; nothing is downloaded.

    Parameters
    ----------
    path : str or Path
        A directory holding the four IDX files (``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
        each optionally ``.gz``) or ``mnist.npz``; or the path of an ``mnist.npz`` file
        (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``).
    flatten : bool, default True
        Images as 784-vectors (True) or 28x28 arrays (False).
    normalize : bool, default True
        Pixels as float32 in [0, 1] (True) or the stored uint8 (False).

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarrays
        Images (n, 784) or (n, 28, 28); labels int64 (n,).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no MNIST data at {path}")
    if path.is_dir():
        found = {key: _find(path, names) for key, names in _MNIST_FILES.items()}
        if all(found.values()):
            arrays = {key: read_idx(file) for key, file in found.items()}
        elif (path / "mnist.npz").is_file():
            arrays = _read_mnist_npz(path / "mnist.npz")
        else:
            missing = [names[0] for key, names in _MNIST_FILES.items() if found[key] is None]
            raise FileNotFoundError(
                f"no MNIST files in {path}: missing {missing} (optionally .gz), and no mnist.npz. "
                f"mphate cannot download data; copy the files there first"
            )
    else:
        arrays = _read_mnist_npz(path)
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"MNIST {split} split at {path} is inconsistent: images {images.shape}, labels {labels.shape}"
            )
    out = []
    for split in ("train", "test"):
        images = arrays[f"x_{split}"]
        if normalize:
            images = images.astype(np.float32) / 255.0
        if flatten:
            images = images.reshape(images.shape[0], -1)
        out += [images, arrays[f"y_{split}"].astype(np.int64)]
    return tuple(out)


def _read_mnist_npz(path: Path) -> dict:
    arrays = read_npz(path)
    missing = [k for k in _MNIST_FILES if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks {missing}; expected keys x_train, y_train, x_test, y_test")
    return arrays
