"""Framework-free recording: ``record(step, {layer_name: activations})`` from any training loop."""
from __future__ import annotations

import hashlib
import time
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mphate.optional import require
from mphate.traces.store import MemoryStore, TraceStore, check_creatable, is_trace_store
from mphate.traces.trace import Trace

__all__ = ["Recorder", "fingerprint"]


def to_numpy(value) -> np.ndarray:
    """A framework tensor (torch, TensorFlow, JAX) or array-like as a numpy array on the CPU."""
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu()
        if value.is_floating_point() and str(value.dtype) != "torch.float64":
            value = value.float()  # numpy has no bfloat16; half precision gains nothing here
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value)


def fingerprint(array) -> str:
    """SHA-256 of an array's shape, dtype and bytes: identifies a set of trace inputs."""
    array = np.ascontiguousarray(to_numpy(array))
    digest = hashlib.sha256(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


class Recorder:
    """Record hidden-unit activations slice by slice, to disk (crash-safe) or to memory.

    Works with any framework: at each moment of training, pass every traced layer's
    activations on the same trace inputs to :meth:`record`.

    Parameters
    ----------
    path : str or Path, optional
        Trace store directory. None keeps the trace in memory.
    trace_labels : array-like, shape (n_trace,), optional
        Class of each trace input (used to colour units by their most-active class).
    resume : bool, default False
        Append to the store already at ``path`` instead of refusing to touch it. A resume
        must record the same layers with the same unit counts on the same trace inputs.
    run_id : str, optional
        Id of this run. A new store is created with it; with ``resume=True`` an existing
        store is only appended to if it was created with it (save :attr:`run_id` with your
        checkpoints to make resuming safe).
    fsync : bool, default True
        Make each slice durable against power loss, not only against the process being killed.
    attrs : dict, optional
        JSON-serialisable metadata stored with the trace (model, hyper-parameters, ...).
    trace_inputs_sha256 : str, optional
        Fingerprint of the trace inputs (see :func:`fingerprint`); a resume with different
        inputs is refused. Framework recorders fill it in.
    watch : bool, int or dict, default False
        Serve a live view of the store from the training script (:func:`mphate.live.attach`):
        True (http://127.0.0.1:8050/, or a free port if that one is taken), a port number, or
        a dict of options. The embedding and the page run in a child process at lowered
        priority that ends with this one (``{"worker": "thread"}``: on a thread of this
        process, which costs training steps more); its address is printed to stderr and kept
        in ``live.url``. Needs a ``path``.
    tensorboard : SummaryWriter or log dir, optional
        Log the live picture there every ``log_every`` slices (``add_image``).
    wandb : wandb Run or True, optional
        Log the live picture to this W&B run (True: the active one) every ``log_every`` slices.
    log_every : int, default 10
    live_options : dict, optional
        Options of the live embedding for ``watch``/``tensorboard``/``wandb`` (estimator,
        incremental, poll_interval; see :class:`mphate.live.session.LiveSession`).

    Examples
    --------
    >>> rec = Recorder("run.trace", trace_labels=y_trace)          # doctest: +SKIP
    >>> for epoch in range(1, 301):                                  # doctest: +SKIP
    ...     train_one_epoch()
    ...     rec.record(step, {"fc1": h1, "fc2": h2}, epoch=epoch, loss=loss)
    """

    def __init__(
        self,
        path=None,
        *,
        trace_labels=None,
        resume=False,
        run_id=None,
        fsync=True,
        attrs=None,
        trace_inputs_sha256=None,
        watch=False,
        tensorboard=None,
        wandb=None,
        log_every=10,
        live_options=None,
    ):
        self.path = None if path is None else Path(path)
        self.trace_labels = None if trace_labels is None else to_numpy(trace_labels)
        if self.trace_labels is not None and self.trace_labels.ndim != 1:
            raise ValueError(f"trace_labels must be 1-D (one label per trace input), got shape {self.trace_labels.shape}")
        self.fsync = fsync
        self.attrs = dict(attrs or {})
        self.trace_inputs_sha256 = trace_inputs_sha256
        self._store: TraceStore | MemoryStore | None = None
        self._run_id = None if run_id is None else str(run_id)
        if self.path is not None and is_trace_store(self.path):
            if not resume:
                with TraceStore.open(self.path, strict=False) as existing:
                    n = existing.n_slices
                    other = existing.run_id
                raise ValueError(
                    f"{self.path} already holds a trace store (run {other}, {n} slices); pass "
                    f"resume=True to append to it, or record into a new path"
                )
            self._store = self._open_for_append()
            self._check_same_inputs(self._store)
            self._run_id = self._store.run_id
        elif self.path is not None:
            check_creatable(self.path)  # fail now, not after the first epoch
        if self._run_id is None:
            self._run_id = uuid.uuid4().hex
        self._listeners: list = []
        self._listener_failed = False
        self.live = None
        if watch or tensorboard is not None or wandb is not None:
            live = require("mphate.live", "watching a run live (watch=, tensorboard=, wandb=)")
            self.live = live.attach(self, watch=watch, tensorboard=tensorboard, wandb=wandb, log_every=log_every,
                                    options=live_options)

    # --- listeners --------------------------------------------------------------------------
    def add_listener(self, callback) -> None:
        """Call ``callback(event)`` on the recording thread after each change of the store.

        ``event`` is ``{"kind": "slice", "index": i, "step": step}`` after a slice is durable,
        ``{"kind": "scalars", "index": i}`` after :meth:`log`, ``{"kind": "close"}`` on
        :meth:`close`. Keep callbacks quick: they run inside the training loop. One that
        raises is reported once as a warning and never breaks the recording.
        """
        self._listeners.append(callback)

    def _notify(self, event: dict) -> None:
        for callback in self._listeners:
            try:
                callback(event)
            except Exception as exc:  # the live view must never stop a training run
                if not self._listener_failed:
                    self._listener_failed = True
                    warnings.warn(f"a recorder listener failed ({type(exc).__name__}: {exc}); recording goes on",
                                  RuntimeWarning, stacklevel=3)

    def _open_for_append(self) -> TraceStore:
        """Open the store for appending; retried briefly when it is busy, since a live view's
        liveness probe holds a shared lock on it for a few microseconds now and then."""
        for attempt in range(20):
            try:
                return TraceStore.open(self.path, mode="a", run_id=self._run_id, fsync=self.fsync)
            except ValueError as exc:
                if "already open for appending" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- state ------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """Id of this run's store (save it with your checkpoints; pass it back to resume)."""
        return self._run_id

    @property
    def store(self):
        """The underlying TraceStore (or MemoryStore); None until the first slice."""
        return self._store

    @property
    def n_slices(self) -> int:
        return 0 if self._store is None else self._store.n_slices

    @property
    def last_step(self):
        """Step of the last recorded slice (None before the first): resume after it."""
        if self._store is None or self._store.n_slices == 0:
            return None
        return int(self._store.steps[-1])

    def _check_same_inputs(self, store) -> None:
        if (
            self.trace_inputs_sha256 is not None
            and store.trace_inputs_sha256 is not None
            and store.trace_inputs_sha256 != self.trace_inputs_sha256
        ):
            raise ValueError(
                f"the trace store at {store.path} was recorded on other trace inputs; a store "
                f"holds one run on one fixed set of inputs: record into a new path"
            )
        if self.trace_labels is not None and store.trace_labels is not None:
            if store.trace_labels.shape != self.trace_labels.shape or not np.array_equal(
                store.trace_labels, self.trace_labels
            ):
                raise ValueError(
                    f"the trace store at {store.path} has different trace labels; a store holds "
                    f"one run on one fixed set of inputs: record into a new path"
                )

    # --- recording --------------------------------------------------------------------------
    def record(self, step, activations, epoch=None, **scalars) -> int:
        """Append one slice; returns its index.

        Parameters
        ----------
        step : int
            Optimiser step (or batch count) now; must increase from slice to slice.
        activations : dict of str -> array-like, shape (n_trace, n_units_of_layer)
            Each traced layer's output on the trace inputs, one row per input. The same
            layers, unit counts and inputs every time. Reduce convolution maps to one value
            per channel first (e.g. the spatial mean).
        epoch : float, optional
            Epoch now (fractional for per-batch recording).
        **scalars : float
            Values to log with this slice: loss, val_loss, accuracy, task, ...

        Nothing is written unless every check passes, so a bad call leaves the store intact.
        """
        names, units, matrix = self._stack(activations)
        self._reopen_if_closed()
        if self._store is None:
            self._store = self._create_store(names, units, matrix.shape[1])
        else:
            self._store.check_layout(names, units, matrix.shape[1])
            if list(names) != list(self._store.layer_names):
                matrix = self._reorder(names, units, matrix)
        index = self._store.append(matrix, step, epoch=epoch, scalars=scalars)
        self._notify({"kind": "slice", "index": index, "step": int(step)})
        return index

    def log(self, slice_index=None, **scalars) -> None:
        """Attach scalars to a recorded slice (default: the last), e.g. a val_loss known later."""
        if self._store is None:
            raise ValueError("no slice has been recorded yet, so there is nothing to attach scalars to")
        self._reopen_if_closed()
        self._store.log_scalars(slice_index, **scalars)
        self._notify({"kind": "scalars", "index": self._store.n_slices - 1 if slice_index is None else slice_index})

    def _reopen_if_closed(self) -> None:
        if isinstance(self._store, TraceStore) and self._store.mode != "a":
            # closed after an earlier fit(): take the append lock again
            self._store = self._open_for_append()

    def _stack(self, activations):
        if not isinstance(activations, Mapping) or not activations:
            raise ValueError(
                "activations must be a non-empty dict {layer_name: array of shape (n_trace, n_units)}, "
                f"got {type(activations).__name__}"
            )
        names, units, blocks = [], [], []
        n_trace = None
        for name, value in activations.items():
            if not isinstance(name, str):
                raise ValueError(f"layer names must be strings, got {name!r}")
            try:
                array = to_numpy(value)
            except Exception as exc:
                raise ValueError(f"layer {name!r}: could not read activations as an array ({exc})") from None
            if array.dtype == object or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
                raise ValueError(
                    f"layer {name!r}: activations must be a real numeric array, got "
                    f"{type(value).__name__} with dtype {array.dtype}"
                )
            if array.ndim == 1:
                array = array[:, None]  # a layer with a single unit
            if array.ndim != 2:
                raise ValueError(
                    f"layer {name!r}: activations must have shape (n_trace, n_units), got "
                    f"{array.shape}; reduce feature maps to one value per channel first "
                    f"(e.g. the mean over spatial axes)"
                )
            if n_trace is None:
                n_trace = array.shape[0]
            elif array.shape[0] != n_trace:
                raise ValueError(
                    f"layer {name!r} has activations for {array.shape[0]} trace inputs, "
                    f"layer {names[0]!r} for {n_trace}; every layer must see the same inputs"
                )
            names.append(name)
            units.append(array.shape[1])
            blocks.append(array.T)
        if self.trace_labels is not None and self.trace_labels.shape[0] != n_trace:
            raise ValueError(
                f"got activations for {n_trace} trace inputs but {self.trace_labels.shape[0]} trace labels"
            )
        return names, units, np.concatenate(blocks, axis=0).astype(np.float32, copy=False)

    def _reorder(self, names, units, matrix):
        """Rows of ``matrix`` rearranged into the store's layer order."""
        offsets = dict(zip(names, np.cumsum([0] + list(units[:-1]))))
        sizes = dict(zip(names, units))
        return np.concatenate(
            [matrix[offsets[n] : offsets[n] + sizes[n]] for n in self._store.layer_names], axis=0
        )

    def _create_store(self, names, units, n_trace):
        if self.path is None:
            return MemoryStore(names, units, n_trace, self.trace_labels, self.attrs, run_id=self._run_id)
        return TraceStore.create(
            self.path,
            names,
            units,
            n_trace,
            trace_labels=self.trace_labels,
            trace_inputs_sha256=self.trace_inputs_sha256,
            attrs=self.attrs,
            run_id=self._run_id,
            fsync=self.fsync,
        )

    # --- output -----------------------------------------------------------------------------
    def to_trace(self) -> Trace:
        """Everything recorded so far as a Trace."""
        if self._store is None or self._store.n_slices == 0:
            raise ValueError("nothing has been recorded yet")
        return self._store.to_trace()

    def close(self) -> None:
        """Release the store (its append lock and file handles). A live view keeps serving
        (its page then says the writer stopped); ``live.stop()`` ends it."""
        if self._store is not None:
            self._store.close()
        self._notify({"kind": "close"})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- for the framework recorders (TorchRecorder, the Keras callback) ---------------------------
# They hold the trace inputs themselves, so they can check the labels against them when built,
# and fingerprint them so that a resume on other inputs is refused.


def per_input_labels(labels, n_trace: int):
    """``labels`` as an array of one class per trace input (None stays None)."""
    if labels is None:
        return None
    labels = to_numpy(labels)
    if labels.shape != (n_trace,):
        raise ValueError(f"labels must have shape ({n_trace},), one per trace input; got {labels.shape}")
    return labels


def recorder_for_inputs(path, inputs, labels, *, resume, run_id, fsync, attrs, **live) -> Recorder:
    """The Recorder a framework recorder writes through, tied to its trace ``inputs``.

    ``live``: the live-view options (watch, tensorboard, wandb, log_every), passed on.
    """
    return Recorder(
        path,
        trace_labels=labels,
        resume=resume,
        run_id=run_id,
        fsync=fsync,
        attrs=attrs,
        trace_inputs_sha256=fingerprint(inputs),
        **live,
    )
