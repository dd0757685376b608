"""The dense stages on each backend: same picture, deterministic, and a quality floor
(parametrised over mds method x input dtype x backend, on the small real digits trace)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


@pytest.mark.parametrize("device", BACKENDS)
def test_each_backend_is_deterministic_under_a_seed(digits, device):
    first = MPHATE(n_landmark=300, random_state=3, device=device).fit_transform(digits)
    second = MPHATE(n_landmark=300, random_state=3, device=device).fit_transform(digits)
    np.testing.assert_array_equal(first, second)
    other = MPHATE(n_landmark=300, random_state=4, device=device).fit_transform(digits)
    assert not np.allclose(first, other)


def test_changing_the_device_reruns_only_the_dense_stages(digits):
    pytest.importorskip("torch")
    est = MPHATE(n_landmark=300, random_state=0).fit(digits)
    est.set_params(device="torch").fit(digits)
    assert "eigendecomposition" in est.timings_ and "spectral coordinates" not in est.timings_
    assert "kernel" not in est.timings_
