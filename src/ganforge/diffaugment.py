"""DiffAugment (Zhao et al. 2020): differentiable augmentations of D's input images.

The same policy is applied to real and generated images before D, in the D step and in
the G step, so D never sees an un-augmented image and G's gradient flows through the
augmentation (every op here is differentiable in the image). Each image draws its own
random parameters. Images are (N, C, H, W) in G's output range; the ops are those of the
paper's reference code:

- ``color``: brightness (+U(-0.5, 0.5)), saturation (x U(0, 2) around the per-pixel channel
  mean), contrast (x U(0.5, 1.5) around the image mean);
- ``translation``: an integer shift of up to 1/8 of the side in each axis, zero-filled;
- ``cutout``: a zeroed square of half the side at a random position.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import GanforgeError
from .registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
AUGMENTS: Registry[Augment] = Registry("diffaugment policy")


def _rand(shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype)


@AUGMENTS.register("color", "brightness, saturation and contrast, each random per image")
def color(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    n = x.shape[0]
    x = x + (_rand((n, 1, 1, 1), x, gen) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand((n, 1, 1, 1), x, gen) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((n, 1, 1, 1), x, gen) + 0.5) + mean


@AUGMENTS.register("translation", "integer shift by up to 1/8 of the side, zero-filled")
def translation(x: torch.Tensor, gen: torch.Generator | None, ratio: float = 0.125
                ) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), generator=gen, device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=gen, device=x.device)
    # output pixel (i, j) reads input pixel (i - dy, j - dx) of a zero-padded copy: a gather,
    # so the gradient reaches every input pixel that lands in the output
    iy = torch.arange(h, device=x.device).view(1, h, 1) - dy + 1
    ix = torch.arange(w, device=x.device).view(1, 1, w) - dx + 1
    iy, ix = iy.clamp(0, h + 1).expand(n, h, w), ix.clamp(0, w + 1).expand(n, h, w)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    b = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[b, iy, ix].permute(0, 3, 1, 2)


@AUGMENTS.register("cutout", "a zeroed square of half the side at a random position")
def cutout(x: torch.Tensor, gen: torch.Generator | None, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=gen, device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=gen, device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - oy + ch // 2
    xs = torch.arange(w, device=x.device).view(1, 1, w) - ox + cw // 2
    inside = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def parse_policy(text: str) -> list[str]:
    """``"translation,cutout,color"`` -> the policy names, each checked (one-line error)."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    for name in names:
        AUGMENTS.get(name)
    if len(set(names)) != len(names):
        raise GanforgeError(f"diffaugment {text!r}: a policy is named twice")
    return names


class DiffAugment:
    """The configured policy as one callable; ``generator`` is the run's noise stream."""

    def __init__(self, policy: str) -> None:
        self.names = parse_policy(policy)
        self.ops = [AUGMENTS.get(n) for n in self.names]
        self.generator: torch.Generator | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x, self.generator)
        return x
