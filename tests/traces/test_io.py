"""Trace files: .npz/.npy/.mat loaders, .npz/.mat export, and as_trace for the estimator."""
import numpy as np
import pytest
from scipy import io as sio

from mphate.capture import Recorder
from mphate.traces.io import as_trace, load_trace, save_mat, save_npz
from mphate.traces.trace import Trace


def full_trace(n_slices=4, n_trace=6):
    rng = np.random.default_rng(0)
    return Trace(
        data=rng.normal(size=(n_slices, 5, n_trace)).astype(np.float32),
        unit_layer=np.array([0, 0, 0, 1, 1]),
        layer_names=["dense_1", "dense_2"],
        steps=np.arange(n_slices) * 50,
        epochs=np.arange(n_slices) + 1.0,
        scalars={"loss": rng.random(n_slices), "val_loss": np.r_[np.nan, rng.random(n_slices - 1)]},
        trace_labels=np.arange(n_trace) % 3,
    )


def assert_same_trace(a, b):
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.unit_layer, b.unit_layer)
    assert a.layer_names == b.layer_names
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.epochs, b.epochs)
    assert a.scalars.keys() == b.scalars.keys()
    for name in a.scalars:
        np.testing.assert_array_equal(a.scalars[name], b.scalars[name])
    np.testing.assert_array_equal(a.trace_labels, b.trace_labels)


def test_npz_round_trip_keeps_every_field(tmp_path):
    trace = full_trace()
    written = save_npz(trace, tmp_path / "t")
    assert written.suffix == ".npz"
    assert_same_trace(trace, load_trace(written))


def test_store_exports_to_npz(tmp_path):
    rec = Recorder(tmp_path / "run", trace_labels=[1, 2, 3])
    for i in range(3):
        rec.record(i, {"a": np.full((3, 2), i), "b": np.ones((3, 1))}, epoch=i / 2, loss=i)
    rec.close()
    assert_same_trace(load_trace(tmp_path / "run"), load_trace(save_npz(tmp_path / "run", tmp_path / "run.npz")))


def test_reference_mat_layout_round_trip(tmp_path):
    trace = full_trace()
    save_mat(trace, tmp_path / "ref.mat")
    stored = sio.loadmat(tmp_path / "ref.mat")
    assert {"trace", "layer", "digit", "loss", "val_loss"} <= set(stored)
    loaded = load_trace(tmp_path / "ref.mat")
    np.testing.assert_array_equal(loaded.data, trace.data)
    np.testing.assert_array_equal(loaded.unit_layer, trace.unit_layer)
    np.testing.assert_array_equal(loaded.trace_labels, trace.trace_labels)
    np.testing.assert_allclose(loaded.scalars["loss"], trace.scalars["loss"])
    np.testing.assert_array_equal(np.isnan(loaded.scalars["val_loss"]), np.isnan(trace.scalars["val_loss"]))


def test_mat_written_by_other_tools(tmp_path):
    """MATLAB-style row vectors, string layer names, and the trace stored unit-major."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(3, 4, 7))  # slices, units, inputs
    sio.savemat(
        tmp_path / "other.mat",
        {
            "trace": np.transpose(data, (1, 0, 2)),  # (units, slices, inputs)
            "layer": np.array(["conv", "conv", "fc", "fc"]),
            "digit": np.arange(7)[None, :],  # a (1, 7) row, as MATLAB writes vectors
            "loss": np.array([[0.9, 0.5, 0.2]]),
            "task": np.array([[1, 1, 2]]),
            "accuracy": np.array([[0.1, 0.5, 0.9]]),
        },
    )
    loaded = load_trace(tmp_path / "other.mat")
    np.testing.assert_allclose(loaded.data, data)
    assert loaded.layer_names == ["conv", "fc"]
    np.testing.assert_array_equal(loaded.unit_layer, [0, 0, 1, 1])
    np.testing.assert_array_equal(loaded.trace_labels, np.arange(7))
    np.testing.assert_array_equal(loaded.scalars["task"], [1, 1, 2])
    np.testing.assert_allclose(loaded.scalars["accuracy"], [0.1, 0.5, 0.9])


def test_reference_keys_in_an_npz(tmp_path):
    data = np.random.default_rng(2).normal(size=(2, 3, 4))
    np.savez(tmp_path / "ref.npz", trace=data, layer=[0, 1, 1], digit=[0, 1, 0, 1], loss=[1.0, 0.5])
    loaded = load_trace(tmp_path / "ref.npz")
    np.testing.assert_array_equal(loaded.data, data)
    assert loaded.layer_names == ["layer0", "layer1"]
    np.testing.assert_array_equal(loaded.scalars["loss"], [1.0, 0.5])


def test_npy_holds_the_bare_tensor(tmp_path):
    data = np.random.default_rng(3).normal(size=(2, 3, 4))
    np.save(tmp_path / "t.npy", data)
    loaded = load_trace(tmp_path / "t.npy")
    np.testing.assert_array_equal(loaded.data, data)
    np.testing.assert_array_equal(loaded.steps, [0, 1])
    np.save(tmp_path / "flat.npy", data[0])
    with pytest.raises(ValueError, match=r"shape \(3, 4\); a trace is \(n_slices, n_units, n_trace\)"):
        load_trace(tmp_path / "flat.npy")


def test_unreadable_inputs_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "missing.npz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="expected a store directory"):
        load_trace(tmp_path / "notes.txt")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="cannot read .* as an .npz"):
        load_trace(tmp_path / "broken.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="neither a 'data' nor a 'trace'"):
        load_trace(tmp_path / "other.npz")
    sio.savemat(tmp_path / "bad.mat", {"trace": np.zeros((2, 3, 4)), "digit": np.arange(5)})
    with pytest.raises(ValueError, match="does not fit the other keys"):
        load_trace(tmp_path / "bad.mat")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not an mphate trace store"):
        load_trace(tmp_path / "plain")


def test_as_trace_accepts_everything_the_estimator_takes(tmp_path):
    trace = full_trace()
    assert as_trace(trace) is trace
    np.testing.assert_array_equal(as_trace(trace.data).data, trace.data)
    path = save_npz(trace, tmp_path / "t.npz")
    assert_same_trace(as_trace(str(path)), trace)
    rec = Recorder(tmp_path / "run")
    rec.record(0, {"a": np.ones((2, 3))})
    assert as_trace(rec).data.shape == (1, 3, 2)
    assert as_trace(rec.store).data.shape == (1, 3, 2)
    assert as_trace(tmp_path / "run").data.shape == (1, 3, 2)
    with pytest.raises(TypeError, match="expected a Trace"):
        as_trace(42)
    with pytest.raises(ValueError, match="shape"):
        as_trace(np.zeros((3, 4)))
