"""compare_runs on a real Dask LocalCluster (2 worker processes): one task per run, the store read
on the worker, a torn store an error row, and a rerun that redoes only what is missing."""
from __future__ import annotations

import csv
import logging
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from runs_helpers import SMALL_PARAMS, synthetic_runs, tear  # noqa: E402

from mphate.runs import compare_runs, embed_runs  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster


def test_four_runs_on_a_local_cluster_survive_a_torn_store(cluster, tmp_path):
    paths = synthetic_runs(tmp_path / "runs", n=4)
    torn = tear(paths[2])
    out = tmp_path / "report"
    first = compare_runs(paths, out, scheduler=cluster.scheduler_address, quiet=True, **SMALL_PARAMS)

    status = {r["run"]: r["status"] for r in first.rows}
    assert status == {"run0": "ok", "run1": "ok", "run2": "error", "run3": "ok"}
    error = first.rows[2]["error"]
    assert "truncated" in error and torn.name in error and "run2.trace" in error
    # every embedding ran in a worker process, which read the store itself
    workers = set(cluster.scheduler_info["workers"])
    good = [r for r in first.results if not r.get("error")]
    assert {r["worker"] for r in first.results} <= workers
    assert all(r["embedding"].shape == (20 * 24, 2) for r in good)
    with open(first.paths["csv"]) as fh:
        table = list(csv.DictReader(fh))
    assert [row["status"] for row in table] == ["ok", "ok", "error", "ok"]
    assert table[2]["error"] == error and table[2]["visualization_variance"] == ""
    assert all(float(row["visualization_variance"]) > 0 for row in table if row["status"] == "ok")
    page = first.paths["html"].read_text()
    assert "run2" in page and "truncated" in page
    assert len(list((out / "cache").glob("*.npz"))) == 3  # failures are not cached

    # a rerun (as after a crash) embeds only what is missing: the torn run, still torn
    second = compare_runs(paths, out, scheduler=cluster.scheduler_address, quiet=True, **SMALL_PARAMS)
    assert [r["status"] for r in second.rows] == ["cached", "cached", "error", "cached"]
    for a, b in zip(first.results, second.results):
        if not a.get("error"):
            np.testing.assert_array_equal(a["embedding"], b["embedding"])

    # the store repaired (recorded again): only that run is embedded
    import shutil

    shutil.rmtree(paths[2])
    synthetic_runs(tmp_path / "fresh", n=3)[2].rename(paths[2])
    third = compare_runs(paths, out, scheduler=cluster.scheduler_address, quiet=True, **SMALL_PARAMS)
    assert [r["status"] for r in third.rows] == ["cached", "cached", "ok", "cached"]
    assert third.rho["n"] == 4 and -1 <= third.rho["rho"] <= 1


def test_the_dask_embedding_is_the_in_process_one(cluster, tmp_path):
    paths = synthetic_runs(tmp_path, n=2)
    on_dask = embed_runs(paths, scheduler=cluster.scheduler_address, quiet=True, **SMALL_PARAMS)
    here = embed_runs(paths, quiet=True, **SMALL_PARAMS)
    for a, b in zip(on_dask, here):
        assert a["key"] == b["key"]  # content and parameters: where it ran is no part of it
        np.testing.assert_allclose(a["embedding"], b["embedding"], rtol=1e-5, atol=1e-5)
        assert a["metrics"]["visualization_variance"] == pytest.approx(b["metrics"]["visualization_variance"])
    assert on_dask[0]["worker"].startswith("tcp://") and not here[0]["worker"].startswith("tcp://")
    assert str(os.getpid()) in here[0]["worker"]


def test_a_task_whose_worker_dies_is_an_error_row(cluster):
    from mphate.runs import TaskFailure, run_tasks

    results = run_tasks(os._exit, [(1,), (0,)], labels=["dies", "also"], scheduler=cluster.scheduler_address,
                        quiet=True)
    assert all(isinstance(r, TaskFailure) for r in results)
    assert "KilledWorker" in results[0].message or "died" in results[0].message.lower()


def test_an_unreachable_scheduler_is_one_line_at_once(tmp_path):
    """A closed port: the error names the address and the way out, in well under Dask's timeout."""
    import subprocess
    import sys
    import time

    from mphate.runs import run_tasks
    from mphate.runs.executor import CONNECT_TIMEOUT

    address = "tcp://127.0.0.1:1"
    start = time.perf_counter()
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:1"):
        run_tasks(os.getpid, [()], scheduler=address, quiet=True)
    assert time.perf_counter() - start < CONNECT_TIMEOUT

    run = synthetic_runs(tmp_path, n=1)[0]
    done = subprocess.run([sys.executable, "-m", "mphate", "compare-runs", str(run), "--scheduler", address,
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"mphate compare-runs: error: cannot reach the Dask scheduler at {address}")
    assert "--workers N" in lines[0]
