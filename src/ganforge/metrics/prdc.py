"""k-NN precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

Each sample gets a ball whose radius is the distance to its k-th nearest neighbour in its own
set (itself excluded). Precision: share of fake samples inside some real ball. Recall: share of
real samples inside some fake ball. Density: number of real balls holding each fake sample,
averaged and divided by k (1 when the sets match: a set against itself gives exactly 1).
Coverage: share of real balls that hold at least one fake sample.

Which ball, as in each metric's reference code:

- precision, recall: *closed* balls (distance <= radius), as in Kynkäänniemi et al.'s
  ``precision_recall.py`` (``distance_batch <= self.D``);
- density, coverage: *open* balls (distance < radius), as in Naeem et al.'s ``prdc`` package
  (``distance_real_fake < radii``). A ball then holds its centre and its k - 1 nearest
  neighbours, not k + 1 points, which is what makes a set's density against itself 1.0.

The two differ only where a distance equals a radius exactly: data with ties (duplicates,
discrete or quantised features). The ``prdc`` package computes precision and recall with open
balls too, so on such data its precision/recall differ from these (and from the paper's code).

Distances come from torch.cdist on row chunks, so no full N x M matrix is held at once; the
radii for every k asked for come from one k-NN pass per set and the real-fake distances are
computed once for all four metrics. They are computed in float64: cdist's matmul form
|x|^2 + |y|^2 - 2 x.y cancels catastrophically in float32 when clusters are tight relative to
their distance from the origin (the 2-D mixtures have std 0.02 at radius 2), which would let
rounding decide who is inside a ball.
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


def knn_radii(x: Any, k: int, *, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (float64, shape (N,))."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return _all_radii(_as_points(x, "x"), {k}, chunk, "x")[k]


PR_METRICS = ("precision", "recall")  # Kynkäänniemi et al.: closed balls, their k = 3
DC_METRICS = ("density", "coverage")  # Naeem et al.: open balls, their k = 5
ALL_METRICS = PR_METRICS + DC_METRICS


def _all_radii(pts: torch.Tensor, ks: set[int], chunk: int, what: str) -> dict[int, torch.Tensor]:
    """k-NN radii of ``pts`` for every k in ``ks`` from one pass over the distances."""
    top = max(ks)
    if not 1 <= min(ks) <= top < pts.shape[0]:
        raise ValueError(f"k={top} needs more than k samples in {what}; it has {pts.shape[0]}")
    out = {k: torch.empty(pts.shape[0], dtype=torch.float64, device=pts.device) for k in ks}
    for rows, dist in _distance_chunks(pts, pts, chunk):
        # the (k+1)-th smallest including self skips the self-distance even when rounding
        # leaves it above 0 or duplicates tie with it
        near = dist.topk(top + 1, dim=1, largest=False).values
        for k in ks:
            out[k][rows] = near[:, k]
    return out


def knn_metrics(real: Any, fake: Any, *, k_pr: int = 3, k_dc: int = 5,
                metrics: tuple[str, ...] | list[str] | set[str] = ALL_METRICS,
                chunk: int = 1024) -> dict[str, float]:
    """The ``metrics`` asked for (any of precision, recall, density, coverage) in one pass.

    ``k_pr`` is the k of precision/recall, ``k_dc`` that of density/coverage; each set's k-NN
    distances and the real-fake distances are computed once, whatever is asked for.
    """
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown k-NN metrics {sorted(unknown)}; valid: {', '.join(ALL_METRICS)}")
    want = set(metrics)
    r, f = _as_points(real, "real"), _as_points(fake, "fake")
    for k in (k_pr, k_dc):
        f = _check(r, f, k, chunk)
    real_ks = ({k_pr} if "precision" in want else set()) | ({k_dc} if want & set(DC_METRICS)
                                                             else set())
    real_radii = _all_radii(r, real_ks, chunk, "real") if real_ks else {}
    out: dict[str, float] = {}

    if real_ks:
        in_closed = torch.zeros(f.shape[0], dtype=torch.bool, device=f.device)
        in_open = torch.zeros(f.shape[0], dtype=torch.long, device=f.device)
        covered = torch.empty(r.shape[0], dtype=torch.bool, device=r.device)
        # ball centres are the cdist rows, as when their radii were measured: a point equal to
        # a centre's k-th neighbour then gets bit-identical distances and lands on the boundary
        for rows, dist in _distance_chunks(r, f, chunk):
            if "precision" in want:
                in_closed |= (dist <= real_radii[k_pr][rows, None]).any(dim=0)
            if want & set(DC_METRICS):
                radii = real_radii[k_dc][rows]
                in_open += (dist < radii[:, None]).sum(dim=0)
                covered[rows] = dist.min(dim=1).values < radii
        if "precision" in want:
            out["precision"] = float(in_closed.double().mean())
        if "density" in want:
            out["density"] = float(in_open.double().sum() / (k_dc * f.shape[0]))
        if "coverage" in want:
            out["coverage"] = float(covered.double().mean())

    if "recall" in want:
        fake_radii = _all_radii(f, {k_pr}, chunk, "fake")[k_pr]
        in_fake = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
        for rows, dist in _distance_chunks(f, r, chunk):  # fake centres as rows, as above
            in_fake |= (dist <= fake_radii[rows, None]).any(dim=0)
        out["recall"] = float(in_fake.double().mean())
    return {name: out[name] for name in ALL_METRICS if name in out}


def prdc(real: Any, fake: Any, *, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """Precision, recall, density and coverage with one k (Naeem et al. recommend k=5).

    ``real`` (N, d) and ``fake`` (M, d) are numpy arrays or tensors of features; ``chunk`` rows
    are compared at a time. Balls as in the module docstring (closed for precision/recall).
    """
    return knn_metrics(real, fake, k_pr=k, k_dc=k, chunk=chunk)


def precision_recall(real: Any, fake: Any, *, k: int = 3, chunk: int = 1024) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019; their default k=3), closed balls."""
    return knn_metrics(real, fake, k_pr=k, k_dc=k, metrics=PR_METRICS, chunk=chunk)


def density_coverage(real: Any, fake: Any, *, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020; their default k=5), open balls."""
    return knn_metrics(real, fake, k_pr=k, k_dc=k, metrics=DC_METRICS, chunk=chunk)


def precision(real: Any, fake: Any, *, k: int = 3, chunk: int = 1024) -> float:
    """Share of fake samples inside the union of closed real k-NN balls."""
    return knn_metrics(real, fake, k_pr=k, k_dc=k, metrics=("precision",), chunk=chunk)[
        "precision"]


def recall(real: Any, fake: Any, *, k: int = 3, chunk: int = 1024) -> float:
    """Share of real samples inside the union of closed fake k-NN balls."""
    return knn_metrics(real, fake, k_pr=k, k_dc=k, metrics=("recall",), chunk=chunk)["recall"]


def density(real: Any, fake: Any, *, k: int = 5, chunk: int = 1024) -> float:
    """Mean number of open real k-NN balls holding a fake sample, divided by k."""
    return knn_metrics(real, fake, k_pr=k, k_dc=k, metrics=("density",), chunk=chunk)["density"]


def coverage(real: Any, fake: Any, *, k: int = 5, chunk: int = 1024) -> float:
    """Share of open real k-NN balls that hold at least one fake sample."""
    return knn_metrics(real, fake, k_pr=k, k_dc=k, metrics=("coverage",), chunk=chunk)[
        "coverage"]
