"""The FID Inception-v3: the 2015 TensorFlow graph that FID and IS numbers are reported with.

The layer structure is Inception-v3 as in the PyTorch port used by the reference FID code
(pytorch-fid), including its departures from the ImageNet-trained torchvision model, which
make the port reproduce the TF graph:

- the average pools inside the Mixed_5x, Mixed_6b-e and Mixed_7b blocks exclude the zero
  padding from the average (TF's behaviour, ``count_include_pad=False``),
- Mixed_7c (the last block, "E_2") pools its pool branch with a 3x3 *max* pool,
- the classifier has 1008 outputs (the graph's 1000 ImageNet classes, a background class and
  7 unused ones), and there is no auxiliary classifier.

Parameter names equal those of pytorch-fid's weight file, so its state dict loads unchanged.

Inputs: images in [0, 1] are resized to 299x299 (bilinear, ``align_corners=False``) and
mapped to [-1, 1]; grey images are repeated over 3 channels. ``features`` is the 2048-d
average-pooled ``pool_3`` activation (FID, KID). ``logits`` are the 1008 ``pool_3 @ W``
scores *without* the fc bias by default: the original Inception Score code (and
torch-fidelity's ``logits_unbiased``) takes the softmax over all 1008 of those, so IS values
are comparable with published ones when computed as ``softmax(logits)`` over all 1008.
``logits_bias=True`` gives the graph's own softmax input instead.

Weights are loaded and checked by :mod:`ganforge.features.inception_weights`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError
from .base import FeatureNet, resolve_device

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (TF's epsilon 0.001), ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding,
                              bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    # TF averages only over the window cells inside the image; the torchvision default
    # (count_include_pad=True) would darken every border pixel of the pool branch.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _max_pool_reduce(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=2)


class FIDInceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pool branches (Mixed_5b/5c/5d)."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_same(x))
        return torch.cat([a, b, c, d], 1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Mixed_6a); unchanged from the ImageNet model."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, _max_pool_reduce(x)], 1)


class FIDInceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b-6e)."""

    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        row, col = (1, 7), (7, 1)  # a 1x7 then a 7x1 convolution stand in for one 7x7
        row_pad, col_pad = (0, 3), (3, 0)
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, row, padding=row_pad)
        self.branch7x7_3 = BasicConv2d(c7, 192, col, padding=col_pad)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, col, padding=col_pad)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, row, padding=row_pad)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, col, padding=col_pad)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, row, padding=row_pad)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            c = layer(c)
        d = self.branch_pool(_avg_pool_same(x))
        return torch.cat([a, b, c, d], 1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (Mixed_7a); unchanged from the ImageNet model."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = layer(b)
        return torch.cat([a, b, _max_pool_reduce(x)], 1)


class FIDInceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 outputs (Mixed_7b = "E_1", Mixed_7c = "E_2").

    The two FID variants differ only in the pool branch: ``pool="avg"`` (E_1, padding
    excluded from the average) or ``pool="max"`` (E_2, a quirk of the TF graph).
    """

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = _avg_pool_same if pool == "avg" else _max_pool_same
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = self.branch_pool(self.pool(x))
        return torch.cat([a, self.branch3x3_2a(b), self.branch3x3_2b(b),
                          self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c), d], 1)


class FIDInceptionV3(nn.Module):
    """The network; ``embed`` gives pool_3 (N, 2048), ``head`` the (N, 1008) logits.

    Takes (N, 3, 299, 299) inputs already scaled to [-1, 1]; :func:`prepare_inception_input`
    makes them from [0, 1] images of any size.
    """

    def __init__(self, logits_bias: bool = False) -> None:
        super().__init__()
        self.logits_bias = logits_bias
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 64 x 147 x 147
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(_max_pool_reduce(x)))  # 192 x 71 x 71
        x = _max_pool_reduce(x)  # 192 x 35 x 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # ends at 2048 x 8 x 8
        return x.mean(dim=(2, 3))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        if self.logits_bias:
            return self.fc(f)
        return f @ self.fc.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def prepare_inception_input(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (N, 1 or 3, H, W) -> (N, 3, 299, 299) in [-1, 1], as the reference does."""
    channels = images.shape[1]
    if channels == 1:
        images = images.expand(-1, 3, -1, -1)
    elif channels != 3:
        raise GanforgeError(f"inception: expected 1 (grey) or 3 (RGB) channels, got {channels}")
    if tuple(images.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
        images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                               align_corners=False)
    return images * 2.0 - 1.0


def inception_net(module: FIDInceptionV3, *, device: str | torch.device = "cpu",
                  batch_size: int = 50, info: dict[str, Any] | None = None) -> FeatureNet:
    """Wrap a (loaded or freshly built) :class:`FIDInceptionV3` as a :class:`FeatureNet`."""
    return FeatureNet("inception", module, dim=FEATURE_DIM, num_classes=NUM_CLASSES,
                      prepare=prepare_inception_input, device=resolve_device(device),
                      batch_size=batch_size, info=info)



__all__ = [
    "FEATURE_DIM",
    "FIDInceptionV3",
    "INPUT_SIZE",
    "NUM_CLASSES",
    "inception_net",
    "prepare_inception_input",
]
