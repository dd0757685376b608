"""t="auto": the rule on score curves with a known best, the scoring sample, and the chosen
picture against full fits on a real trace."""
from pathlib import Path

import numpy as np
import pytest

from mphate import MPHATE, runtime
from mphate.embed import pipeline, t_search
from mphate.metrics import neighbor_preservation
from mphate.traces.io import load_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "digits_trace_small.npz"
GRID = t_search.candidate_times(100)


def scores_of(small, large=None):
    """{t: (intra k10, inter k10, intra k40, inter k40)} from curves of t for the two sums
    (each split evenly into its intra and inter parts); ``large`` defaults to ``small``."""
    large = large or small
    return {t: (small(t) / 2, small(t) / 2, large(t) / 2, large(t) / 2) for t in GRID}


def test_candidate_times_are_laid_out_largest_first_and_capped():
    assert GRID == sorted(t_search.CANDIDATE_T, reverse=True) and GRID[0] == 100
    assert t_search.candidate_times(30) == [30, 25, 12]
    assert t_search.candidate_times(5) == [5]


def test_a_sharp_peak_is_taken():
    assert t_search.choose_t(scores_of(lambda t: 1 - abs(np.log(t / 35)))) == 35


def test_no_bend_goes_to_the_boundary():
    assert t_search.choose_t(scores_of(np.log)) == 100  # rising without a bend: the largest t
    assert t_search.choose_t(scores_of(lambda t: -np.log(t))) == 12  # falling: the smallest


def bumps(heights):
    """Two bumps in log t, at t = 25 and t = 71, of the given heights."""
    return lambda t: sum(h * np.exp(-np.log(t / c) ** 2 / 0.1) for h, c in zip(heights, (25, 71)))


def test_two_bends_take_the_higher_peak():
    assert t_search.choose_t(scores_of(bumps((0.6, 1.0)))) == 71
    assert t_search.choose_t(scores_of(bumps((1.0, 0.6)))) == 25


def test_a_flat_top_takes_its_smallest_t():
    # a plateau from t = 25 on, with scatter smaller than the ties
    rng = np.random.default_rng(0)
    noise = {t: rng.uniform(-1, 1) * min(t_search.TIE) / 3 for t in GRID}
    flat = scores_of(lambda t: min(t, 25) / 25 + noise[t])
    assert t_search.choose_t(flat) == 25
    # without the ties the scatter decides, so this is what the rule adds
    assert t_search.choose_t(flat, tie=(0.0, 0.0)) == max(flat, key=lambda t: sum(flat[t]))


def test_the_k40_scores_move_a_flat_k10_top_to_their_peak():
    # the held-out deep MLP's shape: k = 10 flat over t, k = 40 peaked at t = 25
    scores = scores_of(lambda t: 1.19, lambda t: 1.36 - 0.1 * abs(np.log(t / 25)))
    assert t_search.choose_t(scores) == 25
    assert t_search.choose_t(scores, tie=(t_search.TIE[0], np.inf)) == 12  # k = 10 alone: a tie


def test_sums_that_disagree_fall_back_to_the_largest_total():
    # k = 10 best at the smallest t, k = 40 at the largest, no t within both ties
    scores = scores_of(lambda t: -np.log(t), lambda t: 1.5 * np.log(t))
    assert t_search.choose_t(scores) == 100
    assert t_search.choose_t(scores_of(lambda t: -2 * np.log(t), lambda t: np.log(t))) == 12


def test_a_trace_of_one_slice_is_chosen_on_intraslice_alone():
    scores = {t: (1 - abs(np.log(t / 50)), None, 1 - abs(np.log(t / 50)), None) for t in GRID}
    assert t_search.choose_t(scores) == 50


