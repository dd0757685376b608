"""The multislice kernel on a PyTorch device, for :class:`mphate.embed.backend.TorchBackend`.

Two jobs, each the twin of its NumPy code in :mod:`mphate.embed.kernel`, entry for entry in
float32 with the same formulas:

- :func:`interslice_bandwidth`, the kernel stage's one pass over every unit's history (for a
  lean kernel the only work the kernel stage does: 9.5 s of a 1,000 x 2,048 fit on two
  cores);
- :class:`DeviceKernel`, the kernel's two parts on the device for the landmark stage
  (:mod:`mphate.embed.torch_landmarks`): a stored host kernel is copied over; a lean one (the
  host keeps only its features: every trace of 20,000 points or more) is built on a CUDA
  device whose free memory holds its interslice blocks four times over
  (:func:`fits_on_device`), and elsewhere its products stay on the host.

Imported only when a torch device is asked for.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np

from mphate.embed.kernel import mean_bandwidth
from mphate.embed.torch_dense import batched_sq_distances
from mphate.optional import require

torch = require("torch", "MPHATE(device=...) other than 'cpu'")


@contextmanager
def quiet_sparse():
    """Silence torch's notice that sparse CSR support is in beta (what is used here works)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        yield


class DeviceKernel:
    """A multislice kernel's two parts on a device (:meth:`of` copies or builds them).

    Attributes
    ----------
    n_slices, n_units : int
    intraslice : torch sparse CSR tensor, shape (N, N), float32
    blocks : torch.Tensor, shape (n_units, n_slices, n_slices), float32
        Interslice blocks (zero diagonals).
    """

    def __init__(self, n_slices: int, n_units: int, intraslice, blocks):
        self.n_slices, self.n_units = n_slices, n_units
        self.intraslice = intraslice
        self.blocks = blocks
        self._degrees = None

    @classmethod
    def of(cls, kernel, device) -> "DeviceKernel":
        """``kernel`` (a :class:`~mphate.embed.kernel.MultisliceKernel`) on ``device``: copied when
        stored, built there from its features when lean (see :func:`fits_on_device`)."""
        if kernel.lean:
            return cls.from_features(kernel, device)
        return cls.from_kernel(kernel, device)

    @classmethod
    def from_features(cls, kernel, device) -> "DeviceKernel":
        """Build a lean kernel's two parts on ``device`` from its features, entry for entry as
        :func:`mphate.embed.kernel.multislice_kernel` builds them on the host (same bandwidth,
        the host's ``interslice_eps``; the same formulas, in float32)."""
        features = torch.as_tensor(kernel.features, device=device)
        n_slices, n_units, _ = features.shape
        intraslice = _intraslice_on_device(features, kernel.intraslice_knn, kernel.decay, kernel.threshold)
        blocks = torch.empty((n_units, n_slices, n_slices), dtype=torch.float32, device=device)
        inv_eps_sq = -1.0 / (kernel.interslice_eps * kernel.interslice_eps)
        diagonal = torch.arange(n_slices, device=device)
        chunk = max(1, BUILD_CHUNK_ENTRIES // (n_slices * n_slices))
        for u0 in range(0, n_units, chunk):
            slab = _centred_units(features, u0, u0 + chunk)
            affinity = batched_sq_distances(slab).mul_(inv_eps_sq).exp_()
            affinity[affinity < kernel.threshold] = 0.0
            affinity[:, diagonal, diagonal] = 0.0
            blocks[u0:u0 + len(affinity)] = affinity
            del affinity
        return cls(n_slices, n_units, intraslice, blocks)

    @classmethod
    def from_kernel(cls, kernel, device) -> "DeviceKernel":
        """Copy a stored :class:`~mphate.embed.kernel.MultisliceKernel` to ``device``."""
        intra = kernel.intraslice.astype(np.float32).tocsr()
        intra.sort_indices()
        with quiet_sparse():
            intraslice = torch.sparse_csr_tensor(
                torch.as_tensor(intra.indptr.astype(np.int64)), torch.as_tensor(intra.indices.astype(np.int64)),
                torch.as_tensor(intra.data), size=intra.shape, dtype=torch.float32, device=device,
                check_invariants=False)  # built from a sorted SciPy CSR matrix
        blocks = torch.as_tensor(kernel.stored_blocks, device=device)
        return cls(kernel.n_slices, kernel.n_units, intraslice, blocks)

    @property
    def shape(self):
        n = self.n_slices * self.n_units
        return (n, n)

    def degrees(self):
        """Row sums, shape (N,), float64."""
        if self._degrees is None:
            ones = torch.ones((self.shape[0], 1), dtype=torch.float32, device=self.blocks.device)
            deg = (self.intraslice @ ones)[:, 0].double()
            deg += self.blocks.sum(dim=2, dtype=torch.float64).T.reshape(-1)
            self._degrees = deg
        return self._degrees

    def matmat(self, vectors, scale=None):
        """``K v`` or ``S K S v`` with ``S = diag(scale)``: vectors (N, m) -> (N, m) float32."""
        if scale is not None:
            vectors = vectors * scale[:, None]
        m = vectors.shape[1]
        unit_major = vectors.reshape(self.n_slices, self.n_units, m).transpose(0, 1)
        interslice = torch.bmm(self.blocks, unit_major).transpose(0, 1).reshape(-1, m)
        # out of place: a sparse product's result may come back in column-major layout (cuSPARSE)
        out = self.intraslice @ vectors + interslice
        del interslice
        if scale is not None:
            out *= scale[:, None]
        return out

    def subsample_slices(self, slices: np.ndarray) -> "DeviceKernel":
        """The induced subgraph on some slices (:meth:`MultisliceKernel.subsample_slices`)."""
        index = torch.as_tensor(slices, device=self.blocks.device)
        blocks = self.blocks.index_select(1, index).index_select(2, index).contiguous()
        # the intraslice blocks of the chosen slices, renumbered: point (s, u) -> (new s, u)
        n_units = self.n_units
        rows = torch.as_tensor(
            (np.asarray(slices)[:, None] * n_units + np.arange(n_units)[None, :]).ravel(), device=index.device)
        intra = self.intraslice.to_sparse_coo().coalesce()
        position = torch.full((self.shape[0],), -1, dtype=torch.int64, device=index.device)
        position[rows] = torch.arange(len(rows), device=index.device)
        r, c = intra.indices()
        new_r, new_c = position[r], position[c]
        keep = (new_r >= 0) & (new_c >= 0)
        n_sub = len(rows)
        coo = torch.sparse_coo_tensor(torch.stack([new_r[keep], new_c[keep]]), intra.values()[keep],
                                      size=(n_sub, n_sub), check_invariants=False).coalesce()
        with quiet_sparse():
            return DeviceKernel(len(slices), n_units, coo.to_sparse_csr(), blocks)


#: entries of the (batch, n, n) distance blocks formed at once while building a kernel
BUILD_CHUNK_ENTRIES = 2**26


def fits_on_device(kernel, device) -> bool:
    """Whether the landmark stage of a multislice kernel runs on ``device``: a stored kernel
    always; a lean one (its interslice blocks too large for the host's 2 GB) on a CUDA device
    whose free memory holds those blocks four times over, built there from the features."""
    if not kernel.lean:
        return True
    if not str(device).startswith("cuda"):
        return False
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return 4 * 4 * kernel.n_units * kernel.n_slices ** 2 <= free


def _intraslice_on_device(features, knn: int, decay: float, threshold: float):
    """:func:`mphate.embed.kernel.intraslice_kernel` on a device (the candidate pairs, the
    symmetrised alpha-decay affinities, the threshold): one CSR tensor (N, N) float32."""
    n_slices, n_units, _ = features.shape
    device = features.device
    reach_sq = float(np.log(1.0 / threshold) ** (2.0 / decay) * (1 + 1e-4))
    tiny = float(np.finfo(np.float32).tiny)
    rows, cols, vals = [], [], []
    step = max(1, BUILD_CHUNK_ENTRIES // (n_units * n_units))
    for s0 in range(0, n_slices, step):
        sq = batched_sq_distances(features[s0:s0 + step])
        # the knn-th smallest entry of each row, the row's own zero counted as the 0-th
        kth_sq = torch.kthvalue(sq, knn + 1, dim=2).values
        floor = (sq.mean(dim=(1, 2), dtype=torch.float64) * 1e-12).clamp(min=tiny)
        sigma_sq = torch.maximum(kth_sq, floor[:, None].to(torch.float32))
        row_ok = sq <= (sigma_sq * reach_sq)[:, :, None]
        row_ok = row_ok | row_ok.transpose(1, 2)
        batch, row, col = torch.nonzero(row_ok, as_tuple=True)  # row-major: CSR order
        del row_ok
        pair_sq = sq[batch, row, col]
        del sq
        values = torch.zeros_like(pair_sq)
        for sigma in (sigma_sq[batch, row], sigma_sq[batch, col]):  # K_ij with sigma_i, K_ji with sigma_j
            values += torch.exp(-torch.pow(torch.sqrt(pair_sq / sigma), decay))
        values *= 0.5
        keep = values >= threshold
        offset = (batch[keep] + s0) * n_units
        rows.append(offset + row[keep])
        cols.append(offset + col[keep])
        vals.append(values[keep])
    rows, cols, vals = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    n = n_slices * n_units
    crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    with quiet_sparse():
        return torch.sparse_csr_tensor(crow, cols, vals, size=(n, n), check_invariants=False)


def interslice_bandwidth(features, knn: int, device) -> float:
    """:func:`mphate.embed.kernel.interslice_bandwidth` on ``device``: the mean over units of the
    median over slices of the distance to the ``knn``-th nearest other slice of the same unit.

    Parameters
    ----------
    features : ndarray, shape (n_slices, n_units, n_features), float32
        The z-scored trace (slice-major), as the kernel stage hands it on.
    knn : int, 1 <= knn < n_slices

    Returns
    -------
    float, the bandwidth (1.0 when every unit is identical at every slice, as on the host)
    """
    on_device = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32), device=device)
    n_slices, n_units, _ = on_device.shape
    medians = torch.empty(n_units, dtype=torch.float64, device=on_device.device)
    chunk = max(1, BUILD_CHUNK_ENTRIES // (n_slices * n_slices))
    middle = n_slices // 2
    for u0 in range(0, n_units, chunk):
        sq = batched_sq_distances(_centred_units(on_device, u0, u0 + chunk))
        # the knn-th smallest entry of each row, the row's own zero counted as the 0-th
        kth = torch.kthvalue(sq, knn + 1, dim=2).values.double().sqrt_()
        del sq
        ordered = kth.sort(dim=1).values
        # np.median: the middle value, or the mean of the two middle ones
        medians[u0:u0 + len(kth)] = (ordered[:, middle] if n_slices % 2
                                     else (ordered[:, middle - 1] + ordered[:, middle]) / 2)
    return mean_bandwidth(medians.cpu().numpy())


def _centred_units(features, u0: int, u1: int):
    """Units u0..u1 of slice-major features as unit-major rows, each unit's history centred:
    (u1 - u0, n_slices, n_features), as :func:`mphate.embed.kernel._unit_slab` (why: there)."""
    slab = features[:, u0:u1].transpose(0, 1)
    return slab - slab.mean(dim=1, keepdim=True)
