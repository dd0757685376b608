"""compare_runs without Dask: names, the table and its numbers, comparability, the cache, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from runs_helpers import SMALL_PARAMS, synthetic_runs, tear, write_store

from mphate.cli import main
from mphate.runs import compare_runs, embed_runs, resolve_runs
from mphate.runs.specs import content_digest
from mphate.runs.task import task_switches
from mphate.traces.io import save_npz
from mphate.traces.store import TraceStore
from mphate.traces.synthetic import make_trace

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return synthetic_runs(tmp_path_factory.mktemp("runs"), n=3)


def test_names_are_file_names_and_clashes_get_their_folder(tmp_path):
    for sub in ("seed0", "seed1"):
        (tmp_path / sub).mkdir()
        save_npz(make_trace(4, 6, 5, random_state=0), tmp_path / sub / "run.npz")
    specs = resolve_runs([tmp_path / "seed0" / "run.npz", tmp_path / "seed1" / "run.npz"])
    assert [s.name for s in specs] == ["seed0/run", "seed1/run"]
    with pytest.raises(ValueError, match="given twice"):
        resolve_runs([tmp_path / "seed0" / "run.npz"] * 2)
    with pytest.raises(FileNotFoundError, match="nope.trace"):
        resolve_runs([tmp_path / "seed0" / "run.npz", tmp_path / "nope.trace"])
    with pytest.raises(ValueError, match="no runs"):
        resolve_runs([])


def test_bad_arguments_fail_before_any_work(three, tmp_path):
    tmp_path = tmp_path / "never"
    with pytest.raises(ValueError, match="n_components must be 2"):
        compare_runs(three, tmp_path, n_components=3)
    with pytest.raises(ValueError, match="unknown embedding parameter"):
        compare_runs(three, tmp_path, intraslice_k=3)
    with pytest.raises(ValueError, match="not both"):
        compare_runs(three, tmp_path, workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        compare_runs(three, tmp_path, workers=0)
    assert not tmp_path.exists()


def test_table_rho_and_shared_scales(three, tmp_path):
    comparison = compare_runs(three, tmp_path / "out", quiet=True, **SMALL_PARAMS)
    assert comparison.comparable and comparison.note == ""
    rows = comparison.rows
    assert [r["run"] for r in rows] == ["run0", "run1", "run2"]
    for r in rows:
        assert r["status"] == "ok" and r["neighbor_k"] == 10
        assert 0 < r["intraslice"] <= 1 and 0 < r["interslice"] <= 1 and r["visualization_variance"] > 0
        assert r["memorization_error"] == pytest.approx(r["final_val_loss"] - r["final_loss"])
        assert np.isnan(r["task_switch_ari"])  # no task logged
    # the runs' memorisation errors differ (val_loss offset 0.05 a run): rho over 3 runs
    assert comparison.rho["n"] == 3 and comparison.rho["rho"] in (-1.0, -0.5, 0.5, 1.0)
    summary = json.loads(comparison.paths["summary"].read_text())
    assert summary["params"]["interslice_knn"] == 8 and summary["rho"] == comparison.rho
    page = comparison.paths["html"].read_text()
    assert "Spearman rho" in page and "runs compared" in page

    from mphate.plot.grid import shared_colorings
    from mphate.runs.compare import _panel

    colorings = {c.name: c for c in shared_colorings([_panel(r) for r in comparison.results])}
    assert list(colorings)[:3] == ["epoch", "layer", "class"]
    losses = np.concatenate([r["scalars"]["val_loss"] for r in comparison.results])
    assert colorings["val_loss"].vmin == pytest.approx(losses.min())  # one scale over all runs
    assert colorings["val_loss"].vmax == pytest.approx(losses.max())


def test_runs_of_other_sizes_are_compared_panel_by_panel(tmp_path):
    paths = synthetic_runs(tmp_path / "a", n=2) + synthetic_runs(tmp_path / "b", n=1, n_units=30)
    paths[2] = paths[2].rename(tmp_path / "wide.trace")
    comparison = compare_runs(paths, tmp_path / "out", quiet=True, **SMALL_PARAMS)
    assert not comparison.comparable and "unit counts differ (24, 30)" in comparison.note
    assert "rho" not in comparison.rho
    assert "compared panel by panel only" in comparison.paths["html"].read_text()


def test_task_switch_ari_where_a_task_is_logged(tmp_path):
    # one slice an epoch: the last slice of the old task, and the next (one epoch later)
    assert task_switches([0, 0, 0, 1, 1, 1, 2, 2], np.arange(1, 9)) == [(2, 3), (5, 6)]
    # two slices an epoch: one epoch into the new task is two slices on
    assert task_switches([0, 0, 0, 1, 1, 1, 1], np.arange(1, 8) / 2) == [(2, 4)]
    assert task_switches([0, 0, 0], np.arange(3)) == []
    trace = make_trace(20, 24, 20, random_state=0)
    path = write_store(tmp_path / "cl.trace", trace, task=np.repeat([0, 1], 10))
    (result,) = embed_runs([path], quiet=True, **SMALL_PARAMS)
    assert result["metrics"]["n_task_switches"] == 1
    assert -0.5 <= result["metrics"]["task_switch_ari"] <= 1


def test_cache_is_keyed_by_content_and_parameters(tmp_path):
    (path,) = synthetic_runs(tmp_path, n=1)
    out = tmp_path / "out"
    assert compare_runs([path], out, quiet=True, **SMALL_PARAMS).rows[0]["status"] == "ok"
    assert compare_runs({"renamed": path}, out, quiet=True, **SMALL_PARAMS).rows[0]["status"] == "cached"
    # other parameters, or another slice appended, are another entry
    assert compare_runs([path], out, quiet=True, **{**SMALL_PARAMS, "gamma": 1}).rows[0]["status"] == "ok"
    before = content_digest(path)
    with TraceStore.open(path, mode="a") as store:
        store.append(np.zeros((store.n_units, store.n_trace)) + np.arange(store.n_trace), step=99, epoch=21)
    assert content_digest(path) != before
    again = compare_runs([path], out, quiet=True, **SMALL_PARAMS)
    assert again.rows[0]["status"] == "ok" and again.rows[0]["n_slices"] == 21
    # a torn cache entry (crash mid-write of an older mphate, a full disk) is recomputed
    for entry in (out / "cache").glob("*.npz"):
        entry.write_bytes(entry.read_bytes()[:100])
    assert compare_runs([path], out, quiet=True, **SMALL_PARAMS).rows[0]["status"] == "ok"


def test_cli_writes_the_report_and_exits_1_on_a_failed_run(tmp_path, capsys):
    paths = synthetic_runs(tmp_path / "runs", n=3)
    tear(paths[1])
    out = tmp_path / "out"
    argv = ["compare-runs", *map(str, paths[:2]), f"last={paths[2]}", "-o", str(out),
            "--interslice-knn", "8", "--n-landmark", "none", "--dpi", "40"]
    assert main(argv + ["-q"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[0].startswith("mphate compare-runs: error: run run1: ValueError: corrupt trace store")
    assert "1 of 3 runs failed" in lines[1] and len(lines) == 2  # -q: nothing else on stderr
    assert captured.out.strip() == f"open {out / 'index.html'} in a browser"
    assert (out / "grid.png").stat().st_size > 1000
    names = [line.split(",")[0] for line in (out / "runs.csv").read_text().splitlines()[1:]]
    assert names == ["run0", "run1", "last"]

    assert main(["compare-runs", str(paths[0]), "-o", str(out), "--n-landmark", "none", "-q"]) == 1
    assert "every run failed: ValueError: interslice_knn" in capsys.readouterr().err
    assert main(["compare-runs", str(tmp_path / "missing.trace"), "-o", str(out)]) == 1
    assert "no trace at" in capsys.readouterr().err
