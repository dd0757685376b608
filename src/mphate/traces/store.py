"""Crash-safe on-disk trace store: append one slice at a time, read any range lazily.

Layout of a store directory (format ``mphate-trace-store``, version 1)::

    PATH/
      meta.json        run id, layer names and unit counts, n_trace, trace labels, user attrs
      index.jsonl      append-only event log: one JSON line per completed slice
                       (step, epoch, scalars, file size, CRC-32) and per late scalar log
      slices/00000000.npy, 00000001.npy, ...   one float32 (n_units, n_trace) array per slice
      .lock            advisory lock held by the one process appending

Why it survives a ``kill -9`` or a power cut (see docs/capture.md for the full argument):

* every file that is replaced (meta.json, each slice file) is written to a temporary name,
  fsynced, then renamed over its final name, and the directory is fsynced; a reader sees the
  old file or the new one, never half of one;
* a slice *exists* only once its line in ``index.jsonl`` is complete (ends with a newline); the
  slice file is renamed into place *before* its index line is appended, so a complete line
  always points at a complete file;
* a torn last line (the writer died mid-append) is ignored on read and cut off before the next
  append; a slice file without an index line is an orphan and is overwritten on resume.

Nothing here needs more than numpy and the standard library.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import uuid
import zlib
from pathlib import Path

import numpy as np

from mphate.traces.trace import Trace

FORMAT_NAME = "mphate-trace-store"
FORMAT_VERSION = 1
META_FILE = "meta.json"
INDEX_FILE = "index.jsonl"
SLICE_DIR = "slices"
LOCK_FILE = ".lock"
DTYPE = np.float32

__all__ = ["TraceStore", "MemoryStore", "is_trace_store", "check_creatable", "FORMAT_NAME", "FORMAT_VERSION"]


# ---------------------------------------------------------------------------------------------
# durable file primitives


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (POSIX only; elsewhere the rename is all we have)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, payload: bytes, fsync: bool) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _describe_readable(n: int) -> str:
    if n == 0:
        return "no slice is readable"
    if n == 1:
        return "slice 0 is readable"
    return f"slices 0-{n - 1} are readable"


def is_trace_store(path) -> bool:
    """True when ``path`` is a directory holding an mphate trace store (it has a meta.json)."""
    path = Path(path)
    return path.is_dir() and (path / META_FILE).is_file()


# ---------------------------------------------------------------------------------------------
# validation shared by the on-disk and in-memory stores


def _check_layout(layer_names, layer_units, n_trace):
    layer_names = [str(name) for name in layer_names]
    layer_units = [int(u) for u in layer_units]
    if not layer_names:
        raise ValueError("a trace needs at least one layer")
    if len(layer_names) != len(layer_units):
        raise ValueError(
            f"got {len(layer_names)} layer names but {len(layer_units)} unit counts"
        )
    if len(set(layer_names)) != len(layer_names):
        raise ValueError(f"layer names must be unique, got {layer_names}")
    if any(u < 1 for u in layer_units):
        raise ValueError(f"every layer needs at least one unit, got {dict(zip(layer_names, layer_units))}")
    if int(n_trace) < 1:
        raise ValueError("n_trace must be at least 1")
    return layer_names, layer_units, int(n_trace)


def _clean_scalars(scalars) -> dict[str, float]:
    """Per-slice scalars as plain floats; anything not a real number is a clear error."""
    cleaned = {}
    for name, value in dict(scalars or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"scalar names must be non-empty strings, got {name!r}")
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError  # "0.5" is a typo to report, not a number to parse
            # float() takes Python and numpy numbers and 0-d tensors of any framework/device
            number = float(value) if not isinstance(value, np.ndarray) else float(value.reshape(()))
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"scalar {name!r} must be a single number, got {type(value).__name__} {value!r}"
            ) from None
        cleaned[name] = number
    return cleaned


def _json_float(value: float):
    # JSON has no NaN/inf; store them as strings so the index stays strict JSON
    return value if math.isfinite(value) else repr(value)


def _from_json_float(value) -> float:
    return float(value) if value is not None else math.nan


class _SliceLog:
    """What both stores share: the unit layout, per-slice metadata, and building a Trace."""

    layer_names: list[str]
    layer_units: list[int]
    n_trace: int
    trace_labels: np.ndarray | None

    def _init_log(self):
        self._steps: list[int] = []
        self._epochs: list[float] = []
        self._scalars: list[dict[str, float]] = []

    # --- layout -----------------------------------------------------------------------------
    @property
    def n_units(self) -> int:
        return int(sum(self.layer_units))

    @property
    def unit_layer(self) -> np.ndarray:
        """Index into ``layer_names`` of each unit, shape (n_units,)."""
        return np.repeat(np.arange(len(self.layer_units)), self.layer_units)

    @property
    def n_slices(self) -> int:
        return len(self._steps)

    def __len__(self) -> int:
        return self.n_slices

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self._steps, dtype=np.int64)

    @property
    def epochs(self) -> np.ndarray:
        return np.asarray(self._epochs, dtype=float)

    @property
    def scalar_names(self) -> list[str]:
        names: dict[str, None] = {}
        for values in self._scalars:
            names.update(dict.fromkeys(values))
        return list(names)

    def scalars(self, indices=None) -> dict[str, np.ndarray]:
        """Per-slice logged values, ``{name: array (n_selected,)}``, NaN where not logged."""
        indices = range(self.n_slices) if indices is None else indices
        return {
            name: np.array([self._scalars[i].get(name, np.nan) for i in indices], dtype=float)
            for name in self.scalar_names
        }

    def check_layout(self, layer_names, layer_units, n_trace) -> None:
        """Raise ValueError unless this layout (names, unit counts, n_trace) matches the store's."""
        theirs = dict(zip(map(str, layer_names), map(int, layer_units)))
        ours = dict(zip(self.layer_names, self.layer_units))
        problems = []
        missing = [n for n in ours if n not in theirs]
        extra = [n for n in theirs if n not in ours]
        if missing:
            problems.append(f"layers missing: {missing}")
        if extra:
            problems.append(f"layers not in the store: {extra}")
        for name in ours:
            if name in theirs and theirs[name] != ours[name]:
                problems.append(f"layer {name!r} has {theirs[name]} units, the store has {ours[name]}")
        if int(n_trace) != self.n_trace:
            problems.append(f"{int(n_trace)} trace inputs, the store has {self.n_trace}")
        if problems:
            raise ValueError(
                f"this recording does not match the trace store at {self._where()}: "
                + "; ".join(problems)
                + ". A store holds one run of one model; record into a new path."
            )

    def _where(self) -> str:
        return "memory"

    # --- appending --------------------------------------------------------------------------
    def _validate_slice(self, data, step, epoch, scalars):
        data = np.asarray(data)
        if data.shape != (self.n_units, self.n_trace):
            raise ValueError(
                f"a slice must have shape (n_units, n_trace) = ({self.n_units}, {self.n_trace}), "
                f"got {data.shape}"
            )
        if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
            raise ValueError(f"slice data must be real numbers, got dtype {data.dtype}")
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise ValueError(f"step must be an integer, got {step!r}") from None
        if self._steps and step <= self._steps[-1]:
            raise ValueError(
                f"step {step} is not after the last recorded step {self._steps[-1]} "
                f"(slice {self.n_slices - 1}); steps must increase. If training resumed from an "
                f"older checkpoint, drop the later slices first with "
                f"store.truncate_after_step({step - 1})"
            )
        epoch = math.nan if epoch is None else float(epoch)
        return data.astype(DTYPE, copy=False), step, epoch, _clean_scalars(scalars)

    def _slice_index(self, slice_index) -> int:
        if self.n_slices == 0:
            raise ValueError("no slice has been recorded yet, so there is nothing to attach scalars to")
        i = self.n_slices - 1 if slice_index is None else int(slice_index)
        if i < 0:
            i += self.n_slices
        if not 0 <= i < self.n_slices:
            raise ValueError(f"slice index {slice_index} out of range for {self.n_slices} slices")
        return i

    # --- reading ----------------------------------------------------------------------------
    def _selection(self, start, stop, step) -> range:
        if step is not None and int(step) <= 0:
            raise ValueError(f"step must be positive, got {step}")
        return range(self.n_slices)[slice(start, stop, step)]

    def read(self, start=None, stop=None, step=None) -> Trace:
        """Read slices ``[start:stop:step]`` (Python slice semantics) as a Trace.

        Only the selected slices are loaded. ``data`` is float32, shape
        (n_selected, n_units, n_trace).
        """
        indices = self._selection(start, stop, step)
        data = np.empty((len(indices), self.n_units, self.n_trace), dtype=DTYPE)
        for row, i in enumerate(indices):
            data[row] = self.read_slice(i)
        epochs = self.epochs[list(indices)]
        steps = self.steps[list(indices)]
        if np.isnan(self.epochs).all():
            epochs = None  # no epoch ever given: Trace falls back to steps
        return Trace(
            data=data,
            unit_layer=self.unit_layer,
            layer_names=list(self.layer_names),
            steps=steps,
            epochs=epochs,
            scalars=self.scalars(indices),
            trace_labels=None if self.trace_labels is None else self.trace_labels.copy(),
        )

    def to_trace(self) -> Trace:
        """All slices as a Trace."""
        return self.read()

    def read_slice(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# in-memory store (Recorder(path=None))


class MemoryStore(_SliceLog):
    """A store that keeps slices in memory: same interface as TraceStore, nothing on disk."""

    def __init__(self, layer_names, layer_units, n_trace, trace_labels=None, attrs=None, run_id=None):
        self.layer_names, self.layer_units, self.n_trace = _check_layout(layer_names, layer_units, n_trace)
        self.trace_labels = _check_labels(trace_labels, self.n_trace)
        self.attrs = dict(attrs or {})
        self.run_id = str(run_id) if run_id is not None else uuid.uuid4().hex
        self._init_log()
        self._data: list[np.ndarray] = []

    def append(self, data, step, epoch=None, scalars=None) -> int:
        data, step, epoch, scalars = self._validate_slice(data, step, epoch, scalars)
        self._data.append(np.array(data, dtype=DTYPE))
        self._steps.append(step)
        self._epochs.append(epoch)
        self._scalars.append(scalars)
        return self.n_slices - 1

    def log_scalars(self, slice_index=None, **scalars) -> None:
        i = self._slice_index(slice_index)
        self._scalars[i].update(_clean_scalars(scalars))

    def read_slice(self, index: int) -> np.ndarray:
        return self._data[index]

    def close(self) -> None:
        pass


def _check_labels(trace_labels, n_trace):
    if trace_labels is None:
        return None
    labels = np.asarray(trace_labels)
    if labels.shape != (n_trace,):
        raise ValueError(f"trace_labels must have shape ({n_trace},), got {labels.shape}")
    return labels


def _labels_to_json(labels):
    if labels is None:
        return None
    return [x.item() if hasattr(x, "item") else x for x in labels]


# ---------------------------------------------------------------------------------------------
# on-disk store


class TraceStore(_SliceLog):
    """A trace on disk that grows one slice at a time and survives the writer being killed.

    Create with :meth:`create`, open with :meth:`open` (``mode="r"`` to read, ``"a"`` to resume
    appending). Read with :meth:`read` (any range or stride, lazily) or :meth:`to_trace`.

    Attributes
    ----------
    path : Path
    run_id : str
        Random id given at creation; resuming can insist on it (``open(..., run_id=...)``).
    layer_names : list of str
    layer_units : list of int
        Units of each layer; units are stored layer after layer in this order.
    n_trace : int
        Number of trace inputs (columns of each slice).
    trace_labels : ndarray (n_trace,) or None
    attrs : dict
        Free-form JSON metadata given at creation (model description, hyper-parameters, ...).
    problem : str or None
        With ``strict=False``: what is wrong with a damaged store (only the slices before the
        damage are exposed). None when the store is sound.
    torn_tail : bool
        True when the writer died while appending (an incomplete last index line was ignored).
    """

    def __init__(self, path, *, _meta, _mode, strict, fsync):
        self.path = Path(path)
        self.mode = _mode
        self.fsync = bool(fsync)
        self.run_id = str(_meta["run_id"])
        self.layer_names, self.layer_units, self.n_trace = _check_layout(
            _meta["layer_names"], _meta["layer_units"], _meta["n_trace"]
        )
        labels = _meta.get("trace_labels")
        self.trace_labels = None if labels is None else np.asarray(labels)
        self.trace_inputs_sha256 = _meta.get("trace_inputs_sha256")
        self.attrs = dict(_meta.get("attrs") or {})
        self.created = _meta.get("created")
        self.problem: str | None = None
        self.torn_tail = False
        self._lock_fd = None
        self._index_fd = None
        self._files: list[str] = []
        self._sizes: list[int] = []
        self._crcs: list[int] = []
        self._init_log()
        if _mode == "a":
            self._acquire_lock()
            self._remove_stale_temp_files()
        try:
            self._scan()
            if self.problem is not None and strict:
                hint = (
                    "open it with strict=False (or run `mphate info PATH`) to read them"
                    if _mode == "r"
                    else "open it with mode='a', strict=False and call truncate(n) to drop the damage"
                )
                raise ValueError(f"{self.problem} ({hint})")
        except BaseException:
            self.close()
            raise

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path,
        layer_names,
        layer_units,
        n_trace,
        *,
        trace_labels=None,
        trace_inputs_sha256=None,
        attrs=None,
        run_id=None,
        fsync=True,
    ) -> "TraceStore":
        """Create an empty store at ``path`` (which must not exist, or be an empty directory).

        Parameters
        ----------
        layer_names : list of str
            Names of the traced layers, in unit order.
        layer_units : list of int
            Number of units of each layer.
        n_trace : int
            Number of trace inputs.
        trace_labels : array-like (n_trace,), optional
            Class of each trace input.
        trace_inputs_sha256 : str, optional
            Fingerprint of the trace inputs, so a resume with other inputs is refused.
        attrs : dict, optional
            JSON-serialisable metadata.
        run_id : str, optional
            Id of this run (default: a random one); resuming can insist on it.
        fsync : bool, default True
            fsync every write. Without it a completed slice still survives the writer being
            killed (the OS keeps the page cache) but not a power cut or a kernel crash.

        Returns
        -------
        TraceStore opened for appending.
        """
        path = Path(path)
        layer_names, layer_units, n_trace = _check_layout(layer_names, layer_units, n_trace)
        labels = _check_labels(trace_labels, n_trace)
        check_creatable(path)
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "run_id": str(run_id) if run_id is not None else uuid.uuid4().hex,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "layer_names": layer_names,
            "layer_units": layer_units,
            "n_trace": n_trace,
            "dtype": np.dtype(DTYPE).name,
            "trace_labels": _labels_to_json(labels),
            "trace_inputs_sha256": trace_inputs_sha256,
            "attrs": dict(attrs or {}),
        }
        try:
            payload = (json.dumps(meta, indent=1, allow_nan=False) + "\n").encode()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"store metadata must be JSON-serialisable: {exc}") from None
        (path / SLICE_DIR).mkdir(parents=True, exist_ok=True)
        (path / INDEX_FILE).touch()
        if fsync:
            _fsync_dir(path)
        # meta.json last: its presence is what makes the directory a store
        _atomic_write(path / META_FILE, payload, fsync)
        if fsync:
            _fsync_dir(path.parent)
        return cls(path, _meta=meta, _mode="a", strict=True, fsync=fsync)

    @classmethod
    def open(cls, path, mode="r", *, run_id=None, strict=True, fsync=True) -> "TraceStore":
        """Open an existing store.

        Parameters
        ----------
        mode : {"r", "a"}
            "r" reads (safe while another process appends); "a" resumes appending and takes an
            exclusive lock, so two writers cannot interleave.
        run_id : str, optional
            With mode "a": refuse to append unless the store was created by this run.
        strict : bool, default True
            Raise on a damaged store. With False, expose the readable slices before the damage
            and describe it in :attr:`problem`.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        path = Path(path)
        meta = _read_meta(path)
        if run_id is not None and str(run_id) != str(meta["run_id"]):
            raise ValueError(
                f"the trace store at {path} belongs to run {meta['run_id']}, not {run_id}; "
                f"refusing to mix two runs in one store"
            )
        return cls(path, _meta=meta, _mode=mode, strict=strict, fsync=fsync)

    # --- locking ----------------------------------------------------------------------------
    def _acquire_lock(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: no advisory locks
            return
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ValueError(
                f"the trace store at {self.path} is already open for appending by another process"
            ) from None
        self._lock_fd = fd  # the OS drops the lock if we are killed

    def _remove_stale_temp_files(self):
        # temp files of a writer killed before its rename; only the lock holder may do this
        for stale in (self.path / SLICE_DIR).glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the append lock and file handles (reading stays possible)."""
        if self._index_fd is not None:
            os.close(self._index_fd)
            self._index_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self.mode == "a":
            self.mode = "r"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def _where(self) -> str:
        return str(self.path)

    # --- scanning the index -----------------------------------------------------------------
    def _scan(self) -> None:
        """Load the index, keeping the slices before the first damage (if any)."""
        raw = (self.path / INDEX_FILE).read_bytes() if (self.path / INDEX_FILE).exists() else None
        self._good_index_bytes = 0
        if raw is None:
            self._fail(f"{INDEX_FILE} is missing")
            return
        lines = raw.split(b"\n")
        # the piece after the last newline is a line the writer never finished
        self.torn_tail = lines[-1].strip() != b""
        self._good_index_bytes = len(raw) - len(lines[-1])
        offset = 0
        for number, line in enumerate(lines[:-1], start=1):
            start = offset
            offset += len(line) + 1
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                self._apply_event(event)
            except (ValueError, KeyError, TypeError) as exc:
                self._good_index_bytes = start
                self._fail(f"line {number} of {INDEX_FILE} is damaged ({exc})")
                return
        for i, (name, size) in enumerate(zip(self._files, self._sizes)):
            file = self.path / name
            if not file.is_file():
                self._fail(f"slice {i} file ({name}) is missing", keep=i)
                return
            actual = file.stat().st_size
            if actual != size:
                self._fail(f"slice {i} file ({name}) is truncated: {actual} of {size} bytes", keep=i)
                return

    def _apply_event(self, event: dict) -> None:
        if "slice" in event:
            i = int(event["slice"])
            if i != self.n_slices:
                raise ValueError(f"expected slice {self.n_slices}, found slice {i}")
            self._steps.append(int(event["step"]))
            self._epochs.append(_from_json_float(event.get("epoch")))
            self._scalars.append({k: _from_json_float(v) for k, v in event.get("scalars", {}).items()})
            self._files.append(str(event["file"]))
            self._sizes.append(int(event["nbytes"]))
            self._crcs.append(int(event["crc32"]))
        elif "scalars_for" in event:
            i = int(event["scalars_for"])
            if not 0 <= i < self.n_slices:
                raise ValueError(f"scalars logged for unknown slice {i}")
            self._scalars[i].update({k: _from_json_float(v) for k, v in event["scalars"].items()})
        else:
            raise ValueError("unknown event")

    def _fail(self, what: str, keep: int | None = None) -> None:
        if keep is not None:
            del self._steps[keep:], self._epochs[keep:], self._scalars[keep:]
            del self._files[keep:], self._sizes[keep:], self._crcs[keep:]
        self.problem = f"corrupt trace store at {self.path}: {what}; {_describe_readable(self.n_slices)}"

    # --- appending --------------------------------------------------------------------------
    def _require_writable(self):
        if self.mode != "a":
            raise ValueError(f"the trace store at {self.path} is open read-only; open it with mode='a'")
        if self.problem is not None:
            raise ValueError(f"{self.problem}; call truncate({self.n_slices}) before appending")

    def _index_handle(self) -> int:
        if self._index_fd is None:
            index = self.path / INDEX_FILE
            if index.stat().st_size != self._good_index_bytes:
                # cut off a torn last line so the next line starts clean
                with open(index, "r+b") as fh:
                    fh.truncate(self._good_index_bytes)
                    if self.fsync:
                        os.fsync(fh.fileno())
                self.torn_tail = False
            self._index_fd = os.open(index, os.O_WRONLY | os.O_APPEND)
        return self._index_fd

    def _append_event(self, event: dict) -> None:
        line = (json.dumps(event, allow_nan=False) + "\n").encode()
        fd = self._index_handle()
        written = os.write(fd, line)
        while written < len(line):  # os.write may be partial on some filesystems
            written += os.write(fd, line[written:])
        if self.fsync:
            os.fsync(fd)
        self._good_index_bytes += len(line)

    def append(self, data, step, epoch=None, scalars=None) -> int:
        """Durably add one slice; returns its index.

        Parameters
        ----------
        data : array-like, shape (n_units, n_trace)
            Units in store order (layer after layer).
        step : int
            Optimiser step or batch count; must increase from slice to slice.
        epoch : float, optional
        scalars : dict of str -> float, optional
            Values to log with this slice (loss, accuracy, task, ...).
        """
        self._require_writable()
        data, step, epoch, scalars = self._validate_slice(data, step, epoch, scalars)
        i = self.n_slices
        name = f"{SLICE_DIR}/{i:08d}.npy"
        payload = _npy_bytes(data)
        crc = zlib.crc32(payload)
        self._index_handle()  # truncate a torn tail before anything new is written
        _atomic_write(self.path / name, payload, self.fsync)
        self._append_event(
            {
                "slice": i,
                "step": step,
                "epoch": None if math.isnan(epoch) else epoch,
                "scalars": {k: _json_float(v) for k, v in scalars.items()},
                "file": name,
                "nbytes": len(payload),
                "crc32": crc,
            }
        )
        self._steps.append(step)
        self._epochs.append(epoch)
        self._scalars.append(scalars)
        self._files.append(name)
        self._sizes.append(len(payload))
        self._crcs.append(crc)
        return i

    def log_scalars(self, slice_index=None, **scalars) -> None:
        """Attach scalars to an already recorded slice (default: the last one)."""
        self._require_writable()
        i = self._slice_index(slice_index)
        values = _clean_scalars(scalars)
        if not values:
            return
        self._append_event({"scalars_for": i, "scalars": {k: _json_float(v) for k, v in values.items()}})
        self._scalars[i].update(values)

    def truncate(self, n_slices: int) -> None:
        """Keep only the first ``n_slices`` slices (to repair damage or rewind to a checkpoint).

        The index is rewritten atomically, so a crash during truncation leaves either the old
        or the new store.
        """
        if self.mode != "a":
            raise ValueError(f"the trace store at {self.path} is open read-only; open it with mode='a'")
        n_slices = int(n_slices)
        if not 0 <= n_slices <= self.n_slices:
            raise ValueError(f"can keep 0 to {self.n_slices} slices, not {n_slices}")
        lines = []
        for i in range(n_slices):
            lines.append(
                {
                    "slice": i,
                    "step": self._steps[i],
                    "epoch": None if math.isnan(self._epochs[i]) else self._epochs[i],
                    "scalars": {k: _json_float(v) for k, v in self._scalars[i].items()},
                    "file": self._files[i],
                    "nbytes": self._sizes[i],
                    "crc32": self._crcs[i],
                }
            )
        payload = "".join(json.dumps(e, allow_nan=False) + "\n" for e in lines).encode()
        if self._index_fd is not None:
            os.close(self._index_fd)
            self._index_fd = None
        _atomic_write(self.path / INDEX_FILE, payload, self.fsync)
        dropped = self._files[n_slices:]
        del self._steps[n_slices:], self._epochs[n_slices:], self._scalars[n_slices:]
        del self._files[n_slices:], self._sizes[n_slices:], self._crcs[n_slices:]
        self._good_index_bytes = len(payload)
        self.problem = None
        self.torn_tail = False
        for name in dropped:  # after the index no longer points at them
            (self.path / name).unlink(missing_ok=True)

    def truncate_after_step(self, step: int) -> int:
        """Drop every slice recorded after ``step``; returns how many slices remain."""
        keep = int(np.searchsorted(self.steps, int(step), side="right"))
        self.truncate(keep)
        return keep

    # --- reading ----------------------------------------------------------------------------
    def read_slice(self, index: int) -> np.ndarray:
        """One slice, float32 (n_units, n_trace), checked against its recorded CRC-32."""
        index = range(self.n_slices)[index]
        name = self._files[index]
        try:
            payload = (self.path / name).read_bytes()
        except FileNotFoundError:
            raise ValueError(
                f"corrupt trace store at {self.path}: slice {index} file ({name}) is missing; "
                f"{_describe_readable(index)}"
            ) from None
        if len(payload) != self._sizes[index] or zlib.crc32(payload) != self._crcs[index]:
            raise ValueError(
                f"corrupt trace store at {self.path}: slice {index} file ({name}) does not match "
                f"its checksum (damaged on disk); {_describe_readable(index)}"
            )
        array = np.lib.format.read_array(io.BytesIO(payload), allow_pickle=False)
        return array

    def __repr__(self) -> str:
        return (
            f"TraceStore({str(self.path)!r}, n_slices={self.n_slices}, n_units={self.n_units}, "
            f"n_trace={self.n_trace}, mode={self.mode!r})"
        )


