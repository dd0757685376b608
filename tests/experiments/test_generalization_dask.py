"""`mphate experiment generalization --workers 2`: each network trained and embedded as one task
on a real Dask LocalCluster of 2 worker processes, with the numbers of the in-process run."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("distributed")

from mphate.experiments import generalization  # noqa: E402
from mphate.runs.cache import load_result  # noqa: E402

NETWORKS = ("vanilla", "dropout", "random_pixels")


def _mnist_files(folder):
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(10), 30)
    np.savez(folder / "mnist.npz",
             x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), y_train=labels,
             x_test=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), y_test=labels[:50])
    return folder


def _entries(out):
    """Each network's cache entry (full precision, unlike the CSV), by network."""
    entries = [load_result(out / "cache", path.stem) for path in sorted((out / "cache").glob("*.npz"))]
    return {entry["network"]: entry for entry in entries}


def test_two_local_workers_give_the_in_process_numbers(tmp_path, capsys):
    from mphate.cli import main

    data = _mnist_files(tmp_path)  # read on the workers, from the path they are given
    argv = ["experiment", "generalization", "--quick", "--epochs", "3", "--networks", *NETWORKS,
            "--common-t", "5", "--data-dir", str(data), "-q"]
    assert main([*argv, "--workers", "2", "-o", str(tmp_path / "dask")]) == 0, capsys.readouterr().err
    here = generalization.run(tmp_path / "here", quick=True, epochs=3, variants=NETWORKS, common_t=(5,),
                              data_dir=data, quiet=True)

    on_dask, in_process = _entries(tmp_path / "dask"), _entries(tmp_path / "here")
    assert sorted(on_dask) == sorted(in_process) == sorted(NETWORKS)
    timings = {"train_seconds", "embed_seconds"}
    for name in NETWORKS:
        a, b = on_dask[name], in_process[name]
        assert a["key"] == b["key"]  # where a network ran is no part of what it is
        assert {k: v for k, v in a["row"].items() if k not in timings} == \
               {k: v for k, v in b["row"].items() if k not in timings}
        np.testing.assert_array_equal(a["embedding"], b["embedding"])
        for column in ("loss", "val_loss", "accuracy", "val_accuracy"):
            np.testing.assert_array_equal(a["scalars"][column], b["scalars"][column])
        # trained and embedded in a worker process, not in this one
        assert a["where"].rsplit(":", 1)[1] != str(os.getpid()) == b["where"].rsplit(":", 1)[1]
    with open(tmp_path / "dask" / "generalization.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["network"] for r in rows] == list(NETWORKS)
    assert float(rows[1]["visualization_variance"]) == pytest.approx(here["rows"][1]["visualization_variance"],
                                                                     rel=1e-5)
    for name in NETWORKS:
        a = np.load(tmp_path / "dask" / "embeddings" / f"{name}.npz")
        b = np.load(tmp_path / "here" / "embeddings" / f"{name}.npz")
        assert all(np.array_equal(a[k], b[k]) for k in ("embedding", "epochs", "unit_layer"))
