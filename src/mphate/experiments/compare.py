"""The paper's Table 1: how well each method keeps a unit's neighbours, within a slice and over time.

Methods (each gives a 2-D position to every (slice, unit) point of a trace):

* ``mphate``: M-PHATE (this package's estimator).
* ``phate``: PHATE's published method on the *flattened* trace, implemented here (not the
  PHATE package): an alpha-decay kernel over all points (knn = 5, decay = 40, PHATE's
  defaults), landmarks, diffusion time at the entropy knee, the log potential (gamma = 1,
  PHATE's default) and metric MDS, through the same stages M-PHATE uses.
* ``dm``, ``isomap``, ``tsne``: diffusion maps, Isomap and t-SNE on the flattened trace (every
  point's z-scored activation vector a row, no notion of slices).
* ``dm_graph``, ``isomap_graph``, ``tsne_graph``: the same three on the geodesic (shortest-path)
  distances of the multislice graph, i.e. the M-PHATE kernel's edges weighted by the
  Euclidean distance between the z-scored vectors they join.
* ``aligned_umap``: umap-learn's AlignedUMAP, one data set per slice, each unit related to
  itself in the next slice (only when umap-learn is installed).

Isomap and the graph methods need an N x N distance matrix, and t-SNE and AlignedUMAP take many
minutes at full size on 2 cores: when the trace has more than ``max_points`` points they run on an evenly
spaced subsample of slices and units, which the output says. Every method is scored on that same
subsample (a full-size embedding restricted to its points), so the table compares like with
like; full-size methods are also scored on everything.
"""
from __future__ import annotations

import importlib.util
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mphate.embed.flat import SparseKernel, alpha_decay_kernel, knn, phate_flattened  # noqa: F401 (re-exported)
from mphate.experiments import _common as C
from mphate.embed.normalize import zscore_units
from mphate.traces.trace import Trace


_DENSE = "needs all N x N pairwise distances"
_SLOW = "takes many minutes at full size on 2 cores"


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    cap: str | None  # why it runs on the subsample when the trace exceeds max_points

    @property
    def needs_subsample(self) -> bool:
        return self.cap is not None


METHODS = {
    m.name: m
    for m in (
        Method("mphate", "M-PHATE", None),
        Method("phate", "PHATE (flattened)", None),
        Method("dm", "DM (flattened)", None),
        Method("isomap", "Isomap (flattened)", _DENSE),
        Method("tsne", "t-SNE (flattened)", _SLOW),
        Method("dm_graph", "DM (multislice graph)", _DENSE),
        Method("isomap_graph", "Isomap (multislice graph)", _DENSE),
        Method("tsne_graph", "t-SNE (multislice graph)", _DENSE),
        Method("aligned_umap", "AlignedUMAP", _SLOW),
    )
}


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


# ---------------------------------------------------------------------------------------------
# building blocks


def knn_from_distances(D: np.ndarray, k: int):
    """The k nearest other points from a full distance matrix: distances and indices, shape (N, k)."""
    D = np.array(D, dtype=np.float64)
    np.fill_diagonal(D, np.inf)
    k = min(k, len(D) - 1)
    idx = np.argpartition(D, k - 1, axis=1)[:, :k]
    dist = np.take_along_axis(D, idx, axis=1)
    order = np.argsort(dist, axis=1)
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


