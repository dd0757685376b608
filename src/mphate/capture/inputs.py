"""Choosing the trace inputs: a fixed, class-balanced, seeded subset of the training data.

M-PHATE describes each hidden unit by its activations on the same few inputs at every moment
of training. The paper draws 10 inputs per class from the training set with a fixed seed, so no
validation data is needed and the picture's class colouring is balanced.
"""
from __future__ import annotations

import warnings

import numpy as np

from mphate.capture.recorder import to_numpy

__all__ = ["trace_indices", "select_trace_inputs"]


def trace_indices(labels, n_per_class=10, random_state=0, classes=None) -> np.ndarray:
    """Indices of a class-balanced random subset, grouped by class.

    Parameters
    ----------
    labels : array-like, shape (n_samples,)
        Class of each training example (ints, strings, or one-hot rows).
    n_per_class : int, default 10
        Examples drawn from each class. A class with fewer examples gives all it has (with a
        warning).
    random_state : int or numpy Generator, default 0
        Seed: the same seed and labels always give the same indices.
    classes : sequence, optional
        Classes to draw from, in this order (default: every class present, sorted).

    Returns
    -------
    indices : ndarray of int, shape (n_selected,)
        Sorted by class (in ``classes`` order), then by position in the data set.
    """
    labels = _as_label_vector(labels)
    if int(n_per_class) < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    n_per_class = int(n_per_class)
    rng = np.random.default_rng(random_state)
    present = np.unique(labels)
    if classes is None:
        classes = present
    else:
        classes = np.asarray(classes)
        unknown = np.setdiff1d(classes, present)
        if unknown.size:
            raise ValueError(f"classes not present in the labels: {unknown.tolist()}")
    chosen = []
    short = {}
    for cls in classes:
        members = np.flatnonzero(labels == cls)
        if members.size < n_per_class:
            short[_plain(cls)] = int(members.size)
            picked = members
        else:
            picked = np.sort(rng.choice(members, size=n_per_class, replace=False))
        chosen.append(picked)
    if short:
        warnings.warn(
            f"fewer than {n_per_class} examples for some classes, taking all they have: {short}",
            stacklevel=2,
        )
    return np.concatenate(chosen).astype(np.int64)


def select_trace_inputs(X, y=None, n_per_class=10, random_state=0, classes=None):
    """Draw the trace inputs: ``n_per_class`` examples of each class, seeded.

    Parameters
    ----------
    X : array-like or torch Tensor, shape (n_samples, ...), or a dataset
        Training inputs. A map-style dataset (``len()`` and ``ds[i] -> (x, label)``, e.g. a
        torchvision or ``torch.utils.data.TensorDataset``) may be given with ``y=None``: its
        labels come from ``ds.targets`` / ``ds.labels`` when present, else from reading it.
    y : array-like, shape (n_samples,), optional
        Labels (ints, strings or one-hot rows).
    n_per_class, random_state, classes
        See :func:`trace_indices`.

    Returns
    -------
    X_trace : same kind as ``X`` (numpy array or torch Tensor), shape (n_selected, ...)
    y_trace : ndarray, shape (n_selected,)
        Grouped by class; pass ``y_trace`` as the recorder's ``labels``.
    """
    if y is None:
        if not _is_dataset(X):
            raise ValueError("give the labels y, or a dataset whose items are (input, label) pairs")
        labels = _dataset_labels(X)
        indices = trace_indices(labels, n_per_class, random_state, classes)
        items = [X[int(i)][0] for i in indices]
        return _stack(items), _as_label_vector(labels)[indices]
    labels = _as_label_vector(y)
    n = _length(X)
    if n != labels.shape[0]:
        raise ValueError(f"X has {n} examples but y has {labels.shape[0]} labels")
    indices = trace_indices(labels, n_per_class, random_state, classes)
    return _take(X, indices), labels[indices]


# ---------------------------------------------------------------------------------------------


def _as_label_vector(labels) -> np.ndarray:
    labels = to_numpy(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)  # one-hot (Keras style)
    elif labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (or one-hot 2-D), got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("no labels given")
    return labels


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _length(X) -> int:
    if hasattr(X, "shape"):
        return int(X.shape[0])
    return len(X)


def _take(X, indices):
    if hasattr(X, "detach") or isinstance(X, np.ndarray):
        if hasattr(X, "detach"):  # torch: index with a tensor on X's device
            import torch

            return X[torch.as_tensor(indices, device=X.device)]
        return X[indices]
    if hasattr(X, "iloc"):  # pandas
        return X.iloc[indices].to_numpy()
    return np.asarray(X)[indices]


def _is_dataset(X) -> bool:
    return hasattr(X, "__getitem__") and hasattr(X, "__len__") and not hasattr(X, "shape")


def _dataset_labels(dataset) -> np.ndarray:
    for attribute in ("targets", "labels", "y"):
        labels = getattr(dataset, attribute, None)
        if labels is not None and _length(labels) == len(dataset):
            return to_numpy(labels)
    if hasattr(dataset, "tensors") and len(dataset.tensors) >= 2:  # TensorDataset
        return to_numpy(dataset.tensors[1])
    # fall back to reading every item: slow for big image folders, but always right
    return np.asarray([_plain(to_numpy(dataset[i][1])) for i in range(len(dataset))])


def _stack(items):
    if hasattr(items[0], "detach"):
        import torch

        return torch.stack(items)
    return np.stack([np.asarray(item) for item in items])
