"""The live picture where researchers already look: TensorBoard and Weights & Biases.

:class:`PictureLogger` is a frame callback of :class:`~mphate.live.session.LiveSession`: every
``every_n_slices`` slices it draws the current embedding (matplotlib's Agg canvas, no pyplot,
so it is safe on the session's worker thread) and logs it

* to TensorBoard with ``SummaryWriter.add_image`` (``tag``, at the last slice's training
  step), from the worker thread: the writer queues events for its own thread;
* to W&B as a ``wandb.Image`` (and optionally the whole interactive page as ``wandb.Html``)
  under ``mphate/...`` keys with ``mphate/train_step`` as their x axis. ``wandb.Run.log`` is
  not documented as thread-safe and the training loop logs to the same run, so these are
  queued and handed to the run by :meth:`flush`, which the recorder calls on the training
  thread right after it records a slice (and once more when it closes).

Both are optional extras, imported when first used (``pip install "mphate[tensorboard]"``,
``"mphate[wandb]"``).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from mphate.optional import require
from mphate.plot.colorings import coloring
from mphate.plot.static import scatter

__all__ = ["PictureLogger", "render_picture"]


def render_picture(embedding, trace, color_by: str = "epoch", *, size=(6.4, 4.8), dpi: int = 100,
                   title: str | None = None) -> np.ndarray:
    """The embedding as an RGB image, shape (height, width, 3), uint8.

    Parameters
    ----------
    embedding : ndarray, shape (n_slices * n_units, 2)
    trace : Trace
    color_by : str
        Any colouring :func:`mphate.plot.coloring` knows ("epoch", "layer", "class", a scalar).
    """
    figure_mod = require("matplotlib.figure", "drawing the live picture")
    agg = require("matplotlib.backends.backend_agg", "drawing the live picture")
    fig = figure_mod.Figure(figsize=size, dpi=dpi, layout="constrained")
    canvas = agg.FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    scatter(np.asarray(embedding)[:, :2], coloring(trace, color_by), ax=ax,
            title=title or f"M-PHATE, {trace.n_slices} slices x {trace.n_units} units")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


class PictureLogger:
    """Log the live embedding's picture every N slices to TensorBoard and/or W&B.

    Parameters
    ----------
    tensorboard : SummaryWriter, str or Path, optional
        Anything with ``add_image(tag, array, global_step, dataformats="HWC")`` (PyTorch's or
        tensorboardX's ``SummaryWriter``), or a log directory to open one in.
    wandb : wandb Run or True, optional
        The run to log to; True takes the active ``wandb.run``.
    every_n_slices : int, default 10
        Log when the embedding has reached another multiple of this many slices.
    color_by : str, default "epoch"
    tag : str, default "mphate/embedding"
        TensorBoard tag and W&B key of the picture.
    html : bool, default False
        Also log the interactive page as ``wandb.Html`` (a few MB each time: plotly.js is
        inlined).
    directory : str or Path, optional
        Also save each picture there as ``picture-<slices>.png`` (how the live worker process
        hands pictures to a W&B run in the training process).
    on_picture : callable, optional
        Called as ``on_picture({"n_slices": n, "step": step, "path": png or None})`` after
        each picture is logged.
    """

    def __init__(self, *, tensorboard=None, wandb=None, every_n_slices=10, color_by="epoch",
                 tag="mphate/embedding", html=False, directory=None, on_picture=None):
        if tensorboard is None and wandb is None and directory is None:
            raise ValueError("PictureLogger needs tensorboard=<SummaryWriter or log dir>, wandb=<run or True>, or both")
        if not isinstance(every_n_slices, (int, np.integer)) or every_n_slices < 1:
            raise ValueError(f"every_n_slices must be a positive integer; got {every_n_slices!r}")
        self.tensorboard = _summary_writer(tensorboard)
        self.wandb_run = _wandb_run(wandb)
        self.every_n_slices = int(every_n_slices)
        self.color_by, self.tag, self.html = color_by, tag, bool(html)
        self.directory = None if directory is None else Path(directory)
        self.on_picture = on_picture
        self.logged: list[int] = []  # slice counts a picture was logged at
        self._latest = None
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        if self.wandb_run is not None:
            define_wandb_axis(self.wandb_run)

    # ------------------------------------------------------------------ frame callback (worker)
    def __call__(self, embedding, trace, frame=None) -> None:
        self._latest = (np.array(embedding), trace)
        n = trace.n_slices
        last = self.logged[-1] if self.logged else 0
        if n // self.every_n_slices > last // self.every_n_slices:
            self.log(embedding, trace)

    def log(self, embedding, trace) -> None:
        """Draw and log one picture now (TensorBoard at once, W&B at the next :meth:`flush`)."""
        image = render_picture(embedding, trace, self.color_by)
        step = int(np.asarray(trace.steps)[-1])
        if self.tensorboard is not None:
            self.tensorboard.add_image(self.tag, image, global_step=step, dataformats="HWC")
            if hasattr(self.tensorboard, "flush"):
                self.tensorboard.flush()
        if self.wandb_run is not None:
            entry = wandb_entry(self.tag, image, trace.n_slices, step)
            if self.html:
                from mphate.plot.html import report_html

                entry["mphate/page"] = wandb.Html(report_html(embedding, trace, title="M-PHATE"), inject=False)
            with self._lock:
                self._pending.append(entry)
        path = None
        if self.directory is not None:
            path = self.directory / f"picture-{trace.n_slices:06d}.png"
            _write_png(path, image)
        self.logged.append(trace.n_slices)
        if self.on_picture is not None:
            self.on_picture({"n_slices": int(trace.n_slices), "step": step, "path": None if path is None else str(path)})

    # ------------------------------------------------------------------ training thread
    def flush(self) -> int:
        """Hand queued W&B entries to the run (call on the thread that logs the training);
        returns how many were logged."""
        with self._lock:
            pending, self._pending = self._pending, []
        for entry in pending:
            self.wandb_run.log(entry)
        return len(pending)

    def finish(self) -> None:
        """Log the latest picture if it was not logged yet, then :meth:`flush` (at the end of a run)."""
        latest = self._latest
        if latest is not None and (not self.logged or self.logged[-1] != latest[1].n_slices):
            self.log(*latest)
        self.flush()


def define_wandb_axis(run) -> None:
    """Plot the ``mphate/...`` keys of a W&B run against the training step they were drawn at."""
    run.define_metric("mphate/*", step_metric="mphate/train_step")


def wandb_entry(tag: str, image, n_slices: int, step: int) -> dict:
    """One W&B log entry of the live picture; ``image``: an RGB array or a PNG's path."""
    wandb = require("wandb", "logging the live picture to Weights & Biases")
    return {tag: wandb.Image(image, caption=f"{n_slices} slices, step {step}"),
            "mphate/slices": n_slices, "mphate/train_step": step}


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, whole or not at all (a reader never sees half a file)."""
    image_mod = require("matplotlib.image", "saving the live picture")
    partial = path.with_suffix(".png.partial")
    image_mod.imsave(partial, image, format="png")
    partial.replace(path)


def _summary_writer(tensorboard):
    if tensorboard is None or hasattr(tensorboard, "add_image"):
        return tensorboard
    if isinstance(tensorboard, (str, Path)):
        module = require("torch.utils.tensorboard", "logging the live picture to TensorBoard")
        return module.SummaryWriter(log_dir=str(tensorboard))
    raise ValueError(
        f"tensorboard must be a SummaryWriter (anything with add_image) or a log directory; got "
        f"{type(tensorboard).__name__}"
    )


def _wandb_run(run):
    if run is None:
        return None
    if run is True:
        wandb = require("wandb", "logging the live picture to Weights & Biases")
        if wandb.run is None:
            raise ValueError("wandb=True needs an active run: call wandb.init(...) first, or pass the run")
        return wandb.run
    if not hasattr(run, "log") or not hasattr(run, "define_metric"):
        raise ValueError(f"wandb must be a wandb Run (from wandb.init) or True; got {type(run).__name__}")
    return run
