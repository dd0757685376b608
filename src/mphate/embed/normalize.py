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
