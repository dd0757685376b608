"""``t="auto"``: the diffusion time whose picture keeps the trace's own neighbourhoods best.

Why not the knee of the von Neumann entropy: on real training runs, intraslice preservation
rises with t while interslice preservation falls, so the picture's quality is a trade-off that
the entropy curve does not see. On the benchmark panel (docs/benchmarks.md) the knee fell at
t = 6 on one run and t = 67 on another, costing up to 0.14 of intraslice preservation.

So ``t="auto"`` draws the picture the fit would draw at each candidate time and scores it by
neighbourhood preservation against the trace's own kNN (no labels, no validation set):

1. the candidates, :data:`CANDIDATE_T` capped at ``t_max``, are laid out from the largest t
   down, each by SMACOF from its own classical-MDS start and from the layout of the t
   before it, keeping the lower stress. A larger t is a smoother potential with fewer local
   minima, and continuing from it kept the smaller t's SMACOF out of the poorer minima its
   classical-MDS start led into; the classical start stays because a larger t's layout can
   itself be poor (an over-smoothed t = 100) and would otherwise be carried all the way
   down (docs/algorithm.md, "Layouts continued along t");
2. each picture's points (through the fit's own point-to-landmark transitions) are scored on a
   random subsample of slices (intraslice) and units (interslice) at k = 10 and k = 40. As in
   :func:`mphate.metrics.neighbor_preservation`, identical trace vectors (dead units, frozen
   histories) tie: a found neighbour counts when it is identical to one of the trace's k
   nearest, so a picture is not scored by the order a sort left tied points in;
3. :func:`choose_t` takes the smallest t whose k = 10 sum (intra + inter) and k = 40 sum are
   both within a tie of their best over the candidates. Its layout is the fit's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from mphate.embed.kernel import exact_sq_distances
from mphate.runtime import parallel_map

#: candidate times, a factor of about sqrt(2) apart from 100 to 25, then 12, laid out in this
#: order (capped at t_max). No 17: each candidate costs a full layout, and over the 32 cases
#: of the window study (docs/benchmarks.md) the fit took 17 once; without it the other 31
#: drew the same pictures and that one took 12, 0.0006 lower in its worst cell. Nothing below
#: 12: on the eleven real runs of docs/benchmarks.md every run had a t >= 12 keeping all
#: eight preservation numbers within 0.01 of the reference, t = 6 cost a post-ReLU
#: CNN 0.027 of intraslice preservation, and the live view's out-of-sample slices lag a full
#: fit more at small t (0.03 interslice at t = 2 on the synthetic trace of tests/live)
CANDIDATE_T = (100, 71, 50, 35, 25, 12)
#: slices scored for intraslice, units scored for interslice preservation
N_SCORED_SLICES, N_SCORED_UNITS = 100, 256
#: neighbours of the preservation scores (the paper's Table 1 uses 10; 40 sees the mesoscale)
SCORE_K = (10, 40)
#: a candidate ties with the best when its k = 10 sum (intra + inter) is within TIE[0] of the
#: best k = 10 sum and its k = 40 sum within TIE[1] of the best k = 40 sum; the smallest tied
#: t wins (less smoothing keeps more interslice structure)
TIE = (0.005, 0.01)


def candidate_times(t_max: int, grid=CANDIDATE_T) -> list[int]:
    """The candidate times at most ``t_max``, largest first (the order they are laid out in);
    ``t_max`` itself stands in for the grid's times above it."""
    return sorted({int(min(t, t_max)) for t in grid if t >= 1}, reverse=True)


