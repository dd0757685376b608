"""The landmark stage in PyTorch, for :class:`mphate.embed.backend.TorchBackend`.

Spectral coordinates (:func:`mphate.embed.landmarks.landmark_features`) and the landmark
operator (:func:`mphate.embed.landmarks.landmark_operator`) are products of the multislice
kernel with blocks of vectors: a block-diagonal sparse intraslice part and, per unit, a dense
``n_slices x n_slices`` interslice block. On a GPU both are a sparse product and one batched
matrix product. The k-means between them (:func:`mphate.embed.landmarks.cluster_landmarks`)
splits each coarse group into landmarks; here the groups run side by side as one batched
Lloyd iteration. Each function mirrors its NumPy twin step for step (same random draws from
the same generators, same precisions, same Chebyshev filter, same dropped entries), so the two
give the same coordinates, groups and operator up to rounding; ``tests/embed/test_backend.py``
checks it.

The kernel comes as a :class:`~mphate.embed.torch_kernel.DeviceKernel` (copied from the host,
or built on a CUDA device; :mod:`mphate.embed.torch_kernel`). The k-means++ seeding of traces
with few points per landmark is sequential and stays on the host.

Imported only when a torch device is asked for.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mphate.embed import landmarks, torch_kernel
from mphate.embed.landmarks import LANDMARK_DROP_BELOW, LandmarkOperator, effective_stride, interpolate_along_histories
from mphate.embed.torch_kernel import DeviceKernel, quiet_sparse, torch

def spectral_features(kernel: DeviceKernel, n_components: int, rng: np.random.Generator,
                      n_rounds: int = 2, degree: int = 6):
    """:func:`mphate.embed.landmarks.spectral_features` on a device: (N, n_components) float32."""
    n = kernel.shape[0]
    device = kernel.blocks.device
    n_components = min(n_components, n - 2)
    block = min(n, n_components + 1 + 10)
    inv_sqrt_deg = (1.0 / kernel.degrees().sqrt()).to(torch.float32)

    def normalised(x):
        return kernel.matmat(x, scale=inv_sqrt_deg)

    start = rng.random((n, block), dtype=np.float32)  # the NumPy path's draw
    basis = torch.as_tensor(start, device=device) - 0.5
    del start
    basis = _orthonormalize(basis)
    applied = normalised(basis)
    cutoff = 0.5
    for _ in range(n_rounds):
        centre, half_width = (cutoff - 1.0) / 2, (cutoff + 1.0) / 2
        previous, current = basis, (applied - centre * basis) / half_width
        for _ in range(2, degree + 1):
            following = (2.0 / half_width) * (normalised(current) - centre * current) - previous
            previous, current = current, following
        basis = _orthonormalize(current)
        del previous, current
        applied = normalised(basis)
        ritz_values, basis, applied = _rotate_to_ritz_vectors(basis, applied)
        cutoff = float(np.clip(ritz_values[-1], 0.0, 0.999))
    keep = slice(1, n_components + 1)  # drop the trivial (constant) eigenvector
    magnitudes = torch.as_tensor(np.abs(ritz_values[keep]), dtype=torch.float32, device=device)
    return basis[:, keep] * inv_sqrt_deg[:, None] * magnitudes


def _rotate_to_ritz_vectors(basis, applied):
    small = (basis.T @ applied).double().cpu().numpy()
    ritz_values, ritz_vectors = np.linalg.eigh((small + small.T) / 2)
    order = np.argsort(ritz_values)[::-1]
    ritz_values = ritz_values[order]
    rotation = torch.as_tensor(ritz_vectors[:, order].astype(np.float32), device=basis.device)
    return ritz_values, basis @ rotation, applied @ rotation


def _orthonormalize(vectors):
    """:func:`mphate.embed.landmarks._orthonormalize` (Cholesky QR twice) on a device."""
    source = vectors
    for _ in range(2):
        gram = (source.T @ source).double()
        gram += torch.eye(len(gram), dtype=gram.dtype, device=gram.device) * (
            1e-10 * torch.trace(gram) / len(gram) + 1e-30)
        upper_factor, info = torch.linalg.cholesky_ex(gram)
        if int(info) != 0:  # numerically rank-deficient block: Householder QR copes
            return torch.linalg.qr(source.double()).Q.to(torch.float32)
        inv_upper = torch.linalg.inv(upper_factor).T
        source = source @ inv_upper.to(torch.float32)
    return source


def landmark_features(kernel: DeviceKernel, n_components: int, rng: np.random.Generator, stride=1):
    """:func:`mphate.embed.landmarks.landmark_features` on the kernel's device: a tensor
    (N, n_components) float32 there."""
    stride = effective_stride(stride, kernel.n_slices, kernel.n_units)
    if stride == 1:
        coords = spectral_features(kernel, n_components, rng)
    else:
        slices = np.arange(0, kernel.n_slices, stride)
        sub = kernel.subsample_slices(slices)
        coords = spectral_features(sub, n_components, rng)
        del sub
        coords = interpolate_along_histories(slices, coords.reshape(len(slices), kernel.n_units, -1),
                                             kernel.n_slices)
        coords = coords.reshape(kernel.shape[0], -1)
    return coords


#: entries of the (groups, points, centres) score array one batch of the groups' k-means forms
_KMEANS_BATCH_ENTRIES = 2**25


def cluster_landmarks(features, n_landmark: int, rng: np.random.Generator, device, n_iter: int = 10) -> np.ndarray:
    """:func:`mphate.embed.landmarks.cluster_landmarks` (random seeding) on a device.

    The same coarse groups and the same draws (:func:`mphate.embed.landmarks.coarse_groups`,
    then each group's start points from its own generator); the groups' k-means then run side
    by side, padded to the largest group of a batch, one batched Lloyd step for all of them,
    each group stopping when its labels stop changing (as :func:`~mphate.embed.landmarks.kmeans`
    does).

    Parameters
    ----------
    features : tensor or ndarray, shape (N, d)
    device : the torch device

    Returns
    -------
    labels : ndarray of int64, shape (N,), every value in [0, n_groups) used
    """
    features = torch.as_tensor(features, device=device).to(torch.float32)
    n = features.shape[0]

    def nearest(centres):
        centres = torch.as_tensor(centres, device=device)
        return _nearest_centres(features[None], centres[None], None)[0][0].cpu().numpy()

    members_by_group, counts, group_rngs = landmarks.coarse_groups(
        n, n_landmark, rng, "random", rows_of=lambda rows: features[torch.as_tensor(rows, device=device)].cpu().numpy(),
        nearest=nearest)
    fine_by_group = {}
    to_split = []
    for group, members in enumerate(members_by_group):
        if counts[group] >= len(members):  # kmeans(): every point its own cluster, nothing drawn
            fine_by_group[group] = np.arange(len(members))
        else:
            to_split.append((group, group_rngs[group].choice(len(members), int(counts[group]), replace=False)))
    # largest groups first, so that each batch pads its groups to similar sizes
    to_split.sort(key=lambda item: -len(members_by_group[item[0]]))
    d = features.shape[1]
    start = 0
    while start < len(to_split):
        width = len(members_by_group[to_split[start][0]])
        widest_k = max(len(starts) for _, starts in to_split[start:])
        per_group = width * max(widest_k, d)
        stop = min(len(to_split), start + max(1, _KMEANS_BATCH_ENTRIES // per_group))
        batch = to_split[start:stop]
        found = _batched_kmeans(features, [members_by_group[g] for g, _ in batch], [s for _, s in batch], n_iter)
        fine_by_group.update((g, labels) for (g, _), labels in zip(batch, found))
        start = stop
    return landmarks.join_groups(members_by_group, fine_by_group, n)


def _nearest_centres(points, centres, centre_valid):
    """Each point's nearest valid centre, per batch: points (b, n, d), centres (b, k, d) ->
    (labels (b, n) int64, scores (b, n): ``|c|^2 - 2 x.c`` of that centre)."""
    norms = (centres * centres).sum(dim=2)
    if centre_valid is not None:
        norms = norms.masked_fill(~centre_valid, float("inf"))
    scores = torch.baddbmm(norms[:, None, :], points, centres.transpose(1, 2), alpha=-2.0)
    best, labels = scores.min(dim=2)
    return labels, best


def _batched_kmeans(features, members: list, starts: list, n_iter: int) -> list:
    """Lloyd's k-means of several groups of points at once (:func:`mphate.embed.landmarks.kmeans`
    with given start points); returns each group's compacted labels as NumPy int64."""
    device = features.device
    b = len(members)
    n_max = max(len(m) for m in members)
    k_max = max(len(s) for s in starts)
    index = np.zeros((b, n_max), dtype=np.int64)
    valid = np.zeros((b, n_max), dtype=bool)
    start_index = np.zeros((b, k_max), dtype=np.int64)
    centre_valid = np.zeros((b, k_max), dtype=bool)
    for g, (rows, chosen) in enumerate(zip(members, starts)):
        index[g, : len(rows)] = rows
        valid[g, : len(rows)] = True
        start_index[g, : len(chosen)] = chosen
        centre_valid[g, : len(chosen)] = True
    valid = torch.as_tensor(valid, device=device)
    centre_valid = torch.as_tensor(centre_valid, device=device)
    points = features[torch.as_tensor(index, device=device)]  # (b, n_max, d); padding repeats row 0
    d = points.shape[2]
    sq_norms = (points * points).sum(dim=2)
    centres = torch.gather(points, 1, torch.as_tensor(start_index, device=device)[:, :, None].expand(-1, -1, d))
    active = torch.ones(b, dtype=torch.bool, device=device)
    labels = None
    for _ in range(n_iter):
        new_labels, best = _nearest_centres(points, centres, centre_valid)
        if labels is not None:
            active &= ((new_labels != labels) & valid).any(dim=1)
            if not bool(active.any()):
                break
            new_labels = torch.where(active[:, None], new_labels, labels)
        labels = new_labels
        # padded points go to a spare centre k_max, dropped afterwards
        target = torch.where(valid, labels, torch.full_like(labels, k_max))
        sums = torch.zeros((b, k_max + 1, d), dtype=torch.float32, device=device)
        sums.scatter_add_(1, target[:, :, None].expand(-1, -1, d), points)
        counts = torch.zeros((b, k_max + 1), dtype=torch.float32, device=device)
        counts.scatter_add_(1, target, torch.ones_like(points[:, :, 0]))
        sums, counts = sums[:, :k_max], counts[:, :k_max]
        filled = counts > 0
        update = filled & active[:, None]
        centres = torch.where(update[:, :, None], sums / counts.clamp(min=1)[:, :, None], centres)
        empty = ~filled & centre_valid & active[:, None]
        for g in torch.nonzero(empty.any(dim=1)).flatten().tolist():
            # move each empty centre onto one of the group's worst-fitted points
            misfit = (best[g] + sq_norms[g]).masked_fill(~valid[g], -float("inf"))
            slots = torch.nonzero(empty[g]).flatten()
            worst = torch.argsort(misfit, descending=True)[: len(slots)]
            centres[g, slots] = points[g, worst]
    labels, _ = _nearest_centres(points, centres, centre_valid)
    # compact each group's labels to 0..used-1 in order (np.unique(return_inverse) per group)
    used = torch.zeros((b, k_max + 1), dtype=torch.int64, device=device)
    used.scatter_(1, torch.where(valid, labels, torch.full_like(labels, k_max)), 1)
    renumber = torch.cumsum(used[:, :k_max], dim=1) - 1
    compact = torch.gather(renumber, 1, labels).cpu().numpy()
    return [compact[g, : len(rows)] for g, rows in enumerate(members)]


