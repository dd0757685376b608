"""Compress the diffusion operator onto landmarks.

Landmarks are groups of points that the diffusion cannot tell apart at short time scales:
spectral clustering of the diffusion operator. The landmark operator is the two-step walk
point -> landmark -> point -> landmark.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mphate.runtime import parallel_map


def spectral_features(
    kernel, n_components: int, rng: np.random.Generator, n_rounds: int = 2, degree: int = 6
) -> np.ndarray:
    """Diffusion-map coordinates of every point from the leading eigenvectors of the kernel.

    Works on the symmetric conjugate ``A = D^-1/2 K D^-1/2`` of the diffusion operator
    ``P = D^-1 K`` (same eigenvalues; P's right eigenvectors are ``D^-1/2`` times A's). The
    multislice graph has hundreds of eigenvalues within a hair of 1 (each unit's history is a
    well-connected chain), so plain subspace iteration converges slowly. Chebyshev-filtered
    subspace iteration converges several times faster per product with the kernel: each round
    passes the block through a Chebyshev polynomial of the given degree that is bounded by 1
    on ``[-1, cutoff]`` and grows fast above it, with the cutoff set to the smallest Ritz
    value of the previous round, then orthonormalises and rotates onto Ritz vectors.

    Parameters
    ----------
    kernel : Kernel (see :class:`mphate.embed.kernel.Kernel`)
    n_components : int
    rng : numpy.random.Generator
        Draws the random start block.
    n_rounds, degree : int
        ``1 + n_rounds * degree`` products with the kernel in all. Two rounds of degree 6
        gave the same neighbourhood preservation on a real trace as three of degree 4 (one
        orthonormalisation fewer); one round of degree 12 was clearly worse.

    Returns
    -------
    ndarray, shape (N, n_components), float32
    """
    n = kernel.shape[0]
    n_components = min(n_components, n - 2)
    block = min(n, n_components + 1 + 10)
    inv_sqrt_deg = (1.0 / np.sqrt(kernel.degrees())).astype(np.float32)
    # three (n, block) buffers, reused: fresh arrays of this size cost page faults every time
    buffers = [np.empty((n, block), dtype=np.float32) for _ in range(3)]

    def filtered_step(source, target, centre, factor, subtract=None):
        """target = factor * (A - centre) source - subtract, fused into the product's threads."""

        def epilogue(part):
            result = part(target)
            result -= np.float32(centre) * part(source)
            result *= np.float32(factor)
            if subtract is not None:
                result -= part(subtract)

        kernel.matmat(source, scale=inv_sqrt_deg, out=target, epilogue=epilogue)

    basis, applied, spare = buffers
    # any random start works; uniform draws cost a fraction of Gaussian ones
    rng.random((n, block), dtype=np.float32, out=basis)
    basis -= np.float32(0.5)
    _orthonormalize(basis, out=basis, scratch=spare)
    kernel.matmat(basis, scale=inv_sqrt_deg, out=applied)
    cutoff = 0.5
    for _ in range(n_rounds):
        # Chebyshev recurrence on x = (A - centre) / half_width, which maps [-1, cutoff] onto
        # [-1, 1]: T_1 = x T_0, T_k+1 = 2 x T_k - T_k-1, three blocks in rotation
        centre, half_width = (cutoff - 1.0) / 2, (cutoff + 1.0) / 2
        previous, current, following = basis, applied, spare
        current -= np.float32(centre) * previous
        current /= np.float32(half_width)
        for _ in range(2, degree + 1):
            filtered_step(current, following, centre, 2.0 / half_width, subtract=previous)
            previous, current, following = current, following, previous
        basis, spare, applied = current, previous, following
        _orthonormalize(basis, out=basis, scratch=spare)
        kernel.matmat(basis, scale=inv_sqrt_deg, out=applied)
        ritz_values, basis, applied, spare = _rotate_to_ritz_vectors(basis, applied, spare)
        cutoff = float(np.clip(ritz_values[-1], 0.0, 0.999))
    del applied, spare, buffers
    keep = slice(1, n_components + 1)  # drop the trivial (constant) eigenvector
    coords = basis[:, keep] * inv_sqrt_deg[:, None]
    coords *= np.abs(ritz_values[keep]).astype(np.float32)
    return coords


