"""Synthetic traces and fake embeddings for the plotting tests (no estimator needed)."""
from __future__ import annotations

import numpy as np

from mphate.traces.trace import Trace


def synthetic_trace(n_slices=12, layer_sizes=(16, 16, 8), n_classes=4, per_class=5, seed=0,
                    layers=True, labels=True) -> Trace:
    """A Trace whose units grow a preference for one class as training goes on.

    Unit ``u`` prefers class ``u % n_classes``; the preference strengthens linearly with the
    slice index, so the most-active class of every unit is known after the first slice.
    """
    rng = np.random.default_rng(seed)
    n_units = int(sum(layer_sizes))
    n_trace = n_classes * per_class
    trace_labels = np.repeat(np.arange(n_classes), per_class)
    preferred = np.arange(n_units) % n_classes
    strength = np.linspace(0.5, 3.0, n_slices)[:, None, None]
    prefers = (trace_labels[None, None, :] == preferred[None, :, None]).astype(float)
    data = 0.1 * rng.standard_normal((n_slices, n_units, n_trace)) + strength * prefers
    unit_layer = np.repeat(np.arange(len(layer_sizes)), layer_sizes)
    loss = 2.0 * np.exp(-np.arange(n_slices) / 4.0) + 0.05
    return Trace(
        data=data,
        unit_layer=unit_layer if layers else None,
        layer_names=[f"dense_{i + 1}" for i in range(len(layer_sizes))] if layers else None,
        epochs=np.arange(1, n_slices + 1, dtype=float),
        scalars={"loss": loss, "val_loss": loss * 1.1 + 0.02},
        trace_labels=trace_labels if labels else None,
    )


def fake_embedding(trace: Trace, n_components=2, seed=0) -> np.ndarray:
    """Units fanning out from their layer's centre over time, slice-major (n_points, n_components)."""
    rng = np.random.default_rng(seed)
    n_s, n_u = trace.n_slices, trace.n_units
    layer = trace.unit_layer if trace.unit_layer is not None else np.zeros(n_u, int)
    centres = rng.normal(scale=3.0, size=(int(layer.max()) + 1, n_components))
    direction = rng.normal(size=(n_u, n_components))
    growth = np.linspace(0.1, 1.0, n_s)[:, None, None]
    walk = np.cumsum(0.05 * rng.standard_normal((n_s, n_u, n_components)), axis=0)
    emb = centres[layer][None] * growth + direction[None] * growth + walk
    return emb.reshape(n_s * n_u, n_components)
