"""Per-point colour values derived from a :class:`~mphate.traces.trace.Trace`.

An M-PHATE embedding has one row per (slice, unit) pair in slice-major order: row
``i`` is unit ``i % n_units`` at slice ``i // n_units``. Every function here returns an
array of length ``n_points = n_slices * n_units`` in that order, so it can be passed as
``c`` to :func:`mphate.plot.scatter` next to the embedding.

:func:`coloring` bundles such an array with what a plot needs to label it (a name, whether
it is continuous or categorical, and the category names) as a :class:`Coloring`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mphate.traces.trace import Trace

CONTINUOUS = "continuous"
CATEGORICAL = "categorical"

# colourings every trace can offer, and those that need optional metadata
STANDARD = ("epoch", "layer", "class")
_ALIASES = {"most_active_class": "class", "most-active class": "class", "most-active-class": "class"}


@dataclass
class Coloring:
    """A per-point colour variable and how to label it.

    Attributes
    ----------
    name : str
        Key it was requested by ("epoch", "layer", "unit", "class" or a scalar name).
    label : str
        Human-readable title for a colour-bar or legend.
    values : ndarray, shape (n_points,)
        Float values (continuous) or integer category codes 0..len(categories)-1 (categorical).
    kind : {"continuous", "categorical"}
    categories : list of str or None
        Name of each category code (categorical colourings only).
    """

    name: str
    label: str
    values: np.ndarray
    kind: str
    categories: list[str] | None = None

    def __len__(self) -> int:
        return len(self.values)


def epoch_per_point(trace: Trace) -> np.ndarray:
    """Epoch of each point's slice, shape (n_points,), float."""
    return trace.per_point(values_per_slice=np.asarray(trace.epochs, dtype=float))


def unit_per_point(trace: Trace) -> np.ndarray:
    """Global unit index (0..n_units-1) of each point, shape (n_points,), int."""
    return trace.per_point(values_per_unit=np.arange(trace.n_units))


def layer_per_point(trace: Trace) -> np.ndarray:
    """Layer index (into ``trace.layer_names``) of each point, shape (n_points,), int.

    Raises ValueError when the trace has no layer metadata (``unit_layer`` is None).
    """
    if trace.unit_layer is None:
        raise ValueError(
            "colour by layer is unavailable: this trace has no layer metadata "
            "(Trace.unit_layer is None). Record it with the capture tools, or build the "
            "Trace with unit_layer=<layer index of each unit> and layer_names=[...]"
        )
    return trace.per_point(values_per_unit=trace.unit_layer)


