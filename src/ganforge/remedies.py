"""Remedies for mode collapse, each one config field, combinable with any objective and model.

- ``pac`` (PacGAN, Lin et al. 2018): D judges packs of m samples concatenated (along the
  features of flat data, along the channels of images, as PacGAN's conv D does); real packs
  hold real samples only, fake packs fake ones. D's first layer is built m times wider.
- ``mbstd_group`` (ProGAN/StyleGAN): the standard deviation of each feature over a group of
  samples, averaged into one number, appended as an extra input of D's last linear layer.
- ``diffaugment`` (Zhao et al. 2020): the same random augmentations on real and fake images
  before D, differentiable for G (:mod:`ganforge.diffaugment`).
- ``topk`` (Sinha et al. 2020): G's update takes its loss over the share ``topk`` of its
  batch that D scores as most real, so the samples D already rejects (those between or
  off the modes) no longer pull G; 1 is every sample (off). :func:`top_k`.
- ``unroll_steps`` (Metz et al. 2017): G's loss is taken through D after k extra D updates,
  which are then undone (:class:`DSnapshot`); the Trainer runs it as its G phase.

Packing and augmentation are forward pre-hooks on D, so D's parameter names (and its
checkpoints) do not change; minibatch-std widens D's last Linear in place of the old one;
top-k only changes which of G's samples its loss averages. Those two are the remedies whose
runs stack in a sweep (each run's batch is grouped and ranked on its own).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import distributed
from .diffaugment import DiffAugment
from .errors import GanforgeError
from .registry import Registry

if TYPE_CHECKING:
    from .config import Config
    from .losses import Objective
    from .train import Trainer


@dataclass(frozen=True)
class Remedy:
    """One remedy: its config field, whether a config turns it on, and how it changes D
    (``install(cfg, D, data_shape)``; None for remedies that live in the training loop)."""

    field: str
    active: Callable[[Any], bool]
    install: Callable[[Any, nn.Module, tuple[int, ...]], None] | None = None
    # what runs it: the hand-written CPU backward (mlp_grads) and R stacked runs of a sweep
    # (stack) each refuse a remedy that does not say it is covered there; several DDP
    # processes refuse one that must see G's whole batch (each process holds a share)
    by_hand: bool = False
    stackable: bool = False
    sharded: bool = True


REMEDIES: Registry[Remedy] = Registry("remedy")


def active_remedies(cfg: Any, unless: str = "") -> list[str]:
    """The config fields of the remedies ``cfg`` turns on (empty: a plain GAN); with
    ``unless="by_hand"`` (or ``"stackable"``, ``"sharded"``) only those that path does not
    cover."""
    return [r.field for r in (REMEDIES.get(n) for n in REMEDIES)
            if r.active(cfg) and not (unless and getattr(r, unless))]


def install_remedies(cfg: Any, D: nn.Module, data_shape: tuple[int, ...]) -> None:
    """Change a freshly built D as the config asks (called by ``build_models``). The order
    is the registry's: augment each image, then pack; minibatch-std sits at D's end."""
    for name in REMEDIES:
        r = REMEDIES.get(name)
        if r.install is not None and r.active(cfg):
            r.install(cfg, D, tuple(data_shape))


def check_remedies(cfg: Any, data_shape: tuple[int, ...], num_classes: int) -> None:
    """Refusals that need the data's shape (one line each); field ranges are in config."""
    if getattr(cfg, "diffaugment", "") and len(data_shape) != 3:
        raise GanforgeError(f"diffaugment: augments images (C, H, W); {cfg.dataset!r} has "
                            f"samples of shape {tuple(data_shape)}")
    if getattr(cfg, "pac", 1) > 1 and num_classes and getattr(cfg, "conditional", False):
        raise GanforgeError("pac: a pack mixes samples of different classes; packing is not "
                            "supported with conditional=true")


