"""The dense stages on each backend: same picture, deterministic, and a quality floor
(parametrised over mds method x input dtype x backend, on the small real digits trace)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mphate.embed.estimator import MPHATE
from mphate.metrics import neighbor_preservation
from mphate.traces.io import load_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "digits_trace_small.npz"
BACKENDS = ["cpu", pytest.param("torch", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None, reason="torch not installed"))]
# preservation of a random layout is ~0.2 intra / ~0.06 inter here; M-PHATE gets ~0.74 / ~0.83
FLOORS = {"intraslice": 0.70, "interslice": 0.78}


@pytest.fixture(scope="module")
def digits():
    return load_trace(DATA)


@pytest.fixture(scope="module")
def numpy_results(digits):
    out = {}
    for method in ("metric", "classic"):
        est = MPHATE(n_landmark=300, mds=method, random_state=0).fit(digits)
        out[method] = (est.embedding_, neighbor_preservation(est.embedding_, digits, k=10), est.t_)
    return out


@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["metric", "classic"])
def test_each_backend_meets_the_floor_and_matches_numpy(digits, numpy_results, device, dtype, method):
    data = digits.data.astype(dtype)
    est = MPHATE(n_landmark=300, mds=method, random_state=0, device=device)
    emb = est.fit_transform(data)
    assert emb.shape == (digits.n_slices * digits.n_units, 2) and emb.dtype == np.float64
    assert np.isfinite(emb).all()
    scores = neighbor_preservation(emb, digits, k=10)
    for kind, floor in FLOORS.items():
        assert scores[kind] >= floor, (kind, scores)
    reference_emb, reference, reference_t = numpy_results[method]
    assert est.t_ == reference_t  # same spectrum up to rounding, so the same knee
    for kind in FLOORS:
        assert abs(scores[kind] - reference[kind]) <= 0.005, (kind, scores, reference)
    if device == "cpu" and dtype == np.float32:
        np.testing.assert_array_equal(emb, reference_emb)  # the trace is float32 already


def test_torch_matches_numpy_when_every_landmark_step_runs_on_it(digits):
    # 200 landmarks: 7.2 points each, so the k-means starts from random points and runs on
    # torch too (at 300 it starts from k-means++ seeding, on the host)
    pytest.importorskip("torch")
    fits = {device: MPHATE(n_landmark=200, random_state=0, device=device).fit(digits) for device in ("cpu", "torch")}
    assert fits["torch"].t_ == fits["cpu"].t_
    scores = {device: neighbor_preservation(est.embedding_, digits, k=10) for device, est in fits.items()}
    for kind, floor in FLOORS.items():
        assert scores["torch"][kind] >= floor, scores
        assert abs(scores["torch"][kind] - scores["cpu"][kind]) <= 0.005, scores


@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("n_landmark", [300, 200])  # k-means++ / random seeding of the landmarks
def test_each_backend_is_deterministic_under_a_seed(digits, device, n_landmark):
    first = MPHATE(n_landmark=n_landmark, random_state=3, device=device).fit_transform(digits)
    second = MPHATE(n_landmark=n_landmark, random_state=3, device=device).fit_transform(digits)
    np.testing.assert_array_equal(first, second)
    other = MPHATE(n_landmark=n_landmark, random_state=4, device=device).fit_transform(digits)
    assert not np.allclose(first, other)


def test_changing_the_device_reruns_every_stage(digits):
    # from the kernel on: a lean kernel's bandwidth is computed on the backend
    pytest.importorskip("torch")
    est = MPHATE(n_landmark=300, random_state=0).fit(digits)
    est.set_params(device="torch").fit(digits)
    assert {"kernel", "spectral coordinates", "eigendecomposition"} <= set(est.timings_)
    est.set_params(t=est.t_).fit(digits)
    assert "kernel" not in est.timings_ and "spectral coordinates" not in est.timings_


def test_the_torch_path_brings_no_landmark_by_landmark_array_to_the_host(digits, monkeypatch):
    # the dense stages and the t search's quick pictures stay on the device: only layouts,
    # eigenvalues and the quick pictures' (L - m, anchors) distances come home
    torch = pytest.importorskip("torch")
    moved = []
    original = torch.Tensor.cpu

    def recording_cpu(self, *args, **kwargs):
        moved.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", recording_cpu)
    n_landmark = 300
    est = MPHATE(n_landmark=n_landmark, random_state=0, device="torch").fit(digits)
    assert est.t_scores_, "t='auto' should have searched"
    assert moved, "nothing came home: the recording missed the transfers"
    square = [shape for shape in moved if len(shape) == 2 and min(shape) >= n_landmark // 2]
    assert not square, square


@pytest.mark.parametrize("shape", [(120, 40), (40, 120)])
def test_torch_classical_mds_agrees_with_numpy(shape):
    torch = pytest.importorskip("torch")
    from mphate.embed.backend import NUMPY, get_backend

    rng = np.random.default_rng(1)
    # three strong directions, so the leading components are well separated
    points = rng.normal(size=(shape[0], 3)) @ (rng.normal(size=(3, shape[1])) * np.array([[6.0], [3.0], [1.5]]))
    points += 0.05 * rng.normal(size=shape)
    points = (points - points.mean(axis=0)).astype(np.float32)
    torch_backend = get_backend("torch")
    on_device = torch.as_tensor(points)
    expected = NUMPY.classical_mds(points, 2, np.random.default_rng(5))
    got = torch_backend.classical_mds(on_device, 2, np.random.default_rng(5))
    assert got.shape == (shape[0], 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=1e-3 * np.abs(expected).max())


def test_torch_smacof_keeps_the_start_of_least_stress_as_numpy_does():
    torch = pytest.importorskip("torch")
    from mphate.embed import mds
    from mphate.embed.backend import NUMPY, get_backend

    # a sphere laid flat: classical MDS's start ends about 4% above this random one's
    rng = np.random.default_rng(2)
    sphere = rng.standard_normal((200, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    target = mds.pairwise_distances(sphere).astype(np.float32)
    classical = mds.classical_mds_from_points(sphere, 2, np.random.default_rng(0))
    better = np.random.default_rng(1).standard_normal((200, 2))
    expected, expected_iter = NUMPY.smacof(target.copy(), [classical, better], max_iter=300, tol=1e-4, n_threads=1)
    got, n_iter = get_backend("torch").smacof(torch.as_tensor(target), [classical, better], max_iter=300,
                                              tol=1e-4, n_threads=1)
    alone, alone_iter = NUMPY.smacof(target.copy(), better, max_iter=300, tol=1e-4, n_threads=1)
    # the same (second) start won on both backends: its layout, both starts' iterations counted
    assert n_iter > alone_iter and expected_iter > alone_iter
    np.testing.assert_allclose(got, alone, atol=1e-3 * np.abs(alone).max())
    np.testing.assert_allclose(expected, alone, atol=1e-6 * np.abs(alone).max())


@pytest.mark.parametrize("stride", [1, 2])
def test_torch_landmark_stage_agrees_with_numpy(digits, stride, monkeypatch):
    # spectral coordinates (on every slice, and on every 2nd slice then spread along time) and
    # the landmark operator, from the same kernel and the same generator
    pytest.importorskip("torch")
    from mphate.embed import kernel as kernel_mod, torch_kernel
    from mphate.embed.backend import NUMPY, get_backend
    from mphate.embed.normalize import zscore_units

    monkeypatch.setattr(torch_kernel, "BUILD_CHUNK_ENTRIES", 7 * 30 * 30)  # W in several unit chunks
    kernel = kernel_mod.multislice_kernel(zscore_units(digits.data))
    torch_backend = get_backend("torch")
    expected = NUMPY.landmark_features(kernel, 20, np.random.default_rng(4), stride=stride, n_threads=1)
    on_device = torch_backend.landmark_kernel(kernel)
    assert isinstance(on_device, torch_kernel.DeviceKernel)
    got = torch_backend.landmark_features(on_device, 20, np.random.default_rng(4), stride=stride, n_threads=1)
    got = torch_backend.to_numpy(got)
    assert got.shape == expected.shape == (kernel.shape[0], 20) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-3 * np.abs(expected).max())
    labels = NUMPY.cluster_landmarks(expected, 200, np.random.default_rng(5), n_threads=1, seeding="random")
    expected_op = NUMPY.landmark_operator(kernel, labels, n_threads=1)
    got_op = torch_backend.landmark_operator(on_device, labels, n_threads=1)
    symmetric = torch_backend.to_numpy(got_op.symmetric)
    assert symmetric.shape == (200, 200)
    np.testing.assert_allclose(symmetric, expected_op.symmetric, atol=1e-5)
    np.testing.assert_allclose(got_op.scale, expected_op.scale, rtol=1e-5)
    difference = got_op.point_to_landmark - expected_op.point_to_landmark
    assert abs(difference).max() < 1e-6
    np.testing.assert_allclose(np.asarray(got_op.point_to_landmark.sum(axis=1)).ravel(), 1.0, rtol=1e-5)


def test_torch_kmeans_agrees_with_numpy(digits):
    # random seeding (7.2 points per landmark): the coarse groups' k-means run batched on torch.
    # Spectral coordinates on every slice: those spread from every 2nd slice hold exact
    # duplicates, whose ties rounding breaks either way (there the partitions agreed to an
    # adjusted Rand index of 0.94, as good a grouping but not the same)
    pytest.importorskip("torch")
    from mphate.embed import kernel as kernel_mod
    from mphate.embed.backend import NUMPY, get_backend
    from mphate.embed.normalize import zscore_units

    kernel = kernel_mod.multislice_kernel(zscore_units(digits.data))
    features = NUMPY.landmark_features(kernel, 20, np.random.default_rng(4), stride=1, n_threads=1)
    expected = NUMPY.cluster_landmarks(features, 200, np.random.default_rng(5), n_threads=1, seeding="random")
    got = get_backend("torch").cluster_landmarks(features, 200, np.random.default_rng(5), n_threads=1,
                                                 seeding="random")
    assert got.shape == expected.shape and got.dtype == np.int64
    assert got.max() + 1 == expected.max() + 1 == len(np.unique(got))
    assert adjusted_rand_score(expected, got) > 0.99


def test_torch_landmark_stage_keeps_a_lean_kernel_on_the_host(digits):
    pytest.importorskip("torch")
    from mphate.embed import kernel as kernel_mod, landmarks
    from mphate.embed.backend import NUMPY, get_backend
    from mphate.embed.normalize import zscore_units

    kernel = kernel_mod.multislice_kernel(zscore_units(digits.data), store_blocks=False)
    torch_backend = get_backend("torch")
    expected = NUMPY.landmark_features(kernel, 20, np.random.default_rng(4), stride=2, n_threads=1)
    assert torch_backend.landmark_kernel(kernel) is kernel  # torch's CPU: not built again there
    got = torch_backend.landmark_features(kernel, 20, np.random.default_rng(4), stride=2, n_threads=1)
    np.testing.assert_array_equal(got, expected)
    labels = landmarks.cluster_landmarks(expected, 200, np.random.default_rng(5))
    got_op = torch_backend.landmark_operator(kernel, labels, n_threads=1)
    assert isinstance(got_op.symmetric, np.ndarray)
    np.testing.assert_array_equal(got_op.symmetric, NUMPY.landmark_operator(kernel, labels, n_threads=1).symmetric)


@pytest.mark.parametrize("n_features", [2, 40])
def test_torch_nearest_neighbors_agree_with_numpy(n_features):
    # the t search's scores: an embedding's 2-D unit histories sit close together far from the
    # origin (where float32 |x|^2 + |y|^2 - 2 x.y rounding would reorder the neighbours)
    pytest.importorskip("torch")
    from mphate.embed.backend import NUMPY, get_backend

    rng = np.random.default_rng(3)
    points = rng.normal(size=(6, 120, n_features))
    if n_features == 2:
        points = 50.0 + 0.01 * points
    expected = NUMPY.nearest_neighbors(points, 10)
    got = get_backend("torch").nearest_neighbors(points, 10)
    assert got.shape == expected.shape == (6, 120, 10)
    assert not (got == np.arange(120)[None, :, None]).any()  # never a point itself
    np.testing.assert_array_equal(np.sort(got, axis=2), np.sort(expected, axis=2))


def test_a_lean_kernel_built_on_the_device_equals_the_stored_one(digits, monkeypatch):
    # a GPU with room builds a lean kernel's blocks itself (the host keeps only features); here
    # the build runs on torch's CPU device, in small chunks, against the host's stored kernel
    pytest.importorskip("torch")
    from mphate.embed import kernel as kernel_mod, torch_kernel
    from mphate.embed.normalize import zscore_units

    monkeypatch.setattr(torch_kernel, "BUILD_CHUNK_ENTRIES", 5 * 48 * 48)  # several chunks
    features = zscore_units(digits.data)
    stored = kernel_mod.multislice_kernel(features, store_blocks=True)
    lean = kernel_mod.multislice_kernel(features, store_blocks=False)
    assert lean.lean and lean.interslice_eps == stored.interslice_eps
    built = torch_kernel.DeviceKernel.from_features(lean, "cpu")
    copied = torch_kernel.DeviceKernel.from_kernel(stored, "cpu")
    # float32 distance expansions summed in another order: a few 1e-5 apart
    np.testing.assert_allclose(built.blocks.numpy(), copied.blocks.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(built.intraslice.to_dense().numpy(), copied.intraslice.to_dense().numpy(),
                               rtol=1e-4, atol=1e-6)
    assert built.intraslice.values().shape == copied.intraslice.values().shape  # the same entries kept
    assert not torch_kernel.fits_on_device(lean, "cpu")  # host memory: the lean path stays lean
    assert torch_kernel.fits_on_device(stored, "cpu")


@pytest.mark.parametrize("n_slices", [30, 29])  # np.median: the mean of two middles, or the middle
def test_torch_interslice_bandwidth_equals_numpy(digits, n_slices, monkeypatch):
    # the kernel stage's pass over every unit's history, on the device, in several unit chunks
    pytest.importorskip("torch")
    from mphate.embed import kernel as kernel_mod, torch_kernel
    from mphate.embed.backend import NUMPY, get_backend
    from mphate.embed.normalize import zscore_units

    monkeypatch.setattr(torch_kernel, "BUILD_CHUNK_ENTRIES", 7 * n_slices * n_slices)
    features = zscore_units(digits.data[:n_slices])
    for knn in (1, 5, n_slices - 1):
        expected = NUMPY.interslice_bandwidth(features, knn, n_threads=1)
        got = get_backend("torch").interslice_bandwidth(features, knn, n_threads=1)
        assert isinstance(got, float)
        # float32 on centred histories on both (~1e-7 apart); a neighbour off by one, the lower
        # middle for the median, or uncentred histories (~1e-4 here) are far more
        assert got == pytest.approx(expected, rel=1e-5), knn
    # and what the stage does with it: the lean kernel takes it as given
    lean = kernel_mod.multislice_kernel(features, store_blocks=False, interslice_eps=0.25)
    assert lean.lean and lean.interslice_eps == 0.25
    with pytest.raises(ValueError, match="lean kernels"):
        kernel_mod.multislice_kernel(features, store_blocks=True, interslice_eps=0.25)
    # every unit the same at every slice: both give the host's fallback bandwidth, 1
    constant = np.ones((n_slices, 4, 3), dtype=np.float32)
    assert get_backend("torch").interslice_bandwidth(constant, 5, n_threads=1) == 1.0
    assert NUMPY.interslice_bandwidth(constant, 5, n_threads=1) == 1.0


def test_a_fit_with_a_lean_kernel_built_on_the_device_matches_numpy(digits, monkeypatch):
    # what a GPU with room does for every trace of 20,000 points or more (their spectral step
    # runs on a slice subsample, so the kernel is lean): here torch's CPU device plays the GPU
    pytest.importorskip("torch")
    from mphate.embed import torch_kernel

    built = []
    original = torch_kernel.DeviceKernel.from_features.__func__

    def recording(cls, kernel, device):
        built.append(kernel.shape)
        return original(cls, kernel, device)

    bandwidths = []
    original_bandwidth = torch_kernel.interslice_bandwidth

    def recording_bandwidth(features, knn, device):
        bandwidths.append(original_bandwidth(features, knn, device))
        return bandwidths[-1]

    monkeypatch.setattr(torch_kernel, "interslice_bandwidth", recording_bandwidth)
    monkeypatch.setattr(torch_kernel, "fits_on_device", lambda kernel, device: True)
    monkeypatch.setattr(torch_kernel.DeviceKernel, "from_features", classmethod(recording))
    monkeypatch.setattr(torch_kernel, "BUILD_CHUNK_ENTRIES", 5 * 48 * 48)  # several chunks
    params = dict(n_landmark=200, spectral_stride=2, random_state=0)
    fits = {device: MPHATE(**params, device=device).fit(digits) for device in ("cpu", "torch")}
    assert len(built) == 1  # once, for both the spectral coordinates and the landmark operator
    assert len(bandwidths) == 1  # the kernel stage's bandwidth came from the device
    assert bandwidths[0] == pytest.approx(fits["cpu"]._state.kernel.interslice_eps, rel=1e-5)
    assert fits["torch"].t_ == fits["cpu"].t_
    scores = {device: neighbor_preservation(est.embedding_, digits, k=10) for device, est in fits.items()}
    for kind, floor in FLOORS.items():
        assert scores["torch"][kind] >= floor, scores
        assert abs(scores["torch"][kind] - scores["cpu"][kind]) <= 0.005, scores
