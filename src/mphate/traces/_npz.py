"""Reading a whole ``.npz`` archive, for the loaders of traces (:mod:`mphate.traces.io`) and of MNIST
(:mod:`mphate.traces.datasets`)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def read_npz(path: Path) -> dict:
    """Every array in the ``.npz`` at ``path``, by name, read into memory.

    A file that is not a readable archive (truncated, not a zip, pickled objects) raises
    ValueError naming it, so that callers report one clear line instead of numpy's or zipfile's
    own exception.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read {path} as an .npz archive: {exc}") from None
