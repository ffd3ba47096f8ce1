"""Adam's update without torch.optim's per-call bookkeeping: the CPU fast paths' optimiser.

For the seed MLPs on a CPU, ``Optimizer.step`` spends as long on hooks, profiler ranges and
regrouping tensors by device as torch's fused Adam kernel spends on the update. Both
functions here call that same kernel (``torch._fused_adam_``) on the same state, so the
numbers, the optimiser's ``state_dict`` and resume are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .registry import Registry

_FUSED = getattr(torch, "_fused_adam_", None)  # absent from some builds: then opt.step()


def fused_adam_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                exp_avgs: Sequence[torch.Tensor], exp_avg_sqs: Sequence[torch.Tensor],
                steps: Sequence[torch.Tensor], *, lr: float, betas: Sequence[float],
                eps: float, weight_decay: float = 0.0) -> None:
    """One Adam update of ``params`` in place; ``steps`` already count this step."""
    _FUSED(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), [], list(steps),
           lr=lr, beta1=betas[0], beta2=betas[1], weight_decay=weight_decay, eps=eps,
           amsgrad=False, maximize=False)


def available() -> bool:
    return _FUSED is not None


def leanable(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt`` is a CPU ``Adam(fused=True)`` with one plain parameter group."""
    group = opt.param_groups[0]
    return (isinstance(opt, torch.optim.Adam) and len(opt.param_groups) == 1 and available()
            and group["fused"] and not (group["amsgrad"] or group["maximize"]
                                        or group["capturable"] or group["differentiable"])
            and all(p.device.type == "cpu" for p in group["params"]))


def lean_step(opt: torch.optim.Optimizer) -> Callable[[], None]:
    """``opt.step`` for a CPU ``Adam(fused=True)`` with one parameter group; other
    optimisers get ``opt.step`` itself."""
    if not leanable(opt):
        return opt.step

    def step() -> None:
        group = opt.param_groups[0]  # read every step: a rollback changes lr, resume the state
        params = [p for p in group["params"] if p.grad is not None]
        state = [opt.state.get(p) for p in params]
        if not params or not all(state):  # the first step creates the state
            opt.step()
            return
        steps = [s["step"] for s in state]
        torch._foreach_add_(steps, 1)
        fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in state],
                    [s["exp_avg_sq"] for s in state], steps, lr=group["lr"],
                    betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"])

    return step


# --- building the optimisers ------------------------------------------------------------------
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("adam", "Adam (Kingma & Ba): betas from g_betas/d_betas")
def _adam(params: list[torch.Tensor], lr: float, betas: Sequence[float], device: torch.device,
          compiled: bool) -> torch.optim.Optimizer:
    # fused: one kernel for all parameters; capturable: step counters live on the device,
    # which CUDA-graph capture requires; with --compile on a GPU the foreach step is compiled
    on_cuda = device.type == "cuda"
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas),
                            fused=not (compiled and on_cuda), capturable=on_cuda)


@OPTIMIZERS.register("rmsprop", "RMSprop (WGAN's choice); betas are not used")
def _rmsprop(params: list[torch.Tensor], lr: float, betas: Sequence[float],
             device: torch.device, compiled: bool) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, capturable=device.type == "cuda")


def build_optimizer(name: str, params: list[torch.Tensor], lr: float, betas: Sequence[float],
                    device: torch.device, compiled: bool = False) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(params, lr, betas, device, compiled)


