"""Input checks that turn bad input into one clear ValueError instead of a SciPy traceback."""
from __future__ import annotations

import numpy as np


def check_trace_array(data, *, name: str = "trace") -> np.ndarray:
    """Validate an activation tensor; return it as float32/float64, shape (n_slices, n_units, n_trace).

    Accepts any real numeric dtype (ints, bools, float16 ... float128); rejects wrong
    dimensionality, empty axes, complex or object data, and NaN/inf (naming where they are).
    """
    arr = np.asarray(data)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real-valued; got complex dtype {arr.dtype}")
    if arr.ndim != 3:
        hint = ""
        if arr.ndim == 2:
            hint = (
                " (a single slice of shape (n_units, n_trace)? add a slice axis with "
                "data[None]; M-PHATE needs several slices)"
            )
        raise ValueError(
            f"{name} must have shape (n_slices, n_units, n_trace); got {arr.ndim} "
            f"dimension(s), shape {arr.shape}{hint}"
        )
    if min(arr.shape) == 0:
        raise ValueError(f"{name} has an empty axis: shape {arr.shape} (n_slices, n_units, n_trace)")
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)  # exact, and half the memory of float64 for large traces
    elif arr.dtype not in (np.float32, np.float64):
        # ints, bools and extended floats: float64 holds them all (float128 values beyond
        # float64's range become inf and are reported below)
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite.all(axis=2))
        n_bad = len(bad)
        where = ", ".join(f"(slice {s}, unit {u})" for s, u in bad[:5])
        kinds = []
        if np.isnan(arr).any():
            kinds.append("NaN")
        if np.isinf(arr).any():
            kinds.append("inf")
        raise ValueError(
            f"{name} contains {' and '.join(kinds)} activations in {n_bad} (slice, unit) "
            f"vector(s), e.g. {where}; a diverged run or an overflowing layer? "
            "Drop those slices or units before embedding."
        )
    return arr


def check_sizes(n_slices: int, n_units: int, n_trace: int, *, intraslice_knn: int, interslice_knn: int):
    """Check the trace is large enough for the neighbour counts the kernels need."""
    for name, value in (("intraslice_knn", intraslice_knn), ("interslice_knn", interslice_knn)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if n_slices < 2:
        raise ValueError(
            f"M-PHATE needs at least 2 slices (moments of training); got {n_slices}. "
            "Record the trace at several epochs or steps."
        )
    if n_units < intraslice_knn + 1:
        raise ValueError(
            f"intraslice_knn={intraslice_knn} needs at least {intraslice_knn + 1} units per slice; "
            f"got {n_units}. Trace more units or lower intraslice_knn."
        )
    if n_slices < interslice_knn + 1:
        raise ValueError(
            f"interslice_knn={interslice_knn} needs at least {interslice_knn + 1} slices; "
            f"got {n_slices}. Record more slices or lower interslice_knn "
            f"(e.g. interslice_knn={max(1, n_slices - 1)})."
        )
    if n_trace < 2:
        raise ValueError(
            f"each unit needs activations on at least 2 trace inputs to be compared; got {n_trace}"
        )
