"""Multidimensional scaling: classical MDS as the start, then metric MDS by SMACOF, then a
refinement that weighs short distances more (:func:`refine_local`)."""
from __future__ import annotations

import threading

import numpy as np
import scipy.linalg

from mphate.runtime import parallel_map


def pairwise_distances(points: np.ndarray, dtype=np.float64, center: bool = True) -> np.ndarray:
    """Euclidean distances between rows, shape (n, n), exact zero diagonal."""
    points = np.asarray(points, dtype=dtype)
    if center:
        # centring first keeps the |x|^2 + |y|^2 - 2xy expansion from cancelling badly
        points = points - points.mean(axis=0)
    sq = np.einsum("ij,ij->i", points, points)
    dist = points @ points.T
    dist *= -2.0
    dist += sq[:, None]
    dist += sq[None, :]
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def classical_mds_from_points(
    points: np.ndarray, n_components: int, rng: np.random.Generator, center: bool = True
) -> np.ndarray:
    """Classical MDS of the Euclidean distances between rows of ``points``.

    For Euclidean distances classical MDS equals PCA of the centred points, which avoids
    double-centring an n x n matrix.

    Parameters
    ----------
    points : ndarray, shape (n, d)
    n_components : int
    rng : numpy.random.Generator
        Seeds the randomized SVD.
    center : bool
        False when the caller already centred ``points`` (saves an n x d copy).

    Returns
    -------
    ndarray, shape (n, n_components)
    """
    centred = points - points.mean(axis=0) if center else points
    seed = int(rng.integers(2**31 - 1))
    u, s = randomized_svd(centred, n_components, n_iter=7, seed=seed)
    return u * s


