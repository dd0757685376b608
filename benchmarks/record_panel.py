"""Record the benchmark panel: real training runs on scikit-learn's digits, one trace each.

The panel (issue #11, item 1) covers pre- and post-activation MLPs, two optimisers (Adam, SGD
with momentum) and learning rates an order apart, a CNN (channels as units), a wide run
(>= 1,024 units) and a task-switching continual run. Every run trains with mphate's one training
loop (mphate.experiments.training) on the bundled digits (80/20 stratified split, seed 0) and is
traced with mphate's TorchRecorder after every epoch (the continual run: every 5 batches) on
100 fixed held-out images, 10 per class (drawn from the validation part of the split with
select_trace_inputs, seed 0). Exceptions, kept as they are: "pre_adam" is the existing
benchmarks/data/digits_trace.npz of record_digits_trace.py (its trace inputs are training
images) and "continual" is the continual experiment's own train_continual (its trace inputs are
the experiment's, drawn from the training images).

Each trace is cached as benchmarks/data/panel/NAME.npz (gitignored) with
  trace     (n_slices, n_units, 100) float32
  layer     (n_units,) int   the traced layer of each unit
  digit     (100,) int       class of each trace input
  loss, val_loss (n_slices,) training / validation loss at each slice
  (continual: also step, task, switch_slices)
and NAME.json beside it with the settings, the recording time, the processor and the trace's
digest (:func:`array_digest`).

    .venv/bin/python benchmarks/record_panel.py                 # record what is missing
    .venv/bin/python benchmarks/record_panel.py --only cnn --force
    .venv/bin/python benchmarks/record_panel.py --list

PyTorch runs on one thread while recording (torch.set_num_threads(1)).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
PANEL_DIR = os.path.join(DATA, "panel")
SEED = 0
N_PER_CLASS = 10


def array_digest(trace: np.ndarray) -> str:
    """The first 12 hex digits of the sha256 of a trace array (as C-ordered float32). PyTorch
    picks its CPU kernels per processor, so a run recorded on another machine need not be the
    same trace: panels compare only where these agree."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(trace, dtype=np.float32).tobytes()).hexdigest()[:12]


def recording_notes(trace: np.ndarray) -> dict:
    """What a recording's NAME.json says of where it was made: the processor and the digest."""
    import bench_reference

    return dict(processor=bench_reference.processor(), trace_sha256_12=array_digest(trace))


def _mlp_run(hidden, activation, optimizer, lr, batch_size, epochs, traced):
    return dict(kind="mlp", hidden=list(hidden), activation=activation, optimizer=optimizer,
                lr=lr, batch_size=batch_size, epochs=epochs, traced=traced)


# name -> (label for the tables, what it is, settings). Order = the table's row order.
PANEL = {
    "post_adam": ("post-act Adam 1e-4",
                  "64-128-128-128-10 LeakyReLU(0.1) MLP, Adam lr 1e-4, batch 32, 300 epochs; the "
                  "three hidden layers traced after the nonlinearity",
                  _mlp_run((128, 128, 128), "leaky_relu", "adam", 1e-4, 32, 300, "post")),
    "pre_adam": ("pre-act Adam 1e-4 (digits_trace)",
                 "the existing benchmarks/data/digits_trace.npz (record_digits_trace.py defaults): "
                 "64-128-128-128-10 LeakyReLU(0.1) MLP, Adam lr 1e-4, batch 64, 300 epochs, the "
                 "hidden Linear layers traced before the nonlinearity on 100 training images",
                 dict(kind="digits_trace")),
    "sgd_001": ("pre-act SGD 0.01",
                "64-128-128-10 ReLU MLP, SGD momentum 0.9 lr 0.01, batch 32, 150 epochs; traced "
                "before the nonlinearity",
                _mlp_run((128, 128), "relu", "sgd", 0.01, 32, 150, "pre")),
    "sgd_01": ("pre-act SGD 0.1",
               "as pre-act SGD 0.01 with lr 0.1",
               _mlp_run((128, 128), "relu", "sgd", 0.1, 32, 150, "pre")),
    "cnn": ("CNN (channels as units)",
            "conv 3x3 32 ch (pad 1) -> ReLU -> conv 3x3 64 ch (pad 1) -> ReLU -> max-pool 2 -> "
            "linear 1024-10 on the 8x8 images, Adam lr 1e-3, batch 32, 150 epochs; the two conv "
            "layers traced before the ReLU, a unit = a channel, its response = the spatial mean "
            "of its feature map (TorchRecorder unit_reduce='mean'); 96 units",
            dict(kind="cnn", channels=[32, 64], optimizer="adam", lr=1e-3, batch_size=32,
                 epochs=150)),
    "wide": ("wide 64-512-512-10",
             "64-512-512-10 ReLU MLP, SGD momentum 0.9 lr 0.01, batch 32, 100 epochs; traced "
             "before the nonlinearity; 1,024 units",
             _mlp_run((512, 512), "relu", "sgd", 0.01, 32, 100, "pre")),
    "continual": ("continual (class-incremental)",
                  "mphate.experiments.continual.train_continual('class', 'adam'): 5 tasks of 2 "
                  "digits learned in turn, 64-400-400-10 ReLU, Adam lr 1e-3, batch 128, 18 epochs "
                  "per task (54 batches), traced before the nonlinearity every 5 batches: a task "
                  "switch every 10.8 slices; 800 units",
                  dict(kind="continual", scenario="class", learner="adam", epochs_per_task=18,
                       trace_every=5, hidden=[400, 400], batch_size=128)),
}


