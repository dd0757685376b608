"""``t="auto"``: the diffusion time whose picture keeps the trace's own neighbourhoods best.

Why not the knee of the von Neumann entropy: on real training runs, intraslice preservation
rises with t while interslice preservation falls, so the picture's quality is a trade-off that
the entropy curve does not see. On the benchmark panel (docs/benchmarks.md) the knee fell at
t = 6 on one run and t = 67 on another, costing up to 0.14 of intraslice preservation; the t that
maximised intraslice + interslice preservation (k = 10, in the z-scored trace, no labels) matched
the reference on every run.

So ``t="auto"`` scores candidate times by that sum, measured on a quick version of the very
picture the fit would draw:

1. ``P^t``'s potential for every landmark (the fit's own potential step);
2. metric MDS (classical MDS start, SMACOF) of a random subsample of ``n_sample`` landmarks;
3. every other landmark placed against ``n_anchor`` of those by a few Guttman steps with the
   subsample fixed (out-of-sample metric MDS);
4. the points through the fit's own point-to-landmark transitions, scored on a random subsample
   of slices (intraslice) and units (interslice) against the trace's kNN.

The candidates are a factor-2 grid from 12 to ``t_max``, then one refinement round at the
geometric midpoints beside the best (:func:`search_t`). The quick scores only rank them: the
best ``N_FINALISTS`` are drawn again as the fit would draw them (every landmark through
SMACOF), scored on more slices and units, and the smallest t within ``FINAL_TIE`` of the best
of those wins; its layout is the fit's. Traces with few points per landmark
(:func:`mphate.embed.landmarks.few_points_per_landmark`, the regime in which the landmarks come
from k-means++ seeding) skip the placement step and lay out every landmark by SMACOF already in
the quick pictures (there, placement errors misled the ranking).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from mphate.embed.kernel import exact_sq_distances

#: the coarse grid of candidate times (capped at t_max). It starts at 12, not 6: on the eleven
#: real runs of docs/benchmarks.md (panel and held out, after the centred interslice distances)
#: every run had a t >= 12 keeping all eight preservation numbers within 0.01 of the reference,
#: and the three runs whose search chose t = 6 lost nothing at t = 12 (continual +0.004, domain
#: +0.002 worst cell) or gained (post-ReLU CNN: -0.027 at t = 6, -0.005 at t = 12). At t = 6 the
#: score's intraslice part is at its lowest and the interslice part at its highest, the
#: trade-off the reference never makes (its knees: 15-70).
COARSE_T = (12, 25, 50, 100)
#: landmarks embedded by SMACOF for each candidate; the rest are placed out of sample
N_SAMPLE = 1000
#: landmarks of that subsample the others are placed against
N_ANCHOR = 300
#: the best quick candidates whose full pictures decide, and the slices / units they are
#: scored on
N_FINALISTS = 3
N_FINAL_SLICES, N_FINAL_UNITS = 100, 256
#: among finalists this close to the best full picture's score, the smallest t wins: on a
#: flat top of the score the pictures are equally good overall, and less diffusion keeps more
#: interslice structure (the reference's strength on the panel)
FINAL_TIE = 0.005
#: slices scored for intraslice, units scored for interslice preservation
N_SCORED_SLICES, N_SCORED_UNITS = 30, 64
#: components of P^t lighter than this (relative to the heaviest) are left out of the quick
#: pictures' powers: ~1e-6 of an entry, where the fit's own power keeps down to 1e-12; the
#: powers are the search's largest cost, and this halves it at t >= 25 on the panel runs
POWER_TOL = 1e-6
#: neighbours of the preservation score (as in the paper's Table 1)
SCORE_K = 10


#: scores this close to the best are ties; among ties the smallest t wins. Why 0.01: the
#: difference between two candidates' scores (t = 50 minus t = 25) scattered with a standard
#: deviation of 0.005-0.008 over five scoring subsamples on three panel runs (post-act Adam,
#: SGD 0.1, CNN), so closer scores are not told apart
SCORE_TIE = 0.01


def smallest_within(scores: dict, tie: float) -> int:
    """The smallest t whose score is within ``tie`` of the best; scores: {t: float}."""
    top = max(scores.values())
    return min(t for t, value in scores.items() if value >= top - tie)


def search_t(score, t_max: int, coarse=COARSE_T, rounds: int = 1, tie: float = SCORE_TIE) -> tuple[int, dict]:
    """Maximise ``score(t)`` over integer t in [1, t_max]: a coarse grid, then refinement.

    After the grid, each round scores the geometric midpoints between the best t so far and
    its neighbours among the scored times. Nothing below the grid's smallest t is tried
    (:data:`COARSE_T`: why 12): t of 2-5 hardly diffuses (noise in the trace stays in the
    picture), the live view's out-of-sample slices fall further behind a full fit there (0.03
    interslice at t = 2 on the synthetic trace of tests/live, against 0.02 allowed), and
    t = 6 traded intraslice for interslice preservation past the reference on a real run. The
    answer is the smallest scored t within ``tie`` of the best score: on the flat top of a
    score curve, less smoothing keeps more of the fine structure (interslice preservation falls
    with t on real runs).

    Parameters
    ----------
    score : callable, int -> float
    t_max : int
    coarse : iterable of int
        The first candidates; those above ``t_max`` are replaced by ``t_max``.
    rounds : int

    Returns
    -------
    best : int
    scores : dict of int -> float, every t scored
    """
    candidates = sorted({int(min(max(t, 1), t_max)) for t in coarse})
    scores = {t: float(score(t)) for t in candidates}

    def best_t():
        return max(scores, key=lambda t: (scores[t], -t))

    for _ in range(rounds):
        best = best_t()
        scored = sorted(scores)
        i = scored.index(best)
        below = scored[i - 1] if i > 0 else None
        above = scored[i + 1] if i + 1 < len(scored) else None
        new = []
        for neighbour in (below, above):
            if neighbour is not None:
                mid = int(round(np.sqrt(best * neighbour)))
                if mid not in scores and 1 <= mid <= t_max:
                    new.append(mid)
        if not new:
            break
        for t in new:
            scores[t] = float(score(t))
    return smallest_within(scores, tie), scores


@dataclass
class ScoringSample:
    """What the score of every candidate t shares: fixed subsamples and the trace's kNN.

    Attributes
    ----------
    sampled : ndarray, shape (m,)
        Landmarks embedded by SMACOF.
    others : ndarray, shape (L - m,)
        The rest, placed out of sample.
    anchors : ndarray, shape (a,)
        Positions within ``sampled`` the others are placed against.
    slices, units : ndarray
        Scored slices (intraslice) and units (interslice).
    reference_intra : ndarray, shape (n_scored_slices, n_units, k_intra) or None
    reference_inter : ndarray, shape (n_scored_units, n_slices, k_inter) or None
        The trace's nearest neighbours (in the kernel's features) within each scored slice /
        along each scored unit's history; None when there are too few units / slices.
    mds_seed : int
        Seed of the classical-MDS start, the same for every candidate.
    """

    sampled: np.ndarray
    others: np.ndarray
    anchors: np.ndarray
    slices: np.ndarray
    units: np.ndarray
    reference_intra: np.ndarray | None
    reference_inter: np.ndarray | None
    mds_seed: int


def _knn(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest other rows within each batch: (b, n, d) -> (b, n, k).

    One batch at a time, so memory stays at one n x n block (wide layers have thousands of units).
    """
    out = np.empty(points.shape[:2] + (k,), dtype=np.intp)
    n = points.shape[1]
    diagonal = np.arange(n)
    for b, block in enumerate(points):
        dist = exact_sq_distances(block[None])[0]
        dist[diagonal, diagonal] = np.inf
        out[b] = np.argpartition(dist, k - 1, axis=1)[:, :k]
    return out


