"""Which classes a generator makes: the class histogram of its samples under a classifier.

For labelled image data (MNIST digits, Fashion-MNIST clothes) mode collapse shows as missing
classes, which FID mixes with sample quality. ``class_histogram`` takes the classifier's
logits for N generated samples and returns:

- ``classes``: classes *covered*: those predicted for at least ``min_share`` (default 10%) of
  the samples a perfectly balanced generator would give each, i.e. ceil(0.1 * N / K), at
  least 1. A few stray samples do not make a class covered (the same rule as
  ``modes_strict`` in :mod:`ganforge.metrics.modes`; with 10,000 samples and 10 classes a class
  needs 100).
- ``classes_kl``: KL(p || uniform) of the histogram p of predicted classes (argmax) over all
  samples: 0 when balanced, log K when every sample is one class. Empty classes contribute 0.
- ``classes_confident``: share of samples whose top softmax probability is at least
  ``confidence`` (default 0.9): how many samples the classifier reads as a clear digit.
- ``classes_hist``: the histogram itself, a list of K counts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .modes import _kl_to_uniform

CONFIDENCE = 0.9  # max softmax probability for a sample to count as clearly classified
MIN_SHARE = 0.1  # share of the balanced count a class needs to be covered


def class_histogram(logits: Any, *, confidence: float = CONFIDENCE,
                    min_share: float = MIN_SHARE) -> dict[str, Any]:
    """Class statistics of (N, K) classifier ``logits`` of generated samples (see the module
    docstring): ``classes``, ``classes_kl``, ``classes_confident``, ``classes_hist``,
    ``classes_min_count`` (the per-class threshold used) and ``n_classes`` (K)."""
    x = torch.as_tensor(logits).detach().to("cpu", torch.float64)
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, K) with N >= 1, K >= 2, got "
                         f"{tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("logits contain NaN or inf")
    if not 0.0 < confidence <= 1.0 or not 0.0 < min_share <= 1.0:
        raise ValueError(f"confidence and min_share must be in (0, 1], got {confidence}, "
                         f"{min_share}")
    n, k = x.shape
    probs = x.softmax(dim=1)
    top, pred = probs.max(dim=1)
    counts = np.bincount(pred.numpy(), minlength=k)
    # the slack keeps 0.1 * 1000 / 10 = 10.000000000000002 from rounding up to 11
    min_count = max(1, math.ceil(min_share * n / k - 1e-9))
    return {
        "classes": int((counts >= min_count).sum()),
        "classes_kl": _kl_to_uniform(counts),
        "classes_confident": float((top >= confidence).double().mean()),
        "classes_hist": [int(c) for c in counts],
        "classes_min_count": int(min_count),
        "n_classes": int(k),
    }


__all__ = ["CONFIDENCE", "MIN_SHARE", "class_histogram"]
