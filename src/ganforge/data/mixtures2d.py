"""The 2-D Gaussian mixtures of the mode-collapse literature, defined once for data and metrics.

``ring-8`` (Metz et al. 2017, Unrolled GANs; VEEGAN; PacGAN): 8 modes on a circle of radius 2,
std 0.02. ``grid-25`` (VEEGAN; PacGAN): 25 modes at {-4, -2, 0, 2, 4}^2, std 0.05. Every mixture
is uniform over its modes with isotropic noise, so a centre list and one std describe it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import GanforgeError


@dataclass(frozen=True, eq=False)
class Mixture2D:
    """Equal-weight mixture of isotropic 2-D Gaussians with one shared ``std``."""

    name: str
    centres: np.ndarray  # (K, 2) float64
    std: float

    def __post_init__(self) -> None:
        c = np.array(self.centres, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] == 0:
            raise ValueError(f"centres must have shape (K, 2), got {c.shape}")
        if not self.std > 0:
            raise ValueError(f"std must be positive, got {self.std}")
        # frozen means the definition cannot drift: freeze the array too, not just the field
        c.setflags(write=False)
        object.__setattr__(self, "centres", c)
        object.__setattr__(self, "std", float(self.std))

    @property
    def n_modes(self) -> int:
        return int(self.centres.shape[0])

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` samples (float32, shape (n, 2)) on the generator's device."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        dev = generator.device
        centres = torch.tensor(self.centres, dtype=torch.float64, device=dev)
        comp = torch.randint(self.n_modes, (n,), generator=generator, device=dev)
        noise = torch.randn(n, 2, generator=generator, device=dev, dtype=torch.float64)
        return (centres[comp] + self.std * noise).float()


def _ring(k: int, radius: float) -> np.ndarray:
    angles = 2.0 * math.pi * np.arange(k) / k
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _grid(values: list[float]) -> np.ndarray:
    return np.array([(x, y) for x in values for y in values], dtype=np.float64)


MIXTURES: dict[str, Mixture2D] = {
    "ring-8": Mixture2D("ring-8", _ring(8, 2.0), 0.02),
    "grid-25": Mixture2D("grid-25", _grid([-4.0, -2.0, 0.0, 2.0, 4.0]), 0.05),
}


def get_mixture(mixture: str | Mixture2D) -> Mixture2D:
    """The mixture named ``mixture`` (or ``mixture`` itself); unknown names are user errors."""
    if isinstance(mixture, Mixture2D):
        return mixture
    try:
        return MIXTURES[mixture]
    except KeyError:
        raise GanforgeError(
            f"unknown 2-D mixture {mixture!r}; valid names: {', '.join(MIXTURES)}"
        ) from None


__all__ = ["MIXTURES", "Mixture2D", "get_mixture"]
