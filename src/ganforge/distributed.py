"""Data-parallel training over several processes, started by ``torchrun``.

Each process (rank) holds a full copy of G and D. ``batch_size`` is the *global* batch: every
rank draws the same global batch of indices and noise (the streams are seeded alike) and keeps
its own slice of ``batch_size / world`` samples, so N processes take the same steps as one
process with the whole batch. After each backward pass the gradients are averaged across ranks
(one all-reduce of the flattened gradients, as DistributedDataParallel does in buckets). The
gradients are averaged explicitly rather than through the ``DistributedDataParallel`` wrapper,
as StyleGAN2-ADA does: a GAN step freezes D while G learns through it, calls D twice per
step when D has BatchNorm, and differentiates D twice for R1/gradient penalties, and the
wrapper's reducer assumes one forward and one backward per parameter per step.

nccl on GPUs, gloo on CPUs. Only rank 0 writes files; logged statistics are averaged.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .errors import GanforgeError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # ganforge created the process group (and so tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def batch_slice(self, batch_size: int) -> slice | None:
        """This rank's part of a global batch (None: all of it, when alone)."""
        if not self.distributed:
            return None
        b = batch_size // self.size
        return slice(self.rank * b, (self.rank + 1) * b)


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


LAUNCHER_ENV = "GANFORGE_LAUNCHER"  # set by `--nproc`: its launcher reports the ranks' errors


def record_error(message: str) -> None:
    """Leave a training process's one-line error where torchelastic's launcher reads it."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path and launched_by_torchrun():
        import json
        import time

        from .files import atomic_write_text

        try:
            atomic_write_text(path, json.dumps({"message": message,
                                                "timestamp": int(time.time())}))
        except OSError:
            pass  # the launcher then reports the exit code alone


def is_main_process() -> bool:
    """Rank 0, or a process on its own (known before the process group exists)."""
    return os.environ.get("RANK", "0") == "0"


def init(device_name: str, timeout_s: float) -> tuple[World, str]:
    """Join the process group that torchrun's environment describes (a no-op when alone).

    Returns the world and the device name this rank should use (``cuda:LOCAL_RANK`` on GPUs).
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return World(), device_name
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto"
                                                  and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise GanforgeError(f"--device {device_name}: CUDA is not available on this machine")
        if local_rank >= torch.cuda.device_count():
            raise GanforgeError(f"rank {rank}: local rank {local_rank} but only "
                                f"{torch.cuda.device_count()} GPU(s) on this node")
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    owns_group = not dist.is_initialized()
    if owns_group:
        try:
            dist.init_process_group("nccl" if use_cuda else "gloo",
                                    timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as e:  # rendezvous failures come in many types
            raise GanforgeError(f"rank {rank}: could not join the {size} training processes "
                                f"({first_line(e)})") from None
    return World(rank, size, local_rank, owns_group), device_name


def shutdown(world: World) -> None:
    """Tear down the process group ``init`` created, once training is over: left to
    interpreter exit, its communication threads can abort the process ("terminate called
    without an active exception")."""
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def average_gradients(params: Iterable[nn.Parameter], world: World) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce for all of them)."""
    if not world.distributed:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:  # unused this step on this rank: contribute zeros, keep ranks aligned
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world.size)
    torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(
        flat.split([g.numel() for g in grads]), grads, strict=True)])


def average_(t: torch.Tensor, world: World) -> torch.Tensor:
    """``t`` averaged over the ranks, in place."""
    if world.distributed:
        dist.all_reduce(t)
        t.div_(world.size)
    return t


def broadcast_module(module: nn.Module, world: World) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if world.distributed:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. a stop request on one rank)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def check_replicas(modules: dict[str, nn.Module], world: World, device: torch.device) -> None:
    """Fail loudly if the ranks' copies of the models have drifted apart."""
    if not world.distributed:
        return
    sums = torch.stack([torch.stack([p.detach().double().sum() for p in m.parameters()]).sum()
                        for m in modules.values()]).to(device)
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    bad = [name for name, a, b in zip(modules, lo.tolist(), hi.tolist(), strict=True)
           if abs(a - b) > 1e-6 * max(1.0, abs(a))]
    if bad:
        raise GanforgeError(f"the training processes hold different {', '.join(bad)} weights "
                            "(replicas diverged)")


def launch(nproc: int, argv: Sequence[str]) -> int:
    """``ganforge train --nproc N ...``: run ``torchrun --standalone --nproc_per_node N -m
    ganforge train ...`` (the same argv without --nproc) and return its exit code."""
    cmd = [sys.executable, "-m", "ganforge.torchrun", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "ganforge", *argv]
    env = {**os.environ, LAUNCHER_ENV: "1"}
    if "OMP_NUM_THREADS" not in env:  # CPU ranks share the cores instead of oversubscribing
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    # torchrun in a session of its own: SIGTERM/Ctrl-C reach this process only, which hands
    # them to the training processes themselves. They stop together after a step, checkpoint
    # and exit 0, and torchrun with them (signalled itself, it would tear them down instead).
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def forward(signum: int, frame: object) -> None:
        for pid in _children(proc.pid) or [proc.pid]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc; empty elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]
