"""Follow a trace store while another process writes it.

The store is made for a reader beside a writer (docs/capture.md): a slice exists once its
index line is complete, and the slice file was durable before that line was written, so a
reader that re-reads the index sees whole slices only; a torn last line (the writer is in the
middle of appending it, or died there) is ignored. :class:`StoreFollower` re-opens the store
read-only at every poll and hands over what is new.

Whether the writer is still there is read from the store's own signal, never from clocks:
the writer holds an exclusive ``flock`` on ``.lock`` for as long as it appends, and the OS
drops it the moment the writer exits or is killed. Comparing the store's timestamps with this
machine's clock would misread a writer on another machine whose clock differs.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mphate.traces.store import LOCK_FILE, TraceStore, is_trace_store

__all__ = ["StoreFollower", "StoreUpdate", "writer_alive"]


def _locked_inodes() -> set[int] | None:
    """Inodes of the files some process holds a ``flock`` on (Linux /proc/locks), or None."""
    try:
        with open("/proc/locks") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    inodes = set()
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 20535 fe:00:2146352 0 EOF" (blocked waiters add "->")
        if "FLOCK" in fields and "->" not in fields:
            where = fields[fields.index("FLOCK") + 3]
            try:
                inodes.add(int(where.rsplit(":", 1)[1]))
            except (IndexError, ValueError):
                continue
    return inodes


def _probe_lock(lock_path: Path) -> bool:
    """True when another process holds the store's append lock, by trying a shared lock."""
    import fcntl

    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def writer_alive(path) -> bool | None:
    """Is a process appending to the store at ``path`` right now? None when that cannot be told.

    Linux lists every ``flock`` in /proc/locks, which answers without touching the lock. Where
    it does not show the lock (other systems; a lock taken on another NFS client), a
    non-blocking shared lock is tried and released at once: it fails while the writer holds
    its exclusive lock. (A writer starting in those microseconds would find the store busy:
    :class:`mphate.capture.Recorder` retries for that.)
    """
    lock_path = Path(path) / LOCK_FILE
    try:
        inode = lock_path.stat().st_ino
    except OSError:
        return False  # no lock file: nothing has ever appended (the store makes it on create)
    locked = _locked_inodes()
    if locked is not None and inode in locked:
        return True
    try:
        return _probe_lock(lock_path)
    except (ImportError, OSError):
        return None if locked is None else False


@dataclass
class StoreUpdate:
    """What one poll found.

    Attributes
    ----------
    exists : bool
        The store exists (its meta.json has been written).
    reset : bool
        The slices handed over before are no longer valid (a new run was created at the path,
        or the store was truncated, e.g. by a resume from an older checkpoint): start over
        with ``new_data``, which then holds every slice from the first.
    new_data : ndarray, shape (n_new, n_units, n_trace), float32
    store : TraceStore or None
        The store as read at this poll (metadata of every slice: steps, epochs, scalars).
    writer : {"alive", "gone", "unknown", "none"}
        "none" while the store does not exist.
    problem : str or None
        Damage the store reports (only the slices before it are handed over).
    torn_tail : bool
        The last index line is incomplete: a slice being written, or a writer that died
        writing it.
    error : str or None
        Why the store could not be read at this poll (it is retried at the next).
    """

    exists: bool = False
    reset: bool = False
    new_data: np.ndarray | None = None
    store: TraceStore | None = None
    writer: str = "none"
    problem: str | None = None
    torn_tail: bool = False
    error: str | None = None
    n_slices: int = 0


class StoreFollower:
    """Hand over the slices a growing trace store gains, one poll at a time.

    Parameters
    ----------
    path : str or Path
        The store directory; it need not exist yet.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.run_id: str | None = None
        self.n_seen = 0
        self._steps_seen = np.empty(0, dtype=np.int64)

    def poll(self) -> StoreUpdate:
        """Re-read the store; returns what is new since the last poll."""
        if not is_trace_store(self.path):
            return StoreUpdate()
        try:
            store = TraceStore.open(self.path, mode="r", strict=False)
        except (OSError, ValueError) as exc:  # e.g. meta.json being replaced right now
            return StoreUpdate(exists=True, error=str(exc))
        store.close()
        update = StoreUpdate(exists=True, store=store, problem=store.problem, torn_tail=store.torn_tail,
                             n_slices=store.n_slices)
        alive = writer_alive(self.path)
        update.writer = "unknown" if alive is None else "alive" if alive else "gone"
        steps = store.steps
        # rewound (a resume from an older checkpoint truncates) or another run at this path
        rewound = len(steps) < self.n_seen or not np.array_equal(steps[: self.n_seen], self._steps_seen)
        if store.run_id != self.run_id or rewound:
            update.reset = self.run_id is not None
            self.run_id, self.n_seen = store.run_id, 0
        try:
            update.new_data = store.read(self.n_seen).data
        except ValueError as exc:  # a slice file damaged since the index was read
            update.error = str(exc)
            update.new_data = np.empty((0, store.n_units, store.n_trace), dtype=np.float32)
        self.n_seen += len(update.new_data)
        self._steps_seen = steps[: self.n_seen]
        return update
