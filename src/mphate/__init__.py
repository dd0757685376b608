"""mphate: Multislice PHATE for visualising how neural networks learn."""
from mphate.capture import Recorder, TorchRecorder, TraceStore, load_trace, save_npz, select_trace_inputs
from mphate.estimator import MPHATE
from mphate.trace import Trace

__version__ = "0.1.0"

__all__ = ["MPHATE", "Trace", "__version__"]
