"""Reading and writing traces: store directories, .npz/.npy files and the reference's .mat files.

Every loader returns a :class:`~mphate.traces.trace.Trace`; :func:`as_trace` turns anything the
estimator accepts (Trace, store, recorder, array, path) into one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mphate.traces._npz import read_npz
from mphate.traces.store import TraceStore, is_trace_store
from mphate.traces.trace import Trace
from mphate.traces.validation import check_trace_array

__all__ = ["as_trace", "as_trace_array", "load_trace", "save_npz", "save_mat", "describe_format"]

_SCALAR_PREFIX = "scalar__"
# per-slice values the reference's .mat files carry next to the trace
_MAT_SCALARS = ("loss", "val_loss", "accuracy", "val_accuracy", "task")


def as_trace(obj) -> Trace:
    """A Trace from a Trace, a store or recorder (anything with ``to_trace()``), a 3-D array
    of shape (n_slices, n_units, n_trace), or a path to a store / .npz / .npy / .mat file."""
    if isinstance(obj, Trace):
        return obj
    if isinstance(obj, (str, Path)) or hasattr(obj, "__fspath__"):
        return load_trace(obj)
    if hasattr(obj, "to_trace") and callable(obj.to_trace):
        return obj.to_trace()
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        return Trace(np.asarray(obj))
    raise TypeError(
        "expected a Trace, a trace store, a recorder, an array of shape "
        f"(n_slices, n_units, n_trace) or a path, got {type(obj).__name__}"
    )


def as_trace_array(obj, *, name: str = "trace") -> np.ndarray:
    """The checked activation array of anything :func:`as_trace` accepts.

    The one reading path of the estimator and the metrics: a Trace, store, recorder or path is
    read by :func:`as_trace`, an array is taken as it is, and the result passes
    :func:`~mphate.traces.validation.check_trace_array` (float32/float64, shape
    (n_slices, n_units, n_trace), finite).
    """
    if isinstance(obj, Trace):
        data = obj.data
    elif isinstance(obj, (str, Path)) or hasattr(obj, "__fspath__") or hasattr(obj, "to_trace"):
        data = as_trace(obj).data
    else:
        data = obj  # array-like: check_trace_array names what is wrong with it
    return check_trace_array(data, name=name)


def describe_format(path) -> str:
    """Short name of what is at ``path``: 'trace store', 'npz file', 'npy file' or 'mat file'."""
    path = Path(path)
    if path.is_dir():
        return "trace store"
    return {".npz": "npz file", ".npy": "npy file", ".mat": "mat file"}.get(path.suffix.lower(), "unknown")


def load_trace(path, *, strict=True) -> Trace:
    """Load a trace from a store directory, a .npz, .npy or .mat file.

    Parameters
    ----------
    path : str or Path
    strict : bool, default True
        For a damaged store: raise (default), or return the slices before the damage.

    File layouts read:

    * ``.npy``: one array (n_slices, n_units, n_trace).
    * ``.npz``: as written by :func:`save_npz` (``data``, ``unit_layer``, ``layer_names``,
      ``steps``, ``epochs``, ``trace_labels``, ``scalar__<name>``), or the reference's keys
      (``trace``, ``layer``, ``digit``, ``loss``, ``val_loss``, ``accuracy``, ``task``).
    * ``.mat``: the reference's keys, as above (MATLAB v5 files; v7.3 files need h5py).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trace at {path}")
    if path.is_dir():
        if not is_trace_store(path):
            raise ValueError(f"{path} is a directory but not an mphate trace store (no meta.json)")
        with TraceStore.open(path, strict=strict) as store:
            return store.to_trace()
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path)
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".mat":
        return _from_reference_arrays(_read_mat(path), path)
    raise ValueError(f"cannot read a trace from {path}: expected a store directory, .npz, .npy or .mat")


def _load_npy(path: Path) -> Trace:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path} as a .npy array: {exc}") from None
    if data.ndim != 3:
        raise ValueError(f"{path} holds an array of shape {data.shape}; a trace is (n_slices, n_units, n_trace)")
    return Trace(data)


def _load_npz(path: Path) -> Trace:
    arrays = read_npz(path)
    if "data" in arrays:
        scalars = {k[len(_SCALAR_PREFIX):]: v for k, v in arrays.items() if k.startswith(_SCALAR_PREFIX)}
        layer_names = arrays.get("layer_names")
        return Trace(
            data=arrays["data"],
            unit_layer=arrays.get("unit_layer"),
            layer_names=None if layer_names is None else [str(n) for n in layer_names],
            steps=arrays.get("steps"),
            epochs=arrays.get("epochs"),
            scalars=scalars,
            trace_labels=arrays.get("trace_labels"),
        )
    if "trace" in arrays:
        return _from_reference_arrays(arrays, path)
    raise ValueError(f"{path} has neither a 'data' nor a 'trace' array (keys: {sorted(arrays)})")


