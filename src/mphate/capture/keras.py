"""Keras 3 capture: a ``keras.callbacks.Callback`` that records hidden units during ``fit``.

Works with every Keras 3 backend (tested with torch). It needs a model with a functional graph
(a Functional model, or a Sequential one with a known input shape): it builds a second model
that outputs the traced layers, and runs it on the trace inputs with ``training=False``.

Keras fuses the activation into Dense and Conv layers (``Dense(128, activation="relu")``). The
paper traces the values *before* the nonlinearity, so by default (``pre_activation=True``) the
callback takes such a layer's *input* from the graph and applies the layer to it once more with
its activation set to linear for that one call. Layers without an activation, or with
``pre_activation=False``, are traced at their output.

``TraceCallback`` subclasses ``keras.callbacks.Callback``, so it is built the first time it is
imported (importing this module does not import Keras). Its logic lives in the plain mixin
``_TraceLogic`` below, in four parts: options (the constructor's helpers), layer selection and
the extractor model, recording, and the Keras hooks. The hooks only decide *when* a slice is
due and hand over to :meth:`_TraceLogic.record`; a new option adds a ``_set_...`` helper
called from ``__init__`` and, if it acts per slice, a step in ``record``.
"""
from __future__ import annotations

import numpy as np

from mphate.optional import require
from mphate.capture._callbacks import build_on_first_use, numeric_scalars
from mphate.capture.recorder import per_input_labels, recorder_for_inputs, to_numpy

__all__ = ["TraceCallback"]  # built on first use: see __getattr__ at the end

_UNIT_REDUCES = ("mean", "max", "flatten")


def _keras():
    return require("keras", "Keras capture")


def _positive_or_none(name, value):
    if value is not None and int(value) < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value}")
    return None if value is None else int(value)


