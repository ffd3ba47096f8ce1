"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, FID).

FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)). Everything is float64: the trace of the
square root is a difference of large, nearly equal numbers, and float32 loses it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._arrays import as_float64_2d

EPS = 1e-6  # added to both covariances when (S1 S2)^(1/2) fails, as in TTUR and pytorch-fid
MAX_IMAG = 1e-3  # larger imaginary parts on the diagonal mean the square root failed


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


def _root(m: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The square root of ``m`` as a real matrix, or None and why it cannot be trusted."""
    import scipy.linalg  # here: ``import ganforge`` (which runs the config checks) skips scipy

    with warnings.catch_warnings():
        # scipy warns "might be inaccurate" on any singular input (every N <= d covariance);
        # the checks below decide whether the root is usable, and _rank_warning has said why
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(m)
    if not np.isfinite(root).all():
        return None, "the square root of the covariance product is not finite"
    if np.iscomplexobj(root):
        imag = float(np.max(np.abs(np.diagonal(root).imag)))
        if imag > MAX_IMAG:
            return None, f"the square root of the covariance product has imaginary part {imag:.3g}"
        root = root.real
    return root, ""


def frechet_distance_eps(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> tuple[float, float]:
    """Fréchet distance and the offset it needed: ``(value, 0.0)`` or ``(value, EPS)``.

    The square root of sigma1 @ sigma2 is taken as it is. Only when it fails (a non-finite
    result, or an imaginary diagonal part above ``MAX_IMAG``) are ``EPS * I`` added to both
    covariances and the root retaken, with a warning, as pytorch-fid does on a non-finite
    root. Ill-conditioned but usable covariances (normal for Inception features) are never
    offset, so the value is the exact formula's. Raises ValueError if the retry fails too.
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

    eps = 0.0
    covmean, why = _root(s1 @ s2)
    if covmean is None:
        warnings.warn(f"FID: {why}; adding {EPS:g} to the covariance diagonals", stacklevel=3)
        eps = EPS
        eye = EPS * np.eye(d)
        covmean, why = _root((s1 + eye) @ (s2 + eye))
        if covmean is None:
            raise ValueError(f"FID: {why}, even with {EPS:g} added to the diagonals")

    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return value, eps


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    See :func:`frechet_distance_eps` for when ``EPS * I`` is added (and how to learn that it was).
    """
    return frechet_distance_eps(mu1, sigma1, mu2, sigma2)[0]


def fid_eps(feats_a: Any, feats_b: Any) -> tuple[float, float]:
    """FID between two (N, d) feature sets and the covariance offset it needed (0.0 or EPS)."""
    a = as_float64_2d(feats_a, "feats_a")
    b = as_float64_2d(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    _rank_warning(a, "feats_a", stacklevel=3)
    _rank_warning(b, "feats_b", stacklevel=3)
    mu1, s1 = _stats(a)
    mu2, s2 = _stats(b)
    return frechet_distance_eps(mu1, s1, mu2, s2)


def fid(feats_a: Any, feats_b: Any) -> float:
    """FID between two (N, d) feature sets (numpy or torch); warns if N <= d for either set."""
    return fid_eps(feats_a, feats_b)[0]