def _read_mat(path: Path) -> dict:
    from scipy import io as sio

    try:
        return {k: v for k, v in sio.loadmat(path).items() if not k.startswith("__")}
    except NotImplementedError:
        # MATLAB v7.3 files are HDF5
        try:
            import h5py
        except ImportError:
            raise ImportError(f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py") from None
        with h5py.File(path, "r") as fh:
            # MATLAB stores arrays column-major: reverse the axes to get the saved shape back
            return {k: np.asarray(fh[k]).T for k in fh.keys() if isinstance(fh[k], h5py.Dataset)}
    except ValueError as exc:
        raise ValueError(f"cannot read {path} as a MATLAB file: {exc}") from None


def _vector(value) -> np.ndarray:
    """MATLAB keeps vectors as (1, n) or (n, 1) matrices; flatten them, and char rows to str."""
    array = np.asarray(value)
    if array.dtype == object:
        return np.asarray([_vector(v).item() if np.asarray(v).size == 1 else str(np.squeeze(v)) for v in array.ravel()])
    return np.squeeze(array).reshape(-1) if array.size != 1 else array.reshape(1)


def _from_reference_arrays(arrays: dict, path) -> Trace:
    """Trace from the reference's layout: trace, layer, digit, loss, val_loss, accuracy, task."""
    if "trace" not in arrays:
        raise ValueError(f"{path} has no 'trace' array (keys: {sorted(arrays)})")
    data = np.asarray(arrays["trace"])
    if data.ndim != 3:
        raise ValueError(f"'trace' in {path} has shape {data.shape}; expected 3 axes (slices, units, inputs)")
    unit_layer = layer_names = None
    if "layer" in arrays:
        layer = _vector(arrays["layer"])
        if layer.dtype.kind in "iuf":
            layer_ids, unit_layer = np.unique(layer.astype(int), return_inverse=True)
            layer_names = [f"layer{int(i)}" for i in layer_ids]
        else:
            layer = np.char.strip(layer.astype(str))  # MATLAB pads char rows with spaces
            layer_names = list(dict.fromkeys(layer.tolist()))  # order of first appearance
            unit_layer = np.asarray([layer_names.index(name) for name in layer])
    labels = _vector(arrays["digit"]) if "digit" in arrays else None
    scalars = {name: _vector(arrays[name]).astype(float) for name in _MAT_SCALARS if name in arrays}
    data = _orient(data, n_units=None if unit_layer is None else len(unit_layer),
                   n_trace=None if labels is None else len(labels),
                   n_slices=next((len(v) for v in scalars.values()), None), path=path)
    return Trace(data=data, unit_layer=unit_layer, layer_names=layer_names, scalars=scalars, trace_labels=labels)


def _orient(data, n_units, n_trace, n_slices, path) -> np.ndarray:
    """Permute ``data``'s axes to (slices, units, inputs), using the lengths the other keys give.

    The stored order is kept when it fits; otherwise the one permutation that fits is used.
    """
    from itertools import permutations

    wanted = (n_slices, n_units, n_trace)

    def fits(shape):
        return all(w is None or w == s for w, s in zip(wanted, shape))

    if fits(data.shape):
        return data
    matches = [p for p in permutations(range(3)) if fits(tuple(data.shape[i] for i in p))]
    if not matches:
        described = ", ".join(
            f"{name}={n}" for name, n in zip(("slices", "units", "inputs"), wanted) if n is not None
        )
        raise ValueError(f"'trace' in {path} has shape {data.shape}, which does not fit the other keys ({described})")
    return np.transpose(data, matches[0])


def save_npz(trace, path, compressed=True) -> Path:
    """Write a trace (or anything :func:`as_trace` accepts) to ``path`` (.npz), loadable by
    :func:`load_trace` with every field intact."""
    trace = as_trace(trace)
    path = Path(path)
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays = {"data": trace.data, "steps": trace.steps, "epochs": trace.epochs}
    if trace.unit_layer is not None:
        arrays["unit_layer"] = trace.unit_layer
        arrays["layer_names"] = np.asarray(trace.layer_names, dtype=str)
    if trace.trace_labels is not None:
        arrays["trace_labels"] = trace.trace_labels
    for name, values in trace.scalars.items():
        arrays[_SCALAR_PREFIX + name] = values
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def save_mat(trace, path) -> Path:
    """Write a trace in the reference's .mat layout (trace, layer, digit and the per-slice
    values loss, val_loss, accuracy, task where present) for tools that expect it."""
    from scipy import io as sio

    trace = as_trace(trace)
    path = Path(path)
    arrays = {"trace": trace.data}
    if trace.unit_layer is not None:
        arrays["layer"] = trace.unit_layer
    if trace.trace_labels is not None:
        arrays["digit"] = trace.trace_labels
    for name in _MAT_SCALARS:
        if name in trace.scalars:
            arrays[name] = trace.scalars[name]
    sio.savemat(path, arrays)
    return path