def test_scoring_sample_neighbours_are_the_exact_knn():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(12, 40, 5))
    sample = t_search.scoring_sample(features, rng=np.random.default_rng(2),
                                     n_slices_scored=4, n_units_scored=6, ks=(3, 20))
    assert len(sample.slices) == 4 and len(sample.units) == 6
    # nearest first, so the first 3 of the 20 (intraslice) / 11 (interslice: 12 slices) are the 3-NN
    assert sample.reference_intra.shape[-1] == 20 and sample.reference_inter.shape[-1] == 11
    s, u = sample.slices[0], 7
    dist = np.linalg.norm(features[s] - features[s, u], axis=1)
    dist[u] = np.inf
    np.testing.assert_array_equal(sample.reference_intra[0, u], np.argsort(dist)[:20])
    # a perfect embedding (the features themselves) scores 1 on every kind
    scores = t_search.preservation_score(features.reshape(-1, 5), sample, 12, 40)
    assert len(scores) == 4 and scores == pytest.approx((1.0,) * 4)
    # a shuffled one scores near chance (k / (n - 1)); interslice k = 20 is capped at all 11
    # other slices, which any embedding preserves
    shuffled = rng.permutation(features.reshape(-1, 5))
    intra3, inter3, intra20, inter20 = t_search.preservation_score(shuffled, sample, 12, 40)
    assert intra3 < 0.3 and inter3 < 0.5 and intra20 < 0.7 and inter20 == pytest.approx(1.0)


@pytest.mark.parametrize("n_dims", [2, 5])  # the k-d tree and the dense block
def test_nearest_neighbours_split_over_threads_equal_one_thread(n_dims):
    points = np.random.default_rng(4).normal(size=(7, 60, n_dims))
    one = t_search.nearest_neighbors(points, 10, n_threads=1)
    np.testing.assert_array_equal(t_search.nearest_neighbors(points, 10, n_threads=3), one)
    dist = np.linalg.norm(points[5] - points[5, 9], axis=1)
    dist[9] = np.inf
    np.testing.assert_array_equal(one[5, 9], np.argsort(dist)[:10])


@pytest.fixture(scope="module")
def digits():
    return load_trace(DATA)


def test_auto_t_lands_near_the_best_full_picture(digits):
    """On a real trace, the chosen picture is as good as the best fixed-t fit of a grid."""
    est = MPHATE(n_landmark=300, random_state=0).fit(digits)
    assert sorted(est.t_scores_) == sorted(GRID) and est.t_ in est.t_scores_
    for values in est.t_scores_.values():
        assert len(values) == 4 and all(0 <= v <= 1 for v in values)
    assert est.t_ == t_search.choose_t(est.t_scores_)
    # the knee is still computed and published for inspection
    assert est.t_candidates_ and est.entropy_.shape == (est.t_max,)

    def full_score(embedding):
        scores = neighbor_preservation(embedding, digits, k=10)
        return scores["intraslice"] + scores["interslice"]

    chosen = full_score(est.embedding_)
    grid = {}
    for t in (6, 9, 12, 25, 50, 100):
        grid[t] = full_score(est.set_params(t=t).fit(digits).embedding_)
    # the chosen t is as good as the grid's best, within the score's scatter
    assert chosen >= max(grid.values()) - 0.02, (est.t_scores_, grid)
    # and clearly better than the grid's worst: the choice mattered
    assert chosen > min(grid.values()) + 0.02, grid


def pairwise_overlap(a, b):
    """Mean fraction of shared entries of index sets a and b, both (..., k): every pair compared."""
    return float((a[..., :, None] == b[..., None, :]).any(-1).sum(-1).mean() / a.shape[-1])


@pytest.mark.parametrize("table_entries", [None, 300 * 7])
def test_overlaps_by_rank_equal_the_pairwise_count_for_every_prefix(monkeypatch, table_entries):
    if table_entries is not None:
        # chunks of 7 rows, the last of 600 rows a partial one: the table is reused and put
        # back between chunks
        monkeypatch.setattr(t_search, "_OVERLAP_CHUNK_ENTRIES", table_entries)
    rng = np.random.default_rng(3)
    n, depth = 300, 40
    reference = np.stack([rng.permutation(n)[:depth] for _ in range(600)]).reshape(6, 100, depth)
    found = np.stack([row if rng.random() < 0.3 else rng.permutation(n)[:depth]
                      for row in reference.reshape(-1, depth)])
    # shuffle half the rows so the shared neighbours sit at other ranks
    found = np.stack([rng.permutation(row) if i % 2 else row for i, row in enumerate(found)]).reshape(6, 100, depth)
    got = t_search.overlaps(reference, found, (5, 10, 40, 60))
    want = [pairwise_overlap(reference[..., :k], found[..., :k]) for k in (5, 10, 40, 40)]
    np.testing.assert_allclose(got, want)
    assert 0.3 < got[2] < 0.9  # neither all shared nor none


