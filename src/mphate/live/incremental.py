"""An M-PHATE embedding that grows with the run: new slices placed out of sample, refits aligned.

Update rule (docs/live.md says why and what it costs):

* **Extend.** A new slice's points join the existing graph through their kernel links, the
  same links a full fit would give them: interslice links (Gaussian, the fit's bandwidth
  ``interslice_eps_``) from each unit to its own earlier points, and intraslice links
  (alpha-decay, adaptive bandwidth) among the new slice's units. A point already in the fit
  takes its landmark; a point placed earlier out of sample takes its landmark transitions.
  The new point's transitions to the landmarks are then the kernel-weighted average of those
  (the out-of-sample extension of a diffusion embedding: a row of ``P_nm = D^-1 K M``), its
  position the transition-weighted mean of the landmark positions, exactly as the fit places
  its own points. Points already drawn never move.
* **Refit** (a full :class:`~mphate.MPHATE` fit of every slice so far) when the trace has grown
  by ``refit_growth`` since the last fit, every ``refit_every`` slices if set, or when the
  out-of-sample error grows: the intraslice neighbourhood preservation (k = 10) of the last
  ``error_window`` extended slices falls more than ``refit_tolerance`` below that of the last
  fit's own final slices. :meth:`IncrementalMPHATE.refit` fits at once; the live view calls
  it when the run stops (its writer is gone), so the picture a finished run leaves is a full
  fit.
* **Align.** A refit's layout is mapped onto the previous frame by orthogonal Procrustes (rotation, reflection, uniform
  scale, shift) on the points both frames share, so the picture does not flip or jump; the
  residual of that alignment is reported with the frame. With ``warm_slack`` set, the
  refit's metric MDS is also started again from where its landmarks' points are drawn now,
  and that layout is kept if its stress is within ``warm_slack`` of the fit's own.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from mphate import runtime
from mphate.embed import diffusion, mds
from mphate.embed.estimator import MPHATE
from mphate.embed.kernel import KERNEL_THRESHOLD, intraslice_kernel
from mphate.embed.normalize import zscore_units
from mphate.live.align import SimilarityTransform, procrustes
from mphate.traces.trace import Trace
from mphate.traces.validation import check_trace_array

__all__ = ["IncrementalMPHATE", "Frame"]


@dataclass
class Frame:
    """What one :meth:`IncrementalMPHATE.partial_fit` call did.

    Attributes
    ----------
    kind : {"extend", "refit"}
        "refit" when the call ended with a full fit (every point may have moved, aligned to
        the previous frame), "extend" when only new points were added.
    n_slices : int
        Slices embedded after the call.
    n_new : int
        Slices the call added.
    seconds : float
        Wall time of the call; ``extend_seconds`` is the part spent placing new slices out of
        sample, ``refit_seconds`` the full fit (0 without one).
    residual : float or None
        Refit frames: the Procrustes residual of the alignment to the previous frame
        (:func:`mphate.live.align.procrustes`); None for extend frames (old points did not
        move: their residual is 0) and for the first fit.
    oos_error : float or None
        How far the recent extended slices' intraslice neighbourhood preservation (k = 10)
        falls below the last fit's own, before any refit of this call.
    reason : str
        Why a refit ran ("first fit", "grown by 25%", ...), or "".
    warnings : list of str
        Warnings the refit raised (e.g. an ambiguous knee of the entropy curve).
    layout : {"warm", "cold", ""}
        Refit frames: whether the metric MDS kept the start from the previous frame ("warm")
        or the fit's own layout ("cold"; also the first fit).
    stress : dict or None
        Refit frames with a warm start: Kruskal stress of the "warm" and "cold" layouts.
    """

    kind: str
    n_slices: int
    n_new: int
    seconds: float
    extend_seconds: float = 0.0
    refit_seconds: float = 0.0
    residual: float | None = None
    oos_error: float | None = None
    reason: str = ""
    warnings: list = field(default_factory=list)
    layout: str = ""
    stress: dict | None = None


class _GrowingArray:
    """A (capacity, *shape) buffer along axis ``axis`` that doubles when full."""

    def __init__(self, shape, axis: int, dtype=np.float32):
        self.axis, self.n = axis, 0
        shape = list(shape)
        shape[axis] = 8
        self.buffer = np.empty(shape, dtype=dtype)

    def append(self, rows: np.ndarray) -> None:
        need = self.n + rows.shape[self.axis]
        if need > self.buffer.shape[self.axis]:
            shape = list(self.buffer.shape)
            shape[self.axis] = max(need, 2 * shape[self.axis])
            bigger = np.empty(shape, dtype=self.buffer.dtype)
            np.copyto(self._view(bigger, self.n), self.view())
            self.buffer = bigger
        np.copyto(self._view(self.buffer, need, start=self.n), rows)
        self.n = need

    def _view(self, array, stop, start=0):
        index = [slice(None)] * array.ndim
        index[self.axis] = slice(start, stop)
        return array[tuple(index)]

    def view(self) -> np.ndarray:
        return self._view(self.buffer, self.n)


#: entries of the (units, earlier slices, features) differences one extension step forms at once
_DIFFERENCE_CHUNK_ENTRIES = 2**24


def _knn_sets(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k nearest other rows, shape (n, k)."""
    points = np.asarray(points, dtype=np.float64)
    sq = np.einsum("ij,ij->i", points, points)
    dist = sq[:, None] + sq[None, :] - 2 * points @ points.T
    np.fill_diagonal(dist, np.inf)
    return np.argpartition(dist, k - 1, axis=1)[:, :k]


