"""Traces: the recorded activations and everything that reads or writes them.

``trace`` (the in-memory :class:`Trace`), ``store`` (the crash-safe on-disk store), ``io``
(one reading path for arrays, Traces, stores and files: :func:`as_trace`), ``validation``
(the checks every reader passes through), ``datasets`` and ``synthetic`` (data to try it on),
``embedding_file`` (the ``.npz`` that ``mphate embed`` writes).
"""
from mphate.traces.io import as_trace, load_trace, save_mat, save_npz
from mphate.traces.store import MemoryStore, TraceStore
from mphate.traces.trace import Trace

__all__ = ["Trace", "TraceStore", "MemoryStore", "as_trace", "load_trace", "save_npz", "save_mat"]