def _default_layer_types(keras) -> tuple:
    return (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


class _TraceLogic:
    """Everything ``TraceCallback`` does; mixed in before ``keras.callbacks.Callback``."""

    def __init__(
        self,
        inputs,
        path=None,
        *,
        labels=None,
        layers=None,
        layer_types=None,
        every_n_epochs=1,
        every_n_batches=None,
        pre_activation=True,
        unit_reduce="mean",
        batch_size=256,
        record_on_train_begin=False,
        resume=False,
        run_id=None,
        fsync=True,
        attrs=None,
        watch=False,
        tensorboard=None,
        wandb=None,
        log_every=10,
    ):
        super().__init__()
        self._set_extraction(layers, layer_types, pre_activation, unit_reduce, batch_size)
        self._set_schedule(every_n_epochs, every_n_batches, record_on_train_begin)
        self._set_inputs(inputs, labels)
        self._open_recorder(path, resume=resume, run_id=run_id, fsync=fsync, attrs=attrs,
                            live=dict(watch=watch, tensorboard=tensorboard, wandb=wandb, log_every=log_every))

    # --- options: one helper per group of constructor arguments ------------------------
    def _set_inputs(self, inputs, labels):
        self.inputs = to_numpy(inputs)
        if self.inputs.ndim < 1 or self.inputs.shape[0] == 0:
            raise ValueError(f"trace inputs must hold at least one example, got shape {self.inputs.shape}")
        self.labels = per_input_labels(labels, self.inputs.shape[0])

    def _set_schedule(self, every_n_epochs, every_n_batches, record_on_train_begin):
        self.every_n_epochs = _positive_or_none("every_n_epochs", every_n_epochs)
        self.every_n_batches = _positive_or_none("every_n_batches", every_n_batches)
        self.record_on_train_begin = bool(record_on_train_begin)
        self._epoch = 0

    def _set_extraction(self, layers, layer_types, pre_activation, unit_reduce, batch_size):
        if unit_reduce not in _UNIT_REDUCES:
            raise ValueError(f"unit_reduce must be 'mean', 'max' or 'flatten', got {unit_reduce!r}")
        self.layer_names_requested = [layers] if isinstance(layers, str) else (None if layers is None else list(layers))
        self.layer_types = tuple(layer_types) if layer_types is not None else _default_layer_types(_keras())
        self.pre_activation = bool(pre_activation)
        self.unit_reduce = unit_reduce
        self.batch_size = int(batch_size)
        self._extractor = None
        self._traced = None

    def _open_recorder(self, path, *, resume, run_id, fsync, attrs, live):
        attrs = {"framework": "keras", "keras_backend": _keras().backend.backend(), **(attrs or {})}
        self.recorder = recorder_for_inputs(
            path, self.inputs, self.labels, resume=resume, run_id=run_id, fsync=fsync, attrs=attrs, **live
        )
        # optimiser steps seen, across fit() calls; a resumed store continues its count
        self.global_step = self.recorder.last_step or 0

    # --- which layers, and the model that exposes them ------------------------------------
    def _select_layers(self):
        model = self.model
        by_name = {layer.name: layer for layer in model.layers}
        if self.layer_names_requested is None:
            chosen = [layer for layer in model.layers if isinstance(layer, self.layer_types)]
            if not chosen:
                raise ValueError(
                    f"the model has no layer of type {[t.__name__ for t in self.layer_types]}; "
                    f"name layers to trace with layers=[...] (available: {list(by_name)})"
                )
            return chosen
        unknown = [n for n in self.layer_names_requested if n not in by_name]
        if unknown:
            raise ValueError(f"unknown layer name(s) {unknown}; available: {list(by_name)}")
        return [by_name[n] for n in self.layer_names_requested]

    def _needs_pre_activation(self, layer) -> bool:
        activation = getattr(layer, "activation", None)
        return (
            self.pre_activation
            and hasattr(layer, "kernel")  # Dense/Conv-like, not an Activation layer
            and activation is not None
            and getattr(activation, "__name__", "") != "linear"
        )

    def _build_extractor(self):
        layers = self._select_layers()
        try:
            inputs = self.model.inputs
            if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
                inputs = inputs[0]  # so a single array is accepted without a structure warning
            outputs = [layer.input if self._needs_pre_activation(layer) else layer.output for layer in layers]
            extractor = _keras().Model(inputs=inputs, outputs=outputs)
        except Exception as exc:
            raise ValueError(
                "the Keras trace callback needs a model with a functional graph (a Functional "
                "model, or a Sequential model with an Input or input_shape) whose traced "
                f"layers are each used once ({type(exc).__name__}: {exc}); for subclassed "
                "models, record with mphate.capture.Recorder directly"
            ) from exc
        self._traced = layers
        self._extractor = extractor

    # --- recording ----------------------------------------------------------------------------
    def activations(self) -> dict:
        """Each traced layer's units now: ``{name: ndarray (n_trace, n_units)}``."""
        if self._extractor is None:
            self._build_extractor()
        parts = {layer.name: [] for layer in self._traced}
        for start in range(0, self.inputs.shape[0], self.batch_size):
            outputs = self._run_extractor(self.inputs[start : start + self.batch_size])
            for layer, output in zip(self._traced, outputs):
                parts[layer.name].append(self._units(layer, output))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def _run_extractor(self, chunk) -> list:
        """The traced layers' values on one chunk of trace inputs, as NumPy arrays."""
        keras = _keras()
        try:
            outputs = self._extractor(chunk, training=False)
        except Exception as exc:
            raise ValueError(
                f"running the trace inputs (shape {self.inputs.shape}, dtype {self.inputs.dtype}) "
                f"through the model failed: {type(exc).__name__}: {exc}. The trace inputs must "
                f"be shaped like a training batch"
            ) from exc
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        values = []
        for layer, output in zip(self._traced, outputs):
            if self._needs_pre_activation(layer):
                output = self._without_activation(layer, output)
            values.append(keras.ops.convert_to_numpy(output))
        return values

    @staticmethod
    def _without_activation(layer, layer_input):
        saved = layer.activation
        layer.activation = _keras().activations.linear
        try:
            return layer(layer_input, training=False)
        finally:
            layer.activation = saved

    def _units(self, layer, array):
        array = np.asarray(array, dtype=np.float32)
        if array.ndim <= 2:
            return array.reshape(array.shape[0], -1)
        if self.unit_reduce == "flatten":
            return array.reshape(array.shape[0], -1)
        channel_axis = 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1
        channels = np.moveaxis(array, channel_axis, 1).reshape(array.shape[0], array.shape[channel_axis], -1)
        return channels.mean(axis=2) if self.unit_reduce == "mean" else channels.max(axis=2)

    def record(self, epoch=None, **scalars) -> int:
        """Record a slice at the current step now; returns its index."""
        return self.recorder.record(self.global_step, self.activations(), epoch=epoch, **scalars)

    @property
    def live(self):
        """The live view started by ``watch=``/``tensorboard=``/``wandb=``, or None."""
        return self.recorder.live

    def to_trace(self):
        return self.recorder.to_trace()

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    # --- Keras hooks: each decides whether a slice is due, then calls record() -----------------
    def on_train_begin(self, logs=None):
        if self._extractor is None:
            try:
                self._build_extractor()
            except ValueError:
                if getattr(self.model, "built", False):
                    raise
                # not built yet (no input shape): try again at the first record
        if self.record_on_train_begin and self.recorder.last_step != self.global_step:
            self.record(epoch=float(self._epoch))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        if self._batch_slice_due():
            self.record(epoch=self._epoch_within(batch), **numeric_scalars(logs))

    def on_epoch_end(self, epoch, logs=None):
        if not self._epoch_slice_due(epoch):
            return
        scalars = numeric_scalars(logs)
        if self.recorder.last_step == self.global_step:
            # a per-batch slice was just taken at this very step: add the epoch's logs to it
            self.recorder.log(**scalars)
        else:
            self.record(epoch=float(epoch + 1), **scalars)

    def on_train_end(self, logs=None):
        self.recorder.close()  # releases the store's lock; a later fit() reopens it

    def _batch_slice_due(self) -> bool:
        return bool(self.every_n_batches) and self.global_step % self.every_n_batches == 0

    def _epoch_slice_due(self, epoch) -> bool:
        return bool(self.every_n_epochs) and (epoch + 1) % self.every_n_epochs == 0

    def _epoch_within(self, batch) -> float:
        """The fractional epoch after 0-based ``batch`` of the current epoch."""
        steps = (self.params or {}).get("steps")
        return self._epoch + (batch + 1) / steps if steps else float(self._epoch)


_DOC = """Record a Keras model's hidden units on fixed trace inputs during ``fit``.

    Parameters
    ----------
    inputs : ndarray, shape (n_trace, ...)
        Trace inputs shaped like a training batch (see :func:`select_trace_inputs`).
    path : str or Path, optional
        Trace store directory; None keeps the trace in memory (see :meth:`to_trace`).
    labels : array-like, shape (n_trace,), optional
        Class of each trace input.
    layers : list of str, optional
        Names of the top-level layers to trace. Default: every layer of ``layer_types``.
    layer_types : tuple of layer classes, optional
        Default: Dense and Conv1D/2D/3D.
    every_n_epochs : int or None, default 1
        Record at the end of every n-th epoch (None: never at epoch ends).
    every_n_batches : int, optional
        Also record after every n-th training batch (counted across epochs).
    pre_activation : bool, default True
        Trace Dense/Conv layers before their fused activation (as the paper does).
    unit_reduce : {"mean", "max", "flatten"}, default "mean"
        How a feature map becomes units: one per channel (mean or max over positions),
        or every position of every channel.
    batch_size : int, default 256
    record_on_train_begin : bool, default False
        Also record the untrained network (step 0) when ``fit`` starts.
    resume, run_id, fsync, attrs
        See :class:`mphate.capture.Recorder`.
    watch, tensorboard, wandb, log_every
        The live view: ``watch=True`` serves a page that grows with the run (address printed,
        and in ``live.url``); ``tensorboard=writer`` / ``wandb=run`` log its picture every
        ``log_every`` slices. See :class:`mphate.capture.Recorder`.

    Every slice carries Keras's numeric logs of that moment (loss, accuracy, and at epoch
    ends val_loss, ...) as scalars.
    """


def _build_callback_class():
    keras = _keras()

    class TraceCallback(_TraceLogic, keras.callbacks.Callback):
        __doc__ = _DOC

    TraceCallback.__module__ = __name__
    return TraceCallback


__getattr__ = build_on_first_use(__name__, _build_callback_class)
