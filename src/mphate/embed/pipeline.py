"""The M-PHATE pipeline: the stages in order, the state they hand on, and the caching rule.

::

    trace (n_slices, n_units, n_trace)
      -> KernelStage          z-score, multislice kernel K                 (N, N) sparse
      -> LandmarkStage        spectral coordinates, k-means landmarks,
                              landmark operator P_L = P_mn P_nm           (L, L) dense
      -> SpectrumStage        eigendecomposition of P_L's symmetric form  (L,), (L, L)
      -> DiffusionTimeStage   von Neumann entropy; t: the candidates'       (t_max,), int
                              scored pictures ("auto"), the knee, or fixed
      -> EmbeddingStage       potential of P_L^t, classical MDS, SMACOF,
                              landmarks -> points                          (N, n_components)

A flattened baseline swaps the first stage (:class:`mphate.embed.flat.FlatKernelStage`) and
runs the same others.

Caching rule (the one place it is stated): every stage has a **key**, its own parameters
(plus the seed, for stages that draw random numbers, and the backend, for the stages
that run on it) appended to the key of the stage before it; the first stage's key starts with a
fingerprint of the trace. :func:`run_pipeline` skips a stage whose key equals the key its
outputs were computed with, and reruns it and every stage after it otherwise. So, on refit
with the same trace:

==========================================================  ==============================
parameter changed                                           stages rerun
==========================================================  ==============================
the trace, intraslice_knn, interslice_knn, decay, normalize  all
device                                                      all
n_landmark, n_svd, spectral_stride, random_state            landmarks onwards
t, t_max                                                    diffusion time onwards
gamma, n_components, mds, mds_max_iter, mds_tol             embedding (diffusion time onwards
                                                            under t="auto", which scores
                                                            pictures drawn with them)
n_jobs, verbose                                             none (resources, not inputs)
==========================================================  ==============================

Landmark layouts have a cache of their own (``PipelineState.layouts``): a rerun of the
diffusion time or the embedding reuses every layout already drawn along the chain of candidate
times while the spectrum, the picture's parameters, ``t_max``, the layout seed and the backend
are unchanged (:func:`continued_layout`).

Resources (threads, one random generator per stage, the backend, the log) come in a
:class:`Resources` object, never from global state.
"""
from __future__ import annotations

import functools
import hashlib
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from mphate import runtime
from mphate.embed import diffusion, kernel as kernel_mod, landmarks, t_search
from mphate.embed.backend import NUMPY, NumpyBackend
from mphate.embed.normalize import check_points_differ, zscore_units


# ---------------------------------------------------------------------------------- plumbing
class StageLog:
    """Timed log lines on stderr, one per step; silent when ``verbose`` is 0.

    ``synchronize``: called at the end of every step before its time is taken (the backend's
    :meth:`synchronize`): a GPU runs its work asynchronously, and without it a step's time would
    land in whichever later step first waits for the device.
    """

    def __init__(self, verbose: int = 0, synchronize=None):
        self.verbose = verbose
        self.synchronize = synchronize
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        start, cpu_start = time.perf_counter(), time.process_time()
        if self.verbose >= 2:
            print(f"[mphate] {name}...", file=sys.stderr, flush=True)
        yield
        if self.synchronize is not None:
            self.synchronize()
        runtime.release_free_memory()
        elapsed = time.perf_counter() - start
        self.timings[name] = elapsed
        if self.verbose:
            cpu = ""
            if self.verbose >= 2:
                peak = runtime.peak_memory_mb()
                memory = "" if peak is None else f", peak RSS {peak:.0f} MB"
                cpu = f" (cpu {time.process_time() - cpu_start:.2f} s{memory})"
            print(f"[mphate] {name}: {elapsed:.2f} s{cpu}", file=sys.stderr, flush=True)

    def note(self, message: str):
        if self.verbose:
            print(f"[mphate] {message}", file=sys.stderr, flush=True)


@dataclass
class Resources:
    """What stages may use, passed in explicitly.

    Attributes
    ----------
    n_threads : int
        Worker threads (and BLAS threads) for every stage.
    rngs : dict of str -> numpy.random.Generator
        One independent generator per stage name (:func:`mphate.runtime.stage_generators`).
    backend : NumpyBackend or TorchBackend
        Array library of the stages after the kernel (:mod:`mphate.embed.backend`).
    log : StageLog

    One fit's resources: the layout seed (:meth:`layout_seed`) is drawn on first use and
    kept for the rest of the fit.
    """

    n_threads: int = 1
    rngs: dict = field(default_factory=dict)
    backend: NumpyBackend = NUMPY
    log: StageLog = field(default_factory=StageLog)
    _layout_seed: int | None = field(default=None, init=False, repr=False)

    def rng(self, stage_name: str) -> np.random.Generator:
        return self.rngs[stage_name]

    def layout_seed(self) -> int:
        """The seed of every landmark layout's classical-MDS start in this fit: the first draw
        of the embedding stage's generator, made once, whichever stage lays out first (the t
        search, or the embedding at a given t), so both draw the same pictures."""
        if self._layout_seed is None:
            self._layout_seed = int(self.rng("embedding").integers(2**31 - 1))
        return self._layout_seed


