"""The M-PHATE estimator (scikit-learn API): parameters in, the pipeline run, attributes out.

The stages themselves, their order and what each caches are in :mod:`mphate.embed.pipeline`.
"""
from __future__ import annotations

import numpy as np

from mphate import runtime
from mphate.embed import landmarks, pipeline
from mphate.embed.backend import get_backend
from mphate.embed.mds import SMACOF_TOL
from mphate.embed.params import ParamsMixin
from mphate.traces.io import as_trace_array
from mphate.traces.validation import check_sizes


class MPHATE(ParamsMixin):
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
    t : int, "auto" or "knee", default "auto"
        Diffusion time. "auto" draws the picture of each candidate time (100, 71, 50, 35,
        25, 12, capped at ``t_max``; each SMACOF also started from the layout before it)
        and scores it by intraslice and interslice neighbourhood preservation at k = 10 and
        k = 40 against the trace itself (no labels); the smallest t whose k = 10 and k = 40
        sums are both near their best wins, and its picture is the fit's
        (:mod:`mphate.embed.t_search`). "knee" takes the knee of the von
        Neumann entropy curve (PHATE's rule: free, but on real runs it can land far from the
        best picture; docs/algorithm.md). Any t is laid out along the search's chain (each
        SMACOF also continued from the candidate above it, same seed), so ``t=est.t_`` gives
        the auto fit's picture.
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
        slice, and give the points of the other slices their unit's coordinates interpolated
        linearly in time between those slices (the landmark operator itself always uses the
        whole kernel). "auto" is 1 (the whole graph) below 20,000 points and otherwise
        ``max(2, ceil(N / 250,000))``, at most ``n_slices // 2``. On real runs, stride 2 kept
        intraslice neighbourhoods about as well as the whole graph and interslice ones better,
        in about half the time (docs/algorithm.md).
    mds : {"metric", "classic"}, default "metric"
    mds_max_iter : int, default 300
    mds_tol : float, default 1e-4
        SMACOF stops when an (accelerated) step lowers the stress by less than this fraction.
    t_max : int, default 100
        Largest t considered by t="auto".
    random_state : int, numpy.random.Generator or None
        Seeds one ``numpy.random.Generator`` per random stage (landmarks, MDS); an int gives
        the same picture on every run. (A legacy RandomState is accepted and gives one seed.)
    n_jobs : int or None, default None
        Threads, for the chunked stages and the linear algebra alike; -1 uses all cores;
        None uses one thread for small traces (under 20,000 points) and otherwise as many
        threads as there are idle cores (measured over 50 ms at the start of the fit), since
        BLAS threads competing for busy cores are slower than one.
    device : {"cpu", "torch", "cuda", "cuda:N", "mps"}, default "cpu"
        Where the stages run (the landmarks' spectral coordinates, k-means and operator, the
        eigendecomposition, the potential, MDS): NumPy on the CPU, or PyTorch (an optional
        extra: ``pip install "mphate[torch]"``) on the CPU ("torch") or an accelerator. When the
        host keeps only the kernel's features (traces of 20,000 points or more), the kernel
        stage's bandwidth pass runs on the device too, and a CUDA device with room builds the
        kernel's parts for the landmark stage; on other devices that stage's kernel products
        stay on the host. Smaller traces' kernels are built on NumPy/SciPy.
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
        first (the first is what t="knee" takes). Two entries mean a two-bend curve: the
        knee could as well have been the other, and the picture can differ a lot between
        them; t="knee" then warns (:class:`mphate.embed.diffusion.AmbiguousKneeWarning`).
    t_scores_ : dict of int -> tuple of 4 floats
        t="auto": every candidate t, with its picture's (intraslice k10, interslice k10,
        intraslice k40, interslice k40) preservation on a scored subsample of slices and units
        (a kind is None when the trace has one slice; k is capped at the points there are).
        ``t_`` is :func:`mphate.embed.t_search.choose_t` of them. Empty for a given t or "knee".
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
        mds_tol=SMACOF_TOL,
        t_max=100,
        random_state=None,
        n_jobs=None,
        device="cpu",
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
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    def _check_params(self):
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer; got {self.n_components!r}")
        if not (np.isscalar(self.decay) and np.isfinite(self.decay) and self.decay > 0):
            raise ValueError(f"decay must be a positive number; got {self.decay!r}")
        if not (isinstance(self.t_max, (int, np.integer)) and self.t_max >= 3):
            raise ValueError(f"t_max must be an integer >= 3; got {self.t_max!r}")
        if self.t not in ("auto", "knee") and not (
            isinstance(self.t, (int, np.integer)) and not isinstance(self.t, bool) and self.t >= 1
        ):
            raise ValueError(f"t must be 'auto', 'knee' or a positive integer; got {self.t!r}")
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
        runtime.check_random_state(self.random_state)
        get_backend(self.device)  # a clear error now for an unknown device or a missing torch

    def _spectral_stride(self, n_slices, n_units):
        """The slice stride of the spectral step, or None when no landmarks are used."""
        if self.n_landmark is None or n_slices * n_units <= self.n_landmark:
            return None
        return landmarks.effective_stride(self.spectral_stride, n_slices, n_units)

    def _stages(self, n_slices, n_units) -> list:
        """The pipeline for a trace of this size, each stage with its parameters."""
        stride = self._spectral_stride(n_slices, n_units)
        picture = dict(gamma=self.gamma, n_components=self.n_components, mds=self.mds,
                       mds_max_iter=self.mds_max_iter, mds_tol=self.mds_tol)
        return [
            # only a spectral step on the whole graph uses the kernel many times; otherwise it
            # is used once or twice, and keeping just the features (lean) saves its memory
            pipeline.KernelStage(intraslice_knn=self.intraslice_knn, interslice_knn=self.interslice_knn,
                                 decay=float(self.decay), normalize=bool(self.normalize),
                                 store_blocks=None if stride == 1 else False),
            pipeline.LandmarkStage(n_landmark=self.n_landmark, n_svd=self.n_svd, stride=stride or 1),
            pipeline.SpectrumStage(),
            # t="auto" scores the pictures, so the embedding's parameters are its inputs too
            pipeline.DiffusionTimeStage(t=self.t, t_max=self.t_max,
                                        **(picture if isinstance(self.t, str) and self.t == "auto" else {})),
            pipeline.EmbeddingStage(**picture, t_max=self.t_max),
        ]

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
        data = as_trace_array(X)
        n_slices, n_units, n_trace = data.shape
        check_sizes(n_slices, n_units, n_trace,
                    intraslice_knn=self.intraslice_knn, interslice_knn=self.interslice_knn)
        backend = get_backend(self.device)
        log = pipeline.StageLog(self.verbose, synchronize=backend.synchronize)
        log.note(f"{n_slices} slices x {n_units} units x {n_trace} trace inputs = {n_slices * n_units} points")
        n_points = n_slices * n_units
        dense_size = n_points if self.n_landmark is None else min(n_points, self.n_landmark)
        resources = pipeline.Resources(
            n_threads=runtime.resolve_threads(self.n_jobs, n_points, dense_size=dense_size),
            rngs=runtime.stage_generators(self.random_state, pipeline.STAGE_NAMES),
            backend=backend,
            log=log,
        )
        state = self.__dict__.get("_state") or pipeline.PipelineState()
        state.data, state.fingerprint = data, pipeline.fingerprint(data)
        del data
        self._state = pipeline.run_pipeline(self._stages(n_slices, n_units), state, resources,
                                            seed=runtime.seed_key(self.random_state))
        self._publish(state, n_slices, n_units, n_trace)
        self.timings_ = dict(log.timings)
        log.note(f"total: {sum(log.timings.values()):.2f} s")
        return self

    def _publish(self, state, n_slices, n_units, n_trace):
        """Copy the pipeline's outputs to the fitted attributes (scikit-learn's trailing _)."""
        if getattr(self, "multislice_kernel_", None) is not state.kernel:
            self.__dict__.pop("_kernel_sparse", None)
        self.multislice_kernel_ = state.kernel
        self.interslice_eps_ = state.kernel.interslice_eps
        self.n_slices_, self.n_units_, self.n_trace_ = n_slices, n_units, n_trace
        self.landmark_operator_ = state.operator
        self.landmark_labels_ = state.operator.labels
        self.n_landmark_ = len(state.operator.scale)
        self.spectrum_ = state.spectrum
        self.entropy_ = state.entropy
        self.t_candidates_ = list(state.t_candidates)
        self.t_scores_ = dict(state.t_scores)
        self.t_ = state.t
        self.landmark_embedding_ = state.landmark_embedding
        self.embedding_ = state.embedding

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
