"""Experiment trackers of a run: TensorBoard (``tblog``) and MLflow, behind one small object.

The session talks to one ``Trackers`` at its logging spots (a log row, a sample grid, a
warning, the end of the run); each tracker is optional and off unless configured.

MLflow (``pip install ganforge[mlflow]``, the ``mlflow-skinny`` client): params are the
resolved config, metrics are the logged rows (train and eval, by their metrics.jsonl keys),
artifacts are the sample grids, progress.gif, losses.png, report.html, config.json and the
final checkpoint. The default store is ``./mlruns`` in the working directory, MLflow's own
default place, so that ``mlflow ui`` there compares every run started from that folder; a
``mlflow_uri`` (``http://host:5000``, ``sqlite:///mlflow.db``, ``file:/path``) picks another.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import tblog
from .errors import GanforgeError

if TYPE_CHECKING:
    from .config import Config
    from .run import Run

MLFLOW_MISSING = ("mlflow=on: the MLflow client is not installed "
                  "(pip install 'ganforge[mlflow]' or mlflow-skinny)")
RUN_DIR_TAG = "ganforge.run_dir"  # how a resumed run finds its MLflow run again
# TensorBoard's hparams table: the final value of these scalar tags, when the run has them
HPARAM_METRICS = ("loss/d", "loss/g", "D/real", "D/fake", "eval/fid", "eval/kid", "eval/is",
                  "eval/precision", "eval/recall", "eval/modes")


def _numeric(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k != "step" and not isinstance(v, bool)
            and isinstance(v, numbers.Real)}


class MlflowLogger:
    """One MLflow run per ganforge run, through ``MlflowClient`` (no global active run, so
    several ganforge runs in one process do not share state)."""

    def __init__(self, run_dir: Path, cfg: Config, resume: bool) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise GanforgeError(MLFLOW_MISSING) from None
        uri = cfg.mlflow_uri or (Path.cwd() / "mlruns").as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps the file store only on request; it is the one store that
            # needs no database or server, which is what a default must be
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        try:
            exp = self.client.get_experiment_by_name(cfg.mlflow_experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(
                cfg.mlflow_experiment)
            self.run_id = self._existing(exp_id, run_dir) if resume else None
            if self.run_id is None:
                run = self.client.create_run(exp_id, run_name=run_dir.name,
                                             tags={RUN_DIR_TAG: str(run_dir.resolve())})
                self.run_id = run.info.run_id
                self._params(cfg)
            else:
                self.client.update_run(self.run_id, status="RUNNING")
        except Exception as e:  # MLflow raises its own types, and OSErrors, for a bad store
            raise GanforgeError(f"mlflow_uri {uri}: cannot log there "
                                f"({' '.join(str(e).split())[:200]})") from None
        self.finished = False

    def _existing(self, exp_id: str, run_dir: Path) -> str | None:
        found = self.client.search_runs(
            [exp_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir.resolve()}'",
            max_results=1)
        return found[0].info.run_id if found else None

    def _params(self, cfg: Config) -> None:
        from mlflow.entities import Param

        params = [Param(k, "none" if v is None else str(v)) for k, v in cfg.to_dict().items()]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params a call
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in _numeric(row).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, run: Run) -> None:
        """The run's pictures, record, report and final checkpoint as artifacts."""
        from .report import write_report

        write_report([run.dir])
        for name in ("config.json", "metrics.jsonl", "progress.gif", "losses.png",
                     "report.html"):
            if (run.dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run.dir / name))
        if run.samples_dir.is_dir():
            self.client.log_artifacts(self.run_id, str(run.samples_dir), "samples")
        if run.final_checkpoint.is_file():
            self.client.log_artifact(self.run_id, str(run.final_checkpoint), "checkpoints")
        self.client.set_terminated(self.run_id, "FINISHED")
        self.finished = True

    def close(self, status: str = "KILLED") -> None:
        if not self.finished:  # stopped or failed: finish() may still follow and say FINISHED
            self.client.set_terminated(self.run_id, status)


class Trackers:
    """The session's trackers, spoken to as one: TensorBoard and/or MLflow, either optional."""

    def __init__(self, tb: tblog.TensorBoardLogger | None, mlflow: MlflowLogger | None,
                 cfg: Config) -> None:
        self.tb, self.mlflow, self.cfg = tb, mlflow, cfg
        self.last: dict[str, float] = {}  # the final value of each tag, for the hparams table

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        self.last.update({tblog.tag_for(k): v for k, v in _numeric(row).items()})
        if self.tb is not None:
            self.tb.scalars(step, row)
        if self.mlflow is not None:
            self.mlflow.scalars(step, row)

    def image(self, step: int, tag: str, image: Any) -> None:
        if self.tb is not None:
            self.tb.image(step, tag, image)

    def text(self, step: int, tag: str, text: str) -> None:
        if self.tb is not None:
            self.tb.text(step, tag, text)

    def close(self) -> None:
        if self.tb is not None:
            write_hparams(self.tb, self.cfg, self.last)
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.close()

    def abandon(self) -> None:
        """The run failed before its first iteration: close without the hparams table, now.
        Left to the garbage collector, TensorBoard's writer would create its event file
        whenever its thread first flushes, after the run's folder was cleaned up (or, with
        --overwrite, inside the old run just put back)."""
        if self.tb is not None:
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.close("FAILED")

    def finish(self, run: Run) -> None:
        """End of a completed run, after its final pictures exist."""
        if self.mlflow is not None:
            self.mlflow.finish(run)


def write_hparams(tb: tblog.TensorBoardLogger, cfg: Config, last: dict[str, float]) -> None:
    """TensorBoard's HPARAMS view: the config as hyperparameters of this run's folder, with
    the final value of the curves it already has as the metrics (no duplicate scalars)."""
    from torch.utils.tensorboard.summary import hparams

    values = {k: v if isinstance(v, bool | int | float | str) else
              ("none" if v is None else str(v)) for k, v in cfg.to_dict().items()}
    metrics = {tag: last[tag] for tag in HPARAM_METRICS if tag in last}
    writer = tb.writer._get_file_writer()
    for summary in hparams(values, metrics):
        writer.add_summary(summary)


def abandon_all(slots: Iterable[Any]) -> None:
    """Close the trackers (``slot.tb``) of every run of a start that failed; see
    ``Trackers.abandon``."""
    for slot in slots:
        if slot.tb is not None:
            with contextlib.suppress(Exception):  # the start's own error is the one to tell
                slot.tb.abandon()
            slot.tb = None


def open_trackers(run_dir: str | Path, cfg: Config, purge_step: int | None = None,
                  resume: bool = False) -> Trackers | None:
    """The run's trackers for its config (None when all are off)."""
    tb = tblog.open_logger(run_dir, cfg.tensorboard, purge_step)
    ml = MlflowLogger(Path(run_dir), cfg, resume) if cfg.mlflow == "on" else None
    return Trackers(tb, ml, cfg) if tb is not None or ml is not None else None


__all__ = ["MlflowLogger", "Trackers", "abandon_all", "open_trackers", "write_hparams"]