@dataclass
class PipelineState:
    """Everything the stages hand on, and the key each output was computed with.

    Attributes
    ----------
    data : ndarray, shape (n_slices, n_units, n_trace), or None
        The checked trace; dropped once the kernel is built.
    fingerprint : str
        Digest of ``data`` (the first stage's key starts with it).
    kernel : Kernel
        (N, N) affinities.
    operator : LandmarkOperator
        ``labels`` (N,), ``point_to_landmark`` (N, L), ``scale`` (L,).
    spectrum : SpectralDecomposition
    entropy : ndarray, shape (t_max,)
    t_candidates : list of int
    t_scores : dict of int -> tuple of 4 (float or None)
        t="auto": each candidate t's picture's (intraslice k10, interslice k10, intraslice k40,
        interslice k40) preservation on the scored subsample.
    layouts : dict of int -> ndarray of shape (L, n_components)
        Landmark layouts drawn so far along the chain of candidate times
        (:func:`continued_layout`): the t search's pictures, and a given t's with the
        candidates above it; reused while ``layouts_key`` holds.
    layouts_key : tuple
        What ``layouts`` were drawn from: the spectrum's key, the picture's parameters,
        ``t_max``, the layout seed and the backend.
    features : ndarray, shape (n_slices, n_units, n_features), or None
        What the kernel was built from, kept for t="auto"'s scores (the lean kernel holds the
        same array; None for kernels without slices).
    t : int
    landmark_embedding : ndarray, shape (L, n_components)
    embedding : ndarray, shape (N, n_components), float64
    keys : dict of str -> tuple
        Stage name -> the key its outputs above were computed with.
    """

    data: np.ndarray | None = None
    fingerprint: str = ""
    kernel: object = None
    operator: object = None
    spectrum: object = None
    entropy: np.ndarray | None = None
    t_candidates: list = field(default_factory=list)
    t_scores: dict = field(default_factory=dict)
    layouts: dict = field(default_factory=dict)
    layouts_key: tuple = ()
    features: np.ndarray | None = None
    t: int | None = None
    landmark_embedding: np.ndarray | None = None
    embedding: np.ndarray | None = None
    keys: dict = field(default_factory=dict)


class Stage:
    """One step of the pipeline: ``params`` in, outputs written to the state.

    Subclasses set ``name``, ``random`` (draws random numbers: the seed joins the key) and
    ``on_backend`` (runs on the backend: the backend joins the key), and implement :meth:`run`.
    """

    name = "stage"
    random = False
    on_backend = False

    def __init__(self, **params):
        self.params = params

    def own_key(self, seed, backend) -> tuple:
        key = (self.name, tuple(sorted((k, _hashable(v)) for k, v in self.params.items())))
        if self.random:
            key += (("seed", seed),)
        if self.on_backend:
            key += (("backend", str(backend)),)
        return key

    def run(self, state: PipelineState, res: Resources) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def run_pipeline(stages, state: PipelineState, res: Resources, seed=None) -> PipelineState:
    """Run ``stages`` in order on ``state``, skipping those whose key is unchanged.

    ``seed`` identifies the random state for the keys (:func:`mphate.runtime.seed_key`).
    Once one stage reruns, every later stage reruns too.
    """
    stages = list(stages)
    key: tuple = (state.fingerprint,)
    stale = False
    for stage in stages:
        key = key + stage.own_key(seed, res.backend)
        if not stale and state.keys.get(stage.name) == key:
            res.log.note(f"{stage.name} unchanged: reusing it")
            continue
        if not stale:  # this stage and every later one: their outputs are about to be replaced
            for later in stages[stages.index(stage):]:
                state.keys.pop(later.name, None)
        stale = True
        with runtime.blas_threads(res.n_threads):
            stage.run(state, res)
        state.keys[stage.name] = key
    for stage_name in list(state.keys):  # outputs of stages not in this pipeline are stale
        if stage_name not in {stage.name for stage in stages}:
            del state.keys[stage_name]
    return state


