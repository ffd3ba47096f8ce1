"""How a run is watched: its log rows, TensorBoard/MLflow, health warnings, evaluations and
pictures, one :class:`RunSlot` per run (one for ``ganforge train``, R for a sweep)."""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from . import checkpoint, health, trackers, viz
from .evaluate import better, check_request, evaluate, feature_net
from .files import atomic_write_json, atomic_write_text
from .run import Run

if TYPE_CHECKING:
    from .train import Trainer


@dataclass
class RunSlot:
    """Run k of the trainer: its folder and everything kept about it between steps."""

    k: int
    run: Run
    health: health.HealthMonitor
    data_used: dict[str, Any] = field(default_factory=dict)
    tb: trackers.Trackers | None = None
    best: float | None = None
    rollbacks: int = 0
    saved_at: int | None = None  # the iteration of checkpoints/latest
    failed: str | None = None  # why this run of a sweep stopped while the others go on
    last_row: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, Any] = field(default_factory=dict)

    def last_good(self) -> str:
        if self.saved_at is None:
            return "none"
        return f"{self.run.latest_checkpoint} (iteration {self.saved_at})"

    def fail(self, message: str) -> None:
        self.failed = self.run.failed = message
        self.run.log({"step": self.saved_at or 0, "warning": "run_failed", "message": message})
        self.data_used["failed"] = message
        self.run.write_config(self.data_used)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "rollbacks": self.rollbacks,
                "health": self.health.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.rollbacks = int(state.get("rollbacks", 0))
        if state.get("health"):
            self.health.load_state_dict(state["health"])

    # --- watching --------------------------------------------------------------------------
    def log(self, s: int, row: dict[str, float], its: float, healthy: bool) -> None:
        row_out = {"step": s, **row, "it_s": round(its, 2)}
        self.run.log(row_out)
        self.last_row = row
        if self.tb is not None:
            self.tb.scalars(s, row_out)
        if healthy:  # non-finite rows are handled (stop/rollback) by the loop
            self.warn(self.health.check_row(s, row))

    def warn(self, warnings: list[health.Warning]) -> None:
        """Training-health warnings: on the console, in metrics.jsonl and TensorBoard."""
        for w in warnings:
            where = "" if self.run.dir.name[:4] != "run-" else f"{self.run.dir.name}: "
            tqdm.write(f"ganforge: warning: {where}iteration {w.step}: {w.message}",
                       file=sys.stderr)
            self.run.log(w.as_row())
            if self.tb is not None:
                self.tb.text(w.step, "warnings", f"{w.kind}: {w.message}")

    def snapshot(self, trainer: Trainer) -> None:
        """This step's picture, drawn by the dataset from G's samples of the fixed noise."""
        G = trainer.sampling_G_of(self.k)
        D = trainer.run_modules(self.k)[1]
        step = trainer.step_count
        path = self.run.samples_dir / f"step-{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fixed_z, fixed_y = trainer.fixed[self.k]
        was_training = G.training
        G.eval()
        with torch.no_grad():
            fake = G(fixed_z, fixed_y) if fixed_y is not None else G(fixed_z)
            out_range = getattr(G, "out_range", None) or (0.0, 1.0)
            nrow = len(fake) // trainer.num_classes if trainer.num_classes else None
            trainer.data.plot(fake, path, title=f"iteration {step}", critic=_critic(trainer, D),
                              value_range=out_range, nrow=nrow)
        G.train(was_training)
        if self.tb is not None:
            self.tb.image(step, "samples", path)
        lo, hi = out_range
        self.warn(self.health.check_samples(step, (fake - lo) / (hi - lo)))

    def evaluate(self, trainer: Trainer, features: Any, state: Any) -> None:
        """Log the configured metrics (of the EMA generator when on); keep the best
        checkpoint. ``state()`` gives the checkpoint to keep."""
        cfg = self.run.config
        result = evaluate(trainer.sampling_G_of(self.k), cfg, trainer.data, cfg.metrics,
                          cfg.eval_n, cfg.features, trainer.device, trainer.num_classes,
                          seed=cfg.seed, net=features)
        # lists: the class histogram of metric 'classes'
        row = {"step": trainer.step_count, **{k: v for k, v in result.items()
                                              if isinstance(v, int | float | list)}}
        self.run.log(row)
        self.last_eval = row
        if self.tb is not None:
            self.tb.scalars(trainer.step_count, row)
        if cfg.keep_best and better(cfg.keep_best, result[cfg.keep_best], self.best):
            self.best = result[cfg.keep_best]
            checkpoint.save(self.run.checkpoints_dir / "best.safetensors",
                            {**state(), "best": {cfg.keep_best: self.best}})

    def finish_pictures(self) -> None:
        frames = sorted(self.run.samples_dir.glob("step-*.png"))
        viz.save_gif(frames, self.run.dir / "progress.gif")
        viz.plot_losses(self.run.metrics, self.run.dir / "losses.png",
                        title=f"{self.run.config.preset}: losses")