def check_creatable(path) -> None:
    """Raise ValueError unless a new store can be created at ``path``.

    ``path`` may not exist, be an empty directory, or hold only what a recorder killed while
    creating a store leaves behind (an empty index and slice folder, no meta.json).
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(f"cannot create a trace store at {path}: a file is in the way")
    if is_trace_store(path):
        raise ValueError(
            f"cannot create a trace store at {path}: it already holds one; "
            f"resume appending to it, or choose a new path"
        )
    for entry in path.iterdir():
        leftover = (
            (entry.name == INDEX_FILE and entry.is_file() and entry.stat().st_size == 0)
            or (entry.name == SLICE_DIR and entry.is_dir() and not any(entry.iterdir()))
            or entry.name == LOCK_FILE
            or entry.name.startswith(f".{META_FILE}.tmp-")
        )
        if not leftover:
            raise ValueError(
                f"cannot create a trace store at {path}: the directory is not empty "
                f"(it holds {entry.name!r}); choose a new path"
            )


def _read_meta(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"no trace store at {path}")
    if not path.is_dir():
        raise ValueError(f"{path} is a file, not a trace store directory")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise ValueError(
            f"{path} is not an mphate trace store (no {META_FILE}); if a recorder was killed "
            f"while creating it, no slice was ever written and it can be deleted"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"corrupt trace store at {path}: {META_FILE} is unreadable ({exc}); "
            f"no slice is readable without it"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not an mphate trace store ({META_FILE} has another format)")
    if int(meta.get("version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"the trace store at {path} has format version {meta['version']}; this mphate reads "
            f"up to version {FORMAT_VERSION}: upgrade mphate"
        )
    missing = [k for k in ("run_id", "layer_names", "layer_units", "n_trace") if k not in meta]
    if missing:
        raise ValueError(f"corrupt trace store at {path}: {META_FILE} lacks {missing}")
    return meta
