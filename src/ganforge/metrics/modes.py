"""Mode counts for the mode-collapse benchmarks: the 2-D mixtures and Stacked MNIST.

2-D (VEEGAN, Srivastava et al. 2017, Sec. 5.1 and Table 1; PacGAN, Lin et al. 2018, Table 2,
which follows VEEGAN): a sample is *high quality* if it lies within three standard deviations
(Euclidean distance <= 3 std) of its nearest mode centre; the number of *modes captured* is the
number of centres that are nearest to at least one high-quality sample. Reported here as
``modes``.

``modes_strict`` is ganforge's own stricter count, not a number from those tables: a mode
counts only if it received at least ``strict_share`` (default 10%) of the samples a perfect
generator would give it, i.e. ceil(strict_share * N / K) high-quality samples, at least 1. It
exists because a handful of stray samples lets a collapsed generator "capture" a mode under the
lenient rule; 10% rather than 1% because at the papers' budget (2,500 samples, 25 modes) 1% of
the expected 100 is a single sample, which is the lenient rule again.

KL (as PacGAN reports it): KL(p || uniform) where p is the normalised histogram of samples over
modes. Empty bins contribute 0 (p log p -> 0 as p -> 0), so no epsilon is needed, and the value
lies in [0, log K]: 0 for a perfectly balanced generator, log K when everything hits one mode.
For 2-D, p is over high-quality samples only; with none, KL is inf.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data.mixtures2d import Mixture2D, get_mixture

STACKED_MODES = 1000


def _kl_to_uniform(counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0:
        return math.inf
    p = counts[counts > 0] / total
    # a balanced histogram gives 0 up to rounding; clamp so it never prints as -1e-17
    return float(max(0.0, np.sum(p * np.log(p * counts.size))))


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def count_modes_2d(
    samples: Any, mixture: str | Mixture2D, *, strict_share: float = 0.1
) -> dict[str, float | int]:
    """Mode statistics of generated 2-D ``samples`` (N, 2) against a mixture (name or object).

    Returns ``modes`` (VEEGAN/PacGAN count), ``modes_strict`` (see the module docstring),
    ``strict_min_count`` (the per-mode threshold it used), ``high_quality`` (fraction of samples
    within 3 std of their nearest centre), ``kl`` (KL of the high-quality histogram over modes
    to uniform; inf if no sample is high quality) and ``n_modes`` (K).
    """
    mix = get_mixture(mixture)
    x = _as_numpy(samples).astype(np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] == 0:
        raise ValueError(f"samples must have shape (N, 2) with N >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or inf")
    if not 0.0 < strict_share <= 1.0:
        raise ValueError(f"strict_share must be in (0, 1], got {strict_share}")

    dist = np.linalg.norm(x[:, None, :] - mix.centres[None, :, :], axis=2)
    nearest = dist.argmin(axis=1)
    good = dist[np.arange(x.shape[0]), nearest] <= 3.0 * mix.std
    counts = np.bincount(nearest[good], minlength=mix.n_modes)

    n, k = x.shape[0], mix.n_modes
    # the slack keeps 0.1 * 2500 / 25 = 10.000000000000002 from rounding up to 11
    min_count = max(1, math.ceil(strict_share * n / k - 1e-9))
    return {
        "modes": int((counts > 0).sum()),
        "modes_strict": int((counts >= min_count).sum()),
        "strict_min_count": int(min_count),
        "high_quality": float(good.mean()),
        "kl": _kl_to_uniform(counts),
        "n_modes": k,
    }


def count_modes_stacked(class_ids: Any) -> dict[str, float | int]:
    """Stacked MNIST modes from per-channel digit predictions ``class_ids`` (N, 3), ints 0..9.

    Mode id = 100 * d0 + 10 * d1 + d2. Returns ``modes`` (distinct ids seen, as in Unrolled
    GAN, VEEGAN and PacGAN), ``kl`` (KL of the histogram over all 1000 ids to uniform, empty
    bins contributing 0) and ``n_modes`` (1000).
    """
    ids = _as_numpy(class_ids)
    if ids.ndim != 2 or ids.shape[1] != 3 or ids.shape[0] == 0:
        raise ValueError(f"class_ids must have shape (N, 3) with N >= 1, got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"class_ids must be integers, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() > 9:
        raise ValueError("class_ids must be digits 0..9")
    ids = ids.astype(np.int64)
    mode = 100 * ids[:, 0] + 10 * ids[:, 1] + ids[:, 2]
    counts = np.bincount(mode, minlength=STACKED_MODES)
    return {
        "modes": int((counts > 0).sum()),
        "kl": _kl_to_uniform(counts),
        "n_modes": STACKED_MODES,
    }