def most_active_class_per_unit(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's most-active class at each slice.

    Definition: for slice ``s``, unit ``u`` and class ``c``, let ``m[s, u, c]`` be the mean of
    ``trace.data[s, u, i]`` over the trace inputs ``i`` whose label ``trace.trace_labels[i]``
    is ``c``. The most-active class is ``argmax_c m[s, u, c]``, i.e. the class whose inputs
    drive the unit highest on average. Raw activations are used; the z-scoring M-PHATE
    applies per (slice, unit) is increasing and affine, so it would pick the same class.
    Ties (e.g. a dead unit with constant output) go to the first class in sorted order.

    Returns
    -------
    codes : ndarray of int, shape (n_slices, n_units)
        Index into ``classes`` of the most-active class.
    classes : ndarray, shape (n_classes,)
        The sorted distinct trace labels.

    Raises ValueError when the trace has no ``trace_labels``.
    """
    if trace.trace_labels is None:
        raise ValueError(
            "colour by most-active class is unavailable: this trace has no trace_labels "
            "(the class of each trace input). Record the trace with labelled inputs, or build "
            "the Trace with trace_labels=<class of each trace input>"
        )
    classes, label_codes = np.unique(trace.trace_labels, return_inverse=True)
    # one-hot (n_trace, n_classes) divided by class sizes turns the per-class mean into a matmul
    onehot = np.zeros((trace.n_trace, len(classes)))
    onehot[np.arange(trace.n_trace), label_codes] = 1.0
    onehot /= onehot.sum(axis=0, keepdims=True)
    class_means = np.asarray(trace.data, dtype=float) @ onehot  # (n_slices, n_units, n_classes)
    return np.argmax(class_means, axis=2), classes


def most_active_class_per_point(trace: Trace) -> np.ndarray:
    """Most-active class *label* of each point, shape (n_points,).

    See :func:`most_active_class_per_unit` for the definition.
    """
    codes, classes = most_active_class_per_unit(trace)
    return classes[codes.reshape(-1)]


def scalar_per_point(trace: Trace, name: str) -> np.ndarray:
    """A per-slice scalar (e.g. "loss") repeated for every unit, shape (n_points,), float."""
    if name not in trace.scalars:
        available = ", ".join(sorted(trace.scalars)) or "none"
        raise ValueError(f"this trace has no scalar {name!r}; scalars it has: {available}")
    return trace.per_point(values_per_slice=trace.scalars[name])


def available_colorings(trace: Trace) -> list[str]:
    """Names :func:`coloring` accepts for this trace, standard ones first.

    Always "epoch" and "unit"; "layer" when the trace has layer metadata; "class" when it has
    trace labels; then every per-slice scalar with at least one finite value.
    """
    names = ["epoch"]
    if trace.unit_layer is not None:
        names.append("layer")
    if trace.trace_labels is not None:
        names.append("class")
    names.append("unit")
    names += [k for k, v in trace.scalars.items() if np.isfinite(v).any() and k not in names]
    return names


def coloring(trace: Trace, by: str) -> Coloring:
    """The per-point colouring ``by`` of a trace, labelled for plotting.

    Parameters
    ----------
    trace : Trace
    by : str
        "epoch", "layer", "class" (most-active class; "most_active_class" also accepted),
        "unit", or the name of a per-slice scalar such as "loss" or "val_loss".

    Returns
    -------
    Coloring with ``values`` of shape (n_points,).
    """
    key = _ALIASES.get(by, by)
    if key == "epoch":
        return Coloring("epoch", "epoch", epoch_per_point(trace), CONTINUOUS)
    if key == "layer":
        codes = layer_per_point(trace)
        return Coloring("layer", "layer", codes, CATEGORICAL, list(trace.layer_names))
    if key == "class":
        codes, classes = most_active_class_per_unit(trace)
        return Coloring(
            "class", "most-active class", codes.reshape(-1), CATEGORICAL, [str(c) for c in classes]
        )
    if key == "unit":
        return Coloring("unit", "unit", unit_per_point(trace).astype(float), CONTINUOUS)
    if key in trace.scalars:
        return Coloring(key, key.replace("_", " "), scalar_per_point(trace, key), CONTINUOUS)
    raise ValueError(
        f"unknown colouring {by!r}; this trace offers: {', '.join(available_colorings(trace))}"
    )


def check_embedding(embedding, trace: Trace | None = None, *, n_components=None) -> np.ndarray:
    """Return ``embedding`` as a float array (n_points, n_dims), checking it fits the trace.

    Raises ValueError for a non-2-D array, fewer than 2 columns, a row count that is not
    ``trace.n_slices * trace.n_units``, or a column count other than ``n_components``.
    """
    emb = np.asarray(embedding, dtype=float)
    if emb.ndim != 2 or emb.shape[1] < 2:
        raise ValueError(
            f"an embedding must have shape (n_points, 2) or (n_points, 3); got shape {emb.shape}"
        )
    if n_components is not None and emb.shape[1] != n_components:
        raise ValueError(
            f"a {n_components}-D view needs an embedding with {n_components} columns; this one "
            f"has {emb.shape[1]} (embed with n_components={n_components})"
        )
    if trace is not None:
        trace.check_embedding_rows(emb)
    return emb
