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
from pathlib import Path

from mphate.experiments.training import evaluate, load_data, make_mlp, torch_threads, trace_inputs, train
from mphate.optional import require

__all__ = ["run_demo", "build_model"]

N_CLASSES = 10
LEAK = 0.1


def build_model(n_inputs: int = 64, hidden: int = 128, n_hidden_layers: int = 3, n_classes: int = N_CLASSES,
                *, seed: int | None = None):
    """The demo network: ``n_hidden_layers`` Linear layers of ``hidden`` units with LeakyReLU(0.1).

    A ``torch.nn.Sequential`` (:func:`mphate.experiments.training.make_mlp`): the hidden Linear
    layers are named ``dense_1``, ``dense_2``, ..., their activations ``act_1``, ...; the output
    layer ``output``. ``seed``: reseed PyTorch before the weights are drawn (None: don't).
    """
    require("torch", "the demo")
    return make_mlp(n_inputs, (hidden,) * n_hidden_layers, n_classes, activation="leaky_relu", seed=seed,
                    hidden_name="dense_{}", output_name="output")


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
    require("torch", "the demo")
    epochs = int(epochs)
    if epochs < 2:
        raise ValueError(f"epochs must be at least 2 (one slice per epoch); got {epochs}")
    if int(hidden) < 2:
        raise ValueError(f"hidden must be at least 2 units; got {hidden}")
    log = _Log(quiet)
    start = time.perf_counter()
    out, trace_dir = _prepare_output(out_dir)
    params = _mphate_params(epochs, n_landmark, threads, mphate_params, log)
    with torch_threads(1 if threads is None else threads):
        trace, t_train = _train_and_trace(trace_dir, epochs=epochs, random_state=random_state, hidden=int(hidden),
                                          n_per_class=n_per_class, lr=lr, batch_size=batch_size, log=log)
    est, embedding, embedding_3d, t_embed = _embed(trace, params, random_state, n_components_3d, log)
    t0 = time.perf_counter()
    fit_params = {k: v for k, v in est.get_params().items() if k not in ("verbose", "n_components", "n_jobs")}
    from mphate.plot.report import write_report

    paths = write_report(
        embedding, trace, out,
        title=f"M-PHATE demo: digits MLP, {epochs} epochs",
        embedding_3d=embedding_3d, dpi=dpi, params={k: v for k, v in fit_params.items() if v is not None},
        estimator=est,
    )
    t_report = time.perf_counter() - t0
    log(f"report: {t_report:.1f} s; total {time.perf_counter() - start:.1f} s (training {t_train:.1f} s, "
        f"embedding {t_embed:.1f} s, report {t_report:.1f} s)")
    return {**paths, "trace": trace_dir}


def _prepare_output(out_dir):
    """The report folder (created) and its trace store's path, an earlier demo's store removed."""
    from mphate.paths import ensure_writable_dir
    from mphate.traces.store import is_trace_store

    out = ensure_writable_dir(out_dir)
    trace_dir = out / "trace"
    if trace_dir.exists():
        if not is_trace_store(trace_dir):
            raise ValueError(f"{trace_dir} exists and is not a trace store; choose another output folder")
        shutil.rmtree(trace_dir)  # an earlier demo's trace: the demo always records afresh
    return out, trace_dir


def _mphate_params(epochs: int, n_landmark, threads, mphate_params, log) -> dict:
    """The estimator's parameters: ``n_landmark``, ``n_jobs`` from ``threads``, the caller's own,
    and ``interslice_knn`` lowered for a demo with too few epochs for the default."""
    from mphate.embed.estimator import MPHATE

    params = {"n_landmark": n_landmark, "n_jobs": None if threads is None else max(1, int(threads)),
              **(mphate_params or {})}
    default_knn = MPHATE().interslice_knn
    if "interslice_knn" not in params and epochs <= default_knn:
        # a short demo: each unit needs interslice_knn other slices to set the kernel's bandwidth
        params["interslice_knn"] = epochs - 1
        log(f"{epochs} epochs: interslice_knn lowered to {epochs - 1} (default {default_knn} needs more slices)")
    return params


