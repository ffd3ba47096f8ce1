"""A training session from start to finish, around :class:`~ganforge.train.Trainer`: one run
(``ganforge train``) or R runs stacked (``ganforge sweep``), each with its own run folder.

The loop is: step; every ``log_every`` log, every ``sample_every`` draw the pictures, every
``eval_every`` evaluate, every ``ckpt_every`` checkpoint. The folders are handled by
:mod:`ganforge.run` and :mod:`ganforge.resume`, the watching by :mod:`ganforge.callbacks`,
and what keeps a run from being lost (signals, non-finite numbers) by :mod:`ganforge.faults`.
"""

from __future__ import annotations

import copy
import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import budget, distributed, health, trackers
from .callbacks import RunSlot, eval_features, write_summary
from .config import Config, as_config
from .data import load_dataset
from .errors import GanforgeError
from .faults import (
    StopRequest,
    all_ranks,
    finite,
    from_rank0,
    non_finite,
    non_finite_weights,
    os_error,
)
from .files import atomic_write_json, remove_partial_writes, truncate_jsonl
from .machine import machine_info
from .resume import plan_resume, read_json
from .run import Claim, Run, claim, claim_existing, default_out
from .train import GRAPH_WARMUP, Trainer, graph_unroll_for, pick_device


def train(config: Config | dict[str, Any] | str | Path | None = None, *, overwrite: bool = False,
          progress: bool | None = None, resume: str | Path | None = None,
          **overrides: Any) -> Run:
    """Train a GAN and return its :class:`Run`.

    ``config`` is a :class:`Config`, a dict of fields (a preset name plus overrides, or a
    complete config.json), a TOML/JSON file, or None for the default preset. Keyword
    arguments override single fields: ``ganforge.train(preset="toy-1d", steps=500)``.
    ``resume=RUN_DIR`` continues that run (or sweep) in its folder from its latest checkpoint
    (keyword arguments may then only extend or re-watch it, e.g. ``steps=``).
    """
    if resume is not None:
        if config is not None:
            raise GanforgeError("--resume continues a run with its own config.json; "
                                "do not pass a config too")
        session = Session.resumed(Path(resume), overrides, progress)
    else:
        session = Session.fresh([as_config(config, dict(overrides))], overwrite, progress)
    try:
        return session.run()[0]
    finally:
        session.close()


