"""Synthetic traces with known structure, for tests, examples and scaling benchmarks."""
from __future__ import annotations

import numpy as np

from mphate.traces.trace import Trace


def make_trace(
    n_slices: int = 50,
    n_units: int = 60,
    n_trace: int = 40,
    n_layers: int = 3,
    n_groups: int = 4,
    noise: float = 0.3,
    random_state=None,
) -> Trace:
    """A trace whose units start alike and split into groups that drift smoothly over training.

    Each unit's activation vector is ``(1 - a(s)) * shared(s) + a(s) * group_centre(s) + noise``,
    where the specialisation ``a(s)`` rises from 0 to 1 over slices and the shared and group
    patterns each follow a smooth random walk, so units fan out from one cloud into
    ``n_groups`` communities, as in a network learning.

    Returns
    -------
    Trace with data of shape (n_slices, n_units, n_trace), float32; ``unit_layer`` splits units
    evenly over ``n_layers``; ``scalars["loss"]`` falls over time; ``trace_labels`` cycle
    through 10 classes.
    """
    # a legacy RandomState, so an int seed gives the traces it always gave
    rng = random_state if isinstance(random_state, np.random.RandomState) else np.random.RandomState(random_state)

    def smooth_walk(n_series):
        steps = rng.standard_normal((n_slices, n_series, n_trace)) / np.sqrt(n_slices)
        return np.cumsum(steps, axis=0) + rng.standard_normal((1, n_series, n_trace))

    shared = smooth_walk(1)
    centres = smooth_walk(n_groups) * 2.0
    group = rng.randint(n_groups, size=n_units)
    specialisation = np.linspace(0, 1, n_slices)[:, None, None]
    unit_offset = rng.standard_normal((1, n_units, n_trace)) * noise
    data = (1 - specialisation) * shared + specialisation * centres[:, group] + unit_offset
    data += rng.standard_normal(data.shape) * noise * 0.2
    layer = np.minimum(np.arange(n_units) * n_layers // n_units, n_layers - 1)
    loss = 2.3 * np.exp(-np.arange(n_slices) / max(1, n_slices / 4)) + 0.05
    return Trace(
        data=data.astype(np.float32),
        unit_layer=layer,
        layer_names=[f"layer{i + 1}" for i in range(n_layers)],
        scalars={"loss": loss, "val_loss": loss * 1.1 + 0.02},
        trace_labels=np.arange(n_trace) % 10,
    )