def randomized_svd(matrix: np.ndarray, rank: int, n_iter: int = 7, seed: int = 0,
                   n_oversamples: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Leading singular vectors and values by a randomized range finder.

    Halko, Martinsson & Tropp (2011), algorithm 4.4: a Gaussian test matrix, ``n_iter``
    power iterations each renormalised by an LU factorisation (cheaper than QR and enough to
    keep the columns apart), one QR, then the exact SVD of the small projected matrix. With
    the test matrix drawn as ``RandomState(seed).normal`` and each left vector's largest
    entry made positive, the result is the one scikit-learn's ``randomized_svd`` gives for
    the same seed (checked bit for bit in tests/embed/test_stages.py); written here because
    importing scikit-learn costs a fit about 85 MB (:mod:`mphate.embed.params`).

    Parameters
    ----------
    matrix : ndarray, shape (n, m)
    rank : int
        Singular triplets kept.
    n_iter : int
    seed : int
        Seeds the test matrix.
    n_oversamples : int
        Extra test vectors beyond ``rank``, for accuracy.

    Returns
    -------
    u : ndarray, shape (n, rank)
    s : ndarray, shape (rank,)
    """
    # iterate on the orientation with fewer columns: the test matrix and Q are then smaller
    transpose = matrix.shape[0] < matrix.shape[1]
    tall = matrix.T if transpose else matrix
    q = np.random.RandomState(seed).normal(size=(tall.shape[1], rank + n_oversamples))
    q = q.astype(tall.dtype, copy=False) if tall.dtype.kind == "f" else q
    for _ in range(n_iter):
        q, _ = scipy.linalg.lu(tall @ q, permute_l=True)
        q, _ = scipy.linalg.lu(tall.T @ q, permute_l=True)
    q, _ = scipy.linalg.qr(tall @ q, mode="economic")
    u_small, s, vt = scipy.linalg.svd(q.T @ tall, full_matrices=False)
    u = vt.T if transpose else q @ u_small
    u = u[:, :rank]
    # a fixed sign per vector (largest entry positive), so a seed gives one picture
    largest = np.argmax(np.abs(u), axis=0)
    u *= np.sign(u[largest, np.arange(u.shape[1])])
    return u, s[:rank]


def stress(dissimilarities: np.ndarray, embedding: np.ndarray) -> float:
    """Normalised (Kruskal stress-1) mismatch between target and embedded distances."""
    dist = pairwise_distances(embedding)
    return float(np.sqrt(((dist - dissimilarities) ** 2).sum() / (dissimilarities**2).sum()))


#: power p of the refinement's weights ``w_ij = delta_ij ** -p`` (:func:`refine_local`)
LOCAL_WEIGHT_POWER = 0.5
#: accelerated steps of the refinement
LOCAL_STEPS = 10
#: SMACOF stops when an accepted step lowers the stress by less than this fraction of it (the
#: default of ``MPHATE(mds_tol=...)``, of both backends' SMACOF and of the flat baseline)
SMACOF_TOL = 1e-4


def smacof(
    dissimilarities: np.ndarray,
    init,
    max_iter: int = 300,
    tol: float = SMACOF_TOL,
    n_threads: int = 1,
    weight_power: float = LOCAL_WEIGHT_POWER,
    overwrite: bool = False,
) -> tuple[np.ndarray, int]:
    """Metric MDS by SMACOF (Guttman transform) with unit weights.

    Each iteration ``X <- B(X) X / n``, with ``B_ij = -delta_ij / d_ij(X)`` off the diagonal and
    rows summing to zero, never increases the raw stress. Stops when the relative decrease of
    the stress falls below ``tol``. Works in float32 on whole n x n arrays in place: an
    iteration is a few memory-bound passes plus two skinny matrix products.

    Parameters
    ----------
    dissimilarities : ndarray, shape (n, n), symmetric, zero diagonal
    init : ndarray, shape (n, n_components), or a list of them
        The start; given several, SMACOF runs from each and keeps the layout of least stress
        (:func:`least_stress`) before the refinement.
    max_iter : int
        Guttman transforms from each start.
    tol : float
    n_threads : int
        Threads of each sweep over the rows.
    weight_power : float
        After SMACOF, :func:`refine_local` with weights ``delta ** -weight_power``; 0 skips it.
    overwrite : bool
        The refinement may overwrite ``dissimilarities`` (when the caller is done with them).

    Returns
    -------
    embedding : ndarray, shape (n, n_components), float64
    n_iter : int
        SMACOF's iterations, from every start together.
    """
    delta = np.asarray(dissimilarities, dtype=np.float32)
    starts = [np.array(start, dtype=np.float64) for start in (init if isinstance(init, (list, tuple)) else [init])]
    coords, n_iter = least_stress(
        lambda x, scale_only=False: _guttman_pass(delta, x, n_threads, scale_only),
        [start - start.mean(axis=0) for start in starts],
        n=delta.shape[0], delta_sq_sum=float(np.vdot(delta, delta)), max_iter=max_iter, tol=tol)
    if weight_power:
        coords, _ = refine_local(delta, coords, weight_power, n_threads=n_threads, overwrite=overwrite)
    return coords, n_iter


#: a later start replaces an earlier one only when it ends this much lower (relative): SMACOF
#: stops within ``tol`` (1e-4) of a minimum, so two starts in one basin end a rounding apart,
#: and which one won would then turn on BLAS threads; distinct basins of real landmark
#: potentials were 0.5-4% apart (docs/algorithm.md, "Layouts continued along t")
DISTINCT_STRESS = 1e-3


def least_stress(guttman, starts, **loop):
    """:func:`guttman_iterations` from each of ``starts`` (centred); the layout of least stress.

    Why several starts: SMACOF stops in the local minimum nearest its start, and on real
    landmark potentials the classical-MDS start was sometimes in a poorer one. The t search
    starts each candidate's SMACOF also from the layout of the next larger t (a smoother
    potential, fewer minima), and the lower stress was the better picture
    (docs/algorithm.md, "Layouts continued along t"). A later start wins only by
    :data:`DISTINCT_STRESS`.

    Returns (coords, Guttman transforms from all starts together); ``loop``: the keyword
    arguments of :func:`guttman_iterations`.
    """
    best, best_stress, total = None, np.inf, 0
    for start in starts:
        coords, n_iter, stress = guttman_iterations(guttman, start, **loop)
        total += n_iter
        if best is None or stress < best_stress * (1 - DISTINCT_STRESS):
            best, best_stress = coords, stress
    return best, total


def local_weights(delta: np.ndarray, power: float, overwrite: bool = False):
    """The refinement's weights ``w = delta ** -power`` (0 where delta is 0: the diagonal and
    coincident targets) and ``w * delta``, both float32 (n, n), and ``sum(w * delta**2)``.

    For the default power 0.5 the weights are ``1 / (w * delta)``: they come back as None and
    are derived a block of rows at a time where they are used (:func:`_reciprocal_into`),
    which saves an n x n array at the fit's peak. ``overwrite``: ``w * delta`` goes into
    ``delta``'s storage (float32 input only), which saves another.
    """
    in_place = overwrite and delta.dtype == np.float32
    # rows in float32, summed in float64: no float64 copies of n x n arrays
    if power == 0.5:
        # the default: a square root, where pow() costs ~10x more
        weighted_delta = np.sqrt(delta, out=delta if in_place else None, dtype=np.float32)
        constant = float(np.einsum("ij,ij,ij->i", weighted_delta, weighted_delta, weighted_delta)
                         .sum(dtype=np.float64))
        return None, weighted_delta, constant
    positive = delta > 0
    weights = np.power(delta, np.float32(-power), out=np.zeros_like(delta, dtype=np.float32), where=positive)
    constant = float(np.einsum("ij,ij,ij->i", weights, delta, delta).sum(dtype=np.float64))
    weighted_delta = np.multiply(weights, delta, out=delta if in_place else None, dtype=np.float32)
    return weights, weighted_delta, constant


def _reciprocal_into(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``1 / rows`` where rows are positive, 0 elsewhere, into ``out`` (the power-0.5 weights
    from ``w * delta = sqrt(delta)``, which is never negative)."""
    with np.errstate(divide="ignore"):
        np.divide(np.float32(1.0), rows, out=out)
    out[rows == 0] = 0.0  # cheaper than a masked division: zeros are the diagonal and ties
    return out


