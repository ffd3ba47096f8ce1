"""One training run from start to finish, around :class:`~ganforge.train.Trainer`.

The loop is: step; every ``log_every`` log, every ``sample_every`` draw the grid, every
``eval_every`` evaluate, every ``ckpt_every`` checkpoint. Around it sit what keeps a run from
being lost: exact resume (``--resume RUN_DIR``), SIGTERM/SIGINT (finish the step, checkpoint,
exit 0), non-finite losses (stop, or roll back to the last good checkpoint), and several
processes (only rank 0 writes; all ranks take every decision together).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import budget, checkpoint, distributed, health, trackers, viz
from .config import FIELDS, Config, from_dict, resolve, validate
from .data import Gaussian1D, Points2D, load_dataset, plot_points_2d
from .errors import GanforgeError
from .files import remove_partial_writes, truncate_jsonl
from .machine import machine_info
from .run import Claim, Run, claim, claim_existing, default_out
from .train import GRAPH_WARMUP, Trainer, graph_unroll_for, pick_device, to_unit

# Fields a resumed run may change: how long it trains and how it is watched, not what it is.
RESUME_MAY_CHANGE = ("steps", "device", "cuda_graphs", "compile", "backward", "log_every",
                     "sample_every", "ckpt_every", "eval_every", "eval_n", "tensorboard",
                     "on_nan", "nan_lr_factor", "max_rollbacks", "dist_timeout")


def train(config: Config | dict[str, Any] | str | Path | None = None, *, overwrite: bool = False,
          progress: bool | None = None, resume: str | Path | None = None,
          **overrides: Any) -> Run:
    """Train a GAN and return its :class:`Run`.

    ``config`` is a :class:`Config`, a dict of fields (a preset name plus overrides, or a
    complete config.json), a TOML/JSON file, or None for the default preset. Keyword
    arguments override single fields: ``ganforge.train(preset="toy-1d", steps=500)``.
    ``resume=RUN_DIR`` continues that run in its folder from its latest checkpoint (keyword
    arguments may then only extend or re-watch it, e.g. ``steps=``).
    """
    if resume is not None:
        if config is not None:
            raise GanforgeError("--resume continues a run with its own config.json; "
                                "do not pass a config too")
        session = Session.resumed(Path(resume), overrides, progress)
    else:
        session = Session.fresh(_as_config(config, dict(overrides)), overwrite, progress)
    try:
        return session.run()
    finally:
        session.close()


class _StopRequest:
    """SIGTERM/SIGINT set a flag that the loop reads after each step; a second SIGINT
    interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
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


