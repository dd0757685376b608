"""The one training loop of the demo and the experiments, and what it trains on.

* data: :func:`load_data` (the bundled digits or local MNIST files) and :func:`trace_inputs`
  (the fixed, class-balanced trace inputs drawn from the training set);
* network: :func:`make_mlp`, the fully connected network of the demo and of every experiment
  (its hidden Linear layers are the traced modules);
* loop: :func:`train`, mini-batch training over a seeded permutation per epoch, with hooks
  after every batch and every epoch where the callers record their slices, and
  :func:`evaluate` (loss and accuracy in evaluation mode);
* threads: :func:`torch_threads` (set and restore PyTorch's intra-op threads),
  :func:`set_single_thread` and :func:`run_parallel` (several networks at once, one process and
  one thread each).

The demo (:mod:`mphate.experiments.demo`), the generalisation and continual-learning experiments,
``mphate compare digits`` and ``benchmarks/record_digits_trace.py`` all train through here.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mphate.optional import require

__all__ = [
    "Data", "load_data", "trace_inputs", "make_mlp", "Batch", "batches", "train", "evaluate",
    "torch_threads", "set_single_thread", "start_worker", "run_parallel",
]

_PURPOSE = "training the networks of the demo and the experiments"


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class Data:
    """A classification data set split into training and validation parts."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray

    @property
    def n_inputs(self) -> int:
        return int(self.X_train.shape[1])


@lru_cache(maxsize=2)
def load_data(data_dir: str | None = None, seed: int = 0) -> Data:
    """Bundled digits (default) or MNIST from local IDX/NPZ files in ``data_dir``.

    Digits: scikit-learn's 1797 8x8 images, 80/20 stratified split seeded by ``seed`` (1437 /
    360), pixels in [0, 1]. MNIST: the usual 60000 / 10000 split, pixels in [0, 1]; nothing is
    downloaded. Cached: the arrays are shared between calls, so treat them as read-only.
    """
    from mphate.traces.datasets import load_digits_split, load_mnist

    if data_dir is None:
        X_tr, y_tr, X_va, y_va = load_digits_split(test_size=0.2, random_state=seed)
        return Data("digits", X_tr, y_tr, X_va, y_va)
    X_tr, y_tr, X_va, y_va = load_mnist(data_dir)
    return Data("mnist", X_tr, y_tr, X_va, y_va)


def trace_inputs(data: Data, n_per_class: int = 10, seed: int = 0):
    """The fixed trace inputs: ``n_per_class`` training examples of each class, grouped by class."""
    from mphate.capture import select_trace_inputs

    return select_trace_inputs(data.X_train, data.y_train, n_per_class=n_per_class, random_state=seed)


# ---------------------------------------------------------------------------------------------
# the network


#: the hidden layers' nonlinearities :func:`make_mlp` builds
ACTIVATIONS = ("leaky_relu", "relu", "tanh", "gelu")


def make_mlp(n_inputs: int, hidden, n_outputs: int, *, activation: str = "leaky_relu",
             dropout: float = 0.0, seed: int | None = None, hidden_name: str = "fc{}",
             output_name: str = "out"):
    """The fully connected network of the demo and the experiments, as a ``torch.nn.Sequential``.

    Layers in order: for each width in ``hidden``, a Linear layer named ``hidden_name.format(i)``
    (i = 1, 2, ...; the traced modules), its activation ``act_<i>`` (``activation``: one of
    :data:`ACTIVATIONS`; "leaky_relu" is LeakyReLU(0.1))
    and, when ``dropout > 0``, ``drop_<i>``; then the output Linear layer ``output_name``.
    ``seed``: reseed PyTorch's global generator just before the weights are drawn (None: draw
    from its current state). ``model.hidden_names`` lists the hidden Linear layers; after each
    forward pass ``model.pre_activations`` holds their outputs (for activity regularisers).
    """
    torch = require("torch", _PURPOSE)
    nn = torch.nn
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    make_activation = {"leaky_relu": lambda: nn.LeakyReLU(0.1), "relu": nn.ReLU, "tanh": nn.Tanh,
                       "gelu": nn.GELU}[activation]

    class MLP(nn.Sequential):
        def forward(self, x):
            pre = []
            for name, module in self.named_children():
                x = module(x)
                if name in self.hidden_names:
                    pre.append(x)
            self.pre_activations = pre
            return x

    if seed is not None:
        torch.manual_seed(seed)
    layers, names, width = OrderedDict(), [], n_inputs
    for i, units in enumerate(hidden, start=1):
        names.append(hidden_name.format(i))
        layers[names[-1]] = nn.Linear(width, units)
        layers[f"act_{i}"] = make_activation()
        if dropout > 0:
            layers[f"drop_{i}"] = nn.Dropout(dropout)
        width = units
    layers[output_name] = nn.Linear(width, n_outputs)
    model = MLP(layers)
    model.hidden_names = names
    model.pre_activations = []
    return model


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class Batch:
    """What :func:`train`'s ``on_batch`` hook is told after each optimiser step."""

    epoch: int  #: 1, 2, ... within this call of :func:`train`
    seen: int  #: examples of the epoch done, this batch included
    n: int  #: examples in an epoch
    size: int  #: examples in this batch (before ``make_batch`` added any)
    loss: object  #: the batch's loss (a 0-d tensor, graph freed)


