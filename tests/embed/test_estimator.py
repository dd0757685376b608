"""The MPHATE estimator: contract, determinism, caching, bad input and quality."""
import inspect
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from mphate import MPHATE, Trace
from mphate.metrics import neighbor_preservation
from mphate.traces.synthetic import make_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "digits_trace_small.npz"


@pytest.fixture(scope="module")
def trace():
    return make_trace(n_slices=30, n_units=24, n_trace=12, random_state=0)


@pytest.fixture(scope="module")
def digits_trace():
    # a real recording: 64-128-128-128-10 MLP on digits, every 10th epoch of 300,
    # every 8th hidden unit, 50 trace inputs (float16 to keep the file small)
    return np.load(DATA)["trace"].astype(np.float32)


def fast(**params):
    defaults = dict(interslice_knn=5, n_landmark=300, random_state=0)
    defaults.update(params)
    return MPHATE(**defaults)


def test_estimator_contract(trace):
    est = fast(n_components=3, gamma=1)
    params = est.get_params()
    assert params["n_components"] == 3 and params["gamma"] == 1
    cloned = clone(est)
    assert cloned.get_params() == params and cloned is not est
    assert est.set_params(t=7) is est and est.t == 7
    assert not hasattr(est, "embedding_")  # __init__ and set_params learn nothing
    assert est.fit(trace.data) is est
    for name in ("embedding_", "kernel_", "t_", "entropy_", "landmark_labels_", "interslice_eps_"):
        assert hasattr(est, name)
    n = 30 * 24
    assert est.embedding_.shape == (n, 3)
    assert est.kernel_.shape == (n, n)
    assert est.landmark_labels_.shape == (n,)
    assert est.entropy_.shape == (est.t_max,)


def test_params_protocol_without_scikit_learn_base_class():
    # MPHATE keeps scikit-learn's contract by protocol (mphate.embed.params), not inheritance
    from sklearn.utils import get_tags

    est = MPHATE(t=20, n_landmark=None)
    assert repr(est) == "MPHATE(n_landmark=None, t=20)"  # only what differs from the defaults
    assert repr(MPHATE()) == "MPHATE()"
    with pytest.raises(ValueError, match="'n_landmarks' is not a parameter of MPHATE.*n_landmark"):
        est.set_params(n_landmarks=10)
    assert est.set_params() is est
    with pytest.raises(ValueError, match="'t__x'.*not an estimator"):
        est.set_params(t__x=1)
    assert set(est.get_params()) == set(inspect.signature(MPHATE).parameters)
    assert get_tags(est).target_tags.required is False  # scikit-learn's own tag reader works


def test_fitting_imports_no_scikit_learn():
    # importing scikit-learn loads scipy.stats and pandas: ~85 MB of a fit's peak memory
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from mphate import MPHATE\n"
        "MPHATE(interslice_knn=5, n_landmark=300, random_state=0, t='auto')"
        ".fit(np.random.default_rng(0).standard_normal((30, 24, 12)))\n"
        "print(sorted(m for m in ('sklearn', 'pandas', 'scipy.stats') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_slice_major_output_and_inputs_accepted(trace):
    emb_array = fast().fit_transform(trace.data)
    emb_trace = fast().fit_transform(trace)
    np.testing.assert_array_equal(emb_array, emb_trace)
    assert emb_array.shape == (30 * 24, 2)
    assert np.isfinite(emb_array).all()


def test_same_random_state_same_embedding(trace):
    a = fast(random_state=5).fit_transform(trace.data)
    b = fast(random_state=5).fit_transform(trace.data)
    np.testing.assert_array_equal(a, b)


def test_changing_t_gamma_or_components_reuses_kernel_and_landmarks(trace):
    est = fast()
    est.fit(trace.data)
    kernel, labels, first = est.multislice_kernel_, est.landmark_labels_, est.embedding_.copy()
    for params in (dict(t=3), dict(gamma=1), dict(n_components=3)):
        est.set_params(**params).fit(trace.data)
        assert est.multislice_kernel_ is kernel
        assert est.landmark_labels_ is labels
        assert "kernel" not in est.timings_ and "landmark clustering" not in est.timings_
    assert est.embedding_.shape[1] == 3
    # a kernel parameter does trigger a rebuild, and the result matches a fresh fit
    est.set_params(intraslice_knn=3, n_components=2, t="auto", gamma=0)
    est.fit(trace.data)
    assert est.multislice_kernel_ is not kernel
    np.testing.assert_allclose(est.embedding_, fast(intraslice_knn=3).fit_transform(trace.data))
    # and t reuse gives exactly what a fresh fit with that t gives
    np.testing.assert_allclose(est.set_params(t=4).fit_transform(trace.data),
                               fast(intraslice_knn=3, t=4).fit_transform(trace.data))
    assert not np.allclose(first, est.embedding_)


