"""The multislice kernel against a direct, loop-by-loop reading of the method's definition."""
import numpy as np
import pytest

from mphate.embed.kernel import KERNEL_THRESHOLD, multislice_kernel
from mphate.embed.normalize import zscore_units
from mphate.traces.synthetic import make_trace


def reference_kernel(data, intraslice_knn, interslice_knn, decay):
    """Dense kernel built straight from ../shared/MPHATE.md with plain loops."""
    n_slices, n_units, _ = data.shape
    n = n_slices * n_units
    kernel = np.zeros((n, n))
    for s in range(n_slices):
        x = data[s].astype(np.float64)
        dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        block = np.zeros((n_units, n_units))
        for i in range(n_units):
            others = np.sort(np.delete(dist[i], i))
            sigma = others[intraslice_knn - 1]
            block[i] = np.exp(-((dist[i] / sigma) ** decay))
        block = (block + block.T) / 2
        block[block < KERNEL_THRESHOLD] = 0
        idx = s * n_units + np.arange(n_units)
        kernel[np.ix_(idx, idx)] = block
    medians = []
    for u in range(n_units):
        x = data[:, u].astype(np.float64)
        dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        kth = [np.sort(np.delete(dist[s], s))[interslice_knn - 1] for s in range(n_slices)]
        medians.append(np.median(kth))
    eps = np.mean(medians)
    for u in range(n_units):
        x = data[:, u].astype(np.float64)
        dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        block = np.exp(-((dist / eps) ** 2))
        block[block < KERNEL_THRESHOLD] = 0
        np.fill_diagonal(block, 0)
        idx = np.arange(n_slices) * n_units + u
        kernel[np.ix_(idx, idx)] += block
    return kernel, eps


@pytest.fixture(scope="module")
def small():
    data = zscore_units(make_trace(n_slices=12, n_units=9, n_trace=7, random_state=3).data)
    return data


@pytest.mark.parametrize("store_blocks", [True, False])
def test_kernel_matches_direct_definition(small, store_blocks):
    expected, eps = reference_kernel(small, intraslice_knn=2, interslice_knn=4, decay=5)
    kernel = multislice_kernel(small, intraslice_knn=2, interslice_knn=4, decay=5, store_blocks=store_blocks)
    assert kernel.interslice_eps == pytest.approx(eps, rel=1e-4)
    got = kernel.to_sparse().toarray()
    np.testing.assert_allclose(got, expected, atol=2e-4)
    # same sparsity pattern away from the threshold
    assert ((got > 0) == (expected > 0))[np.abs(expected - KERNEL_THRESHOLD) > 1e-5].all()


@pytest.mark.parametrize("store_blocks", [True, False])
def test_slowly_drifting_units_far_from_the_origin_keep_exact_interslice_links(store_blocks):
    # a unit's history lies close together far from the origin (z-scored vectors have
    # |x|^2 = n_features): the float32 |x|^2 + |y|^2 - 2 x.y expansion would cancel away most
    # of the interslice distances (as in a small-learning-rate SGD run)
    rng = np.random.default_rng(0)
    start = rng.normal(size=(1, 5, 100))
    drift = np.cumsum(rng.normal(scale=3e-3, size=(40, 5, 100)), axis=0)
    data = zscore_units((start + drift).astype(np.float32))
    expected, eps = reference_kernel(data, intraslice_knn=2, interslice_knn=4, decay=5)
    kernel = multislice_kernel(data, intraslice_knn=2, interslice_knn=4, decay=5, store_blocks=store_blocks)
    assert kernel.interslice_eps == pytest.approx(eps, rel=1e-4)
    np.testing.assert_allclose(kernel.to_sparse().toarray(), expected, atol=1e-4)


def test_kernel_structure(small):
    n_slices, n_units, _ = small.shape
    dense = multislice_kernel(small, interslice_knn=4).to_sparse().toarray()
    idx = np.arange(n_slices * n_units)
    slice_of, unit_of = idx // n_units, idx % n_units
    same_slice = slice_of[:, None] == slice_of[None, :]
    same_unit = unit_of[:, None] == unit_of[None, :]
    np.testing.assert_array_equal(np.diag(dense), 1.0)
    np.testing.assert_allclose(dense, dense.T, atol=1e-6)
    # no links between different units at different slices
    assert not dense[~same_slice & ~same_unit].any()
    # intraslice blocks on the diagonal and per-unit interslice stripes are both present
    assert dense[same_slice & ~same_unit].any()
    assert (dense[same_unit & ~same_slice] > 0).mean() > 0.5
    assert dense.min() >= 0 and dense.max() <= 1 + 1e-6


