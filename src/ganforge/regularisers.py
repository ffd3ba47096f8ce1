"""Gradient penalties on D, combinable with any objective.

- ``r1``: gamma/2 * E_x ||grad_x D(x)||^2 on real data (Mescheder et al. 2018);
- ``r2``: the same on generated samples;
- ``gp``: lambda * E_xhat (||grad D(xhat)|| - 1)^2 on random interpolates, one coefficient
  per sample (WGAN-GP; applied when the objective asks for it).
Lazy regularisation (StyleGAN2): a penalty applied every ``interval`` D steps is weighted by
``interval`` so that its average strength is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def _grad_norms_sq(D: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """||grad_x D(x)||^2 per sample, kept in the graph so the penalty can be minimised."""
    x = x.detach().requires_grad_(True)
    out = D(x) if y is None else D(x, y)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(1)


def r1_penalty(D: nn.Module, real: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """E ||grad D(x)||^2 on real samples (multiply by gamma/2)."""
    return _grad_norms_sq(D, real, y).mean()


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator, y: torch.Tensor | None = None) -> torch.Tensor:
    """E (||grad D(xhat)|| - 1)^2 with xhat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device=real.device)
    xhat = eps * real.detach() + (1 - eps) * fake.detach()
    norms = (_grad_norms_sq(D, xhat, y) + 1e-12).sqrt()  # eps keeps sqrt's gradient finite
    return ((norms - 1) ** 2).mean()
