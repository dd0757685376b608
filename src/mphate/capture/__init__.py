"""Capture: record every traced hidden unit during training into a crash-safe trace store.

* :func:`select_trace_inputs` picks the fixed, class-balanced trace inputs.
* :class:`Recorder` is the framework-free API: ``record(step, {layer: activations})``.
* :class:`TorchRecorder` hooks a PyTorch model; ``KerasTraceCallback`` and
  ``LightningTraceCallback`` do the same inside ``model.fit`` / ``Trainer.fit``.
* :class:`~mphate.traces.store.TraceStore` is the on-disk store; :func:`~mphate.traces.io.load_trace`
  reads a store or an .npz/.npy/.mat file.

Framework modules import their framework only when used.
"""
from mphate.capture.inputs import select_trace_inputs, trace_indices
from mphate.capture.recorder import Recorder
from mphate.capture.torch import TorchRecorder
from mphate.traces.io import as_trace, load_trace, save_npz
from mphate.traces.store import TraceStore

__all__ = [
    "select_trace_inputs",
    "trace_indices",
    "Recorder",
    "TorchRecorder",
    "KerasTraceCallback",
    "LightningTraceCallback",
    "TraceStore",
    "load_trace",
    "save_npz",
    "as_trace",
]


def __getattr__(name):
    # the callback classes subclass their framework's Callback, so they are built on first use
    if name == "KerasTraceCallback":
        from mphate.capture.keras import TraceCallback

        return TraceCallback
    if name == "LightningTraceCallback":
        from mphate.capture.lightning import TraceCallback

        return TraceCallback
    raise AttributeError(f"module 'mphate.capture' has no attribute {name!r}")
