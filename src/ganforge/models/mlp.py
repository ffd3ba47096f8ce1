"""The seed models: the tutorials' 2-layer MLPs for images and 3-layer MLPs for the toys.

Conditional versions (Mirza & Osindero 2014) concatenate a one-hot label to G's noise and
to D's flattened input. ``mlp-began`` gives D the autoencoder BEGAN needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import maybe_sn
from .registry import MODELS


def _one_hot(y: torch.Tensor | None, num_classes: int, what: str) -> torch.Tensor:
    if y is None:
        raise ValueError(f"conditional {what} needs labels y")
    return F.one_hot(y, num_classes).float()


class MLPGenerator(nn.Module):
    """z -> ReLU(z W1 + b1) W2 + b2 -> output activation, reshaped to the data's shape."""

    def __init__(self, z_dim: int, hidden: list[int], data_shape: tuple[int, ...],
                 out_act: nn.Module, num_classes: int = 0) -> None:
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        self.conditional = num_classes > 0
        self.data_shape = tuple(data_shape)
        self.out_range = (0.0, 1.0) if isinstance(out_act, nn.Sigmoid) else None
        widths = [z_dim + num_classes, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers += [nn.Linear(widths[-1], math.prod(data_shape)), out_act]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            z = torch.cat([z, _one_hot(y, self.num_classes, "G")], 1)
        return self.net(z).view(z.shape[0], *self.data_shape)


class MLPDiscriminator(nn.Module):
    """x -> ReLU(x W1 + b1) W2 + b2: one logit per sample (D(x) = sigmoid(logit))."""

    def __init__(self, data_shape: tuple[int, ...], hidden: list[int], num_classes: int = 0,
                 sn: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conditional = num_classes > 0
        widths = [math.prod(data_shape) + num_classes, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [maybe_sn(nn.Linear(a, b), sn), nn.ReLU()]
        layers += [maybe_sn(nn.Linear(widths[-1], 1), sn)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            x = torch.cat([x.flatten(1), _one_hot(y, self.num_classes, "D")], 1)
        return self.net(x).squeeze(1)


class AutoencoderDiscriminator(nn.Module):
    """BEGAN's D: an MLP autoencoder; its output is each sample's mean |x - D(x)| (energy)."""

    def __init__(self, data_shape: tuple[int, ...], hidden: int, code: int = 32) -> None:
        super().__init__()
        n = math.prod(data_shape)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), nn.ELU(),
                                 nn.Linear(hidden, code), nn.Linear(code, hidden), nn.ELU(),
                                 nn.Linear(hidden, n))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return (self.net(x) - x.flatten(1)).abs().mean(1)


def _classes(cfg, num_classes: int) -> int:
    if getattr(cfg, "conditional", False):
        if num_classes < 1:
            from ..errors import GanforgeError

            raise GanforgeError(f"conditional {cfg.model}: the dataset {cfg.dataset!r} has no "
                                "class labels")
        return num_classes
    return 0


@MODELS.register("mlp", "2-layer MLPs: G z->h->data (ReLU, sigmoid), D data->h->1 (ReLU, logit)")
def mlp(cfg, data_shape, num_classes=0):
    k = _classes(cfg, num_classes)
    G = MLPGenerator(cfg.z_dim, [cfg.g_hidden], data_shape, nn.Sigmoid(), k)
    D = MLPDiscriminator(data_shape, [cfg.d_hidden], k, cfg.spectral_norm)
    return G, D


def _toy(cfg, data_shape, num_classes=0):
    G = MLPGenerator(cfg.z_dim, [cfg.g_hidden] * 2, data_shape, nn.Identity())
    D = MLPDiscriminator(data_shape, [cfg.d_hidden] * 2, 0, cfg.spectral_norm)
    return G, D


MODELS.register("mlp-1d", "3-layer ReLU MLPs for the 1-D toy (linear output for G)")(_toy)
MODELS.register("mlp-2d", "3-layer ReLU MLPs for the 2-D mixtures (linear output for G)")(_toy)


@MODELS.register("mlp-began", "MLP G (sigmoid) and an MLP autoencoder D for BEGAN")
def mlp_began(cfg, data_shape, num_classes=0):
    G = MLPGenerator(cfg.z_dim, [cfg.g_hidden], data_shape, nn.Sigmoid())
    return G, AutoencoderDiscriminator(data_shape, cfg.d_hidden)
