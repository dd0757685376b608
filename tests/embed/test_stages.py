"""Behaviour of the pipeline stages: normalisation, entropy and knee, potential, MDS, landmarks."""
import numpy as np
import pytest

from mphate.embed import diffusion, landmarks, mds
from mphate.embed.kernel import multislice_kernel
from mphate.embed.normalize import zscore_units
from mphate.traces.synthetic import make_trace


def test_zscore_units_and_dead_units():
    data = np.random.default_rng(0).normal(3, 2, size=(4, 5, 9))
    data[1, 2] = 7.0
    z = zscore_units(data)
    np.testing.assert_allclose(z.mean(axis=2), 0, atol=1e-6)
    alive = np.ones((4, 5), bool)
    alive[1, 2] = False
    np.testing.assert_allclose(z.std(axis=2)[alive], 1, rtol=1e-5)
    assert (z[1, 2] == 0).all()


def test_von_neumann_entropy_by_hand():
    lam = np.array([1.0, 0.5, 0.5, 0.0])
    h = diffusion.von_neumann_entropy(lam, t_max=3)
    for t in (1, 2, 3):
        p = np.array([1, 0.5**t, 0.5**t])
        p /= p.sum()
        assert h[t - 1] == pytest.approx(-(p * np.log(p)).sum())
    # no NaN when powers underflow
    tiny = np.array([1.0, 1e-3, 1e-200])
    assert np.isfinite(diffusion.von_neumann_entropy(tiny, t_max=100)).all()


def test_find_knee_of_two_lines():
    x = np.arange(40)
    y = np.where(x < 12, 100 - 6 * x, 100 - 6 * 12 - 0.5 * (x - 12))
    assert diffusion.find_knee(y) == 12
    with pytest.raises(ValueError):
        diffusion.find_knee([1.0, 0.5])


def test_knee_fit_errors_match_least_squares_by_hand():
    y = np.random.default_rng(3).normal(size=17).cumsum()
    x = np.arange(17.0)

    def rss(xs, ys):
        fit = np.polyval(np.polyfit(xs, ys, 1), xs)
        return ((ys - fit) ** 2).sum()

    expected = [rss(x[: i + 1], y[: i + 1]) + rss(x[i:], y[i:]) for i in range(1, 16)]
    np.testing.assert_allclose(diffusion.knee_fit_errors(y), expected, atol=1e-9)


def _two_bend_curve(late_drop: float):
    # fast early drop to t=6, a gentle slope, a second drop from t=40 to 70, gentle again
    t = np.arange(1, 101, dtype=float)
    y = 8 - 0.5 * np.minimum(t, 6) - 0.01 * t
    return y - late_drop * np.clip((t - 40) / 30, 0, 1)


def test_knee_candidates_report_both_bends_of_a_two_bend_curve():
    # the late drop's size decides which bend fits best; both stay candidates near the tie
    weak, strong = _two_bend_curve(2.2), _two_bend_curve(2.4)
    for curve in (weak, strong):
        candidates = diffusion.t_candidates(curve)
        assert candidates[0] == diffusion.find_knee(curve) + 1
        assert len(candidates) == 2
        assert min(candidates) in range(5, 9) and max(candidates) in range(38, 72)
    assert diffusion.t_candidates(weak)[0] != diffusion.t_candidates(strong)[0]
    # a clearly dominant late drop leaves one knee
    assert len(diffusion.t_candidates(_two_bend_curve(4.0))) == 1


def test_knee_candidates_of_a_single_knee_and_a_flat_curve():
    x = np.arange(40)
    y = np.where(x < 12, 100 - 6 * x, 100 - 6 * 12 - 0.5 * (x - 12))
    assert diffusion.knee_candidates(y) == [12]
    assert diffusion.knee_candidates(np.ones(30)) == [1]


def test_potential_family():
    p = np.array([[0.25, 0.75]])
    np.testing.assert_allclose(diffusion.potential(p, 0), 2 * np.sqrt(p))
    np.testing.assert_allclose(diffusion.potential(p, 1), -np.log(p + 1e-7))
    np.testing.assert_allclose(diffusion.potential(p, -1), p)
    with pytest.raises(ValueError):
        diffusion.potential(p, 1.5)


