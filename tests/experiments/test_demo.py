"""``mphate demo`` / ``run_demo``: train, trace, embed and report, at tiny size."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("plotly")

from conftest import DEMO, DEMO_POINTS, DEMO_UNITS  # noqa: E402

from mphate.cli import main  # noqa: E402
from mphate.experiments.demo import build_model, run_demo  # noqa: E402
from mphate.traces.embedding_file import load_embedding  # noqa: E402
from mphate.traces.io import load_trace  # noqa: E402
from mphate.traces.store import TraceStore  # noqa: E402

REPORT_FILES = ("html", "colorings", "epoch", "layer", "class", "3d", "entropy", "embedding")


def test_report_files(demo_report):
    for name in REPORT_FILES:
        assert demo_report[name].is_file() and demo_report[name].stat().st_size > 1000, name
    assert demo_report["html"].name == "index.html"
    assert demo_report["trace"] == demo_report["html"].parent / "trace"
    html = demo_report["html"].read_text(encoding="utf-8")
    assert f"M-PHATE demo: digits MLP, {DEMO['epochs']} epochs" in html


def test_trace_store_holds_every_epoch_of_every_hidden_unit(demo_report):
    trace = load_trace(demo_report["trace"])
    assert trace.data.shape == (DEMO["epochs"], DEMO_UNITS, 100)
    assert trace.layer_names == ["dense_1", "dense_2", "dense_3"]
    assert np.bincount(trace.unit_layer).tolist() == [DEMO["hidden"]] * 3
    # 10 training images per class, grouped by class
    assert trace.trace_labels.tolist() == np.repeat(np.arange(10), 10).tolist()
    assert trace.epochs.tolist() == list(range(1, DEMO["epochs"] + 1))
    assert np.all(np.diff(trace.steps) > 0)
    with TraceStore.open(demo_report["trace"]) as store:
        assert store.problem is None
        attrs = store.attrs
    # the Linear modules' outputs: the values before the LeakyReLU, as the paper traces
    assert attrs["layer_types"] == {f"dense_{i}": "Linear" for i in (1, 2, 3)}
    assert attrs["network"].startswith(f"64-{DEMO['hidden']}-{DEMO['hidden']}-{DEMO['hidden']}-10")


def test_scalars_show_learning(demo_report):
    scalars = load_trace(demo_report["trace"]).scalars
    assert set(scalars) == {"loss", "val_loss", "val_accuracy"}
    for values in scalars.values():
        assert values.shape == (DEMO["epochs"],) and np.isfinite(values).all()
    loss, val_loss, acc = scalars["loss"], scalars["val_loss"], scalars["val_accuracy"]
    assert loss[-5:].mean() < 0.5 * loss[:5].mean()
    assert val_loss[-5:].mean() < 0.5 * val_loss[:5].mean()
    assert acc[-1] > 0.6 and acc[-1] > acc[0] + 0.3  # 10 classes: chance is 0.1


def test_embeddings(demo_report):
    trace = load_trace(demo_report["trace"])
    emb = load_embedding(demo_report["embedding"], trace)
    emb3 = load_embedding(demo_report["embedding"], trace, key="embedding_3d")
    assert emb.shape == (DEMO_POINTS, 2) and emb3.shape == (DEMO_POINTS, 3)
    assert np.isfinite(emb).all() and np.isfinite(emb3).all()
    assert emb.std(axis=0).min() > 0
    with np.load(demo_report["embedding"]) as npz:
        params = json.loads(str(npz["params"]))
    assert params["n_landmark"] == DEMO["n_landmark"] and params["random_state"] == 0


def test_same_seed_same_report_and_rerun_replaces_the_trace(tmp_path):
    kw = dict(epochs=4, hidden=4, n_components_3d=False, dpi=20, quiet=True)
    first = run_demo(tmp_path / "a", **kw)
    trace_a = load_trace(first["trace"])
    emb_a = load_embedding(first["embedding"])
    again = run_demo(tmp_path / "a", **kw)  # same folder: the old trace store is replaced
    trace_b = load_trace(again["trace"])
    assert trace_b.n_slices == 4
    np.testing.assert_array_equal(trace_a.data, trace_b.data)
    np.testing.assert_allclose(emb_a, load_embedding(again["embedding"]))
    assert "3d" not in again
    other = load_trace(run_demo(tmp_path / "b", random_state=1, **kw)["trace"])
    assert not np.array_equal(trace_a.data, other.data)


def test_threads_train_on_one_and_embed_on_the_idle_cores_by_default(tmp_path, monkeypatch):
    import torch

    from mphate.embed.estimator import MPHATE

    seen = []
    fit = MPHATE.fit

    def recording_fit(self, X, y=None):
        seen.append(self.n_jobs)
        return fit(self, X, y)

    monkeypatch.setattr(MPHATE, "fit", recording_fit)
    before = torch.get_num_threads()
    kw = dict(epochs=4, hidden=4, n_components_3d=False, dpi=20, quiet=True)
    run_demo(tmp_path / "auto", **kw)
    run_demo(tmp_path / "two", threads=2, **kw)
    assert seen == [None, 2]
    assert torch.get_num_threads() == before  # training's thread count is put back


def test_demo_refuses_a_folder_whose_trace_is_not_a_store(tmp_path):
    (tmp_path / "trace").mkdir()
    (tmp_path / "trace" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a trace store"):
        run_demo(tmp_path, epochs=3, hidden=4, quiet=True)
    assert (tmp_path / "trace" / "mine.txt").read_text() == "keep me"


def test_model_shape():
    model = build_model()
    linears = [m for m in model if hasattr(m, "weight")]
    assert [tuple(m.weight.shape) for m in linears] == [(128, 64), (128, 128), (128, 128), (10, 128)]
    assert [type(m).__name__ for m in model][1] == "LeakyReLU" and model.act_1.negative_slope == 0.1


def test_cli_demo(tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["demo", "-q", "-o", str(out), "--epochs", "30", "--hidden", "8"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""  # -q: no progress bar, no log lines
    assert f"report: {(out / 'index.html').resolve()}" in captured.out and " s" in captured.out
    assert (out / "index.html").is_file() and (out / "colorings.png").is_file() and (out / "3d.png").is_file()
    assert load_trace(out / "trace").data.shape == (30, 24, 100)


def test_cli_demo_progress_and_errors(tmp_path, capsys):
    code = main(["demo", "-o", str(tmp_path / "r"), "--epochs", "3", "--hidden", "4", "--no-3d"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "[mphate demo] training and tracing" in captured.err
    assert "[mphate] kernel" in captured.err  # the estimator's timed stages
    assert "interslice_knn lowered to 2" in captured.err
    assert not (tmp_path / "r" / "3d.png").exists()

    code = main(["demo", "-q", "-o", str(tmp_path / "x"), "--epochs", "1"])
    assert code == 1 and "epochs must be at least 2" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "-q", "-o", str(blocker), "--epochs", "3"]) == 1
    assert "mphate demo: error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--epochs", "0"])