def diffusion_map(dist: np.ndarray, idx: np.ndarray, n_components: int = 2, *, bandwidth_k: int = 5,
                  alpha: float = 1.0, t: int = 1, random_state=0) -> np.ndarray:
    """Diffusion maps (Coifman & Lafon) on a k-nearest-neighbour graph.

    Self-tuning Gaussian kernel ``exp(-d^2 / (sigma_i sigma_j))`` (``sigma_i``: distance to the
    ``bandwidth_k``-th neighbour) over the given neighbours, symmetrised; density normalisation
    with ``alpha`` (1: the Laplace-Beltrami normalisation); coordinates
    ``lambda_i^t psi_i`` of the leading non-trivial eigenvectors. Each connected component
    contributes one trivial eigenvector; all are projected out.
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import lobpcg

    n, k = idx.shape
    sigma = np.maximum(dist[:, min(bandwidth_k, k) - 1], max(float(dist.mean()) * 1e-6, 1e-300))
    values = np.exp(-(dist**2) / (sigma[:, None] * sigma[idx]))
    K = sp.csr_matrix((values.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    K = K.maximum(K.T) + sp.identity(n)
    q = np.asarray(K.sum(axis=1)).ravel() ** alpha
    K = sp.diags(1 / q) @ K @ sp.diags(1 / q)
    d = np.asarray(K.sum(axis=1)).ravel()
    S = sp.diags(d**-0.5) @ K @ sp.diags(d**-0.5)
    n_comp, labels = connected_components(K, directed=False)
    # each component's trivial eigenvector (eigenvalue 1) is D^1/2 times its indicator: project
    # them all out and find the leading eigenvectors of what is left by LOBPCG. Activation
    # graphs are nearly disconnected (a unit's points over time cluster tightly), so the leading
    # non-trivial eigenvalues sit within 1e-4 of 1, where Lanczos (eigsh) takes many minutes;
    # LOBPCG's block iteration gets the leading subspace in seconds. Capped at 200 iterations,
    # it returns the best approximation it has reached.
    trivial = np.zeros((n, n_comp))
    trivial[np.arange(n), labels] = np.sqrt(d)
    trivial /= np.linalg.norm(trivial, axis=0)
    block = min(n - n_comp - 1, n_components + 4)
    if block < n_components:
        raise ValueError(f"diffusion maps need more points than components ({n} points, {n_comp} components)")
    start = np.random.default_rng(random_state).standard_normal((n, block))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not reaching the requested tolerance"
        vals, vecs = lobpcg(S.tocsr(), start, Y=trivial, largest=True, maxiter=200, tol=1e-6)
    order = np.argsort(vals)[::-1][:n_components]
    psi = vecs[:, order] * (d**-0.5)[:, None]
    return psi * (np.clip(vals[order], 0, None) ** t)[None, :]


def classical_mds(D: np.ndarray, n_components: int = 2, random_state=0) -> np.ndarray:
    """Classical (Torgerson) MDS of a distance matrix: Isomap's last step."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    D2 = np.asarray(D, dtype=np.float64) ** 2
    n = len(D2)

    def matvec(v):
        v = np.ravel(v)
        # B = -1/2 J D2 J without forming it: J v = v - mean(v)
        cv = v - v.mean()
        w = D2 @ cv
        return -0.5 * (w - w.mean())

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(random_state).standard_normal(n)
    vals, vecs = eigsh(op, k=n_components, which="LA", v0=v0, tol=1e-6)
    order = np.argsort(vals)[::-1]
    return vecs[:, order] * np.sqrt(np.maximum(vals[order], 0))[None, :]


def multislice_geodesics(data: np.ndarray, *, interslice_knn: int = 25) -> np.ndarray:
    """Shortest-path distances on the multislice graph, shape (N, N).

    The graph: the M-PHATE kernel's nonzero entries (intraslice knn 2, decay 5, interslice
    Gaussian), each edge weighted by the Euclidean distance between the z-scored activation
    vectors it joins. Points in different components are put at twice the largest finite
    distance.
    """
    from scipy.sparse.csgraph import shortest_path

    from mphate.embed.kernel import multislice_kernel

    z = zscore_units(data)
    kernel = multislice_kernel(z, interslice_knn=min(interslice_knn, data.shape[0] - 1)).to_sparse().tocoo()
    flat = z.reshape(-1, z.shape[2]).astype(np.float64)
    off = kernel.row != kernel.col
    rows, cols = kernel.row[off], kernel.col[off]
    lengths = np.linalg.norm(flat[rows] - flat[cols], axis=1)
    lengths = np.maximum(lengths, 1e-9)  # a zero weight would read as "no edge"
    graph = sp.csr_matrix((lengths, (rows, cols)), shape=kernel.shape)
    D = shortest_path(graph, method="D", directed=False)
    finite = np.isfinite(D)
    if not finite.all():
        D[~finite] = 2 * D[finite].max()
    return D


