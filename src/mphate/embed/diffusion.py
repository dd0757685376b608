"""Diffusion time and potential on the (landmark) diffusion operator.

The operator ``P = C^-1/2 S C^1/2`` is similar to a symmetric ``S``, so one symmetric
eigendecomposition gives both the spectrum (for the von Neumann entropy that picks t) and any
power ``P^t = C^-1/2 V diag(l^t) V^T C^1/2`` without repeated dense matrix products.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.special


SINGLE_PRECISION_FROM = 1500


class SpectralDecomposition:
    """Eigen-decomposition of a diffusion operator given by its symmetric conjugate.

    Attributes
    ----------
    eigenvalues : ndarray, shape (n,), descending, clipped to [-1, 1], float64
    eigenvectors : ndarray, shape (n, n), float32 for large operators
    scale : ndarray, shape (n,)

    Operators of ``SINGLE_PRECISION_FROM`` landmarks or more are decomposed in single precision:
    twice as fast and half the memory of double, and the potential distances they give differ
    by about 1e-4 of their median (far below what the embedding resolves).
    """

    def __init__(self, symmetric: np.ndarray, scale: np.ndarray):
        n = symmetric.shape[0]
        dtype = np.float32 if n >= SINGLE_PRECISION_FROM else np.float64
        symmetric = np.asarray(symmetric, dtype=dtype)
        # LAPACK wants Fortran order; the transpose of a symmetric C-ordered array is that
        # same matrix in Fortran order, so LAPACK can work in it instead of on a copy
        eigenvalues, eigenvectors = scipy.linalg.eigh(
            symmetric.T, driver="evd", check_finite=False, overwrite_a=True
        )
        # eigh returns ascending order: reverse by views, not an n x n copy.
        # A stochastic operator has spectrum in [-1, 1]; rounding can leave values a hair outside
        self.eigenvalues = np.clip(eigenvalues[::-1].astype(np.float64), -1.0, 1.0)
        self.eigenvectors = eigenvectors[:, ::-1]
        self.scale = np.asarray(scale, dtype=np.float64)

    def symmetric(self) -> np.ndarray:
        """The decomposed symmetric matrix again, ``V diag(l) V^T``, shape (n, n)."""
        vectors = self.eigenvectors
        return (vectors * self.eigenvalues.astype(vectors.dtype)) @ vectors.T

    def power(self, t: int, tol: float = 1e-12) -> np.ndarray:
        """``P^t`` as a dense row-stochastic array, shape (n, n).

        ``P^t = C^-1/2 V diag(l^t) V^T C^1/2``. Components lighter than ``tol`` of the
        heaviest are left out. Work arrays: one (n, kept) block and the result, both in the
        eigenvectors' dtype (no float64 copies of the block, no second scaled copy of it).
        """
        powered = self.eigenvalues**t
        # components whose weight vanished at this t add nothing but cost
        keep = np.abs(powered) > tol * np.abs(powered).max()
        n_kept = int(keep.sum())
        # the landmark operator is similar to W^T D^-1 W (positive semi-definite), so the kept
        # components are the leading ones: a view, not a copy; the mask is the general case
        vectors = self.eigenvectors[:, :n_kept] if keep[:n_kept].all() else self.eigenvectors[:, keep]
        dtype = vectors.dtype
        weights = powered[keep]
        if np.all(weights >= 0):
            # V diag(l^t) V^T = (V diag(l^t/2)) (V diag(l^t/2))^T: NumPy hands a product with
            # its own transpose to BLAS's syrk, half the work of a general product
            scaled = vectors * np.sqrt(weights).astype(dtype)
            result = scaled @ scaled.T
        else:  # an odd power of a negative eigenvalue (not for a PSD landmark operator)
            scaled = vectors * weights.astype(dtype)
            result = scaled @ vectors.T
        del scaled
        # the row factor C^-1/2 is left out: rows are scaled by positive numbers, which the
        # clipping below keeps and the row normalisation cancels
        result *= np.sqrt(self.scale).astype(dtype)[None, :]
        np.maximum(result, 0.0, out=result)
        result /= result.sum(axis=1, keepdims=True)
        return result


def von_neumann_entropy(eigenvalues: np.ndarray, t_max: int = 100) -> np.ndarray:
    """Von Neumann entropy of ``P^t`` for t = 1..t_max.

    The entropy of the normalised spectrum ``|l|^t / sum(|l|^t)``; it falls as diffusion
    smooths away small eigenvalues.

    Returns
    -------
    ndarray, shape (t_max,)
    """
    lam = np.abs(np.asarray(eigenvalues, dtype=np.float64))
    log_lam = np.log(lam[lam > 0])
    entropy = np.empty(t_max)
    for t in range(1, t_max + 1):
        # in log space: lam**t underflows long before its share of the entropy vanishes
        log_p = t * log_lam
        log_p -= scipy.special.logsumexp(log_p)
        entropy[t - 1] = -np.sum(np.exp(log_p) * log_p)
    return entropy


def knee_fit_errors(y: np.ndarray) -> np.ndarray:
    """Total squared error of the best two-segment linear fit, for every split of a curve.

    For split ``i`` a least-squares line is fitted to the points ``0..i`` and another to
    ``i..n-1`` (the split point belongs to both); the sum of their residual squares is the
    error. All splits cost O(n) together, by running sums.

    Parameters
    ----------
    y : ndarray, shape (n,), n >= 3

    Returns
    -------
    ndarray, shape (n - 2,): entry ``i - 1`` is the error of split ``i`` (1 <= i <= n - 2)
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if y.ndim != 1 or n < 3:
        raise ValueError(f"a knee needs a curve of at least 3 points; got shape {y.shape}")
    x = np.arange(n, dtype=np.float64)

    def segment_errors(xs, ys):
        # residual sum of squares of the least-squares line through xs[:m], ys[:m], for all m
        m = np.arange(1, len(xs) + 1, dtype=np.float64)
        sx, sy = np.cumsum(xs), np.cumsum(ys)
        sxx, syy, sxy = np.cumsum(xs * xs), np.cumsum(ys * ys), np.cumsum(xs * ys)
        cov = sxy - sx * sy / m
        var_x = sxx - sx * sx / m
        var_y = syy - sy * sy / m
        with np.errstate(divide="ignore", invalid="ignore"):
            rss = var_y - np.where(var_x > 0, cov * cov / var_x, 0.0)
        return np.maximum(rss, 0.0)

    left = segment_errors(x, y)  # left[i] = fit over 0..i
    right = segment_errors(x[::-1], y[::-1])[::-1]  # right[i] = fit over i..n-1
    return left[1 : n - 1] + right[1 : n - 1]


