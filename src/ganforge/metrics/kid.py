"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random
subsets. Unlike FID its expectation is exactly the population value, so it is fair to compare
across sample sizes, and it can come out (slightly) negative when the two sets match.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import as_float64_2d


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two (m, d) float64 arrays under the KID kernel (needs m >= 2)."""
    m = x.shape[0]
    if m < 2 or y.shape[0] != m:
        raise ValueError(f"need two sets of equal size >= 2, got {m} and {y.shape[0]}")
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    # the diagonal k(x_i, x_i) pairs a sample with itself; keeping it is the biased V-statistic
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.mean())


SUBSET_SIZE = 1000  # Bińkowski et al.'s subset size (and torch-fidelity's, clean-fid's)


def kid_subset_size(n_a: int, n_b: int, requested: int | None = None) -> int:
    """The subset size KID uses for sets of ``n_a`` and ``n_b`` vectors.

    The rule: each subset holds at most half of the smaller set, so that two random subsets
    differ in at least half their rows and their spread is an error bar. (A subset as large as
    the set is the same rows every time: the old silent clip to N gave std ~1e-16 at N <= 1000.)
    ``requested=None`` takes ``min(1000, min(n_a, n_b) // 2)``; a larger explicit request, or
    sets too small for subsets of 2, raise ValueError naming the rule.
    """
    half = min(n_a, n_b) // 2
    if half < 2:
        raise ValueError(f"KID needs at least 4 vectors in each set (subsets of at most half "
                         f"the smaller set, and at least 2), got {n_a} and {n_b}")
    if requested is None:
        return min(SUBSET_SIZE, half)
    if not 2 <= requested <= half:
        raise ValueError(f"KID subset_size must be between 2 and half the smaller set "
                         f"({min(n_a, n_b)} // 2 = {half}), got {requested}")
    return requested


def kid(
    feats_a: Any,
    feats_b: Any,
    *,
    n_subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (mean, std over subsets) between two (N, d) feature sets, computed in float64.

    Each of ``n_subsets`` draws takes m vectors without replacement from each set and computes
    the unbiased MMD^2; m is :func:`kid_subset_size` (1000, or half the smaller set below 2000
    vectors). ``std`` is the spread of those estimates (ddof=0): the error of one size-m
    estimate drawn from these sets, not a standard error of the mean. ``seed`` fixes the draws.
    """
    a = as_float64_2d(feats_a, "feats_a")
    b = as_float64_2d(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    m = kid_subset_size(a.shape[0], b.shape[0], subset_size)
    rng = np.random.default_rng(seed)
    values = np.empty(n_subsets)
    for i in range(n_subsets):
        xa = a[rng.choice(a.shape[0], m, replace=False)]
        xb = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = mmd2_unbiased(xa, xb)
    return float(values.mean()), float(values.std())
