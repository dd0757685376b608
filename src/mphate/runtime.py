"""Runtime resources, in one place: threads, worker pools, memory hand-back, warning levels.

Thread policy
-------------
``n_jobs`` is the one knob: :func:`resolve_threads` turns it into a thread count once per fit;
the pipeline passes that count to every stage as an argument (:func:`parallel_map` takes
``n_threads``; a stage called on its own runs single-threaded unless told otherwise), and
:func:`blas_threads` applies it to BLAS, the one library whose thread count is process-wide.
Random numbers follow the same rule: :func:`stage_generators` derives one
``numpy.random.Generator`` per stage from ``random_state``, and stages receive theirs. Inside worker threads BLAS is held to one thread: BLAS threads that
compete with our own workers for the same cores busy-wait and run several times slower than
one thread each.

Most stages are loops over independent chunks (slices, units, rows) of NumPy/SciPy work that
releases the GIL, so plain threads use every core without copying data into processes.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np

#: Below this many points one thread beats several (threads cost more than they save)...
SMALL_PROBLEM = 20000
#: ...unless the dense stages work on matrices at least this wide: there two threads ran the
#: float32 eigendecomposition 1.4x (1,000) to 1.9x (2,000) faster than one, and the CNN run of
#: the benchmark panel (14,400 points, 4,000 landmarks) fitted in 17 s instead of 26 s
SMALL_DENSE = 1000

_executors: dict[int, ThreadPoolExecutor] = {}


# ------------------------------------------------------------------------------ thread counts
def resolve_threads(n_jobs, n_points: int, dense_size: int = 0) -> int:
    """Threads to use for a problem of ``n_points`` points: BLAS threads and workers alike.

    ``n_jobs``: None (one thread under :data:`SMALL_PROBLEM` points when the dense stages'
    matrices are under ``SMALL_DENSE`` wide, otherwise the cores idle right now), -1 all
    cores, -2 all but one, ..., or a positive count. ``dense_size``: the side of the largest
    dense matrix of the fit (its landmark count).
    """
    n_cpus = os.cpu_count() or 1
    if n_jobs is None:
        if n_points < SMALL_PROBLEM and dense_size < SMALL_DENSE:
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
def blas_threads(n_threads: int):
    """Hold BLAS/LAPACK (and OpenMP) to ``n_threads`` in this block.

    The one place where a thread count has to be global: BLAS reads its own, process-wide
    setting. Our own worker threads are passed explicitly (:func:`parallel_map`).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, int(n_threads))):
        yield


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


_blas_controller = None


def _single_blas_thread():
    # one controller for the process: building one scans every loaded library (~3 ms), and a
    # fit enters this block a few hundred times (about 1 s of a 14 s fit, profiled); BLAS is
    # loaded with NumPy, before the first call, so the scan sees it
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            return nullcontext()
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def parallel_map(func, items, n_threads: int = 1) -> list:
    """``[func(item) for item in items]``, on ``n_threads`` worker threads when there are several.

    ``func`` must be safe to run concurrently (write only to disjoint memory). Inside the
    workers BLAS runs on one thread each.
    """
    items = list(items)
    workers = min(max(1, int(n_threads)), len(items))
    if workers <= 1:
        return [func(item) for item in items]
    executor = _executors.get(workers)
    if executor is None:
        executor = _executors[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mphate")
    with _single_blas_thread():
        return list(executor.map(func, items))


# ------------------------------------------------------------------------------ random numbers
def check_random_state(random_state) -> None:
    """Raise ValueError unless ``random_state`` is None, an int >= 0, a Generator or a RandomState."""
    if random_state is None or isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) and random_state >= 0:
        return
    raise ValueError(
        "random_state must be None, a non-negative integer, a numpy.random.Generator or a "
        f"RandomState; got {random_state!r}"
    )


def stage_generators(random_state, names) -> dict[str, np.random.Generator]:
    """One independent ``numpy.random.Generator`` per named stage, all from ``random_state``.

    Each stage's stream depends only on ``random_state`` and the stage's position, not on
    which other stages ran (a cached stage draws nothing), so a refit that reuses the kernel
    and landmarks gives the same picture as a fresh fit. A Generator passed in is advanced (its
    children are spawned); a legacy RandomState gives one seed.
    """
    names = list(names)
    check_random_state(random_state)
    if isinstance(random_state, np.random.Generator):
        children = random_state.spawn(len(names))
    else:
        if isinstance(random_state, np.random.RandomState):
            random_state = int(random_state.randint(2**31 - 1))
        children = [np.random.default_rng(seq) for seq in np.random.SeedSequence(random_state).spawn(len(names))]
    return dict(zip(names, children))


def seed_key(random_state):
    """What identifies ``random_state`` for caching: the seed itself, or the object's identity."""
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return random_state
    return ("object", id(random_state))


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
    """This process's peak resident memory so far, in MB (None where unknown).

    VmHWM of /proc/self/status where there is one: Linux carries a process's pre-exec
    high-water mark over the exec into ``ru_maxrss``, so a process started by a large parent
    (a training script, a benchmark) would read at least the parent's size there.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
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
