"""Worker threads for the chunked stages.

Most stages are loops over independent chunks (slices, units, rows) of NumPy/SciPy work that
releases the GIL, so plain threads use every core without copying data into processes. Inside
worker threads BLAS is held to one thread: BLAS threads that compete with our own workers for
the same cores busy-wait and run several times slower than one thread each.

The number of workers comes from :func:`worker_threads`, which the estimator sets from
``n_jobs``; library functions called on their own run single-threaded.
"""
from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

_workers = contextvars.ContextVar("mphate_workers", default=1)
_executors: dict[int, ThreadPoolExecutor] = {}


@contextmanager
def worker_threads(n: int):
    """Run the chunked stages inside this block on ``n`` threads."""
    token = _workers.set(max(1, int(n)))
    try:
        yield
    finally:
        _workers.reset(token)


def n_workers() -> int:
    """Worker threads the chunked stages may use here."""
    return _workers.get()


def _single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def parallel_map(func, items) -> list:
    """``[func(item) for item in items]``, on the worker threads when there are several.

    ``func`` must be safe to run concurrently (write only to disjoint memory).
    """
    items = list(items)
    workers = min(n_workers(), len(items))
    if workers <= 1:
        return [func(item) for item in items]
    executor = _executors.get(workers)
    if executor is None:
        executor = _executors[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mphate")
    with _single_blas_thread():
        return list(executor.map(func, items))
