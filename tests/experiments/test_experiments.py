"""`mphate experiment generalization|continual` at a tiny size: the outputs and their structure."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mphate.experiments import continual, generalization, training  # noqa: E402


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- training pieces


def test_make_mlp_layout_and_pre_activations():
    model = training.make_mlp(5, (4, 3), 2, dropout=0.5, seed=0)
    assert [name for name, _ in model.named_children()] == ["fc1", "act_1", "drop_1", "fc2", "act_2", "drop_2", "out"]
    assert model.hidden_names == ["fc1", "fc2"] and model.act_1.negative_slope == 0.1
    model.eval()
    x = torch.randn(7, 5)
    out = model(x)
    assert out.shape == (7, 2) and [tuple(h.shape) for h in model.pre_activations] == [(7, 4), (7, 3)]
    torch.testing.assert_close(model.pre_activations[0], model.fc1(x))  # before the nonlinearity
    again = training.make_mlp(5, (4, 3), 2, dropout=0.5, seed=0)
    torch.testing.assert_close(again.fc2.weight, model.fc2.weight)  # seed: the same weights
    relu = training.make_mlp(5, (4,), 2, activation="relu", hidden_name="dense_{}", output_name="output")
    assert [n for n, _ in relu.named_children()] == ["dense_1", "act_1", "output"]
    assert type(relu.act_1).__name__ == "ReLU"
    for name, module in (("tanh", "Tanh"), ("gelu", "GELU")):
        model = training.make_mlp(5, (4,), 2, activation=name, seed=0)
        assert type(model.act_1).__name__ == module
        model(x)
        torch.testing.assert_close(model.act_1(model.pre_activations[0]), getattr(torch.nn, module)()(model.fc1(x)))
    with pytest.raises(ValueError, match="activation must be one of leaky_relu, relu, tanh, gelu"):
        training.make_mlp(5, (4,), 2, activation="sigmoid")


def test_train_visits_every_example_once_per_epoch_and_calls_the_hooks():
    X, y = torch.randn(10, 3), torch.arange(10) % 2
    model = training.make_mlp(3, (4,), 2, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen_rows, batches, epochs = [], [], []

    def make_batch(Xb, yb):
        seen_rows.append(Xb)
        return torch.cat([Xb, Xb[:1]]), torch.cat([yb, yb[:1]])  # one extra example per batch

    def loss(Xb, yb):
        assert len(Xb) in (5, 3)  # a batch of 4 (the last: 2) plus the extra one
        return torch.nn.functional.cross_entropy(model(Xb), yb)

    training.train(model, opt, X, y, epochs=2, batch_size=4, generator=torch.Generator().manual_seed(0),
                   loss=loss, make_batch=make_batch, on_batch=batches.append, on_epoch=epochs.append)
    assert epochs == [1, 2]
    assert [(b.epoch, b.seen, b.n, b.size) for b in batches] == [
        (1, 4, 10, 4), (1, 8, 10, 4), (1, 10, 10, 2), (2, 4, 10, 4), (2, 8, 10, 4), (2, 10, 10, 2)]
    assert all(b.loss.ndim == 0 and np.isfinite(b.loss.item()) for b in batches)
    first_epoch = torch.cat(seen_rows[:3])
    # each epoch is a permutation of the data: every row exactly once
    assert sorted(map(tuple, first_epoch.tolist())) == sorted(map(tuple, X.tolist()))
    assert not torch.equal(first_epoch, torch.cat(seen_rows[3:]))  # a fresh order each epoch


def test_train_is_reproducible_from_its_seeds_and_evaluate_scores_all_examples():
    data = training.load_data(None, 0)
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)

    def fit(order_seed):
        model = training.make_mlp(64, (8,), 10, seed=0)
        training.train(model, torch.optim.Adam(model.parameters(), lr=1e-2), X, y, epochs=2, batch_size=128,
                       generator=torch.Generator().manual_seed(order_seed))
        return model

    a, b, c = fit(0), fit(0), fit(1)
    assert torch.equal(a.fc1.weight, b.fc1.weight) and not torch.equal(a.fc1.weight, c.fc1.weight)
    loss, acc = training.evaluate(a, X, y)
    with torch.no_grad():
        logits = a(X)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item()) and acc > 0.3
    assert not a.training  # evaluate leaves the model in evaluation mode


def test_torch_threads_restores_the_thread_count():
    before = torch.get_num_threads()
    with training.torch_threads(1 if before > 1 else 2):
        assert torch.get_num_threads() != before
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), training.torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_rehearsal_buffer_keeps_an_even_share_of_every_task():
    replay = continual.Rehearsal(12, np.random.default_rng(0))
    assert replay.make_batch() is None  # nothing to replay during the first task
    for task in range(3):
        X = torch.full((20, 2), float(task))
        replay.keep(X, torch.full((20,), task), task)
    assert [len(y) for y in replay.y] == [4, 4, 4]
    join = replay.make_batch()
    Xb, yb = join(torch.zeros(3, 2), torch.full((3,), 9))
    assert len(yb) == 6 and (yb[:3] == 9).all() and set(yb[3:].tolist()) <= {0, 1, 2}
    torch.testing.assert_close(Xb[3:, 0], yb[3:].float())  # replayed inputs travel with their labels


def test_old_private_training_module_forwards_with_a_warning():
    import importlib
    import sys

    sys.modules.pop("mphate.experiments._train", None)
    with pytest.warns(DeprecationWarning, match="mphate.experiments.training"):
        old = importlib.import_module("mphate.experiments._train")
    assert old.train_generalization is generalization.train_generalization
    assert old.load_data is training.load_data


def test_continual_heads_and_targets():
    y = torch.tensor([0, 1, 4, 5, 9])
    task = y // 2
    assert continual.continual_targets("task", y, task).tolist() == [0, 1, 0, 1, 1]
    assert continual.continual_targets("domain", y, task).tolist() == [0, 1, 0, 1, 1]
    assert continual.continual_targets("class", y, task).tolist() == [0, 1, 4, 5, 9]
    logits = torch.arange(50, dtype=torch.float32).reshape(5, 10)
    masked = continual.continual_logits("task", logits, task)
    # each row keeps only its own task's two logits
    assert masked.tolist() == [[0, 1], [10, 11], [24, 25], [34, 35], [48, 49]]
    assert continual.continual_logits("class", logits, task) is logits


def test_generalization_corruptions():
    data = training.load_data(None, 0)
    X, y = generalization.generalization_inputs(data, "vanilla")
    assert X is data.X_train and y is data.y_train
    X, y = generalization.generalization_inputs(data, "random_labels")
    assert X is data.X_train and sorted(y) == sorted(data.y_train) and (y != data.y_train).mean() > 0.5
    X, y = generalization.generalization_inputs(data, "random_pixels")
    assert y is data.y_train and X.shape == data.X_train.shape
    np.testing.assert_allclose(X.mean(axis=0), data.X_train.mean(axis=0), atol=0.1)
    # no trace of the images beyond the per-pixel mean the noise is centred on
    mean = data.X_train.mean(axis=0)
    assert abs(np.corrcoef((X - mean).ravel(), (data.X_train - mean).ravel())[0, 1]) < 0.05


def test_train_generalization_traces_every_epoch():
    res = generalization.train_generalization("activity_l2", epochs=3, hidden=(6, 5, 4), n_per_class=2, lr=1e-2)
    trace = res["trace"]
    assert trace.data.shape == (3, 15, 20)  # epochs x (6 + 5 + 4) units x (2 per class x 10)
    assert trace.layer_names == ["fc1", "fc2", "fc3"]
    assert list(trace.epochs) == [1, 2, 3]
    np.testing.assert_allclose(trace.scalars["val_loss"], res["history"]["val_loss"])
    assert sorted(set(trace.trace_labels.tolist())) == list(range(10))


def test_train_continual_switches_and_rehearsal():
    res = continual.train_continual("domain", "rehearsal", epochs_per_task=1, hidden=(8, 8), n_per_class=2,
                                     trace_every=1)
    trace = res["trace"]
    # about 290 examples per task, batch 128: 3 batches per task-epoch, 5 tasks
    assert res["steps_per_task_epoch"] == 3 and trace.n_slices == 15
    assert res["task_end_steps"] == [3, 6, 9, 12, 15]
    assert res["switch_slices"] == [3, 6, 9, 12]
    assert trace.scalars["task"].tolist() == [t for t in range(5) for _ in range(3)]
    assert res["buffer_size"] == round(1437 / 12)
    assert set(res["final"]) >= {"val_loss", "val_accuracy", "val_loss_task4"}


# --------------------------------------------------------------------------- whole experiments


def test_generalization_run_tiny(tmp_path):
    variants = ("vanilla", "dropout", "random_labels")
    result = generalization.run(tmp_path, quick=True, epochs=6, variants=variants, quiet=True, common_t=(1, 40))
    assert result["failed"] == {}
    rows = _rows(tmp_path / "generalization.csv")
    assert [r["network"] for r in rows] == list(variants)
    for r in rows:
        assert float(r["memorization_error"]) == pytest.approx(
            float(r["final_val_loss"]) - float(r["final_train_loss"]), abs=1e-5)
        assert float(r["visualization_variance"]) > 0
        assert int(r["embedded_slices"]) == 6
        # the automatic t each network got, and the knees of its entropy curve, best first
        assert 1 <= int(r["t"]) <= 100 and all(int(t) >= 1 for t in r["t_candidates"].split())
        # every network also embedded at the common times: one diffusion step keeps more of the
        # spread than forty
        assert float(r["variance_t1"]) > float(r["variance_t40"]) > 0
    history = _rows(tmp_path / "generalization_history.csv")
    assert len(history) == 3 * 6 and set(history[0]) >= {"network", "epoch", "loss", "val_loss"}
    summary = json.loads((tmp_path / "generalization_summary.json").read_text())
    assert summary["settings"]["epochs"] == 6 and summary["data"] == "digits"
    assert -1 <= summary["spearman_rho"] <= 1
    assert result["spearman_rho"] == summary["spearman_rho"]
    assert set(summary["spearman_by_t"]) == {"1", "40"}
    assert summary["spearman_by_t"]["40"]["rho"] == result["spearman_by_t"][40][0]
    for name in ("generalization.png", "generalization_losses.png", "generalization_variance.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    emb = np.load(tmp_path / "embeddings" / "vanilla.npz")
    assert emb["embedding"].shape == (6 * 48, 2)
    assert summary["workers"] is None and summary["scheduler"] is None and summary["cached"] == []
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3  # one entry per network


def test_generalization_keeps_each_network_and_reports_the_one_that_failed(tmp_path, monkeypatch, capsys):
    """One network failing is an error line and exit status 1, the others are in the outputs; the
    rerun trains only that one, taking the others from DIR/cache with the same numbers."""
    from mphate.cli import main

    real, trained = generalization.train_generalization, []

    def flaky(variant, **kwargs):
        trained.append(variant)
        if variant == "dropout" and len(trained) < 4:
            raise RuntimeError("out of memory\nmore detail")
        return real(variant, **kwargs)

    monkeypatch.setattr(generalization, "train_generalization", flaky)
    out = tmp_path / "gen"
    argv = ["experiment", "generalization", "--quick", "--epochs", "3", "--networks", "vanilla", "dropout",
            "kernel_l1", "--common-t", "5", "-o", str(out)]
    assert main([*argv, "-q"]) == 1
    err = capsys.readouterr().err
    assert "mphate experiment generalization: error: network dropout: RuntimeError: out of memory" in err
    assert "1 of 3 networks failed" in err and "Traceback" not in err and "more detail" not in err
    first = _rows(out / "generalization.csv")
    assert [r["network"] for r in first] == ["vanilla", "kernel_l1"]
    summary = json.loads((out / "generalization_summary.json").read_text())
    assert summary["failed"] == {"dropout": "RuntimeError: out of memory"}

    assert main(argv) == 0
    err = capsys.readouterr().err
    assert trained == ["vanilla", "dropout", "kernel_l1", "dropout"]  # only the failed one again
    assert "vanilla: from the cache" in err and "kernel_l1: from the cache" in err
    second = _rows(out / "generalization.csv")
    assert [r["network"] for r in second] == ["vanilla", "dropout", "kernel_l1"]
    assert [second[0], second[2]] == first  # timings included: the cached rows are the rows
    summary = json.loads((out / "generalization_summary.json").read_text())
    assert summary["failed"] == {} and summary["cached"] == ["vanilla", "kernel_l1"]

    assert main([*argv, "-q", "--no-cache"]) == 0
    assert trained[4:] == ["vanilla", "dropout", "kernel_l1"]


def test_generalization_every_network_failing_is_one_line(tmp_path, monkeypatch, capsys):
    from mphate.cli import main

    def broken(variant, **kwargs):
        raise RuntimeError("no GPU")

    monkeypatch.setattr(generalization, "train_generalization", broken)
    argv = ["experiment", "generalization", "--quick", "--networks", "vanilla", "dropout", "-q", "-o", str(tmp_path)]
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == "mphate experiment: error: every network failed: RuntimeError: no GPU"


def test_generalization_n_jobs_keyword_is_deprecated_for_workers():
    with pytest.warns(DeprecationWarning, match="workers="):
        assert generalization._workers_from_n_jobs(3, None) == 3
    with pytest.warns(DeprecationWarning):
        assert generalization._workers_from_n_jobs(1, None) is None  # one process: this one
    assert generalization._workers_from_n_jobs(None, 2) == 2


def test_continual_run_tiny(tmp_path):
    result = continual.run(tmp_path, quick=True, epochs=1, scenarios=("task", "class"),
                           learners=("adam", "rehearsal"), n_jobs=1, quiet=True)
    rows = _rows(tmp_path / "continual.csv")
    assert [(r["scenario"], r["learner"]) for r in rows] == [
        ("task", "adam"), ("task", "rehearsal"), ("class", "adam"), ("class", "rehearsal")]
    for r in rows:
        aris = [float(r[f"ari_switch{i}"]) for i in range(1, 5)]
        assert all(-1 <= a <= 1 for a in aris)
        assert float(r["ari"]) == pytest.approx(np.mean(aris), abs=1e-5)
        assert int(r["slices"]) == 15 and int(r["points"]) == 15 * 32
    assert rows[1]["buffer_size"] != "0" and rows[0]["buffer_size"] == "0"
    history = _rows(tmp_path / "continual_history.csv")
    assert len(history) == 4 * 15 and {"task", "val_loss_task0", "loss"} <= set(history[0])
    summary = json.loads((tmp_path / "continual_summary.json").read_text())
    assert summary["settings"]["interslice_knn"] == 12
    assert set(summary["spearman_rho_within_scenario"]) == {"task", "class"}
    assert result["rows"][0]["ari"] == pytest.approx(float(rows[0]["ari"]), abs=1e-5)
    for name in ("continual_time.png", "continual_task.png", "continual_losses.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_experiment_cli_mnist_files(tmp_path, capsys):
    """Two networks trained on MNIST-shaped data read from an .npz (on Dask workers:
    test_generalization_dask.py)."""
    from mphate.cli import main

    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(10), 30)
    np.savez(tmp_path / "mnist.npz",
             x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), y_train=labels,
             x_test=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), y_test=labels[:50])
    out = tmp_path / "gen"
    code = main(["experiment", "generalization", "--quick", "--epochs", "3", "--networks", "vanilla",
                 "kernel_l1", "--data-dir", str(tmp_path), "-o", str(out), "-q"])
    assert code == 0
    rows = _rows(out / "generalization.csv")
    assert [r["network"] for r in rows] == ["vanilla", "kernel_l1"]
    summary = json.loads((out / "generalization_summary.json").read_text())
    assert summary["data"] == "mnist" and summary["n_train"] == 300 and summary["workers"] is None
    # bad arguments: one line, exit code 1
    assert main(["experiment", "continual", "--data-dir", str(tmp_path / "nowhere"), "-q"]) == 1
    assert "no MNIST data" in capsys.readouterr().err
    assert main(["experiment"]) == 2
    with pytest.raises(SystemExit):
        main(["experiment", "generalization", "--common-t", "0"])
    assert "positive integer diffusion time" in capsys.readouterr().err