def choose_t(scores: dict, tie=TIE) -> int:
    """The smallest t whose k = 10 and k = 40 scores are both within ``tie`` of their best.

    Parameters
    ----------
    scores : dict of int -> tuple (intra k10, inter k10, intra k40, inter k40)
        A kind a trace cannot be scored on (one slice: no interslice) is None and counts 0.
    tie : (float, float)
        Ties of the k = 10 and the k = 40 sums.

    Returns
    -------
    int. When no t is tied on both (the best k = 10 and the best k = 40 pictures far apart),
    the t with the largest sum of all four.
    """
    def total(values):
        return sum(v for v in values if v is not None)

    small = {t: total(v[:2]) for t, v in scores.items()}
    large = {t: total(v[2:]) for t, v in scores.items()}
    top_small, top_large = max(small.values()), max(large.values())
    tied = [t for t in scores if small[t] >= top_small - tie[0] and large[t] >= top_large - tie[1]]
    if tied:
        return min(tied)
    return max(scores, key=lambda t: (small[t] + large[t], -t))


@dataclass
class ScoringSample:
    """What the score of every candidate t shares: fixed subsamples and the trace's kNN.

    Attributes
    ----------
    slices, units : ndarray
        Scored slices (intraslice) and units (interslice).
    reference_intra : ndarray, shape (n_scored_slices, n_units, k) or None
    reference_inter : ndarray, shape (n_scored_units, n_slices, k) or None
        The trace's nearest neighbours (in the kernel's features), nearest first, within each
        scored slice / along each scored unit's history, k the largest of :data:`SCORE_K`
        there is room for; None when there are too few units / slices.
    ks : tuple of int
        The neighbour counts scored (:data:`SCORE_K`).
    duplicates_intra : ndarray, shape (n_scored_slices, n_units), or None
    duplicates_inter : ndarray, shape (n_scored_units, n_slices), or None
        Each point's first identical point within its scored slice / history
        (:func:`duplicate_labels`); None where every point there is distinct.
    """

    slices: np.ndarray
    units: np.ndarray
    reference_intra: np.ndarray | None
    reference_inter: np.ndarray | None
    ks: tuple
    duplicates_intra: np.ndarray | None = None
    duplicates_inter: np.ndarray | None = None


def duplicate_labels(points: np.ndarray) -> np.ndarray | None:
    """Each point's first identical point within its batch: (b, n, d) -> (b, n) indices, or
    None when no batch holds two identical points.

    Exact equality of the vectors (-0.0 equal to 0.0): what dead units (a z-scored constant is
    all zeros) and frozen histories (a unit whose weights stopped moving repeats its vector
    bit for bit) give. :func:`mphate.metrics.neighbor_preservation` also ties distances within
    1e-9 of the largest, a rounding allowance that identical vectors do not need.
    """
    n_batches, n, n_features = points.shape
    labels = np.empty((n_batches, n), dtype=np.intp)
    any_duplicate = False
    for b, block in enumerate(points):
        rows = np.ascontiguousarray(block) + block.dtype.type(0)  # -0.0 + 0 is 0.0
        keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * n_features))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        labels[b] = first[inverse.ravel()]
        any_duplicate |= len(first) < n
    return labels if any_duplicate else None


def _as_duplicate_labels(neighbors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Neighbour indices (b, n, K) replaced by their points' labels (b, n) (:func:`duplicate_labels`)."""
    flat = neighbors.reshape(len(neighbors), -1)
    return np.take_along_axis(labels, flat, axis=1).reshape(neighbors.shape)


def _drop_repeats(rows: np.ndarray, fill: int) -> np.ndarray:
    """``rows`` (m, K) with every entry already seen earlier in its row set to ``fill``."""
    order = np.argsort(rows, axis=1, kind="stable")  # equal entries keep their order in the row
    in_order = np.take_along_axis(rows, order, axis=1)
    repeat = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(repeat, order[:, 1:], in_order[:, 1:] == in_order[:, :-1], axis=1)
    return np.where(repeat, fill, rows)


def _knn_into(points: np.ndarray, k: int, out: np.ndarray) -> None:
    """Indices of the k nearest other rows within each batch, nearest first: (b, n, d) into
    ``out`` (b, n, k).

    One batch at a time, so memory stays at one n x n block (wide layers have thousands of units).
    """
    n = points.shape[1]
    diagonal = np.arange(n)
    for b, block in enumerate(points):
        dist = exact_sq_distances(block[None])[0]
        dist[diagonal, diagonal] = np.inf
        nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(dist, nearest, axis=1), axis=1, kind="stable")
        out[b] = np.take_along_axis(nearest, order, axis=1)