def layout_seed(random_state):
    """The classical-MDS seed of a fit's layouts: what ``Resources.layout_seed`` draws, the
    first draw of the embedding stage's generator."""
    return runtime.stage_generators(random_state, pipeline.STAGE_NAMES)["embedding"].integers(2**31 - 1)


def test_each_candidate_is_the_lower_stress_of_its_classical_and_continued_starts(digits):
    """The search lays out the largest t from classical MDS and every other t from both its
    classical start and the layout of the t before it (recomputed here: the same layouts from
    the same classical-MDS seed, the first draw of the embedding stage's generator). On this
    small trace both starts end in one basin, so which start wins is tested on a sphere
    (tests/embed/test_stages.py), not here."""
    est = MPHATE(n_landmark=300, random_state=0, n_jobs=1).fit(digits)
    state, params = est._state, est._stages(est.n_slices_, est.n_units_)[3].params
    layouts = state.layouts
    mds_seed = layout_seed(random_state=0)
    previous = None
    for t in GRID:
        with runtime.blas_threads(1):  # as the fit's stages ran (n_jobs=1): the same rounding
            again = pipeline.landmark_layout(state.spectrum, t, params, pipeline.NUMPY,
                                             np.random.default_rng(mds_seed), 1, start=previous)
        np.testing.assert_allclose(layouts[t], again, rtol=0, atol=1e-4 * np.abs(again).max())
        previous = layouts[t]


def test_a_given_t_draws_the_picture_auto_drew_at_that_t(digits):
    """A fixed t lays out along the same chain of candidate times as the search, from the same
    seed: a fresh fit at the auto fit's t, and a refit set to it, give the auto fit's picture."""
    auto = MPHATE(n_landmark=300, random_state=0, n_jobs=1).fit(digits)
    assert auto.t_ < 100  # so the chain above it is not empty
    fresh = MPHATE(n_landmark=300, random_state=0, n_jobs=1, t=auto.t_).fit(digits)
    extent = np.ptp(auto.embedding_)
    np.testing.assert_allclose(fresh.embedding_, auto.embedding_, rtol=0, atol=1e-9 * extent)
    refit = auto.set_params(t=auto.t_).fit(digits)
    np.testing.assert_allclose(refit.embedding_, fresh.embedding_, rtol=0, atol=1e-9 * extent)


def test_a_given_t_between_candidates_continues_from_the_candidate_above_it(digits):
    est = MPHATE(n_landmark=300, random_state=0, n_jobs=1, t=20).fit(digits)
    state, params = est._state, est._stages(est.n_slices_, est.n_units_)[4].params
    assert pipeline.layout_chain(20, params) == [100, 71, 50, 35, 25, 20]
    assert sorted(state.layouts) == [20, 25, 35, 50, 71, 100]
    mds_seed = layout_seed(random_state=0)
    with runtime.blas_threads(1):
        again = pipeline.landmark_layout(state.spectrum, 20, params, pipeline.NUMPY,
                                         np.random.default_rng(mds_seed), 1, start=state.layouts[25])
    np.testing.assert_allclose(est.landmark_embedding_, again, rtol=0, atol=1e-4 * np.abs(again).max())
    # a t above every candidate, or PHATE's own layout (t_max None), has no chain
    assert pipeline.layout_chain(150, params) == [150]
    assert pipeline.layout_chain(20, dict(params, t_max=None)) == [20]
    assert pipeline.layout_chain(20, dict(params, mds="classic")) == [20]


def trace_with_ties(rng, n_slices=6, n_units=50, n_features=8):
    """Random features where units 0-19 are dead (exact zeros, as z-scoring leaves a constant
    unit) and unit 30 freezes from slice 2 on (its vector repeats bit for bit)."""
    features = rng.normal(size=(n_slices, n_units, n_features))
    features[:, :20] = 0.0
    features[2:, 30] = features[2, 30]
    return features


