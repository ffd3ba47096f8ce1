"""Evaluation metrics, looked up by name in ``METRICS``.

Each entry is a plain function. Feature-based metrics (fid, kid, precision, recall, density,
coverage) take two (N, d) arrays or tensors of features from the same embedding; ``is`` takes
class probabilities; ``modes`` takes 2-D samples and a mixture name; ``classes`` takes
the dataset classifier's logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry
from .classes import class_histogram
from .fid import fid, fid_eps, frechet_distance, frechet_distance_eps, gaussian_stats
from .inception_score import inception_score
from .kid import kid, kid_subset_size, mmd2_unbiased
from .modes import count_modes_2d, count_modes_stacked
from .prdc import (
    coverage,
    density,
    density_coverage,
    knn_metrics,
    knn_radii,
    prdc,
    precision,
    precision_recall,
    recall,
)

METRICS: Registry[Callable[..., Any]] = Registry("metric")

METRICS.register(
    "fid", "fid(feats_a, feats_b) -> float: Frechet distance of Gaussians fitted to two (N, d) "
    "feature sets; lower is better"
)(fid)
METRICS.register(
    "kid", "kid(feats_a, feats_b, *, n_subsets=100, subset_size=None, seed=0) -> (mean, std): "
    "unbiased MMD^2, cubic polynomial kernel, over random subsets of min(1000, N // 2); ~0 when "
    "matched"
)(kid)
METRICS.register(
    "is", "inception_score(probs, *, splits=10, from_logits=False, seed=0) -> (mean, std): from "
    "(N, C) class probabilities, shuffled then split; 1 to C, higher is better"
)(inception_score)
METRICS.register(
    "precision", "precision(real, fake, *, k=3, chunk=1024) -> float: share of fake (M, d) "
    "inside the closed real (N, d) k-NN balls"
)(precision)
METRICS.register(
    "recall", "recall(real, fake, *, k=3, chunk=1024) -> float: share of real (N, d) inside "
    "the closed fake (M, d) k-NN balls"
)(recall)
METRICS.register(
    "density", "density(real, fake, *, k=5, chunk=1024) -> float: open real k-NN balls per "
    "fake sample, over k; ~1 when matched"
)(density)
METRICS.register(
    "coverage", "coverage(real, fake, *, k=5, chunk=1024) -> float: share of open real k-NN "
    "balls holding a fake sample"
)(coverage)
METRICS.register(
    "modes", "count_modes_2d(samples, mixture, *, strict_share=0.1) -> dict: modes captured, "
    "high-quality share and KL for (N, 2) samples of a 2-D mixture (ring-8, grid-25)"
)(count_modes_2d)
METRICS.register(
    "classes", "class_histogram(logits, *, confidence=0.9, min_share=0.1) -> dict: classes "
    "covered, KL to uniform, share classified with max softmax >= 0.9 and the histogram, from "
    "the dataset classifier's (N, K) logits of generated samples (mnist, fashion-mnist)"
)(class_histogram)

__all__ = [
    "METRICS",
    "class_histogram",
    "count_modes_2d",
    "count_modes_stacked",
    "coverage",
    "density",
    "density_coverage",
    "fid",
    "fid_eps",
    "frechet_distance",
    "frechet_distance_eps",
    "gaussian_stats",
    "inception_score",
    "kid",
    "kid_subset_size",
    "knn_metrics",
    "knn_radii",
    "mmd2_unbiased",
    "precision",
    "precision_recall",
    "prdc",
    "recall",
]
