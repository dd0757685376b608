"""Keras 3 capture callback, run on the torch backend."""
import os
import sys

import numpy as np
import pytest

if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "torch"  # must be set before keras is first imported
pytest.importorskip("torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("keras was already imported with another backend", allow_module_level=True)

# keras 3.x on numpy 2 warns about its own __array__ calls; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from mphate.capture import KerasTraceCallback, select_trace_inputs  # noqa: E402
from mphate.traces.datasets import load_digits_split  # noqa: E402
from mphate.traces.store import TraceStore  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y, X_val, y_val = load_digits_split()
    X_trace, y_trace = select_trace_inputs(X, y, n_per_class=3)
    return X, y, X_val, y_val, X_trace, y_trace


def make_mlp():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu", name="fc1"),
            keras.layers.Dense(12, activation="tanh", name="fc2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def pre_activations(model, x):
    """Each Dense layer's output before its activation, from the weights, by hand."""
    w1, b1 = model.get_layer("fc1").get_weights()
    w2, b2 = model.get_layer("fc2").get_weights()
    w3, b3 = model.get_layer("logits").get_weights()
    h1 = x @ w1 + b1
    h2 = np.maximum(h1, 0) @ w2 + b2
    h3 = np.tanh(h2) @ w3 + b3
    return np.concatenate([h1, h2, h3], axis=1).T


class Snapshot(keras.callbacks.Callback):
    """Computes the expected slice at each epoch end, independently of the trace callback."""

    def __init__(self, x):
        super().__init__()
        self.x, self.expected = x, []

    def on_epoch_end(self, epoch, logs=None):
        self.expected.append(pre_activations(self.model, self.x))


def test_fit_records_pre_activations_and_logs_per_epoch(tmp_path, digits):
    X, y, X_val, y_val, X_trace, y_trace = digits
    model = make_mlp()
    trace_cb = KerasTraceCallback(X_trace, tmp_path / "run", labels=y_trace)
    snapshot = Snapshot(X_trace)
    model.fit(X, y, epochs=3, batch_size=128, validation_data=(X_val, y_val), verbose=0,
              callbacks=[trace_cb, snapshot])
    trace = TraceStore.open(tmp_path / "run").to_trace()
    assert trace.layer_names == ["fc1", "fc2", "logits"]
    np.testing.assert_array_equal(trace.unit_layer, [0] * 16 + [1] * 12 + [2] * 10)
    np.testing.assert_allclose(trace.data, np.stack(snapshot.expected), rtol=1e-4, atol=1e-5)
    assert (trace.data[:, :16] < 0).any(), "fc1 must be traced before its relu"
    steps_per_epoch = int(np.ceil(len(X) / 128))
    np.testing.assert_array_equal(trace.steps, steps_per_epoch * np.arange(1, 4))
    np.testing.assert_array_equal(trace.epochs, [1, 2, 3])
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert np.isfinite(trace.scalars[name]).all(), name
    np.testing.assert_array_equal(trace.trace_labels, y_trace)


def test_every_n_batches_and_post_activation_option(digits):
    X, y, X_val, y_val, X_trace, _ = digits
    model = make_mlp()
    callback = KerasTraceCallback(X_trace, layers=["fc1"], every_n_batches=5, pre_activation=False)
    model.fit(X[:640], y[:640], epochs=2, batch_size=64, verbose=0, callbacks=[callback],  # 10 batches/epoch
              validation_data=(X_val, y_val))
    trace = callback.to_trace()
    # the epoch end falls on a per-batch slice: no duplicate, its logs join that slice
    np.testing.assert_array_equal(trace.steps, [5, 10, 15, 20])
    np.testing.assert_allclose(trace.epochs, [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(np.isfinite(trace.scalars["val_loss"]), [False, True, False, True])
    w, b = model.get_layer("fc1").get_weights()
    np.testing.assert_allclose(trace.data[-1], np.maximum(X_trace @ w + b, 0).T, rtol=1e-4, atol=1e-5)


def test_conv_layers_give_one_unit_per_channel(digits):
    X, y, _, _, X_trace, _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(5, 3, name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="out"),
        ]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    images = X_trace.reshape(-1, 8, 8, 1)
    callback = KerasTraceCallback(images)
    model.fit(X.reshape(-1, 8, 8, 1)[:256], y[:256], epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    trace = callback.to_trace()
    assert trace.layer_names == ["conv", "out"] and trace.n_units == 5 + 10
    feature_maps = keras.ops.convert_to_numpy(model.get_layer("conv")(images))  # (n, 6, 6, 5)
    np.testing.assert_allclose(trace.data[0, :5], feature_maps.mean(axis=(1, 2)).T, rtol=1e-4, atol=1e-5)


def test_unknown_layer_and_wrong_input_shape(tmp_path, digits):
    X, y, _, _, X_trace, _ = digits
    model = make_mlp()
    with pytest.raises(ValueError, match=r"unknown layer name\(s\) \['fc7'\]; available: \['fc1', 'fc2', 'logits'\]"):
        model.fit(X[:64], y[:64], epochs=1, verbose=0, callbacks=[KerasTraceCallback(X_trace, layers=["fc7"])])
    wrong = KerasTraceCallback(X_trace[:, :60], tmp_path / "run")
    with pytest.raises(ValueError, match="trace inputs .* shaped like a training batch"):
        model.fit(X[:64], y[:64], epochs=1, verbose=0, callbacks=[wrong])
    assert not (tmp_path / "run").exists()
