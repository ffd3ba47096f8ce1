"""What keeps a run from being lost: stop requests, non-finite numbers, OS errors, peers.

- SIGTERM/SIGINT set a flag the loop reads after each step (finish the step, checkpoint,
  exit 0); a second SIGINT interrupts at once.
- A non-finite loss or weight in run k stops run k (the default) or rolls it back to its last
  good checkpoint with lower learning rates (``--on-nan rollback``); in a sweep the other runs
  go on. Nothing is ever written over a good checkpoint with non-finite weights.
- Several processes take every decision together (``all_ranks``, ``from_rank0``).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import checkpoint, distributed
from .errors import GanforgeError
from .files import truncate_jsonl

if TYPE_CHECKING:
    from .callbacks import RunSlot
    from .session import Session
    from .train import Trainer


class StopRequest:
    """SIGTERM/SIGINT set a flag that the loop reads after each step; a second SIGINT
    interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def finite(row: dict[str, float]) -> bool:
    return all(np.isfinite(v) for v in row.values())


def non_finite_weights(trainer: Trainer, k: int) -> str | None:
    """'G' or 'D' if run k's weights hold a non-finite number."""
    for name, module in zip(("G", "D"), trainer.run_modules(k), strict=True):
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            return name
    return None


def non_finite(session: Session, slot: RunSlot, s: int, row: dict[str, float]) -> None:
    """A non-finite loss or weight in one run: stop it, or roll it back to its last good
    checkpoint with its learning rates lowered. A single run's stop is an error; in a sweep
    the run is marked failed and the others go on."""
    bad = ", ".join(k for k, v in row.items() if not np.isfinite(v))
    cfg, trainer = slot.run.config, session.trainer
    if cfg.on_nan == "stop" or slot.rollbacks >= cfg.max_rollbacks:
        why = "" if cfg.on_nan == "stop" else f" after {slot.rollbacks} rollbacks"
        message = (f"non-finite {bad} at iteration {s}{why}; nothing was written over the "
                   f"last good checkpoint: {slot.last_good()}")
        if trainer.R == 1:
            raise GanforgeError(message)
        slot.fail(message)
        print(f"ganforge: warning: run {slot.k}: {message}; the other runs go on",
              file=sys.stderr)
        return
    ckpt = slot.run.latest_checkpoint
    state = checkpoint.load(ckpt)
    checkpoint.check_state(state, ckpt, resume=True)
    shared = trainer.stats.clone(), list(trainer.counts), trainer.step_count, trainer.d_steps
    trainer.load_state_dict(state, ckpt, k=slot.k)
    if trainer.R == 1:
        trainer._zero_stats()
    else:
        # run k takes up its last good weights, optimiser state and streams; the stack's
        # iteration count goes on (run k trains the iterations since again), and the other
        # runs' sums since the last log row are theirs
        trainer.stats.copy_(shared[0])
        trainer.stats[slot.k].zero_()
        trainer.counts, trainer.step_count, trainer.d_steps = shared[1:]
    rollbacks = slot.rollbacks + 1
    slot.load_state_dict(state.get("session") or {})  # health and best-metric as they were
    slot.rollbacks = rollbacks
    g_lr, d_lr = trainer.set_learning_rates(cfg.nan_lr_factor, slot.k)
    if trainer.graph is not None:
        # the graph holds the replaced optimiser state's tensors: capture it again
        trainer.graph = None
        trainer.batches.make_static(0)
        session.plan_capture(trainer.graph_unroll)
    where = "" if trainer.R == 1 else f"run {slot.k}: "
    message = (f"non-finite {bad} at iteration {s}: rolled back to iteration "
               f"{int(state['step'])} ({ckpt.name}) with learning rates x{cfg.nan_lr_factor} "
               f"(G {g_lr:.3g}, D {d_lr:.3g}); rollback {slot.rollbacks} of "
               f"{cfg.max_rollbacks}")
    if session.world.is_main:
        print(f"ganforge: warning: {where}{message}", file=sys.stderr)
        if trainer.R == 1:  # the rows after the checkpoint are trained again
            slot.run.metrics = truncate_jsonl(slot.run.metrics_path, trainer.step_count)
        slot.run.log({"step": trainer.step_count, "warning": "nan_rollback",
                      "message": message})
    if trainer.R == 1:
        session.restart_clock()


def os_error(e: OSError, tail: str) -> GanforgeError:
    """An OS error as one line: the path, what went wrong, and what is safe."""
    where = e.filename or "a file"
    return GanforgeError(f"{where}: cannot write ({e.strerror or e}){tail}")


def from_rank0(value: str, world: distributed.World) -> str:
    if not world.distributed:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_ranks(fn: Any, world: distributed.World) -> None:
    """Run ``fn`` (on rank 0) and fail on every rank if it failed, instead of leaving the
    others waiting at their next collective."""
    error: GanforgeError | None = None
    try:
        fn()
    except GanforgeError as e:
        error = e
    if world.distributed:
        box = [str(error) if error else None]
        torch.distributed.broadcast_object_list(box, src=0)
        if box[0] is not None and error is None:
            error = GanforgeError(box[0])
    if error is not None:
        raise error
