"""Adam's update without torch.optim's per-call bookkeeping: the CPU fast paths' optimiser.

For the seed MLPs on a CPU, ``Optimizer.step`` spends as long on hooks, profiler ranges and
regrouping tensors by device as torch's fused Adam kernel spends on the update. Both
functions here call that same kernel (``torch._fused_adam_``) on the same state, so the
numbers, the optimiser's ``state_dict`` and resume are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

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


def lean_step(opt: torch.optim.Optimizer) -> Callable[[], None]:
    """``opt.step`` for a CPU ``Adam(fused=True)`` with one parameter group; other
    optimisers get ``opt.step`` itself."""
    group = opt.param_groups[0]
    if not (isinstance(opt, torch.optim.Adam) and len(opt.param_groups) == 1 and available()
            and group["fused"] and not (group["amsgrad"] or group["maximize"]
                                        or group["capturable"] or group["differentiable"])
            and all(p.device.type == "cpu" for p in group["params"])):
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