def test_spectral_stride_subsamples_slices_and_is_deterministic(trace):
    est = fast(spectral_stride=3)
    emb = est.fit_transform(trace.data)
    assert np.isfinite(emb).all() and emb.shape == (30 * 24, 2)
    np.testing.assert_array_equal(emb, fast(spectral_stride=3).fit_transform(trace.data))
    # with a stride the whole kernel is used only twice, so it is kept lean (features only)
    kernel, labels = est.multislice_kernel_, est.landmark_labels_
    assert kernel.lean
    # another stride changes the landmarks but reuses the kernel
    est.set_params(spectral_stride=2).fit(trace.data)
    assert est.multislice_kernel_ is kernel and "kernel" not in est.timings_
    assert "spectral coordinates" in est.timings_
    assert not np.array_equal(est.landmark_labels_, labels)
    # the spectral step on the whole graph stores the kernel it multiplies by 13 times
    est.set_params(spectral_stride=1).fit(trace.data)
    assert not est.multislice_kernel_.lean
    # with too few slices to subsample, a stride means the whole graph, and a stored kernel
    two_slices = fast(spectral_stride=4, interslice_knn=1, n_landmark=30).fit(trace.data[:3])
    assert not two_slices.multislice_kernel_.lean


def test_knee_t_is_the_entropy_knee(trace):
    est = fast(t="knee").fit(trace.data)
    assert 1 <= est.t_ <= est.t_max
    assert est.t_candidates_[0] == est.t_
    # entropy falls with t
    assert np.all(np.diff(est.entropy_) <= 1e-9)


def test_two_near_equal_knees_warn_and_are_reported(trace, monkeypatch):
    import warnings

    from mphate.embed import diffusion

    t = np.arange(1, 101, dtype=float)
    # a fast early drop, a slope, a second drop from t=40 to 70: two knees that fit about equally
    two_bends = 8 - 0.5 * np.minimum(t, 6) - 0.01 * t - 2.2 * np.clip((t - 40) / 30, 0, 1)
    monkeypatch.setattr(diffusion, "von_neumann_entropy", lambda eigenvalues, t_max=100: two_bends[:t_max])
    est = fast(t="knee")
    with pytest.warns(diffusion.AmbiguousKneeWarning, match=r"t=7 \(taken\) and t=60") as record:
        est.fit(trace)
    assert est.t_ == 7 and est.t_candidates_ == [7, 60]
    # the warning points at the user's line, through fit_transform too
    with pytest.warns(diffusion.AmbiguousKneeWarning) as again:
        fast(t="knee").fit_transform(trace)
    assert {w.filename for w in (*record, *again)} == {__file__}
    # a t given by the user is not second-guessed; the candidates stay for inspection
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.set_params(t=60).fit(trace)
    assert est.t_ == 60 and est.t_candidates_ == [7, 60]


def test_exact_path_without_landmarks(trace):
    est = fast(n_landmark=None).fit(trace.data)
    assert est.n_landmark_ == 30 * 24
    assert np.isfinite(est.embedding_).all()


@pytest.mark.parametrize("spectral_stride", [1, 2])
def test_preservation_floor_on_real_trace(digits_trace, spectral_stride):
    emb = MPHATE(interslice_knn=25, spectral_stride=spectral_stride, random_state=0).fit_transform(digits_trace)
    ours = neighbor_preservation(emb, digits_trace, k=10)
    rand = neighbor_preservation(np.random.default_rng(0).random(emb.shape), digits_trace, k=10)
    # measured 0.74 / 0.81 when this test was written; a random layout gets 0.21 / 0.35
    assert ours["intraslice"] > 0.65 and ours["interslice"] > 0.72
    assert ours["intraslice"] > rand["intraslice"] + 0.3
    assert ours["interslice"] > rand["interslice"] + 0.3


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((10, 5)), "shape \\(n_slices, n_units, n_trace\\)"),
        (np.zeros((2, 3, 4, 5)), "4 dimension"),
        (np.zeros((0, 5, 5)), "empty axis"),
        (np.array([["a"]], dtype=object), "numeric"),
        (np.ones((8, 6, 4), dtype=complex), "real-valued"),
    ],
)
def test_bad_shapes_and_types(data, message):
    with pytest.raises(ValueError, match=message):
        fast().fit(data)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_are_named(trace, bad):
    data = trace.data.copy()
    data[4, 7, 2] = bad
    with pytest.raises(ValueError, match=r"slice 4, unit 7"):
        fast().fit(data)


