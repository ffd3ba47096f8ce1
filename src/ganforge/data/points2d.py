"""The 2-D mixtures (``ring-8``, ``grid-25``) as training data, and their scatter plot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import GanforgeError
from ..files import save_figure
from .base import Dataset, DrawSampler, Sampler
from .mixtures2d import Mixture2D, get_mixture


@dataclass
class Points2D(Dataset):
    """Samples (shape (2,)) of a 2-D Gaussian mixture; ``name`` picks it unless ``mixture``."""

    mixture: Mixture2D | None = None
    device: torch.device = torch.device("cpu")
    _centres: dict[torch.device, torch.Tensor] = field(default_factory=dict, init=False,
                                                       repr=False)

    def __post_init__(self) -> None:
        self.mixture = get_mixture(self.mixture if self.mixture is not None else self.name)
        if tuple(self.shape) != (2,):
            raise GanforgeError(f"{self.name}: 2-D points have shape (2,), got {self.shape}")
        self.info = {"dataset": self.name, "mixture": self.mixture.name,
                     "centres": self.mixture.n_modes, "std": self.mixture.std, **self.info}

    def to(self, device: torch.device) -> Points2D:
        self.device = torch.device(device)
        return self

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` points (float32, (n, 2)) on the dataset's device, drawn on the generator's.

        The same draws, in the same order, as ``Mixture2D.sample``, so a seed gives the same
        points here as in the metrics; the centres are cached per device so that a batch
        costs no host-to-device copy.
        """
        dev = generator.device
        centres = self._centres.get(dev)
        if centres is None:
            centres = torch.tensor(self.mixture.centres, dtype=torch.float64, device=dev)
            self._centres[dev] = centres
        comp = torch.randint(self.mixture.n_modes, (n,), generator=generator, device=dev)
        noise = torch.randn(n, 2, generator=generator, device=dev, dtype=torch.float64)
        return (centres[comp] + self.mixture.std * noise).float().to(self.device)

    def sampler(self, batch_size: int, generator: torch.Generator) -> Sampler:
        return DrawSampler(self, batch_size, generator)

    def real_samples(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.draw(n, generator)

    def plot(self, fake: torch.Tensor, path: Path, *, title: str,
             critic: Callable[[torch.Tensor], torch.Tensor] | None = None,
             value_range: tuple[float, float] = (0.0, 1.0), nrow: int | None = None) -> None:
        """The scatter of as many real points as ``fake`` has, over the centres; D's surface
        is not drawn, and ``value_range`` and ``nrow`` mean nothing for points."""
        self._check_fake(fake)
        # seed 0 every frame: the same real points in every frame of the GIF, only G's move
        real = self.real_samples(len(fake), torch.Generator(fake.device).manual_seed(0))
        plot_points_2d(real.cpu().numpy(), fake.detach().float().cpu().numpy(),
                       self.mixture.centres, path, title=title)


def points_2d(mixture: str) -> Points2D:
    """The dataset for a mixture name in ``MIXTURES`` (``ring-8`` or ``grid-25``)."""
    return Points2D(name=get_mixture(mixture).name, shape=(2,))


def plot_limits(centres: np.ndarray) -> tuple[float, float, float, float]:
    """A square (xmin, xmax, ymin, ymax) around the centres with a margin of a quarter of
    their extent (at least 1): fixed per mixture, so every frame of a GIF lines up."""
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    mid = (c.min(axis=0) + c.max(axis=0)) / 2
    half = float((c.max(axis=0) - c.min(axis=0)).max()) / 2
    half += max(1.0, half / 2)
    return mid[0] - half, mid[0] + half, mid[1] - half, mid[1] + half


def plot_points_2d(real: np.ndarray, fake: np.ndarray, centres: np.ndarray, path: str | Path,
                   title: str = "") -> Path:
    """Real points (light), G's points (dark) and the mixture's centres (rings) to ``path``."""
    real = np.asarray(real, dtype=np.float64).reshape(-1, 2)
    fake = np.asarray(fake, dtype=np.float64).reshape(-1, 2)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    x0, x1, y0, y1 = plot_limits(centres)
    inside = ((fake[:, 0] >= x0) & (fake[:, 0] <= x1)
              & (fake[:, 1] >= y0) & (fake[:, 1] <= y1))
    shown = f"{inside.mean():.0%} shown" if fake.size else "none"

    from ..viz import subplots

    fig, ax = subplots(figsize=(5, 5.5), dpi=100)
    # fixed margins instead of tight_layout: tight_layout moves the axes when a title or tick
    # label changes width, and the GIF's frames would jump; the legend sits below the axes so
    # it never hides a mode
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.93)
    ax.scatter(real[:, 0], real[:, 1], s=10, color="#9ecae1", alpha=0.7, linewidths=0,
               label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=4, color="#08306b", alpha=0.8, linewidths=0,
               label=f"G ({shown})")
    # hollow rings: a filled marker would hide the real points, which sit within 0.1 of it
    ax.scatter(centres[:, 0], centres[:, 1], s=70, marker="o", facecolors="none",
               edgecolors="tab:red", linewidths=1.0, label="centres")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.grid(alpha=0.2)
    ax.set_title(title)
    fig.legend(loc="lower center", ncol=3, frameon=False, fontsize=9, markerscale=1.5)
    return save_figure(fig, path)


__all__ = ["Points2D", "plot_limits", "plot_points_2d", "points_2d"]
