"""t="auto": the search over candidate times on score curves with a known best, and the quick
pictures' scores against full fits on a real trace."""
from pathlib import Path

import numpy as np
import pytest

from mphate import MPHATE
from mphate.embed import t_search
from mphate.metrics import neighbor_preservation
from mphate.traces.io import load_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "digits_trace_small.npz"


def counting(curve):
    """Wrap a score curve so the test can see which t were scored."""
    calls = []

    def score(t):
        calls.append(t)
        return curve(t)

    return score, calls


def test_a_sharp_peak_is_found_between_grid_points():
    # the peak (t = 37) lies between the grid's 25 and 50; refinement lands next to it
    score, calls = counting(lambda t: -abs(np.log(t / 37)))
    best, scores = t_search.search_t(score, t_max=100)
    assert abs(np.log(best / 37)) < np.log(1.1), best
    assert set(scores) == set(calls) and len(calls) == len(set(calls))  # each t scored once
    assert best not in t_search.COARSE_T  # the refinement round found it, not the grid


def test_no_bend_goes_to_the_boundary():
    # rising without a bend: the largest allowed t
    best, _ = t_search.search_t(lambda t: np.log(t), t_max=100)
    assert best == 100
    # falling without a bend: the grid's first point (smaller t are not searched)
    best, scores = t_search.search_t(lambda t: -np.log(t), t_max=100)
    assert best == min(t_search.COARSE_T) == min(scores)
    # t_max caps the grid
    best, scores = t_search.search_t(lambda t: np.log(t), t_max=30)
    assert best == 30 and max(scores) == 30


def bumps(heights):
    """Two bumps in log t, at t = 15 and t = 60, of the given heights."""
    return lambda t: sum(h * np.exp(-np.log(t / c) ** 2 / 0.1) for h, c in zip(heights, (15, 60)))


def test_two_bends_take_the_higher_peak():
    best, _ = t_search.search_t(bumps((0.6, 1.0)), t_max=100)
    assert abs(np.log(best / 60)) < np.log(1.3), best
    best, _ = t_search.search_t(bumps((1.0, 0.6)), t_max=100)
    assert abs(np.log(best / 15)) < np.log(1.3), best


def test_a_flat_top_takes_its_smallest_t():
    # a plateau from t = 20 on, with scatter smaller than the tie tolerance
    rng = np.random.default_rng(0)
    noise = {}

    def plateau(t):
        noise.setdefault(t, rng.uniform(-1, 1) * t_search.SCORE_TIE / 3)
        return min(t, 20) / 20 + noise[t]

    best, scores = t_search.search_t(plateau, t_max=100)
    assert best == min(t for t in scores if t >= 20)
    # without the tie rule the scatter decides, so this is what the rule adds
    strict, _ = t_search.search_t(plateau, t_max=100, tie=0.0)
    assert strict == max(scores, key=scores.get)


def test_scoring_sample_neighbours_are_the_exact_knn():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(12, 40, 5))
    sample = t_search.scoring_sample(features, n_landmark=200, rng=np.random.default_rng(2),
                                     n_slices_scored=4, n_units_scored=6, k=3)
    assert len(sample.slices) == 4 and len(sample.units) == 6
    s, u = sample.slices[0], 7
    dist = np.linalg.norm(features[s] - features[s, u], axis=1)
    dist[u] = np.inf
    assert set(sample.reference_intra[0, u]) == set(np.argsort(dist)[:3])
    # a perfect embedding (the features themselves) scores 1 on both kinds
    intra, inter = t_search.preservation_score(features.reshape(-1, 5), sample, 12, 40)
    assert intra == pytest.approx(1.0) and inter == pytest.approx(1.0)
    # a shuffled one scores near chance (k / (n - 1))
    shuffled = rng.permutation(features.reshape(-1, 5))
    intra, inter = t_search.preservation_score(shuffled, sample, 12, 40)
    assert intra < 0.3 and inter < 0.5


@pytest.fixture(scope="module")
def digits():
    return load_trace(DATA)


def test_auto_t_lands_near_the_best_full_picture(digits):
    """On a real trace, the t the quick pictures choose is near the best of full fits."""
    est = MPHATE(n_landmark=300, random_state=0).fit(digits)
    assert est.t_ in est.t_scores_ and set(t_search.COARSE_T) <= set(est.t_scores_)
    for intra, inter in est.t_scores_.values():
        assert 0 <= intra <= 1 and 0 <= inter <= 1
    # the knee is still computed and published for inspection
    assert est.t_candidates_ and est.entropy_.shape == (est.t_max,)

    def full_score(embedding):
        scores = neighbor_preservation(embedding, digits, k=10)
        return scores["intraslice"] + scores["interslice"]

    chosen = full_score(est.embedding_)
    grid = {}
    for t in (6, 9, 12, 25, 50, 100):
        grid[t] = full_score(est.set_params(t=t).fit(digits).embedding_)
    # the chosen t is as good as the grid's best, within the quick score's scatter
    assert chosen >= max(grid.values()) - 0.02, (est.t_scores_, grid)
    # and clearly better than the grid's worst: the choice mattered
    assert chosen > min(grid.values()) + 0.02, grid
