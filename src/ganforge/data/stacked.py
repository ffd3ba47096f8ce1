"""Stacked MNIST (Metz et al. 2017; VEEGAN; PacGAN): three MNIST digits as the channels of one
28x28 colour image, 1,000 modes (one per digit triple)."""

from __future__ import annotations

import torch

from .base import ImageDataset


def stack_digits(digits: ImageDataset, n: int, seed: int = 0) -> ImageDataset:
    """``n`` images whose channel c is digit ``idx[:, c]`` of ``digits``; label 100a+10b+c."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(digits.images.shape[0], (n, 3), generator=gen)
    images = digits.images[:, 0][idx]  # (n, 3, 28, 28) uint8
    labels = digits.labels[idx]
    mode = 100 * labels[:, 0] + 10 * labels[:, 1] + labels[:, 2]
    info = {**digits.info, "dataset": "stacked-mnist", "n": n, "stacked_from": digits.name,
            "seed": seed, "num_classes": 1000}
    return ImageDataset(name="stacked-mnist", shape=(3, 28, 28), info=info, images=images,
                        labels=mode)
