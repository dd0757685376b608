"""The in-memory trace: what capture produces, the store holds, and the embedding consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Trace:
    """Hidden-unit activations recorded over training.

    Attributes
    ----------
    data : ndarray, shape (n_slices, n_units, n_trace)
        Activation of each unit on each trace input, at each recorded moment (slice).
    unit_layer : ndarray of int, shape (n_units,) or None
        Index into ``layer_names`` of the layer each unit belongs to.
    layer_names : list of str or None
        Names of the traced layers, in unit order.
    steps : ndarray of int, shape (n_slices,)
        Optimiser step (or batch index) at which each slice was recorded.
    epochs : ndarray of float, shape (n_slices,)
        Epoch at which each slice was recorded (may be fractional for per-batch capture).
    scalars : dict of str -> ndarray, shape (n_slices,)
        Per-slice values the user logged (loss, val_loss, accuracy, task, ...); NaN where missing.
    trace_labels : ndarray, shape (n_trace,) or None
        Class label of each trace input (for "most-active class" colouring).
    """

    data: np.ndarray
    unit_layer: np.ndarray | None = None
    layer_names: list[str] | None = None
    steps: np.ndarray | None = None
    epochs: np.ndarray | None = None
    scalars: dict[str, np.ndarray] = field(default_factory=dict)
    trace_labels: np.ndarray | None = None

    def __post_init__(self):
        self.data = np.asarray(self.data)
        if self.data.ndim != 3:
            raise ValueError(
                "trace data must have shape (n_slices, n_units, n_trace); "
                f"got an array with {self.data.ndim} dimension(s), shape {self.data.shape}"
            )
        n_slices, n_units, n_trace = self.data.shape
        if self.steps is None:
            self.steps = np.arange(n_slices)
        if self.epochs is None:
            self.epochs = np.asarray(self.steps, dtype=float)
        self.steps = np.asarray(self.steps)
        self.epochs = np.asarray(self.epochs, dtype=float)
        for name, arr in (("steps", self.steps), ("epochs", self.epochs)):
            if arr.shape != (n_slices,):
                raise ValueError(f"{name} must have shape ({n_slices},), got {arr.shape}")
        if self.unit_layer is not None:
            self.unit_layer = np.asarray(self.unit_layer, dtype=int)
            if self.unit_layer.shape != (n_units,):
                raise ValueError(f"unit_layer must have shape ({n_units},), got {self.unit_layer.shape}")
            if self.layer_names is None:
                self.layer_names = [f"layer{i}" for i in range(int(self.unit_layer.max()) + 1)]
        self.scalars = {k: np.asarray(v, dtype=float) for k, v in dict(self.scalars).items()}
        for name, arr in self.scalars.items():
            if arr.shape != (n_slices,):
                raise ValueError(f"scalar {name!r} must have shape ({n_slices},), got {arr.shape}")
        if self.trace_labels is not None:
            self.trace_labels = np.asarray(self.trace_labels)
            if self.trace_labels.shape != (n_trace,):
                raise ValueError(
                    f"trace_labels must have shape ({n_trace},), got {self.trace_labels.shape}"
                )

    @property
    def n_slices(self) -> int:
        return self.data.shape[0]

    @property
    def n_units(self) -> int:
        return self.data.shape[1]

    @property
    def n_trace(self) -> int:
        return self.data.shape[2]

    def per_point(self, values_per_slice=None, values_per_unit=None) -> np.ndarray:
        """Broadcast a per-slice or per-unit array to all n_slices*n_units points (slice-major)."""
        if (values_per_slice is None) == (values_per_unit is None):
            raise ValueError("give exactly one of values_per_slice, values_per_unit")
        if values_per_slice is not None:
            return np.repeat(np.asarray(values_per_slice), self.n_units)
        return np.tile(np.asarray(values_per_unit), self.n_slices)

    def check_embedding_rows(self, embedding, name: str = "embedding") -> None:
        """Raise ValueError unless ``embedding`` has one row per unit at each slice of this trace.

        Catches an embedding (computed, or read from a file) paired with the wrong trace up
        front, with both sizes in the message, rather than as a bare length mismatch later.
        """
        n_points = self.n_slices * self.n_units
        if embedding.shape[0] != n_points:
            raise ValueError(
                f"{name} has {embedding.shape[0]} rows but the trace has {self.n_slices} slices x "
                f"{self.n_units} units = {n_points} points; was it computed from another trace?"
            )

    def to_xarray(self):
        """This trace as an ``xarray.DataArray`` (dims slice, unit, trace_input; coordinates
        epoch, step, logged scalars, layer, label): see :func:`mphate.traces.arrays.to_xarray`.
        Needs xarray (``pip install "mphate[arrays]"``)."""
        from mphate.traces.arrays import to_xarray

        return to_xarray(self)