def _train_and_trace(trace_dir, *, epochs, random_state, hidden, n_per_class, lr, batch_size, log):
    """Train the demo network, recording a slice after every epoch into the store ``trace_dir``:
    the trace and the seconds it took."""
    torch = require("torch", "the demo")
    from mphate.capture import TorchRecorder

    data = load_data(None, random_state)
    X_trace, y_trace = trace_inputs(data, n_per_class, random_state)
    model = build_model(data.n_inputs, hidden, 3, N_CLASSES, seed=random_state)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    Xt, yt = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
    Xv, yv = torch.from_numpy(data.X_val), torch.from_numpy(data.y_val)
    n_train, network = len(Xt), f"{data.n_inputs}-{hidden}-{hidden}-{hidden}-{N_CLASSES}"
    log(f"digits: {n_train} training / {len(Xv)} validation images; network {network} (LeakyReLU {LEAK}), "
        f"Adam lr {lr:g}, batch {batch_size}; tracing {len(model.hidden_names) * hidden} hidden units on "
        f"{len(y_trace)} inputs after each of {epochs} epochs")
    attrs = {"demo": "mphate demo", "data": "scikit-learn digits (8x8)", "network": f"{network}, LeakyReLU({LEAK})",
             "optimizer": f"Adam(lr={lr:g})", "batch_size": int(batch_size), "epochs": epochs,
             "random_state": int(random_state)}
    progress = _Progress(epochs, log)
    batch_losses = []

    def after_epoch(epoch):
        train_loss = sum(batch_losses) / n_train  # the epoch's batches' mean loss
        batch_losses.clear()
        val_loss, val_acc = evaluate(model, Xv, yv)
        rec.record(step=epoch * -(-n_train // batch_size), epoch=epoch,
                   loss=train_loss, val_loss=val_loss, val_accuracy=val_acc)
        progress.update(epoch, train_loss, val_loss, val_acc)

    t0 = time.perf_counter()
    # fsync=False: a killed demo still leaves a readable store (renames are atomic); only a
    # power cut could lose recent slices, and the demo records afresh anyway. Saves ~20 ms a slice.
    with TorchRecorder(model, X_trace, trace_dir, labels=y_trace, layers=model.hidden_names, attrs=attrs,
                       fsync=False) as rec:
        train(model, optimiser, Xt, yt, epochs=epochs, batch_size=batch_size,
              generator=torch.Generator().manual_seed(random_state),
              on_batch=lambda b: batch_losses.append(b.loss.item() * b.size), on_epoch=after_epoch)
        progress.close()
        trace = rec.to_trace()
    t_train = time.perf_counter() - t0
    loss, val_loss, val_acc = (trace.scalars[k][-1] for k in ("loss", "val_loss", "val_accuracy"))
    log(f"training and tracing: {t_train:.1f} s; final loss {loss:.3f}, val loss {val_loss:.3f}, "
        f"val accuracy {val_acc:.3f}; trace store {trace_dir}")
    return trace, t_train


def _embed(trace, params, random_state, n_components_3d, log):
    """The 2-D embedding, and the 3-D one reusing its kernel and landmarks: the fitted
    estimator, both embeddings (3-D: None unless asked for) and the seconds they took."""
    from mphate.embed.estimator import MPHATE

    t0 = time.perf_counter()
    log(f"embedding {trace.n_slices} slices x {trace.n_units} units = {trace.n_slices * trace.n_units} points in 2-D")
    est = MPHATE(n_components=2, random_state=random_state, verbose=0 if log.quiet else 1, **params)
    embedding = est.fit_transform(trace)
    embedding_3d = None
    if n_components_3d:
        log("embedding in 3-D (reusing the kernel and landmarks)")
        embedding_3d = est.set_params(n_components=3).fit_transform(trace)
    t_embed = time.perf_counter() - t0
    log(f"embedding: {t_embed:.1f} s")
    return est, embedding, embedding_3d, t_embed


class _Progress:
    """Training progress on stderr: a tqdm bar when tqdm is installed, else a log line every
    tenth of training; nothing when quiet."""

    def __init__(self, epochs: int, log: _Log):
        self.epochs, self.log, self.bar = epochs, log, None
        if not log.quiet:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=epochs, desc="training", unit="epoch", file=sys.stderr, dynamic_ncols=True)

    def update(self, epoch: int, loss: float, val_loss: float, val_acc: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.3f}",
                                 refresh=False)
            self.bar.update(1)
        elif epoch % max(1, self.epochs // 10) == 0 or epoch == self.epochs:
            self.log(f"epoch {epoch}/{self.epochs}: loss {loss:.3f}, val loss {val_loss:.3f}, "
                     f"val accuracy {val_acc:.3f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":  # pragma: no cover
    run_demo()