def runs_step(opts: Sequence[torch.optim.Optimizer], views: Sequence[Sequence[torch.Tensor]],
              stacked: Sequence[torch.Tensor]) -> Callable[[], None]:
    """One step of R runs' optimisers, each over its slices (``views``) of the ``stacked``
    parameters. CPU Adams whose settings agree are updated by one call of the fused kernel
    each single run's lean step calls, with the stack's gradients sliced per run; others get
    the slices as ``.grad`` and take their own ``step()``."""
    lean = all(leanable(o) for o in opts)
    cache: dict[str, Any] = {"key": None, "plan": []}

    def plan() -> list[tuple[tuple, list[int], list[list[torch.Tensor]]]]:
        # rebuilt when a rate changes (rollback) or a state is replaced (resume, rollback)
        key = tuple((id(o.state), o.param_groups[0]["lr"]) for o in opts)
        if key != cache["key"]:
            groups: dict[tuple, list[int]] = {}
            for k, o in enumerate(opts):
                g = o.param_groups[0]
                groups.setdefault((g["lr"], tuple(g["betas"]), g["eps"], g["weight_decay"]),
                                  []).append(k)
            cache["plan"] = [(hp, ks, [[opts[k].state[p][name] for k in ks
                                        for p in opts[k].param_groups[0]["params"]]
                                       for name in ("exp_avg", "exp_avg_sq", "step")])
                             for hp, ks in groups.items()]
            cache["key"] = key
        return cache["plan"]

    def step() -> None:
        if not lean or not all(o.state for o in opts):  # the first step creates the state
            for k, vs in enumerate(views):
                for v, p in zip(vs, stacked, strict=True):
                    v.grad = None if p.grad is None else p.grad[k]
            for o in opts:
                o.step()
            return
        grads = [p.grad.unbind(0) for p in stacked]
        for (lr, betas, eps, wd), ks, (ms, vs2, steps) in plan():
            ps = [v for k in ks for v in views[k]]
            gs = [g[k] for k in ks for g in grads]
            torch._foreach_add_(steps, 1)
            fused_adam_(ps, gs, ms, vs2, steps, lr=lr, betas=betas, eps=eps, weight_decay=wd)

    return step


def scale_lr(opt: torch.optim.Optimizer, factor: float) -> float:
    """Multiply an optimiser's learning rate in place (and the rate a schedule starts from);
    returns the new one."""
    for group in opt.param_groups:
        lr = group["lr"]
        if isinstance(lr, torch.Tensor):  # capturable optimisers keep lr on the device
            lr.mul_(factor)
        else:
            group["lr"] = lr * factor
        if BASE_LR in group:
            group[BASE_LR] *= factor
    return float(opt.param_groups[0]["lr"])


# --- learning-rate schedules (``lr_decay``) ---------------------------------------------------
# A schedule maps the share of the run done, u = iteration / steps in [0, 1), to a factor of
# the configured rate. It is a function of the iteration alone, so a resumed run continues
# on the same curve; the rate it multiplies is kept in the optimiser's param group (BASE_LR),
# so it travels in the checkpoint and a rollback's lowered rate stays lowered.
LR_SCHEDULES: Registry[Callable[[float], float]] = Registry("lr_decay")
BASE_LR = "base_lr"


@LR_SCHEDULES.register("none", "constant learning rates")
def _constant(u: float) -> float:
    return 1.0


@LR_SCHEDULES.register("linear", "both rates fall linearly to 0 over the run (SN-GAN's schedule)")
def _linear(u: float) -> float:
    return 1.0 - u


@LR_SCHEDULES.register("cosine", "both rates follow half a cosine from the set rate to 0")
def _cosine(u: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * u))


def decay_factor(name: str, step: int, steps: int) -> float:
    """Schedule ``name``'s factor at iteration ``step`` (0-based) of ``steps``."""
    return LR_SCHEDULES.get(name)(min(step / steps, 1.0))


def schedule_lr(opts: Sequence[torch.optim.Optimizer], factor: float) -> None:
    """Set each optimiser's rate to ``factor`` times the rate its schedule started from (its
    rate when first scheduled, or a checkpoint's)."""
    for group in (g for opt in opts for g in opt.param_groups):
        lr = group["lr"]
        base = group.setdefault(BASE_LR, float(lr))
        if isinstance(lr, torch.Tensor):
            lr.fill_(base * factor)
        else:
            group["lr"] = base * factor
