"""R runs of one architecture as one computation: the Trainer's run axis.

``ganforge train`` is R = 1 and uses the models as built. With R > 1 (``ganforge sweep``)
each run's G and D are built with its own seed as a single run builds them, then stacked:
parameter i of the stack is ``torch.stack`` of parameter i of every run, shape (R, *shape),
so run k's weights, gradients and optimiser state are the slices ``[k]``. MLP layers become
batched matmuls whose products mirror the single run's (``(R, out, in)`` weights, used
transposed as ``nn.Linear`` uses its own), so run k computes what the single run computes.

Each run keeps its own optimiser (torch's, over views of its slices), noise and data streams
and hyper-parameters (:data:`PER_RUN`). What does not stack is refused with the reason:
layers other than Linear + point-wise activations (BatchNorm's running statistics and
spectral norm's power iteration update per-run buffers in place, conditional models
concatenate labels), remedies other than minibatch-std and top-k (packing and augmentation
reshape D's batch in hooks, unrolling keeps a step of its own), BEGAN's per-GAN equilibrium
k, and several processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .config import PER_RUN
from .data.base import EpochSampler, Sampler
from .errors import GanforgeError, NotStackable
from .mlp_grads import Chain
from .models.mlp import MLPDiscriminator, MLPGenerator
from .remedies import active_remedies

# fields that only say where a run is written, not what it computes
PER_RUN_FREE = ("out",)


def check_stackable(configs: Sequence[Any], objective: Any, world_size: int) -> None:
    """One line saying why these runs cannot share one computation, or nothing."""
    base = configs[0].to_dict()
    for k, c in enumerate(configs[1:], 1):
        differ = [f for f, v in c.to_dict().items()
                  if v != base[f] and f not in PER_RUN + PER_RUN_FREE]
        if differ:
            raise GanforgeError(f"sweep: run {k} differs from run 0 in {', '.join(differ)}; "
                                f"stacked runs may differ only in {', '.join(PER_RUN)}")
    cfg = configs[0]
    remedies = active_remedies(cfg, unless="stackable")
    if remedies:
        raise NotStackable(f"sweep: runs with {', '.join(remedies)} do not stack (the remedy "
                            "reshapes D's batch or keeps a step of its own); train each run "
                            "with `ganforge train`")
    if not objective.stackable:
        raise NotStackable(f"sweep: objective {cfg.objective!r} keeps state per GAN that "
                            "does not stack; train each run with `ganforge train`")
    if world_size > 1:
        raise GanforgeError("sweep: stacked runs share one process; run the sweep without "
                            "torchrun")


class StackedMLP(nn.Module):
    """R copies of one MLP, each with its own weights: (R, B, ...) -> (R, B, out)."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        for net in nets:
            kinds = (MLPGenerator, MLPDiscriminator)
            if type(net) not in kinds or getattr(net, "conditional", False):
                raise NotStackable(f"sweep: {type(net).__name__} does not stack (stacked runs "
                                    "need the plain, unconditional MLP G and D)")
        chains = []
        for net in nets:
            try:
                chains.append(Chain.of(net.net))
            except ValueError as e:  # spectral norm, unknown activations
                raise NotStackable(f"sweep: {type(net).__name__} does not stack ({e})") from None
        self.is_d = type(nets[0]) is MLPDiscriminator
        self.data_shape = getattr(nets[0], "data_shape", None)
        self.out_range = getattr(nets[0], "out_range", None)
        self.acts = nn.ModuleList(act for _, _, act in chains[0].layers)
        self.mbstd = chains[0].mbstd  # minibatch-std groups: each run's batch grouped alone
        # interleaved W0, b0, W1, b1, ...: the order of each run's own parameters()
        self.stacked = nn.ParameterList()
        for i in range(len(chains[0].layers)):
            for j in (0, 1):
                self.stacked.append(nn.Parameter(torch.stack(
                    [c.layers[i][j].detach() for c in chains])))

    @property
    def runs(self) -> int:
        return self.stacked[0].shape[0]

    def chain(self) -> Chain:
        """The same layers for backward passes by hand (:mod:`ganforge.mlp_grads`)."""
        p = list(self.stacked)
        return Chain(p[0::2], p[1::2], list(self.acts), stacked=True, mbstd=self.mbstd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.chain().forward(x.flatten(2))
        return out.squeeze(-1) if self.is_d else out

    def unstack_into(self, net: nn.Module, k: int) -> nn.Module:
        """Run k's weights copied into an ordinary module of the same architecture."""
        with torch.no_grad():
            for p, s in zip(net.parameters(), self.stacked, strict=True):
                p.copy_(s[k])
        return net

    def load_run(self, net: nn.Module, k: int) -> None:
        """The reverse: run k's slice from an ordinary module's weights."""
        with torch.no_grad():
            for p, s in zip(net.parameters(), self.stacked, strict=True):
                s[k].copy_(p)


def stack_models(nets: Sequence[nn.Module]) -> nn.Module:
    """One module for R runs; R = 1 is the module itself (``ganforge train``)."""
    return nets[0] if len(nets) == 1 else StackedMLP(nets)


def run_views(module: nn.Module, runs: int) -> list[list[torch.Tensor]]:
    """Per run, its slices of every parameter: leaves an optimiser can own (made under no_grad,
    they share the stack's storage, so updating them updates the stack)."""
    params = list(module.parameters())
    if runs == 1:
        return [params]
    with torch.no_grad():
        return [[p[k] for p in params] for k in range(runs)]


def grad_norms(module: nn.Module, runs: int) -> torch.Tensor:
    """||grad|| over a module's parameters, per run (shape (R,)), on the device."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    device = next(module.parameters()).device
    if not grads:
        return torch.zeros(runs, device=device)
    if runs == 1:
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).view(1)
    per = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
    return torch.linalg.vector_norm(per, dim=0)


class RunBatches(Sampler):
    """R samplers (one per run, each with its own data order) as one: batches (R, B, F)."""

    def __init__(self, samplers: Sequence[Sampler]) -> None:
        self.samplers = list(samplers)
        self.batch_size = samplers[0].batch_size
        self.indexed = isinstance(samplers[0], EpochSampler)

    @property
    def value_range(self) -> tuple[float, float]:
        return getattr(self.samplers[0], "value_range", (0.0, 1.0))

    @value_range.setter
    def value_range(self, value: tuple[float, float]) -> None:
        for s in self.samplers:
            s.value_range = value

    def next(self) -> torch.Tensor:
        if self.indexed:  # every run's indices, gathered with one kernel
            idx = torch.stack([s._indices() for s in self.samplers])
            return self.samplers[0].gather(idx).flatten(2)
        return torch.stack([s.next() for s in self.samplers]).flatten(2)

    def make_static(self, per_replay: int) -> None:
        for s in self.samplers:
            s.make_static(per_replay)

    def stage(self) -> None:
        for s in self.samplers:
            s.stage()

    def shard(self, part: slice | None) -> None:
        for s in self.samplers:
            s.shard(part)
