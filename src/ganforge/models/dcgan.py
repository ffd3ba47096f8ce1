"""DCGAN (Radford et al. 2015) for 28x28, 32x32 and 64x64 images, optionally class-conditional.

G: z (plus a label embedding in "concat" mode) as a 1x1 map -> transposed conv to a
base x base map (7 for 28x28, else 4) -> stride-2 4x4 transposed convs, each doubling the
side and halving the channels -> tanh. BatchNorm + ReLU after every layer but the last.
D mirrors it: stride-2 4x4 convs with LeakyReLU(0.2), BatchNorm on all but the first, then
a linear layer on the flattened base x base map gives one logit per sample (the DCGAN
paper's last conv, written as the linear map it is so that its input can double as the
projection discriminator's feature vector phi).

Widths, with g = cfg.g_hidden and d = cfg.d_hidden:

    side  G                                      D
    28    2g@7  -> g@14  -> C@28                 d@14 -> 2d@7  -> 1
    32    4g@4  -> 2g@8  -> g@16 -> C@32         d@16 -> 2d@8  -> 4d@4 -> 1
    64    8g@4  -> 4g@8  -> 2g@16 -> g@32 -> C@64  d@32 -> 2d@16 -> 4d@8 -> 8d@4 -> 1
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .layers import (
    LABEL_EMBED_DIM,
    ProjectionDiscriminator,
    ProjectionHead,
    batch_norm,
    check_image_shape,
    conditioning,
    maybe_sn,
    normalise,
    require_labels,
)
from .registry import d_input_shape

SIZES = (28, 32, 64)
# Side of G's first feature map / D's last: 28 = 7 * 2**2; 32 and 64 = 4 * 2**k.
BASE = {28: 7, 32: 4, 64: 4}


def _num_stages(side: int) -> int:
    """Stride-2 layers between the base map and the image: 7->14->28 is 2, 4->...->64 is 4."""
    return (side // BASE[side]).bit_length() - 1


class _UpStage(nn.Module):
    """conv -> (conditional) BatchNorm -> ReLU; the norm may need the labels."""

    def __init__(self, conv: nn.ConvTranspose2d, norm: nn.Module) -> None:
        super().__init__()
        self.conv, self.norm = conv, norm

    def forward(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return torch.relu(normalise(self.norm, self.conv(h), y))


class DCGANGenerator(nn.Module):
    """z (N, z_dim) [+ labels y (N,)] -> images (N, C, H, W) in [-1, 1]."""

    out_range = (-1.0, 1.0)

    def __init__(self, z_dim: int, width: int, data_shape: tuple[int, int, int],
                 num_classes: int, conditional: bool = False, cond_mode: str = "concat") -> None:
        super().__init__()
        channels, side = data_shape[0], data_shape[1]
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        self.conditional = conditional
        self.num_classes = num_classes
        self.cond_mode = cond_mode if conditional else None
        n = _num_stages(side)

        self.label_embed: nn.Embedding | None = None
        in_ch = z_dim
        if conditional and cond_mode == "concat":
            self.label_embed = nn.Embedding(num_classes, LABEL_EMBED_DIM)
            in_ch += LABEL_EMBED_DIM
        norm_classes = num_classes if conditional and cond_mode == "cbn" else None

        # Convs that feed a BatchNorm have no bias: the norm's mean subtraction would cancel it.
        ch = width * 2 ** (n - 1)
        stages = [_UpStage(nn.ConvTranspose2d(in_ch, ch, BASE[side], 1, 0, bias=False),
                           batch_norm(ch, norm_classes))]
        for _ in range(n - 1):
            stages.append(_UpStage(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                                   batch_norm(ch // 2, norm_classes)))
            ch //= 2
        self.stages = nn.ModuleList(stages)
        # No BatchNorm on the output layer (DCGAN): it would pin every image's pixel statistics.
        self.out = nn.ConvTranspose2d(ch, channels, 4, 2, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            y = require_labels(y, z.shape[0], "dcgan generator")
        else:
            y = None  # unconditional: labels, if a caller passes them, play no part
        h = z
        if self.label_embed is not None:
            h = torch.cat([z, self.label_embed(y)], dim=1)
        h = h[:, :, None, None]
        for stage in self.stages:
            h = stage(h, y)
        return torch.tanh(self.out(h))


class DCGANDiscriminator(ProjectionDiscriminator):
    """images (N, C, H, W) [+ labels y (N,)] -> logits (N,); ``features`` gives phi(x)."""

    label_name = "dcgan discriminator"

    def __init__(self, width: int, data_shape: tuple[int, int, int], num_classes: int,
                 conditional: bool = False, sn: bool = False, bn: bool = True) -> None:
        super().__init__()
        channels, side = data_shape[0], data_shape[1]
        self.data_shape = tuple(data_shape)
        self.conditional = conditional
        self.num_classes = num_classes
        n = _num_stages(side)

        layers: list[nn.Module] = []
        in_ch, ch = channels, width
        for i in range(n):
            # BatchNorm on all but the first layer (DCGAN: normalising the raw image hurt);
            # with spectral norm none at all, as in SN-GAN's CNN discriminator, so the layer
            # has its bias back.
            # (WGAN-GP turns it off too: its penalty is per sample, BatchNorm mixes samples)
            use_bn = i > 0 and not sn and bn
            layers.append(maybe_sn(nn.Conv2d(in_ch, ch, 4, 2, 1, bias=not use_bn), sn))
            if use_bn:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2))
            in_ch, ch = ch, ch * 2
        layers.append(nn.Flatten())
        self.body = nn.Sequential(*layers)
        self.feature_dim = in_ch * BASE[side] ** 2
        self.head = ProjectionHead(self.feature_dim, num_classes if conditional else None, sn)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): the flattened last feature map, (N, feature_dim)."""
        return self.body(x)



def build_dcgan(cfg: Any, data_shape: tuple[int, int, int],
                num_classes: int) -> tuple[nn.Module, nn.Module]:
    """DCGAN G and D for ``data_shape`` (C in {1, 3}, H = W in {28, 32, 64}).

    Reads cfg.z_dim, g_hidden, d_hidden and, when present, conditional, cond_mode
    ("concat" | "cbn", for G; D is always a projection discriminator) and spectral_norm (D).
    """
    check_image_shape("dcgan", data_shape, SIZES)
    conditional, mode = conditioning(cfg, num_classes, "dcgan")
    sn = bool(getattr(cfg, "spectral_norm", False))
    G = DCGANGenerator(cfg.z_dim, cfg.g_hidden, data_shape, num_classes, conditional, mode)
    bn = bool(getattr(cfg, "d_batchnorm", True))
    D = DCGANDiscriminator(cfg.d_hidden, d_input_shape(cfg, data_shape), num_classes,
                           conditional, sn, bn)
    return G, D
