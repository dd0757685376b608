"""Run independent tasks in-process or on Dask, with a progress bar, never losing a finished one.

:func:`run_tasks` is the one path: without ``workers`` or ``scheduler`` the tasks run one after
the other in this process; with ``workers=N`` on a ``dask.distributed.LocalCluster`` of N
single-threaded worker processes; with ``scheduler=ADDRESS`` on an existing Dask cluster. Each
task is one Dask task. Results are handed to ``on_done`` as they finish (so they can be saved
at once), and a task that fails, or whose worker dies, becomes a :class:`TaskFailure` in its
place while the others go on.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from mphate.optional import require

__all__ = ["TaskFailure", "run_tasks", "check_executor", "threads_per_task"]


@dataclass
class TaskFailure:
    """What is left of a task that raised, was cancelled, or lost its worker: one line."""

    message: str


def check_executor(workers, scheduler) -> None:
    """Raise ValueError for ``workers`` and ``scheduler`` together, or a bad worker count."""
    if workers is not None and scheduler is not None:
        raise ValueError("give workers (a local Dask cluster) or scheduler (an existing one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is not None and not str(scheduler).strip():
        raise ValueError("scheduler must be a Dask scheduler address such as tcp://10.0.0.5:8786")


def threads_per_task(workers) -> int | None:
    """Threads each embedding should use: the cores shared out among ``workers`` local
    processes; None (the estimator decides) for in-process runs and remote clusters."""
    if workers is None:
        return None
    return max(1, (os.cpu_count() or 1) // int(workers))


class _Progress:
    """A tqdm bar on stderr when tqdm is installed, else one line per finished task; silent when quiet."""

    def __init__(self, total: int, done: int, desc: str, quiet: bool):
        self.quiet, self.total, self.done, self.desc = quiet, total, done, desc
        self.bar = None
        if quiet or done >= total:  # nothing to run (all cached): no bar
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True)

    def update(self, label: str) -> None:
        self.done += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(label[:40], refresh=False)
            self.bar.update(1)
        else:
            print(f"[mphate] {self.desc}: {self.done}/{self.total} {label}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def _progress(total: int, done: int, desc: str, quiet: bool):
    progress = _Progress(total, done, desc, quiet)
    try:
        yield progress
    finally:
        progress.close()


#: seconds to wait for a scheduler to answer before saying it cannot be reached
CONNECT_TIMEOUT = 5


def _unreachable(address: str, reason: str) -> ValueError:
    return ValueError(f"cannot reach the Dask scheduler at {address} ({reason}); check that it is running "
                      "and the address, or run on a local cluster instead with --workers N (workers=N)")


def _connect(distributed, address: str):
    """A Client of the scheduler at ``address``, or at once a one-line ValueError naming it.

    A ``tcp://`` address is tried with a plain socket first, so a closed port or an unknown host
    fails in milliseconds rather than after Dask's retries; then Dask gets
    :data:`CONNECT_TIMEOUT` seconds for its handshake.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tcp":
        try:
            host, port = parts.hostname, parts.port or 8786
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
                pass
        except (OSError, ValueError) as exc:  # refused, unknown host, timed out, a bad port number
            raise _unreachable(address, getattr(exc, "strerror", None) or str(exc) or type(exc).__name__) from None
    try:
        return distributed.Client(address, timeout=f"{CONNECT_TIMEOUT}s")
    except (OSError, TimeoutError) as exc:
        raise _unreachable(address, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) \
            from None


@contextmanager
def dask_client(workers=None, scheduler=None, quiet: bool = False):
    """A ``distributed.Client``: on a new LocalCluster of ``workers`` processes (one thread each,
    closed afterwards) or connected to the scheduler at ``scheduler``."""
    distributed = require("distributed", "running on Dask (workers= / scheduler=, --workers / --scheduler)")
    cluster = None
    try:
        if scheduler is not None:
            client = _connect(distributed, str(scheduler))
        else:
            # one thread per worker: each task is a whole embedding and sets its own threads
            cluster = distributed.LocalCluster(
                n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR if quiet else logging.WARNING)
            client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _failure(exc: BaseException) -> TaskFailure:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return TaskFailure(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _run_local(fn, jobs, labels, on_done, progress) -> list:
    results = [None] * len(jobs)
    for i, args in enumerate(jobs):
        try:
            results[i] = fn(*args)
        except Exception as exc:  # one bad task must not end the others
            results[i] = _failure(exc)
        if on_done is not None:
            on_done(i, results[i])
        progress.update(labels[i])
    return results


def _run_dask(client, fn, jobs, labels, on_done, progress) -> list:
    distributed = require("distributed", "running on Dask")
    tag = uuid.uuid4().hex[:8]
    futures = [client.submit(fn, *args, key=f"mphate-{i}-{labels[i][:40]}-{tag}", pure=False)
               for i, args in enumerate(jobs)]
    index = {f.key: i for i, f in enumerate(futures)}
    results = [None] * len(jobs)
    try:
        for future in distributed.as_completed(futures):
            i = index[future.key]
            try:
                results[i] = future.result()
            except Exception as exc:  # raised on the worker, cancelled, or the worker died
                results[i] = _failure(exc)
            future.release()  # the result is ours now; let the cluster forget it
            if on_done is not None:
                on_done(i, results[i])
            progress.update(labels[i])
    finally:
        client.cancel([f for f in futures if not f.done()])
    return results


def run_tasks(fn, jobs, *, labels=None, workers=None, scheduler=None, on_done=None,
              quiet: bool = False, desc: str = "tasks", already_done: int = 0) -> list:
    """``[fn(*args) for args in jobs]``, in-process or on Dask; failures are TaskFailure.

    Parameters
    ----------
    fn : callable
        Importable by name on the workers (a module-level function), for Dask.
    jobs : list of tuple
        The arguments of each call: small things (paths, parameters), since they travel to
        the workers.
    labels : list of str, optional
        A name per job for the progress bar and the Dask task keys.
    workers : int, optional
        Run on a new LocalCluster of this many single-threaded processes.
    scheduler : str, optional
        Run on the Dask cluster whose scheduler listens at this address.
    on_done : callable(index, result), optional
        Called in this process as each job finishes (in completion order).
    quiet : bool
        No progress bar or log lines.
    desc : str
        Progress bar title.
    already_done : int
        Jobs done before (cached): the bar starts there, out of ``already_done + len(jobs)``.

    Returns
    -------
    list, in job order: each call's return value or a :class:`TaskFailure`.
    """
    check_executor(workers, scheduler)
    jobs = list(jobs)
    labels = [str(label) for label in (labels or range(len(jobs)))]
    if not jobs:
        return []
    if workers is None and scheduler is None:
        with _progress(already_done + len(jobs), already_done, desc, quiet) as progress:
            return _run_local(fn, jobs, labels, on_done, progress)
    # the cluster first: a scheduler that cannot be reached is one line, with no bar drawn before it
    with dask_client(workers, scheduler, quiet) as client, \
            _progress(already_done + len(jobs), already_done, desc, quiet) as progress:
        return _run_dask(client, fn, jobs, labels, on_done, progress)
