"""PyTorch Lightning capture: a Callback that records hidden units during ``Trainer.fit``.

Works with ``lightning`` (``lightning.pytorch``) or ``pytorch_lightning``, whichever is
installed. Recording runs on the global-zero process only. The callback saves its store's run
id in Lightning checkpoints, so ``trainer.fit(model, ckpt_path=...)`` resumes the same store;
slices recorded after the checkpoint's step (training that the resume throws away) are dropped
from the store so that the trace matches the resumed run.

``TraceCallback`` subclasses Lightning's ``Callback``, so it is built the first time it is
imported (importing this module does not import Lightning).
"""
from __future__ import annotations

import importlib
import warnings

import numpy as np

from mphate.capture._callbacks import build_on_first_use, numeric_scalars
from mphate.capture.torch import TorchRecorder

__all__ = ["TraceCallback"]  # built on first use: see __getattr__ at the end

def _lightning_callback_base():
    for module in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(module).Callback
        except ImportError:
            continue
    raise ImportError(
        "the Lightning trace callback needs 'lightning' or 'pytorch_lightning', neither is "
        'installed: pip install "mphate[lightning]"'
    )


# The callback's behaviour, kept out of the class builder so each part stays short:
# _build_callback_class mixes it into Lightning's Callback (which super().__init__() reaches).
class _TraceLogic:
    """Record a LightningModule's hidden units on fixed trace inputs during training.

    Parameters
    ----------
    inputs : Tensor or ndarray, shape (n_trace, ...)
        Trace inputs shaped like a batch the module's ``forward`` takes.
    path : str or Path, optional
        Trace store directory; None keeps the trace in memory (see :meth:`to_trace`).
    every_n_epochs : int or None, default 1
        Record at the end of every n-th training epoch.
    every_n_steps : int, optional
        Also record after every n-th optimiser step (``trainer.global_step``).
    record_on_train_start : bool, default False
        Also record the network as it is when training starts.
    **recorder_options
        Passed to :class:`~mphate.capture.TorchRecorder`: labels, layers, layer_types,
        unit_reduce, channel_dims, batch_size, resume, run_id, fsync, attrs.

    Every slice carries ``trainer.callback_metrics`` of that moment as scalars.
    """

    def __init__(
        self,
        inputs,
        path=None,
        *,
        every_n_epochs=1,
        every_n_steps=None,
        record_on_train_start=False,
        **recorder_options,
    ):
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps)):
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be a positive integer or None, got {value}")
        self.inputs = inputs
        self.path = path
        self.every_n_epochs = None if every_n_epochs is None else int(every_n_epochs)
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.record_on_train_start = bool(record_on_train_start)
        self.recorder_options = dict(recorder_options)
        self.recorder: TorchRecorder | None = None
        self._restored_run_id = None

    # --- checkpoint state: the run id, so a resumed fit appends to the same store -----
    def state_dict(self):
        return {"run_id": None if self.recorder is None else self.recorder.run_id}

    def load_state_dict(self, state_dict):
        self._restored_run_id = state_dict.get("run_id")

    def _ensure_recorder(self, trainer, pl_module) -> TorchRecorder:
        if self.recorder is None:
            options = dict(self.recorder_options)
            if self._restored_run_id is not None:
                options.setdefault("run_id", self._restored_run_id)
                options["resume"] = True
            self.recorder = TorchRecorder(pl_module, self.inputs, self.path, **options)
            store = self.recorder.store
            last = self.recorder.recorder.last_step
            resumed = self._restored_run_id is not None
            if resumed and store is not None and last is not None and last > trainer.global_step:
                if hasattr(store, "truncate_after_step"):
                    warnings.warn(
                        f"dropping trace slices recorded after step {trainer.global_step}, "
                        f"where training resumed from its checkpoint",
                        stacklevel=2,
                    )
                    store.truncate_after_step(trainer.global_step)
        return self.recorder

    def _record(self, trainer, pl_module, epoch):
        if not trainer.is_global_zero:
            return
        recorder = self._ensure_recorder(trainer, pl_module)
        step = int(trainer.global_step)
        if recorder.recorder.last_step == step:
            recorder.log(**numeric_scalars(trainer.callback_metrics))
            return
        recorder.record(step=step, epoch=epoch, **numeric_scalars(trainer.callback_metrics))

    # --- Lightning hooks --------------------------------------------------------------
    def on_train_start(self, trainer, pl_module):
        # not on_fit_start: a checkpoint's global_step is only restored by now
        if trainer.is_global_zero:
            self._ensure_recorder(trainer, pl_module)
        if self.record_on_train_start:
            self._record(trainer, pl_module, epoch=float(trainer.current_epoch))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            n_batches = trainer.num_training_batches
            fraction = (batch_idx + 1) / n_batches if n_batches and np.isfinite(n_batches) else 0.0
            self._record(trainer, pl_module, epoch=trainer.current_epoch + fraction)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._record(trainer, pl_module, epoch=float(trainer.current_epoch + 1))

    def on_fit_end(self, trainer, pl_module):
        if self.recorder is not None:
            self.recorder.close()

    def on_exception(self, trainer, pl_module, exception):
        if self.recorder is not None:
            self.recorder.close()

    def to_trace(self):
        if self.recorder is None:
            raise ValueError("nothing has been recorded yet")
        return self.recorder.to_trace()


def _trainer_experiment(trainer, kind: str):
    """The Trainer's own SummaryWriter ("tensorboard") or wandb run ("wandb") for ``kind=True``."""
    for logger in getattr(trainer, "loggers", None) or []:
        experiment = getattr(logger, "experiment", None)
        if kind == "tensorboard" and hasattr(experiment, "add_image"):
            return experiment
        if kind == "wandb" and hasattr(experiment, "define_metric"):
            return experiment
    if kind == "wandb":
        return True  # the active wandb run, if any (the picture logger says if there is none)
    raise ValueError(
        "tensorboard=True needs a TensorBoardLogger on the Trainer (Trainer(logger=TensorBoardLogger(...))); "
        "or pass a SummaryWriter or a log directory"
    )


def _build_callback_class():
    Callback = _lightning_callback_base()

    class TraceCallback(_TraceLogic, Callback):
        __doc__ = _TraceLogic.__doc__

    TraceCallback.__module__ = __name__
    return TraceCallback


__getattr__ = build_on_first_use(__name__, _build_callback_class)
