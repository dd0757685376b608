"""Trace input selection: fixed, class-balanced, seeded."""
import numpy as np
import pytest

from mphate.capture import select_trace_inputs, trace_indices


def labelled_data(n_per_class=(30, 25, 40)):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    rng = np.random.default_rng(7)
    order = rng.permutation(y.size)
    y = y[order]
    X = np.arange(y.size)[:, None] * np.ones((1, 3))  # row i holds i: shows which rows were taken
    return X, y


def test_balanced_grouped_by_class_and_matching_rows():
    X, y = labelled_data()
    X_trace, y_trace = select_trace_inputs(X, y, n_per_class=10, random_state=0)
    assert X_trace.shape == (30, 3)
    np.testing.assert_array_equal(y_trace, np.repeat([0, 1, 2], 10))
    rows = X_trace[:, 0].astype(int)
    np.testing.assert_array_equal(y[rows], y_trace)  # each input keeps its own label
    assert len(set(rows)) == 30


def test_seed_fixes_the_choice():
    _, y = labelled_data()
    same = trace_indices(y, 5, random_state=3)
    np.testing.assert_array_equal(same, trace_indices(y, 5, random_state=3))
    assert not np.array_equal(same, trace_indices(y, 5, random_state=4))


def test_one_hot_and_string_labels():
    _, y = labelled_data()
    one_hot = np.eye(3)[y]
    np.testing.assert_array_equal(trace_indices(one_hot, 4), trace_indices(y, 4))
    names = np.array(["cat", "dog", "eel"])[y]
    np.testing.assert_array_equal(trace_indices(names, 4), trace_indices(y, 4))


def test_classes_subset_and_unknown_class():
    _, y = labelled_data()
    picked = trace_indices(y, 3, classes=[2, 0])
    np.testing.assert_array_equal(y[picked], [2, 2, 2, 0, 0, 0])
    with pytest.raises(ValueError, match="not present"):
        trace_indices(y, 3, classes=[5])


def test_small_class_gives_what_it_has_with_a_warning():
    _, y = labelled_data((30, 4, 30))
    with pytest.warns(UserWarning, match="fewer than 10"):
        picked = trace_indices(y, 10)
    assert (y[picked] == 1).sum() == 4


def test_mismatched_lengths_and_bad_counts():
    X, y = labelled_data()
    with pytest.raises(ValueError, match="examples but y has"):
        select_trace_inputs(X[:-1], y)
    with pytest.raises(ValueError, match="at least 1"):
        trace_indices(y, 0)
    with pytest.raises(ValueError, match="give the labels"):
        select_trace_inputs(X)


def test_torch_tensors_and_datasets():
    torch = pytest.importorskip("torch")
    X, y = labelled_data()
    X_t, y_t = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    X_trace, y_trace = select_trace_inputs(X_t, y_t, n_per_class=2)
    assert isinstance(X_trace, torch.Tensor) and X_trace.shape == (6, 3)
    dataset = torch.utils.data.TensorDataset(X_t, y_t)
    X_ds, y_ds = select_trace_inputs(dataset, n_per_class=2)
    assert torch.equal(X_ds, X_trace)
    np.testing.assert_array_equal(y_ds, y_trace)

    class Plain(torch.utils.data.Dataset):  # labels only reachable by reading items
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return X_t[i], int(y[i])

    X_plain, _ = select_trace_inputs(Plain(), n_per_class=2)
    assert torch.equal(X_plain, X_trace)