def _rotate_to_ritz_vectors(basis, applied, spare):
    """Rotate an orthonormal block ``basis`` (n, b) and ``applied = A basis`` onto the Ritz
    vectors of ``A`` in that subspace, largest Ritz value first; returns the Ritz values and
    the three buffers in their new roles (basis, applied, spare)."""
    ritz_values, ritz_vectors = np.linalg.eigh(_symmetric_part(basis.T @ applied))
    order = np.argsort(ritz_values)[::-1]
    ritz_values, ritz_vectors = ritz_values[order], ritz_vectors[:, order].astype(np.float32)
    np.matmul(basis, ritz_vectors, out=spare)
    basis, spare = spare, basis
    np.matmul(applied, ritz_vectors, out=spare)
    applied, spare = spare, applied
    return ritz_values, basis, applied, spare


#: spectral coordinates on the whole graph below this many points
SMALL_GRAPH_POINTS = 20_000
#: points of the slice-subsampled graph that "auto" aims at, at most
MAX_SPECTRAL_POINTS = 250_000


def auto_spectral_stride(n_points: int) -> int:
    """The slice stride for :func:`landmark_features` that ``spectral_stride="auto"`` uses."""
    if n_points < SMALL_GRAPH_POINTS:
        return 1
    return max(2, int(np.ceil(n_points / MAX_SPECTRAL_POINTS)))


