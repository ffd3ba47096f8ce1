"""GAN objectives, looked up by ``config.objective``. Each one's D step and G step are here.

Every objective receives D's raw outputs: logits for the classic losses, critic values for
the Wasserstein ones, reconstruction energies for BEGAN. The classic losses use softplus,
since log(sigmoid(l)) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l): no log(0) NaN.
Losses average over the last axis (the batch), so stacked outputs of R independent GANs,
shaped (R, B), give R losses at once (see :mod:`ganforge.stack`). The other terms of D's
step (gradient penalty, R1/R2, clipping) are penalties the objective declares
(:mod:`ganforge.penalties`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import GanforgeError
from .registry import Registry


class Objective:
    """D minimises ``d_loss(D(x), D(G(z)))``; G minimises ``g_loss(D(G(z)))``."""

    name = ""
    outputs_logits = True  # D's output is a logit (so D(x) = sigmoid is worth logging)
    # the terms of D's step besides d_loss, by name in ganforge.penalties (weights: config)
    penalties: tuple[str, ...] = ()
    extra_stats: tuple[str, ...] = ()  # names of extra per-step statistics (see stats())
    saturating = False  # G's loss saturates when D wins (health warns of it)
    per_process_state = False  # state kept per process (BEGAN's k): one process only
    stackable = True  # R runs can share one computation (no state of its own per run)
    model: str | None = None  # the one model whose D this objective needs, if any
    real_scores_high = True  # D scores what it takes for real higher (top-k ranks by it)

    @classmethod
    def from_config(cls, cfg: Any) -> Objective:
        """The objective with its hyper-parameters from the config."""
        return cls()

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_loss_grad(self, real: torch.Tensor,
                    fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``d_loss`` and the gradients of its sum with respect to ``real`` and ``fake``, for
        backward passes written by hand (:mod:`ganforge.mlp_grads`): autograd on the outputs
        alone, unless an objective knows the closed form."""
        loss, (g_real, g_fake) = _value_and_grad(self.d_loss, real, fake)
        return loss, g_real, g_fake

    def g_loss_grad(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``g_loss`` and the gradient of its sum with respect to ``fake``."""
        loss, (g_fake,) = _value_and_grad(self.g_loss, fake)
        return loss, g_fake

    def after_d_step(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Called after each optimiser step of D (weight clipping, BEGAN's k)."""

    def stats(self) -> torch.Tensor | None:
        """Current values of ``extra_stats`` as a device tensor."""
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """State that evolves during training (BEGAN's k), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


def _value_and_grad(loss_fn, *outputs: torch.Tensor) -> tuple[torch.Tensor,
                                                                tuple[torch.Tensor, ...]]:
    leaves = [o.detach().requires_grad_() for o in outputs]
    with torch.enable_grad():
        loss = loss_fn(*leaves)
        grads = torch.autograd.grad(loss.sum(), leaves)
    return loss.detach(), grads


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


class _Classic(Objective):
    """D: -mean(log D(x) + log(1 - D(G(z)))) with D(x) = sigmoid(logit)."""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (F.softplus(-real) + F.softplus(fake)).mean(-1)

    def d_loss_grad(self, real: torch.Tensor,
                    fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # d softplus(-l)/dl = sigmoid(l) - 1 = -sigmoid(-l) (written so: no cancellation when
        # D is sure, l >> 0);  d softplus(l)/dl = sigmoid(l)
        n = real.shape[-1]
        return (self.d_loss(real, fake), torch.sigmoid(-real).div_(-n),
                torch.sigmoid(fake).div_(n))


@OBJECTIVES.register("nonsaturating", "G: -mean log D(G(z)) (Goodfellow et al.'s practical fix)")
class NonSaturating(_Classic):
    name = "nonsaturating"

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake).mean(-1)

    def g_loss_grad(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.g_loss(fake), torch.sigmoid(-fake).div_(-fake.shape[-1])


@OBJECTIVES.register("minimax", "G: mean log(1 - D(G(z))), the saturating game value")
class Minimax(_Classic):
    name = "minimax"
    saturating = True

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -F.softplus(fake).mean(-1)

    def g_loss_grad(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.g_loss(fake), torch.sigmoid(fake).neg_().div_(fake.shape[-1])


@OBJECTIVES.register("least-squares", "LSGAN (Mao et al.): D: 1/2 (D(x)-1)^2 + 1/2 D(G(z))^2")
class LeastSquares(Objective):
    name = "least-squares"
    outputs_logits = False

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real - 1) ** 2).mean(-1) + 0.5 * (fake**2).mean(-1)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((fake - 1) ** 2).mean(-1)


@OBJECTIVES.register("hinge", "hinge (Lim & Ye; SN-GAN): D: relu(1-D(x)) + relu(1+D(G(z)))")
class Hinge(Objective):
    name = "hinge"
    outputs_logits = False

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real).mean(-1) + F.relu(1 + fake).mean(-1)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean(-1)


class _Wasserstein(Objective):
    outputs_logits = False

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        # the critic maximises E[D(x)] - E[D(G(z))], an estimate of the Wasserstein-1 distance
        return fake.mean(-1) - real.mean(-1)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean(-1)


@OBJECTIVES.register("wasserstein", "WGAN (Arjovsky et al.): critic weights clipped to +-clip")
class Wasserstein(_Wasserstein):
    name = "wasserstein"
    penalties = ("clip",)  # the Lipschitz constraint of the original WGAN (config clip)


@OBJECTIVES.register("wgan-gp", "WGAN-GP (Gulrajani et al.): + lambda (||grad D(x_hat)|| - 1)^2")
class WassersteinGP(_Wasserstein):
    name = "wgan-gp"
    penalties = ("gp",)  # weighted by config gp_lambda


@OBJECTIVES.register("began", "BEGAN (Berthelot et al.): autoencoder D, equilibrium k, "
                     "convergence M logged")
class BEGAN(Objective):
    """D is an autoencoder whose output is the per-sample L1 reconstruction error L(v).

    D: L(x) - k_t L(G(z));  G: L(G(z));  k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))),
    0, 1);  M = L(x) + |gamma L(x) - L(G(z))| measures convergence.
    """

    name = "began"
    outputs_logits = False
    extra_stats = ("k", "convergence")
    per_process_state = True
    stackable = False  # k is one number per GAN, updated from its own losses
    model = "mlp-began"  # D is an autoencoder
    real_scores_high = False  # a low reconstruction error is what D takes for real

    @classmethod
    def from_config(cls, cfg: Any) -> BEGAN:
        return cls(gamma=cfg.began_gamma, lambda_k=cfg.began_lambda_k)

    def __init__(self, gamma: float = 0.5, lambda_k: float = 0.001) -> None:
        self.gamma, self.lambda_k = gamma, lambda_k
        self.k = torch.zeros(())  # a tensor updated in place: no host sync, CUDA-graph safe
        self.m = torch.zeros(())

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.k.device != real.device:
            self.k, self.m = self.k.to(real.device), self.m.to(real.device)
        return real.mean(-1) - self.k * fake.mean(-1)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean(-1)

    @torch.no_grad()
    def after_d_step(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> None:
        l_real, l_fake = real.mean(), fake.mean()
        balance = self.gamma * l_real - l_fake
        self.k.add_(self.lambda_k * balance).clamp_(0.0, 1.0)
        self.m.copy_(l_real + balance.abs())

    def stats(self) -> torch.Tensor:
        return torch.stack([self.k, self.m])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"k": self.k.clone(), "m": self.m.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:  # in place, across devices: a captured CUDA graph reads these very tensors
            self.k.copy_(state["k"])
            self.m.copy_(state["m"])


def check_model_fits(objective: str, model: str) -> None:
    """An objective that needs its own model (BEGAN's autoencoder D) gets it, and only it."""
    needs = OBJECTIVES.get(objective).model
    owner = next((n for n in OBJECTIVES if OBJECTIVES.get(n).model == model), None)
    if needs not in (None, model) or (owner is not None and owner != objective):
        pair = (objective, needs) if needs else (owner, model)
        raise GanforgeError(f"objective {pair[0]!r} and model {pair[1]!r} go together (its D "
                            f"is built for it); got objective {objective!r} with model "
                            f"{model!r}")


def build_objective(cfg: Any) -> Objective:
    """The configured objective with its hyper-parameters from the config."""
    return OBJECTIVES.get(cfg.objective).from_config(cfg)
