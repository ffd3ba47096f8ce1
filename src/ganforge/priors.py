"""Noise priors p(z), looked up by ``config.prior``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .registry import Registry

Prior = Callable[[int, int, torch.Generator], torch.Tensor]
PRIORS: Registry[Prior] = Registry("prior")


@PRIORS.register("uniform", "U(-1, 1) in every dimension (the tutorials' sample_Z)")
def uniform(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    # one kernel (uniform_ draws the same numbers as rand, mapped to [-1, 1))
    return torch.empty(n, dim, device=generator.device).uniform_(-1.0, 1.0, generator=generator)


@PRIORS.register("normal", "N(0, I)")
def normal(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, dim, generator=generator, device=generator.device)