def fingerprint(data: np.ndarray) -> str:
    """A digest of an array's shape, dtype and bytes."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str((data.shape, data.dtype.str)).encode())
    digest.update(np.ascontiguousarray(data).view(np.uint8).data)
    return digest.hexdigest()


def _hashable(value):
    return value if isinstance(value, (int, float, str, bool, type(None), tuple)) else repr(value)


# ---------------------------------------------------------------------------------- the stages
class KernelStage(Stage):
    """Z-score each (slice, unit) vector, then build the multislice kernel; a trace whose
    vectors are all the same is refused (:func:`mphate.embed.normalize.check_points_differ`).

    Params: ``intraslice_knn``, ``interslice_knn``, ``decay``, ``normalize``, ``store_blocks``
    (see :func:`mphate.embed.kernel.multislice_kernel`). A lean kernel (the features and its
    bandwidth) gets its bandwidth from the backend: that pass over every unit's history is all
    the work a lean kernel's stage does. Drops ``state.data`` afterwards: a float32 copy of a
    float16 or integer trace is no longer needed.
    """

    name = "kernel"
    on_backend = True  # a lean kernel's bandwidth is computed on it

    def run(self, state, res):
        p = self.params
        with res.log.step("kernel"):
            features = zscore_units(state.data) if p["normalize"] else state.data.astype(np.float32)
            check_points_differ(features, normalized=p["normalize"])
            n_slices, n_units, _ = features.shape
            store = p["store_blocks"]
            if store is None:
                store = kernel_mod.stores_blocks(n_slices, n_units)
            eps = None if store else res.backend.interslice_bandwidth(features, p["interslice_knn"],
                                                                      n_threads=res.n_threads)
            state.kernel = kernel_mod.multislice_kernel(
                features, intraslice_knn=p["intraslice_knn"], interslice_knn=p["interslice_knn"],
                decay=p["decay"], store_blocks=store, interslice_eps=eps, n_threads=res.n_threads,
            )
        state.features = features
        state.data = None


class LandmarkStage(Stage):
    """Group the points into landmarks and build the landmark diffusion operator.

    Params: ``n_landmark`` (None, or >= N: every point its own landmark), ``n_svd`` (spectral
    coordinates clustered), ``stride`` (slice stride of the spectral step, an int; 1 for
    kernels without slices). The k-means starts from k-means++ seeding when there are few
    points per landmark (:func:`mphate.embed.landmarks.landmark_seeding`).
    """

    name = "landmarks"
    random = True
    on_backend = True  # the products with the kernel run on it

    def run(self, state, res):
        p, kernel, backend = self.params, state.kernel, res.backend
        kernel.n_threads = res.n_threads  # a cached kernel works on this fit's threads
        if p["n_landmark"] is None or kernel.shape[0] <= p["n_landmark"]:
            with res.log.step("diffusion operator (all points)"):
                state.operator = landmarks.exact_operator(kernel)
            return
        rng = res.rng(self.name)
        with res.log.step("spectral coordinates"):
            # made once for both kernel steps (a GPU copies or builds the kernel here)
            products_kernel = backend.landmark_kernel(kernel)
            coords = backend.landmark_features(products_kernel, p["n_svd"], rng, stride=p["stride"],
                                               n_threads=res.n_threads)
        seeding = landmarks.landmark_seeding(kernel.shape[0], p["n_landmark"])
        with res.log.step("landmark clustering"):
            labels = backend.cluster_landmarks(coords, p["n_landmark"], rng, n_threads=res.n_threads,
                                               seeding=seeding)
            del coords
        with res.log.step("landmark operator"):
            state.operator = backend.landmark_operator(products_kernel, labels, n_threads=res.n_threads)
            del products_kernel


class SpectrumStage(Stage):
    """Eigendecompose the landmark operator (its symmetric conjugate, freed afterwards)."""

    name = "spectrum"
    on_backend = True

    def run(self, state, res):
        operator = state.operator
        with res.log.step("eigendecomposition"):
            symmetric = operator.symmetric
            if symmetric is None:  # freed after an earlier fit (on another device): rebuild it
                symmetric = state.spectrum.symmetric()
            state.spectrum = None
            state.spectrum = res.backend.spectral_decomposition(symmetric, operator.scale)
            operator.symmetric = symmetric = None  # the spectrum replaces it


class DiffusionTimeStage(Stage):
    """The von Neumann entropy of ``P^t`` for t = 1..t_max and the diffusion time.

    Params: ``t`` ("auto", "knee" or a positive int), ``t_max``; for "auto" also the
    embedding's ``gamma``, ``n_components``, ``mds``, ``mds_max_iter``, ``mds_tol``, since it
    scores candidate times by the pictures they give (:mod:`mphate.embed.t_search`). "knee" is
    the knee of the entropy curve (PHATE's rule).
    """

    name = "diffusion time"
    random = True
    on_backend = True

    def run(self, state, res):
        p = self.params
        with res.log.step("diffusion time"):
            state.entropy = diffusion.von_neumann_entropy(state.spectrum.eigenvalues, p["t_max"])
            state.t_candidates = diffusion.t_candidates(state.entropy)
            state.t_scores = {}
            searching = p["t"] == "auto" and state.features is not None
            if searching:
                state.t, state.t_scores = self._search(state, res)
        if searching:
            detail = ", ".join(f"{t}: " + "/".join("-" if v is None else f"{v:.3f}" for v in values)
                               for t, values in sorted(state.t_scores.items()))
            res.log.note(f"t = {state.t} (intraslice/interslice preservation at k = 10, then k = 40: {detail})")
            return
        if p["t"] not in ("auto", "knee"):
            state.t = int(p["t"])
        else:
            state.t = state.t_candidates[0]  # the best knee: what select_t returns
            res.log.note(f"t = {state.t} (knee of the von Neumann entropy)")
            if len(state.t_candidates) > 1:
                warnings.warn(diffusion.ambiguous_knee_message(state.t_candidates),
                              diffusion.AmbiguousKneeWarning, stacklevel=runtime.caller_stacklevel())
        limit = diffusion.mixing_limit(state.spectrum.eigenvalues)
        if limit is not None and state.t > limit:
            warnings.warn(diffusion.mixed_message(state.t, limit, state.spectrum.eigenvalues),
                          diffusion.MixedDiffusionWarning, stacklevel=runtime.caller_stacklevel())

    def _search(self, state, res):
        """t="auto": the fit's picture at every candidate t, largest first, each continued from
        the one before it (:func:`continued_layout`); :func:`mphate.embed.t_search.choose_t`
        decides.

        Returns (t, {t: (intra k10, inter k10, intra k40, inter k40)}).
        """
        p, backend, operator = self.params, res.backend, state.operator
        n_slices, n_units = state.features.shape[:2]
        knn = functools.partial(backend.nearest_neighbors, n_threads=res.n_threads)
        sample = t_search.scoring_sample(state.features, res.rng(self.name), knn=knn)
        scores = {}
        for t in t_search.candidate_times(search_ceiling(state.spectrum, p["t_max"])):
            layout = continued_layout(state, res, t, p)
            scores[t] = t_search.preservation_score(operator.point_to_landmark @ layout, sample,
                                                    n_slices, n_units, knn=knn)
        # the winner's layout is the fit's: the embedding stage finds it among state.layouts
        return t_search.choose_t(scores), scores


def search_ceiling(spectrum, t_max: int | None) -> int | None:
    """The largest time the t search lays out: ``t_max``, or less where ``P^t`` mixes before
    it (:func:`mphate.embed.diffusion.mixing_limit`), since a mixed potential's picture is
    rounding noise that would score by chance."""
    if t_max is None:
        return None
    limit = diffusion.mixing_limit(spectrum.eigenvalues)
    return t_max if limit is None else min(t_max, limit)  # limit >= 1


def layout_chain(t: int, p: dict, ceiling: int | None = None) -> list[int]:
    """The times laid out to reach ``t``: the candidates of the t search above it (largest
    first, capped at ``ceiling``, by default ``p["t_max"]``; see :func:`search_ceiling`), then
    ``t``. Just ``t`` for classical MDS (no SMACOF to start) or ``t_max`` None (a
    classical-MDS start only, as PHATE's published method)."""
    if p["t_max"] is None or p["mds"] != "metric":
        return [int(t)]
    ceiling = p["t_max"] if ceiling is None else ceiling
    return [c for c in t_search.candidate_times(ceiling) if c > t] + [int(t)]


def continued_layout(state, res, t, p, log=None):
    """The landmarks' layout at diffusion time ``t``, continued along :func:`layout_chain`.

    The first time of the chain is laid out from classical MDS; every later one by SMACOF
    from its own classical-MDS start and from the layout before it, keeping the lower stress
    (:func:`landmark_layout`). So a given t draws the very picture the t search drew at that
    t, and neither lands in the poorer minimum a classical start alone can lead into at small
    t (docs/algorithm.md, "Layouts continued along t"). Layouts already in ``state.layouts``
    (same spectrum, parameters, seed, backend) are reused, so the chain costs only its new
    steps.

    Parameters
    ----------
    state : PipelineState (``spectrum`` set; ``layouts`` read and extended)
    res : Resources (the layout seed, threads, backend)
    t : int
    p : dict with gamma, n_components, mds, mds_max_iter, mds_tol, t_max
    log : StageLog or None (timed steps of each new layout)

    Returns
    -------
    ndarray, shape (L, n_components)
    """
    layouts, seed = valid_layouts(state, res, p), res.layout_seed()
    previous = None
    for step in layout_chain(t, p, search_ceiling(state.spectrum, p["t_max"])):
        if step not in layouts:
            layouts[step] = landmark_layout(state.spectrum, step, p, res.backend, np.random.default_rng(seed),
                                            res.n_threads, log=log, start=previous)
        previous = layouts[step]
    return previous


def valid_layouts(state, res, p) -> dict:
    """``state.layouts``, emptied first when they were drawn from another spectrum, picture,
    ``t_max``, layout seed or backend than this fit's."""
    picture = tuple(sorted((k, p[k]) for k in ("gamma", "n_components", "mds", "mds_max_iter", "mds_tol")))
    key = (state.keys.get("spectrum"), picture, p["t_max"], res.layout_seed(), str(res.backend))
    if state.layouts_key != key:
        state.layouts, state.layouts_key = {}, key
    return state.layouts


def centred_potential(spectrum, t, gamma, backend):
    """The potential of ``P^t`` with centred columns, shape (L, L), on the backend.

    Centred once: distances and PCA ignore it, and later steps need no copy.
    """
    return backend.center_columns(backend.potential(spectrum.power(t), gamma))


def landmark_layout(spectrum, t, p, backend, rng, n_threads, log=None, start=None):
    """The landmarks' layout at diffusion time t: potential, classical MDS, SMACOF.

    Parameters
    ----------
    spectrum : the operator's spectral decomposition (``P^t`` from it)
    p : dict with gamma, n_components, mds, mds_max_iter, mds_tol
    rng : numpy.random.Generator, for the classical-MDS start
    log : StageLog or None (None: silent, no timings)
    start : ndarray, shape (L, n_components), or None
        Another start for SMACOF (the t search's layout of the next larger t): SMACOF runs
        from classical MDS and from it, and keeps the lower stress
        (:func:`mphate.embed.mds.least_stress`).

    Returns
    -------
    ndarray, shape (L, n_components)
    """
    log = log or StageLog(0)
    with log.step("potential"):
        potential = centred_potential(spectrum, t, p["gamma"], backend)
    with log.step("classical MDS"):
        # a randomized SVD whose test matrix comes from the same seed on every backend
        init = backend.classical_mds(potential, p["n_components"], rng)
    if p["mds"] != "metric":
        return init
    with log.step("metric MDS"):
        distances = backend.pairwise_distances(potential)
        del potential  # the largest array alive; SMACOF needs only distances
        starts = init if start is None else [init, start]
        layout, n_iter = backend.smacof(distances, starts, max_iter=p["mds_max_iter"], tol=p["mds_tol"],
                                        n_threads=n_threads)
        log.note(f"SMACOF: {n_iter} iterations")
    return layout


class EmbeddingStage(Stage):
    """The landmarks' layout at the fit's t (:func:`continued_layout`: potential of ``P^t``,
    classical MDS, SMACOF, continued from the candidate times above t), then landmarks to
    points.

    Params: ``gamma``, ``n_components``, ``mds`` ("metric" or "classic"), ``mds_max_iter``,
    ``mds_tol``, ``t_max`` (where the chain of layouts starts; None: no chain).
    """

    name = "embedding"
    random = True
    on_backend = True

    def run(self, state, res):
        chain = layout_chain(state.t, self.params, search_ceiling(state.spectrum, self.params["t_max"]))
        drawn = state.t in valid_layouts(state, res, self.params)
        state.landmark_embedding = continued_layout(state, res, state.t, self.params, res.log)
        if drawn:  # t="auto" drew this very layout to choose t, or an earlier fit drew it
            res.log.note(f"landmark layout at t = {state.t}: drawn already")
        elif len(chain) > 1:
            res.log.note(f"landmark layout at t = {state.t}: continued along t = {', '.join(map(str, chain))}")
        with res.log.step("map landmarks to points"):
            embedding = state.operator.point_to_landmark @ state.landmark_embedding.astype(np.float64)
        state.embedding = np.asarray(embedding, dtype=np.float64)


#: stage names in pipeline order (the generators of :class:`Resources` are keyed by them)
STAGE_NAMES = ("kernel", "landmarks", "spectrum", "diffusion time", "embedding")
