"""Quantities from the paper: neighbourhood preservation and visualisation variance."""
from __future__ import annotations

import numpy as np

from mphate.traces.io import as_trace_array
from mphate.embed.kernel import exact_sq_distances
from mphate.embed.normalize import zscore_units


def _knn_indices(dist: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest other points, shape (n_batch, n_points, k) (self excluded)."""
    dist = dist.copy()
    idx = np.arange(dist.shape[1])
    dist[:, idx, idx] = np.inf
    return np.argpartition(dist, k - 1, axis=2)[:, :, :k]


#: reference distances within this fraction of the batch's largest squared distance of the k-th
#: one count as tied with it. Identical vectors (dead units z-score to exact zeros) come out of
#: the float64 distance expansion a rounding apart (about 1e-15 of the largest), so exact
#: comparison would break their ties by rounding noise; distinct real activations are far apart
#: at this scale.
TIE_TOLERANCE = 1e-9


def _overlap(reference: np.ndarray, embedded: np.ndarray, k: int) -> np.ndarray:
    """Fraction of each point's k nearest neighbours in ``embedded`` that are among its k nearest
    in ``reference``, ties in ``reference`` included.

    A point's reference neighbourhood is every other point no farther than its k-th nearest
    (up to :data:`TIE_TOLERANCE`): where several points tie there, as identical vectors do
    (dead units), any of them is a right neighbour. Without ties this is exactly the k nearest.
    Before 2026-12-07 the tie was broken by the order a partial sort left the tied points in,
    so on traces with many dead units the score rewarded embeddings that tie the same points
    the same way rather than embeddings that keep them together (docs/benchmarks.md).

    Parameters
    ----------
    reference : ndarray, shape (n_batch, n_points, d_ref)
    embedded : ndarray, shape (n_batch, n_points, d_emb)

    Returns
    -------
    ndarray, shape (n_batch, n_points)
    """
    # exact distances: the float32 expansion misread interslice neighbourhoods until 89f12c7
    ref_dist = exact_sq_distances(reference)
    n_points = ref_dist.shape[1]
    tolerance = TIE_TOLERANCE * ref_dist.max(axis=(1, 2), keepdims=True)
    diagonal = np.arange(n_points)
    ref_dist[:, diagonal, diagonal] = np.inf
    kth = np.partition(ref_dist, k - 1, axis=2)[:, :, k - 1 : k]
    is_ref_neighbour = ref_dist <= kth + tolerance
    del ref_dist
    emb_nn = _knn_indices(exact_sq_distances(embedded), k)
    return np.take_along_axis(is_ref_neighbour, emb_nn, axis=2).mean(axis=2)


def _batched(fn, reference, embedded, k, max_bytes=2**27):
    n_batch, n_points = reference.shape[:2]
    step = max(1, max_bytes // (8 * n_points * n_points))
    return np.concatenate(
        [fn(reference[i : i + step], embedded[i : i + step], k) for i in range(0, n_batch, step)]
    )


def neighbor_preservation(embedding, trace, k: int = 10, space: str = "normalized") -> dict:
    """Intraslice and interslice neighbourhood preservation (the paper's Table 1).

    intraslice: for every slice and unit, the fraction of the unit's k nearest neighbours among
    that slice's units in the embedding that are also among its k nearest in that slice's
    activation space; averaged over all (slice, unit).
    interslice: for every unit and slice, the same among the unit's own points over time.

    Parameters
    ----------
    embedding : array-like, shape (n_slices * n_units, n_components), slice-major
    trace : array-like, shape (n_slices, n_units, n_trace), or a :class:`mphate.Trace`
    k : int
        Needs k < n_units (intraslice) and k < n_slices (interslice).
    space : {"normalized", "raw"}
        Reference space: the z-scored trace (what M-PHATE embeds) or the raw activations.

    Returns
    -------
    dict with float values "intraslice" and "interslice", each in [0, 1]
    """
    data = as_trace_array(trace)
    n_slices, n_units, _ = data.shape
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim != 2 or embedding.shape[0] != n_slices * n_units:
        raise ValueError(
            f"embedding must have shape ({n_slices * n_units}, n_components) for a trace of "
            f"{n_slices} slices x {n_units} units; got {embedding.shape}"
        )
    if not np.isfinite(embedding).all():
        raise ValueError("embedding contains NaN or inf")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    if k >= n_units or k >= n_slices:
        raise ValueError(
            f"k={k} needs more than k units and slices; the trace has {n_units} units and "
            f"{n_slices} slices"
        )
    if space == "normalized":
        reference = zscore_units(data)
    elif space == "raw":
        reference = data.astype(np.float32)
    else:
        raise ValueError(f"space must be 'normalized' or 'raw'; got {space!r}")
    emb = embedding.reshape(n_slices, n_units, -1)
    intra = _batched(_overlap, reference, emb, k)
    inter = _batched(
        _overlap,
        np.ascontiguousarray(reference.transpose(1, 0, 2)),
        np.ascontiguousarray(emb.transpose(1, 0, 2)),
        k,
    )
    return {"intraslice": float(intra.mean()), "interslice": float(inter.mean())}


def visualization_variance(embedding, n_slices: int) -> float:
    """Sum over slices of the total variance (trace of the covariance) of that slice's points.

    Parameters
    ----------
    embedding : array-like, shape (n_slices * n_units, n_components), slice-major
    """
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim != 2 or embedding.shape[0] % n_slices:
        raise ValueError(
            f"embedding of shape {embedding.shape} cannot be split into {n_slices} slices"
        )
    per_slice = embedding.reshape(n_slices, -1, embedding.shape[1])
    # ddof=1 matches numpy.cov, the sample covariance
    return float(per_slice.var(axis=1, ddof=1).sum())


def task_switch_ari(embedding_before, embedding_after, k_range=range(3, 9), n_seeds: int = 20) -> float:
    """How well the units' arrangement survives a task switch (the paper's continual-learning score).

    The units' positions in the embedding just before a switch and shortly after it are each
    clustered by k-means; the adjusted Rand index between the two clusterings says whether the
    same units still group together. It is averaged over the number of clusters ``k`` and over
    ``n_seeds`` k-means seeds (the same seed for both clusterings of a pair). 1 means the
    grouping is unchanged, about 0 that it is no better than chance.

    Parameters
    ----------
    embedding_before, embedding_after : array-like, shape (n_units, n_components)
        Row ``u`` is the same unit in both (e.g. the rows of one slice of a slice-major
        embedding: ``embedding[s * n_units:(s + 1) * n_units]``).
    k_range : iterable of int, default range(3, 9)
        Numbers of clusters (the paper: 3..8); each must be below n_units.
    n_seeds : int, default 20
        k-means seeds 0..n_seeds-1 for each k (one initialisation each).

    Returns
    -------
    float, the mean adjusted Rand index over all (k, seed)
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    before = np.asarray(embedding_before, dtype=np.float64)
    after = np.asarray(embedding_after, dtype=np.float64)
    if before.ndim != 2 or before.shape != after.shape:
        raise ValueError(
            "embedding_before and embedding_after must be (n_units, n_components) arrays of the "
            f"same shape; got {before.shape} and {after.shape}"
        )
    if not (np.isfinite(before).all() and np.isfinite(after).all()):
        raise ValueError("the embeddings contain NaN or inf")
    ks = [int(k) for k in k_range]
    if not ks or min(ks) < 2 or max(ks) >= before.shape[0]:
        raise ValueError(f"k_range must hold values in [2, n_units); got {ks} for {before.shape[0]} units")
    if not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer; got {n_seeds!r}")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from threadpoolctl import threadpool_limits

    scores = []
    # one OpenMP thread: on a few hundred points k-means is quick, and on a busy machine its
    # parallel barriers can cost a hundred times the work
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="openmp"):
        # units piled on one spot give fewer distinct clusters than k: that is a valid answer
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in ks:
            for seed in range(n_seeds):
                labels_before = KMeans(k, n_init=1, random_state=seed).fit_predict(before)
                labels_after = KMeans(k, n_init=1, random_state=seed).fit_predict(after)
                scores.append(adjusted_rand_score(labels_before, labels_after))
    return float(np.mean(scores))
