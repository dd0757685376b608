"""Offline data sets: sklearn digits, and MNIST from IDX / mnist.npz files the tests write."""
import gzip
import struct

import numpy as np
import pytest

from mphate.traces.datasets import load_digits_split, load_mnist, read_idx


def write_idx(path, array, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


def tiny_mnist(seed=0, n_train=12, n_test=5):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=n_test).astype(np.uint8),
    }


IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def test_digits_split_is_scaled_stratified_and_seeded():
    X_train, y_train, X_test, y_test = load_digits_split(test_size=0.25, random_state=3)
    assert X_train.dtype == np.float32 and X_train.shape[1] == 64
    assert len(X_train) + len(X_test) == 1797
    assert 0.0 <= X_train.min() and X_train.max() <= 1.0 and X_train.max() > 0.9
    # stratified: each class keeps its share in both parts
    np.testing.assert_allclose(np.bincount(y_test) / len(y_test), np.bincount(y_train) / len(y_train), atol=0.01)
    again = load_digits_split(test_size=0.25, random_state=3)
    np.testing.assert_array_equal(again[0], X_train)
    other = load_digits_split(test_size=0.25, random_state=4)
    assert not np.array_equal(other[1], y_train)
    assert load_digits_split(flatten=False)[0].shape[1:] == (8, 8)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_files(tmp_path, gz):
    arrays = tiny_mnist()
    for key, name in IDX_NAMES.items():
        write_idx(tmp_path / (name + (".gz" if gz else "")), arrays[key], gz=gz)
    X_train, y_train, X_test, y_test = load_mnist(tmp_path)
    assert X_train.shape == (12, 784) and X_test.shape == (5, 784) and X_train.dtype == np.float32
    np.testing.assert_allclose(X_train, arrays["x_train"].reshape(12, -1) / 255.0)
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    raw = load_mnist(tmp_path, flatten=False, normalize=False)
    np.testing.assert_array_equal(raw[0], arrays["x_train"])


def test_mnist_from_keras_npz(tmp_path):
    arrays = tiny_mnist(seed=1)
    np.savez(tmp_path / "mnist.npz", **arrays)
    from_dir = load_mnist(tmp_path)
    from_file = load_mnist(tmp_path / "mnist.npz")
    for a, b in zip(from_dir, from_file):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(from_dir[1], arrays["y_train"])


def test_idx_reader_checks_header_and_size(tmp_path):
    values = np.arange(12, dtype=">i4").reshape(3, 4)
    write_idx(tmp_path / "ints", values)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), values)
    raw = (tmp_path / "ints").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated or damaged"):
        read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"\x12\x34\x08\x01abcd")
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(tmp_path / "junk")


def test_missing_mnist_files_are_named(tmp_path):
    arrays = tiny_mnist()
    write_idx(tmp_path / IDX_NAMES["x_train"], arrays["x_train"])
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.*cannot download"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_mnist(tmp_path / "nowhere")
    np.savez(tmp_path / "partial.npz", x_train=arrays["x_train"])
    with pytest.raises(ValueError, match="lacks"):
        load_mnist(tmp_path / "partial.npz")
