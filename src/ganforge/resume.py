"""Reading a run folder (or a sweep folder) back for ``--resume``: its config, which
checkpoint to continue from, and what a resumed run may change. Everything here is input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from . import checkpoint
from .config import Config, from_dict, validate
from .errors import GanforgeError
from .run import SWEEP_FORMAT

# Fields a resumed run may change: how long it trains and how it is watched, not what it is.
RESUME_MAY_CHANGE = ("steps", "device", "cuda_graphs", "compile", "backward", "log_every",
                     "sample_every", "ckpt_every", "eval_every", "eval_n", "tensorboard",
                     "on_nan", "nan_lr_factor", "max_rollbacks", "dist_timeout")
CHECKPOINTS = ("latest.safetensors", "previous.safetensors", "final.safetensors")


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise GanforgeError(f"{what}: {path.name} is not valid JSON "
                            f"({str(e)[:200] or type(e).__name__})") from None
    if not isinstance(record, dict):
        raise GanforgeError(f"{what}: {path.name} is not a JSON object")
    return record


def run_folders(folder: Path) -> list[Path] | None:
    """A sweep folder's run folders (from its sweep.json), or None for a single run."""
    path = folder / "sweep.json"
    if not path.is_file():
        return None
    record = read_json(path, f"--resume {folder}")
    runs = record.get("runs")
    if record.get("format") != SWEEP_FORMAT or not isinstance(runs, int) or isinstance(
            runs, bool) or not 1 <= runs <= 100_000:
        raise GanforgeError(f"--resume {folder}: sweep.json is not a ganforge sweep record "
                            f"(expected \"format\": \"{SWEEP_FORMAT}\" and a run count)")
    return [folder / f"run-{k:03d}" for k in range(runs)]


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not run_dir.is_dir() or not path.is_file():
        raise GanforgeError(f"--resume {run_dir}: not a ganforge run folder (no config.json)")
    return read_json(path, f"--resume {run_dir}")


def resumed_config(run_dir: Path, record: dict[str, Any], overrides: dict[str, Any]) -> Config:
    """The run's own config with the changes a resume may make (others refused)."""
    changed = {k: v for k, v in overrides.items() if v is not None}
    refused = [k for k in changed if k not in RESUME_MAY_CHANGE and k != "out"
               and changed[k] != record.get(k)]
    if refused:
        raise GanforgeError(f"--resume {run_dir}: cannot change {', '.join(refused)} of an "
                            f"existing run; only {', '.join(RESUME_MAY_CHANGE)} may change")
    try:
        cfg = from_dict(record)
    except GanforgeError as e:
        raise GanforgeError(f"--resume {run_dir}: config.json: {e}") from None
    return validate(dataclasses.replace(cfg, out=str(run_dir), **{
        k: v for k, v in changed.items() if k in RESUME_MAY_CHANGE}))


def load_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint a single run continues from: its latest (else previous, else final)."""
    for name in CHECKPOINTS:
        path = run_dir / "checkpoints" / name
        if path.is_file():
            state = checkpoint.load(path)
            checkpoint.check_state(state, path, resume=True)
            return path, state
    raise GanforgeError(f"--resume {run_dir}: no checkpoints/latest.safetensors to resume from")


def saved_rounds(run_dir: Path) -> dict[int, tuple[Path, dict[str, Any]]]:
    """A sweep's run folder's latest and previous checkpoints, each read once, by iteration
    (a sweep killed while saving has some runs' latest one round ahead: their previous one
    is the round the others have)."""
    rounds: dict[int, tuple[Path, dict[str, Any]]] = {}
    for name in CHECKPOINTS[:2]:
        path = run_dir / "checkpoints" / name
        if path.is_file():
            state = checkpoint.load(path)
            checkpoint.check_state(state, path, resume=True)
            rounds.setdefault(int(state["step"]), (path, state))
    return rounds


def plan_resume(folder: Path, overrides: dict[str, Any]) -> tuple[
        list[Path], bool, list[dict[str, Any]], list[Config], list[tuple[Path, dict[str, Any]]]]:
    """What resuming ``folder`` (a run, or a sweep of runs) continues from: the run folders,
    whether it is a sweep, their config records and configs, and each one's checkpoint."""
    dirs = run_folders(folder)
    sweep = dirs is not None
    dirs = dirs or [folder]
    records = [read_run_config(d) for d in dirs]
    configs = [resumed_config(d, r, overrides) for d, r in zip(dirs, records, strict=True)]
    if sweep:  # every run continues from the round all of them saved
        rounds = [saved_rounds(d) for d in dirs]
        common = set.intersection(*(set(r) for r in rounds))
        if not common:
            raise GanforgeError(f"--resume {folder}: the runs have no checkpoint of one "
                                "iteration in common")
        ckpts = [r[max(common)] for r in rounds]
    else:
        ckpts = [load_checkpoint(folder)]
    at = int(ckpts[0][1]["step"])
    if at >= configs[0].steps:
        raise GanforgeError(f"--resume {folder}: the run already reached iteration {at}; "
                            f"pass --steps N with N > {at} to train it further")
    return dirs, sweep, records, configs, ckpts
