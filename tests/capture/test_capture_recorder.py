"""The framework-free Recorder: record(step, {layer: activations}, epoch, **scalars)."""
import numpy as np
import pytest

from mphate.capture import Recorder
from mphate.traces.store import TraceStore


def activations(i, n_trace=6):
    rng = np.random.default_rng(i)
    return {"hidden": rng.normal(size=(n_trace, 4)), "out": rng.normal(size=(n_trace, 3))}


@pytest.mark.parametrize("on_disk", [False, True])
def test_records_slices_units_by_layer(tmp_path, on_disk):
    rec = Recorder(tmp_path / "run" if on_disk else None, trace_labels=np.arange(6) % 2)
    for i in range(3):
        assert rec.record(100 * i, activations(i), epoch=i + 1, loss=2.0 - i) == i
    rec.log(val_loss=0.5)
    trace = rec.to_trace()
    assert trace.data.shape == (3, 7, 6)
    for i in range(3):
        acts = activations(i)
        # units are rows: layer "hidden" first (4 units) then "out" (3 units)
        np.testing.assert_allclose(trace.data[i, :4], acts["hidden"].T, rtol=1e-6)
        np.testing.assert_allclose(trace.data[i, 4:], acts["out"].T, rtol=1e-6)
    assert trace.layer_names == ["hidden", "out"]
    np.testing.assert_array_equal(trace.unit_layer, [0] * 4 + [1] * 3)
    np.testing.assert_array_equal(trace.steps, [0, 100, 200])
    np.testing.assert_array_equal(trace.scalars["loss"], [2.0, 1.0, 0.0])
    assert np.isnan(trace.scalars["val_loss"][:2]).all() and trace.scalars["val_loss"][2] == 0.5
    rec.close()


def test_layer_order_of_later_calls_does_not_matter(tmp_path):
    rec = Recorder(tmp_path / "run")
    rec.record(0, activations(0))
    swapped = dict(reversed(list(activations(1).items())))
    rec.record(1, swapped)
    trace = rec.to_trace()
    np.testing.assert_allclose(trace.data[1, :4], activations(1)["hidden"].T, rtol=1e-6)


def test_single_unit_layer_may_be_one_dimensional():
    rec = Recorder()
    rec.record(0, {"logit": np.arange(5.0)})
    np.testing.assert_array_equal(rec.to_trace().data[0, 0], np.arange(5.0))


@pytest.mark.parametrize(
    "bad, message",
    [
        ([np.zeros((6, 4))], "must be a non-empty dict"),
        ({"hidden": np.zeros((6, 4, 2, 2))}, "reduce feature maps"),
        ({"hidden": np.zeros((6, 4)), "out": np.zeros((5, 3))}, "same inputs"),
        ({"hidden": np.array([["a"] * 4] * 6)}, "real numeric"),
        ({"hidden": np.zeros((5, 4)), "out": np.zeros((5, 3))}, "5 trace inputs but 6 trace labels"),
    ],
)
def test_malformed_activations_are_refused(tmp_path, bad, message):
    rec = Recorder(tmp_path / "run", trace_labels=np.zeros(6))
    rec.record(0, activations(0))
    with pytest.raises(ValueError, match=message):
        rec.record(1, bad)
    assert TraceStore.open(tmp_path / "run").n_slices == 1


def test_changing_unit_counts_is_refused_without_writing(tmp_path):
    rec = Recorder(tmp_path / "run")
    rec.record(0, activations(0))
    grown = activations(1)
    grown["hidden"] = np.zeros((6, 5))
    with pytest.raises(ValueError, match="'hidden' has 5 units, the store has 4"):
        rec.record(1, grown)
    rec.record(1, activations(1))  # the store is still usable
    assert rec.n_slices == 2


def test_existing_store_needs_resume_and_resume_continues_it(tmp_path):
    first = Recorder(tmp_path / "run", trace_labels=np.arange(6))
    first.record(0, activations(0))
    first.record(1, activations(1))
    first.close()
    with pytest.raises(ValueError, match="already holds a trace store.*resume=True"):
        Recorder(tmp_path / "run")
    again = Recorder(tmp_path / "run", trace_labels=np.arange(6), resume=True)
    assert again.run_id == first.run_id and again.last_step == 1
    again.record(2, activations(2))
    np.testing.assert_array_equal(again.to_trace().steps, [0, 1, 2])


def test_resume_refuses_other_runs_and_other_inputs(tmp_path):
    first = Recorder(tmp_path / "run", trace_labels=np.arange(6), run_id="run-A", trace_inputs_sha256="aaa")
    first.record(0, activations(0))
    first.close()
    with pytest.raises(ValueError, match="belongs to run run-A, not run-B"):
        Recorder(tmp_path / "run", resume=True, run_id="run-B")
    with pytest.raises(ValueError, match="different trace labels"):
        Recorder(tmp_path / "run", resume=True, trace_labels=np.arange(6)[::-1])
    with pytest.raises(ValueError, match="other trace inputs"):
        Recorder(tmp_path / "run", resume=True, trace_inputs_sha256="bbb")
    assert TraceStore.open(tmp_path / "run").n_slices == 1


def test_resume_on_a_fresh_path_starts_a_new_store(tmp_path):
    rec = Recorder(tmp_path / "new", resume=True)
    rec.record(0, activations(0))
    assert TraceStore.open(tmp_path / "new").n_slices == 1


def test_path_in_the_way_fails_at_construction(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "model.pt").write_bytes(b"weights")
    with pytest.raises(ValueError, match="not empty"):
        Recorder(tmp_path / "busy")


def test_recording_after_close_reopens_the_store(tmp_path):
    rec = Recorder(tmp_path / "run")
    rec.record(0, activations(0))
    rec.close()  # e.g. the end of one fit() call
    rec.record(5, activations(1))
    rec.log(loss=1.5)
    trace = TraceStore.open(tmp_path / "run").to_trace()
    np.testing.assert_array_equal(trace.steps, [0, 5])
    assert trace.scalars["loss"][1] == 1.5


def test_nothing_recorded_yet():
    rec = Recorder()
    with pytest.raises(ValueError, match="nothing has been recorded"):
        rec.to_trace()
    with pytest.raises(ValueError, match="no slice has been recorded"):
        rec.log(loss=1.0)