@pytest.mark.parametrize("t", [5, 6])
def test_spectral_power_matches_matrix_power(t):
    # this kernel has negative eigenvalues: an odd t takes the general product, an even t the
    # product of the half power with its own transpose
    rng = np.random.default_rng(0)
    a = rng.random((30, 30))
    kernel = (a + a.T) / 2
    scale = kernel.sum(axis=1)
    symmetric = kernel / np.sqrt(np.outer(scale, scale))
    operator = kernel / scale[:, None]
    spectrum = diffusion.SpectralDecomposition(symmetric, scale)
    assert (spectrum.eigenvalues < -1e-3).any()
    expected = np.linalg.matrix_power(operator, t)
    np.testing.assert_allclose(spectrum.power(t), expected, atol=1e-10)


def test_smacof_lowers_stress_and_recovers_a_planar_layout():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((60, 2))
    target = mds.pairwise_distances(truth)
    start = truth + rng.standard_normal(truth.shape) * 0.5
    fitted, n_iter = mds.smacof(target, start, max_iter=500, tol=1e-9)
    assert n_iter > 1
    assert mds.stress(target, fitted) < 0.01 < mds.stress(target, start)


def _plain_smacof_stresses(target, start, n_iter):
    """Raw stress before each of ``n_iter`` plain Guttman steps (no momentum), same start scaling."""
    n = len(target)
    delta = target.astype(np.float32)
    delta_sq = float(np.vdot(delta, delta))
    x = start - start.mean(axis=0)
    cross, _ = mds._guttman_pass(delta, x, 1, scale_only=True)
    x = x * cross / (2 * n * (x * x).sum())
    stresses = []
    for _ in range(n_iter):
        x = x - x.mean(axis=0)
        cross, x_next = mds._guttman_pass(delta, x, 1)
        stresses.append((2 * n * float((x * x).sum()) - 2 * cross + delta_sq) / 2)
        x = x_next
    return np.array(stresses)


def _raw_stress(target, layout):
    return float(((mds.pairwise_distances(layout) - target) ** 2).sum() / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smacof_momentum_reaches_the_minimum_in_a_fraction_of_plain_steps(seed):
    # a helix laid flat: no exact planar fit, and the unrolling is a slow mode for plain SMACOF
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(0, 4 * np.pi, 300))
    target = mds.pairwise_distances(np.column_stack([np.cos(s), np.sin(s), 0.3 * s])).astype(np.float32)
    start = rng.standard_normal((300, 2))
    plain = _plain_smacof_stresses(target, start, 2000)
    minimum = plain.min()
    plain_steps = int(np.argmax(plain <= 1.001 * minimum)) + 1
    fitted, n_iter = mds.smacof(target, start, max_iter=2000, tol=1e-4, weight_power=0)
    assert _raw_stress(target, fitted) <= 1.001 * minimum
    assert n_iter < plain_steps / 2, (n_iter, plain_steps)


