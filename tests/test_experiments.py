"""`mphate experiment generalization|continual` at a tiny size: the outputs and their structure."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mphate.experiments import _train, continual, generalization  # noqa: E402


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- training pieces


def test_continual_heads_and_targets():
    y = torch.tensor([0, 1, 4, 5, 9])
    task = y // 2
    assert _train._continual_targets("task", y, task).tolist() == [0, 1, 0, 1, 1]
    assert _train._continual_targets("domain", y, task).tolist() == [0, 1, 0, 1, 1]
    assert _train._continual_targets("class", y, task).tolist() == [0, 1, 4, 5, 9]
    logits = torch.arange(50, dtype=torch.float32).reshape(5, 10)
    masked = _train._continual_logits("task", logits, task)
    # each row keeps only its own task's two logits
    assert masked.tolist() == [[0, 1], [10, 11], [24, 25], [34, 35], [48, 49]]
    assert _train._continual_logits("class", logits, task) is logits


def test_generalization_corruptions():
    data = _train.load_data(None, 0)
    X, y = _train.generalization_inputs(data, "vanilla")
    assert X is data.X_train and y is data.y_train
    X, y = _train.generalization_inputs(data, "random_labels")
    assert X is data.X_train and sorted(y) == sorted(data.y_train) and (y != data.y_train).mean() > 0.5
    X, y = _train.generalization_inputs(data, "random_pixels")
    assert y is data.y_train and X.shape == data.X_train.shape
    np.testing.assert_allclose(X.mean(axis=0), data.X_train.mean(axis=0), atol=0.1)
    # no trace of the images beyond the per-pixel mean the noise is centred on
    mean = data.X_train.mean(axis=0)
    assert abs(np.corrcoef((X - mean).ravel(), (data.X_train - mean).ravel())[0, 1]) < 0.05


def test_train_generalization_traces_every_epoch():
    res = _train.train_generalization("activity_l2", epochs=3, hidden=(6, 5, 4), n_per_class=2, lr=1e-2)
    trace = res["trace"]
    assert trace.data.shape == (3, 15, 20)  # epochs x (6 + 5 + 4) units x (2 per class x 10)
    assert trace.layer_names == ["fc1", "fc2", "fc3"]
    assert list(trace.epochs) == [1, 2, 3]
    np.testing.assert_allclose(trace.scalars["val_loss"], res["history"]["val_loss"])
    assert sorted(set(trace.trace_labels.tolist())) == list(range(10))


def test_train_continual_switches_and_rehearsal():
    res = _train.train_continual("domain", "rehearsal", epochs_per_task=1, hidden=(8, 8), n_per_class=2,
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
    result = generalization.run(tmp_path, quick=True, epochs=6, variants=variants, n_jobs=1, quiet=True,
                                common_t=(1, 40))
    rows = _rows(tmp_path / "generalization.csv")
    assert [r["network"] for r in rows] == list(variants)
    for r in rows:
        assert float(r["memorization_error"]) == pytest.approx(
            float(r["final_val_loss"]) - float(r["final_train_loss"]), abs=1e-5)
        assert float(r["visualization_variance"]) > 0
        assert int(r["embedded_slices"]) == 6
        # the automatic t each network got, and its rival knees, best first
        assert int(r["t"]) == int(r["t_candidates"].split()[0]) >= 1
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


def test_experiment_cli_parallel_and_mnist_files(tmp_path, capsys):
    """Two networks trained in two worker processes, on MNIST-shaped data read from an .npz."""
    from mphate.cli import main

    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(10), 30)
    np.savez(tmp_path / "mnist.npz",
             x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), y_train=labels,
             x_test=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), y_test=labels[:50])
    out = tmp_path / "gen"
    code = main(["experiment", "generalization", "--quick", "--epochs", "3", "--networks", "vanilla",
                 "kernel_l1", "--n-jobs", "2", "--data-dir", str(tmp_path), "-o", str(out), "-q"])
    assert code == 0
    rows = _rows(out / "generalization.csv")
    assert [r["network"] for r in rows] == ["vanilla", "kernel_l1"]
    summary = json.loads((out / "generalization_summary.json").read_text())
    assert summary["data"] == "mnist" and summary["n_train"] == 300 and summary["n_jobs"] == 2
    # bad arguments: one line, exit code 1
    assert main(["experiment", "continual", "--data-dir", str(tmp_path / "nowhere"), "-q"]) == 1
    assert "no MNIST data" in capsys.readouterr().err
    assert main(["experiment"]) == 2
    with pytest.raises(SystemExit):
        main(["experiment", "generalization", "--common-t", "0"])
    assert "positive integer diffusion time" in capsys.readouterr().err