def _knn_low_dim(points: np.ndarray, k: int) -> np.ndarray:
    """:func:`_knn` for a few dimensions (an embedding's 2 or 3): a k-d tree per batch instead
    of the dense n x n block, the same neighbours up to ties at the k-th distance."""
    out = np.empty(points.shape[:2] + (k,), dtype=np.intp)
    n = points.shape[1]
    rows = np.arange(n)
    for b, block in enumerate(points):
        _, found = cKDTree(block).query(block, k=k + 1)
        # drop each point itself; when it coincides with others the tree may list it later
        is_self = found == rows[:, None]
        is_self[~is_self.any(axis=1), -1] = True
        out[b] = found[~is_self].reshape(n, k)
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean fraction of shared entries between index sets a and b, both (..., k)."""
    k = a.shape[-1]
    return float((a[..., :, None] == b[..., None, :]).any(-1).sum(-1).mean() / k)


def nearest_neighbors(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest other rows within each batch: (b, n, d) -> (b, n, k).

    A k-d tree per batch for a few dimensions (an embedding's 2 or 3), else one dense block of
    distances per batch. The NumPy backend's ``nearest_neighbors``.
    """
    return _knn_low_dim(points, k) if points.shape[2] <= 3 else _knn(points, k)


def scoring_sample(features: np.ndarray, n_landmark: int, rng: np.random.Generator, *,
                   n_sample: int = N_SAMPLE, n_anchor: int = N_ANCHOR,
                   n_slices_scored: int = N_SCORED_SLICES, n_units_scored: int = N_SCORED_UNITS,
                   k: int = SCORE_K, knn=nearest_neighbors) -> ScoringSample:
    """Draw the subsamples and the trace's neighbourhoods for scoring candidate times.

    Parameters
    ----------
    features : ndarray, shape (n_slices, n_units, n_features)
        What the kernel was built from (the z-scored trace by default).
    n_landmark : int
        Landmarks of the fitted operator (L).
    rng : numpy.random.Generator
    knn : callable, as :func:`nearest_neighbors` (a backend's, which may run on a device)
    """
    n_slices, n_units, _ = features.shape
    sampled = np.sort(rng.choice(n_landmark, size=min(n_sample, n_landmark), replace=False))
    others = np.setdiff1d(np.arange(n_landmark), sampled)
    anchors = np.sort(rng.choice(len(sampled), size=min(n_anchor, len(sampled)), replace=False))
    slices = np.sort(rng.choice(n_slices, size=min(n_slices_scored, n_slices), replace=False))
    units = np.sort(rng.choice(n_units, size=min(n_units_scored, n_units), replace=False))
    k_intra, k_inter = min(k, n_units - 1), min(k, n_slices - 1)
    reference_intra = knn(features[slices], k_intra) if k_intra >= 1 else None
    reference_inter = (knn(np.ascontiguousarray(features[:, units].transpose(1, 0, 2)), k_inter)
                       if k_inter >= 1 else None)
    return ScoringSample(sampled, others, anchors, slices, units, reference_intra, reference_inter,
                         mds_seed=int(rng.integers(2**31 - 1)))