def aligned_umap(data: np.ndarray, random_state=0) -> np.ndarray:
    from mphate.optional import require

    umap = require("umap", "AlignedUMAP in `mphate compare`")
    z = zscore_units(data).astype(np.float64)
    n_slices, n_units, _ = z.shape
    relation = {u: u for u in range(n_units)}
    numba = require("numba", "AlignedUMAP in `mphate compare`")
    threads = numba.get_num_threads()
    # one numba thread, for the same reason as t-SNE's one OpenMP thread (3-4 times faster
    # on a busy 2-core machine); a fixed random_state makes UMAP serial anyway
    numba.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = umap.AlignedUMAP(n_components=2, n_neighbors=min(15, n_units - 1),
                                     random_state=random_state)
            model.fit(list(z), relations=[relation] * (n_slices - 1))
    finally:
        numba.set_num_threads(threads)
    return np.concatenate([np.asarray(e) for e in model.embeddings_], axis=0)


def _tsne(X, **kwargs) -> np.ndarray:
    """scikit-learn's Barnes-Hut t-SNE (perplexity 30), with one OpenMP thread.

    On a busy 2-core machine its OpenMP barriers made t-SNE of 90 points take 40 s instead of
    half a second; one thread costs at most the second core's share on a quiet machine.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(2, perplexity=min(30, (len(X) - 1) / 3), **kwargs).fit_transform(X)


def embed(method: str, data: np.ndarray, *, random_state=0, n_landmark=None, cache=None) -> np.ndarray:
    """The 2-D embedding of a trace array (n_slices, n_units, n_trace) by one method, slice-major.

    ``cache``: a dict shared between calls on the same data, so that the three graph methods
    compute the geodesic distances once.
    """
    n_slices, n_units, n_trace = data.shape
    if method == "mphate":
        from mphate.embed.estimator import MPHATE

        kwargs = {} if n_landmark is None else {"n_landmark": n_landmark}
        return MPHATE(interslice_knn=min(25, n_slices - 1), random_state=random_state,
                      **kwargs).fit_transform(data)
    if method == "aligned_umap":
        return aligned_umap(data, random_state)
    if method.endswith("_graph"):
        cache = {} if cache is None else cache
        if "geodesics" not in cache:
            start = time.perf_counter()
            cache["geodesics"] = multislice_geodesics(data)
            cache["geodesics_seconds"] = time.perf_counter() - start
        D = cache["geodesics"]
        if method == "isomap_graph":
            return classical_mds(D, 2, random_state)
        if method == "dm_graph":
            dist, idx = knn_from_distances(D, 15)
            return diffusion_map(dist, idx, random_state=random_state)
        return _tsne(D, metric="precomputed", init="random", random_state=random_state)
    X = zscore_units(data).reshape(-1, n_trace).astype(np.float64)
    if method == "phate":
        return phate_flattened(X, n_landmark=2000 if n_landmark is None else n_landmark,
                               random_state=random_state)
    if method == "dm":
        dist, idx = knn(X, 15)
        return diffusion_map(dist, idx, random_state=random_state)
    if method == "isomap":
        from sklearn.manifold import Isomap

        return Isomap(n_neighbors=min(10, len(X) - 1), n_components=2).fit_transform(X)
    if method == "tsne":
        return _tsne(X, init="pca", random_state=random_state)
    raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")


# ---------------------------------------------------------------------------------------------
# the experiment


def subsample(n_slices: int, n_units: int, max_points: int, *, min_slices: int = 81,
              min_units: int = 81):
    """Evenly spaced slices and units with about ``max_points`` points in all.

    Keeps at least ``min_slices`` slices and ``min_units`` units where the trace has them (by
    default 2 * 40 + 1: k = 40 neighbours are then at most half of a unit's points over time,
    or of a slice's units; with only 41, k = 40 would be every other point and score 1 for
    any method), then as many units as fit.
    """
    if n_slices * n_units <= max_points:
        return np.arange(n_slices), np.arange(n_units)
    s = min(n_slices, max(min_slices, max_points // n_units))
    u = min(n_units, max(min_units, max_points // s))
    return C.even_indices(n_slices, s), C.even_indices(n_units, u)


def digits_trace(epochs: int = 300, trace_every: int = 3, seed: int = 0, quick: bool = False) -> Trace:
    """The trace `mphate compare digits` uses: the generalisation experiment's vanilla network
    (64-128-128-128-10, Adam lr 1e-3, batch 256) on the bundled digits, traced every
    ``trace_every`` epochs."""
    from mphate.experiments.generalization import train_generalization

    if quick:
        res = train_generalization("vanilla", epochs=epochs, lr=3e-3, hidden=(16, 16, 16),
                                   trace_every=trace_every, seed=seed, n_per_class=3)
    else:
        res = train_generalization("vanilla", epochs=epochs, lr=1e-3, trace_every=trace_every, seed=seed)
    return res["trace"]


def run(trace, out, *, methods=None, ks=(10, 40), max_points: int = 6000, n_landmark=None,
        random_state: int = 0, quiet: bool = False) -> dict:
    """Embed ``trace`` with every method, score them, write table and figure into ``out``.

    Parameters
    ----------
    trace : Trace, array or path
    methods : list of str, optional
        Default: all of :data:`METHODS` (AlignedUMAP only when umap-learn is installed).
    ks : neighbourhood sizes (the paper: 10 and 40); a k is scored only where both the
        subsample's units and slices exceed it.
    max_points : int
        Size cap of the methods that need all pairwise distances.
    n_landmark : int, optional
        Landmarks of M-PHATE and PHATE (default: each one's own default, 4000 and 2000).

    Returns
    -------
    dict with "rows" (long format: method, scope, space, k, intraslice, interslice, ...),
    "table" (wide, the common subsample), "skipped", "subsample", "files", "seconds".
    """
    from mphate.traces.io import as_trace

    total = C.Timer()
    out = C.output_dir(out)
    trace = as_trace(trace)
    methods, skipped = _methods_to_run(methods, quiet)
    plan = _Plan.of(trace, methods, ks, max_points)
    C.log(f"compare: {plan.note}", quiet)
    for k in ks:
        if k not in plan.ks:
            C.log(f"compare: k = {k} cannot be scored: it needs more than {k} slices and units in the "
                  f"scored points ({len(plan.slices)} x {len(plan.units)})", quiet)

    rows, table, embeddings = [], [], {}
    cache = {}  # the subsample's geodesic distances, computed once for the three graph methods
    for m in methods:
        done = _run_method(m, plan, ks, out, cache, n_landmark=n_landmark, random_state=random_state,
                           quiet=quiet)
        if isinstance(done, str):
            skipped[m] = done
            continue
        emb, points, method_rows, wide = done
        embeddings[m] = (emb, points)
        rows += method_rows
        table.append(wide)
    return _write_outputs(out, plan, rows, table, embeddings, skipped, total, quiet)


def _methods_to_run(methods, quiet):
    """The methods asked for (default all), less AlignedUMAP without umap-learn: the list and
    ``{method: why}`` of those skipped."""
    if methods is None:
        methods = list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    skipped = {}
    if "aligned_umap" in methods and not umap_available():
        skipped["aligned_umap"] = "umap-learn is not installed (pip install \"mphate[compare]\")"
        methods = [m for m in methods if m != "aligned_umap"]
        C.log("compare: skipping AlignedUMAP: umap-learn is not installed (pip install \"mphate[compare]\")", quiet)
    return methods, skipped


@dataclass
class _Plan:
    """The trace, the common subsample every method is scored on, and the scorable ks."""

    trace: Trace
    slices: np.ndarray
    units: np.ndarray
    ks: list
    note: str

    @property
    def is_sub(self) -> bool:
        return len(self.slices) < self.trace.n_slices or len(self.units) < self.trace.n_units

    @cached_property
    def sub_trace(self) -> Trace:
        return C.slice_trace(self.trace, self.slices, self.units)

    @property
    def sub_rows(self) -> np.ndarray:
        """The full embedding's rows of the subsample's points."""
        return (self.slices[:, None] * self.trace.n_units + self.units[None, :]).ravel()

    @classmethod
    def of(cls, trace, methods, ks, max_points):
        n_slices, n_units = trace.n_slices, trace.n_units
        need = 2 * max(ks) + 1 if ks else 3
        sub_s, sub_u = subsample(n_slices, n_units, max_points, min_slices=need, min_units=need)
        is_sub = len(sub_s) < n_slices or len(sub_u) < n_units
        capped = "; ".join(f"{METHODS[m].label} {METHODS[m].cap}" for m in methods if METHODS[m].needs_subsample)
        note = (f"the trace has {n_slices} slices x {n_units} units = {n_slices * n_units} points; "
                + (capped + f": these run on a subsample of {len(sub_s)} evenly spaced slices x {len(sub_u)} "
                   f"evenly spaced units = {len(sub_s) * len(sub_u)} points (--max-points {max_points}); "
                   "every method is scored on that subsample" if is_sub else "every method runs on all points"))
        valid_ks = [k for k in ks if k < len(sub_s) and k < len(sub_u)]
        return cls(trace, sub_s, sub_u, valid_ks, note)


def _run_method(m, plan, ks, out, cache, *, n_landmark, random_state, quiet):
    """Embed and score one method: ``(embedding, embedded trace, long rows, wide row)``, or why it
    failed (a string)."""
    method = METHODS[m]
    on_sub = method.needs_subsample and plan.is_sub
    points = plan.sub_trace if on_sub else plan.trace
    C.log(f"compare: {method.label} on {points.n_slices} x {points.n_units} = "
          f"{points.n_slices * points.n_units} points...", quiet)
    start = time.perf_counter()
    reused = m.endswith("_graph") and "geodesics" in cache
    try:
        emb = embed(m, np.asarray(points.data), random_state=random_state, n_landmark=n_landmark, cache=cache)
    except (MemoryError, np.linalg.LinAlgError, ArithmeticError) as exc:
        C.log(f"compare: {method.label} failed ({type(exc).__name__}: {exc}); left out", quiet)
        return f"failed: {type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    if reused:
        # each graph method's time as if run alone: the shared geodesics count for all three
        seconds += cache["geodesics_seconds"]
    emb = np.asarray(emb, dtype=np.float64)
    np.save(out / f"embedding_{m}.npy", emb.astype(np.float32))
    sub_trace = plan.sub_trace
    scopes = [("subsample", emb if on_sub or not plan.is_sub else emb[plan.sub_rows], sub_trace, plan.ks)]
    if not on_sub and plan.is_sub:
        scopes.append(("all", emb, plan.trace, [k for k in ks if k < plan.trace.n_slices and k < plan.trace.n_units]))
    wide = {"method": method.label, "seconds": seconds, "points": emb.shape[0],
            "subsampled": f"yes: {method.cap}" if on_sub else "no"}
    rows = _score(m, scopes, wide, {"seconds": seconds, "embedded_points": emb.shape[0],
                                    "embedded_slices": points.n_slices, "embedded_units": points.n_units})
    C.log(f"compare: {method.label}: {seconds:.1f} s; " + ", ".join(
        f"{key} {wide[key]:.3f}" for key in wide if key.startswith(("intra", "inter")) and "raw" not in key), quiet)
    return emb, points, rows, wide


def _score(m, scopes, wide, extra) -> list[dict]:
    """Neighbourhood preservation of one method in each scope, reference space and k: the long
    rows; the subsample's scores also go into ``wide`` (``intra10``, ``inter10_raw``, ...)."""
    from mphate.metrics import neighbor_preservation

    rows = []
    for scope, e, tr, scope_ks in scopes:
        for space in ("normalized", "raw"):
            for k in scope_ks:
                score = neighbor_preservation(e, tr, k=k, space=space)
                rows.append({"method": m, "label": METHODS[m].label, "scope": scope, "space": space, "k": k,
                             "intraslice": score["intraslice"], "interslice": score["interslice"], **extra})
                if scope == "subsample":
                    tag = "" if space == "normalized" else "_raw"
                    wide[f"intra{k}{tag}"] = score["intraslice"]
                    wide[f"inter{k}{tag}"] = score["interslice"]
    return rows


def _write_outputs(out, plan, rows, table, embeddings, skipped, total, quiet) -> dict:
    """Tables, figure and summary of the comparison; :func:`run`'s result."""
    files = {}
    files["scores"] = C.write_csv(out / "compare_scores.csv", rows)
    columns = ["method", "seconds", "points", "subsampled"] + [
        f"{kind}{k}{tag}" for tag in ("", "_raw") for k in plan.ks for kind in ("intra", "inter")]
    files["table"] = C.write_csv(out / "compare_table.csv", table, columns)
    if embeddings:
        files["figure"] = _figure(out / "compare.png", embeddings)
    trace = plan.trace
    summary = {"experiment": "compare", "n_slices": trace.n_slices, "n_units": trace.n_units,
               "n_trace": np.asarray(trace.data).shape[2],
               "subsample": {"slices": plan.slices, "units": plan.units, "note": plan.note}, "ks": plan.ks,
               "skipped": skipped, "total_seconds": total.seconds}
    files["summary"] = C.write_json(out / "compare_summary.json", summary)
    for space, tag in (("normalized", ""), ("raw", "_raw")):
        cols = ["method", "seconds"] + [f"{kind}{k}{tag}" for k in plan.ks for kind in ("intra", "inter")]
        C.log(f"\nneighbourhood preservation, reference space: {space} "
              f"({len(plan.slices)} slices x {len(plan.units)} units)\n" + C.markdown_table(table, cols), quiet)
    for m, why in skipped.items():
        C.log(f"skipped {METHODS[m].label}: {why}", quiet)
    C.log(f"compare: total {total.seconds:.0f} s", quiet)
    return {"rows": rows, "table": table, "skipped": skipped, "note": plan.note,
            "subsample": (plan.slices, plan.units), "files": {k: Path(v) for k, v in files.items()},
            "seconds": total.seconds, "summary": summary}


def _figure(path, embeddings):
    """One column per method; rows coloured by epoch, layer and most-active class (where known)."""
    from mphate.plot import available_colorings, coloring, scatter

    any_trace = next(iter(embeddings.values()))[1]
    names = [c for c in ("epoch", "layer", "class") if c in available_colorings(any_trace)]
    ncols = len(embeddings)
    fig = C.new_figure(2.3 * ncols + 1.2, 2.2 * len(names) + 0.3)
    axes = fig.subplots(len(names), ncols, squeeze=False)
    for j, (m, (emb, tr)) in enumerate(embeddings.items()):
        for i, name in enumerate(names):
            ax = axes[i, j]
            last = j == ncols - 1
            scatter(emb, coloring(tr, name), ax=ax, legend=last, colorbar=last, s=0.8, alpha=0.5)
            ax.set_xlabel("")
            ax.set_ylabel(name if j == 0 else "")
            if i == 0:
                ax.set_title(METHODS[m].label, fontsize=9)
    return C.save(fig, path, dpi=90)
