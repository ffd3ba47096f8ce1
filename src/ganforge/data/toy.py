"""The 1-D toy data of the tutorials: a normal, or a mixture of normals."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import GanforgeError
from .base import Dataset, DrawSampler, Sampler

PLOT_POINTS = 400  # where D's curve is evaluated across plot_range()


@dataclass
class Gaussian1D(Dataset):
    means: list[float] = field(default_factory=lambda: [4.0])
    stds: list[float] = field(default_factory=lambda: [0.5])
    weights: list[float] | None = None
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        w = torch.tensor(self.weights or [1.0] * len(self.means), dtype=torch.float64)
        self._w = (w / w.sum()).float()

    def to(self, device: torch.device) -> Gaussian1D:
        self.device = torch.device(device)
        return self

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        dev = generator.device
        mu = torch.tensor(self.means, device=dev)
        sd = torch.tensor(self.stds, device=dev)
        if len(self.means) == 1:
            comp = torch.zeros(n, dtype=torch.long, device=dev)
        else:
            comp = torch.multinomial(self._w.to(dev), n, replacement=True, generator=generator)
        eps = torch.randn(n, generator=generator, device=dev)
        return (mu[comp] + sd[comp] * eps).unsqueeze(1).to(self.device)

    def sampler(self, batch_size: int, generator: torch.Generator) -> Sampler:
        return DrawSampler(self, batch_size, generator)

    def real_samples(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.draw(n, generator)

    def pdf(self, xs: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(xs, dtype=torch.float64)
        for w, m, s in zip(self._w.tolist(), self.means, self.stds, strict=True):
            out += w * torch.exp(-0.5 * ((xs.double() - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
        return out

    def plot_range(self) -> tuple[float, float]:
        """An x axis that shows every component and the origin, where G starts out."""
        lo = min(m - 4 * s for m, s in zip(self.means, self.stds, strict=True))
        hi = max(m + 4 * s for m, s in zip(self.means, self.stds, strict=True))
        return min(lo, -1.0), max(hi, 1.0)

    def plot(self, fake: torch.Tensor, path: Path, *, title: str,
             critic: Callable[[torch.Tensor], torch.Tensor] | None = None,
             value_range: tuple[float, float] = (0.0, 1.0), nrow: int | None = None) -> None:
        """The data's density, a histogram of ``fake`` and ``critic`` across ``plot_range()``
        (no curve without one); ``value_range`` and ``nrow`` mean nothing for points."""
        from .. import viz

        self._check_fake(fake)
        # on fake's device: the critic is D, which lives where G does
        xs = torch.linspace(*self.plot_range(), PLOT_POINTS, device=fake.device)
        d_of_x = None
        if critic is not None:
            d_of_x = critic(xs.unsqueeze(1)).detach().reshape(-1)
            if d_of_x.numel() != PLOT_POINTS:
                raise GanforgeError(f"{self.name}: plot()'s critic gave {d_of_x.numel()} values "
                                    f"for {PLOT_POINTS} points; expected one per point")
            d_of_x = d_of_x.float().cpu().numpy()
        xs = xs.cpu()
        viz.plot_density_1d(xs.numpy(), self.pdf(xs).numpy(),
                            fake.detach().reshape(-1).float().cpu().numpy(), d_of_x, path,
                            title=title)

    @property
    def mean(self) -> float:
        return float(sum(w * m for w, m in zip(self._w.tolist(), self.means, strict=True)))

    @property
    def std(self) -> float:
        w = self._w.tolist()
        second = sum(wi * (s**2 + m**2) for wi, m, s in zip(w, self.means, self.stds, strict=True))
        return math.sqrt(second - self.mean**2)
