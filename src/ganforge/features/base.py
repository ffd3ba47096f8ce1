"""The interface every feature network shares; see :mod:`ganforge.features`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..errors import GanforgeError

# Values this far outside [0, 1] mean the caller forgot to map [-1, 1] outputs; a little
# slack is left for interpolation and float rounding.
_RANGE_SLACK = 1e-3


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; refuses CUDA on machines without it."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GanforgeError(f"device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise GanforgeError(f"device {device!r}: expected auto, cpu, cuda or cuda:N") from None


class FeatureNet:
    """A frozen network plus the input handling it needs; see the module docstring.

    ``module`` must provide ``embed(x) -> (N, dim)`` and ``head(f) -> (N, num_classes)``;
    ``prepare`` turns a [0, 1] batch already on the device into the module's input (resizing,
    channel handling, scaling) and raises :class:`GanforgeError` for shapes it cannot take.
    """

    def __init__(self, name: str, module: nn.Module, *, dim: int, num_classes: int,
                 prepare: Callable[[torch.Tensor], torch.Tensor], device: str | torch.device =
                 "cpu", batch_size: int = 100, info: dict[str, Any] | None = None) -> None:
        if batch_size <= 0:
            raise GanforgeError(f"{name}: batch_size must be positive, got {batch_size}")
        self.name = name
        self.dim = dim
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.info = dict(info or {})
        self.prepare = prepare
        self.module = module.to(self.device).eval().requires_grad_(False)

    def __repr__(self) -> str:
        return (f"FeatureNet({self.name!r}, dim={self.dim}, num_classes={self.num_classes}, "
                f"device={str(self.device)!r})")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, dim)`` float32 CPU features of ``images`` (N, C, H, W) in [0, 1]."""
        return self._run(images, want_features=True, want_logits=False)[0]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, num_classes)`` float32 CPU logits (before softmax) of ``images``."""
        return self._run(images, want_features=False, want_logits=True)[1]

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both outputs from one pass: FID and IS on the same samples cost one forward."""
        return self._run(images, want_features=True, want_logits=True)

    def _batches(self, images: torch.Tensor) -> Iterator[torch.Tensor]:
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise GanforgeError(f"{self.name}: expected images as an (N, C, H, W) tensor, "
                                f"got {shape}")
        for start in range(0, images.shape[0], self.batch_size):
            x = images[start:start + self.batch_size].to(self.device)
            if x.dtype == torch.uint8:
                x = x.float().div_(255.0)
            elif not x.is_floating_point():
                raise GanforgeError(f"{self.name}: expected float images in [0, 1] or uint8, "
                                    f"got {x.dtype}")
            else:
                x = x.float()
            lo, hi = float(x.min()), float(x.max())
            if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
                raise GanforgeError(
                    f"{self.name}: images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}] "
                    "(map generator outputs in [-1, 1] with (x + 1) / 2)")
            # not in place: x may be the caller's own tensor when it is already float on device
            yield self.prepare(x.clamp(0.0, 1.0))

    def _run(self, images: torch.Tensor, *, want_features: bool,
             want_logits: bool) -> tuple[torch.Tensor, torch.Tensor]:
        feats: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        with torch.no_grad():
            for x in self._batches(images):
                f = self.module.embed(x)
                if want_features:
                    feats.append(f.float().cpu())
                if want_logits:
                    logits.append(self.module.head(f).float().cpu())
        empty_f = torch.empty(0, self.dim)
        empty_l = torch.empty(0, self.num_classes)
        return (torch.cat(feats) if feats else empty_f, torch.cat(logits) if logits else empty_l)
