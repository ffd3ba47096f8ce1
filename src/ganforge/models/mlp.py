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
from .registry import MODELS, d_input_shape


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
    D = MLPDiscriminator(d_input_shape(cfg, data_shape), [cfg.d_hidden], k, cfg.spectral_norm)
    return G, D


def _toy(cfg, data_shape, num_classes=0):
    G = MLPGenerator(cfg.z_dim, [cfg.g_hidden] * 2, data_shape, nn.Identity())
    D = MLPDiscriminator(d_input_shape(cfg, data_shape), [cfg.d_hidden] * 2, 0,
                         cfg.spectral_norm)
    return G, D


MODELS.register("mlp-1d", "3-layer ReLU MLPs for the 1-D toy (linear output for G)")(_toy)
MODELS.register("mlp-2d", "3-layer ReLU MLPs for the 2-D mixtures (linear output for G)")(_toy)


@MODELS.register("mlp-began", "MLP G (sigmoid) and an MLP autoencoder D for BEGAN")
def mlp_began(cfg, data_shape, num_classes=0):
    G = MLPGenerator(cfg.z_dim, [cfg.g_hidden], data_shape, nn.Sigmoid())
    return G, AutoencoderDiscriminator(d_input_shape(cfg, data_shape), cfg.d_hidden)


class Maxout(nn.Module):
    """Linear to ``out * pieces`` units, then the max over each unit's pieces (Goodfellow
    et al. 2013; the LinearMaxout of PacGAN's 2-D discriminators)."""

    def __init__(self, n_in: int, n_out: int, pieces: int, sn: bool = False) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = maybe_sn(nn.Linear(n_in, n_out * pieces), sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        return h.view(*h.shape[:-1], -1, self.pieces).amax(-1)


PACGAN_G_LAYERS, PACGAN_D_LAYERS, PACGAN_PIECES = 4, 3, 5


@MODELS.register("mlp-pacgan", "PacGAN's 2-D nets: G 4 x (Linear, BatchNorm, ReLU), "
                 "D 3 maxout layers (5 pieces) then a linear logit")
def mlp_pacgan(cfg, data_shape, num_classes=0):
    """As in PacGAN's synthetic-data code (fjxmlzn/PacGAN, 2DRing/2DGrid configs): G's hidden
    layers have no bias (BatchNorm follows), its output is linear; D's widths are d_hidden."""
    n_out, h = math.prod(data_shape), cfg.g_hidden
    layers: list[nn.Module] = []
    widths = [cfg.z_dim] + [h] * PACGAN_G_LAYERS
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
    layers += [nn.Linear(h, n_out)]
    G = _Sequential(layers, data_shape)
    d_in = math.prod(d_input_shape(cfg, data_shape))
    widths = [d_in] + [cfg.d_hidden] * PACGAN_D_LAYERS
    d_layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        d_layers.append(Maxout(a, b, PACGAN_PIECES, cfg.spectral_norm))
    d_layers.append(maybe_sn(nn.Linear(cfg.d_hidden, 1), cfg.spectral_norm))
    return G, _Logit(nn.Sequential(*d_layers))


class _Sequential(nn.Module):
    """A generator from a layer list: (N, z_dim) -> (N, *data_shape), linear output."""

    def __init__(self, layers: list[nn.Module], data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape, self.out_range = tuple(data_shape), None
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.data_shape)


class _Logit(nn.Module):
    """A discriminator from a network ending in one unit: (N, ...) -> (N,) logits."""

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(1)
