"""Small PyTorch training loops shared by the experiments.

Everything here runs on the CPU with one thread per process, so that several networks can be
trained side by side, one per core (:func:`run_parallel`). The networks are traced with
:class:`mphate.capture.TorchRecorder` on 10 training inputs per class, drawn once with a fixed
seed, after every epoch (generalisation) or every N batches (continual learning); the traced
values are the hidden Linear layers' outputs before the nonlinearity, as in the paper's scripts.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mphate.optional import require

_PURPOSE = "the M-PHATE experiments"


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

    Digits: scikit-learn's 1797 8x8 images, 80/20 stratified split (1437 / 360), pixels in
    [0, 1]. MNIST: the usual 60000 / 10000 split, pixels in [0, 1]; nothing is downloaded.
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
# model


def make_mlp(n_inputs: int, hidden, n_outputs: int, *, activation: str = "leaky_relu",
             dropout: float = 0.0, seed: int = 0):
    """A fully connected network whose hidden pre-activations are kept for regularisers.

    Hidden Linear layers are the attributes ``fc1, fc2, ...`` (the traced modules); the output
    layer is ``out``. After each forward pass ``model.pre_activations`` holds the hidden
    Linear outputs of that pass.
    """
    torch = require("torch", _PURPOSE)
    nn = torch.nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            sizes = [n_inputs, *hidden]
            self.hidden_names = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
                setattr(self, f"fc{i}", nn.Linear(a, b))
                self.hidden_names.append(f"fc{i}")
            self.out = nn.Linear(sizes[-1], n_outputs)
            if activation == "leaky_relu":
                self.act = nn.LeakyReLU(0.1)
            elif activation == "relu":
                self.act = nn.ReLU()
            else:
                raise ValueError(f"activation must be 'leaky_relu' or 'relu'; got {activation!r}")
            self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.pre_activations = []

        def forward(self, x):
            pre = []
            for name in self.hidden_names:
                z = getattr(self, name)(x)
                pre.append(z)
                x = self.drop(self.act(z))
            self.pre_activations = pre
            return self.out(x)

    return MLP()


def set_single_thread() -> None:
    """One intra-op thread: several training processes share the cores without oversubscribing."""
    torch = require("torch", _PURPOSE)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _start_worker(data_dir, seed: int, n_per_class: int):
    """What every training process does first: one thread, the data, and the fixed trace inputs.

    Returns ``data, (X_trace, y_trace)``.
    """
    set_single_thread()
    data = load_data(data_dir, seed)
    return data, trace_inputs(data, n_per_class, seed)


# ---------------------------------------------------------------------------------------------
# generalisation: one network of the 8 variants

GENERALIZATION_VARIANTS = (
    "vanilla", "dropout", "kernel_l1", "kernel_l2", "activity_l1", "activity_l2",
    "random_labels", "random_pixels",
)


def generalization_inputs(data: Data, variant: str, seed: int = 0):
    """Training inputs and labels of a variant (random labels / pixels replace the real ones).

    Random labels: the training labels shuffled once (seeded). Random pixels: every training
    image replaced by Gaussian noise with the data's per-pixel mean and standard deviation
    (Zhang et al. 2017's "Gaussian" corruption). The validation set is never corrupted.
    """
    rng = np.random.default_rng(seed + 1)
    X, y = data.X_train, data.y_train
    if variant == "random_labels":
        y = rng.permutation(y)
    elif variant == "random_pixels":
        mean, std = X.mean(axis=0), X.std(axis=0)
        X = (mean + std * rng.standard_normal(X.shape)).astype(np.float32)
    return X, y


def train_generalization(variant: str, *, data_dir=None, epochs: int = 300, lr: float = 1e-3,
                         batch_size: int = 256, hidden=(128, 128, 128), reg: float = 1e-4,
                         dropout: float = 0.5, trace_every: int = 1, seed: int = 0,
                         n_per_class: int = 10) -> dict:
    """Train and trace one of the 8 generalisation networks.

    The regularisers follow Keras's meaning of the paper's settings: kernel L1 / L2 add
    ``reg * sum|W|`` / ``reg * sum W^2`` over the weight matrices of every Linear layer; activity
    L1 / L2 add ``reg * sum|h|`` / ``reg * sum h^2`` over the hidden layers' outputs, averaged
    over the batch; dropout (rate ``dropout``) follows each hidden nonlinearity.

    Returns
    -------
    dict with "variant", "trace" (a :class:`mphate.Trace`: one slice per traced epoch, scalars
    loss / val_loss / accuracy / val_accuracy), "history" (those four per epoch, arrays of
    length ``epochs``) and "seconds". Losses are the plain cross-entropy of the whole training
    (on the variant's own, possibly corrupted, data) or validation set in evaluation mode.
    """
    if variant not in GENERALIZATION_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {GENERALIZATION_VARIANTS}")
    torch = require("torch", _PURPOSE)
    from mphate.capture import TorchRecorder

    start = time.perf_counter()
    data, (X_trace, y_trace) = _start_worker(data_dir, seed, n_per_class)  # real trace images, every variant
    X_np, y_np = generalization_inputs(data, variant, seed)
    model = make_mlp(data.n_inputs, hidden, 10, activation="leaky_relu",
                     dropout=dropout if variant == "dropout" else 0.0, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    lossf = torch.nn.CrossEntropyLoss()
    X, y = torch.from_numpy(X_np), torch.from_numpy(y_np).long()
    X_val, y_val = torch.from_numpy(data.X_val), torch.from_numpy(data.y_val).long()
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    gen = torch.Generator().manual_seed(seed)
    history = {k: np.full(epochs, np.nan) for k in ("loss", "val_loss", "accuracy", "val_accuracy")}

    def penalty():
        if variant == "kernel_l1":
            return reg * sum(w.abs().sum() for w in weights)
        if variant == "kernel_l2":
            return reg * sum((w * w).sum() for w in weights)
        if variant == "activity_l1":
            return reg * sum(h.abs().sum() for h in model.pre_activations) / model.pre_activations[0].shape[0]
        if variant == "activity_l2":
            return reg * sum((h * h).sum() for h in model.pre_activations) / model.pre_activations[0].shape[0]
        return 0.0

    rec = TorchRecorder(model, X_trace, labels=y_trace, layers=list(model.hidden_names))
    with rec:
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(len(X), generator=gen)
            for s in range(0, len(perm), batch_size):
                b = perm[s:s + batch_size]
                opt.zero_grad()
                loss = lossf(model(X[b]), y[b]) + penalty()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                out, out_val = model(X), model(X_val)
                row = {
                    "loss": lossf(out, y).item(),
                    "val_loss": lossf(out_val, y_val).item(),
                    "accuracy": (out.argmax(1) == y).float().mean().item(),
                    "val_accuracy": (out_val.argmax(1) == y_val).float().mean().item(),
                }
            for key, value in row.items():
                history[key][epoch - 1] = value
            if epoch % trace_every == 0 or epoch == epochs:
                rec.record(step=epoch, epoch=epoch, **row)
        trace = rec.to_trace()
    return {"variant": variant, "trace": trace, "history": history,
            "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------
# continual learning: one (scenario, learner) run over 5 tasks

SCENARIOS = ("task", "domain", "class")
LEARNERS = ("adam", "adagrad", "rehearsal")
TASKS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def _continual_targets(scenario: str, y, task):
    """Targets and which logits count, for labels ``y`` of tasks ``task`` (tensors)."""
    if scenario == "task":
        return y - 2 * task  # 0 / 1 within the task's own pair of logits
    if scenario == "domain":
        return y % 2  # even / odd member of the pair
    return y


def _continual_logits(scenario: str, logits, task):
    """Task scenario: only the two logits of each example's own task (masked softmax)."""
    if scenario != "task":
        return logits
    torch = require("torch", _PURPOSE)
    cols = torch.stack([2 * task, 2 * task + 1], dim=1)
    return torch.gather(logits, 1, cols)


def train_continual(scenario: str, learner: str, *, data_dir=None, epochs_per_task: int = 4,
                    batch_size: int = 128, lr: float | None = None, hidden=(400, 400),
                    trace_every: int = 1, buffer_size: int | None = None, seed: int = 0,
                    n_per_class: int = 10) -> dict:
    """Train and trace one continual learner on the 5 digit-pair tasks.

    Scenarios: "task" (10 outputs, each task's loss and prediction over its own 2 logits: the
    masked softmax), "domain" (2 outputs: even or odd member of the pair), "class" (10-way).
    Learners: "adam", "adagrad", "rehearsal" (Adam; every batch is joined by an equally large
    batch drawn from a buffer of ``buffer_size`` examples kept from the earlier tasks, split
    evenly between them). Default ``lr``: Adam 1e-3, Adagrad 1e-2 (the paper's 1e-5 / 1e-4 for
    MNIST's 94 batches per task-epoch, scaled up for the 3 batches of a digits task-epoch,
    keeping the paper's ratio of 10). Default ``buffer_size``: 1/12 of the training set (the
    paper's 5000 of MNIST's 60000).

    Returns
    -------
    dict with "scenario", "learner", "trace" (one slice every ``trace_every`` batches, with the
    scalars task, loss (the batch's), val_loss and val_accuracy over all 5 tasks, and
    val_loss_task<i> for each task), "switch_slices" (index of the first slice recorded in each
    new task, 4 values), "task_end_steps" (the step count at the end of each task), "final"
    (val_loss, val_accuracy after the last task, and per task), "steps_per_task_epoch" and
    "seconds".
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")
    if learner not in LEARNERS:
        raise ValueError(f"unknown learner {learner!r}; choose from {LEARNERS}")
    torch = require("torch", _PURPOSE)
    from mphate.capture import TorchRecorder

    start = time.perf_counter()
    data, (X_trace, y_trace) = _start_worker(data_dir, seed, n_per_class)
    n_out = 2 if scenario == "domain" else 10
    model = make_mlp(data.n_inputs, hidden, n_out, activation="relu", seed=seed)
    if lr is None:
        lr = 1e-2 if learner == "adagrad" else 1e-3
    opt = (torch.optim.Adagrad if learner == "adagrad" else torch.optim.Adam)(model.parameters(), lr=lr)
    lossf = torch.nn.CrossEntropyLoss()
    if buffer_size is None:
        buffer_size = max(10, round(len(data.y_train) / 12))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    def as_tensors(mask_X, mask_y):
        X = torch.from_numpy(np.ascontiguousarray(mask_X))
        y = torch.from_numpy(np.ascontiguousarray(mask_y)).long()
        return X, y, y // 2

    train_sets = [as_tensors(data.X_train[np.isin(data.y_train, p)], data.y_train[np.isin(data.y_train, p)])
                  for p in TASKS]
    X_val, y_val, t_val = as_tensors(data.X_val, data.y_val)

    def loss_of(X, y, task):
        logits = _continual_logits(scenario, model(X), task)
        return lossf(logits, _continual_targets(scenario, y, task)), logits

    def evaluate():
        model.eval()
        with torch.no_grad():
            logits = _continual_logits(scenario, model(X_val), t_val)
            target = _continual_targets(scenario, y_val, t_val)
            per_example = torch.nn.functional.cross_entropy(logits, target, reduction="none")
            correct = (logits.argmax(1) == target).float()
        row = {"val_loss": per_example.mean().item(), "val_accuracy": correct.mean().item()}
        for t in range(len(TASKS)):
            row[f"val_loss_task{t}"] = per_example[t_val == t].mean().item()
            row[f"val_accuracy_task{t}"] = correct[t_val == t].mean().item()
        model.train()
        return row

    buffer_X, buffer_y = [], []
    step = 0
    switch_slices, task_end_steps = [], []
    steps_per_epoch = int(np.ceil(len(train_sets[0][1]) / batch_size))
    rec = TorchRecorder(model, X_trace, labels=y_trace, layers=list(model.hidden_names))
    with rec:
        model.train()
        for task, (X, y, _) in enumerate(train_sets):
            if task > 0:
                switch_slices.append(rec.n_slices)
            replay = None
            if learner == "rehearsal" and buffer_X:
                replay = (torch.cat(buffer_X), torch.cat(buffer_y))
            for epoch in range(epochs_per_task):
                perm = torch.randperm(len(X), generator=gen)
                for s in range(0, len(perm), batch_size):
                    b = perm[s:s + batch_size]
                    Xb, yb = X[b], y[b]
                    if replay is not None:
                        r = torch.from_numpy(rng.choice(len(replay[1]), size=min(len(b), len(replay[1])),
                                                        replace=False))
                        Xb, yb = torch.cat([Xb, replay[0][r]]), torch.cat([yb, replay[1][r]])
                    opt.zero_grad()
                    loss, _ = loss_of(Xb, yb, yb // 2)
                    loss.backward()
                    opt.step()
                    step += 1
                    if step % trace_every == 0:
                        rec.record(step=step, epoch=task + (epoch + (s + len(b)) / len(X)) / epochs_per_task,
                                   task=task, loss=loss.item(), **evaluate())
            task_end_steps.append(step)
            if learner == "rehearsal":
                # keep an even share of the buffer for every task seen so far
                share = buffer_size // (task + 1)
                buffer_X = [bx[:share] for bx in buffer_X]
                buffer_y = [by[:share] for by in buffer_y]
                keep = torch.from_numpy(rng.choice(len(y), size=min(share, len(y)), replace=False))
                buffer_X.append(X[keep])
                buffer_y.append(y[keep])
        final = evaluate()
        trace = rec.to_trace()
    return {"scenario": scenario, "learner": learner, "trace": trace, "switch_slices": switch_slices,
            "task_end_steps": task_end_steps,
            "final": final, "lr": lr, "buffer_size": buffer_size if learner == "rehearsal" else 0,
            "steps_per_task_epoch": steps_per_epoch, "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------
# running several trainings at once


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
