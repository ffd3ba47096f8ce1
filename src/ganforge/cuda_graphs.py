"""Capture a whole training iteration (k_d D steps + k_g G steps) as one CUDA graph.

The seed MLPs are so small that an eager iteration is dominated by kernel launches and
Python; replaying a captured graph launches all of its ~50 kernels with one call.
Requirements, all met by the Trainer: static shapes, data indices staged into fixed buffers
outside the graph (``Sampler.stage``), noise from a generator registered with the graph,
capturable optimisers, and statistics accumulated in device tensors.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import torch

from .errors import GanforgeError

if TYPE_CHECKING:
    from .train import Trainer


def graph_unroll_for(cfg: Any, most: int = 16) -> int:
    """The largest divisor (<= ``most``) of the log, sample and checkpoint intervals: a
    replay of that many iterations keeps logs, grids and checkpoints on their exact steps."""
    g = math.gcd(cfg.log_every, cfg.sample_every, cfg.ckpt_every)
    return max(d for d in range(1, most + 1) if g % d == 0)


def capture_iteration(trainer: Trainer, unroll: int = 1) -> torch.cuda.CUDAGraph:
    """Record ``unroll`` calls of ``trainer.iteration()`` as one graph; the trainer must have
    run a few eager iterations first. More iterations per replay amortise the host's work per
    replay (staging indices, launching the graph, refreshing RNG offsets)."""
    if trainer.device.type != "cuda":
        raise RuntimeError("CUDA graphs need a CUDA device")
    per_replay = trainer.cfg.k_d * unroll
    interval = trainer.cfg.reg_interval
    for pen, _, name in trainer.penalties:
        # the graph bakes in which D steps are regularised: the pattern must repeat exactly
        if pen.lazy and (per_replay % interval or trainer.d_steps % interval):
            raise RuntimeError(f"lazy {name} every {interval} D steps does not line up with "
                               f"{per_replay} D steps per replay")
    graph = torch.cuda.CUDAGraph()
    register = getattr(graph, "register_generator_state", None)
    if register is None:
        raise RuntimeError(f"torch {torch.__version__} cannot capture a custom RNG generator")
    torch.cuda.synchronize(trainer.device)
    for gen in (*trainer.gens, *trainer.data_gens):  # the runs' noise, and toy data drawn
        register(gen)                                # inside the graph
    # Capture records kernels without running them, so nothing is staged for it: each replay
    # stages its own indices first and the data order stays that of eager training.
    trainer.batches.make_static(trainer.cfg.k_d * unroll)
    with torch.cuda.graph(graph):
        for _ in range(unroll):
            trainer.iteration()
    return graph


def wants_graph(self: Trainer) -> bool:
    """Whether this run replays its iterations as a CUDA graph; ``on`` where it cannot is
    an error."""
    mode = self.cfg.cuda_graphs
    if mode == "on" and self.device.type != "cuda":
        raise GanforgeError("--cuda-graphs on needs a CUDA device (try --device cuda)")
    if self.world.distributed:  # the gradient all-reduce runs outside any graph
        if mode == "on":
            raise GanforgeError("--cuda-graphs on: not available with several processes")
        return False
    if self.cfg.unroll_steps:  # the unrolled steps draw data the replay does not stage
        if mode == "on":
            raise GanforgeError("--cuda-graphs on: not available with unroll_steps (the "
                                "unrolled D steps draw batches outside the staged ones)")
        return False
    if self.cfg.topk < 1.0 and self.cfg.topk_steps:  # a replay would keep top-k on
        if mode == "on":
            raise GanforgeError("--cuda-graphs on: not available with topk_steps (a replay "
                                "keeps the share of samples it was captured with)")
        return False
    if self.cfg.lr_decay != "none":  # a captured step keeps the rate it was captured with
        if mode == "on":
            raise GanforgeError(f"--cuda-graphs on: not available with lr_decay "
                                f"{self.cfg.lr_decay!r} (a replay would keep one rate)")
        return False
    return mode == "on" or (mode == "auto" and self.device.type == "cuda")

def setup_cuda_graph(self: Trainer, unroll: int = 1) -> str:
    """Capture ``unroll`` iterations as one CUDA graph; call after a few eager (warm-up)
    iterations. Returns a short note for the log: "on", or why capture fell back to eager.
    """
    d_steps = self.d_steps
    try:
        self.graph = capture_iteration(self, unroll)
        self.graph_unroll = unroll
        self.graph_note = f"on ({unroll} iterations per replay)"
    except Exception as e:  # capture is an optimisation: any failure falls back to eager
        self.graph = None
        self.batches.make_static(0)
        self.graph_note = f"off (capture failed: {type(e).__name__}: {str(e).splitlines()[0]})"
        print(f"ganforge: CUDA graph capture failed, training eagerly: {self.graph_note}",
              file=sys.stderr)
    self.d_steps = d_steps  # capture records steps without running them
    return self.graph_note
