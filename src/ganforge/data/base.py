"""What every dataset gives the training loop: its sample shape and a batch sampler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


class Sampler:
    """Draws training batches on the dataset's device; its state makes resume exact."""

    def next(self) -> torch.Tensor:
        raise NotImplementedError

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


class EpochSampler(Sampler):
    """Index batches from a fresh permutation each epoch; the last partial batch is dropped."""

    def __init__(self, images: torch.Tensor, batch_size: int, generator: torch.Generator):
        n = images.shape[0]
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the dataset's {n} samples")
        self.images, self.batch_size, self.generator = images, batch_size, generator
        self.perm: torch.Tensor | None = None
        self.pos = n  # forces a permutation on the first call
        self.epoch = 0

    def next(self) -> torch.Tensor:
        n = self.images.shape[0]
        if self.pos + self.batch_size > n:
            self.perm = torch.randperm(n, generator=self.generator, device=self.images.device)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        # uint8 on the device, scaled here: 4x less memory and transfer than float32
        return self.images[idx].float().div_(255.0)

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        perm = state["perm"]
        self.perm = None if perm is None else perm.to(self.images.device)
        self.pos, self.epoch = int(state["pos"]), int(state["epoch"])


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
        return EpochSampler(self.images, batch_size, generator)

    def real_samples(self, n: int, generator: torch.Generator) -> torch.Tensor:
        g_dev = generator.device
        idx = torch.randperm(self.images.shape[0], generator=generator, device=g_dev)[:n]
        return self.images[idx.to(self.images.device)].float().div_(255.0)
