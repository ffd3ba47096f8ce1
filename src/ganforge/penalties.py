"""The terms of D's step besides its objective, registered by name and composed by the Trainer.

- ``gp``: lambda E_xhat (||grad D(xhat)|| - 1)^2 on random interpolates of real and fake,
  one coefficient per sample (WGAN-GP; declared by the ``wgan-gp`` objective);
- ``r1``: gamma/2 E_x ||grad_x D(x)||^2 on real data (Mescheder et al. 2018);
- ``r2``: the same on generated samples;
- ``clip``: every weight of D clamped to [-c, c] after its optimiser step (the original WGAN;
  declared by the ``wasserstein`` objective).

An objective declares the penalties its D step needs (``Objective.penalties``); R1/R2 are on
for any objective whose config gives them a weight. Each penalty names the config field of its
weight, so R stacked runs of a sweep (:mod:`ganforge.stack`) each get their own. Lazy
regularisation (StyleGAN2): a ``lazy`` penalty applied every ``reg_interval`` D steps is
weighted by the interval so that its average strength is unchanged. ``by_hand`` says whether
the hand-written CPU backward (:mod:`ganforge.mlp_grads`) covers the term; a term that does
not is refused there, so a new term cannot be silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .registry import Registry


@dataclass
class DBatch:
    """What a penalty may look at in one D step. Tensors carry a leading run axis when
    ``lead`` is 2 (R stacked runs, flat features), none when it is 1."""

    D: Callable[..., torch.Tensor]
    real: torch.Tensor
    fake: torch.Tensor
    y_real: torch.Tensor | None
    y_fake: torch.Tensor | None
    generators: Sequence[torch.Generator]  # one per run: the runs' own noise streams
    lead: int = 1


@dataclass(frozen=True)
class Penalty:
    """One term: its config weight field (times ``scale``), and either a loss added to D's
    (``loss``, a value per run) or an update after D's optimiser step (``after_step``)."""

    field: str
    scale: float = 1.0
    lazy: bool = False
    by_hand: bool = False
    from_config: bool = False  # on whenever its config weight is positive (R1/R2)
    loss: Callable[[DBatch], torch.Tensor] | None = None
    after_step: Callable[[nn.Module, Any], None] | None = None


PENALTIES: Registry[Penalty] = Registry("penalty")


def grad_norms_sq(D: Callable[..., torch.Tensor], x: torch.Tensor, y: torch.Tensor | None,
                  lead: int = 1) -> torch.Tensor:
    """||grad_x D(x)||^2 per sample (shape ``x.shape[:lead]``), kept in the graph so the
    penalty can be minimised. Stacked runs share no weights: the gradient of the sum of all
    outputs is each sample's own."""
    x = x.detach().requires_grad_(True)
    out = D(x) if y is None else D(x, y)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(lead).pow(2).sum(-1)


def r1_penalty(D: Callable[..., torch.Tensor], real: torch.Tensor,
               y: torch.Tensor | None = None, lead: int = 1) -> torch.Tensor:
    """E ||grad D(x)||^2 over the batch (multiply by gamma/2)."""
    return grad_norms_sq(D, real, y, lead).mean(-1)


def gradient_penalty(D: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generators: Sequence[torch.Generator] | torch.Generator,
                     y: torch.Tensor | None = None, lead: int = 1) -> torch.Tensor:
    """E (||grad D(xhat)|| - 1)^2, xhat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample,
    drawn from each run's own stream exactly as a single run draws it."""
    if isinstance(generators, torch.Generator):
        generators = [generators]
    B = real.shape[lead - 1]
    shape = (B,) + (1,) * (real.dim() - lead)
    eps = [torch.rand(shape, generator=g, device=real.device) for g in generators]
    eps_t = eps[0] if lead == 1 else torch.stack(eps)
    xhat = eps_t * real.detach() + (1 - eps_t) * fake.detach()
    norms = (grad_norms_sq(D, xhat, y, lead) + 1e-12).sqrt()  # eps keeps sqrt's gradient finite
    return ((norms - 1) ** 2).mean(-1)


@torch.no_grad()
def clip_weights(D: nn.Module, c: Any) -> None:
    """Clamp D's weights to [-c, c]; ``c`` a number, or one per stacked run."""
    for p in D.parameters():
        if isinstance(c, torch.Tensor):
            bound = c.view(-1, *([1] * (p.dim() - 1)))
            p.copy_(torch.minimum(torch.maximum(p, -bound), bound))
        else:
            p.clamp_(-c, c)


PENALTIES.register("gp", "WGAN-GP's gradient penalty on interpolates (weight gp_lambda)")(
    Penalty("gp_lambda", loss=lambda b: gradient_penalty(b.D, b.real, b.fake, b.generators,
                                                          b.y_real, b.lead)))
PENALTIES.register("r1", "R1: gamma/2 E||grad D(x)||^2 on real data (weight r1_gamma)")(
    Penalty("r1_gamma", scale=0.5, lazy=True, from_config=True,
            loss=lambda b: r1_penalty(b.D, b.real, b.y_real, b.lead)))
PENALTIES.register("r2", "R2: the same on generated samples (weight r2_gamma)")(
    Penalty("r2_gamma", scale=0.5, lazy=True, from_config=True,
            loss=lambda b: r1_penalty(b.D, b.fake, b.y_fake, b.lead)))
PENALTIES.register("clip", "WGAN's weight clipping after each D step (bound clip)")(
    Penalty("clip", by_hand=True, after_step=clip_weights))


def active_penalties(configs: Sequence[Any], declared: Sequence[str]) -> list[str]:
    """The penalties of a D step: those its objective declares, and R1/R2 wherever a run's
    config gives them a positive weight."""
    names = list(declared)
    for name in PENALTIES:
        p = PENALTIES.get(name)
        if p.from_config and name not in names and any(getattr(c, p.field) > 0
                                                        for c in configs):
            names.append(name)
    return names


def weight(name: str, configs: Sequence[Any], device: torch.device) -> Any:
    """The penalty's weight: a float for one run, a (R,) tensor for stacked runs."""
    p = PENALTIES.get(name)
    values = [p.scale * float(getattr(c, p.field)) for c in configs]
    if len(values) == 1:
        return values[0]
    return torch.tensor(values, device=device)
