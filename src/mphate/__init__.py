"""mphate: Multislice PHATE for visualising how neural networks learn.

The package follows the pipeline: ``capture`` (record activations while training) ->
``traces`` (the trace and its crash-safe store) -> ``embed`` (the M-PHATE stages and the
estimator) -> ``plot`` and ``metrics`` (pictures, reports, the paper's quantities); ``cli`` is
a thin shell over them and ``experiments`` reruns the paper's experiments.
"""
from mphate import _compat
from mphate.capture import Recorder, TorchRecorder, select_trace_inputs
from mphate.embed.estimator import MPHATE
from mphate.traces import Trace, TraceStore, load_trace, save_npz

__version__ = "0.1.0"

__all__ = [
    "MPHATE",
    "Trace",
    "TraceStore",
    "Recorder",
    "TorchRecorder",
    "load_trace",
    "save_npz",
    "select_trace_inputs",
    "compare_runs",
    "__version__",
]


def __getattr__(name):
    # imported on first use: comparing runs pulls in plotting and, when asked, Dask
    if name == "compare_runs":
        from mphate.runs import compare_runs

        return compare_runs
    raise AttributeError(f"module 'mphate' has no attribute {name!r}")

_compat.install()
