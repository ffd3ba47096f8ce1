"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, FID).

FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)). Everything is float64: the trace of the
square root is a difference of large, nearly equal numbers, and float32 loses it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg

from ._arrays import as_float64_2d

EPS = 1e-6  # added to both covariances when (S1 S2)^(1/2) cannot be trusted, as TTUR/pytorch-fid
MAX_IMAG = 1e-3  # larger imaginary parts on the diagonal mean the square root itself failed


def _rank_warning(x: np.ndarray, what: str, stacklevel: int) -> None:
    n, d = x.shape
    # np.cov of N vectors has rank <= N - 1, so N == d is already rank-deficient
    if n <= d:
        warnings.warn(
            f"{what}: {n} vectors of dimension {d}; the covariance is rank-deficient and FID "
            f"is strongly biased (use more samples than dimensions)",
            stacklevel=stacklevel + 1,
        )


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def gaussian_stats(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d), both float64, of an (N, d) feature array or tensor.

    Cache these for the real data: FID then needs only the generated features. Warns when
    N <= d (rank-deficient covariance).
    """
    x = as_float64_2d(feats, "features")
    _rank_warning(x, "features", stacklevel=2)
    return _stats(x)


def _numerically_singular(m: np.ndarray) -> bool:
    # the matrix_rank tolerance: only a truly rank-deficient product triggers the eps retry, so
    # merely ill-conditioned covariances (normal for Inception features) keep the reference value
    s = np.linalg.svd(m, compute_uv=False)
    return bool(s[-1] <= s[0] * max(m.shape) * np.finfo(np.float64).eps)


def _offset_warning(why: str) -> None:
    warnings.warn(f"FID: {why}; adding {EPS:g} to the covariance diagonals", stacklevel=3)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    If the product sigma1 @ sigma2 is numerically singular, or its square root comes back
    non-finite, ``EPS * I`` is added to both covariances (with a warning) and the root retaken.
    Raises ValueError if the root has an imaginary diagonal part larger than ``MAX_IMAG``.
    """
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {m1.shape}, sigma1 {s1.shape}, mu2 {m2.shape}, "
            f"sigma2 {s2.shape}"
        )

    prod = s1 @ s2
    covmean = None
    if _numerically_singular(prod):
        _offset_warning("the covariance product is singular")
    else:
        covmean = scipy.linalg.sqrtm(prod)
        if not np.isfinite(covmean).all():
            _offset_warning("the square root of the covariance product is not finite")
            covmean = None
    if covmean is None:
        eye = EPS * np.eye(d)
        covmean = scipy.linalg.sqrtm((s1 + eye) @ (s2 + eye))
        if not np.isfinite(covmean).all():
            raise ValueError("FID: the square root of the covariance product is not finite")

    if np.iscomplexobj(covmean):
        imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if imag > MAX_IMAG:
            raise ValueError(f"FID: the matrix square root has imaginary component {imag:.3g}")
        covmean = covmean.real

    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid(feats_a: Any, feats_b: Any) -> float:
    """FID between two (N, d) feature sets (numpy or torch); warns if N <= d for either set."""
    a = as_float64_2d(feats_a, "feats_a")
    b = as_float64_2d(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    _rank_warning(a, "feats_a", stacklevel=2)
    _rank_warning(b, "feats_b", stacklevel=2)
    mu1, s1 = _stats(a)
    mu2, s2 = _stats(b)
    return frechet_distance(mu1, s1, mu2, s2)
