"""Per-(slice, unit) z-scoring of activations across the trace inputs."""
from __future__ import annotations

import numpy as np


def zscore_units(data: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Z-score every (slice, unit) activation vector across the trace inputs.

    Parameters
    ----------
    data : ndarray, shape (n_slices, n_units, n_trace), finite
    dtype : output dtype

    Returns
    -------
    ndarray, shape (n_slices, n_units, n_trace)
        Each vector has mean 0 and (population) standard deviation 1; a constant vector
        (a dead unit) becomes all zeros rather than NaN.
    """
    out = np.empty(data.shape, dtype=dtype)
    # chunk over slices to bound the float64 temporaries
    chunk = max(1, int(2**22 // max(1, data.shape[1] * data.shape[2])))
    for start in range(0, data.shape[0], chunk):
        block = np.array(data[start : start + chunk], dtype=np.float64)
        # z-scores are scale-invariant; dividing by the largest magnitude first keeps
        # activations near the float limits from overflowing in the variance
        scale = np.abs(block).max(axis=2, keepdims=True)
        scale[scale == 0] = 1.0
        block /= scale
        block -= block.mean(axis=2, keepdims=True)
        std = np.sqrt((block * block).mean(axis=2, keepdims=True))
        # relative to the (rescaled, <= 1) values, a tiny spread is rounding noise of a constant
        dead = std <= 1e-12
        std[dead] = 1.0
        block /= std
        block[np.broadcast_to(dead, block.shape)] = 0.0
        out[start : start + chunk] = block
    return out


def check_points_differ(features: np.ndarray, normalized: bool, rtol: float = 1e-5) -> None:
    """Raise ``ValueError`` when every (slice, unit) vector of ``features`` is the same.

    Then there is nothing to embed: the kernel links every point to every other equally, and
    the layout is rounding noise around one point, which a plot would stretch into a cloud.
    A layer whose units all died does this. Vectors count as the same within ``rtol`` of the
    largest magnitude (z-scoring leaves rounding between proportional vectors).

    Parameters
    ----------
    features : ndarray, shape (n_slices, n_units, n_features)
        What the kernel is built from.
    normalized : bool
        Whether ``features`` are z-scored (the message then names what z-scoring removed).
    """
    first = features[0, 0].astype(np.float64)
    tolerance = rtol * max(1.0, float(np.abs(first).max(initial=0.0)))
    # a slice at a time, so no full-size temporary; real traces differ within the first
    for block in features:
        if np.abs(block - first).max() > tolerance:
            return
    if normalized and not np.any(first):
        raise ValueError(
            "every (slice, unit) vector of the trace is constant over the trace inputs (dead "
            "units?), so z-scoring makes them all zero and leaves nothing to embed. Trace another "
            "layer or other inputs, or pass normalize=False to embed the activation levels.")
    raise ValueError(
        "every (slice, unit) vector of the trace is the same"
        + (" after z-scoring (the units respond alike up to scale and offset)" if normalized else "")
        + ", so there is nothing to embed. Trace another layer or other inputs.")
