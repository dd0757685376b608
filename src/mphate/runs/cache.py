"""Per-run results on disk, so a rerun after a crash embeds only the runs not done yet.

One file per run, ``<cache dir>/<key>.npz``, where the key is the run's content and the
parameters (:func:`mphate.runs.specs.run_key`). It is written whole under a temporary name and
renamed into place, so a crash leaves either no entry or a complete one. Failed runs are not
cached: a rerun tries them again. An entry that cannot be read is ignored and recomputed.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from mphate.runs.specs import CACHE_VERSION

_ARRAYS = ("embedding", "unit_layer", "epochs", "steps", "class_codes")
_SCALAR = "scalar__"


def entry_path(cache_dir, key: str) -> Path:
    return Path(cache_dir) / f"{key}.npz"


def save_result(result: dict, cache_dir) -> Path | None:
    """Write a successful result under its key; returns the file (None for an error result)."""
    if result.get("error") or not result.get("key"):
        return None
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(result[k]) for k in _ARRAYS if result.get(k) is not None}
    arrays.update({_SCALAR + k: np.asarray(v) for k, v in result["scalars"].items()})
    meta = {k: v for k, v in result.items() if k not in _ARRAYS and k != "scalars"}
    meta["cache_version"] = CACHE_VERSION
    # NaN is valid for Python's json reader; these files are read only by this module
    arrays["meta"] = np.asarray(json.dumps(meta, default=_plain))
    final = entry_path(cache_dir, result["key"])
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a cache entry")


def load_result(cache_dir, key: str) -> dict | None:
    """The cached result for ``key``, or None when there is none (or it cannot be read)."""
    path = entry_path(cache_dir, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            result = {k: npz[k] for k in _ARRAYS if k in npz.files}
            result["scalars"] = {k[len(_SCALAR):]: npz[k] for k in npz.files if k.startswith(_SCALAR)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # torn or foreign file: recompute, and the new entry replaces it
    if meta.get("cache_version") != CACHE_VERSION or meta.get("key") != key:
        return None
    result.update(meta)
    for optional in ("unit_layer", "class_codes"):
        result.setdefault(optional, None)
    return result
