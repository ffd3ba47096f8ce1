"""What every dataset gives the training loop: its sample shape and a batch sampler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import GanforgeError


class Sampler:
    """Draws training batches on the dataset's device; its state makes resume exact.

    For CUDA-graph capture a sampler is made *static* for ``per_replay`` batches: host-side
    decisions (which indices) are staged into fixed buffers by ``stage()`` before each replay,
    and ``next()`` then only reads those buffers, so it can be recorded in the graph.
    """

    batch_size: int
    slice: slice | None = None  # this rank's part of each global batch (None: all of it)

    def next(self) -> torch.Tensor:
        raise NotImplementedError

    def next_with_labels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch and its class labels (None for unlabelled data)."""
        return self.next(), None

    def make_static(self, per_replay: int) -> None:
        """Stage ``per_replay`` batches per replay from now on; 0 returns to eager drawing."""

    def stage(self) -> None:
        pass

    def shard(self, part: slice | None) -> None:
        """Several training processes: every rank draws the same global batch and keeps its
        ``part`` of it (``World.batch_slice``)."""
        self.slice = part

    @property
    def local_batch(self) -> int:
        """How many samples of each batch this rank gets."""
        return self.batch_size if self.slice is None else self.slice.stop - self.slice.start

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class Dataset:
    name: str
    shape: tuple[int, ...]  # one sample, e.g. (1, 28, 28) or (1,)
    info: dict[str, Any] = field(default_factory=dict)  # what was actually loaded, for config.json

    def to(self, device: torch.device) -> Dataset:
        raise NotImplementedError

    def sampler(self, batch_size: int, generator: torch.Generator) -> Sampler:
        raise NotImplementedError

    def real_samples(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` real samples as floats, for pictures and evaluation (not for training)."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """How many class labels the data carries (0: unlabelled)."""
        return 0

    def plot(self, fake: torch.Tensor, path: Path, *, title: str,
             critic: Callable[[torch.Tensor], torch.Tensor] | None = None,
             value_range: tuple[float, float] = (0.0, 1.0), nrow: int | None = None) -> None:
        """Write this step's picture of G's samples ``fake`` (n, *self.shape), in G's output
        range ``value_range``, to ``path`` (atomically). ``critic(x)`` maps a batch of
        data-shaped points (m, *self.shape) to D's value per point (m,), already as D(x)
        probabilities where the objective has them; the 1-D toy draws its curve, the others
        may ignore it. ``nrow``: images per grid row (one row per class for conditional
        models)."""
        raise NotImplementedError

    def _check_fake(self, fake: torch.Tensor) -> None:
        """A one-line error, not a broadcasting failure deep in a plot, for mis-shaped samples."""
        if fake.dim() < 1 or tuple(fake.shape[1:]) != tuple(self.shape):
            raise GanforgeError(f"{self.name}: plot() expects G's samples of shape "
                                f"(n, {', '.join(map(str, self.shape))}), got {tuple(fake.shape)}")


class DrawSampler(Sampler):
    """Fresh samples every batch from a dataset that is a distribution (``ds.draw(n, gen)``):
    there are no epochs to track, and drawing is pure RNG, so it can run inside a graph."""

    def __init__(self, ds: Any, batch_size: int, generator: torch.Generator):
        self.ds, self.batch_size, self.generator = ds, batch_size, generator

    def next(self) -> torch.Tensor:
        x = self.ds.draw(self.batch_size, self.generator)
        return x if self.slice is None else x[self.slice]


class EpochSampler(Sampler):
    """Index batches from a fresh permutation each epoch; the last partial batch is dropped."""

    def __init__(self, images: torch.Tensor, batch_size: int, generator: torch.Generator,
                 labels: torch.Tensor | None = None):
        n = images.shape[0]
        self.labels = labels
        # pixel values G works in: (0, 1) for sigmoid outputs, (-1, 1) for tanh (set by the
        # trainer from G.out_range)
        self.value_range: tuple[float, float] = (0.0, 1.0)
        if batch_size > n:
            raise GanforgeError(f"--batch-size {batch_size} exceeds the dataset's {n} samples")
        self.images, self.batch_size, self.generator = images, batch_size, generator
        self.perm: torch.Tensor | None = None
        self.pos = n  # forces a permutation on the first call
        self.epoch = 0

        self._static: torch.Tensor | None = None  # (per_replay, batch) staged indices
        self._k = 0

    def next_indices(self) -> torch.Tensor:
        """The next global batch's indices, cut to this rank's slice."""
        n = self.images.shape[0]
        if self.pos + self.batch_size > n:
            self.perm = torch.randperm(n, generator=self.generator, device=self.images.device)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx if self.slice is None else idx[self.slice]

    def _indices(self) -> torch.Tensor:
        if self._static is None:
            return self.next_indices()
        idx = self._static[self._k % self._static.shape[0]]
        self._k += 1
        return idx

    def next(self) -> torch.Tensor:
        return self.gather(self._indices())

    def next_with_labels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self._indices()
        return self.gather(idx), None if self.labels is None else _take(self.labels, idx)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        # uint8 on the device, scaled here: 4x less memory than float32
        x = _take(self.images, idx)
        lo, hi = self.value_range
        if (lo, hi) == (0.0, 1.0):
            return torch.div(x, 255.0)  # one kernel
        return torch.add(x * ((hi - lo) / 255.0), lo)

    def make_static(self, per_replay: int) -> None:
        if per_replay == 0:  # back to drawing indices on every call
            self._static = None
            return
        self._static = torch.zeros(per_replay, self.local_batch, dtype=torch.long,
                                   device=self.images.device)
        self._k = 0

    def stage(self) -> None:
        for j in range(self._static.shape[0]):
            self._static[j].copy_(self.next_indices(), non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        perm = state["perm"]
        self.perm = None if perm is None else perm.to(self.images.device)
        self.pos, self.epoch = int(state["pos"]), int(state["epoch"])


def _take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[idx]`` for index tensors of any shape, through index_select: on a CPU a fifth of
    the time advanced indexing takes for a batch of images."""
    return torch.index_select(t, 0, idx.reshape(-1)).view(*idx.shape, *t.shape[1:])


@dataclass
class ImageDataset(Dataset):
    images: torch.Tensor = None  # uint8 (N, C, H, W)
    labels: torch.Tensor | None = None

    def to(self, device: torch.device) -> ImageDataset:
        self.images = self.images.to(device)
        if self.labels is not None:
            self.labels = self.labels.to(device)
        return self

    def sampler(self, batch_size: int, generator: torch.Generator) -> Sampler:
        return EpochSampler(self.images, batch_size, generator, self.labels)

    @property
    def num_classes(self) -> int:
        if self.labels is None or self.labels.numel() == 0:
            return 0
        return int(self.info.get("num_classes") or int(self.labels.max()) + 1)

    def real_samples(self, n: int, generator: torch.Generator) -> torch.Tensor:
        g_dev = generator.device
        idx = torch.randperm(self.images.shape[0], generator=generator, device=g_dev)[:n]
        return self.images[idx.to(self.images.device)].float().div_(255.0)

    def plot(self, fake: torch.Tensor, path: Path, *, title: str,
             critic: Callable[[torch.Tensor], torch.Tensor] | None = None,
             value_range: tuple[float, float] = (0.0, 1.0), nrow: int | None = None) -> None:
        """A grid of the images, ``nrow`` per row; D's view of a picture is not drawn, and
        neither is ``title`` (the grid is the samples alone, frame for frame in the GIF)."""
        from .. import viz

        self._check_fake(fake)
        viz.save_grid(viz.to_unit(fake.detach(), value_range), path, nrow=nrow)
