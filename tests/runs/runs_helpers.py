"""Runs to compare, for the compare-runs tests: synthetic stores and real digits MLP runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mphate.traces.store import TraceStore
from mphate.traces.synthetic import make_trace

# small enough to embed in about a second: 20 slices x 24 units, every point its own landmark
SMALL = dict(n_slices=20, n_units=24, n_trace=20)
SMALL_PARAMS = dict(interslice_knn=8, n_landmark=None, random_state=0)


def write_store(path, trace, *, task=None) -> Path:
    """A trace store at ``path`` holding ``trace`` (and a ``task`` scalar per slice when given)."""
    sizes = np.bincount(trace.unit_layer).tolist()
    with TraceStore.create(path, trace.layer_names, sizes, trace.n_trace, trace_labels=trace.trace_labels,
                           fsync=False) as store:
        for s in range(trace.n_slices):
            scalars = {k: v[s] for k, v in trace.scalars.items()}
            if task is not None:
                scalars["task"] = task[s]
            store.append(trace.data[s], step=s + 1, epoch=s + 1, scalars=scalars)
    return Path(path)


def synthetic_runs(folder, n=4, **sizes) -> list[Path]:
    """``n`` stores of synthetic runs whose final val_loss differs, named run0..run{n-1}."""
    dims = {**SMALL, **sizes}
    paths = []
    for i in range(n):
        trace = make_trace(dims["n_slices"], dims["n_units"], dims["n_trace"], random_state=i, noise=0.2 + 0.15 * i)
        trace.scalars["val_loss"] = trace.scalars["val_loss"] + 0.05 * i
        paths.append(write_store(Path(folder) / f"run{i}.trace", trace))
    return paths


def tear(store_path, index=None) -> Path:
    """Truncate one slice file of a store to half its size (default: the middle one), as a
    crash or a full disk would; returns the torn file."""
    files = sorted((Path(store_path) / "slices").glob("*.npy"))
    file = files[len(files) // 2 if index is None else index]
    payload = file.read_bytes()
    file.write_bytes(payload[: len(payload) // 2])
    return file


def record_digits_runs(folder, epochs=20, hidden=32) -> dict[str, Path]:
    """Three short runs of a 64-32-32-10 LeakyReLU MLP on the bundled digits, recorded with
    TorchRecorder: no regulariser, weight decay 1e-3, and dropout 0.5 (a few seconds in all)."""
    import torch

    from mphate.capture import TorchRecorder, select_trace_inputs
    from mphate.traces.datasets import load_digits_split

    torch.set_num_threads(1)
    X_train, y_train, X_val, y_val = load_digits_split()
    X_trace, y_trace = select_trace_inputs(X_train, y_train, n_per_class=4)
    X, y = torch.from_numpy(X_train), torch.from_numpy(y_train)
    Xv, yv = torch.from_numpy(X_val), torch.from_numpy(y_val)
    runs = {}
    for name, weight_decay, dropout in (("plain", 0.0, 0.0), ("weight-decay", 1e-3, 0.0), ("dropout", 0.0, 0.5)):
        torch.manual_seed(0)
        model = _mlp(hidden, dropout)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=weight_decay)
        path = Path(folder) / f"{name}.trace"
        with TorchRecorder(model, X_trace, path, labels=y_trace, layers=["dense_1", "dense_2"], fsync=False) as rec:
            for epoch in range(1, epochs + 1):
                losses = _train_epoch(model, optimizer, X, y)
                model.eval()
                with torch.no_grad():
                    val_loss = torch.nn.functional.cross_entropy(model(Xv), yv).item()
                rec.record(epoch=epoch, loss=float(np.mean(losses)), val_loss=val_loss)
        runs[name] = path
    return runs


def _mlp(hidden, dropout):
    import torch
    from torch import nn

    layers = []
    for i, (a, b) in enumerate(((64, hidden), (hidden, hidden)), start=1):
        layers += [(f"dense_{i}", nn.Linear(a, b)), (f"act_{i}", nn.LeakyReLU(0.1)),
                   (f"drop_{i}", nn.Dropout(dropout) if dropout else nn.Identity())]
    layers.append(("output", nn.Linear(hidden, 10)))
    from collections import OrderedDict

    return torch.nn.Sequential(OrderedDict(layers))


def _train_epoch(model, optimizer, X, y) -> list[float]:
    import torch

    model.train()
    losses = []
    for batch in torch.randperm(len(X)).split(128):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X[batch]), y[batch])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