def refine_local(delta: np.ndarray, coords: np.ndarray, power: float = LOCAL_WEIGHT_POWER, *,
                 n_steps: int = LOCAL_STEPS, n_threads: int = 1, overwrite: bool = False):
    """Lower the weighted stress ``sum_ij w_ij (d_ij - delta_ij)^2``, ``w = delta ** -power``,
    from ``coords`` by ``n_steps`` accelerated Jacobi steps (:func:`local_iterations`).

    Weighted SMACOF would solve a linear system with the weights' Laplacian ``V`` at every
    step; a Jacobi step ``X <- D^-1 (W X + B(X) X)`` (``D`` the row sums of the weights) needs
    only the products SMACOF's own step makes, and measured on a panel run it lowered the
    stress as fast per step as the exact solve.

    Parameters
    ----------
    delta : ndarray, shape (n, n), float32, symmetric, zero diagonal
    coords : ndarray, shape (n, n_components), the start (SMACOF's layout)
    power : float
    n_steps : int
    n_threads : int
    overwrite : bool
        ``delta`` may be overwritten (see :func:`local_weights`).

    Returns
    -------
    embedding : ndarray, shape (n, n_components), float64
    n_steps : int
        Steps taken (fewer than asked when the stress stopped falling).
    """
    weights, weighted_delta, constant = local_weights(np.asarray(delta, dtype=np.float32), power, overwrite)
    if weights is None:
        def row_sums(start, stop, work):
            return _reciprocal_into(weighted_delta[start:stop], work).sum(axis=1, dtype=np.float64)

        weight_sums = np.concatenate(_sweep_row_blocks(row_sums, weighted_delta.shape[0], 1, n_threads))
    else:
        weight_sums = weights.sum(axis=1, dtype=np.float64)
    return local_iterations(
        lambda x: _local_pass(weights, weighted_delta, weight_sums, constant, x, n_threads),
        np.array(coords, dtype=np.float64), n_steps=n_steps)


def local_iterations(step, coords, *, n_steps: int):
    """Nesterov-accelerated Jacobi steps with restarts, for any array library.

    ``step(Y)`` returns ``(stress, J(Y))``: the weighted stress at ``Y`` and the Jacobi step's
    target from ``Y``. Each step moves to ``X_k = J(Y_k-1)`` plus momentum
    ``(k - 1) / (k + 2) (X_k - X_k-1)``. A point whose stress is not below the last one's
    restarts the momentum; if the plain step gains nothing either, the half step from the last point is
    taken, which cannot rise (``2 D`` majorises the Laplacian ``V``, so it minimises a
    quadratic that lies above the stress), and the loop ends when even that gains nothing.
    Returns (coords, steps taken).
    """
    stress, mapped = step(coords)
    previous_mapped = coords
    k = 1
    taken = 0
    for taken in range(1, n_steps + 1):
        momentum = (k - 1) / (k + 2)
        trial = mapped + momentum * (mapped - previous_mapped) if momentum else mapped
        trial_stress, trial_mapped = step(trial)
        if trial_stress >= stress and momentum:
            k = 1
            trial = mapped
            trial_stress, trial_mapped = step(trial)
        if trial_stress >= stress:
            k = 1
            trial = (coords + mapped) / 2
            trial_stress, trial_mapped = step(trial)
            if trial_stress >= stress:
                return coords, taken - 1
        previous_mapped, coords, stress, mapped = mapped, trial, trial_stress, trial_mapped
        k += 1
    return coords, taken