def find_knee(y: np.ndarray) -> int:
    """Index of the knee of a decreasing curve: the split of the best two-segment linear fit.

    Parameters
    ----------
    y : ndarray, shape (n,), n >= 3

    Returns
    -------
    int, in [1, n - 2]
    """
    return int(np.argmin(knee_fit_errors(y))) + 1


def knee_candidates(y: np.ndarray, tolerance: float = 0.25, window: int = 5) -> list[int]:
    """Every knee of a curve whose two-segment fit is nearly as good as the best one.

    A curve with two bends (a fast early drop, a plateau, a second drop) has two separate
    minima of the fit error, and which one is lowest can turn on a rounding-level change of
    the curve. The candidates are the splits whose error is the least within ``window``
    points either side and at most ``(1 + tolerance)`` times the best error.

    Returns
    -------
    list of int, best fit first; its first entry is :func:`find_knee`'s answer
    """
    errors = knee_fit_errors(y)
    best = errors.min()
    candidates = [
        i for i in range(len(errors))
        if errors[i] == errors[max(0, i - window) : i + window + 1].min()
        and errors[i] <= (1.0 + tolerance) * best
    ]
    # a flat stretch of equal errors counts once (its first point)
    candidates = [i for i in candidates if i == 0 or errors[i - 1] != errors[i] or i - 1 not in candidates]
    candidates.sort(key=lambda i: (errors[i], i))
    return [i + 1 for i in candidates]


def select_t(eigenvalues: np.ndarray, t_max: int = 100) -> tuple[int, np.ndarray]:
    """Diffusion time at the knee of the von Neumann entropy curve.

    Returns
    -------
    t : int
    entropy : ndarray, shape (t_max,), entropy[t - 1] is the entropy at time t
    """
    entropy = von_neumann_entropy(eigenvalues, t_max)
    return find_knee(entropy) + 1, entropy