class Session:
    """A run folder, a trainer, and the bookkeeping between them."""

    def __init__(self, cfg: Config, progress: bool | None) -> None:
        """Join the other processes (if any), load the data, build the trainer and the
        evaluation features: everything that can fail on bad input, before any folder is
        touched."""
        self.world, device_name = distributed.init(cfg.device, cfg.dist_timeout)
        device = pick_device(device_name)
        self.data = load_dataset(cfg)
        budget.check_training(cfg, tuple(self.data.shape),
                              self.data.num_classes if cfg.conditional else 0, device,
                              self.world.size)
        self.data_used = {**self.data.info, "device": str(device), "processes": self.world.size,
                          "machine": machine_info(device)}
        if self.data.name != cfg.dataset:  # mnist fell back to the offline sample: record it
            self.data_used["requested"] = cfg.dataset
            cfg = dataclasses.replace(cfg, dataset=self.data.name)
        self.cfg, self.progress = cfg, progress
        self.trainer = Trainer(cfg, self.data, device, self.world)
        self.trainer.wants_graph()  # --cuda-graphs on without a GPU fails here
        self.data_used["backward"] = "by hand" if self.trainer.by_hand else "autograd"
        self.features = _eval_features(cfg, device)  # the network of --eval-every
        self.health = health.HealthMonitor(probabilities=self.trainer.objective.outputs_logits,
                                           data_diversity=health.data_diversity(self.data),
                                           saturating=cfg.objective == "minimax")
        self.tb: trackers.Trackers | None = None  # TensorBoard and/or MLflow
        self.run_: Run
        self.best: float | None = None
        self.rollbacks = 0
        self.saved_at: int | None = None  # the iteration of checkpoints/latest
        self.capture_at = -1  # the iteration at which the CUDA graph is captured (-1: never)
        self.claim: Claim | None = None  # rank 0's lock on the run folder

    def close(self) -> None:
        """Release the run folder and the process group (left to interpreter exit, the
        group's threads can abort the process)."""
        if self.claim is not None:
            self.claim.release()
            self.claim = None
        distributed.shutdown(self.world)

    def _open_run(self, out: Path) -> Run:
        self.cfg = self.trainer.cfg = dataclasses.replace(self.cfg, out=str(out))
        self.run_ = Run(dir=out, config=self.cfg, G=self.trainer.G, D=self.trainer.D)
        return self.run_

    # --- setting up ------------------------------------------------------------------------
    @classmethod
    def fresh(cls, cfg: Config, overwrite: bool, progress: bool | None) -> Session:
        session = cls(cfg, progress)
        world = session.world
        out = Path(cfg.out) if cfg.out else default_out(cfg.preset)
        out = Path(_from_rank0(str(out), world))  # a timestamped default must be one folder

        def take() -> None:
            session.claim = claim(out, overwrite)
        try:
            _all_ranks(lambda: take() if world.is_main else None, world)
            run = session._open_run(out)
            # --overwrite: the old run stays aside until the new one has its config, first
            # picture and first checkpoint; any failure up to here puts it back
            _all_ranks(lambda: session._start(run) if world.is_main else None, world)
            session.save_latest()  # a first good checkpoint: resume and rollback have one
        except BaseException:
            if session.claim is not None:
                session.claim.restore()
            session.close()
            raise
        if session.claim is not None:
            session.claim.commit()
        return session

    def _start(self, run: Run) -> None:
        try:
            run.write_config(self.data_used)
            self.tb = trackers.open_trackers(run.dir, self.cfg)
            self.snapshot()
        except OSError as e:
            raise _os_error(e, "") from None

    @classmethod
    def resumed(cls, run_dir: Path, overrides: dict[str, Any],
                progress: bool | None) -> Session:
        lock = claim_existing(run_dir) if distributed.is_main_process() else None
        try:
            return cls._resumed(run_dir, overrides, progress, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def _resumed(cls, run_dir: Path, overrides: dict[str, Any], progress: bool | None,
                 lock: Claim | None) -> Session:
        record = _read_run_config(run_dir)
        ckpt = _resume_checkpoint(run_dir)
        changed = {k: v for k, v in overrides.items() if v is not None}
        refused = [k for k in changed if k not in RESUME_MAY_CHANGE and k != "out"
                   and changed[k] != record.get(k)]
        if refused:
            raise GanforgeError(f"--resume {run_dir}: cannot change {', '.join(refused)} of an "
                                f"existing run; only {', '.join(RESUME_MAY_CHANGE)} may change")
        cfg = _config_of(run_dir, record)
        cfg = validate(dataclasses.replace(cfg, out=str(run_dir), **{
            k: v for k, v in changed.items() if k in RESUME_MAY_CHANGE}))
        state = checkpoint.load(ckpt)
        checkpoint.check_state(state, ckpt, resume=True)
        if state["step"] >= cfg.steps:
            raise GanforgeError(f"--resume {run_dir}: the run already reached iteration "
                                f"{state['step']}; pass --steps N with N > {state['step']} to "
                                "train it further")
        session = cls(cfg, progress)
        session.claim = lock
        trainer = session.trainer
        trainer.load_state_dict(state, ckpt)
        session.load_state_dict(state.get("session") or {})
        session.saved_at = trainer.step_count
        session.data_used = {**record.get("data_used", {}), **session.data_used}
        run = session._open_run(run_dir)
        if session.world.is_main:
            # config.json first: if the disk is full, it fails whole and nothing else moved
            run.write_config({**session.data_used, "resumed_from": {
                "checkpoint": str(ckpt), "step": trainer.step_count}})
            for folder in (run.dir, run.checkpoints_dir, run.samples_dir):
                remove_partial_writes(folder)  # of writes a crash interrupted
            run.metrics = truncate_jsonl(run.metrics_path, trainer.step_count)
            session.tb = trackers.open_trackers(run_dir, cfg, trainer.step_count + 1,
                                                resume=True)
            print(f"ganforge: resuming {run_dir} at iteration {trainer.step_count} of "
                  f"{cfg.steps}", file=sys.stderr)
        return session

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> Run:
        cfg, trainer, run = self.cfg, self.trainer, self.run_
        bar = tqdm(total=cfg.steps, initial=trainer.step_count, unit="it", dynamic_ncols=True,
                   desc=cfg.preset, disable=(None if self.progress is None else not self.progress)
                   if self.world.is_main else True)
        self._t_last, self._n_last = time.perf_counter(), trainer.step_count
        self._t_start = self._t_last
        # a replay covers `unroll` iterations: a divisor of every interval keeps logs, grids
        # and checkpoints on their exact steps
        unroll = graph_unroll_for(cfg)
        self.plan_capture(unroll)
        try:
            with _StopRequest() as stop:
                while True:  # until the final checkpoint is written with finite weights
                    while trainer.step_count < cfg.steps:
                        if trainer.step_count == self.capture_at:
                            self.data_used["cuda_graphs"] = trainer.setup_cuda_graph(unroll)
                            if self.world.is_main:
                                run.write_config(self.data_used)
                        trainer.step(cfg.steps - trainer.step_count)
                        s = trainer.step_count
                        if s % cfg.log_every == 0 or s == cfg.steps:
                            row = self.log(s)
                            bar.update(s - bar.n)
                            bar.set_postfix(d_loss=f"{row['d_loss']:.3f}",
                                            g_loss=f"{row['g_loss']:.3f}", refresh=False)
                            if not _finite(row):
                                self.non_finite(s, row)
                                continue
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
            raise _os_error(e, f"; nothing was lost: the last good checkpoint is "
                            f"{self._last_good()}") from None
        except RuntimeError as e:
            if self.world.distributed:  # a collective failed: a peer died or timed out
                raise GanforgeError(f"rank {self.world.rank}: lost the other training processes "
                                    f"at iteration {trainer.step_count} "
                                    f"({distributed.first_line(e)}); last checkpoint: "
                                    f"{self._last_good()}") from None
            raise
        finally:
            bar.close()
            if self.tb is not None:
                self.tb.close()
        if self.world.is_main:
            self.record_time()
            _finish_pictures(run)
            if self.tb is not None:
                self.tb.finish(run)  # MLflow: the pictures and final checkpoint as artifacts
        return run

    def plan_capture(self, unroll: int) -> None:
        """Capture the CUDA graph after a few eager (warm-up) iterations, on a multiple of the
        iterations per replay."""
        if self.trainer.wants_graph():
            s = self.trainer.step_count + GRAPH_WARMUP
            self.capture_at = -(-s // unroll) * unroll

    def _should_stop(self, stop: _StopRequest, s: int) -> bool:
        if not self.world.distributed:
            return stop.signum is not None
        # the ranks must stop after the same step: they agree once per log interval
        if s % self.cfg.log_every:
            return False
        return distributed.any_rank(stop.signum is not None, self.world, self.trainer.device)

    def stop(self, signum: int | None) -> Run:
        """A stop request: checkpoint the finished step and say how to go on."""
        name = signal.Signals(signum).name if signum else "a signal on another rank"
        self.save_latest()
        self.run_.stopped = name
        if self.world.is_main:
            self.record_time()
            print(f"ganforge: stopped by {name} at iteration {self.trainer.step_count}; "
                  f"checkpoint: {self.run_.latest_checkpoint}. Resume with: ganforge train "
                  f"--resume {self.run_.dir}", file=sys.stderr)
        return self.run_

    def record_time(self) -> None:
        """Wall-clock seconds of training (summed over resumed sessions) into config.json."""
        spent = self.data_used.get("wall_clock_s", 0.0) + time.perf_counter() - self._t_start
        self.data_used["wall_clock_s"] = round(spent, 1)
        self.data_used["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.run_.write_config(self.data_used)

    # --- logging, pictures, evaluation -------------------------------------------------------
    def log(self, s: int) -> dict[str, float]:
        row = self.trainer.read_stats()  # averaged over the ranks
        now = time.perf_counter()
        its = (s - self._n_last) / max(now - self._t_last, 1e-9)
        self._t_last, self._n_last = now, s
        if self.world.is_main:
            row_out = {"step": s, **row, "it_s": round(its, 2)}
            self.run_.log(row_out)
            if self.tb is not None:
                self.tb.scalars(s, row_out)
            if _finite(row):  # non-finite rows are handled (stop/rollback) by the loop
                self.warn(self.health.check_row(s, row))
        return row

    def warn(self, warnings: list[health.Warning]) -> None:
        """Training-health warnings: on the console, in metrics.jsonl and TensorBoard."""
        for w in warnings:
            tqdm.write(f"ganforge: warning: iteration {w.step}: {w.message}", file=sys.stderr)
            self.run_.log(w.as_row())
            if self.tb is not None:
                self.tb.text(w.step, "warnings", f"{w.kind}: {w.message}")

    def snapshot(self) -> None:
        if not self.world.is_main:
            return
        path, fake = _snapshot(self.trainer, self.run_)
        s = self.trainer.step_count
        if self.tb is not None:
            self.tb.image(s, "samples", path)
        self.warn(self.health.check_samples(s, to_unit(fake, self.trainer.sampling_G)))

    def evaluate(self) -> None:
        """Log the configured metrics (of the EMA generator when on); keep the best checkpoint.
        Rank 0 evaluates; the others wait at the next collective."""
        from .evaluate import better, evaluate

        if not self.world.is_main:
            return
        cfg, trainer, run = self.cfg, self.trainer, self.run_
        result = evaluate(trainer.sampling_G, cfg, self.data, cfg.metrics, cfg.eval_n,
                          cfg.features, trainer.device, trainer.num_classes, seed=cfg.seed,
                          net=self.features)
        # lists: the class histogram of metric 'classes'
        row = {"step": trainer.step_count, **{k: v for k, v in result.items()
                                              if isinstance(v, int | float | list)}}
        run.log(row)
        if self.tb is not None:
            self.tb.scalars(trainer.step_count, row)
        if cfg.keep_best and better(cfg.keep_best, result[cfg.keep_best], self.best):
            self.best = result[cfg.keep_best]
            checkpoint.save(run.checkpoints_dir / "best.safetensors",
                            {**self.state(), "best": {cfg.keep_best: self.best}})

    # --- checkpoints and faults --------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {**self.trainer.state_dict(),
                "session": {"best": self.best, "rollbacks": self.rollbacks,
                            "health": self.health.state_dict()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.rollbacks = int(state.get("rollbacks", 0))
        if state.get("health"):
            self.health.load_state_dict(state["health"])

    def save_latest(self, final: bool = False) -> bool:
        """Write checkpoints/latest (and final); never over a good one with non-finite weights
        (those roll back or stop instead). Returns whether it wrote."""
        trainer, run = self.trainer, self.run_
        distributed.check_replicas({"G": trainer.G, "D": trainer.D}, self.world, trainer.device)
        bad = _non_finite_weights(trainer)
        if bad:
            self.non_finite(trainer.step_count, {f"{bad} weights": float("nan")})
            return False
        if self.world.is_main:
            state = self.state()
            run.sync_metrics()  # the rows this checkpoint's resume will keep are on disk
            checkpoint.save(run.latest_checkpoint, state)
            if final:
                checkpoint.save(run.final_checkpoint, state)
        if self.world.distributed:  # the others may read it next (rollback)
            torch.distributed.barrier()
        self.saved_at = trainer.step_count
        return True

    def _last_good(self) -> str:
        if self.saved_at is None:
            return "none"
        return f"{self.run_.latest_checkpoint} (iteration {self.saved_at})"

    def non_finite(self, s: int, row: dict[str, float]) -> None:
        """A non-finite loss or weight: stop (the default), or roll back to the last good
        checkpoint with lower learning rates (``--on-nan rollback``)."""
        bad = ", ".join(k for k, v in row.items() if not np.isfinite(v))
        cfg, trainer = self.cfg, self.trainer
        if cfg.on_nan == "stop" or self.rollbacks >= cfg.max_rollbacks:
            why = "" if cfg.on_nan == "stop" else f" after {self.rollbacks} rollbacks"
            raise GanforgeError(f"non-finite {bad} at iteration {s}{why}; nothing was written "
                                f"over the last good checkpoint: {self._last_good()}")
        ckpt = self.run_.latest_checkpoint
        state = checkpoint.load(ckpt)
        checkpoint.check_state(state, ckpt, resume=True)
        trainer.load_state_dict(state, ckpt)
        trainer._zero_stats()
        rollbacks = self.rollbacks + 1
        self.load_state_dict(state.get("session") or {})  # health and best-metric as they were
        self.rollbacks = rollbacks
        g_lr, d_lr = trainer.set_learning_rates(cfg.nan_lr_factor)
        if trainer.graph is not None:
            # the graph holds the replaced optimiser state's tensors: capture it again
            trainer.graph = None
            trainer.batches.make_static(0)
            self.plan_capture(trainer.graph_unroll)
        message = (f"non-finite {bad} at iteration {s}: rolled back to iteration "
                   f"{trainer.step_count} ({ckpt.name}) with learning rates x{cfg.nan_lr_factor} "
                   f"(G {g_lr:.3g}, D {d_lr:.3g}); rollback {self.rollbacks} of "
                   f"{cfg.max_rollbacks}")
        if self.world.is_main:
            print(f"ganforge: warning: {message}", file=sys.stderr)
            self.run_.metrics = truncate_jsonl(self.run_.metrics_path, trainer.step_count)
            self.run_.log({"step": trainer.step_count, "warning": "nan_rollback",
                           "message": message})
        self._n_last, self._t_last = trainer.step_count, time.perf_counter()


# --- helpers -------------------------------------------------------------------------------
def _eval_features(cfg: Config, device: torch.device) -> Any:
    """The feature network ``--eval-every`` will use, loaded before the run folder is
    touched: a missing classifier or bad metric fails first, not after some training."""
    if not cfg.eval_every:
        return None
    from .evaluate import check_request, feature_net

    return feature_net(check_request(cfg, cfg.metrics, cfg.features), device)


def _as_config(config: Config | dict[str, Any] | str | Path | None,
               overrides: dict[str, Any]) -> Config:
    if config is None:
        return resolve(overrides.pop("preset", None), overrides=overrides)
    if isinstance(config, Config):
        return validate(dataclasses.replace(config, **overrides))
    if isinstance(config, str | Path):
        from .config import read_config_file

        fields = read_config_file(config)
        return resolve(overrides.pop("preset", None), fields, overrides)
    if isinstance(config, dict):
        merged = {**config, **overrides}
        if set(FIELDS) <= set(merged):  # a complete config, e.g. a run's config.json
            return from_dict(merged)
        return resolve(merged.pop("preset", None), overrides=merged)
    raise TypeError(f"config must be a Config, dict, path or None, not {type(config).__name__}")


def _read_run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not run_dir.is_dir() or not path.is_file():
        raise GanforgeError(f"--resume {run_dir}: not a ganforge run folder (no config.json)")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise GanforgeError(f"--resume {run_dir}: config.json is not valid JSON "
                            f"({str(e)[:200] or type(e).__name__})") from None
    if not isinstance(record, dict):
        raise GanforgeError(f"--resume {run_dir}: config.json is not a JSON object")
    return record


def _config_of(run_dir: Path, record: dict[str, Any]) -> Config:
    try:
        return from_dict(record)
    except GanforgeError as e:
        raise GanforgeError(f"--resume {run_dir}: config.json: {e}") from None


def _resume_checkpoint(run_dir: Path) -> Path:
    for name in ("latest.safetensors", "final.safetensors"):
        p = run_dir / "checkpoints" / name
        if p.is_file():
            return p
    raise GanforgeError(f"--resume {run_dir}: no checkpoints/latest.safetensors to resume from")


def _os_error(e: OSError, tail: str) -> GanforgeError:
    """An OS error as one line: the path, what went wrong, and what is safe."""
    where = e.filename or "a file"
    return GanforgeError(f"{where}: cannot write ({e.strerror or e}){tail}")


def _finite(row: dict[str, float]) -> bool:
    return all(np.isfinite(v) for v in row.values())


def _non_finite_weights(trainer: Trainer) -> str | None:
    for name, module in (("G", trainer.G), ("D", trainer.D)):
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            return name
    return None


def _from_rank0(value: str, world: distributed.World) -> str:
    if not world.distributed:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _all_ranks(fn: Any, world: distributed.World) -> None:
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


def _snapshot(trainer: Trainer, run: Run) -> tuple[Path, torch.Tensor]:
    """Write this step's picture: an image grid, the 1-D density plot or the 2-D scatter.
    Returns its path and G's samples from the fixed noise."""
    G, D, step = trainer.sampling_G, trainer.D, trainer.step_count
    path = run.samples_dir / f"step-{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = G.training
    G.eval()
    with torch.no_grad():
        y = trainer.fixed_y
        fake = G(trainer.fixed_z, y) if y is not None else G(trainer.fixed_z)
        data = trainer.data
        if isinstance(data, Gaussian1D):
            xs = torch.linspace(*data.plot_range(), 400, device=trainer.device)
            # a packing D judges m samples at once: show it packs of m copies of each x
            out = D(xs.unsqueeze(1).repeat_interleave(trainer.cfg.pac, 0))
            d_of_x = torch.sigmoid(out) if trainer.objective.outputs_logits else out
            viz.plot_density_1d(xs.cpu().numpy(), data.pdf(xs.cpu()).numpy(),
                                fake.squeeze(1).cpu().numpy(), d_of_x.cpu().numpy(), path,
                                title=f"iteration {step}")
        elif isinstance(data, Points2D):
            real = data.real_samples(len(fake), torch.Generator(trainer.device).manual_seed(0))
            plot_points_2d(real.cpu().numpy(), fake.cpu().numpy(), data.mixture.centres, path,
                           title=f"iteration {step}")
        else:
            nrow = len(fake) // trainer.num_classes if trainer.num_classes else None
            viz.save_grid(to_unit(fake, G), path, nrow=nrow)
    G.train(was_training)
    return path, fake


def _finish_pictures(run: Run) -> None:
    frames = sorted(run.samples_dir.glob("step-*.png"))
    viz.save_gif(frames, run.dir / "progress.gif")
    viz.plot_losses(run.metrics, run.dir / "losses.png", title=f"{run.config.preset}: losses")
