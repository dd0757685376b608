"""``mphate embed / plot / report``: outputs for a user's own trace, and clear messages for bad input."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("plotly")

from plot_helpers import fake_embedding, synthetic_trace  # noqa: E402

from mphate.cli import main  # noqa: E402
from mphate.traces.embedding_file import load_embedding, save_embedding  # noqa: E402
from mphate.traces.io import save_npz  # noqa: E402

# small enough to embed in about a second; interslice_knn below the number of slices
FAST = ["--interslice-knn", "4", "-q"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    trace = synthetic_trace(n_slices=8, layer_sizes=(10, 10, 4), n_classes=3, per_class=3)
    bare = synthetic_trace(n_slices=8, layer_sizes=(10, 10, 4), n_classes=3, per_class=3, layers=False)
    out = {
        "folder": folder,
        "trace": save_npz(trace, folder / "run.npz"),
        "bare": save_npz(bare, folder / "bare.npz"),
        "emb2": save_embedding(folder / "emb2.npz", fake_embedding(trace), trace),
        "emb3": save_embedding(folder / "emb3.npz", fake_embedding(trace, 3), trace),
        "other": save_embedding(folder / "other.npz", np.zeros((7, 2))),
    }
    return out


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------- outputs
def test_embed_then_plot_and_report_from_the_saved_embedding(tmp_path, files, capsys):
    emb_file = tmp_path / "e.npz"
    code, out, err = run(capsys, "embed", files["trace"], "-o", emb_file, *FAST)
    assert code == 0, err
    embedding = load_embedding(emb_file)
    assert embedding.shape == (8 * 24, 2) and np.isfinite(embedding).all()

    png = tmp_path / "pic.png"
    code, out, err = run(capsys, "plot", files["trace"], "--embedding", emb_file, "-o", png, "--dpi", "40")
    assert code == 0, err
    assert f"wrote {png}" in out and png.stat().st_size > 1000

    rep = tmp_path / "rep"
    code, out, err = run(capsys, "report", files["trace"], "--embedding", emb_file,
                         "--embedding-3d", files["emb3"], "-o", rep, "--dpi", "30")
    assert code == 0, err
    for name in ("index.html", "colorings.png", "epoch.png", "layer.png", "class.png", "3d.png", "embedding.npz"):
        assert (rep / name).exists(), name
    assert "index.html" in out


def test_an_ambiguous_t_is_one_warning_line_and_the_report_shows_the_curve(tmp_path, files, capsys,
                                                                          monkeypatch):
    from mphate.embed import diffusion

    t = np.arange(1, 101, dtype=float)
    two_bends = 8 - 0.5 * np.minimum(t, 6) - 0.01 * t - 2.2 * np.clip((t - 40) / 30, 0, 1)
    monkeypatch.setattr(diffusion, "von_neumann_entropy", lambda eigenvalues, t_max=100: two_bends[:t_max])
    # t="knee" warns; t="auto" scores pictures instead of trusting the curve
    code, _, err = run(capsys, "embed", files["trace"], "-o", tmp_path / "e.npz", *FAST, "--t", "knee")
    assert code == 0
    assert err.count("mphate embed: warning: the von Neumann entropy curve has 2 knees") == 1
    assert "Traceback" not in err and "warnings.warn" not in err

    # the report fits 2-D and 3-D: the same warning once, and the curve as a figure
    rep = tmp_path / "rep"
    code, _, err = run(capsys, "report", files["trace"], "-o", rep, "--dpi", "30", *FAST, "--t", "knee")
    assert code == 0
    assert err.count("knees that fit about equally well") == 1
    assert (rep / "entropy.png").stat().st_size > 1000


def test_embed_options_reach_the_estimator(tmp_path, files, capsys):
    from mphate.cli import build_parser
    from mphate.cli._common import estimator_from_args

    parser = build_parser()
    args = parser.parse_args(["embed", "x.npz", "--spectral-stride", "3", "--t", "5", "--n-landmark", "none",
                              "--no-normalize", "--mds", "classic", "--n-jobs", "-1", "--random-state", "7"])
    est = estimator_from_args(args)
    assert (est.spectral_stride, est.t, est.n_landmark, est.normalize, est.mds, est.n_jobs, est.random_state) == (
        3, 5, None, False, "classic", -1, 7)
    assert estimator_from_args(parser.parse_args(["embed", "x.npz"])).spectral_stride == "auto"
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", str(files["trace"]), "--spectral-stride", "0", *FAST])
    assert exit_info.value.code == 2 and "spectral-stride" in capsys.readouterr().err


def test_plot_computes_the_embedding_when_none_is_given(tmp_path, files, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "plot", files["trace"], "--color-by", "epoch,loss", "--dpi", "30", *FAST)
    assert code == 0, err
    assert (tmp_path / "run_mphate.png").exists()  # default name: beside the user, from the trace's name


def test_report_without_layers_warns_and_still_writes(tmp_path, files, capsys):
    code, out, err = run(capsys, "report", files["bare"], "--embedding", files["emb2"], "-o", tmp_path / "r",
                         "--dpi", "30")
    assert code == 0, err
    assert "warning: colour by layer is unavailable" in err
    assert (tmp_path / "r" / "index.html").exists() and not (tmp_path / "r" / "layer.png").exists()


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize("command", ["embed", "plot", "report"])
def test_missing_trace_path(tmp_path, capsys, command):
    missing = tmp_path / "nope.npz"
    code, out, err = run(capsys, command, missing)
    assert code == 1
    assert f"mphate {command}: error: no trace at {missing}" in err
    assert "Traceback" not in err


def test_missing_embedding_file(tmp_path, files, capsys):
    code, _, err = run(capsys, "plot", files["trace"], "--embedding", tmp_path / "gone.npz", "-o", tmp_path / "p.png")
    assert code == 1 and f"embedding file not found: {tmp_path / 'gone.npz'}" in err


def test_embedding_of_another_trace(tmp_path, files, capsys):
    code, _, err = run(capsys, "plot", files["trace"], "--embedding", files["other"], "-o", tmp_path / "p.png")
    assert code == 1 and "has 7 rows but the trace has 8 slices x 24 units = 192 points" in err


def test_color_by_layer_without_layer_metadata(tmp_path, files, capsys):
    code, _, err = run(capsys, "plot", files["bare"], "--embedding", files["emb2"], "--color-by", "layer",
                       "-o", tmp_path / "p.png")
    assert code == 1
    assert "colour by layer is unavailable: this trace has no layer metadata" in err
    assert not (tmp_path / "p.png").exists()


def test_3d_asked_of_a_2d_embedding(tmp_path, files, capsys):
    code, _, err = run(capsys, "plot", files["trace"], "--embedding", files["emb2"], "--3d", "-o", tmp_path / "p.png")
    assert code == 1 and "--3d needs a 3-component embedding" in err and "--n-components 3" in err
    code, _, err = run(capsys, "plot", files["trace"], "--3d", "--n-components", "2")
    assert code == 1 and "--3d draws a 3-D view but --n-components 2" in err
    code, _, err = run(capsys, "report", files["trace"], "--embedding", files["emb2"],
                       "--embedding-3d", files["emb2"], "-o", tmp_path / "r")
    assert code == 1 and "3-D view needs an embedding with 3 columns; this one has 2" in err


def test_output_folder_blocked_by_a_file(tmp_path, files, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code, _, err = run(capsys, "report", files["trace"], "--embedding", files["emb2"], "-o", blocker / "rep")
    assert code == 1 and f"output folder {blocker / 'rep'} cannot be used: a file is in the way" in err
    code, _, err = run(capsys, "embed", files["trace"], "-o", blocker / "e.npz", *FAST)
    assert code == 1 and f"output folder {blocker}" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write to any folder")
def test_read_only_output_folder(tmp_path, files, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = run(capsys, "report", files["trace"], "--embedding", files["emb2"], "-o", locked)
    assert code == 1 and f"output folder {locked} is not writable" in err


def test_bad_parameter_values(files, capsys):
    with pytest.raises(SystemExit):
        main(["embed", str(files["trace"]), "--t", "soon"])
    assert "must be 'auto', 'knee' or a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["embed", str(files["trace"]), "--n-components", "4"])
