"""The demo: train a small network on bundled data, trace its hidden units, write a report.

:func:`run_demo` is what ``mphate demo`` (and ``make demo``) runs. It reproduces the shape of
the paper's generalisation experiment on data that ships with scikit-learn, so it works
offline:

* data: scikit-learn's 8x8 digits (1797 images, 10 classes; 80 % train, 20 % validation);
* network: 64 -> 128 -> 128 -> 128 -> 10, LeakyReLU(0.1), trained with Adam (PyTorch);
* trace: the three hidden Linear layers' outputs (before the nonlinearity) on 100 training
  images, 10 per class, after every epoch, into a crash-safe trace store ``OUT/trace``, with
  the epoch's training loss, validation loss and validation accuracy logged per slice;
* embedding: :class:`mphate.MPHATE` in 2-D, then 3-D reusing the fitted kernel and landmarks;
* report: :func:`mphate.plot.report.write_report` into ``OUT`` (``index.html`` and PNGs).

Progress goes to stderr (a tqdm bar for training, one timed line per embedding stage);
``quiet=True`` silences it.
"""
from __future__ import annotations

import shutil
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mphate.optional import require

__all__ = ["run_demo", "build_model"]

N_CLASSES = 10
LEAK = 0.1


def build_model(n_inputs: int = 64, hidden: int = 128, n_hidden_layers: int = 3, n_classes: int = N_CLASSES):
    """The demo network: ``n_hidden_layers`` Linear layers of ``hidden`` units with LeakyReLU(0.1).

    The hidden Linear layers are named ``dense_1``, ``dense_2``, ...; the output layer ``output``.
    """
    nn = require("torch", "the demo").nn
    layers = OrderedDict()
    width = n_inputs
    for i in range(1, n_hidden_layers + 1):
        layers[f"dense_{i}"] = nn.Linear(width, hidden)
        layers[f"act_{i}"] = nn.LeakyReLU(LEAK)
        width = hidden
    layers["output"] = nn.Linear(width, n_classes)
    return nn.Sequential(layers)


