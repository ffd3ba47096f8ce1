"""Capture a whole training iteration (k_d D steps + k_g G steps) as one CUDA graph.

The seed MLPs are so small that an eager iteration is dominated by kernel launches and
Python; replaying a captured graph launches all of its ~50 kernels with one call.
Requirements, all met by the Trainer: static shapes, data indices staged into fixed buffers
outside the graph (``Sampler.stage``), noise from a generator registered with the graph,
capturable optimisers, and statistics accumulated in device tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .train import Trainer


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