def _critic(trainer: Trainer, D: torch.nn.Module) -> Any:
    """D's value per point, as the picture shows it: D(x) as a probability where the
    objective has one; a packing D judges m copies of each point."""
    m = trainer.cfg.pac

    def critic(x: torch.Tensor) -> torch.Tensor:
        out = D(x.repeat_interleave(m, 0))
        return torch.sigmoid(out) if trainer.objective.outputs_logits else out

    return critic


def write_summary(root: Any, slots: list[RunSlot], vary: dict[str, list[Any]],
                  rank_by: str | None) -> None:
    """summary.json and summary.csv of a sweep: each run's varied values, status and final
    and best figures, and which run did best."""
    runs = []
    for s in slots:
        c = s.run.config
        status = s.failed and f"failed: {s.failed}" or (
            f"stopped ({s.run.stopped})" if s.run.stopped else "complete")
        metrics = {k: v for k, v in s.last_eval.items() if k != "step"
                   and isinstance(v, int | float)}
        runs.append({"run": s.k, "dir": s.run.dir.name, "seed": c.seed,
                     "varied": {f: getattr(c, "g_lr" if f == "lr" else f) for f in vary},
                     "status": status, "step": s.saved_at or 0, "final": s.last_row,
                     "best": None if s.best is None or not rank_by else {rank_by: s.best},
                     "metrics": metrics})
    best_run, best_value = None, None
    if rank_by:
        scored = [(r["run"], (r["best"] or {}).get(rank_by, r["metrics"].get(rank_by)))
                  for r in runs if not r["status"].startswith("failed")]
        for k, v in scored:
            if v is not None and (best_run is None or better(rank_by, v, best_value)):
                best_run, best_value = k, v
    atomic_write_json(root / "summary.json", {
        "format": "ganforge-sweep-summary-1", "vary": vary, "rank_by": rank_by,
        "best_run": best_run, "runs": runs})
    stats = sorted({k for r in runs for k in r["final"]})
    metric_names = sorted({k for r in runs for k in r["metrics"]})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run", "dir", "seed", *vary, "status", "step", *stats, *metric_names,
                f"best_{rank_by}" if rank_by else "best", "is_best"])
    for r in runs:
        w.writerow([r["run"], r["dir"], r["seed"], *(r["varied"][f] for f in vary),
                    r["status"], r["step"], *(r["final"].get(k, "") for k in stats),
                    *(r["metrics"].get(k, "") for k in metric_names),
                    (r["best"] or {}).get(rank_by, "") if rank_by else "",
                    int(r["run"] == best_run)])
    atomic_write_text(root / "summary.csv", buf.getvalue())


def eval_features(cfg: Any, device: torch.device) -> Any:
    """The feature network ``--eval-every`` will use, loaded before the run folder is
    touched: a missing classifier or bad metric fails first, not after some training."""
    if not cfg.eval_every:
        return None
    return feature_net(check_request(cfg, cfg.metrics, cfg.features), device)