def effective_stride(stride, n_slices: int, n_units: int) -> int:
    """The slice stride :func:`landmark_features` uses: "auto" resolved by
    :func:`auto_spectral_stride`, then capped at ``n_slices // 2`` (and at least 1)."""
    if stride == "auto":
        stride = auto_spectral_stride(n_slices * n_units)
    return max(1, min(int(stride), n_slices // 2))


def landmark_features(kernel, n_components: int, rng: np.random.Generator, stride=1) -> np.ndarray:
    """Spectral coordinates of every point, for clustering points into landmarks.

    With ``stride`` 1, :func:`spectral_features` of the whole kernel. Otherwise the
    coordinates are computed on the subgraph of every ``stride``-th slice (the same kernel
    entries, restricted to those slices' points), and the points of the other slices take
    their own unit's coordinates interpolated linearly in time between the computed slices
    before and after them (:func:`interpolate_along_histories`). The products with the kernel
    dominate the spectral step, and above a few hundred thousand points the whole kernel's
    interslice blocks no longer fit in memory and are recomputed for every product; the
    subgraph's are stored.

    Parameters
    ----------
    kernel : MultisliceKernel (a kernel with slices; any :class:`~mphate.embed.kernel.Kernel`
        when ``stride`` is 1)
    rng : numpy.random.Generator
    stride : int >= 1 or "auto", see :func:`effective_stride`

    Returns
    -------
    ndarray, shape (N, n_components), float32
    """
    n_points = kernel.shape[0]
    if stride == 1:
        return spectral_features(kernel, n_components, rng)
    stride = effective_stride(stride, kernel.n_slices, kernel.n_units)
    if stride == 1:
        return spectral_features(kernel, n_components, rng)
    slices = np.arange(0, kernel.n_slices, stride)
    sub = kernel.subsample_slices(slices)
    coords = spectral_features(sub, n_components, rng)
    del sub
    coords = coords.reshape(len(slices), kernel.n_units, -1)
    return interpolate_along_histories(slices, coords, kernel.n_slices).reshape(n_points, -1)


def interpolate_along_histories(slices, values, n_slices: int):
    """Values known at some slices spread to every slice, linearly in time along each unit.

    A computed slice keeps its own values; a slice between two computed ones takes their
    values weighted by its distance in slices (with stride 2, their mean); a slice before the
    first or after the last takes that one's values.

    Why not a smoothing along time: this replaced the interslice-kernel weighted average of
    every computed slice in reach (one diffusion step along each unit's history, the computed
    slices included). Where a unit's history is alike over many slices that average spread
    one moment's coordinates over dozens of slices, and the landmarks lost the intraslice
    structure of each moment: on the held-out deep post-activation MLP (100 x 256, stride 2)
    z intra k40 went from 0.532 to 0.572 at t = 25 (the whole graph, stride 1: 0.559), on the
    post-activation panel run (t = 71) from 0.402 to 0.425 (docs/benchmarks.md).

    Parameters
    ----------
    slices : int ndarray, shape (n_given,), increasing
    values : ndarray or torch tensor, shape (n_given, n_units, m)
    n_slices : int

    Returns
    -------
    array of the same library and dtype, shape (n_slices, n_units, m)
    """
    slices = np.asarray(slices)
    every = np.arange(n_slices)
    before = np.clip(np.searchsorted(slices, every, side="right") - 1, 0, len(slices) - 1)
    after = np.minimum(before + 1, len(slices) - 1)
    span = np.maximum(slices[after] - slices[before], 1)
    share = np.clip((every - slices[before]) / span, 0.0, 1.0)[:, None, None]
    if isinstance(values, np.ndarray):
        out = np.empty((n_slices,) + values.shape[1:], dtype=values.dtype)
        share = share.astype(values.dtype)
    else:  # a torch tensor: indices and shares on its device
        import torch

        out = values.new_empty((n_slices,) + tuple(values.shape[1:]))
        before, after = (torch.as_tensor(i, device=values.device) for i in (before, after))
        share = torch.as_tensor(share, dtype=values.dtype, device=values.device)
    # a few slices at a time: at 2 million points the whole (n_slices, n_units, m) array is
    # 0.8 GB, and gathering both neighbours at once would hold three of them
    step = max(1, _INTERPOLATION_CHUNK_BYTES // max(1, 4 * int(np.prod(values.shape[1:]))))
    for s0 in range(0, n_slices, step):
        part = slice(s0, s0 + step)
        left = values[before[part]]
        out[part] = left + share[part] * (values[after[part]] - left)
    return out


#: bytes of each of the gathered neighbour arrays :func:`interpolate_along_histories` forms at once
_INTERPOLATION_CHUNK_BYTES = 2**25


def _symmetric_part(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.astype(np.float64)
    return (matrix + matrix.T) / 2


def _orthonormalize(vectors: np.ndarray, out=None, scratch=None) -> np.ndarray:
    """Orthonormal basis of the columns of a tall matrix, shape (n, m), by Cholesky QR twice.

    Householder QR of a 100k x 100 matrix runs unblocked and takes seconds; two rounds of
    ``Q = Z R^-1`` with ``R`` from the Cholesky factor of the small Gram matrix take
    milliseconds and are as accurate for the power iterations here. ``out`` (which may be
    ``vectors`` itself) and ``scratch`` are optional (n, m) float32 buffers.
    """
    if scratch is None:
        scratch = np.empty_like(vectors)
    if out is None:
        out = np.empty_like(vectors)
    source = vectors
    for target in (scratch, out):
        gram = (source.T @ source).astype(np.float64)
        gram += np.eye(len(gram)) * (1e-10 * np.trace(gram) / len(gram) + 1e-30)
        try:
            # NumPy's LAPACK, not SciPy's: the two link separate OpenBLAS builds whose idle
            # threads spin, and alternating between them in this loop doubled its time
            inv_upper = np.linalg.inv(np.linalg.cholesky(gram)).T
        except np.linalg.LinAlgError:
            # numerically rank-deficient block (tiny graphs, where the block is nearly as
            # wide as the graph is large): Householder QR copes
            out[...] = np.linalg.qr(source.astype(np.float64))[0]
            return out
        np.matmul(source, inv_upper.astype(np.float32), out=target)
        source = target
    return out


def _allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` clusters over groups in proportion to their sizes (at least 1, at most size)."""
    share = sizes * (total / sizes.sum())
    counts = np.clip(np.floor(share).astype(int), 1, sizes)
    remainder = total - counts.sum()
    order = np.argsort(-(share - np.floor(share)))
    for idx in np.concatenate([order] * 2):
        if remainder <= 0:
            break
        if counts[idx] < sizes[idx]:
            counts[idx] += 1
            remainder -= 1
    return counts


def _nearest_centre(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each point's nearest centre and its squared distance minus the point's norm.

    Scores are formed in row blocks of about 16 MB, so a large group of points never needs a
    full (n_points, n_centres) matrix.

    Returns
    -------
    labels : ndarray of int, shape (n_points,)
    scores : ndarray, shape (n_points,), ``|c|^2 - 2 x.c`` of the nearest centre
    """
    centre_norms = np.einsum("ij,ij->i", centres, centres)
    labels = np.empty(len(points), dtype=np.int64)
    best = np.empty(len(points), dtype=np.float32)
    rows = max(1, 2**22 // max(1, len(centres)))
    for start in range(0, len(points), rows):
        scores = points[start : start + rows] @ (np.float32(-2.0) * centres.T)
        scores += centre_norms[None, :]
        labels[start : start + rows] = nearest = scores.argmin(axis=1)
        best[start : start + rows] = scores[np.arange(len(scores)), nearest]
    return labels, best


def kmeans_plus_plus_centres(points: np.ndarray, n_clusters: int, rng) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each centre is a point drawn with
    probability proportional to its squared distance from the centres drawn before it.

    Parameters
    ----------
    points : ndarray, shape (n, d), float32
    n_clusters : int, <= n
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (n_clusters, d), float32
    """
    n = len(points)
    points = np.asarray(points, dtype=np.float32)
    sq_norms = np.einsum("ij,ij->i", points, points)
    chosen = np.empty(n_clusters, dtype=np.int64)
    nearest_sq = np.full(n, np.inf)  # squared distance of each point to its nearest centre so far
    total = 0.0
    for j in range(n_clusters):
        if j == 0:
            pick = int(rng.integers(n))
        elif total <= 0:  # every point sits on a centre: the rest uniformly among the others
            rest = np.setdiff1d(np.arange(n), chosen[:j])
            chosen[j:] = rng.choice(rest, n_clusters - j, replace=False)
            break
        else:
            pick = min(int(np.searchsorted(np.cumsum(nearest_sq), rng.random() * total)), n - 1)
        chosen[j] = pick
        # |x - c|^2 from one matrix-vector product: a pass over the points per centre, not three
        sq = sq_norms + sq_norms[pick] - 2.0 * (points @ points[pick])
        np.minimum(nearest_sq, np.maximum(sq, 0.0), out=nearest_sq)
        nearest_sq[pick] = 0.0
        total = nearest_sq.sum()
    return points[chosen].copy()


def kmeans(points: np.ndarray, n_clusters: int, rng, n_iter: int = 10, seeding: str = "random") -> np.ndarray:
    """Lloyd's k-means; empty clusters are re-seeded far away.

    Parameters
    ----------
    points : ndarray, shape (n, d), float32
    n_clusters : int, <= n
    rng : numpy.random.Generator
    seeding : {"random", "k-means++"}
        Start from randomly chosen points (centres follow the density, so clusters come out
        even in size) or by :func:`kmeans_plus_plus_centres` (centres spread over the space,
        so dense regions form larger clusters).

    Returns
    -------
    labels : ndarray of int, shape (n,), every label in [0, n_clusters) used
    """
    n = len(points)
    if n_clusters >= n:
        return np.arange(n)
    if seeding == "k-means++":
        centres = kmeans_plus_plus_centres(points, n_clusters, rng)
    elif seeding == "random":
        centres = points[rng.choice(n, n_clusters, replace=False)].astype(np.float32)
    else:
        raise ValueError(f"seeding must be 'random' or 'k-means++'; got {seeding!r}")
    sq_norms = np.einsum("ij,ij->i", points, points)
    labels = None
    for _ in range(n_iter):
        new_labels, best = _nearest_centre(points, centres)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        onehot = sp.csr_matrix(
            (np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(n_clusters, n)
        )
        counts = np.bincount(labels, minlength=n_clusters)
        sums = np.asarray(onehot @ points)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        if not filled.all():
            # move each empty centre onto one of the worst-fitted points
            worst = np.argsort(best + sq_norms)[::-1][: int((~filled).sum())]
            centres[~filled] = points[worst]
    labels, _ = _nearest_centre(points, centres)
    _, labels = np.unique(labels, return_inverse=True)
    return labels


#: below this many points per landmark the k-means behind the landmarks starts from k-means++
#: seeding instead of random points. Random points follow the density, and with so few points
#: per landmark nearly every landmark is then one to three points: the compressed diffusion
#: barely differs from the uncompressed one, which drew worse pictures on the CNN run. k-means++
#: merges dense regions into larger landmarks and keeps outlying points apart. Measured on the
#: CNN run and on six traces cut from the other panel runs to 4.8 or fewer points per landmark,
#: three seeds each (docs/benchmarks.md, benchmarks/few_points_study.py): random seeding left a
#: cell more than 0.01 below the reference in 8 of 21 runs (every CNN seed), k-means++ in 4 (no
#: CNN seed), though on the cut MLP traces random seeding kept the higher average. At 9.6
#: points per landmark and more (the other panel runs), k-means++ lost interslice
#: preservation (post-activation run: z inter k40 -0.016).
FEW_POINTS_PER_LANDMARK = 5


def few_points_per_landmark(n_points: int, n_landmark: int) -> bool:
    """Whether there are fewer than :data:`FEW_POINTS_PER_LANDMARK` points per landmark: the
    regime of k-means++ seeding here and of the t search laying out every landmark."""
    return n_points < FEW_POINTS_PER_LANDMARK * n_landmark


def landmark_seeding(n_points: int, n_landmark: int) -> str:
    """The k-means seeding :func:`cluster_landmarks` uses for this many points and landmarks."""
    return "k-means++" if few_points_per_landmark(n_points, n_landmark) else "random"


def cluster_landmarks(features: np.ndarray, n_landmark: int, rng: np.random.Generator,
                      n_threads: int = 1, seeding: str = "random") -> np.ndarray:
    """Partition points into about ``n_landmark`` groups by two-level k-means.

    A flat k-means into thousands of clusters costs O(N * n_landmark) per iteration; splitting
    first into about sqrt(n_landmark) coarse clusters and then each coarse cluster into its
    share of landmarks costs about sqrt(n_landmark) times less, with near-identical groups.

    Parameters
    ----------
    features : ndarray, shape (N, d)
    n_landmark : int
    rng : numpy.random.Generator
    n_threads : int
        The coarse groups are split into landmarks on this many threads.
    seeding : {"random", "k-means++"}
        How both levels of k-means start (:func:`kmeans`).

    Returns
    -------
    labels : ndarray of int, shape (N,), every value in [0, n_groups) used, n_groups <= n_landmark
    """
    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    members_by_group, counts, group_rngs = coarse_groups(
        n, n_landmark, rng, seeding, rows_of=lambda rows: features[rows],
        nearest=lambda centres: _nearest_centre(features, centres)[0])
    sizes = np.array([len(members) for members in members_by_group])

    def split_group(group):
        members = members_by_group[group]
        return kmeans(features[members], int(counts[group]), group_rngs[group], seeding=seeding)

    # largest groups first keeps the threads evenly loaded
    order = np.argsort(-sizes, kind="stable")
    fine_by_group = dict(zip(order, parallel_map(split_group, order, n_threads)))
    return join_groups(members_by_group, fine_by_group, n)


def join_groups(members_by_group: list, fine_by_group: dict, n_points: int) -> np.ndarray:
    """One labelling from each coarse group's own: group by group, each group's labels
    (0..its count - 1) shifted past the groups before it.

    Parameters
    ----------
    members_by_group : list of int ndarray, the points of each coarse group
    fine_by_group : dict, group -> int ndarray (len(members),), labels within the group

    Returns
    -------
    labels : ndarray of int64, shape (n_points,)
    """
    labels = np.empty(n_points, dtype=np.int64)
    next_label = 0
    for group, members in enumerate(members_by_group):
        fine = fine_by_group[group]
        labels[members] = fine + next_label
        next_label += int(fine.max()) + 1
    return labels


def coarse_groups(n_points: int, n_landmark: int, rng: np.random.Generator, seeding: str, *, rows_of, nearest):
    """The first level of :func:`cluster_landmarks`: about sqrt(n_landmark) coarse groups.

    A k-means of a random sample of the points, every point assigned to the nearest of its
    centres, and each group's share of the landmarks.

    Parameters
    ----------
    rows_of : callable, int ndarray (m,) -> ndarray (m, d) float32 on the host
        The features of some points (the features may live on a device).
    nearest : callable, ndarray (g, d) -> int ndarray (N,) on the host
        Each point's nearest centre.

    Returns
    -------
    members_by_group : list of int ndarray, the points of each group (none empty), ascending
    counts : ndarray of int, shape (n_groups,), landmarks per group (they sum to
        min(n_landmark, N))
    group_rngs : list of numpy.random.Generator, one per group, drawn up front, so the result
        does not depend on the order (or threads) the groups are split in
    """
    n_coarse = int(min(n_landmark, max(1, round(np.sqrt(n_landmark)))))
    sample = np.sort(rng.choice(n_points, size=min(n_points, 50 * n_coarse), replace=False))
    sample_points = rows_of(sample)
    sample_labels = kmeans(sample_points, n_coarse, rng, n_iter=30, seeding=seeding)
    n_coarse = int(sample_labels.max()) + 1
    centres = np.stack([sample_points[sample_labels == c].mean(axis=0) for c in range(n_coarse)])
    _, coarse_labels = np.unique(nearest(centres), return_inverse=True)
    sizes = np.bincount(coarse_labels)
    counts = _allocate(sizes, min(n_landmark, n_points))
    members_by_group = np.split(np.argsort(coarse_labels, kind="stable"), np.cumsum(sizes)[:-1])
    return members_by_group, counts, rng.spawn(len(counts))


class LandmarkOperator:
    """The landmark diffusion operator and the maps between points and landmarks.

    Attributes
    ----------
    labels : ndarray, shape (N,)
        Landmark of each point.
    point_to_landmark : csr_matrix, shape (N, n_landmark)
        Transition probabilities from each point into each landmark (rows sum to 1).
    symmetric : ndarray, shape (n_landmark, n_landmark)
        ``S = C^-1/2 G C^-1/2``: the landmark operator ``P_L = C^-1 G`` is similar to it.
    scale : ndarray, shape (n_landmark,)
        ``C``: the landmarks' total affinity.
    """

    def __init__(self, labels, point_to_landmark, symmetric, scale):
        self.labels = labels
        self.point_to_landmark = point_to_landmark
        self.symmetric = symmetric
        self.scale = scale

    @property
    def n_landmark(self) -> int:
        return len(self.scale)


#: entries of W = K M lighter than this fraction of their row's heaviest are dropped before the
#: product W^T D^-1 W (the kernel's own threshold, 1e-4, relative). The product's cost grows with
#: the square of each row's entries, and on wide layers the tail of light entries dominates it:
#: on the panel's 1,024-unit run they were 39% of W's entries but 0.16% of its mass, and dropping
#: them cut the product from 9.7 s to 3.4 s (one thread) for a 5e-4 relative change of W^T D^-1 W
LANDMARK_DROP_BELOW = 1e-4


def drop_light_entries(matrix: sp.csr_matrix, relative: float) -> sp.csr_matrix:
    """``matrix`` (CSR) without the entries below ``relative`` times their row's maximum.

    0 keeps everything. Returns a new matrix (the input is left as it was), or the input
    itself when nothing is dropped.
    """
    if relative <= 0 or matrix.nnz == 0:
        return matrix
    counts = np.diff(matrix.indptr)
    row_of_entry = np.repeat(np.arange(matrix.shape[0], dtype=np.int32), counts)
    row_max = np.zeros(matrix.shape[0], dtype=matrix.data.dtype)
    filled = counts > 0
    row_max[filled] = np.maximum.reduceat(matrix.data, matrix.indptr[:-1][filled])
    keep = matrix.data >= row_max[row_of_entry] * matrix.data.dtype.type(relative)
    if keep.all():
        return matrix
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of_entry[keep], minlength=matrix.shape[0]), out=indptr[1:])
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


def landmark_operator(kernel, labels: np.ndarray, n_threads: int = 1,
                      drop_below: float = LANDMARK_DROP_BELOW) -> LandmarkOperator:
    """Build the landmark operator ``P_L = P_mn P_nm`` for a grouping of the points.

    With ``W = K M`` (M the point-to-group indicator), ``P_nm = D^-1 W`` (point -> landmark) and
    ``P_mn = C^-1 W^T`` (landmark -> point, C the column sums of W), so
    ``P_L = C^-1 W^T D^-1 W``, similar to the symmetric ``C^-1/2 W^T D^-1 W C^-1/2``.
    """
    n_groups = int(labels.max()) + 1
    affinity = kernel.aggregate(labels, n_groups).astype(np.float32, copy=False).tocsr()  # W, (N, n_groups)
    affinity = drop_light_entries(affinity, drop_below)
    degrees = np.asarray(affinity.sum(axis=1, dtype=np.float64)).ravel()
    scale = np.asarray(affinity.sum(axis=0, dtype=np.float64)).ravel()
    # G = W^T D^-1 W = B^T B with B = D^-1/2 W: scale W into B in place, then into
    # P_nm = D^-1 W = D^-1/2 B in place, so only W's storage and one transpose are ever alive
    row_factor = np.repeat((1.0 / np.sqrt(degrees)).astype(np.float32), np.diff(affinity.indptr))
    halfway = affinity
    halfway.data *= row_factor
    halfway_t = halfway.T.tocsr()  # B^T as CSR, (n_groups, N)
    symmetric = np.empty((n_groups, n_groups), dtype=np.float32)

    def rows_of_product(bounds):
        # landmark rows r0..r1 of G; each thread writes its own rows of the dense result
        r0, r1 = bounds
        (halfway_t[r0:r1] @ halfway).toarray(out=symmetric[r0:r1])

    parallel_map(rows_of_product, _balanced_ranges(halfway_t.indptr, 8 * n_threads), n_threads)
    del halfway_t
    point_to_landmark = halfway
    point_to_landmark.data *= row_factor
    del row_factor
    inv_sqrt_scale = (1.0 / np.sqrt(scale)).astype(np.float32)
    symmetric *= inv_sqrt_scale[:, None]
    symmetric *= inv_sqrt_scale[None, :]
    # rounding leaves S a hair from symmetric; the eigensolver reads only one triangle
    return LandmarkOperator(labels, point_to_landmark, symmetric, scale)


def _balanced_ranges(indptr: np.ndarray, n_parts: int) -> list[tuple[int, int]]:
    """Split the rows of a CSR matrix into up to ``n_parts`` ranges of about equal nonzeros."""
    n_rows = len(indptr) - 1
    targets = np.linspace(0, indptr[-1], n_parts + 1)[1:-1]
    cuts = np.unique(np.concatenate([[0], np.searchsorted(indptr, targets), [n_rows]]))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def exact_operator(kernel) -> LandmarkOperator:
    """Every point its own landmark: the plain diffusion operator ``P = D^-1 K`` (small N only)."""
    n = kernel.shape[0]
    dense = kernel.to_sparse().toarray().astype(np.float64)
    dense = (dense + dense.T) / 2
    degrees = dense.sum(axis=1)
    inv_sqrt = 1.0 / np.sqrt(degrees)
    symmetric = dense * inv_sqrt[:, None] * inv_sqrt[None, :]
    identity = sp.identity(n, format="csr")
    return LandmarkOperator(np.arange(n), identity, symmetric, degrees)
