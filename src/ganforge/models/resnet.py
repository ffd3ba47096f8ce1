"""The SN-GAN ResNets for 32x32 images (Miyato et al. 2018, Table 4; CIFAR-10).

G (ch = cfg.g_hidden, 256 in the paper):
    z -> linear -> ch@4x4 -> 3 x up-block (ch@8, ch@16, ch@32) -> BN, ReLU, conv3x3 -> tanh
    up-block: BN-ReLU-upsample(nearest x2)-conv3x3-BN-ReLU-conv3x3, shortcut upsample-conv1x1
D (ch = cfg.d_hidden, 128 in the paper), spectral norm on every layer, always:
    x -> optimized down-block (ch@16) -> down-block (ch@8) -> 2 x block (ch@8)
      -> ReLU -> sum over space = phi(x) (N, ch) -> linear -> 1
    down-block: ReLU-conv3x3-ReLU-conv3x3-avgpool2, shortcut conv1x1-avgpool2
    optimized (first) block: conv3x3-ReLU-conv3x3-avgpool2, shortcut avgpool2-conv1x1
    (no ReLU before the first conv, which would clip the image's negative pixels)
Conditional: the up-blocks' BatchNorms are conditional ("cbn", the paper's choice; the
last BN stays plain as in the reference code) or the label embedding is concatenated to z
("concat"), as cfg.cond_mode says; D is a projection discriminator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

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

SIZES = (32,)


class UpBlock(nn.Module):
    """Residual block that doubles the side: BN-ReLU-up-conv-BN-ReLU-conv + up-conv1x1."""

    def __init__(self, in_ch: int, out_ch: int, num_classes: int | None) -> None:
        super().__init__()
        self.bn1 = batch_norm(in_ch, num_classes)
        # conv1 feeds a BatchNorm, which would cancel its bias.
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = batch_norm(out_ch, num_classes)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        # A learned shortcut even when in_ch == out_ch: the reference uses one whenever
        # the block resamples.
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = F.relu(normalise(self.bn1, x, y))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(normalise(self.bn2, h, y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DownBlock(nn.Module):
    """ReLU-conv-ReLU-conv [-avgpool] + shortcut [conv1x1-avgpool]; all convs spectral-normed.

    ``first`` makes it the "optimized" block that sees the image: no leading ReLU, and the
    shortcut pools before its 1x1 conv (the same linear map, on a quarter of the pixels).
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, first: bool = False) -> None:
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = maybe_sn(nn.Conv2d(in_ch, out_ch, 3, 1, 1), True)
        self.conv2 = maybe_sn(nn.Conv2d(out_ch, out_ch, 3, 1, 1), True)
        # Identity shortcut only where it can be: same width and no resampling.
        self.shortcut = (maybe_sn(nn.Conv2d(in_ch, out_ch, 1), True)
                         if downsample or in_ch != out_ch else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:
            s = self.shortcut(F.avg_pool2d(s, 2))
        else:
            if self.shortcut is not None:
                s = self.shortcut(s)
            if self.downsample:
                s = F.avg_pool2d(s, 2)
        return h + s


class ResNetGenerator(nn.Module):
    """z (N, z_dim) [+ labels y (N,)] -> images (N, C, 32, 32) in [-1, 1]."""

    out_range = (-1.0, 1.0)

    def __init__(self, z_dim: int, ch: int, data_shape: tuple[int, int, int], num_classes: int,
                 conditional: bool = False, cond_mode: str = "cbn") -> None:
        super().__init__()
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        self.conditional = conditional
        self.num_classes = num_classes
        self.cond_mode = cond_mode if conditional else None
        self.ch = ch
        self.label_embed: nn.Embedding | None = None
        in_dim = z_dim
        if conditional and cond_mode == "concat":
            self.label_embed = nn.Embedding(num_classes, LABEL_EMBED_DIM)
            in_dim += LABEL_EMBED_DIM
        norm_classes = num_classes if conditional and cond_mode == "cbn" else None
        self.linear = nn.Linear(in_dim, 4 * 4 * ch)
        self.blocks = nn.ModuleList(UpBlock(ch, ch, norm_classes) for _ in range(3))
        self.bn = nn.BatchNorm2d(ch)
        self.out = nn.Conv2d(ch, data_shape[0], 3, 1, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            y = require_labels(y, z.shape[0], "resnet generator")
        else:
            y = None  # unconditional: labels, if a caller passes them, play no part
        h = z
        if self.label_embed is not None:
            h = torch.cat([z, self.label_embed(y)], dim=1)
        h = self.linear(h).view(z.shape[0], self.ch, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class ResNetDiscriminator(ProjectionDiscriminator):
    """images (N, C, 32, 32) [+ labels y (N,)] -> logits (N,); ``features`` gives phi(x)."""

    label_name = "resnet discriminator"

    def __init__(self, ch: int, data_shape: tuple[int, int, int], num_classes: int,
                 conditional: bool = False) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.conditional = conditional
        self.num_classes = num_classes
        self.blocks = nn.Sequential(
            DownBlock(data_shape[0], ch, downsample=True, first=True),  # 32 -> 16
            DownBlock(ch, ch, downsample=True),  # 16 -> 8
            DownBlock(ch, ch, downsample=False),
            DownBlock(ch, ch, downsample=False),
        )
        self.feature_dim = ch
        self.head = ProjectionHead(ch, num_classes if conditional else None, sn=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): ReLU then global *sum* pooling (SN-GAN), (N, ch)."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))



def build_resnet(cfg: Any, data_shape: tuple[int, int, int],
                 num_classes: int) -> tuple[nn.Module, nn.Module]:
    """SN-GAN ResNet G and D for 32x32 images (C in {1, 3}).

    Reads cfg.z_dim, g_hidden (G's ch), d_hidden (D's ch) and, when present, conditional and
    cond_mode ("cbn" is SN-GAN's; "concat" is accepted so the flag means the same for every
    model). cfg.spectral_norm is not read: this D is spectrally normalised always.
    """
    check_image_shape("resnet", data_shape, SIZES)
    conditional, mode = conditioning(cfg, num_classes, "resnet")
    G = ResNetGenerator(cfg.z_dim, cfg.g_hidden, data_shape, num_classes, conditional, mode)
    D = ResNetDiscriminator(cfg.d_hidden, d_input_shape(cfg, data_shape), num_classes,
                            conditional)
    return G, D