def _knn_low_dim_into(points: np.ndarray, k: int, out: np.ndarray) -> None:
    """:func:`_knn_into` for a few dimensions (an embedding's 2 or 3): a k-d tree per batch
    instead of the dense n x n block, the same neighbours up to ties at the k-th distance."""
    n = points.shape[1]
    rows = np.arange(n)
    for b, block in enumerate(points):
        _, found = cKDTree(block).query(block, k=k + 1)
        # drop each point itself; when it coincides with others the tree may list it later
        is_self = found == rows[:, None]
        is_self[~is_self.any(axis=1), -1] = True
        out[b] = found[~is_self].reshape(n, k)


#: entries (rows x candidates, int16) of the rank table :func:`overlaps` works in: 2 MB, so
#: that it stays in cache. A fresh 16 MB table for each chunk of rows took 0.3-0.4 s of the
#: 1,000 x 2,048 trace's 200,000 scored rows, this 0.06 s
_OVERLAP_CHUNK_ENTRIES = 2**20


def overlaps(reference: np.ndarray, found: np.ndarray, ks, duplicates: np.ndarray | None = None) -> list[float]:
    """For each k of ``ks``: the mean fraction of the first k of ``found`` among the first k
    of ``reference``, both (b, n, K) neighbour indices within b batches, nearest first (k is
    capped at K).

    ``duplicates`` (b, n), when given (:func:`duplicate_labels`): identical points tie, so a
    found neighbour counts when it is identical to one of the first k of ``reference``.

    Equals comparing the two prefixes pair by pair. Each row's reference neighbours are written
    into a table by rank, and ``found``'s looked up in it: one pass for every k, where
    comparing all pairs costs K^2 per row (1,600 at K = 40).
    """
    ref = reference.reshape(-1, reference.shape[-1])
    emb = found.reshape(-1, found.shape[-1])
    if duplicates is not None:
        # compare labels: a label's rank is that of its first entry in the reference row, and
        # its repeats write into a column of their own (the batch size, past every label),
        # which no found neighbour reads
        ref = _drop_repeats(_as_duplicate_labels(reference, duplicates).reshape(ref.shape),
                            fill=duplicates.shape[1])
        emb = _as_duplicate_labels(found, duplicates).reshape(emb.shape)
    depth = ref.shape[1]
    n_candidates = int(max(ref.max(initial=0), emb.max(initial=0))) + 1
    ks = [min(int(k), depth) for k in ks]
    hits = np.zeros(len(ks))
    chunk = max(1, min(len(ref), _OVERLAP_CHUNK_ENTRIES // n_candidates))
    ranks = np.broadcast_to(np.arange(depth, dtype=np.int16), (chunk, depth))
    # one flat table (row-major, chunk x candidates) for every chunk of rows; the entries a
    # chunk writes are put back after it, so the table is filled only once
    table = np.full(chunk * n_candidates, depth, dtype=np.int16)
    for start in range(0, len(ref), chunk):
        r, e = ref[start:start + chunk], emb[start:start + chunk]
        row_start = (np.arange(len(r), dtype=np.intp) * n_candidates)[:, None]
        written = r + row_start
        table[written] = ranks[:len(r)]
        found_rank = table[e + row_start]  # each found neighbour's rank among the reference's
        table[written] = depth
        for i, k in enumerate(ks):
            hits[i] += np.count_nonzero(found_rank[:, :k] < k)
    return [float(h / (len(ref) * k)) if len(ref) else 0.0 for h, k in zip(hits, ks)]


def nearest_neighbors(points: np.ndarray, k: int, n_threads: int = 1) -> np.ndarray:
    """Indices of the k nearest other rows within each batch, nearest first: (b, n, d) -> (b, n, k).

    A k-d tree per batch for a few dimensions (an embedding's 2 or 3), else one dense block of
    distances per batch; the batches split over ``n_threads`` (both release the GIL). The NumPy
    backend's ``nearest_neighbors``.
    """
    out = np.empty(points.shape[:2] + (k,), dtype=np.intp)
    fill = _knn_low_dim_into if points.shape[2] <= 3 else _knn_into
    groups = np.array_split(np.arange(len(points)), max(1, min(int(n_threads), len(points))))

    def run(batches):
        if len(batches):
            fill(points[batches[0]:batches[-1] + 1], k, out[batches[0]:batches[-1] + 1])

    parallel_map(run, groups, n_threads)
    return out


def scoring_sample(features: np.ndarray, rng: np.random.Generator, *,
                   n_slices_scored: int = N_SCORED_SLICES, n_units_scored: int = N_SCORED_UNITS,
                   ks=SCORE_K, knn=nearest_neighbors) -> ScoringSample:
    """Draw the subsamples and the trace's neighbourhoods for scoring candidate times.

    Parameters
    ----------
    features : ndarray, shape (n_slices, n_units, n_features)
        What the kernel was built from (the z-scored trace by default).
    rng : numpy.random.Generator
    ks : tuple of int
        Neighbour counts scored; each is capped at the points there are (n - 1).
    knn : callable, as :func:`nearest_neighbors` (a backend's, which may run on a device)
    """
    n_slices, n_units, _ = features.shape
    slices = np.sort(rng.choice(n_slices, size=min(n_slices_scored, n_slices), replace=False))
    units = np.sort(rng.choice(n_units, size=min(n_units_scored, n_units), replace=False))
    k_intra, k_inter = min(max(ks), n_units - 1), min(max(ks), n_slices - 1)
    scored_slices = features[slices]
    histories = np.ascontiguousarray(features[:, units].transpose(1, 0, 2))
    reference_intra = knn(scored_slices, k_intra) if k_intra >= 1 else None
    reference_inter = knn(histories, k_inter) if k_inter >= 1 else None
    return ScoringSample(slices, units, reference_intra, reference_inter, tuple(ks),
                         duplicates_intra=duplicate_labels(scored_slices) if k_intra >= 1 else None,
                         duplicates_inter=duplicate_labels(histories) if k_inter >= 1 else None)


def preservation_score(embedding: np.ndarray, sample: ScoringSample, n_slices: int, n_units: int,
                       knn=nearest_neighbors) -> tuple:
    """Intraslice and interslice preservation of ``embedding`` (N, d) on the scored subsample.

    ``knn``: as :func:`nearest_neighbors`. Returns (intraslice, interslice) for each k of
    ``sample.ks`` in turn, e.g. (intra k10, inter k10, intra k40, inter k40); each k is capped
    at the points there are, and a kind without a reference is None.
    """
    emb = embedding.reshape(n_slices, n_units, -1)
    scores = {}
    if sample.reference_intra is not None:
        reference = sample.reference_intra
        scores["intra"] = overlaps(reference, knn(emb[sample.slices], reference.shape[-1]), sample.ks,
                                   sample.duplicates_intra)
    if sample.reference_inter is not None:
        reference = sample.reference_inter
        history = np.ascontiguousarray(emb[:, sample.units].transpose(1, 0, 2))
        scores["inter"] = overlaps(reference, knn(history, reference.shape[-1]), sample.ks,
                                   sample.duplicates_inter)
    return tuple(scores[kind][i] if kind in scores else None
                 for i in range(len(sample.ks)) for kind in ("intra", "inter"))