def _local_pass(weights, weighted_delta, weight_sums, constant, coords, n_threads):
    """One sweep over the rows: the weighted stress at ``coords`` and the Jacobi target.

    ``weights`` None: the power-0.5 weights, ``1 / weighted_delta``, made block by block.
    """
    points = coords.astype(np.float32)
    points_t = np.ascontiguousarray(points.T)
    factors = _DistanceFactors(points)
    target = np.empty_like(coords)

    def sweep(start, stop, dist, work, weight_rows=None):
        factors.distances_into(start, stop, dist)
        wd = weighted_delta[start:stop]
        w = weights[start:stop] if weights is not None else _reciprocal_into(wd, weight_rows)
        cross = float(np.vdot(wd, dist))
        np.multiply(dist, dist, out=work)
        fitted = float(np.vdot(w, work))
        # w delta / d, with coincident points pulling nothing: an infinite distance there is
        # cheaper than a masked division
        dist[dist == 0] = np.inf
        np.divide(wd, dist, out=work)
        # float32 sums of a contiguous row are pairwise: accurate, and half the time of float64
        ratio_sums = work.sum(axis=1).astype(np.float64)
        # W X - R X as one product, (W - R) X, by einsum rather than BLAS: the momentum carries
        # rounding forward, and BLAS rounds differently for each thread count
        np.subtract(w, work, out=work)
        pulled = np.einsum("ij,kj->ik", work, points_t).astype(np.float64) + ratio_sums[:, None] * coords[start:stop]
        sums = weight_sums[start:stop, None]
        target[start:stop] = np.where(sums > 0, pulled / np.where(sums > 0, sums, 1.0), coords[start:stop])
        return cross, fitted

    parts = _sweep_row_blocks(sweep, weighted_delta.shape[0], 2 if weights is not None else 3, n_threads)
    stress = sum(f for _, f in parts) - 2 * sum(c for c, _ in parts) + constant
    return stress, target


def _sweep_row_blocks(sweep, n: int, n_buffers: int, n_threads: int, chunk: int = 256) -> list:
    """Run ``sweep(start, stop, *buffers)`` over blocks of ``chunk`` rows on the worker threads.

    Each thread gets ``n_buffers`` float32 scratch arrays of shape (stop - start, n), made once
    and reused for its blocks, so the scratch stays small. Returns the results in block order.
    """
    scratch = threading.local()

    def run(start):
        stop = min(n, start + chunk)
        buffer = getattr(scratch, "buffer", None)
        if buffer is None:
            buffer = scratch.buffer = np.empty((n_buffers, min(chunk, n), n), dtype=np.float32)
        return sweep(start, stop, *(part[: stop - start] for part in buffer))

    return parallel_map(run, range(0, n, chunk), n_threads)