def t_candidates(entropy: np.ndarray) -> list[int]:
    """Diffusion times at every near-best knee of an entropy curve (:func:`knee_candidates`).

    ``entropy[t - 1]`` is the entropy at time t; the first entry is :func:`select_t`'s t.
    """
    return [index + 1 for index in knee_candidates(entropy)]


#: a diffusion time is past mixing when the slowest non-stationary component of ``P^t``,
#: ``|l_2|^t``, has fallen below this. ``P^t``'s rows then differ from the stationary row by
#: at most about that fraction, and the float32 potential (rounding ~1e-7) keeps little of it:
#: on a trace whose units mostly died (l_2 = 0.64) the picture at t = 30 spanned 1e-5 of the
#: one at t = 5 and at t = 71 it was rounding noise (5e-16 wide). Every real run of
#: docs/benchmarks.md has |l_2|^100 >= 0.01, so the bound leaves them alone.
MIXED_BELOW = 1e-4


def mixing_limit(eigenvalues: np.ndarray, floor: float = MIXED_BELOW) -> int | None:
    """The largest t whose ``P^t`` has not mixed: ``|l_2|^t >= floor``, at least 1.

    Parameters
    ----------
    eigenvalues : ndarray, shape (n,), descending (the first is the stationary 1)

    Returns
    -------
    int, or None when ``P^t`` never mixes (a second eigenvalue of 1: a disconnected operator,
    or one landmark).
    """
    lam = np.abs(np.asarray(eigenvalues, dtype=np.float64)[1:])
    if lam.size == 0:
        return None
    slowest = float(lam.max())
    if slowest >= 1.0 - 1e-12:
        return None
    if slowest <= 0.0:
        return 1
    return max(1, int(np.floor(np.log(floor) / np.log(slowest))))


class MixedDiffusionWarning(UserWarning):
    """The diffusion time is past mixing (:func:`mixing_limit`): the picture may be mostly rounding."""


def mixed_message(t: int, limit: int, eigenvalues: np.ndarray) -> str:
    slowest = float(np.abs(np.asarray(eigenvalues)[1:]).max())
    return (
        f"t={t} is past mixing: the operator's second eigenvalue is {slowest:.3g}, so every "
        f"component of P^t but the stationary one is below {slowest ** t:.1g} of it. The picture "
        f"rests on differences that approach the float32 rounding of the potential (about 1e-7) "
        f"and can be mostly noise. Choose t <= {limit} or t='auto'. A trace whose units are mostly "
        f"dead or identical mixes fast"
    )


class AmbiguousKneeWarning(UserWarning):
    """The entropy curve has two knees that fit about equally well, so t="knee" is fragile."""


def ambiguous_knee_message(candidates: list[int]) -> str:
    chosen, others = candidates[0], candidates[1:]
    alternatives = " and ".join(f"t={t}" for t in others)
    return (
        f"the von Neumann entropy curve has {len(candidates)} knees that fit about equally well: "
        f"t={chosen} (taken) and {alternatives}. Which one wins can turn on tiny changes of the "
        f"trace, and the pictures can differ a lot (a larger t smooths more); compare them with "
        f"set_params(t=...) (refitting reuses the kernel and landmarks) and "
        f"mphate.plot.plot_entropy"
    )


def potential(transition: np.ndarray, gamma: float, inplace: bool = False) -> np.ndarray:
    """Transform diffused probabilities into a potential.

    ``gamma = 1`` is the log potential ``-log(P + eps)``; otherwise
    ``2 / (1 - gamma) * P ** ((1 - gamma) / 2)``, so ``gamma = 0`` (M-PHATE's default) is the
    square-root potential ``2 * sqrt(P)`` and ``gamma = -1`` is ``P`` itself.
    """
    if not -1 <= gamma <= 1:
        raise ValueError(f"gamma must be in [-1, 1]; got {gamma}")
    if gamma == 1:
        return -np.log(transition + 1e-7)
    if gamma == 0:
        # the default: in place, to avoid another n x n array
        result = np.sqrt(transition, out=transition if inplace else None)
        result *= 2
        return result
    exponent = (1 - gamma) / 2
    return (2 / (1 - gamma)) * np.power(transition, exponent)
