"""Saving and loading an embedding as ``.npz`` (what ``mphate embed`` writes).

The file holds ``embedding`` (n_points, n_components), optionally ``embedding_3d``, plus
``n_slices`` / ``n_units`` so a later ``mphate plot --embedding FILE`` can check the file
belongs to the trace it is drawn with, and the parameters it was computed with as JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mphate.traces.trace import Trace


def save_embedding(path, embedding, trace: Trace | None = None, *, embedding_3d=None, params=None) -> Path:
    """Write ``embedding`` (and ``embedding_3d``, trace shape, ``params`` dict) to ``path`` (.npz)."""
    from mphate.paths import ensure_parent_writable

    path = ensure_parent_writable(path)
    arrays = {"embedding": np.asarray(embedding, dtype=float)}
    if embedding_3d is not None:
        arrays["embedding_3d"] = np.asarray(embedding_3d, dtype=float)
    if trace is not None:
        arrays.update(n_slices=trace.n_slices, n_units=trace.n_units,
                      epochs=np.asarray(trace.epochs), steps=np.asarray(trace.steps))
    if params is not None:
        arrays["params"] = np.array(json.dumps(params, default=str))
    with open(path, "wb") as fh:  # a file handle keeps numpy from appending ".npz" to the name
        np.savez_compressed(fh, **arrays)
    return path


def load_embedding(path, trace: Trace | None = None, *, key: str = "embedding") -> np.ndarray:
    """Read the array ``key`` from an ``.npz`` written by :func:`save_embedding` (or a ``.npy``).

    With ``trace`` given, checks the row count is ``trace.n_slices * trace.n_units``.
    Raises FileNotFoundError for a missing file and ValueError for an unreadable or wrong one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embedding file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read an embedding from {path}: not a .npz/.npy file ({exc})") from exc
    if isinstance(loaded, np.ndarray):
        emb = loaded
    else:
        with loaded:
            if key not in loaded.files:
                raise ValueError(f"{path} has no array {key!r}; it has: {', '.join(loaded.files) or 'none'}")
            emb = loaded[key]
    emb = np.asarray(emb, dtype=float)
    if emb.ndim != 2:
        raise ValueError(f"{path}: {key} must have shape (n_points, n_components); got {emb.shape}")
    if trace is not None:
        trace.check_embedding_rows(emb, f"{path}: {key}")
    return emb