class Session:
    """Run folders, a trainer, and the bookkeeping between them."""

    def __init__(self, configs: list[Config], progress: bool | None) -> None:
        """Join the other processes (if any), load the data, build the trainer and the
        evaluation features: everything that can fail on bad input, before any folder is
        touched."""
        cfg = configs[0]
        self.world, device_name = distributed.init(cfg.device, cfg.dist_timeout)
        device = pick_device(device_name)
        self.data = load_dataset(cfg)
        budget.check_training(cfg, tuple(self.data.shape),
                              self.data.num_classes if cfg.conditional else 0, device,
                              self.world.size / len(configs))
        self.data_used = {**self.data.info, "device": str(device), "processes": self.world.size,
                          "machine": machine_info(device)}
        if self.data.name != cfg.dataset:  # mnist fell back to the offline sample: record it
            self.data_used["requested"] = cfg.dataset
            configs = [dataclasses.replace(c, dataset=self.data.name) for c in configs]
        self.configs, self.cfg, self.progress = configs, configs[0], progress
        self.trainer = Trainer(configs if len(configs) > 1 else configs[0], self.data, device,
                               self.world)
        self.trainer.wants_graph()  # --cuda-graphs on without a GPU fails here
        self.data_used["backward"] = self.trainer.backward_note
        self.features = eval_features(self.cfg, device)  # the network of --eval-every
        self._diversity = health.data_diversity(self.data)
        self.slots: list[RunSlot] = []
        self.capture_at = -1  # the iteration at which the CUDA graph is captured (-1: never)
        self.claim: Claim | None = None  # rank 0's lock on the run (or sweep) folder
        self.root: Path | None = None  # the sweep folder (R > 1)

    def close(self) -> None:
        """Release the folder and the process group (left to interpreter exit, the group's
        threads can abort the process)."""
        if self.claim is not None:
            self.claim.release()
            self.claim = None
        distributed.shutdown(self.world)

    def _open_runs(self, dirs: list[Path]) -> None:
        t = self.trainer
        configs = [dataclasses.replace(c, out=str(d)) for c, d in zip(self.configs, dirs,
                                                                       strict=True)]
        self.configs = t.configs = configs
        self.cfg = t.cfg = configs[0]
        for k, (c, d) in enumerate(zip(configs, dirs, strict=True)):
            G, D = t.run_modules(k) if t.R == 1 else (None, None)
            monitor = health.HealthMonitor(probabilities=t.objective.outputs_logits,
                                           data_diversity=self._diversity,
                                           saturating=t.objective.saturating)
            extra = {} if t.R == 1 else {"sweep": str(d.parent), "run": k}
            self.slots.append(RunSlot(k, Run(dir=d, config=c, G=G, D=D), monitor,
                                      {**self.data_used, **extra}))

    # --- setting up ------------------------------------------------------------------------
    @classmethod
    def fresh(cls, configs: list[Config], overwrite: bool, progress: bool | None,
              root: Path | None = None, sweep_record: dict[str, Any] | None = None) -> Session:
        session = cls(configs, progress)
        world, cfg = session.world, session.cfg
        out = root or (Path(cfg.out) if cfg.out else default_out(cfg.preset))
        out = Path(from_rank0(str(out), world))  # a timestamped default must be one folder

        def take() -> None:
            session.claim = claim(out, overwrite)
        try:
            all_ranks(lambda: take() if world.is_main else None, world)
            if sweep_record is None:
                session._open_runs([out])
            else:
                session.root = out
                session._open_runs([out / f"run-{k:03d}" for k in range(len(configs))])
            # --overwrite: the old run stays aside until the new one has its config, first
            # picture and first checkpoint; any failure up to here puts it back
            all_ranks(lambda: session._start(sweep_record) if world.is_main else None, world)
            session.save_latest()  # a first good checkpoint: resume and rollback have one
        except BaseException:
            trackers.abandon_all(session.slots)  # before the restore removes what they wrote
            if session.claim is not None:
                session.claim.restore()
            session.close()
            raise
        if session.claim is not None:
            session.claim.commit()
        return session

    def _start(self, sweep_record: dict[str, Any] | None) -> None:
        try:
            if sweep_record is not None:
                atomic_write_json(self.root / "sweep.json", sweep_record)
            for slot in self.slots:
                slot.run.dir.mkdir(exist_ok=True)
                slot.run.write_config(slot.data_used)
                slot.tb = trackers.open_trackers(slot.run.dir, slot.run.config)
                slot.snapshot(self.trainer)
        except OSError as e:
            raise os_error(e, "") from None

    @classmethod
    def resumed(cls, folder: Path, overrides: dict[str, Any],
                progress: bool | None) -> Session:
        lock = claim_existing(folder) if distributed.is_main_process() else None
        try:
            return cls._resumed(folder, overrides, progress, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def _resumed(cls, folder: Path, overrides: dict[str, Any], progress: bool | None,
                 lock: Claim | None) -> Session:
        dirs, sweep, records, configs, ckpts = plan_resume(folder, overrides)
        session = cls(configs, progress)
        session.claim = lock
        session.root = folder if sweep else None
        trainer = session.trainer
        for k, (path, state) in enumerate(ckpts):
            trainer.load_state_dict(state, path, k)
        session._open_runs(dirs)
        try:
            for slot, (path, state), record in zip(session.slots, ckpts, records, strict=True):
                slot.load_state_dict(state.get("session") or {})
                slot.saved_at = trainer.step_count
                slot.data_used = {**record.get("data_used", {}), **slot.data_used}
                if record.get("data_used", {}).get("failed"):
                    slot.failed = record["data_used"]["failed"]
                if session.world.is_main:
                    session._reopen(slot, path)
        except BaseException:
            trackers.abandon_all(session.slots)
            raise
        if session.world.is_main:
            print(f"ganforge: resuming {folder} at iteration {trainer.step_count} of "
                  f"{configs[0].steps}", file=sys.stderr)
        return session

    def _reopen(self, slot: RunSlot, ckpt: Path) -> None:
        run, step = slot.run, self.trainer.step_count
        # config.json first: if the disk is full, it fails whole and nothing else moved
        run.write_config({**slot.data_used, "resumed_from": {"checkpoint": str(ckpt),
                                                             "step": step}})
        for folder in (run.dir, run.checkpoints_dir, run.samples_dir):
            remove_partial_writes(folder)  # of writes a crash interrupted
        run.metrics = truncate_jsonl(run.metrics_path, step)
        slot.tb = trackers.open_trackers(run.dir, run.config, step + 1, resume=True)

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> list[Run]:
        cfg, trainer = self.cfg, self.trainer
        bar = tqdm(total=cfg.steps, initial=trainer.step_count, unit="it", dynamic_ncols=True,
                   desc=cfg.preset if trainer.R == 1 else f"{cfg.preset} x{trainer.R}",
                   disable=(None if self.progress is None else not self.progress)
                   if self.world.is_main else True)
        self.restart_clock()
        self._t_start = self._t_last
        # a replay covers `unroll` iterations: a divisor of every interval keeps logs, grids
        # and checkpoints on their exact steps
        unroll = graph_unroll_for(cfg)
        self.plan_capture(unroll)
        try:
            with StopRequest() as stop:
                while True:  # until the final checkpoints are written with finite weights
                    while trainer.step_count < cfg.steps:
                        if trainer.step_count == self.capture_at:
                            self.data_used["cuda_graphs"] = trainer.setup_cuda_graph(unroll)
                            self._write_configs()
                        trainer.step(cfg.steps - trainer.step_count)
                        s = trainer.step_count
                        if (s % cfg.log_every == 0 or s == cfg.steps) and self.log(s, bar):
                            continue  # a single run rolled back: train those steps again
                        if s % cfg.sample_every == 0 or s == cfg.steps:
                            self.snapshot()
                        if cfg.eval_every and (s % cfg.eval_every == 0 or s == cfg.steps):
                            self.evaluate()
                        if s % cfg.ckpt_every == 0 and s != cfg.steps:
                            self.save_latest()
                        if self._should_stop(stop, s):
                            return self.stop(stop.signum)
                    if self.save_latest(final=True):
                        break
        except OSError as e:  # disk full, read-only, permissions: say so, keep what is there
            raise os_error(e, f"; nothing was lost: the last good checkpoint is "
                           f"{self.slots[0].last_good()}") from None
        except RuntimeError as e:
            if self.world.distributed:  # a collective failed: a peer died or timed out
                raise GanforgeError(f"rank {self.world.rank}: lost the other training processes "
                                    f"at iteration {trainer.step_count} "
                                    f"({distributed.first_line(e)}); last checkpoint: "
                                    f"{self.slots[0].last_good()}") from None
            raise
        finally:
            bar.close()
            for slot in self.slots:
                if slot.tb is not None:
                    slot.tb.close()
        if self.world.is_main:
            self.record_time()
            for slot in self.live():
                slot.finish_pictures()
                if slot.tb is not None:
                    slot.tb.finish(slot.run)  # MLflow: pictures and final checkpoint
        return self.finish()

    def live(self) -> list[RunSlot]:
        """The runs still training (in a sweep, a failed run stops while the others go on)."""
        return [s for s in self.slots if s.failed is None]

    def finish(self) -> list[Run]:
        """The runs, with their final weights as ordinary modules (a sweep's are copies), and
        a sweep's summary.json/csv."""
        if self.root is not None and self.world.is_main:
            vary = read_json(self.root / "sweep.json", str(self.root)).get("vary") or {}
            write_summary(self.root, self.slots, vary, self.cfg.keep_best)
        if self.trainer.R > 1:
            for slot in self.slots:
                slot.run.G, slot.run.D = (copy.deepcopy(m) for m in
                                          self.trainer.run_modules(slot.k))
        return [slot.run for slot in self.slots]

    def restart_clock(self) -> None:
        self._t_last, self._n_last = time.perf_counter(), self.trainer.step_count

    def plan_capture(self, unroll: int) -> None:
        """Capture the CUDA graph after a few eager (warm-up) iterations, on a multiple of the
        iterations per replay."""
        if self.trainer.wants_graph():
            s = self.trainer.step_count + GRAPH_WARMUP
            self.capture_at = -(-s // unroll) * unroll

    def _should_stop(self, stop: StopRequest, s: int) -> bool:
        if not self.live():
            raise GanforgeError(f"every run of the sweep failed; the last: {self.slots[-1].failed}")
        if not self.world.distributed:
            return stop.signum is not None
        # the ranks must stop after the same step: they agree once per log interval
        if s % self.cfg.log_every:
            return False
        return distributed.any_rank(stop.signum is not None, self.world, self.trainer.device)

    def stop(self, signum: int | None) -> list[Run]:
        """A stop request: checkpoint the finished step and say how to go on."""
        name = signal.Signals(signum).name if signum else "a signal on another rank"
        self.save_latest()
        for slot in self.slots:
            slot.run.stopped = name
        if self.world.is_main:
            self.record_time()
            where = self.root or self.slots[0].run.dir
            print(f"ganforge: stopped by {name} at iteration {self.trainer.step_count}; "
                  f"checkpoint: {self.slots[0].run.latest_checkpoint}"
                  f"{'' if self.root is None else ' (and each run of the sweep)'}. Resume "
                  f"with: ganforge train --resume {where}", file=sys.stderr)
        return self.finish()

    def record_time(self) -> None:
        """Wall-clock seconds of training (summed over resumed sessions) into config.json."""
        for slot in self.slots:
            spent = slot.data_used.get("wall_clock_s", 0.0) + time.perf_counter() - self._t_start
            slot.data_used["wall_clock_s"] = round(spent, 1)
            slot.data_used["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self._write_configs()

    def _write_configs(self) -> None:
        if self.world.is_main:
            for slot in self.slots:
                slot.data_used.update({k: v for k, v in self.data_used.items()
                                       if k == "cuda_graphs"})
                slot.run.write_config(slot.data_used)

    # --- logging, pictures, evaluation -------------------------------------------------------
    def log(self, s: int, bar: Any) -> bool:
        """Log every run's row; handle non-finite ones. True when a single run rolled back."""
        rows = self.trainer.read_stats()  # averaged over the ranks
        now = time.perf_counter()
        its = (s - self._n_last) / max(now - self._t_last, 1e-9)
        self._t_last, self._n_last = now, s
        for slot, row in zip(self.slots, rows, strict=True):
            if slot.failed is None and self.world.is_main:
                slot.log(s, row, its, finite(row))
        first = rows[self.live()[0].k] if self.live() else rows[0]
        bar.update(s - bar.n)
        bar.set_postfix(d_loss=f"{first['d_loss']:.3f}", g_loss=f"{first['g_loss']:.3f}",
                        refresh=False)
        rolled = False
        for slot, row in zip(self.slots, rows, strict=True):
            if slot.failed is None and not finite(row):
                non_finite(self, slot, s, row)
                rolled = self.trainer.R == 1
        return rolled

    def snapshot(self) -> None:
        if self.world.is_main:
            for slot in self.live():
                slot.snapshot(self.trainer)

    def evaluate(self) -> None:
        """Rank 0 evaluates each run (its EMA generator when on); the others wait at the next
        collective."""
        if self.world.is_main:
            for slot in self.live():
                slot.evaluate(self.trainer, self.features, lambda slot=slot: self.state(slot))

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, slot: RunSlot) -> dict[str, Any]:
        return {**self.trainer.state_dict(slot.k), "session": slot.state_dict()}

    def save_latest(self, final: bool = False) -> bool:
        """Write each run's checkpoints/latest (and final); never over a good one with
        non-finite weights (those roll back or stop instead). Returns whether all wrote."""
        trainer = self.trainer
        distributed.check_replicas({"G": trainer.G, "D": trainer.D}, self.world, trainer.device)
        wrote = True
        for slot in self.live():
            bad = non_finite_weights(trainer, slot.k)
            if bad:
                non_finite(self, slot, trainer.step_count, {f"{bad} weights": float("nan")})
                wrote = wrote and slot.failed is not None  # a rolled-back run trains on
        for slot in self.live() if wrote else []:
            if self.world.is_main:
                self._save(slot, final)
            slot.saved_at = trainer.step_count
        if self.world.distributed:  # the others may read it next (rollback)
            torch.distributed.barrier()
        return wrote

    def _save(self, slot: RunSlot, final: bool) -> None:
        slot.run.sync_metrics()  # the rows this checkpoint's resume will keep are on disk
        slot.run.save_checkpoint(self.state(slot), final, keep_previous=self.trainer.R > 1)