def intraslice_preservation(features: np.ndarray, coords: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each unit's k nearest units in ``coords`` that are among its k nearest
    in ``features`` (one slice's part of :func:`mphate.metrics.neighbor_preservation`).

    Parameters
    ----------
    features : ndarray, shape (n_units, n_features)
    coords : ndarray, shape (n_units, n_components)
    """
    n = len(features)
    k = min(k, n - 1)
    reference = np.zeros((n, n), dtype=bool)
    np.put_along_axis(reference, _knn_sets(features, k), True, axis=1)
    return float(np.take_along_axis(reference, _knn_sets(coords, k), axis=1).mean())


def history_preservation(features: np.ndarray, coords: np.ndarray, k: int = 10) -> float:
    """For the newest point of every unit: the fraction of its k nearest earlier points of the
    same unit in the embedding that are among its k nearest in ``features`` (the interslice
    part of :func:`mphate.metrics.neighbor_preservation`, seen from the newest slice).

    Parameters
    ----------
    features : ndarray, shape (n_units, n_slices, n_features)
        Unit-major; the last slice is the newest.
    coords : ndarray, shape (n_units, n_slices, n_components)
    """
    n_earlier = features.shape[1] - 1
    k = min(k, n_earlier)
    if k < 1:
        return 1.0

    def nearest(points):
        sq = ((points[:, :-1, :] - points[:, -1:, :]) ** 2).sum(axis=2)  # (U, n_earlier)
        return np.argpartition(sq, k - 1, axis=1)[:, :k]

    reference = np.zeros((features.shape[0], n_earlier), dtype=bool)
    np.put_along_axis(reference, nearest(features.astype(np.float64)), True, axis=1)
    return float(np.take_along_axis(reference, nearest(coords), axis=1).mean())


def landmark_distances(estimator) -> np.ndarray:
    """The potential distances between a fitted estimator's landmarks, (n_landmark, n_landmark):
    what its own metric MDS fits (``P_L^t`` of its spectrum, transformed by its gamma)."""
    potential = diffusion.potential(estimator.spectrum_.power(estimator.t_), estimator.gamma, inplace=True)
    return mds.pairwise_distances(potential, dtype=np.float32)


def warm_layout(estimator, init: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Metric MDS of a fitted estimator's landmarks started from ``init`` (n_landmark, n_components).

    Started from where the landmarks' points are drawn now, SMACOF settles in the stress
    minimum nearest the current picture: on the digits run this cut the refits' Procrustes
    residual from 0.54-0.74 to 0.10-0.30 at the same neighbourhood preservation
    (docs/live.md). Until the estimator takes an initial layout itself, this repeats its last
    stage with the core's own functions.

    Returns
    -------
    coords : ndarray, shape (n_landmark, n_components)
    warm_stress, cold_stress : float
        Kruskal stress of this layout and of the estimator's own (cold-started) one.
    """
    threads = runtime.resolve_threads(estimator.n_jobs, estimator.n_slices_ * estimator.n_units_,
                                      dense_size=estimator.n_landmark_)
    coords, _ = mds.smacof(distances, init, max_iter=estimator.mds_max_iter, tol=estimator.mds_tol,
                           n_threads=threads)
    return coords, mds.stress(distances, coords), mds.stress(distances, estimator.landmark_embedding_)


def _row_normalize(matrix: sp.csr_matrix) -> sp.csr_matrix:
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    totals[totals == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / totals) @ matrix)


#: fewest landmarks a refit uses (when the trace has more points)
MIN_LIVE_LANDMARKS = 500

#: transitions below this are dropped from an extended point's row (then renormalised)
MIN_TRANSITION = 1e-3


def _prune(transitions: sp.csr_matrix, min_weight: float = MIN_TRANSITION) -> sp.csr_matrix:
    """Drop tiny transitions and renormalise the rows.

    Each extended point averages the transitions of its neighbours, so without pruning the
    rows of a long run of extended slices fill in (every slice a little denser than the one
    before it) and the products with them slow down slice after slice. Entries under
    ``min_weight`` carry under ``min_weight`` each of a point's position.
    """
    transitions = sp.csr_matrix(transitions)
    transitions.data[transitions.data < min_weight] = 0.0
    transitions.eliminate_zeros()
    return _row_normalize(transitions)


class IncrementalMPHATE:
    """M-PHATE that grows slice by slice without moving the points already drawn.

    Parameters
    ----------
    estimator : MPHATE, optional
        The embedding's parameters (it is cloned for every refit; never fitted itself).
        Default ``MPHATE(random_state=0)``: a fixed seed keeps successive refits alike.
    refit_growth : float or None, default 0.25
        Refit when the trace has grown by this fraction since the last fit (so refits get
        rarer as they get dearer: about 20 over a 300-slice run). None: never for growth.
    refit_every : int, optional
        Also refit after this many slices since the last fit.
    refit_tolerance : float or None, default 0.05
        Refit when the recent extended slices' intraslice neighbourhood preservation falls
        more than this below the last fit's own. None: never for quality.
    error_window : int, default 3
        Extended slices averaged for that comparison.
    min_fit_slices : int, default 2
        Slices needed for the first fit. Until the run has more slices than the estimator's
        ``interslice_knn``, fits use ``interslice_knn = n_slices - 1``.
    warm_slack : float or None, default None
        None: every refit shows the fit's own layout, aligned to the previous frame. A number:
        the refit's metric MDS is run a second time from the previous frame's positions, and
        that layout is kept when its stress is at most ``1 + warm_slack`` times the fit's own.
        Warm layouts jump less at refits but keep fewer interslice neighbourhoods: replaying
        two real 300 x 384 runs (benchmarks/bench_live.py, docs/live.md), 0.05 left the picture
        after the last slice 0.027 and 0.033 below a full fit in interslice preservation, None
        0.011 and 0.014 (median refit residual 0.12 against 0.17-0.20). Equal stress did not
        mean equal neighbourhoods: a warm layout within 1 % of the cold one's stress still
        scored 0.05 higher intraslice and 0.02 lower interslice.
    landmark_share : float or None, default 0.125
        A refit uses at most this share of the points as landmarks (at least
        ``MIN_LIVE_LANDMARKS``, at most the estimator's ``n_landmark``). Early in a run the
        trace has barely more points than ``n_landmark``: compressing nothing, the 4,000 x 4,000
        eigendecomposition cost 20-25 s for 12 slices (on a busy 2-core machine) against
        1.5 s with 1,000 landmarks. From 32,000 points on (84 slices of 384 units) the
        estimator's own ``n_landmark`` applies. None: always the estimator's.

    Attributes
    ----------
    embedding_ : ndarray, shape (n_slices_ * n_units_, n_components), float64
        Slice-major, in the display frame (every refit aligned to the frame before it); empty
        before the first fit.
    n_slices_, n_units_, n_fit_slices_ : int
        Slices seen, units per slice, slices in the last full fit.
    estimator_ : MPHATE or None
        The last full fit.
    transform_ : SimilarityTransform
        Maps ``estimator_``'s coordinates into the display frame.
    frames_ : list of Frame
        One per :meth:`partial_fit` call that drew something.
    """

    def __init__(self, estimator=None, *, refit_growth=0.25, refit_every=None, refit_tolerance=0.05,
                 error_window=3, min_fit_slices=2, warm_slack=None, landmark_share=0.125):
        self.estimator = estimator
        self.refit_growth = refit_growth
        self.refit_every = refit_every
        self.refit_tolerance = refit_tolerance
        self.error_window = error_window
        self.min_fit_slices = min_fit_slices
        self.landmark_share = landmark_share
        self.warm_slack = warm_slack

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.estimator is not None and not isinstance(self.estimator, MPHATE):
            raise ValueError(f"estimator must be an MPHATE instance; got {type(self.estimator).__name__}")
        if self.warm_slack is not None and not (np.isscalar(self.warm_slack) and self.warm_slack >= 0):
            raise ValueError(f"warm_slack must be None or a number >= 0; got {self.warm_slack!r}")
        for name in ("refit_growth", "refit_tolerance", "landmark_share"):
            value = getattr(self, name)
            if value is not None and not (np.isscalar(value) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be None or a positive number; got {value!r}")
        for name, low in (("refit_every", 1), ("error_window", 1), ("min_fit_slices", 2)):
            value = getattr(self, name)
            if value is None and name == "refit_every":
                continue
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")

    def _template(self) -> MPHATE:
        return MPHATE(random_state=0) if self.estimator is None else self.estimator

    def _as_slices(self, new_slices) -> np.ndarray:
        data = new_slices.data if isinstance(new_slices, Trace) else new_slices
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]  # one slice, (n_units, n_trace)
        data = check_trace_array(data, name="new slices")
        if getattr(self, "_raw", None) is not None:
            expected = self._raw.buffer.shape[1:]
            if data.shape[1:] != expected:
                raise ValueError(
                    f"new slices have shape {data.shape[1:]} (n_units, n_trace) but the slices so far "
                    f"have {expected}; a trace keeps its units and trace inputs"
                )
        return data.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ public API
    @property
    def n_slices_(self) -> int:
        return 0 if getattr(self, "_raw", None) is None else self._raw.n

    @property
    def data_(self) -> np.ndarray:
        """The slices so far as given, shape (n_slices_, n_units_, n_trace), float32 (a view)."""
        if getattr(self, "_raw", None) is None:
            raise AttributeError("data_ is available after the first partial_fit")
        return self._raw.view()

    def fit(self, X, y=None):
        """Forget everything, then :meth:`partial_fit` ``X`` (array (n_slices, n_units, n_trace) or Trace)."""
        for name in ("_raw", "_features", "estimator_", "frames_"):
            self.__dict__.pop(name, None)
        return self.partial_fit(X)

    def partial_fit(self, new_slices, y=None):
        """Add slices: place them out of sample, then refit if the rule says so.

        Parameters
        ----------
        new_slices : array, shape (n_new, n_units, n_trace) or (n_units, n_trace), or a Trace
            The next slices of the run, in order.

        Returns
        -------
        self ; ``frames_[-1]`` describes what was done (nothing is drawn before
        ``min_fit_slices`` slices).
        """
        self._check_params()
        data = self._as_slices(new_slices)
        start = time.perf_counter()
        if getattr(self, "_raw", None) is None:
            self._start(data.shape[1:])
        drawn = len(self.embedding_)  # the previous frame: what a refit is aligned to
        self._raw.append(data)
        feats = zscore_units(data) if self._template().normalize else data
        self._features.append(feats.transpose(1, 0, 2))
        extended = 0
        if self.estimator_ is not None:
            for offset in range(len(data)):
                self._extend_one(self.n_slices_ - len(data) + offset)
                extended += 1
        extend_seconds = time.perf_counter() - start
        reason = self._refit_reason()
        frame = Frame("extend", self.n_slices_, len(data), 0.0, extend_seconds=extend_seconds,
                      oos_error=self._oos_error())
        if reason:
            frame = self._refit(frame, reason, self.embedding_[:drawn])
        frame.seconds = time.perf_counter() - start
        if self.estimator_ is not None:
            self.frames_.append(frame)
        return self

    def fit_transform(self, X, y=None):
        return self.fit(X).embedding_

    def refit(self, reason: str = "asked for"):
        """Fit every slice so far now, aligned to the current frame, if any was placed out of
        sample since the last fit (the live view does it when the run stops, so that the last
        picture is a full fit); a no-op otherwise, and before the first fit."""
        self._check_params()
        if not self.out_of_sample_slices_:
            return self
        start = time.perf_counter()
        frame = Frame("extend", self.n_slices_, 0, 0.0, oos_error=self._oos_error())
        frame = self._refit(frame, reason, self.embedding_.copy())
        frame.seconds = time.perf_counter() - start
        self.frames_.append(frame)
        return self

    @property
    def out_of_sample_slices_(self) -> int:
        """Slices placed out of sample since the last fit (0 before the first fit)."""
        if getattr(self, "estimator_", None) is None:
            return 0
        return self.n_slices_ - self.n_fit_slices_

    @property
    def last_frame_(self) -> Frame | None:
        return self.frames_[-1] if getattr(self, "frames_", None) else None

    # ------------------------------------------------------------------ state
    def _start(self, slice_shape):
        n_units, n_trace = slice_shape
        self.n_units_ = int(n_units)
        self._raw = _GrowingArray((0, n_units, n_trace), axis=0)
        self._features = _GrowingArray((n_units, 0, n_trace), axis=1)  # unit-major: fast links
        self.estimator_ = None
        self.frames_ = []
        self.embedding_ = np.empty((0, self._template().n_components))
        self.transform_ = SimilarityTransform.identity(self._template().n_components)
        self.n_fit_slices_ = 0
        self._recent_quality: list[tuple[float, float]] = []

    # ------------------------------------------------------------------ refits
    def refit_due(self, n_new: int = 0) -> str:
        """Why adding ``n_new`` more slices would end in a refit by the growth rules ("" if it
        would not; the out-of-sample rule can only tell once they are placed)."""
        n = self.n_slices_ + int(n_new)
        n_fit = getattr(self, "n_fit_slices_", 0)
        if getattr(self, "estimator_", None) is None:
            return "first fit" if n >= self.min_fit_slices else ""
        if n == n_fit:
            return ""
        if self.refit_every is not None and n - n_fit >= self.refit_every:
            return f"{n - n_fit} slices since the last fit"
        if self.refit_growth is not None and n >= n_fit * (1 + self.refit_growth):
            return f"grown by {100 * (n - n_fit) / n_fit:.0f}% since the last fit"
        return ""

    def _refit_reason(self) -> str:
        reason = self.refit_due()
        if reason or self.estimator_ is None or self.n_slices_ == self.n_fit_slices_:
            return reason
        error = self._oos_error()
        if self.refit_tolerance is not None and error is not None and error > self.refit_tolerance:
            return f"out-of-sample preservation {error:.3f} below the fit's"
        return ""

    def _oos_error(self):
        if len(self._recent_quality) < self.error_window:
            return None
        recent = np.mean(self._recent_quality[-self.error_window:], axis=0)
        # the larger shortfall: within the slice (intraslice) or along each unit's history
        return float(np.max(self._fit_quality - recent))

    def _refit(self, frame: Frame, reason: str, previous: np.ndarray) -> Frame:
        """Fit every slice so far, aligned to ``previous`` (the last frame's points, slice-major)."""
        start = time.perf_counter()
        n = self.n_slices_
        template = self._template()
        # a fresh, unfitted copy (scikit-learn's clone, without importing scikit-learn)
        estimator = type(template)(**template.get_params(deep=False)).set_params(
            interslice_knn=min(template.interslice_knn, n - 1), n_landmark=self._n_landmark(n * self.n_units_))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            estimator.fit(self._raw.view())
        landmarks, frame.layout = estimator.landmark_embedding_, "cold"
        if template.mds == "metric" and len(previous) and self.warm_slack is not None:
            # a second metric MDS, started from the previous frame; kept unless it fits the
            # distances clearly worse than the fit's own (a chain of warm starts can drift
            # into a poorer minimum: then the picture is allowed to jump once)
            warm, warm_stress, cold_stress = warm_layout(estimator, self._warm_start(estimator, previous),
                                                         landmark_distances(estimator))
            frame.stress = {"warm": warm_stress, "cold": cold_stress}
            if warm_stress <= (1 + self.warm_slack) * cold_stress:
                landmarks, frame.layout = warm, "warm"
        fitted = np.asarray(estimator.landmark_operator_.point_to_landmark @ landmarks)
        if len(previous):
            self.transform_, residual = procrustes(previous, fitted[: len(previous)])
        else:
            self.transform_, residual = SimilarityTransform.identity(fitted.shape[1]), None
        self.estimator_ = estimator
        self.embedding_ = self.transform_.apply(fitted)
        self.n_fit_slices_ = n
        self._landmarks = self.transform_.apply(landmarks)
        self._labels = np.asarray(estimator.landmark_operator_.labels).reshape(n, self.n_units_)
        # transitions of the extended points, slice-major rows: (n_extended * n_units, n_landmark)
        self._extended = sp.csr_matrix((0, len(self._landmarks)))
        self._eps = float(estimator.interslice_eps_)
        self._fit_quality = self._quality_of_fit(min(self.error_window, n))
        self._recent_quality = []
        frame.kind, frame.reason, frame.residual = "refit", reason, residual
        frame.refit_seconds = time.perf_counter() - start
        frame.warnings = [str(w.message) for w in caught]
        return frame

    def _warm_start(self, estimator, previous: np.ndarray) -> np.ndarray:
        """Start positions of the refit's landmarks, shape (n_landmark, n_components): the mean
        drawn position of each landmark's points that are drawn already; landmarks made only of
        new points keep their classical-MDS position, mapped into the drawn frame."""
        labels = np.asarray(estimator.landmark_operator_.labels)[: len(previous)]
        classical = estimator.landmark_embedding_
        mapped, _ = procrustes(previous, estimator.embedding_[: len(previous)])
        init = mapped.apply(classical)
        counts = np.bincount(labels, minlength=len(init))
        sums = np.zeros_like(init)
        np.add.at(sums, labels, previous)
        drawn = counts > 0
        init[drawn] = sums[drawn] / counts[drawn, None]
        return init

    def _n_landmark(self, n_points: int):
        """Landmarks of a refit of ``n_points`` points (see ``landmark_share``)."""
        wanted = self._template().n_landmark
        if self.landmark_share is None or wanted is None:
            return wanted
        return int(min(wanted, max(MIN_LIVE_LANDMARKS, self.landmark_share * n_points)))

    def _slice_quality(self, s: int) -> tuple[float, float]:
        """(intraslice, history) preservation of slice ``s`` as drawn now, k = 10."""
        U = self.n_units_
        feats = self._features.view()[:, : s + 1]
        coords = self.embedding_[: (s + 1) * U].reshape(s + 1, U, -1).transpose(1, 0, 2)
        return intraslice_preservation(feats[:, s], coords[:, s]), history_preservation(feats, coords)

    def _quality_of_fit(self, n_last: int) -> np.ndarray:
        """Mean (intraslice, history) preservation of the fit's last ``n_last`` slices: what
        extended slices are held to."""
        return np.mean([self._slice_quality(s) for s in range(self.n_slices_ - n_last, self.n_slices_)], axis=0)

    # ------------------------------------------------------------------ extension
    def _interslice_weights(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Kernel from slice ``s``'s points to each unit's own earlier points.

        Returns
        -------
        weights : ndarray, shape (n_units, s), thresholded Gaussian of the fit's bandwidth
        sq : ndarray, shape (n_units, s), squared distances
        """
        feats = self._features.view()
        n_units, _, n_features = feats.shape
        new = feats[:, s, :]  # (U, F)
        # from differences, not the |x|^2 + |y|^2 - 2 x.y expansion: a unit's history lies close
        # together far from the origin, where that cancels in float32 (mphate.embed.kernel._unit_slab)
        sq = np.empty((n_units, s), dtype=np.float32)
        step = max(1, _DIFFERENCE_CHUNK_ENTRIES // max(1, s * n_features))
        for u0 in range(0, n_units, step):
            difference = feats[u0:u0 + step, :s, :] - new[u0:u0 + step, None, :]
            np.einsum("usf,usf->us", difference, difference, out=sq[u0:u0 + step])
        weights = np.exp(sq * np.float32(-1.0 / self._eps**2))
        weights[weights < KERNEL_THRESHOLD] = 0.0
        return weights, sq

    def _links_to_landmarks(self, weights: np.ndarray) -> sp.csr_matrix:
        """``sum_j K(i, j) m_j`` over earlier points j: their landmark (fitted points) or
        their transitions (extended points); shape (n_units, n_landmark)."""
        U, n_fit = self.n_units_, self.n_fit_slices_
        n_landmark = len(self._landmarks)
        fitted = weights[:, :n_fit]
        unit, s = np.nonzero(fitted)
        links = sp.csr_matrix((fitted[unit, s], (unit, self._labels[s, unit])), shape=(U, n_landmark))
        later = weights[:, n_fit:]
        unit, s = np.nonzero(later)
        if len(unit):
            # one product: unit u of the new slice -> row s * U + u of the extended points
            to_extended = sp.csr_matrix((later[unit, s], (unit, s * U + unit)), shape=(U, self._extended.shape[0]))
            links = links + to_extended @ self._extended
        return sp.csr_matrix(links)

    def _extend_one(self, s: int) -> None:
        """Place slice ``s`` (already in the buffers) out of sample and append its points."""
        U = self.n_units_
        weights, sq = self._interslice_weights(s)
        lonely = ~weights.any(axis=1)
        if lonely.any():
            # out of every earlier point's reach: anchor to the unit's nearest earlier point
            units = np.flatnonzero(lonely)
            weights[units, sq[units].argmin(axis=1)] = 1.0
        inter = self._links_to_landmarks(weights)
        first_guess = _row_normalize(inter)
        feats = np.ascontiguousarray(self._features.view()[:, s, :])[None]
        template = self._template()
        (_, intra), = intraslice_kernel(feats, template.intraslice_knn, float(template.decay))
        # the new units' links to each other (and to themselves, diagonal 1) go through the
        # first guess of their own transitions, made from the interslice links alone
        transitions = _prune(inter + sp.csr_matrix(intra, dtype=np.float64) @ first_guess)
        coords = np.asarray(transitions @ self._landmarks)
        self._extended = sp.vstack([self._extended, transitions], format="csr")
        self.embedding_ = np.concatenate([self.embedding_, coords])
        self._recent_quality.append(self._slice_quality(s))
