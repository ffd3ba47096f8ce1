"""The seed models: the tutorials' 2-layer MLPs for images and 3-layer MLPs for the 1-D toy."""

from __future__ import annotations

import math

import torch
from torch import nn

from .registry import MODELS


class MLPGenerator(nn.Module):
    """z -> ReLU(z W1 + b1) W2 + b2 -> output activation, reshaped to the data's shape."""

    def __init__(self, z_dim: int, hidden: list[int], data_shape: tuple[int, ...],
                 out_act: nn.Module) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        widths = [z_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers += [nn.Linear(widths[-1], math.prod(data_shape)), out_act]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.data_shape)


class MLPDiscriminator(nn.Module):
    """x -> ReLU(x W1 + b1) W2 + b2: one logit per sample (D(x) = sigmoid(logit))."""

    def __init__(self, data_shape: tuple[int, ...], hidden: list[int]) -> None:
        super().__init__()
        widths = [math.prod(data_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers += [nn.Linear(widths[-1], 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


@MODELS.register("mlp", "2-layer MLPs: G z->h->data (ReLU, sigmoid), D data->h->1 (ReLU, logit)")
def mlp(cfg, data_shape):
    G = MLPGenerator(cfg.z_dim, [cfg.g_hidden], data_shape, nn.Sigmoid())
    D = MLPDiscriminator(data_shape, [cfg.d_hidden])
    return G, D


@MODELS.register("mlp-1d", "3-layer ReLU MLPs for the 1-D toy (linear output for G)")
def mlp_1d(cfg, data_shape):
    G = MLPGenerator(cfg.z_dim, [cfg.g_hidden] * 2, data_shape, nn.Identity())
    D = MLPDiscriminator(data_shape, [cfg.d_hidden] * 2)
    return G, D
