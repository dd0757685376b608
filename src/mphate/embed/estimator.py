"""The M-PHATE estimator (scikit-learn API)."""
from __future__ import annotations

import hashlib
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from mphate.embed import diffusion, kernel as kernel_mod, landmarks, mds
from mphate import runtime
from mphate.traces.validation import check_sizes, check_trace_array
from mphate.embed.normalize import zscore_units


class _StageLog:
    """Timed log lines on stderr, one per pipeline stage; silent when verbose is 0."""

    def __init__(self, verbose: int):
        self.verbose = verbose
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start, cpu_start = time.perf_counter(), time.process_time()
        if self.verbose >= 2:
            print(f"[mphate] {name}...", file=sys.stderr, flush=True)
        yield
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


class MPHATE(BaseEstimator):
    """Multislice PHATE: embed every hidden unit at every moment of training.

    Parameters
    ----------
    n_components : int, default 2
        Dimensions of the embedding (2 or 3 for pictures; any >= 1 works).
    intraslice_knn : int, default 2
        k for the adaptive bandwidth of the kernel between units of one slice.
    interslice_knn : int, default 25
        k for the single bandwidth of the kernel between one unit's slices.
    decay : float, default 5
        Alpha of the intraslice alpha-decay kernel.
    t : int or "auto", default "auto"
        Diffusion time; "auto" picks the knee of the von Neumann entropy.
    gamma : float in [-1, 1], default 0
        Potential: 0 is the square-root potential (M-PHATE's default), 1 the log potential.
    normalize : bool, default True
        Z-score each (slice, unit) activation vector across the trace inputs.
    n_landmark : int or None, default 4000
        Landmarks the diffusion is compressed to; None or >= N runs on all points.
    n_svd : int, default 100
        Spectral coordinates used to cluster points into landmarks.
    spectral_stride : int or "auto", default "auto"
        Compute those spectral coordinates on the subgraph of every ``spectral_stride``-th
        slice, then give every point the interslice-kernel weighted average of its unit's
        coordinates at those slices (the landmark operator itself always uses the whole
        kernel). "auto" is 1 (the whole graph) below 20,000 points and otherwise
        ``max(2, ceil(N / 250,000))``, at most ``n_slices // 2``. On a real 300-slice trace,
        stride 2 preserved neighbourhoods better than the whole graph and took half the
        time (docs/algorithm.md).
    mds : {"metric", "classic"}, default "metric"
    mds_max_iter : int, default 300
    mds_tol : float, default 1e-3
        SMACOF stops when the stress falls by less than this fraction in an iteration.
    t_max : int, default 100
        Largest t considered by t="auto".
    random_state : int, RandomState or None
    n_jobs : int or None, default None
        Threads, for the chunked stages and the linear algebra alike; -1 uses all cores;
        None uses one thread for small traces (under 20,000 points) and otherwise as many
        threads as there are idle cores (measured over 50 ms at the start of the fit), since
        BLAS threads competing for busy cores are slower than one.
    verbose : int, default 0
        1 prints one timed line per stage to stderr; 2 adds CPU times.

    Attributes
    ----------
    embedding_ : ndarray, shape (n_slices * n_units, n_components)
        Slice-major: row ``slice * n_units + unit``.
    kernel_ : scipy.sparse.csr_matrix, shape (N, N)
        The multislice kernel, assembled on first access: about 12 bytes per non-zero, so
        gigabytes for millions of points with wide layers (a real 1,000 x 2,048 trace has
        200-350 intraslice non-zeros a point, plus the interslice ones); use
        ``multislice_kernel_`` there.
    multislice_kernel_ : MultisliceKernel
        The kernel in its structured form (lean, features only, when the spectral step runs
        on a slice subsample or the interslice blocks would exceed 2 GB).
    interslice_eps_ : float
        The global interslice bandwidth.
    landmark_labels_ : ndarray, shape (N,)
        Landmark of each point (each point its own when no landmarks are used).
    n_landmark_ : int
    t_ : int
        Diffusion time used.
    entropy_ : ndarray, shape (t_max,)
        Von Neumann entropy of the operator at t = 1..t_max.
    t_candidates_ : list of int
        Every knee of ``entropy_`` whose two-segment fit is within 25% of the best, best
        first (the first is what t="auto" takes). Two entries mean a two-bend curve: the
        automatic t could as well have been the other, and the picture can differ a lot
        between them; t="auto" then warns (:class:`mphate.embed.diffusion.AmbiguousKneeWarning`).
    landmark_embedding_ : ndarray, shape (n_landmark_, n_components)
    landmark_operator_ : mphate.embed.landmarks.LandmarkOperator
        ``labels`` (N,), ``point_to_landmark`` (N, n_landmark_) sparse row-stochastic
        transitions from points to landmarks, ``scale`` (n_landmark_,) landmark degrees.
    spectrum_ : mphate.embed.diffusion.SpectralDecomposition
        Eigenvalues and eigenvectors of the landmark diffusion operator.
    n_slices_, n_units_, n_trace_ : int
    timings_ : dict of str -> float
        Seconds spent in each stage of the last fit.
    """

    def __init__(
        self,
        n_components=2,
        *,
        intraslice_knn=2,
        interslice_knn=25,
        decay=5,
        t="auto",
        gamma=0,
        normalize=True,
        n_landmark=4000,
        n_svd=100,
        spectral_stride="auto",
        mds="metric",
        mds_max_iter=300,
        mds_tol=1e-3,
        t_max=100,
        random_state=None,
        n_jobs=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.intraslice_knn = intraslice_knn
        self.interslice_knn = interslice_knn
        self.decay = decay
        self.t = t
        self.gamma = gamma
        self.normalize = normalize
        self.n_landmark = n_landmark
        self.n_svd = n_svd
        self.spectral_stride = spectral_stride
        self.mds = mds
        self.mds_max_iter = mds_max_iter
        self.mds_tol = mds_tol
        self.t_max = t_max
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    def _check_params(self):
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer; got {self.n_components!r}")
        if not (np.isscalar(self.decay) and np.isfinite(self.decay) and self.decay > 0):
            raise ValueError(f"decay must be a positive number; got {self.decay!r}")
        if not (isinstance(self.t_max, (int, np.integer)) and self.t_max >= 3):
            raise ValueError(f"t_max must be an integer >= 3; got {self.t_max!r}")
        if self.t != "auto" and not (
            isinstance(self.t, (int, np.integer)) and not isinstance(self.t, bool) and self.t >= 1
        ):
            raise ValueError(f"t must be 'auto' or a positive integer; got {self.t!r}")
        if not (np.isscalar(self.gamma) and -1 <= self.gamma <= 1):
            raise ValueError(f"gamma must be a number in [-1, 1]; got {self.gamma!r}")
        if self.n_landmark is not None and (
            not isinstance(self.n_landmark, (int, np.integer)) or self.n_landmark < 2
        ):
            raise ValueError(f"n_landmark must be None or an integer >= 2; got {self.n_landmark!r}")
        if self.spectral_stride != "auto" and not (
            isinstance(self.spectral_stride, (int, np.integer))
            and not isinstance(self.spectral_stride, bool)
            and self.spectral_stride >= 1
        ):
            raise ValueError(f"spectral_stride must be 'auto' or a positive integer; got {self.spectral_stride!r}")
        if self.mds not in ("metric", "classic"):
            raise ValueError(f"mds must be 'metric' or 'classic'; got {self.mds!r}")

    def _kernel_key(self, fingerprint, store):
        return (fingerprint, self.intraslice_knn, self.interslice_knn, float(self.decay),
                bool(self.normalize), store)

    def _spectral_stride(self, n_slices, n_units):
        """The slice stride of the spectral step, or None when no landmarks are used."""
        if self.n_landmark is None or n_slices * n_units <= self.n_landmark:
            return None
        return landmarks.effective_stride(self.spectral_stride, n_slices, n_units)

    def _landmark_key(self, kernel_key):
        return (kernel_key, self.n_landmark, self.n_svd, self.spectral_stride, _seed_key(self.random_state))

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Embed a trace.

        Parameters
        ----------
        X : array-like of shape (n_slices, n_units, n_trace), a :class:`mphate.Trace`,
            a trace store, or a path to one (store folder, .npz, .npy, .mat)
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        data = _as_array(X)
        data = check_trace_array(data)
        n_slices, n_units, n_trace = data.shape
        check_sizes(
            n_slices, n_units, n_trace,
            intraslice_knn=self.intraslice_knn, interslice_knn=self.interslice_knn,
        )
        log = _StageLog(self.verbose)
        log.note(f"{n_slices} slices x {n_units} units x {n_trace} trace inputs = {n_slices * n_units} points")
        with runtime.use_threads(runtime.resolve_threads(self.n_jobs, n_slices * n_units)):
            stride = self._spectral_stride(n_slices, n_units)
            # only a spectral step on the whole graph uses the kernel many times; otherwise it
            # is used once or twice, and keeping just the features (lean) saves its memory
            store = None if stride == 1 else False
            kernel_key = self._kernel_key(_fingerprint(data), store)
            if getattr(self, "_kernel_key_", None) != kernel_key:
                with log.stage("kernel"):
                    features = zscore_units(data) if self.normalize else data.astype(np.float32)
                    self.multislice_kernel_ = kernel_mod.multislice_kernel(
                        features,
                        intraslice_knn=self.intraslice_knn,
                        interslice_knn=self.interslice_knn,
                        decay=self.decay,
                        store_blocks=store,
                    )
                    del features
                self._kernel_key_ = kernel_key
                self._landmark_key_ = None
                self.__dict__.pop("_kernel_sparse", None)
            else:
                log.note("kernel unchanged: reusing it")
            del data  # a float32 copy of a float16 or integer trace is no longer needed
            kernel = self.multislice_kernel_
            self.interslice_eps_ = kernel.interslice_eps
            self.n_slices_, self.n_units_, self.n_trace_ = n_slices, n_units, n_trace

            landmark_key = self._landmark_key(kernel_key)
            if getattr(self, "_landmark_key_", None) != landmark_key:
                n_points = kernel.shape[0]
                rng = check_random_state(self.random_state)
                if stride is None:
                    with log.stage("diffusion operator (all points)"):
                        operator = landmarks.exact_operator(kernel)
                else:
                    with log.stage("spectral coordinates"):
                        coords = landmarks.landmark_features(
                            kernel, self.n_svd, random_state=rng, stride=stride
                        )
                    with log.stage("landmark clustering"):
                        labels = landmarks.cluster_landmarks(coords, self.n_landmark, random_state=rng)
                        del coords
                    with log.stage("landmark operator"):
                        operator = landmarks.landmark_operator(kernel, labels)
                with log.stage("eigendecomposition"):
                    self.spectrum_ = diffusion.SpectralDecomposition(operator.symmetric, operator.scale)
                    operator.symmetric = None  # the spectrum replaces it
                self.landmark_operator_ = operator
                self._landmark_key_ = landmark_key
            else:
                log.note("landmarks unchanged: reusing them")
            operator = self.landmark_operator_
            self.landmark_labels_ = operator.labels
            self.n_landmark_ = len(operator.scale)

            with log.stage("diffusion time and potential"):
                self.entropy_ = diffusion.von_neumann_entropy(self.spectrum_.eigenvalues, self.t_max)
                self.t_candidates_ = diffusion.t_candidates(self.entropy_)
                if self.t == "auto":
                    self.t_ = self.t_candidates_[0]  # the best knee: what select_t returns
                    log.note(f"t = {self.t_} (knee of the von Neumann entropy)")
                    if len(self.t_candidates_) > 1:
                        warnings.warn(diffusion.ambiguous_knee_message(self.t_candidates_),
                                      diffusion.AmbiguousKneeWarning, stacklevel=runtime.caller_stacklevel())
                else:
                    self.t_ = int(self.t)
                potential = diffusion.potential(
                    self.spectrum_.power(self.t_), self.gamma, inplace=True
                )

            with log.stage("classical MDS"):
                # centre once in place: distances and PCA ignore it, and no copy is needed
                potential -= potential.mean(axis=0)
                rng = check_random_state(self.random_state)
                init = mds.classical_mds_from_points(
                    potential, self.n_components, random_state=rng, center=False
                )
            if self.mds == "metric":
                with log.stage("metric MDS"):
                    distances = mds.pairwise_distances(potential, dtype=np.float32, center=False)
                    del potential  # the largest array alive; SMACOF needs only distances
                    landmark_embedding, n_iter = mds.smacof(
                        distances, init, max_iter=self.mds_max_iter, tol=self.mds_tol
                    )
                    log.note(f"SMACOF: {n_iter} iterations")
            else:
                landmark_embedding = init
            self.landmark_embedding_ = landmark_embedding
            with log.stage("map landmarks to points"):
                embedding = operator.point_to_landmark @ landmark_embedding.astype(np.float64)
            self.embedding_ = np.asarray(embedding, dtype=np.float64)
        self.timings_ = dict(log.timings)
        log.note(f"total: {sum(log.timings.values()):.2f} s")
        return self

    def fit_transform(self, X, y=None):
        """Embed a trace and return the embedding, shape (n_slices * n_units, n_components)."""
        return self.fit(X).embedding_

    @property
    def kernel_(self):
        """The multislice kernel as a sparse matrix, shape (N, N) (assembled on first access)."""
        if "multislice_kernel_" not in self.__dict__:
            raise AttributeError("kernel_ is available after fit")
        cached = self.__dict__.get("_kernel_sparse")
        if cached is None:
            cached = self.multislice_kernel_.to_sparse()
            self.__dict__["_kernel_sparse"] = cached
        return cached

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_kernel_sparse", None)
        return state


def _as_array(X):
    """Accept an array, a Trace, a trace store or a path; return the activation array."""
    from mphate.traces.trace import Trace

    if isinstance(X, Trace):
        return X.data
    if isinstance(X, (str, bytes)) or hasattr(X, "__fspath__") or hasattr(X, "to_trace"):
        try:
            from mphate.traces.io import as_trace
        except ImportError as exc:  # pragma: no cover - io ships with the package
            raise ValueError(f"cannot read a trace from {X!r}: {exc}") from exc
        return as_trace(X).data
    return X


def _fingerprint(data: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(data.shape).encode())
    digest.update(np.ascontiguousarray(data).view(np.uint8).data)
    return digest.hexdigest()


def _seed_key(random_state):
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return random_state
    return id(random_state)  # a RandomState object: reuse only within the same object