def test_identical_trace_vectors_tie_in_the_scores_as_in_the_metric():
    """The search's scores count a found neighbour identical to one of the trace's k nearest,
    as mphate.metrics does: equal to the metric's tie-counted overlap, and not the first k of
    a sort, which scores a picture by how it happens to order the tied points."""
    from mphate.metrics import _overlap

    rng = np.random.default_rng(5)
    features = trace_with_ties(rng)
    sample = t_search.scoring_sample(features, rng=np.random.default_rng(6), n_slices_scored=4,
                                     n_units_scored=50, ks=(10, 40))
    assert sample.duplicates_intra is not None and sample.duplicates_inter is not None
    # a faithful picture a rounding apart: the dead units' order among themselves is arbitrary
    embedding = features + 1e-6 * rng.normal(size=features.shape)
    got = t_search.preservation_score(embedding.reshape(-1, 8), sample, 6, 50)
    histories = lambda a: a.transpose(1, 0, 2)  # noqa: E731
    want = []
    for k in (10, 40):
        want.append(_overlap(features[sample.slices], embedding[sample.slices], k).mean())
        want.append(_overlap(histories(features), histories(embedding), min(k, 5)).mean())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got[0] > 0.95  # the picture is the trace, so nearly every neighbour is right
    # taking the first k of the sort instead scores the same picture lower
    untied = t_search.ScoringSample(sample.slices, sample.units, sample.reference_intra,
                                    sample.reference_inter, sample.ks)
    assert t_search.preservation_score(embedding.reshape(-1, 8), untied, 6, 50)[0] < got[0] - 0.1


def test_duplicate_labels_name_each_points_first_copy():
    points = np.array([[[0.0, 1.0], [2.0, 3.0], [-0.0, 1.0], [2.0, 3.0], [5.0, 5.0]]])
    np.testing.assert_array_equal(t_search.duplicate_labels(points), [[0, 1, 0, 1, 4]])
    assert t_search.duplicate_labels(np.random.default_rng(0).normal(size=(3, 10, 4))) is None


def test_overlaps_count_a_duplicate_once_at_its_first_rank():
    # reference row: neighbours 1, 2, 3 where 2 and 3 are copies of 1 (label 1); found: 4, 3
    labels = np.array([[0, 1, 1, 1, 4]])
    reference = np.array([[[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [1, 2, 3]]])[:, :1]
    found = np.array([[[4, 3], [2, 3], [1, 3], [1, 2], [0, 1]]])[:, :1]
    # k = 1: the reference's nearest is label 1; found 4 misses. k = 2: 3 (label 1) is a hit
    # though 3 itself is the reference's third, and 4 still misses
    assert t_search.overlaps(reference, found, (1, 2), labels) == [0.0, 0.5]
    assert t_search.overlaps(reference, found, (1, 2)) == [0.0, 0.0]


@pytest.mark.parametrize("eigenvalues, limit", [
    ([1.0, 0.5, 0.1], 13),       # 0.5^13 = 1.2e-4 >= 1e-4 > 0.5^14
    ([1.0, -0.5, 0.1], 13),      # the magnitude counts
    ([1.0, 1.0, 0.3], None),     # two components never mix
    ([1.0], None),               # one landmark: nothing to mix
    ([1.0, 0.0], 1),
])
def test_mixing_limit_is_where_the_slowest_component_falls_below_the_floor(eigenvalues, limit):
    from mphate.embed import diffusion

    assert diffusion.mixing_limit(np.array(eigenvalues), floor=1e-4) == limit


def mostly_dead_trace():
    """30 slices x 20 units, 5 live random walks, 15 units all zeros (a network whose units
    mostly died): the diffusion mixes by t of about 20."""
    rng = np.random.default_rng(0)
    trace = np.zeros((30, 20, 10), dtype=np.float32)
    trace[:, :5] = rng.normal(size=(30, 5, 10)).cumsum(axis=0)
    return trace


def test_auto_t_stays_below_mixing_where_units_died():
    """Past mixing the potential's rows agree to rounding, so every candidate's picture is
    noise; one laid-out point per dead unit then scored by chance above the real pictures
    (before the ceiling, t = 71 won here with a picture 5e-16 wide)."""
    from mphate.embed import diffusion

    est = MPHATE(random_state=0, normalize=False).fit(mostly_dead_trace())
    limit = diffusion.mixing_limit(est.spectrum_.eigenvalues)
    assert limit is not None and limit < 35
    assert max(est.t_scores_) <= limit and est.t_ <= limit
    assert np.ptp(est.embedding_, axis=0).min() > 1e-3
    with pytest.warns(diffusion.MixedDiffusionWarning, match="past mixing"):
        est.set_params(t=71).fit(mostly_dead_trace())