def test_too_few_units_slices_or_inputs(trace):
    with pytest.raises(ValueError, match="at least 2 slices"):
        fast().fit(trace.data[:1])
    with pytest.raises(ValueError, match="interslice_knn=5 needs at least 6 slices"):
        fast().fit(trace.data[:5])
    with pytest.raises(ValueError, match="intraslice_knn=2 needs at least 3 units"):
        fast().fit(trace.data[:, :2])
    with pytest.raises(ValueError, match="at least 2 trace inputs"):
        fast().fit(trace.data[:, :, :1])


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_components=0), "n_components"),
        (dict(t=0), "t must be"),
        (dict(t="fast"), "t must be"),
        (dict(gamma=2), "gamma"),
        (dict(decay=-1), "decay"),
        (dict(n_landmark=1), "n_landmark"),
        (dict(intraslice_knn=0), "intraslice_knn"),
        (dict(mds="fancy"), "mds"),
        (dict(spectral_stride=0), "spectral_stride"),
        (dict(spectral_stride="every"), "spectral_stride"),
    ],
)
def test_bad_parameters(trace, params, message):
    with pytest.raises(ValueError, match=message):
        fast(**params).fit(trace.data)


def test_dead_and_duplicated_units_and_constant_slices(trace):
    data = trace.data.copy()
    data[:, 0] = 0.0  # dead unit
    data[:, 1] = data[:, 2]  # duplicated unit
    data[3] = 1.5  # a slice where every unit is constant
    emb = fast().fit_transform(data)
    assert np.isfinite(emb).all()


def test_a_trace_whose_points_are_all_alike_is_refused(trace):
    # every point the same: the layout would be rounding noise that a plot stretches into a cloud
    with pytest.raises(ValueError, match="every .slice, unit. vector of the trace is the same"):
        fast(normalize=False).fit(np.full((30, 24, 12), 0.7))
    # every unit dead at every slice, at levels that differ: z-scoring makes them all zero ...
    levels = trace.data[:, :, :1] * np.ones((1, 1, 12))
    with pytest.raises(ValueError, match="constant over the trace inputs .dead units.*normalize=False"):
        fast().fit(levels)
    # ... and without it the levels themselves are embedded
    assert np.isfinite(fast(normalize=False).fit_transform(levels)).all()
    # every unit the same pattern up to scale and offset: alike once z-scored
    pattern = trace.data[0, 0]
    alike = 3.0 * np.abs(trace.data[:, :, :1]) * pattern + trace.data[:, :, 1:2]
    with pytest.raises(ValueError, match="same after z-scoring"):
        fast().fit(alike)
    # one live unit among dead ones is something to embed
    one_live = np.zeros_like(trace.data)
    one_live[:, 5] = trace.data[:, 5]
    assert np.isfinite(fast().fit_transform(one_live)).all()


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.uint8, bool])
def test_integer_and_low_precision_input(trace, dtype):
    data = (trace.data * 10).astype(dtype) if dtype is not bool else trace.data > 0
    emb = fast().fit_transform(data)
    assert np.isfinite(emb).all() and emb.shape == (30 * 24, 2)


@pytest.mark.parametrize("scale", [1e-300, 1e300, 3e38])
def test_values_near_float_limits(trace, scale):
    data = trace.data.astype(np.float64) * scale
    emb = fast().fit_transform(data)
    assert np.isfinite(emb).all()
    # z-scoring makes the embedding scale-free
    np.testing.assert_allclose(emb, fast().fit_transform(trace.data.astype(np.float64)), atol=1e-6)


def test_trace_object_with_metadata(trace):
    t = Trace(trace.data, unit_layer=trace.unit_layer, scalars=trace.scalars)
    assert fast().fit_transform(t).shape == (30 * 24, 2)
