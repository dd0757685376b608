"""The pipeline's caching rule, its explicit resources, and the kernel protocol."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from mphate import runtime
from mphate.embed import pipeline, t_search
from mphate.embed.estimator import MPHATE
from mphate.embed.flat import SparseKernel, alpha_decay_kernel, knn
from mphate.embed.kernel import Kernel, multislice_kernel
from mphate.traces.synthetic import make_trace


@pytest.fixture(scope="module")
def trace():
    return make_trace(n_slices=30, n_units=24, n_trace=12, random_state=0)


def _fitted(trace, **params):
    est = MPHATE(**{**dict(interslice_knn=5, n_landmark=300, random_state=0), **params})
    return est.fit(trace.data)


# which log steps each stage writes (the landmark stage's three steps on this trace)
STEPS = {
    "kernel": {"kernel"},
    "landmarks": {"spectral coordinates", "landmark clustering", "landmark operator"},
    "spectrum": {"eigendecomposition"},
    "diffusion time": {"diffusion time"},
    "embedding": {"potential", "classical MDS", "metric MDS", "map landmarks to points"},
}
ORDER = list(STEPS)
# under t="auto" the search draws the chosen t's layout, and the embedding stage only maps it
DRAWN_BY_THE_SEARCH = {"potential", "classical MDS", "metric MDS"}


@pytest.mark.parametrize("param,value,first_rerun", [
    ("decay", 7.0, "kernel"),
    ("interslice_knn", 6, "kernel"),
    ("normalize", False, "kernel"),
    ("n_landmark", 250, "landmarks"),
    ("n_svd", 50, "landmarks"),
    ("random_state", 1, "landmarks"),
    ("t", 12, "diffusion time"),  # the search drew t = 12's layout: reused, only mapped
    ("t", 20, "diffusion time"),  # not a candidate: one new layout, continued from t = 25's
    ("t_max", 50, "diffusion time"),
    # t="auto" scores pictures drawn with the embedding's parameters
    ("gamma", 0.5, "diffusion time"),
    ("n_components", 3, "diffusion time"),
    ("mds", "classic", "diffusion time"),
    ("n_jobs", 2, None),
    ("verbose", 0, None),
])
def test_a_refit_reruns_the_stage_a_parameter_feeds_and_everything_after(trace, param, value, first_rerun):
    est = _fitted(trace)
    _check_refit(est, trace, param, value, first_rerun)


@pytest.mark.parametrize("param,value", [("gamma", 0.5), ("n_components", 3), ("mds", "classic")])
def test_with_a_fixed_t_the_embedding_parameters_rerun_only_the_embedding(trace, param, value):
    _check_refit(_fitted(trace, t=9), trace, param, value, "embedding")


def _check_refit(est, trace, param, value, first_rerun):
    before = est.embedding_.copy()
    est.set_params(**{param: value}).fit(trace.data)
    ran = set(est.timings_)
    expected = set().union(*(STEPS[s] for s in ORDER[ORDER.index(first_rerun):])) if first_rerun else set()
    if param == "mds":
        expected -= {"metric MDS"}
    drawn_already = param == "t" and value in t_search.CANDIDATE_T  # by the auto fit before
    if (est.t == "auto" or drawn_already) and first_rerun is not None:
        expected -= DRAWN_BY_THE_SEARCH
    assert ran == expected
    if first_rerun is None:
        np.testing.assert_array_equal(est.embedding_, before)  # nothing recomputed, same answer


def test_a_new_trace_reruns_everything_and_the_refit_equals_a_fresh_fit(trace):
    est = _fitted(trace)
    other = make_trace(n_slices=30, n_units=24, n_trace=12, random_state=1)
    est.fit(other.data)
    assert set(est.timings_) == set().union(*STEPS.values()) - DRAWN_BY_THE_SEARCH
    np.testing.assert_array_equal(est.embedding_, _fitted(other).embedding_)


def test_a_refit_that_reuses_the_landmarks_gives_a_fresh_fits_picture(trace):
    # each stage draws from its own generator, so reusing the cached stages does not shift
    # the random numbers of the later ones
    est = _fitted(trace, t=10)
    est.set_params(t=20).fit(trace.data)
    np.testing.assert_array_equal(est.embedding_, _fitted(trace, t=20).embedding_)


def test_a_failed_stage_leaves_no_stale_cache(trace, monkeypatch):
    est = _fitted(trace)

    def broken(self, state, res):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(pipeline.SpectrumStage, "run", broken)
    with pytest.raises(RuntimeError):
        est.set_params(n_landmark=250).fit(trace.data)
    monkeypatch.undo()
    est.fit(trace.data)
    assert "eigendecomposition" in est.timings_ and "spectral coordinates" not in est.timings_
    np.testing.assert_array_equal(est.embedding_, _fitted(trace, n_landmark=250).embedding_)


def test_stage_generators_are_reproducible_independent_and_checked():
    a = runtime.stage_generators(3, pipeline.STAGE_NAMES)
    b = runtime.stage_generators(3, pipeline.STAGE_NAMES)
    draws = {name: a[name].random(4) for name in a}
    for name in b:
        np.testing.assert_array_equal(b[name].random(4), draws[name])
    assert len({tuple(v) for v in draws.values()}) == len(draws)  # one stream per stage
    assert not np.array_equal(runtime.stage_generators(4, ["x"])["x"].random(4), draws["kernel"])
    legacy = runtime.stage_generators(np.random.RandomState(0), ["x"])["x"]
    assert isinstance(legacy, np.random.Generator)
    for bad in (-1, 1.5, "seed", True):
        with pytest.raises(ValueError, match="random_state"):
            runtime.stage_generators(bad, ["x"])
    with pytest.raises(ValueError, match="random_state"):
        MPHATE(random_state=-3).fit(np.zeros((3, 4, 5)))


def test_a_generator_as_random_state_is_accepted_and_reproducible(trace):
    one = MPHATE(interslice_knn=5, n_landmark=300, random_state=np.random.default_rng(7)).fit_transform(trace.data)
    two = MPHATE(interslice_knn=5, n_landmark=300, random_state=np.random.default_rng(7)).fit_transform(trace.data)
    np.testing.assert_array_equal(one, two)


def test_threads_change_the_work_split_not_the_picture(trace):
    one = _fitted(trace, n_jobs=1).embedding_
    two = _fitted(trace, n_jobs=2).embedding_
    # BLAS rounds the dense products differently per thread count (~1e-7). SMACOF stops within
    # its tolerance of a minimum (layouts agree to ~1e-4 of their extent), and t="auto"'s
    # layouts continue one from another (largest t first), each start carrying the last
    # one's difference: ~2e-3 of the extent by t = 35 on this trace. A different picture
    # (other landmarks, another local minimum) differs by the extent itself
    np.testing.assert_allclose(two, one, atol=5e-3 * np.abs(one).max())


def test_parallel_map_uses_the_threads_it_is_given():
    import threading

    seen = set()

    def record(item):
        seen.add(threading.current_thread().name)
        return item * 2

    assert runtime.parallel_map(record, range(50), n_threads=1) == [2 * i for i in range(50)]
    assert seen == {threading.current_thread().name}
    seen.clear()
    assert runtime.parallel_map(lambda i: (record(i), __import__("time").sleep(0.001))[0], range(50), 3) \
        == [2 * i for i in range(50)]
    assert all(name.startswith("mphate") for name in seen)


def test_thread_count_follows_the_dense_stages_too(monkeypatch):
    # a trace of few points but thousands of landmarks spends its time in dense LAPACK/BLAS
    # work that two threads speed up: n_jobs=None must not hold it to one thread
    monkeypatch.setattr(runtime, "idle_cores", lambda: 2)
    assert runtime.resolve_threads(None, 5_000) == 1
    assert runtime.resolve_threads(None, 5_000, dense_size=runtime.SMALL_DENSE - 1) == 1
    assert runtime.resolve_threads(None, 14_400, dense_size=4_000) == 2
    assert runtime.resolve_threads(None, 50_000, dense_size=500) == 2
    assert runtime.resolve_threads(1, 14_400, dense_size=4_000) == 1


def test_parallel_map_holds_blas_to_one_thread_inside_the_workers():
    from threadpoolctl import threadpool_info

    def blas_threads(_):
        return max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")

    outside = blas_threads(None)
    for _ in range(2):  # the cached controller works again after its first use
        assert runtime.parallel_map(blas_threads, range(4), n_threads=2) == [1, 1, 1, 1]
    assert blas_threads(None) == outside


def test_both_kernels_follow_the_kernel_protocol_and_agree_on_the_same_matrix(trace):
    from mphate.embed.normalize import zscore_units

    structured = multislice_kernel(zscore_units(trace.data), interslice_knn=5)
    plain = SparseKernel(structured.to_sparse())
    assert isinstance(structured, Kernel) and isinstance(plain, Kernel)
    vectors = np.random.default_rng(0).standard_normal((structured.shape[0], 3))
    np.testing.assert_allclose(plain.matmat(vectors), structured.matmat(vectors), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(plain.degrees(), structured.degrees(), rtol=1e-5)
    labels = np.arange(structured.shape[0]) % 17
    np.testing.assert_allclose(plain.aggregate(labels, 17).toarray(),
                               structured.aggregate(labels, 17).toarray(), rtol=1e-4, atol=1e-6)


def test_flattened_phate_runs_the_same_stages_after_its_own_kernel():
    rows = np.random.default_rng(0).standard_normal((400, 6))
    from mphate.embed.flat import phate_flattened

    emb = phate_flattened(rows, n_landmark=100, random_state=0)
    assert emb.shape == (400, 2) and np.isfinite(emb).all()
    np.testing.assert_array_equal(emb, phate_flattened(rows, n_landmark=100, random_state=0))
    dist, idx = knn(rows, 30)
    assert isinstance(SparseKernel(alpha_decay_kernel(dist, idx)), Kernel)


def test_unknown_device_and_missing_accelerator_are_clear_errors(trace):
    with pytest.raises(ValueError, match="device must be one of"):
        MPHATE(device="tpu").fit(trace.data)
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            MPHATE(device="cuda").fit(trace.data)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
def test_peak_memory_is_the_process_own_not_its_parent_size():
    # ru_maxrss carries a forked parent's high-water mark over exec: a fit started by a large
    # process (a training script, the benchmark panel) must not report the parent's size
    import subprocess

    held = np.ones(700 * 2**20 // 8)  # the parent holds 700 MB while the child starts
    code = "from mphate import runtime; print(runtime.peak_memory_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child_peak = float(out.stdout.strip())
    assert held.sum() > 0
    assert 10 < child_peak < 500, child_peak


def test_a_step_waits_for_the_backend_before_its_time_is_taken():
    # a GPU queues work: a step's time must include the wait for it, not leave it to the next
    import time

    from mphate.embed.pipeline import StageLog

    waits = []

    def slow_device():
        waits.append(time.perf_counter())
        time.sleep(0.05)

    log = StageLog(0, synchronize=slow_device)
    with log.step("eigendecomposition"):
        pass
    with log.step("diffusion time"):
        pass
    assert len(waits) == 2
    assert log.timings["eigendecomposition"] >= 0.05 and log.timings["diffusion time"] >= 0.05


def test_each_backend_can_synchronize():
    from mphate.embed.backend import get_backend

    get_backend("cpu").synchronize()
    if __import__("importlib").util.find_spec("torch") is not None:
        get_backend("torch").synchronize()  # the CPU device has no queue: returns at once