def check_batches(cfg: Any, local_batch: int, processes: int) -> None:
    """Packs and minibatch-std groups are cut from each process's share of the batch; a
    remedy that is not ``sharded`` (top-k ranks G's batch) would see each share alone, which
    one process with the whole batch does not."""
    whole = active_remedies(cfg, unless="sharded") if processes > 1 else []
    if whole:
        named = ", ".join(f"{f}={getattr(cfg, f)}" for f in whole)
        raise GanforgeError(f"{named}: works on G's whole batch, which {processes} processes "
                            "each hold a share of; train it in one process")
    B = local_batch
    if B % cfg.pac or (cfg.mbstd_group and (B // cfg.pac) % cfg.mbstd_group):
        raise GanforgeError(f"pac={cfg.pac}, mbstd_group={cfg.mbstd_group}: each of the "
                            f"{processes} processes' {B} samples must split into whole "
                            "packs and groups")


# --- packing ----------------------------------------------------------------------------------
def packed_shape(data_shape: tuple[int, ...], m: int) -> tuple[int, ...]:
    """The shape of one pack of ``m`` samples as D sees it: channels (images) or features
    (anything else) times m. Model builders size D's first layer with it."""
    if m <= 1:
        return tuple(data_shape)
    if len(data_shape) == 3:
        return (data_shape[0] * m, *data_shape[1:])
    return (m * math.prod(data_shape),)


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """(N, *shape) -> (N/m, *packed shape): samples m·i .. m·i+m-1 form pack i. A view of
    consecutive samples, so real and fake halves of D's batch never share a pack."""
    n = x.shape[0]
    if n % m:
        raise ValueError(f"pac={m}: D got {n} samples, not a multiple of {m}")
    if x.dim() == 4:  # images: channel c of sample j in the pack is channel j*C + c
        return x.reshape(n // m, m * x.shape[1], *x.shape[2:])
    return x.reshape(n // m, -1)


def _install_pac(cfg: Any, D: nn.Module, data_shape: tuple[int, ...]) -> None:
    m = cfg.pac

    def hook(module: nn.Module, args: tuple) -> tuple:
        return (pack(args[0], m), *args[1:])

    D.register_forward_pre_hook(hook)


def _install_augment(cfg: Any, D: nn.Module, data_shape: tuple[int, ...]) -> None:
    augment = DiffAugment(cfg.diffaugment)
    D.diffaugment = augment  # the Trainer points ``augment.generator`` at its noise stream

    def hook(module: nn.Module, args: tuple) -> tuple:
        return (augment(args[0]), *args[1:])

    D.register_forward_pre_hook(hook)


# --- minibatch standard deviation ---------------------------------------------------------
def _groups(h: torch.Tensor, group: int, runs: bool) -> tuple[torch.Tensor, int, tuple]:
    """``h`` as (..., groups, g, features) (half precision in float32), the group size g and
    the run axis."""
    lead = h.shape[:1] if runs else ()
    n = h.shape[len(lead)]
    g = math.gcd(n, group)  # a batch that does not divide (a picture's 400 points): smaller
    x = h.reshape(*lead, n // g, g, -1)
    return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x), g, lead


def minibatch_std(h: torch.Tensor, group: int, eps: float = 1e-8,
                  runs: bool = False) -> torch.Tensor:
    """(N, F...) -> (N, 1): for each group of ``group`` consecutive samples, the standard
    deviation of every feature over the group, averaged over the features, given to each
    member. Consecutive (not strided, as StyleGAN's reshape groups) so that no group mixes
    D's real and fake halves. sqrt(var + eps) - sqrt(eps): 0 for identical samples (to the
    rounding of the group's mean: below 1e-9 in float32), with the gradient of sqrt finite
    there. ``runs``: ``h`` is (R, N, F), R stacked runs of a sweep (:mod:`ganforge.stack`),
    each grouped on its own -> (R, N, 1)."""
    x, g, lead = _groups(h, group, runs)
    # the variance as mean of squared deviations: torch's var over a middle axis of a few
    # samples takes a slow path (40% of grid-25-best's whole iteration in the profile)
    var = (x - x.mean(dim=-2, keepdim=True)).square().mean(dim=-2)
    std = ((var + eps).sqrt() - var.new_full((), eps).sqrt()).mean(dim=-1)  # same rounding
    return std.repeat_interleave(g, dim=-1).view(*lead, h.shape[len(lead)], 1).to(h.dtype)


def minibatch_std_backward(h: torch.Tensor, grad: torch.Tensor, group: int,
                           eps: float = 1e-8, runs: bool = False) -> torch.Tensor:
    """d loss / d h through :func:`minibatch_std`, given d loss / d its output (..., N):
    member j of a group with F features gets, for feature f, (the group's summed gradient)
    x (h_jf - mean_f) / (F g sqrt(var_f + eps)). For the hand-derived backward."""
    x, g, lead = _groups(h, group, runs)
    dev = x - x.mean(dim=-2, keepdim=True)
    root = (dev.square().mean(dim=-2, keepdim=True) + eps).sqrt()
    total = grad.to(x.dtype).reshape(*lead, -1, g).sum(-1)[..., None, None]
    return (total * dev / (root * (x.shape[-1] * g))).reshape(h.shape).to(h.dtype)


class MinibatchStdLinear(nn.Linear):
    """D's last Linear layer with one more input: the minibatch-std feature of its input."""

    def __init__(self, in_features: int, out_features: int, group: int,
                 bias: bool = True) -> None:
        super().__init__(in_features + 1, out_features, bias=bias)
        self.group = group

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([h, minibatch_std(h, self.group)], 1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mbstd_group={self.group}"


def _install_mbstd(cfg: Any, D: nn.Module, data_shape: tuple[int, ...]) -> None:
    parent, name, old = _last_linear(D)
    sn = parametrize.is_parametrized(old, "weight")
    new = MinibatchStdLinear(old.in_features, old.out_features, cfg.mbstd_group,
                             bias=old.bias is not None)
    if sn:
        from torch.nn.utils.parametrizations import spectral_norm

        new = spectral_norm(new)
    setattr(parent, name, new)


def _last_linear(D: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The parent, attribute name and module of the last ``nn.Linear`` registered in D."""
    found = None
    for parent in D.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Linear:
                found = (parent, name, child)
    if found is None:
        raise GanforgeError(f"mbstd_group: {type(D).__name__} has no Linear layer to feed")
    return found


REMEDIES.register("diffaugment", "DiffAugment on real and fake images before D")(
    Remedy("diffaugment", lambda c: bool(getattr(c, "diffaugment", "")), _install_augment))
REMEDIES.register("pac", "PacGAN: D judges packs of m samples")(
    Remedy("pac", lambda c: getattr(c, "pac", 1) > 1, _install_pac))
REMEDIES.register("mbstd", "minibatch standard deviation into D's last layer")(
    Remedy("mbstd_group", lambda c: getattr(c, "mbstd_group", 0) > 0, _install_mbstd,
           by_hand=True, stackable=True))
REMEDIES.register("topk", "top-k: G learns from the samples D scores as most real")(
    Remedy("topk", lambda c: getattr(c, "topk", 1.0) < 1.0, by_hand=True, stackable=True,
           sharded=False))
REMEDIES.register("unroll", "unrolled GAN: G's loss through k further D steps")(
    Remedy("unroll_steps", lambda c: getattr(c, "unroll_steps", 0) > 0))


# --- top-k G updates ----------------------------------------------------------------------
def top_k(objective: Objective, out: torch.Tensor, share: float
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """D's outputs on G's batch (..., N) -> the ceil(share * N) of them D scores as most
    real (the highest scores, the lowest for BEGAN's autoencoder D; by the score, not by G's
    loss, which least squares makes non-monotone above 1), and their indices (None: all
    kept). Per row: stacked runs and the packs of PacGAN are each ranked on their own."""
    n = out.shape[-1]
    k = min(n, max(1, math.ceil(share * n - 1e-9)))  # 0.75 * 512 is 384, not 385
    if k == n:
        return out, None
    idx = out.detach().topk(k, dim=-1, largest=objective.real_scores_high,
                            sorted=False).indices
    return out.gather(-1, idx), idx


def topk_share(cfg: Any, step: int) -> float:
    """The share of G's batch its update at iteration ``step`` (from 0) keeps: ``topk``,
    or 1 from iteration ``topk_steps`` on when that is set. Top-k in the first iterations
    keeps every mode pulling G while they form; the samples it left between the modes
    then get their gradient back, and the modes sharpen (benchmarks/README.md)."""
    return cfg.topk if not cfg.topk_steps or step < cfg.topk_steps else 1.0


def g_loss_top_k(objective: Objective, out: torch.Tensor, share: float) -> torch.Tensor:
    """G's loss on D's outputs ``out``, over the top-k of them (all when ``share`` is 1)."""
    return objective.g_loss(top_k(objective, out, share)[0])


# --- unrolled D steps ----------------------------------------------------------------------
class DSnapshot:
    """D's weights, buffers, optimiser state and the objective's state, taken before the
    unrolled steps and written back (in place: tensors keep their identity) after G's
    gradient has been taken through the unrolled D."""

    def __init__(self, D: nn.Module, opt: torch.optim.Optimizer, objective: Objective) -> None:
        self.opt, self.objective = opt, objective
        self.params = list(D.parameters())
        self.had_state = [bool(opt.state.get(p)) for p in self.params]
        self.tensors = [*self.params, *D.buffers()]
        for p in self.params:
            self.tensors += [v for v in opt.state.get(p, {}).values()
                             if isinstance(v, torch.Tensor)]
        self.saved = [t.detach().clone() for t in self.tensors]
        self.objective_state = objective.state_dict()

    @torch.no_grad()
    def restore(self) -> None:
        torch._foreach_copy_(self.tensors, self.saved)
        for p, had in zip(self.params, self.had_state, strict=True):
            if not had:  # state the unrolled steps created (Adam's first step) goes with them
                self.opt.state.pop(p, None)
        self.objective.load_state_dict(self.objective_state)


def check_config(cfg: Config) -> None:
    """Ranges of the remedies' fields (called by ``config.validate``)."""
    if cfg.pac < 1:
        raise GanforgeError(f"pac: expected 1 (off) or more samples per pack, got {cfg.pac}")
    if cfg.batch_size % cfg.pac:
        raise GanforgeError(f"pac={cfg.pac}: --batch-size {cfg.batch_size} must be a multiple "
                            f"of the pack size")
    if cfg.mbstd_group < 0:
        raise GanforgeError(f"mbstd_group: expected 0 (off) or a group size, got "
                            f"{cfg.mbstd_group}")
    if cfg.mbstd_group and (cfg.batch_size // cfg.pac) % cfg.mbstd_group:
        raise GanforgeError(f"mbstd_group={cfg.mbstd_group}: D's batch of "
                            f"{cfg.batch_size // cfg.pac} (packs) must be a multiple of it")
    if not 0.0 < cfg.topk <= 1.0:  # NaN is refused too
        raise GanforgeError(f"topk: expected the share of G's batch its update keeps, in "
                            f"(0, 1] (1 = off), got {cfg.topk}")
    if cfg.topk_steps < 0:
        raise GanforgeError(f"topk_steps: expected 0 (top-k for the whole run) or a number "
                            f"of iterations, got {cfg.topk_steps}")
    if cfg.unroll_steps < 0:
        raise GanforgeError(f"unroll_steps: expected 0 (off) or more, got {cfg.unroll_steps}")
    if cfg.diffaugment:
        from .diffaugment import parse_policy

        parse_policy(cfg.diffaugment)


# --- unrolled steps: the Trainer's G phase when unroll_steps > 0 ------------------------------
def unrolled_g_step(self: Trainer) -> None:
    """G's step through an unrolled D (Metz et al. 2017): D takes ``unroll_steps`` more
    steps on fresh batches, G's gradient is taken through that D, then D's weights, its
    optimiser state and the objective's state are put back as they were. First order:
    the unrolled D is treated as a constant of G's parameters (the surrogate of Metz et
    al.'s Sec. 2.3 without the second-order term), as the reference PyTorch ports do."""
    snapshot = DSnapshot(self.D, self.opt_d, self.objective)
    d_steps = self.d_steps
    for _ in range(self.cfg.unroll_steps):
        real, y_real = self.batches.next_with_labels()
        z, y_fake = _fresh_noise(self)
        self.opt_d.zero_grad(set_to_none=True)
        loss, out = self._d_loss(real, y_real if self.num_classes else None, z, y_fake)
        loss.backward()
        distributed.average_gradients(self.D.parameters(), self.world)
        self.opt_d_step()
        self._after_d_step(out.detach())
    self.d_steps = d_steps  # the unrolled steps are undone: they do not count
    self.g_step()
    snapshot.restore()

def _fresh_noise(self: Trainer) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step's noise (and labels), drawn globally and cut to this rank's share."""
    n = self.cfg.batch_size
    z = self._mine(self.prior(n, self.cfg.z_dim, self.gen))[0]
    if not self.num_classes:
        return z, None
    y = torch.randint(self.num_classes, (n,), generator=self.gen, device=self.device)
    return z, self._mine(y)[0]