class _Log:
    """Timed progress lines on stderr: ``[mphate demo] message``."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[mphate demo] {message}", file=sys.stderr, flush=True)


def run_demo(
    out_dir="mphate-report",
    epochs: int = 300,
    random_state: int = 0,
    quiet: bool = False,
    n_components_3d: bool = True,
    *,
    hidden: int = 128,
    n_per_class: int = 10,
    lr: float = 1e-3,
    batch_size: int = 128,
    n_landmark: int | None = 4000,
    mphate_params: dict | None = None,
    threads: int | None = None,
    dpi: int = 200,
) -> dict[str, Path]:
    """Train the demo network on the bundled digits, trace it, embed it and write the report.

    Parameters
    ----------
    out_dir : str or Path, default "mphate-report"
        Report folder (created if missing). The trace store goes to ``out_dir/trace``; a trace
        store left there by an earlier demo is replaced.
    epochs : int, default 300
        Training epochs; one slice is recorded after each, so the trace has ``epochs`` slices.
        With 25 epochs or fewer, ``interslice_knn`` is lowered to ``epochs - 1``.
    random_state : int, default 0
        Seed of the data split, the network's initialisation, the batch order, the trace
        inputs and the embedding: the same seed gives the same report.
    quiet : bool, default False
        No progress bar or log lines.
    n_components_3d : bool, default True
        Also compute the 3-D embedding (reusing the 2-D fit's kernel and landmarks) for the
        report's 3-D view and ``3d.png``.
    hidden : int, default 128
        Units per hidden layer (the paper: 128).
    n_per_class : int, default 10
        Trace inputs per class (the paper: 10, so 100 trace inputs).
    lr, batch_size : Adam's learning rate and the mini-batch size.
    n_landmark : int or None, default 4000
        Passed to :class:`~mphate.MPHATE`.
    mphate_params : dict, optional
        Further :class:`~mphate.MPHATE` parameters (e.g. ``{"interslice_knn": 10}``).
    threads : int or None, default None
        Threads for training (PyTorch; restored afterwards) and for the embedding
        (:class:`~mphate.MPHATE`'s ``n_jobs``, unless ``mphate_params`` sets it). None trains
        on one thread (the network is tiny, and OpenMP threads that spin-wait slow down several
        times over when other processes share the cores) and embeds on the cores that are
        idle when the embedding starts (``n_jobs=None``).
    dpi : int, default 200
        Resolution of the report's PNGs.

    Returns
    -------
    dict of str -> Path
        The report's files (see :func:`mphate.plot.report.write_report`: "html", "colorings",
        "epoch", "layer", "class", "3d", "entropy", "embedding") plus "trace", the trace store.
    """
    torch = require("torch", "the demo")
    from mphate.capture import TorchRecorder, select_trace_inputs
    from mphate.traces.datasets import load_digits_split
    from mphate.embed.estimator import MPHATE
    from mphate.paths import ensure_writable_dir
    from mphate.plot.report import write_report
    from mphate.traces.store import is_trace_store

    epochs = int(epochs)
    if epochs < 2:
        raise ValueError(f"epochs must be at least 2 (one slice per epoch); got {epochs}")
    if int(hidden) < 2:
        raise ValueError(f"hidden must be at least 2 units; got {hidden}")
    log = _Log(quiet)
    start = time.perf_counter()
    out = ensure_writable_dir(out_dir)
    trace_dir = out / "trace"
    if trace_dir.exists():
        if not is_trace_store(trace_dir):
            raise ValueError(f"{trace_dir} exists and is not a trace store; choose another output folder")
        shutil.rmtree(trace_dir)  # an earlier demo's trace: the demo always records afresh

    train_threads = 1 if threads is None else max(1, int(threads))
    params = {"n_landmark": n_landmark, "n_jobs": None if threads is None else train_threads,
              **(mphate_params or {})}
    if "interslice_knn" not in params and epochs <= MPHATE().interslice_knn:
        # a short demo: each unit needs interslice_knn other slices to set the kernel's bandwidth
        params["interslice_knn"] = epochs - 1
        log(f"{epochs} epochs: interslice_knn lowered to {epochs - 1} (default "
            f"{MPHATE().interslice_knn} needs more slices)")

    # ---- data and model -------------------------------------------------------------------
    X_train, y_train, X_val, y_val = load_digits_split(random_state=random_state)
    X_trace, y_trace = select_trace_inputs(X_train, y_train, n_per_class=n_per_class, random_state=random_state)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(train_threads)
    try:
        torch.manual_seed(random_state)
        model = build_model(X_train.shape[1], int(hidden), 3, N_CLASSES)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        Xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train)
        Xv, yv = torch.from_numpy(X_val), torch.from_numpy(y_val)
        order_rng = torch.Generator().manual_seed(random_state)
        n_train = Xt.shape[0]
        steps_per_epoch = -(-n_train // batch_size)
        layer_names = [f"dense_{i}" for i in (1, 2, 3)]
        log(
            f"digits: {n_train} training / {Xv.shape[0]} validation images; network "
            f"{X_train.shape[1]}-{hidden}-{hidden}-{hidden}-{N_CLASSES} (LeakyReLU {LEAK}), Adam lr {lr:g}, "
            f"batch {batch_size}; tracing {len(layer_names) * hidden} hidden units on {len(y_trace)} "
            f"inputs after each of {epochs} epochs"
        )
        attrs = {
            "demo": "mphate demo",
            "data": "scikit-learn digits (8x8)",
            "network": f"{X_train.shape[1]}-{hidden}-{hidden}-{hidden}-{N_CLASSES}, LeakyReLU({LEAK})",
            "optimizer": f"Adam(lr={lr:g})",
            "batch_size": int(batch_size),
            "epochs": epochs,
            "random_state": int(random_state),
        }

        t0 = time.perf_counter()
        # fsync=False: a killed demo still leaves a readable store (renames are atomic); only a
        # power cut could lose recent slices, and the demo records afresh anyway. Saves ~20 ms a slice.
        with TorchRecorder(model, X_trace, trace_dir, labels=y_trace, layers=layer_names, attrs=attrs,
                           fsync=False) as rec:
            bar = _progress(range(1, epochs + 1), quiet)
            for epoch in bar:
                model.train()
                total = 0.0
                for idx in torch.randperm(n_train, generator=order_rng).split(batch_size):
                    optimiser.zero_grad()
                    loss = loss_fn(model(Xt[idx]), yt[idx])
                    loss.backward()
                    optimiser.step()
                    total += loss.item() * len(idx)
                train_loss = total / n_train
                model.eval()
                with torch.no_grad():
                    logits = model(Xv)
                    val_loss = float(loss_fn(logits, yv))
                    val_acc = float((logits.argmax(1) == yv).float().mean())
                rec.record(step=epoch * steps_per_epoch, epoch=epoch,
                           loss=train_loss, val_loss=val_loss, val_accuracy=val_acc)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}",
                                    val_acc=f"{val_acc:.3f}", refresh=False)
                elif not quiet and (epoch % max(1, epochs // 10) == 0 or epoch == epochs):
                    log(f"epoch {epoch}/{epochs}: loss {train_loss:.3f}, val loss {val_loss:.3f}, "
                        f"val accuracy {val_acc:.3f}")
            if hasattr(bar, "close"):
                bar.close()
            trace = rec.to_trace()
        t_train = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous_threads)
    log(f"training and tracing: {t_train:.1f} s; final loss {train_loss:.3f}, val loss {val_loss:.3f}, "
        f"val accuracy {val_acc:.3f}; trace store {trace_dir}")

    # ---- embedding --------------------------------------------------------------------------
    t0 = time.perf_counter()
    log(f"embedding {trace.n_slices} slices x {trace.n_units} units = {trace.n_slices * trace.n_units} points in 2-D")
    est = MPHATE(n_components=2, random_state=random_state, verbose=0 if quiet else 1, **params)
    embedding = est.fit_transform(trace)
    embedding_3d = None
    if n_components_3d:
        log("embedding in 3-D (reusing the kernel and landmarks)")
        embedding_3d = est.set_params(n_components=3).fit_transform(trace)
    t_embed = time.perf_counter() - t0
    log(f"embedding: {t_embed:.1f} s")

    # ---- report -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    fit_params = {k: v for k, v in est.get_params().items() if k not in ("verbose", "n_components", "n_jobs")}
    fit_params = {k: v for k, v in fit_params.items() if v is not None}
    paths = write_report(
        embedding, trace, out,
        title=f"M-PHATE demo: digits MLP, {epochs} epochs",
        embedding_3d=embedding_3d, dpi=dpi, params=fit_params, estimator=est,
    )
    t_report = time.perf_counter() - t0
    total = time.perf_counter() - start
    log(f"report: {t_report:.1f} s; total {total:.1f} s (training {t_train:.1f} s, "
        f"embedding {t_embed:.1f} s, report {t_report:.1f} s)")
    paths = dict(paths)
    paths["trace"] = trace_dir
    return paths


def _progress(iterable, quiet: bool):
    """A tqdm bar on stderr when tqdm is installed and not quiet; else the bare iterable."""
    if quiet:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc="training", unit="epoch", file=sys.stderr, dynamic_ncols=True)


if __name__ == "__main__":  # pragma: no cover
    run_demo()
