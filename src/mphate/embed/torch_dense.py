"""The dense stages in PyTorch, for :class:`mphate.embed.backend.TorchBackend`.

Each function mirrors its NumPy twin in :mod:`mphate.embed.diffusion` or :mod:`mphate.embed.mds`
step for step (same precisions, same stopping rule), so the two backends give the same
picture up to rounding; ``tests/embed/test_backend.py`` checks it on a real trace.
Imported only when a torch device is asked for.
"""
from __future__ import annotations

import numpy as np

from mphate.embed.diffusion import SINGLE_PRECISION_FROM
from mphate.embed.mds import LOCAL_STEPS, LOCAL_WEIGHT_POWER, SMACOF_TOL, least_stress, local_iterations
from mphate.optional import require

torch = require("torch", "MPHATE(device=...) other than 'cpu'")


class TorchSpectralDecomposition:
    """Eigendecomposition of a diffusion operator given by its symmetric conjugate, on a device.

    Attributes
    ----------
    eigenvalues : ndarray, shape (L,), descending, clipped to [-1, 1], float64 (on the host:
        the entropy curve needs only them)
    eigenvectors : torch.Tensor, shape (L, L), float32 from ``SINGLE_PRECISION_FROM`` landmarks
    scale : torch.Tensor, shape (L,), float64
    """

    def __init__(self, symmetric, scale: np.ndarray, device: str):
        n = symmetric.shape[0]
        dtype = torch.float32 if n >= SINGLE_PRECISION_FROM else torch.float64
        # the torch landmark operator leaves it on the device; a host array is copied over
        source = symmetric if torch.is_tensor(symmetric) else torch.as_tensor(np.asarray(symmetric))
        matrix = source.to(device=device, dtype=dtype)
        del source
        # eigh reads one triangle; rounding may leave the other a hair off
        eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
        del matrix
        self.eigenvalues = np.clip(eigenvalues.flip(0).double().cpu().numpy(), -1.0, 1.0)
        self.eigenvectors = eigenvectors.flip(1)
        self.scale = torch.as_tensor(np.asarray(scale, dtype=np.float64), device=device)

    def symmetric(self) -> np.ndarray:
        """The decomposed symmetric matrix again, ``V diag(l) V^T``, shape (L, L), on the host."""
        vectors = self.eigenvectors
        lam = torch.as_tensor(self.eigenvalues, device=vectors.device, dtype=vectors.dtype)
        return ((vectors * lam) @ vectors.T).cpu().numpy()

    def power(self, t: int, tol: float = 1e-12):
        """``P^t`` as a dense row-stochastic tensor, shape (L, L)."""
        lam = torch.as_tensor(self.eigenvalues, device=self.scale.device)
        powered = lam**t
        keep = powered.abs() > tol * powered.abs().max()
        n_kept = int(keep.sum())
        # as mphate.embed.diffusion.SpectralDecomposition.power: the leading components (a
        # view), one work block, no row factor (the row normalisation cancels it)
        vectors = self.eigenvectors[:, :n_kept] if bool(keep[:n_kept].all()) else self.eigenvectors[:, keep]
        dtype = vectors.dtype
        scaled = vectors * powered[keep].to(dtype)
        result = scaled @ vectors.T
        del scaled
        result *= self.scale.sqrt().to(dtype)[None, :]
        result.clamp_(min=0.0)
        result /= result.sum(dim=1, keepdim=True)
        return result


def potential(transition, gamma: float):
    """:func:`mphate.embed.diffusion.potential` on a tensor (in place for the default gamma 0)."""
    if gamma == 1:
        return -torch.log(transition + 1e-7)
    if gamma == 0:
        return transition.sqrt_().mul_(2)
    exponent = (1 - gamma) / 2
    return (2 / (1 - gamma)) * transition.pow(exponent)


def _cross_distances(a, b):
    """Euclidean distances from the rows of ``a`` (m, d) to those of ``b`` (n, d): (m, n) in
    their dtype, by ``|a|^2 + |b|^2 - 2 a.b`` (clipped at 0 before the square root)."""
    dist = a @ b.T
    dist.mul_(-2.0).add_((a * a).sum(dim=1)[:, None]).add_((b * b).sum(dim=1)[None, :])
    return dist.clamp_(min=0.0).sqrt_()


def pairwise_distances(points):
    """Euclidean distances between rows of centred ``points`` (L, d): (L, L) float32, zero diagonal."""
    points = points.to(torch.float32)
    return _cross_distances(points, points).fill_diagonal_(0.0)


