"""GAN objectives, looked up by ``config.objective``.

Every objective takes D's raw logits. The classic losses are written with softplus, since
log(sigmoid(l)) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l): no log(0) -> NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import Registry


class Objective:
    """D minimises ``d_loss(real_logits, fake_logits)``; G minimises ``g_loss(fake_logits)``.

    Losses average over the last axis (the batch), so stacked logits of R independent GANs,
    shaped (R, B), give R losses at once (see :mod:`ganforge.sweep`).
    """

    name = ""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def _gan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # -mean(log D(x) + log(1 - D(G(z))))
    return (F.softplus(-real) + F.softplus(fake)).mean(-1)


@OBJECTIVES.register("nonsaturating", "G: -mean log D(G(z)) (Goodfellow et al.'s practical fix)")
class NonSaturating(Objective):
    name = "nonsaturating"
    d_loss = staticmethod(_gan_d_loss)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake).mean(-1)


@OBJECTIVES.register("minimax", "G: mean log(1 - D(G(z))), the saturating game value")
class Minimax(Objective):
    name = "minimax"
    d_loss = staticmethod(_gan_d_loss)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -F.softplus(fake).mean(-1)