def trace_path(name: str) -> str:
    if PANEL[name][2]["kind"] == "digits_trace":
        return os.path.join(DATA, "digits_trace.npz")
    return os.path.join(PANEL_DIR, f"{name}.npz")


# ---------------------------------------------------------------------------- recorders
def _held_out_inputs(data, image_shape=None):
    from mphate.capture import select_trace_inputs

    X, y = select_trace_inputs(data.X_val, data.y_val, n_per_class=N_PER_CLASS, random_state=SEED)
    X = np.asarray(X, dtype=np.float32)
    if image_shape is not None:
        X = X.reshape((len(X),) + tuple(image_shape))
    return X, np.asarray(y)


def _optimizer(torch, params, name, lr):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(name)


def _make_cnn(torch, channels, seed):
    nn = torch.nn
    torch.manual_seed(seed)
    c1, c2 = channels
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(c2 * 16, 10))


def _record_epochs(cfg: dict, verbose: bool = True) -> dict:
    """An MLP or the CNN, traced after every epoch on the held-out trace inputs."""
    import torch

    from mphate.capture import TorchRecorder
    from mphate.experiments.training import evaluate, load_data, make_mlp, train

    data = load_data(None, SEED)
    X_trace, y_trace = _held_out_inputs(data)
    if cfg["kind"] == "cnn":
        model = _make_cnn(torch, cfg["channels"], SEED)
        # the two Conv2d modules (outputs before their ReLU), or the two ReLUs after them
        layers = ["2", "4"] if cfg.get("traced") == "post" else ["1", "3"]
    else:
        model = make_mlp(data.n_inputs, cfg["hidden"], 10, activation=cfg["activation"],
                         dropout=cfg.get("dropout", 0.0), seed=SEED)
        if cfg["traced"] == "pre":
            layers = list(model.hidden_names)
        else:  # after the nonlinearity: the activation modules
            layers = [f"act_{i}" for i in range(1, len(cfg["hidden"]) + 1)]
    opt = _optimizer(torch, model.parameters(), cfg["optimizer"], cfg["lr"])
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train).long()
    X_val, y_val = torch.from_numpy(data.X_val), torch.from_numpy(data.y_val).long()
    epochs = cfg["epochs"]
    loss_hist, val_hist, acc_hist = np.empty(epochs), np.empty(epochs), np.empty(epochs)
    t0 = time.perf_counter()

    def after_epoch(epoch):
        loss_hist[epoch - 1] = evaluate(model, X, y)[0]
        val_hist[epoch - 1], acc_hist[epoch - 1] = evaluate(model, X_val, y_val)
        rec.record(step=epoch, epoch=epoch)
        if verbose and ((epoch - 1) % 50 == 0 or epoch == epochs):
            print(f"  epoch {epoch:4d}  loss {loss_hist[epoch - 1]:.4f}  val_loss "
                  f"{val_hist[epoch - 1]:.4f}  val_acc {acc_hist[epoch - 1]:.3f}  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)

    with TorchRecorder(model, X_trace, labels=y_trace, layers=layers, unit_reduce="mean") as rec:
        train(model, opt, X, y, epochs=epochs, batch_size=cfg["batch_size"],
              generator=torch.Generator().manual_seed(SEED), on_epoch=after_epoch)
        trace = rec.to_trace()
    return dict(trace=np.asarray(trace.data, dtype=np.float32),
                layer=np.asarray(trace.unit_layer, dtype=np.int64), digit=y_trace,
                loss=loss_hist, val_loss=val_hist, val_accuracy=acc_hist)


def _record_continual(cfg: dict, verbose: bool = True) -> dict:
    from mphate.experiments.continual import train_continual

    res = train_continual(cfg["scenario"], cfg["learner"], epochs_per_task=cfg["epochs_per_task"],
                          batch_size=cfg["batch_size"], hidden=tuple(cfg["hidden"]),
                          trace_every=cfg["trace_every"], seed=SEED, n_per_class=N_PER_CLASS)
    trace = res["trace"]
    sc = trace.scalars
    if verbose:
        print(f"  final val loss {res['final']['val_loss']:.3f}, accuracy "
              f"{res['final']['val_accuracy']:.3f}; switch slices {res['switch_slices']}",
              flush=True)
    return dict(trace=np.asarray(trace.data, dtype=np.float32),
                layer=np.asarray(trace.unit_layer, dtype=np.int64),
                digit=np.asarray(trace.labels) if getattr(trace, "labels", None) is not None
                else np.repeat(np.arange(10), N_PER_CLASS),
                loss=np.asarray(sc["loss"], dtype=np.float64),
                val_loss=np.asarray(sc["val_loss"], dtype=np.float64),
                val_accuracy=np.asarray(sc["val_accuracy"], dtype=np.float64),
                step=np.asarray(trace.steps), task=np.asarray(sc["task"]),
                switch_slices=np.asarray(res["switch_slices"], dtype=np.int64))


def record(name: str, force: bool = False, verbose: bool = True) -> str:
    """Record panel run ``name`` unless its trace is cached; return the trace's path."""
    label, what, cfg = PANEL[name]
    path = trace_path(name)
    if os.path.exists(path) and not force:
        if verbose:
            print(f"{name}: cached ({os.path.relpath(path, ROOT)})", flush=True)
        return path
    if cfg["kind"] == "digits_trace":  # reused as it is; recorded only when missing
        subprocess.run([sys.executable, os.path.join(HERE, "record_digits_trace.py"),
                        "--out", path], check=True)
        return path
    import torch

    os.makedirs(PANEL_DIR, exist_ok=True)
    if verbose:
        print(f"{name}: recording ({label}: {what}) ...", flush=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        res = _record_continual(cfg, verbose) if cfg["kind"] == "continual" \
            else _record_epochs(cfg, verbose)
    finally:
        torch.set_num_threads(previous)
    seconds = time.perf_counter() - t0
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **res)
    os.replace(tmp, path)
    meta = dict(name=name, label=label, what=what, settings=cfg, seed=SEED,
                shape=list(res["trace"].shape), seconds=round(seconds, 1),
                final_loss=float(res["loss"][-1]), final_val_loss=float(res["val_loss"][-1]),
                final_val_accuracy=float(res["val_accuracy"][-1]),
                torch=torch.__version__, **recording_notes(res["trace"]))
    with open(os.path.join(PANEL_DIR, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if verbose:
        print(f"{name}: wrote {os.path.relpath(path, ROOT)}: trace {res['trace'].shape} in "
              f"{seconds:.0f} s", flush=True)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=list(PANEL),
                    help="record only this run (repeatable)")
    ap.add_argument("--force", action="store_true", help="record again even where cached")
    ap.add_argument("--list", action="store_true", help="list the panel and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, (label, what, _) in PANEL.items():
            state = "cached" if os.path.exists(trace_path(name)) else "missing"
            print(f"{name:10s} {label:34s} [{state}] {what}")
        return
    for name in args.only or list(PANEL):
        record(name, force=args.force)


if __name__ == "__main__":
    main()