def batches(n: int, batch_size: int, generator):
    """One epoch's mini-batches: index tensors of a fresh permutation drawn from ``generator``."""
    torch = require("torch", _PURPOSE)
    return torch.randperm(n, generator=generator).split(batch_size)


def train(model, optimizer, X, y, *, epochs: int, batch_size: int, generator, loss=None,
          make_batch=None, on_batch=None, on_epoch=None) -> None:
    """Mini-batch training of ``model`` on tensors ``X``, ``y`` for ``epochs`` epochs.

    Each epoch puts the model in training mode and visits a fresh permutation from
    ``generator`` in batches of ``batch_size``. For each batch: ``make_batch(Xb, yb)`` may
    replace it (e.g. add replayed examples), then one step of ``optimizer`` on
    ``loss(Xb, yb)`` (default: the cross-entropy of ``model(Xb)``), then ``on_batch(Batch)``.
    After each epoch: ``on_epoch(epoch)``. The hooks are where the callers evaluate and record
    their slices; they may switch the model to evaluation mode (the next epoch switches back).
    """
    torch = require("torch", _PURPOSE)
    if loss is None:
        def loss(Xb, yb):
            return torch.nn.functional.cross_entropy(model(Xb), yb)
    n = len(X)
    for epoch in range(1, epochs + 1):
        model.train()
        seen = 0
        for idx in batches(n, batch_size, generator):
            Xb, yb = X[idx], y[idx]
            if make_batch is not None:
                Xb, yb = make_batch(Xb, yb)
            optimizer.zero_grad()
            value = loss(Xb, yb)
            value.backward()
            optimizer.step()
            seen += len(idx)
            if on_batch is not None:
                on_batch(Batch(epoch, seen, n, len(idx), value))
        if on_epoch is not None:
            on_epoch(epoch)


def evaluate(model, X, y, loss=None) -> tuple[float, float]:
    """``(loss, accuracy)`` of ``model`` on all of ``X``, ``y`` in evaluation mode, without gradients.

    ``loss``: a function of (logits, targets), default the mean cross-entropy.
    """
    torch = require("torch", _PURPOSE)
    loss = torch.nn.functional.cross_entropy if loss is None else loss
    model.eval()
    with torch.no_grad():
        logits = model(X)
        return loss(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


# ---------------------------------------------------------------------------------------------
# threads and processes


@contextmanager
def torch_threads(n: int):
    """PyTorch's intra-op threads set to ``n`` inside the block, put back afterwards."""
    torch = require("torch", _PURPOSE)
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def set_single_thread() -> None:
    """One intra-op thread: several training processes share the cores without oversubscribing."""
    torch = require("torch", _PURPOSE)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def start_worker(data_dir, seed: int, n_per_class: int):
    """What every experiment's training process does first: one thread, the data, and the fixed
    trace inputs. Returns ``data, (X_trace, y_trace)``."""
    set_single_thread()
    data = load_data(data_dir, seed)
    return data, trace_inputs(data, n_per_class, seed)


def _call(job):
    fn, kwargs = job
    return fn(**kwargs)


def run_parallel(fn, jobs: list[dict], n_jobs: int = 2, progress=None) -> list:
    """``[fn(**kwargs) for kwargs in jobs]``, in ``n_jobs`` worker processes (spawned, one torch
    thread each), results in job order. ``n_jobs=1`` runs in this process."""
    if n_jobs <= 1 or len(jobs) <= 1:
        results = []
        for kwargs in jobs:
            results.append(fn(**kwargs))
            if progress:
                progress(results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    results = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=min(n_jobs, len(jobs)), mp_context=ctx) as pool:
        futures = {pool.submit(_call, (fn, kwargs)): i for i, kwargs in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress:
                progress(results[futures[future]])
    return results