def guttman_iterations(guttman, coords, *, n: int, delta_sq_sum: float, max_iter: int, tol: float):
    """SMACOF's loop, for any array library: scale the start, iterate, stop on the stress.

    Plain SMACOF (``X <- G(X)``, the Guttman transform) creeps: on real landmark potentials the
    stress still fell by 2-4% after the 25-45 steps a relative tolerance of 1e-3 allowed, and
    what it had not yet done was the fine, local arrangement (intraslice neighbourhoods of the
    held-out deep MLP: 0.540 there against 0.565 converged). So the steps carry Nesterov
    momentum with adaptive restart: ``Y_k = X_k + (k - 1) / (k + 2) (X_k - X_k-1)``,
    ``X_k+1 = G(Y_k)``, and a ``Y`` whose stress is above the last accepted one's restarts the
    momentum from ``X_k`` (``G`` never raises the stress, so that step cannot fail but by
    rounding, which ends the loop). Measured on three real potentials (4,000 landmarks), it
    reached the converged stress in 16-59 steps where plain SMACOF took 28 to more than 500.

    ``guttman(coords, scale_only=False)`` returns ``(cross, updated)``: the cross term
    ``sum_ij delta_ij d_ij(X)`` and the Guttman transform ``B(X) X / n`` (None when
    ``scale_only``). ``coords`` (n, d) is centred; any array with ``mean(0)`` and ``sum()``
    works. Stops when an accepted step lowers the stress by less than ``tol`` of it.
    Returns (coords, Guttman transforms made, raw stress): the stress is that of the point
    whose transform ``coords`` is, so ``coords``' own stress is at most that.
    """
    # start at the scale that best fits the targets, so the first steps are not spent rescaling
    cross, _ = guttman(coords, scale_only=True)
    denom = 2 * n * float((coords * coords).sum())  # sum_ij d_ij^2 for centred points
    if denom > 0 and cross > 0:
        coords = coords * (cross / denom)
    point = coords  # where the next transform is taken (X_k plus momentum)
    accepted = None  # X_k: the transform of the last accepted point
    best = np.inf  # the last accepted point's stress
    k = 1
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        point = point - point.mean(0)
        cross, updated = guttman(point)
        raw_stress = _raw_stress(cross, point, n, delta_sq_sum)
        if raw_stress > best:
            if k == 1:  # a plain step from an accepted transform rose: rounding, converged
                break
            k, point = 1, accepted
            continue
        converged = np.isfinite(best) and best - raw_stress <= tol * best
        best = raw_stress
        momentum = (k - 1) / (k + 2)
        previous, accepted = accepted, updated
        if converged:
            break
        point = updated + momentum * (updated - previous) if momentum else updated
        k += 1
    if accepted is None:  # no step was taken (max_iter 0): the scaled start
        return coords, n_iter, _raw_stress(guttman(coords, scale_only=True)[0], coords, n, delta_sq_sum)
    return accepted, n_iter, best


def _raw_stress(cross: float, coords, n: int, delta_sq_sum: float) -> float:
    """``sum_ij (d_ij - delta_ij)^2 / 2`` from the cross term ``sum_ij delta_ij d_ij`` of
    centred ``coords`` (for them ``sum_ij d_ij^2 = 2 n sum_i |x_i|^2``)."""
    return (2 * n * float((coords * coords).sum()) - 2 * cross + delta_sq_sum) / 2


def _guttman_pass(delta: np.ndarray, coords: np.ndarray, n_threads: int, scale_only: bool = False):
    """One sweep over the rows of ``delta``: the cross term ``sum_ij delta_ij d_ij`` and the
    Guttman transform ``B(X) X / n``, a block of rows at a time (on the worker threads) so the
    scratch stays small.
    """
    n = delta.shape[0]
    points = coords.astype(np.float32)
    factors = _DistanceFactors(points)
    # one product gives each row's pulls on the points and, by the ones column, their sum
    points_and_ones = np.hstack([points, np.ones((n, 1), dtype=np.float32)])
    updated = np.empty_like(coords)

    def sweep(start, stop, dist):
        factors.distances_into(start, stop, dist)
        cross = float(np.vdot(delta[start:stop], dist))
        if not scale_only:
            # delta / d, with coincident points (and the diagonal) pulling nothing: an
            # infinite distance there is cheaper than a masked division
            dist[dist == 0] = np.inf
            np.divide(delta[start:stop], dist, out=dist)
            pulled = dist @ points_and_ones
            ratio_sums = pulled[:, -1:].astype(np.float64)
            updated[start:stop] = (ratio_sums * coords[start:stop] - pulled[:, :-1]) / n
        return cross

    cross = sum(_sweep_row_blocks(sweep, n, 1, n_threads))
    return cross, updated


class _DistanceFactors:
    """Euclidean distances from blocks of rows of low-dimensional ``points`` (n, d) to all of
    them, ``|x|^2 + |y|^2 - 2 x.y`` from one matrix product of augmented coordinates, so the
    output is written once rather than built up over several passes. The right factor is made
    once per sweep, not once per block: both factors, (n, d + 2) each."""

    def __init__(self, points: np.ndarray):
        squares = np.einsum("ij,ij->i", points, points)[:, None]
        ones = np.ones_like(squares)
        self.left = np.hstack([points, ones, squares])
        self.right = np.ascontiguousarray(np.hstack([-2.0 * points, squares, ones]).T)

    def distances_into(self, start: int, stop: int, out: np.ndarray) -> None:
        """Distances from rows ``start:stop`` to every row, into ``out`` (stop - start, n)."""
        np.matmul(self.left[start:stop], self.right, out=out)
        np.maximum(out, np.float32(0.0), out=out)
        np.sqrt(out, out=out)
