"""Runtime resources, in one place: threads, worker pools, memory hand-back, warning levels.

Thread policy
-------------
``n_jobs`` is the one knob: :func:`resolve_threads` turns it into a thread count, and
:func:`use_threads` applies that count for a block, to BLAS (threadpoolctl) and to the worker
pool of the chunked stages alike. Stages receive the count as an argument
(:func:`parallel_map` takes ``n_threads``), so a stage called on its own runs single-threaded
unless told otherwise. Inside worker threads BLAS is held to one thread: BLAS threads that
compete with our own workers for the same cores busy-wait and run several times slower than
one thread each.

Most stages are loops over independent chunks (slices, units, rows) of NumPy/SciPy work that
releases the GIL, so plain threads use every core without copying data into processes.
"""
from __future__ import annotations

import contextvars
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

#: Below this many points one thread beats several (threads cost more than they save).
SMALL_PROBLEM = 20000

_workers = contextvars.ContextVar("mphate_workers", default=1)
_executors: dict[int, ThreadPoolExecutor] = {}


# ------------------------------------------------------------------------------ thread counts
def resolve_threads(n_jobs, n_points: int) -> int:
    """Threads to use for a problem of ``n_points`` points: BLAS threads and workers alike.

    ``n_jobs``: None (one thread under :data:`SMALL_PROBLEM` points, otherwise the cores
    idle right now), -1 all cores, -2 all but one, ..., or a positive count.
    """
    n_cpus = os.cpu_count() or 1
    if n_jobs is None:
        if n_points < SMALL_PROBLEM:
            return 1
        idle = idle_cores()
        # BLAS threads busy-wait for each other: on cores that other processes keep busy
        # (a training run beside us) two threads ran the eigendecomposition 8x slower than
        # one, so use only the cores that are idle
        return n_cpus if idle is None else idle
    if n_jobs < 0:  # -1 all cores, -2 all but one, ...
        return max(1, n_cpus + 1 + n_jobs)
    return max(1, int(n_jobs))


def idle_cores(window: float = 0.05):
    """Cores not kept busy by other processes right now, or None if unknown.

    On Linux, from the idle share of all CPUs over a short window of /proc/stat; elsewhere
    from the 1-minute load average. (The load average alone lags: right after another heavy
    process ends it still reads busy for a minute or more.)
    """
    n_cpus = os.cpu_count() or 1
    try:
        first = _cpu_ticks()
        time.sleep(window)
        second = _cpu_ticks()
        total, idle = second[0] - first[0], second[1] - first[1]
        if total > 0:
            return int(min(n_cpus, max(1, round(n_cpus * idle / total))))
    except (OSError, ValueError, IndexError):
        pass
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return int(min(n_cpus, max(1, round(n_cpus - load))))


def _cpu_ticks() -> tuple[int, int]:
    """(total, idle) CPU ticks of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4]  # idle + iowait; guest time is in user


@contextmanager
def use_threads(n_threads: int):
    """Run BLAS and the chunked stages' default worker count on ``n_threads`` in this block."""
    from threadpoolctl import threadpool_limits

    n_threads = max(1, int(n_threads))
    token = _workers.set(n_threads)
    try:
        with threadpool_limits(limits=n_threads):
            yield n_threads
    finally:
        _workers.reset(token)


@contextmanager
def worker_threads(n: int):
    """Run the chunked stages inside this block on ``n`` threads (BLAS untouched)."""
    token = _workers.set(max(1, int(n)))
    try:
        yield
    finally:
        _workers.reset(token)


def n_workers() -> int:
    """Worker threads the chunked stages may use here (set by :func:`use_threads`)."""
    return _workers.get()


@contextmanager
def single_thread(user_api: str = "openmp"):
    """Hold one library family (``"openmp"`` or ``"blas"``) to one thread in this block.

    For scikit-learn's t-SNE and NN-descent style code whose OpenMP barriers make a busy
    2-core machine many times slower than one thread.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api=user_api):
        yield


def _single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def parallel_map(func, items, n_threads: int | None = None) -> list:
    """``[func(item) for item in items]``, on ``n_threads`` worker threads when there are several.

    ``n_threads`` defaults to the count :func:`use_threads` set for the enclosing block (one
    outside it). ``func`` must be safe to run concurrently (write only to disjoint memory).
    """
    items = list(items)
    workers = min(n_workers() if n_threads is None else max(1, int(n_threads)), len(items))
    if workers <= 1:
        return [func(item) for item in items]
    executor = _executors.get(workers)
    if executor is None:
        executor = _executors[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mphate")
    with _single_blas_thread():
        return list(executor.map(func, items))


# ------------------------------------------------------------------------------ memory
_malloc_trim = None


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS between stages (glibc only).

    The stages allocate and free many arrays of tens of MB; glibc keeps such freed blocks in
    its heap, so without a trim the process's footprint is the sum of the stages' scratch
    rather than the largest of them.
    """
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = False
        try:
            import ctypes
            import ctypes.util

            libc_name = ctypes.util.find_library("c")
            if libc_name and sys.platform.startswith("linux"):
                _malloc_trim = ctypes.CDLL(libc_name).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def peak_memory_mb() -> float | None:
    """This process's peak resident memory so far, in MB (None where unknown)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------ warnings
def caller_stacklevel() -> int:
    """``stacklevel`` that points a warning at the first frame outside mphate and scikit-learn
    (the user's ``fit`` or ``fit_transform`` call, however it was reached)."""
    import sklearn

    inside = (os.path.dirname(os.path.abspath(__file__)) + os.sep,  # the mphate package
              os.path.dirname(os.path.abspath(sklearn.__file__)) + os.sep)
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame, level = frame.f_back, level + 1
    return level