def test_smacof_from_several_starts_keeps_the_one_that_ends_at_the_least_stress():
    # a sphere laid flat has many local minima: random starts end in different ones
    rng = np.random.default_rng(2)
    sphere = rng.standard_normal((200, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    target = mds.pairwise_distances(sphere).astype(np.float32)
    starts = [np.random.default_rng(seed).standard_normal((200, 2)) for seed in range(4)]
    alone = [mds.smacof(target, start, max_iter=300, tol=1e-4, weight_power=0) for start in starts]
    stresses = [_raw_stress(target, layout) for layout, _ in alone]
    assert max(stresses) > 1.02 * min(stresses), stresses  # the starts did end apart
    best = int(np.argmin(stresses))
    for order in (list(range(4)), list(range(4))[::-1]):
        kept, n_iter = mds.smacof(target, [starts[i] for i in order], max_iter=300, tol=1e-4, weight_power=0)
        # the least stress, unless an earlier start ended within DISTINCT_STRESS of it
        first_close = next(i for i in order if stresses[i] <= stresses[best] / (1 - mds.DISTINCT_STRESS))
        np.testing.assert_allclose(kept, alone[first_close][0])
        assert n_iter == sum(n for _, n in alone)
    # and here two starts did end within it (so the order decided between them)
    assert sum(s <= stresses[best] / (1 - mds.DISTINCT_STRESS) for s in stresses) >= 2, stresses


def test_smacof_stops_at_an_exact_fit_without_running_to_max_iter():
    # the start already fits: no step can lower the stress but by rounding, and the momentum's
    # restarts must end the loop rather than retry the same step
    rng = np.random.default_rng(4)
    truth = rng.standard_normal((80, 2))
    target = mds.pairwise_distances(truth).astype(np.float32)
    fitted, n_iter = mds.smacof(target, truth, max_iter=5000, tol=0.0, weight_power=0)
    assert n_iter < 100
    assert mds.stress(target, fitted) < 1e-5


def _weighted_stress(target, layout, power):
    dist = mds.pairwise_distances(layout)
    weights = np.zeros_like(target)
    np.power(target, -power, out=weights, where=target > 0)
    return float((weights * (dist - target) ** 2).sum())


def test_local_refinement_lowers_the_weighted_stress_and_keeps_near_neighbours_closer():
    # points on a curved sheet: no planar layout fits every distance, so unit weights and
    # weights favouring short distances disagree, and the refinement must move towards the latter
    rng = np.random.default_rng(3)
    angle, height = rng.uniform(0, 1.5 * np.pi, 150), rng.uniform(0, 1, 150)
    sheet = np.column_stack([np.cos(angle), np.sin(angle), height])
    target = mds.pairwise_distances(sheet).astype(np.float32)
    start = mds.classical_mds_from_points(sheet, 2, np.random.default_rng(0))
    plain, _ = mds.smacof(target, start, weight_power=0)
    refined, _ = mds.smacof(target, start, weight_power=0.5)
    assert _weighted_stress(target, refined, 0.5) < 0.97 * _weighted_stress(target, plain, 0.5)
    again, steps = mds.refine_local(target, plain, 0.5, n_steps=10)
    np.testing.assert_allclose(again, refined)  # smacof() is SMACOF, then this refinement
    assert steps >= 1

    def nearest_kept(layout, k=5):
        truth = np.argsort(target, axis=1)[:, 1:k + 1]
        found = np.argsort(mds.pairwise_distances(layout), axis=1)[:, 1:k + 1]
        return np.mean([len(set(a) & set(b)) for a, b in zip(truth, found)]) / k

    assert nearest_kept(refined) >= nearest_kept(plain)


def test_local_iterations_fall_back_to_the_half_step_and_stop():
    # on sum(x^2), "J(x) = -x" gains nothing and its half step lands on the minimum;
    # "J(x) = -2x" overshoots every time, so only half steps (and restarts) can make progress
    def stress(x):
        return float((x * x).sum())

    start = np.array([[1.0, -2.0]])
    final, steps = mds.local_iterations(lambda x: (stress(x), -x), start, n_steps=5)
    np.testing.assert_array_equal(final, 0.0)
    assert steps == 1
    final, steps = mds.local_iterations(lambda x: (stress(x), -2 * x), start, n_steps=5)
    assert steps == 5 and stress(final) < stress(start) / 4**3


def test_classical_mds_is_exact_for_euclidean_points():
    rng = np.random.default_rng(2)
    points = np.c_[rng.standard_normal((50, 2)) * [5, 2], np.zeros((50, 3))]
    emb = mds.classical_mds_from_points(points, 2, np.random.default_rng(0))
    np.testing.assert_allclose(mds.pairwise_distances(emb), mds.pairwise_distances(points), atol=1e-8)


def test_landmark_operator_is_stochastic_and_groups_everything():
    data = zscore_units(make_trace(n_slices=20, n_units=15, n_trace=8, random_state=0).data)
    kernel = multislice_kernel(data, interslice_knn=4)
    features = landmarks.spectral_features(kernel, 10, np.random.default_rng(0))
    labels = landmarks.cluster_landmarks(features, 40, np.random.default_rng(0))
    assert labels.shape == (300,) and set(labels) == set(range(labels.max() + 1))
    assert 20 <= labels.max() + 1 <= 40
    op = landmarks.landmark_operator(kernel, labels)
    np.testing.assert_allclose(np.asarray(op.point_to_landmark.sum(axis=1)).ravel(), 1, rtol=1e-6)
    spectrum = diffusion.SpectralDecomposition(op.symmetric, op.scale)
    np.testing.assert_allclose(spectrum.power(1).sum(axis=1), 1, atol=1e-9)
    assert spectrum.eigenvalues[0] == pytest.approx(1, abs=1e-6)


def test_kmeans_plus_plus_spreads_centres_where_random_seeding_follows_density():
    # a dense blob of 900 points and 100 scattered ones: random seeding puts ~90% of the
    # centres in the blob (even cluster sizes); k-means++ draws by squared distance, so the
    # scattered points get centres of their own and the blob forms larger clusters
    rng = np.random.default_rng(0)
    points = np.vstack([rng.standard_normal((900, 5)) * 0.05,
                        rng.uniform(-10, 10, (100, 5))]).astype(np.float32)
    blob = np.arange(len(points)) < 900
    sizes_in_blob = {}
    for seeding in ("random", "k-means++"):
        labels = landmarks.kmeans(points, 100, np.random.default_rng(1), seeding=seeding)
        assert labels.shape == (1000,) and set(labels) == set(range(labels.max() + 1))
        sizes_in_blob[seeding] = np.bincount(labels)[np.unique(labels[blob])].mean()
    assert sizes_in_blob["k-means++"] > 2 * sizes_in_blob["random"]
    centres = landmarks.kmeans_plus_plus_centres(points, 60, np.random.default_rng(2))
    assert len(np.unique(centres, axis=0)) == 60  # distinct points of the input
    with pytest.raises(ValueError, match="seeding"):
        landmarks.kmeans(points, 10, np.random.default_rng(0), seeding="kmeans++")


def test_landmarks_are_seeded_by_k_means_plus_plus_only_with_few_points_per_landmark():
    few = landmarks.FEW_POINTS_PER_LANDMARK
    assert landmarks.landmark_seeding(few * 4000 - 1, 4000) == "k-means++"  # the CNN run: 3.6
    assert landmarks.landmark_seeding(few * 4000, 4000) == "random"
    assert landmarks.landmark_seeding(38_400, 4000) == "random"  # the SGD runs: 9.6
    # the t search's regime (every landmark laid out) is the same predicate
    assert landmarks.few_points_per_landmark(few * 4000 - 1, 4000)
    assert not landmarks.few_points_per_landmark(few * 4000, 4000)


def test_drop_light_entries_drops_per_row_and_leaves_the_input_alone():
    import scipy.sparse as sp
    dense = np.array([[1.0, 5e-5, 2e-4, 0.0],
                      [0.0, 0.0, 0.0, 0.0],
                      [3e-5, 1e-3, 0.0, 1.0]], dtype=np.float32)
    matrix = sp.csr_matrix(dense)
    kept = landmarks.drop_light_entries(matrix, 1e-4)
    expected = dense.copy()
    expected[0, 1] = expected[2, 0] = 0.0  # below 1e-4 of their row's maximum (1.0)
    np.testing.assert_array_equal(kept.toarray(), expected)
    np.testing.assert_array_equal(matrix.toarray(), dense)
    assert landmarks.drop_light_entries(matrix, 0) is matrix


def test_landmark_operator_stays_stochastic_after_dropping_light_entries():
    # a wide trace (many light interslice entries per row): the operator built from the
    # lighter W is still an exact two-step walk, and close to the one built from all of W
    data = zscore_units(make_trace(n_slices=30, n_units=40, n_trace=8, random_state=1).data)
    kernel = multislice_kernel(data, interslice_knn=6)
    features = landmarks.spectral_features(kernel, 10, np.random.default_rng(0))
    labels = landmarks.cluster_landmarks(features, 200, np.random.default_rng(0))
    full = landmarks.landmark_operator(kernel, labels, drop_below=0)
    light = landmarks.landmark_operator(kernel, labels, drop_below=1e-2)
    assert light.point_to_landmark.nnz < full.point_to_landmark.nnz
    for op in (full, light):
        sqrt_scale = np.sqrt(op.scale)
        walk = op.symmetric / sqrt_scale[:, None] * sqrt_scale[None, :]  # C^-1/2 S C^1/2
        np.testing.assert_allclose(walk.sum(axis=1), 1, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(op.point_to_landmark.sum(axis=1)).ravel(), 1, rtol=1e-5)
    assert np.abs(light.symmetric - full.symmetric).max() < 0.05 * np.abs(full.symmetric).max()


def test_landmark_features_from_a_slice_subsample_keep_the_units_apart():
    # two groups of units with different activation patterns: coordinates from every 3rd
    # slice, spread to all slices, still tell the groups apart at every slice
    rng = np.random.default_rng(0)
    n_slices, n_units, n_trace = 24, 20, 10
    patterns = rng.standard_normal((2, n_trace)) * 3
    group = np.arange(n_units) % 2
    drift = np.cumsum(rng.standard_normal((n_slices, 1, n_trace)) * 0.05, axis=0)
    data = patterns[group][None] + drift + rng.standard_normal((n_slices, n_units, n_trace)) * 0.3
    kernel = multislice_kernel(zscore_units(data), interslice_knn=4)
    whole = landmarks.landmark_features(kernel, 5, np.random.default_rng(0), stride=1)
    np.testing.assert_array_equal(whole, landmarks.spectral_features(kernel, 5, np.random.default_rng(0)))
    sub = landmarks.landmark_features(kernel, 5, np.random.default_rng(0), stride=3)
    assert sub.shape == whole.shape and np.isfinite(sub).all()
    by_point_group = np.tile(group, n_slices)
    # the leading coordinate is the group split, at sampled and unsampled slices alike
    assert abs(np.corrcoef(sub[:, 0], by_point_group)[0, 1]) > 0.99
    unsampled = np.repeat(np.arange(n_slices) % 3 != 0, n_units)
    assert abs(np.corrcoef(sub[unsampled, 0], by_point_group[unsampled])[0, 1]) > 0.99


def test_interpolation_along_histories_is_linear_between_computed_slices(monkeypatch):
    # computed slices keep their values; the others blend their unit's neighbours by distance
    # in slices; slices outside the computed range take the nearest computed one
    rng = np.random.default_rng(5)
    slices = np.array([2, 4, 9])
    values = rng.standard_normal((3, 6, 2)).astype(np.float32)
    got = landmarks.interpolate_along_histories(slices, values, 12)
    assert got.shape == (12, 6, 2) and got.dtype == np.float32
    np.testing.assert_array_equal(got[slices], values)
    np.testing.assert_allclose(got[3], (values[0] + values[1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[6], 0.6 * values[1] + 0.4 * values[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[:2], np.broadcast_to(values[0], (2, 6, 2)))
    np.testing.assert_array_equal(got[10:], np.broadcast_to(values[2], (2, 6, 2)))
    # done a slice at a time (as at millions of points), the same numbers
    monkeypatch.setattr(landmarks, "_INTERPOLATION_CHUNK_BYTES", 1)
    np.testing.assert_array_equal(landmarks.interpolate_along_histories(slices, values, 12), got)


def test_interpolation_along_histories_is_the_same_on_torch():
    torch = pytest.importorskip("torch")
    slices = np.arange(0, 11, 3)
    values = np.random.default_rng(6).standard_normal((len(slices), 5, 3)).astype(np.float32)
    expected = landmarks.interpolate_along_histories(slices, values, 11)
    got = landmarks.interpolate_along_histories(slices, torch.from_numpy(values), 11)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_auto_spectral_stride():
    assert landmarks.auto_spectral_stride(5_000) == 1
    assert landmarks.auto_spectral_stride(115_200) == 2
    assert landmarks.auto_spectral_stride(2_048_000) == 9


@pytest.mark.parametrize("shape", [(120, 70), (70, 120), (90, 90)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_randomized_svd_is_scikit_learns_for_the_same_seed(shape, dtype):
    # written out so a fit need not import scikit-learn (mds.randomized_svd); a seed must still
    # give the picture it gave when scikit-learn's was used
    from sklearn.utils.extmath import randomized_svd as sklearn_randomized_svd

    rng = np.random.default_rng(4)
    matrix = (rng.standard_normal((shape[0], 12)) @ rng.standard_normal((12, shape[1]))).astype(dtype)
    matrix -= matrix.mean(axis=0)
    for seed in (0, 11):
        u, s = mds.randomized_svd(matrix, 3, n_iter=7, seed=seed)
        u_ref, s_ref, _ = sklearn_randomized_svd(matrix, 3, n_iter=7, random_state=seed)
        assert u.shape == (shape[0], 3) and u.dtype == dtype
        np.testing.assert_array_equal(s, s_ref)
        np.testing.assert_array_equal(u, u_ref)
    # and it is an SVD: the leading singular values of the matrix
    np.testing.assert_allclose(s, np.linalg.svd(matrix.astype(np.float64), compute_uv=False)[:3],
                               rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_guttman_pass_with_coincident_points_matches_its_definition():
    # two points of the layout coincide while their targets differ: they pull each other
    # nothing (the diagonal neither), and every number stays finite
    rng = np.random.default_rng(5)
    n = 40
    delta = mds.pairwise_distances(rng.normal(size=(n, 6))).astype(np.float32)
    x = rng.normal(size=(n, 2))
    x[7] = x[3]
    x -= x.mean(axis=0)
    cross, updated = mds._guttman_pass(delta, x, 2)
    d = mds.pairwise_distances(x, center=False)
    ratio = np.divide(delta, d, out=np.zeros_like(d), where=d > 0)
    want = (ratio.sum(axis=1)[:, None] * x - ratio @ x) / n
    assert np.isfinite(updated).all()
    np.testing.assert_allclose(cross, float((delta * d).sum()), rtol=1e-5)
    np.testing.assert_allclose(updated, want, rtol=0, atol=1e-5 * np.abs(want).max())
    weights = mds._reciprocal_into(np.sqrt(delta), np.empty_like(delta))
    np.testing.assert_allclose(weights, np.divide(1, np.sqrt(delta), out=np.zeros_like(delta), where=delta > 0))