def test_matmat_and_degrees_agree_with_sparse(small):
    kernel = multislice_kernel(small, interslice_knn=4)
    sparse = kernel.to_sparse()
    vectors = np.random.default_rng(0).standard_normal((sparse.shape[0], 5))
    np.testing.assert_allclose(kernel.matmat(vectors), sparse @ vectors, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(kernel.degrees(), np.asarray(sparse.sum(axis=1)).ravel(), rtol=1e-5)


@pytest.mark.parametrize("store_blocks", [True, False])
def test_aggregate_sums_columns_by_group(small, store_blocks):
    kernel = multislice_kernel(small, interslice_knn=4, store_blocks=store_blocks)
    sparse = kernel.to_sparse().toarray()
    labels = np.random.default_rng(1).integers(0, 13, size=sparse.shape[0])
    labels = np.unique(labels, return_inverse=True)[1]
    expected = np.stack([sparse[:, labels == g].sum(axis=1) for g in range(labels.max() + 1)], axis=1)
    aggregated = kernel.aggregate(labels, labels.max() + 1)
    np.testing.assert_allclose(aggregated.toarray(), expected, atol=1e-5)
    # sorted rows without duplicates: groups reached through both the intraslice and the
    # interslice part of a row are one entry
    assert aggregated.has_canonical_format
    assert np.all(np.diff(aggregated.indices[aggregated.indptr[0]:aggregated.indptr[1]]) > 0)
    assert aggregated.nnz == np.count_nonzero(expected)


def test_duplicated_and_dead_units_give_finite_kernel():
    data = make_trace(n_slices=8, n_units=10, n_trace=6, random_state=0).data.copy()
    data[:, 3] = data[:, 2]  # duplicated unit
    data[:, 4] = 0.7  # dead unit: constant activation
    data[:, 5] = 0.7
    kernel = multislice_kernel(zscore_units(data), interslice_knn=3).to_sparse()
    assert np.isfinite(kernel.data).all()
    dense = kernel.toarray()
    # identical units are maximally similar in every slice
    assert dense[2, 3] == pytest.approx(1.0) and dense[4, 5] == pytest.approx(1.0)


@pytest.mark.parametrize("store_blocks", [True, False])
def test_subsample_slices_is_the_induced_subgraph(small, store_blocks):
    kernel = multislice_kernel(small, interslice_knn=4, store_blocks=store_blocks)
    assert kernel.lean is not store_blocks
    n_slices, n_units, _ = small.shape
    slices = np.array([0, 3, 4, 9, 11])
    points = (slices[:, None] * n_units + np.arange(n_units)).ravel()
    expected = kernel.to_sparse().toarray()[np.ix_(points, points)]
    sub = kernel.subsample_slices(slices)
    assert (sub.n_slices, sub.n_units) == (len(slices), n_units)
    assert sub.interslice_eps == kernel.interslice_eps
    np.testing.assert_allclose(sub.to_sparse().toarray(), expected, atol=1e-6)


def test_lean_and_stored_kernels_agree_in_every_operation(small):
    stored = multislice_kernel(small, interslice_knn=4, store_blocks=True)
    lean = multislice_kernel(small, interslice_knn=4, store_blocks=False)
    vectors = np.random.default_rng(0).standard_normal((stored.shape[0], 4)).astype(np.float32)
    scale = np.random.default_rng(1).random(stored.shape[0]).astype(np.float32)
    np.testing.assert_allclose(lean.degrees(), stored.degrees(), rtol=1e-5)
    np.testing.assert_allclose(
        lean.matmat(vectors, scale=scale), stored.matmat(vectors, scale=scale), rtol=1e-4, atol=1e-5
    )
    labels = np.arange(stored.shape[0]) % 17
    np.testing.assert_allclose(
        lean.aggregate(labels, 17).toarray(), stored.aggregate(labels, 17).toarray(), atol=1e-5
    )


def test_scaled_product_and_epilogue(small):
    kernel = multislice_kernel(small, interslice_knn=4)
    dense = kernel.to_sparse().toarray()
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((dense.shape[0], 3)).astype(np.float32)
    other = rng.standard_normal(vectors.shape).astype(np.float32)
    scale = rng.random(dense.shape[0]).astype(np.float32) + 0.5
    seen = np.zeros(dense.shape[0], int)

    def epilogue(part):
        part(seen)[...] += 1  # every row is handed over exactly once
        result = part(out)
        result -= part(other)

    out = np.empty_like(vectors)
    kernel.matmat(vectors, scale=scale, out=out, epilogue=epilogue)
    expected = scale[:, None] * (dense @ (scale[:, None] * vectors)) - other
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert (seen == 1).all()