def quick_landmark_layout(potential, sample: ScoringSample, n_components: int, backend, *,
                          metric: bool, max_iter: int, tol: float, n_threads: int,
                          placement_steps: int = 10) -> np.ndarray:
    """A cheap stand-in for the fit's landmark layout at one t.

    Parameters
    ----------
    potential : array of the backend, shape (L, L), centred columns
        The potential of ``P^t`` for every landmark. It stays on the backend: only the
        subsample's layout and the others' distances to the anchors, (L - m, a), come home.
    backend : :class:`mphate.embed.backend.NumpyBackend` or ``TorchBackend``

    Returns
    -------
    ndarray, shape (L, n_components)
    """
    # every landmark sampled (few points per landmark): the rows are the potential itself,
    # and a copy of it (L x L) would be the fit's memory peak
    n_landmark = potential.shape[0]
    every_landmark = len(sample.sampled) == n_landmark
    rows = potential if every_landmark else backend.take_rows(potential, sample.sampled)
    rng = np.random.default_rng(sample.mds_seed)
    layout_sampled = backend.classical_mds(rows, n_components, rng)
    if metric:
        distances = backend.pairwise_distances(rows)
        layout_sampled, _ = backend.smacof(distances, layout_sampled, max_iter=max_iter, tol=tol,
                                           n_threads=n_threads)
        del distances
    del rows
    layout = np.empty((n_landmark, n_components))
    layout[sample.sampled] = layout_sampled
    if len(sample.others):
        # potential distances of the other landmarks to the anchors, (L - m, a)
        target = backend.row_distances(potential, sample.others, sample.sampled[sample.anchors])
        anchors = layout_sampled[sample.anchors].astype(np.float32)
        anchor_sq = np.einsum("ij,ij->i", anchors, anchors)
        # start at the mean of the 3 nearest anchors, then Guttman steps with the anchors fixed
        # (each cannot raise the placed point's stress against them):
        #   x <- mean_a [a + target_xa (x - a) / |x - a|] = mean(a) + x mean(r) - r @ a / n_a
        nearest = np.argpartition(target, 2, axis=1)[:, :3]
        placed = anchors[nearest].mean(axis=1)
        centre = anchors.mean(axis=0)
        for _ in range(placement_steps):
            dist = np.einsum("ij,ij->i", placed, placed)[:, None] + anchor_sq[None, :] - 2 * (placed @ anchors.T)
            np.maximum(dist, 1e-24, out=dist)
            np.sqrt(dist, out=dist)
            ratio = np.divide(target, dist, out=dist)
            placed = centre + placed * ratio.mean(axis=1, keepdims=True) - (ratio @ anchors) / len(anchors)
        layout[sample.others] = placed
    return layout


def preservation_score(embedding: np.ndarray, sample: ScoringSample, n_slices: int, n_units: int,
                       knn=nearest_neighbors) -> tuple:
    """Intraslice and interslice preservation of ``embedding`` (N, d) on the scored subsample.

    ``knn``: as :func:`nearest_neighbors`. Returns (intraslice, interslice); a kind without a
    reference is None.
    """
    emb = embedding.reshape(n_slices, n_units, -1)
    intra = inter = None
    if sample.reference_intra is not None:
        k = sample.reference_intra.shape[-1]
        intra = _overlap(sample.reference_intra, knn(emb[sample.slices], k))
    if sample.reference_inter is not None:
        k = sample.reference_inter.shape[-1]
        inter = _overlap(sample.reference_inter,
                         knn(np.ascontiguousarray(emb[:, sample.units].transpose(1, 0, 2)), k))
    return intra, inter
