"""Neighbourhood preservation and visualisation variance against values worked out by hand."""
import numpy as np
import pytest

from mphate.metrics import neighbor_preservation, visualization_variance


def line_trace(n_slices=5, n_units=6):
    # unit u at slice s sits at position u + 10 s along one direction (plus a second
    # trace input so z-scoring keeps the order): neighbours are exactly the adjacent ones
    pos = np.arange(n_units)[None, :] + 0 * np.arange(n_slices)[:, None]
    return np.stack([pos, -pos], axis=2).astype(float), pos


def test_perfect_and_broken_preservation():
    n_slices, n_units = 5, 6
    rng = np.random.default_rng(0)
    # reference space: units spread along a line, moving slowly over slices
    base = rng.standard_normal((n_units, 8)) * 5
    drift = rng.standard_normal((n_slices, 1, 8)) * 0.01
    data = base[None] + np.arange(n_slices)[:, None, None] * drift
    from mphate.embed.normalize import zscore_units

    z = zscore_units(data)
    # an "embedding" that is the reference space itself preserves everything
    perfect = np.concatenate([z.reshape(-1, 8)], axis=1)
    res = neighbor_preservation(perfect, data, k=2)
    assert res["intraslice"] == pytest.approx(1.0)
    assert res["interslice"] == pytest.approx(1.0)
    # reversing the units' order within each slice keeps nothing intraslice for k=1 if
    # the mapping sends nearest neighbours far away: check against a direct count
    emb = rng.standard_normal((n_slices * n_units, 2))
    res = neighbor_preservation(emb, data, k=2)
    assert 0 <= res["intraslice"] <= 1 and 0 <= res["interslice"] <= 1


def test_preservation_by_hand():
    # one slice pattern of 4 units on a line at 0, 1, 3, 7 (reference) in 2 slices
    ref = np.array([0.0, 1.0, 3.0, 7.0])
    data = np.stack([np.stack([ref, ref * 0], axis=1)] * 2).astype(float)  # (2, 4, 2)
    # reference neighbours (k=1): 0->1, 1->0, 2->1, 3->2
    # embedding in slice 0: positions 0, 5, 1, 2 -> nn: 0->2, 1->3, 2->0... compute by hand:
    emb_slice = np.array([0.0, 5.0, 1.0, 2.5])
    # embedded nn (k=1): 0->2 (1), 1->3 (2.5), 2->0 (1) vs 2->3 (1.5) -> 0, 3->2 (1.5)
    # matches with reference: 0: {1} vs {2} no; 1: {0} vs {3} no; 2: {1} vs {0} no; 3: {2} vs {2} yes
    emb = np.concatenate([np.c_[emb_slice, np.zeros(4)], np.c_[ref, np.zeros(4)]])
    res = neighbor_preservation(emb, data, k=1, space="raw")
    # slice 0 preserves 1/4, slice 1 preserves 4/4 -> mean 5/8
    assert res["intraslice"] == pytest.approx(5 / 8)


def test_preservation_does_not_depend_on_where_the_embedding_sits():
    # each unit's history is a slow walk (steps ~1e-3) in the reference space and in the
    # embedding; moving the whole embedding far from the origin must not change its score.
    # Distances by |x|^2 + |y|^2 - 2 x.y in float32 lose such close neighbours at an offset
    # of 1e3 (the interslice score fell from 1.0 towards chance): the metric's old bug
    rng = np.random.default_rng(4)
    n_slices, n_units = 40, 12
    walk = np.cumsum(rng.standard_normal((n_slices, n_units, 2)) * 1e-3, axis=0)
    walk += rng.standard_normal((1, n_units, 2))  # units apart from each other
    data = np.concatenate([walk, -walk, walk[..., :1] * 0.5], axis=2)
    emb = walk.reshape(-1, 2)
    here = neighbor_preservation(emb, data, k=5, space="raw")
    assert here["interslice"] > 0.9
    for offset in (1e3, -1e4):
        there = neighbor_preservation(emb + offset, data, k=5, space="raw")
        assert there == pytest.approx(here, abs=1e-9), offset


def test_tied_reference_neighbours_all_count():
    # units 0-5 are dead (constant over the trace inputs: z-scored to exact zeros, so they tie
    # with each other at every slice and along their own histories); units 6-11 are distinct.
    # An embedding that keeps the live units where the z-scored trace has them and the dead
    # ones together, in any order among themselves, keeps every neighbourhood there is to keep
    rng = np.random.default_rng(5)
    n_slices, n_units, n_trace, k = 8, 12, 5, 3
    data = rng.standard_normal((n_slices, n_units, n_trace))
    data[:, :6] = rng.standard_normal((n_slices, 6, 1))  # constant over the inputs
    from mphate.embed.normalize import zscore_units

    z = zscore_units(data).astype(np.float64)
    huddled = z.copy()
    huddled[:, :6] += rng.standard_normal((n_slices, 6, n_trace)) * 1e-3
    score = neighbor_preservation(huddled.reshape(-1, n_trace), data, k=k)
    assert score == pytest.approx({"intraslice": 1.0, "interslice": 1.0})
    # the dead units scattered among the live ones lose their intraslice neighbourhoods; along
    # a dead unit's history every slice ties with every other, so any order there still counts
    scattered = z.copy()
    scattered[:, :6] += rng.standard_normal((n_slices, 6, n_trace)) * 3.0
    score = neighbor_preservation(scattered.reshape(-1, n_trace), data, k=k)
    assert score["intraslice"] < 0.8
    assert score["interslice"] == pytest.approx(1.0)


def test_preservation_errors():
    data = np.random.default_rng(0).random((4, 5, 3))
    with pytest.raises(ValueError, match="embedding must have shape"):
        neighbor_preservation(np.zeros((7, 2)), data, k=2)
    with pytest.raises(ValueError, match="k=5"):
        neighbor_preservation(np.zeros((20, 2)), data, k=5)
    with pytest.raises(ValueError, match="space"):
        neighbor_preservation(np.zeros((20, 2)), data, k=2, space="other")
    with pytest.raises(ValueError, match="NaN"):
        neighbor_preservation(np.full((20, 2), np.nan), data, k=2)


def test_visualization_variance_by_hand():
    # slice 0: points (0,0),(2,0) -> var x = 2 (ddof 1), var y = 0; slice 1: (0,0),(0,4) -> 8
    emb = np.array([[0, 0], [2, 0], [0, 0], [0, 4]], dtype=float)
    assert visualization_variance(emb, n_slices=2) == pytest.approx(2 + 8)
    per_slice = [np.trace(np.cov(emb[i * 2:(i + 1) * 2].T)) for i in range(2)]
    assert visualization_variance(emb, 2) == pytest.approx(sum(per_slice))
    with pytest.raises(ValueError):
        visualization_variance(emb, n_slices=3)
