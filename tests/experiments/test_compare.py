"""`mphate compare`: the baselines' building blocks, and the whole comparison at a tiny size."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mphate.experiments import compare
from mphate.traces.trace import Trace


def _walk_trace(n_slices=12, n_units=15, n_trace=10, seed=0):
    """Units drifting slowly: each slice is the last plus a little noise."""
    rng = np.random.default_rng(seed)
    data = np.cumsum(rng.normal(scale=0.3, size=(n_slices, n_units, n_trace)), axis=0)
    data += rng.normal(size=(1, n_units, n_trace)) * 3
    return Trace(data.astype(np.float32), unit_layer=np.arange(n_units) * 3 // n_units,
                 layer_names=["a", "b", "c"], trace_labels=np.arange(n_trace) % 5)


def test_alpha_decay_kernel_by_hand():
    # 1-D points 0, 1, 3; knn = 1: sigma_0 = 1, sigma_1 = 1, sigma_2 = 2; decay 2
    X = np.array([[0.0], [1.0], [3.0]])
    dist, idx = compare.knn(X, 2)
    K = compare.alpha_decay_kernel(dist, idx, knn=1, decay=2, threshold=0).toarray()
    k01 = (np.exp(-1) + np.exp(-1)) / 2            # d = 1: (1/1)^2 both ways
    k12 = (np.exp(-(2 / 1) ** 2) + np.exp(-(2 / 2) ** 2)) / 2
    k02 = (np.exp(-(3 / 1) ** 2) + np.exp(-(3 / 2) ** 2)) / 2
    expected = np.array([[1, k01, k02], [k01, 1, k12], [k02, k12, 1]])
    np.testing.assert_allclose(K, expected, rtol=1e-12)


def test_knn_from_distances_matches_points():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3))
    D = np.linalg.norm(X[:, None] - X[None], axis=2)
    d1, i1 = compare.knn(X, 4)
    d2, i2 = compare.knn_from_distances(D, 4)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, atol=1e-6)


def test_classical_mds_recovers_a_planar_configuration():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 2)) * [3, 1]
    D = np.linalg.norm(X[:, None] - X[None], axis=2)
    Y = compare.classical_mds(D, 2)
    np.testing.assert_allclose(np.linalg.norm(Y[:, None] - Y[None], axis=2), D, atol=1e-6)


def test_diffusion_map_separates_two_clusters_and_skips_components():
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 50])
    dist, idx = compare.knn(X, 8)  # two components: both trivial eigenvectors are skipped
    Y = compare.diffusion_map(dist, idx)
    assert Y.shape == (60, 2) and np.isfinite(Y).all()
    assert np.ptp(Y[:30], axis=0).max() > 0 and np.ptp(Y[30:], axis=0).max() > 0


def test_multislice_geodesics_are_a_metric():
    trace = _walk_trace(6, 9, 8)
    D = compare.multislice_geodesics(np.asarray(trace.data), interslice_knn=3)
    assert D.shape == (54, 54)
    np.testing.assert_allclose(D, D.T)
    assert np.all(np.diag(D) == 0) and np.all(D[~np.eye(54, dtype=bool)] > 0)
    # triangle inequality through any middle point
    assert np.all(D[:, None, :] <= D[:, :, None] + D[None, :, :] + 1e-9)


def test_subsample_keeps_enough_slices_and_units_for_k40():
    s, u = compare.subsample(150, 384, 10000)
    assert len(s) == 81 and len(u) == 123 and len(s) * len(u) <= 10000
    assert s[0] == 0 and s[-1] == 149 and u[-1] == 383
    s, u = compare.subsample(60, 384, 10000)  # all slices when fewer than 81
    assert len(s) == 60 and len(u) == 166
    s, u = compare.subsample(10, 10, 1000)
    assert len(s) == 10 and len(u) == 10


def test_phate_flattened_runs_with_and_without_landmarks():
    X = np.random.default_rng(4).normal(size=(120, 5))
    full = compare.phate_flattened(X, n_landmark=None)
    marks = compare.phate_flattened(X, n_landmark=40)
    assert full.shape == marks.shape == (120, 2)
    assert np.isfinite(full).all() and np.isfinite(marks).all()


def test_compare_run_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "umap_available", lambda: False)
    trace = _walk_trace()
    result = compare.run(trace, tmp_path, ks=(3, 5), max_points=100, quiet=True)
    # AlignedUMAP is skipped, and says why
    assert "aligned_umap" in result["skipped"]
    assert "not installed" in result["skipped"]["aligned_umap"]
    methods = [m for m in compare.METHODS if m != "aligned_umap"]
    table = {row["method"]: row for row in result["table"]}
    assert list(table) == [compare.METHODS[m].label for m in methods]
    s, u = result["subsample"]
    # k = 5 needs 2 * 5 + 1 slices and units, which outranks max_points
    assert (len(s), len(u)) == (11, 11)
    for m in methods:
        row = table[compare.METHODS[m].label]
        assert row["subsampled"].startswith("yes") == compare.METHODS[m].needs_subsample
        for key in ("intra3", "inter3", "intra5", "inter5", "intra3_raw", "inter5_raw"):
            assert 0 <= row[key] <= 1
        assert row["seconds"] >= 0
    # long table: every method on the subsample, full-size methods also on everything
    scopes = {(r["method"], r["scope"]) for r in result["rows"]}
    assert ("mphate", "all") in scopes and ("isomap", "all") not in scopes
    assert all((m, "subsample") in scopes for m in methods)
    for name in ("compare_table.csv", "compare_scores.csv", "compare_summary.json", "compare.png"):
        assert (tmp_path / name).stat().st_size > 0
    header = (tmp_path / "compare_table.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["method", "seconds", "points", "subsampled"]
    summary = json.loads((tmp_path / "compare_summary.json").read_text())
    assert summary["ks"] == [3, 5] and "subsample" in summary["subsample"]["note"]
    assert np.load(tmp_path / "embedding_mphate.npy").shape == (12 * 15, 2)


def test_compare_cli_reports_unscorable_k_and_unknown_method(tmp_path, capsys):
    from mphate.cli import main
    from mphate.traces.io import save_npz

    path = save_npz(_walk_trace(8, 9, 6), tmp_path / "t.npz")
    assert main(["compare", str(path), "-o", str(tmp_path / "out"), "--methods", "mphate", "dm",
                 "--k", "3", "40", "-q"]) == 0
    header = (tmp_path / "out" / "compare_table.csv").read_text().splitlines()[0]
    assert "intra3" in header and "intra40" not in header
    assert main(["compare", str(path), "-o", str(tmp_path / "o2"), "--methods", "nope", "-q"]) == 1
    assert "unknown method" in capsys.readouterr().err


@pytest.mark.skipif(not compare.umap_available(), reason="umap-learn not installed")
def test_aligned_umap_gives_slice_major_positions():
    trace = _walk_trace(4, 20, 8)
    emb = compare.embed("aligned_umap", np.asarray(trace.data))
    assert emb.shape == (80, 2) and np.isfinite(emb).all()
