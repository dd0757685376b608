"""Orthogonal Procrustes with scale: put a refitted picture in the frame of the previous one.

Two fits of M-PHATE on nearly the same trace draw nearly the same shape, but rotated, flipped
and scaled differently (the MDS solution is only defined up to a similarity transform).
Aligning the new fit to the previous frame on the points both share keeps the picture from
jumping; what is left after the best alignment (the residual) says how much the shape itself
changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SimilarityTransform:
    """``x -> scale * x @ rotation + shift``: rotation (or reflection), uniform scale, shift.

    Attributes
    ----------
    scale : float
    rotation : ndarray, shape (d, d), orthogonal (determinant +1 or -1)
    shift : ndarray, shape (d,)
    """

    scale: float
    rotation: np.ndarray
    shift: np.ndarray

    @classmethod
    def identity(cls, n_dims: int) -> "SimilarityTransform":
        return cls(1.0, np.eye(n_dims), np.zeros(n_dims))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform rows of ``points``, shape (n, d) -> (n, d), float64."""
        return self.scale * (np.asarray(points, dtype=np.float64) @ self.rotation) + self.shift


def procrustes(reference: np.ndarray, moving: np.ndarray) -> tuple[SimilarityTransform, float]:
    """The similarity transform that best maps ``moving`` onto ``reference`` (least squares).

    Parameters
    ----------
    reference : ndarray, shape (n, d)
        The points as they are drawn now.
    moving : ndarray, shape (n, d)
        The same points (same rows) in a new fit.

    Returns
    -------
    transform : SimilarityTransform
        ``transform.apply(moving)`` is as close to ``reference`` as a rotation, reflection,
        uniform scale and shift can make it.
    residual : float
        ``|transform.apply(moving) - reference| / |reference - mean(reference)|`` (Frobenius
        norms): 0 for the same shape, about 1.4 for unrelated point clouds.
    """
    reference = np.asarray(reference, dtype=np.float64)
    moving = np.asarray(moving, dtype=np.float64)
    if reference.shape != moving.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(
            f"procrustes needs two non-empty (n, d) arrays of the same shape; got {reference.shape} "
            f"and {moving.shape}"
        )
    ref_mean, mov_mean = reference.mean(axis=0), moving.mean(axis=0)
    ref0, mov0 = reference - ref_mean, moving - mov_mean
    # the rotation maximising trace(R^T mov0^T ref0) is U V^T of the SVD of mov0^T ref0;
    # no determinant fix: a reflection is as good an alignment as a rotation here
    u, sigma, vt = np.linalg.svd(mov0.T @ ref0)
    rotation = u @ vt
    mov_norm = float((mov0 * mov0).sum())
    scale = float(sigma.sum() / mov_norm) if mov_norm > 0 else 1.0
    shift = ref_mean - scale * (mov_mean @ rotation)
    transform = SimilarityTransform(scale, rotation, shift)
    ref_norm = float(np.sqrt((ref0 * ref0).sum()))
    error = float(np.sqrt(((transform.apply(moving) - reference) ** 2).sum()))
    return transform, (error / ref_norm if ref_norm > 0 else 0.0)
