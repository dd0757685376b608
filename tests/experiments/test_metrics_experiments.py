"""The experiments' metrics against values worked out by hand.

* visualisation variance: sum over slices of the trace of the sample covariance;
* neighbourhood preservation: a 3-slice x 4-unit trace whose nearest neighbours are known;
* task-switch ARI: clusterings that k-means cannot get wrong, with the adjusted Rand index
  computed from the contingency table by hand.
"""
from __future__ import annotations

import numpy as np
import pytest

from mphate.metrics import neighbor_preservation, task_switch_ari, visualization_variance


def test_visualization_variance_by_hand():
    # slice 0: x = 0, 2, 4 -> sample variance ((-2)^2 + 0 + 2^2) / 2 = 4; y constant
    # slice 1: y = 0, 1, 2 -> sample variance (1 + 0 + 1) / 2 = 1;    x constant
    emb = np.array([[0, 0], [2, 0], [4, 0], [5, 0], [5, 1], [5, 2]], dtype=float)
    assert visualization_variance(emb, 2) == pytest.approx(5.0)
    # moving or rotating a slice changes nothing; scaling by 2 multiplies by 4
    assert visualization_variance(emb + 7, 2) == pytest.approx(5.0)
    assert visualization_variance(emb[:, ::-1], 2) == pytest.approx(5.0)
    assert visualization_variance(2 * emb, 2) == pytest.approx(20.0)


def _hand_trace():
    """Unit u at slice s has raw features (p_u, q_s): p = 0, 1, 3, 7 and q = 0, 1, 3.

    Within any slice the nearest other unit is u0 -> u1, u1 -> u0, u2 -> u1, u3 -> u2; over
    time, each unit's nearest other slice is s0 -> s1, s1 -> s0, s2 -> s1.
    """
    p = np.array([0.0, 1.0, 3.0, 7.0])
    q = np.array([0.0, 1.0, 3.0])
    data = np.zeros((3, 4, 2))
    data[:, :, 0] = p[None, :]
    data[:, :, 1] = q[:, None]
    return data


def test_neighbor_preservation_perfect_when_embedding_is_the_space():
    data = _hand_trace()
    emb = data.reshape(-1, 2)  # slice-major, the raw space itself
    score = neighbor_preservation(emb, data, k=1, space="raw")
    assert score == {"intraslice": 1.0, "interslice": 1.0}


def test_neighbor_preservation_by_hand():
    data = _hand_trace()
    emb = data.copy()
    # slice 0 embedded at p' = 0, 10, 11, 13: nearest u0 -> u1 (kept), u1 -> u2 (raw: u0, lost),
    # u2 -> u1 (kept), u3 -> u2 (kept): 3/4. Slices 1 and 2 unchanged: 4/4 each.
    emb[0, :, 0] = [0.0, 10.0, 11.0, 13.0]
    # over time, unit 0 is unchanged (3/3). Units 1-3 now have slice 0 far away, e.g. unit 1 at
    # (10, 0), (1, 1), (1, 3): s0 -> s1 (kept), s1 -> s2 (raw: s0, lost), s2 -> s1 (kept): 2/3.
    score = neighbor_preservation(emb.reshape(-1, 2), data, k=1, space="raw")
    assert score["intraslice"] == pytest.approx((3 / 4 + 1 + 1) / 3)
    assert score["interslice"] == pytest.approx((1 + 3 * (2 / 3)) / 4)


def _ari_by_hand(a, b):
    """Adjusted Rand index from the contingency table (Hubert & Arabie)."""
    from math import comb

    a, b = np.asarray(a), np.asarray(b)
    table = np.array([[np.sum((a == i) & (b == j)) for j in np.unique(b)] for i in np.unique(a)])
    index = sum(comb(int(n), 2) for n in table.ravel())
    rows = sum(comb(int(n), 2) for n in table.sum(axis=1))
    cols = sum(comb(int(n), 2) for n in table.sum(axis=0))
    expected = rows * cols / comb(len(a), 2)
    return (index - expected) / ((rows + cols) / 2 - expected)


def test_task_switch_ari_identical_grouping_is_one():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100], [50, 200], [200, 50], [300, 300], [-200, 40]])
    pts = np.repeat(centres, 5, axis=0) + rng.normal(scale=0.1, size=(40, 2))
    moved = 3 * pts + 17  # the same grouping, anywhere and at any scale
    assert task_switch_ari(pts, moved) == pytest.approx(1.0)


def test_task_switch_ari_by_hand():
    # before: units {0,1} at x = 0, {2,3} at x = 1, {4,5} at x = 1000
    before = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [1000, 0], [1000, 0]], dtype=float)
    # after: units {0,1} at x = 0, {2,4} at x = 1, {3,5} at x = 1000
    after = np.array([[0, 0], [0, 0], [1, 0], [1000, 0], [1, 0], [1000, 0]], dtype=float)
    # k = 3 finds the three spots whatever the seed: {01}{23}{45} against {01}{24}{35}.
    # Contingency: one pair shared; rows 3 pairs, columns 3 pairs, C(6, 2) = 15 pairs:
    # ARI = (1 - 3 * 3 / 15) / (3 - 3 * 3 / 15) = 0.4 / 2.4 = 1/6
    k3 = task_switch_ari(before, after, k_range=[3], n_seeds=5)
    assert k3 == pytest.approx(1 / 6)
    assert _ari_by_hand([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 1, 2]) == pytest.approx(1 / 6)
    # k = 2 splits off the far spot: {0123}{45} against {0124}{35}: shared pairs 3,
    # rows 6 + 1 = 7, columns 7: ARI = (3 - 49/15) / (7 - 49/15) = -1/14
    k2 = task_switch_ari(before, after, k_range=[2], n_seeds=5)
    assert k2 == pytest.approx(-1 / 14)
    # the score is the mean over k (and seeds): (1/6 - 1/14) / 2 = 1/21
    assert task_switch_ari(before, after, k_range=[2, 3], n_seeds=4) == pytest.approx(1 / 21)


def test_task_switch_ari_rejects_bad_input():
    pts = np.zeros((10, 2))
    with pytest.raises(ValueError, match="same shape"):
        task_switch_ari(pts, np.zeros((9, 2)))
    with pytest.raises(ValueError, match="k_range"):
        task_switch_ari(pts, pts, k_range=range(3, 12))
    with pytest.raises(ValueError, match="n_seeds"):
        task_switch_ari(pts, pts, n_seeds=0)
    bad = pts.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        task_switch_ari(bad, pts)


def test_task_switch_ari_tolerates_units_piled_on_one_spot():
    # fewer distinct positions than clusters: k-means warns, the score is still defined
    pts = np.array([[0, 0]] * 6 + [[1, 1]] * 6, dtype=float)
    assert task_switch_ari(pts, pts, k_range=[3, 4], n_seeds=2) == pytest.approx(1.0)


def test_switch_pairs_picks_slice_before_and_one_task_epoch_after():
    from mphate.experiments.continual import switch_pairs

    steps = np.arange(2, 61, 2)  # traced every 2 batches; 12 batches per task
    pairs = switch_pairs(steps, [12, 24, 36, 48, 60], lag_steps=3)
    # switch after step 12: before = step 12 (index 5), after = first step >= 15 = 16 (index 7)
    assert pairs == [(5, 7), (11, 13), (17, 19), (23, 25)]
    assert switch_pairs(steps, [12, 24, 36, 48, 60], lag_steps=100) == []
