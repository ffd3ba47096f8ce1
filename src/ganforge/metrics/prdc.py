"""k-NN precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

Each sample gets a ball whose radius is the distance to its k-th nearest neighbour in its own
set (itself excluded). Precision: share of fake samples inside some real ball. Recall: share of
real samples inside some fake ball. Density: number of real balls holding each fake sample,
averaged and divided by k (about 1 when the sets match; can exceed 1). Coverage: share of real
balls that hold at least one fake sample. Balls are closed (distance <= radius), as in the
papers' definitions.

Distances come from torch.cdist on row chunks, so no full N x M matrix is held at once. They are
computed in float64: cdist's matmul form |x|^2 + |y|^2 - 2 x.y cancels catastrophically in
float32 when clusters are tight relative to their distance from the origin (the 2-D mixtures
have std 0.02 at radius 2), which would let rounding decide who is inside a ball.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def _as_points(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().to(torch.float64)
    else:
        # a copy: torch warns on read-only arrays such as the frozen mixture centres
        t = torch.tensor(np.asarray(x, dtype=np.float64))
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{what} must have shape (N, d) with N >= 1, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN or inf")
    return t


def _check(real: torch.Tensor, fake: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return fake.to(real.device)


def _distance_chunks(
    a: torch.Tensor, b: torch.Tensor, chunk: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    for start in range(0, a.shape[0], chunk):
        rows = slice(start, min(start + chunk, a.shape[0]))
        yield rows, torch.cdist(a[rows], b)


def _knn_radii(pts: torch.Tensor, k: int, chunk: int, what: str) -> torch.Tensor:
    if not 1 <= k < pts.shape[0]:
        raise ValueError(
            f"k={k} needs more than k samples in {what}; it has {pts.shape[0]}"
        )
    out = torch.empty(pts.shape[0], dtype=torch.float64, device=pts.device)
    for rows, dist in _distance_chunks(pts, pts, chunk):
        # the (k+1)-th smallest including self skips the self-distance even when rounding
        # leaves it above 0 or duplicates tie with it
        out[rows] = dist.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def knn_radii(x: Any, k: int, *, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (float64, shape (N,))."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return _knn_radii(_as_points(x, "x"), k, chunk, "x")


def _balls_holding(
    points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int
) -> torch.Tensor:
    """For each point, how many balls (centres[i], radii[i]) contain it."""
    # ball centres are the cdist rows, as when their radii were measured: a point equal to a
    # centre's k-th neighbour then gets bit-identical distances and lands on the boundary
    counts = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    for rows, dist in _distance_chunks(centres, points, chunk):
        counts += (dist <= radii[rows, None]).sum(dim=0)
    return counts


def _covered(
    centres: torch.Tensor, radii: torch.Tensor, points: torch.Tensor, chunk: int
) -> torch.Tensor:
    """For each ball (centres[i], radii[i]), whether some point lies inside it."""
    hit = torch.empty(centres.shape[0], dtype=torch.bool, device=centres.device)
    for rows, dist in _distance_chunks(centres, points, chunk):
        hit[rows] = dist.min(dim=1).values <= radii[rows]
    return hit


def prdc(real: Any, fake: Any, *, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """Precision, recall, density and coverage with one k (Naeem et al. recommend k=5).

    ``real`` (N, d) and ``fake`` (M, d) are numpy arrays or tensors of features; ``chunk`` rows
    are compared at a time.
    """
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    f = _check(r, f, k, chunk)
    real_radii = _knn_radii(r, k, chunk, "real")
    fake_radii = _knn_radii(f, k, chunk, "fake")
    in_real = _balls_holding(f, r, real_radii, chunk)
    return {
        "precision": float((in_real > 0).double().mean()),
        "recall": float((_balls_holding(r, f, fake_radii, chunk) > 0).double().mean()),
        "density": float(in_real.double().sum() / (k * f.shape[0])),
        "coverage": float(_covered(r, real_radii, f, chunk).double().mean()),
    }


def precision_recall(real: Any, fake: Any, *, k: int = 3, chunk: int = 1024) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019; their default k=3)."""
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    f = _check(r, f, k, chunk)
    return {
        "precision": precision(r, f, k=k, chunk=chunk),
        "recall": recall(r, f, k=k, chunk=chunk),
    }


def density_coverage(real: Any, fake: Any, *, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020; their default k=5)."""
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    f = _check(r, f, k, chunk)
    radii = _knn_radii(r, k, chunk, "real")
    return {
        "density": float(_balls_holding(f, r, radii, chunk).double().sum() / (k * f.shape[0])),
        "coverage": float(_covered(r, radii, f, chunk).double().mean()),
    }


def precision(real: Any, fake: Any, *, k: int = 3, chunk: int = 1024) -> float:
    """Share of fake samples inside the union of real k-NN balls."""
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    f = _check(r, f, k, chunk)
    radii = _knn_radii(r, k, chunk, "real")
    return float((_balls_holding(f, r, radii, chunk) > 0).double().mean())


def recall(real: Any, fake: Any, *, k: int = 3, chunk: int = 1024) -> float:
    """Share of real samples inside the union of fake k-NN balls."""
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    f = _check(r, f, k, chunk)
    radii = _knn_radii(f, k, chunk, "fake")
    return float((_balls_holding(r, f, radii, chunk) > 0).double().mean())


def density(real: Any, fake: Any, *, k: int = 5, chunk: int = 1024) -> float:
    """Mean number of real k-NN balls holding a fake sample, divided by k."""
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    f = _check(r, f, k, chunk)
    radii = _knn_radii(r, k, chunk, "real")
    return float(_balls_holding(f, r, radii, chunk).double().sum() / (k * f.shape[0]))


def coverage(real: Any, fake: Any, *, k: int = 5, chunk: int = 1024) -> float:
    """Share of real k-NN balls that hold at least one fake sample."""
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    f = _check(r, f, k, chunk)
    radii = _knn_radii(r, k, chunk, "real")
    return float(_covered(r, radii, f, chunk).double().mean())