def _aggregate(kernel: DeviceKernel, labels, n_groups: int):
    """``W = K @ onehot(labels)`` as coalesced COO (rows sorted), shape (N, n_groups), float32.

    The interslice blocks' entries are summed into (point, landmark) pairs a chunk of units at a
    time, so the index arrays never span all n_units * n_slices^2 entries at once.
    """
    n_slices, n_units = kernel.n_slices, kernel.n_units
    shape = (n_slices * n_units, n_groups)
    intra = kernel.intraslice
    counts = intra.crow_indices().diff()
    intra_rows = torch.repeat_interleave(torch.arange(len(counts), device=labels.device), counts)
    parts = [(torch.stack([intra_rows, labels[intra.col_indices()]]), intra.values())]
    del intra_rows
    chunk = max(1, torch_kernel.BUILD_CHUNK_ENTRIES // (n_slices * n_slices))
    for u0 in range(0, n_units, chunk):
        blocks = kernel.blocks[u0:u0 + chunk]
        # block entry (u, s, s') adds to W[(s, u), label(s', u)]
        unit, s_from, s_to = torch.nonzero(blocks, as_tuple=True)
        values = blocks[unit, s_from, s_to]
        unit += u0
        entries = torch.stack([s_from * n_units + unit, labels[s_to * n_units + unit]])
        del unit, s_from, s_to
        part = torch.sparse_coo_tensor(entries, values, size=shape, check_invariants=False).coalesce()
        parts.append((part.indices(), part.values()))
        del entries, values, part
    entries = torch.cat([e for e, _ in parts], dim=1)
    values = torch.cat([v for _, v in parts])
    del parts
    return torch.sparse_coo_tensor(entries, values, size=shape, check_invariants=False).coalesce()


def landmark_operator(kernel: DeviceKernel, labels: np.ndarray,
                      drop_below: float = LANDMARK_DROP_BELOW) -> LandmarkOperator:
    """:func:`mphate.embed.landmarks.landmark_operator` on the kernel's device.

    ``symmetric`` (L, L) stays on the device (the eigendecomposition that follows runs there);
    ``point_to_landmark`` comes home as CSR (the t search and the embedding map layouts with it),
    ``scale`` as NumPy.
    """
    device = kernel.blocks.device
    n = kernel.shape[0]
    n_groups = int(labels.max()) + 1
    affinity = _aggregate(kernel, torch.as_tensor(labels, device=device), n_groups)
    rows, cols = affinity.indices()
    vals = affinity.values()
    del affinity
    if drop_below > 0 and len(vals):
        row_max = torch.zeros(n, dtype=vals.dtype, device=device).scatter_reduce_(0, rows, vals, "amax")
        keep = vals >= row_max[rows] * drop_below
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    degrees = torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, rows, vals.double())
    scale = torch.zeros(n_groups, dtype=torch.float64, device=device).index_add_(0, cols, vals.double())
    # B = D^-1/2 W; G = B^T B
    inv_sqrt_degrees = (1.0 / degrees.sqrt()).to(torch.float32)
    halfway = vals * inv_sqrt_degrees[rows]
    symmetric = _gram_of_rows(rows, cols, halfway, n, n_groups)
    inv_sqrt_scale = (1.0 / scale.sqrt()).to(torch.float32)
    symmetric *= inv_sqrt_scale[:, None]
    symmetric *= inv_sqrt_scale[None, :]
    # P_nm = D^-1 W, home as CSR (rows are sorted: the COO was coalesced)
    transition = (halfway * inv_sqrt_degrees[rows]).cpu().numpy()
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(torch.bincount(rows, minlength=n).cpu().numpy(), out=indptr[1:])
    point_to_landmark = sp.csr_matrix((transition, cols.cpu().numpy().astype(np.int32), indptr),
                                      shape=(n, n_groups))
    return LandmarkOperator(labels, point_to_landmark, symmetric, scale.cpu().numpy())


def _gram_of_rows(rows, cols, vals, n_rows: int, n_columns: int):
    """``B^T B``, shape (n_columns, n_columns) float32, for B (n_rows, n_columns) given as COO
    entries: one sparse-sparse product (cuSPARSE on a GPU, MKL on the CPU), made dense."""
    entries = torch.stack([rows, cols])
    with quiet_sparse():
        return _sparse_gram(entries, vals, n_rows, n_columns)


def _sparse_gram(entries, vals, n_rows, n_columns):
    halfway = torch.sparse_coo_tensor(entries, vals, size=(n_rows, n_columns), check_invariants=False).coalesce().to_sparse_csr()
    halfway_t = torch.sparse_coo_tensor(entries.flip(0), vals, size=(n_columns, n_rows),
                                        check_invariants=False).coalesce().to_sparse_csr()
    return (halfway_t @ halfway).to_dense()