def classical_mds(points, n_components: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`mphate.embed.mds.classical_mds_from_points` of centred ``points`` (n, d) on a
    device: NumPy float64 (n, n_components).

    Same seed draw and test matrix as the NumPy path; the power iterations are renormalised
    by QR instead of LU (torch's LU gives its permutation as an n x n matrix). Both span the
    same subspace, so the layouts agree up to rounding.
    """
    seed = int(rng.integers(2**31 - 1))
    u, s = randomized_svd(points, n_components, n_iter=7, seed=seed)
    return (u * s).double().cpu().numpy()


def randomized_svd(matrix, rank: int, n_iter: int = 7, seed: int = 0, n_oversamples: int = 10):
    """:func:`mphate.embed.mds.randomized_svd` on a device: (u (n, rank), s (rank,)) tensors,
    each left vector's largest entry positive."""
    transpose = matrix.shape[0] < matrix.shape[1]
    tall = matrix.T if transpose else matrix
    test = np.random.RandomState(seed).normal(size=(tall.shape[1], rank + n_oversamples))
    q = torch.as_tensor(test, device=tall.device).to(tall.dtype)
    for _ in range(n_iter):
        q = torch.linalg.qr(tall @ q).Q
        q = torch.linalg.qr(tall.T @ q).Q
    q = torch.linalg.qr(tall @ q).Q
    u_small, s, vt = torch.linalg.svd(q.T @ tall, full_matrices=False)
    u = vt.T if transpose else q @ u_small
    u = u[:, :rank]
    largest = u.abs().argmax(dim=0)
    u = u * torch.sign(u[largest, torch.arange(u.shape[1], device=u.device)])
    return u, s[:rank]


def batched_sq_distances(points):
    """:func:`mphate.embed.kernel.batched_sq_distances` of (b, n, d) points on a device: (b, n, n)
    in their dtype, the ``|x|^2 + |y|^2 - 2 x.y`` expansion clipped at 0, exact zero diagonal."""
    norms = (points * points).sum(dim=2)
    sq = torch.baddbmm(norms[:, :, None] + norms[:, None, :], points, points.transpose(1, 2), alpha=-2.0)
    sq.clamp_(min=0.0)
    diagonal = torch.arange(points.shape[1], device=points.device)
    sq[:, diagonal, diagonal] = 0.0
    return sq


#: entries of the (batch, n, n) distance blocks :func:`nearest_neighbors` forms at once
_KNN_BLOCK_ENTRIES = 2**26


def nearest_neighbors(points: np.ndarray, k: int, device) -> np.ndarray:
    """:func:`mphate.embed.t_search.nearest_neighbors` on a device: NumPy ``points`` (b, n, d)
    -> NumPy int64 (b, n, k), from dense blocks of squared distances, each point itself left
    out. In float64 from batch-centred points, as :func:`mphate.embed.kernel.exact_sq_distances`:
    one unit's history in an embedding lies close together far from the origin, where the
    float32 expansion's rounding exceeds the distances between neighbours."""
    b, n, _ = points.shape
    out = np.empty((b, n, k), dtype=np.int64)
    per_batch = max(1, _KNN_BLOCK_ENTRIES // max(1, n * n))
    on_device = torch.as_tensor(np.ascontiguousarray(points, dtype=np.float64), device=device)
    on_device = on_device - on_device.mean(dim=1, keepdim=True)
    diagonal = torch.arange(n, device=on_device.device)
    for start in range(0, b, per_batch):
        sq = batched_sq_distances(on_device[start:start + per_batch])
        sq[:, diagonal, diagonal] = float("inf")
        out[start:start + per_batch] = torch.topk(sq, k, dim=2, largest=False).indices.cpu().numpy()
    return out


def smacof(dissimilarities, init, *, max_iter: int = 300, tol: float = SMACOF_TOL,
           weight_power: float = LOCAL_WEIGHT_POWER):
    """:func:`mphate.embed.mds.smacof` on a device: same start scaling, Guttman transform,
    stopping rule, choice among several starts and refinement; returns (embedding as NumPy
    float64 (L, n_components), SMACOF's iterations)."""
    delta = dissimilarities.to(torch.float32)
    starts = []
    for start in (init if isinstance(init, (list, tuple)) else [init]):
        start = torch.as_tensor(np.asarray(start, dtype=np.float64), device=delta.device)
        starts.append(start - start.mean(dim=0))
    delta_sq_sum = float((delta.double() * delta.double()).sum())
    coords, n_iter = least_stress(lambda x, scale_only=False: _guttman(delta, x, scale_only), starts,
                                  n=delta.shape[0], delta_sq_sum=delta_sq_sum, max_iter=max_iter, tol=tol)
    if weight_power:
        coords, _ = refine_local(delta, coords, weight_power)
    return coords.cpu().numpy(), n_iter


def refine_local(delta, coords, power: float = LOCAL_WEIGHT_POWER, *, n_steps: int = LOCAL_STEPS):
    """:func:`mphate.embed.mds.refine_local` on a device (same weights, steps and loop)."""
    tiny = torch.finfo(torch.float32).tiny
    positive = delta > 0
    weights = torch.where(positive, delta.clamp(min=tiny).pow(-power), torch.zeros_like(delta))
    weighted_delta = weights * delta
    constant = float((weighted_delta.double() * delta.double()).sum())
    weight_sums = weights.sum(dim=1, dtype=torch.float64)
    has_weight = weight_sums[:, None] > 0
    divisor = torch.where(has_weight, weight_sums[:, None], torch.ones_like(weight_sums[:, None]))

    def step(x):
        points = x.to(torch.float32)
        dist = pairwise_distances(points)
        cross = float((weighted_delta.double() * dist.double()).sum())
        fitted = float((weights.double() * dist.double().square()).sum())
        ratio = torch.where(dist > 0, weighted_delta / dist.clamp(min=tiny), torch.zeros_like(dist))
        del dist
        ratio_sums = ratio.sum(dim=1, dtype=torch.float64)
        pulled = ((weights - ratio) @ points).double() + ratio_sums[:, None] * x
        return fitted - 2 * cross + constant, torch.where(has_weight, pulled / divisor, x)

    return local_iterations(step, coords, n_steps=n_steps)


def _guttman(delta, coords, scale_only: bool = False):
    """The cross term ``sum_ij delta_ij d_ij`` and the Guttman transform ``B(X) X / n``."""
    n = delta.shape[0]
    points = coords.to(torch.float32)
    dist = pairwise_distances(points)
    cross = float((delta.double() * dist.double()).sum())
    if scale_only:
        return cross, None
    # delta / d, with coincident points (and the diagonal) pulling nothing
    ratio = torch.where(dist > 0, delta / dist.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(dist))
    del dist
    ratio_sums = ratio.sum(dim=1, dtype=torch.float64)
    updated = (ratio_sums[:, None] * coords - (ratio @ points).double()) / n
    return cross, updated
