"""Reading a sweep folder tolerantly: summary.json when it is usable, else each run folder.

A sweep folder holds sweep.json (what was swept), run-000/, run-001/, ... (one complete run
folder each) and, once the sweep has finished, summary.json (one entry per run). Nothing here
raises for a damaged piece: each problem becomes one line in ``SweepData.warnings`` and the
page shows what could be read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PER_RUN
from ..errors import GanforgeError
from ..evaluate import better
from ..run import SWEEP_FORMAT
from .parts import LOSS_KEYS, NOT_METRICS, _is_num
from .rundir import RunData, load_run

VARIABLE = ("lr", *PER_RUN)  # what a sweep can vary (ganforge.sweep)

SUMMARY_FORMAT = "ganforge-sweep-summary-1"
RUN_DIR_RE = re.compile(r"^run-(\d{3,})$")


@dataclass
class SweepRow:
    """One run of the sweep as its table row shows it."""

    run: int
    dir: str
    seed: Any = None
    varied: dict[str, Any] = field(default_factory=dict)
    status: str = "—"
    step: Any = None
    final: dict[str, Any] = field(default_factory=dict)  # the last training row's values
    best: dict[str, Any] | None = None  # the best value of the ranking metric, if tracked
    metrics: dict[str, Any] = field(default_factory=dict)  # the last evaluation's metrics
    data: RunData | None = None  # the run folder, for its samples and curves
    problem: str | None = None  # why the run folder could not be read


@dataclass
class SweepData:
    dir: Path
    name: str
    vary: dict[str, Any]
    rank_by: str | None
    rows: list[SweepRow]
    best: int | None  # position in ``rows`` of the best run
    source: str  # where the rows came from: summary.json or the run folders
    base: dict[str, Any] = field(default_factory=dict)  # sweep.json's base config
    warnings: list[str] = field(default_factory=list)


def is_sweep_dir(path: str | Path) -> bool:
    """Whether ``path`` is a sweep folder (it has a sweep.json), not a single run's."""
    return (Path(path) / "sweep.json").is_file()


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(the parsed file, None) or (None, why it could not be read) in a few words."""
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, "not found"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cannot read ({getattr(e, 'strerror', None) or e})"
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg}, line {e.lineno})"
    except RecursionError:
        return None, "nested too deeply"


def _number(v: Any) -> float | None:
    return float(v) if _is_num(v) and math.isfinite(v) else None


def rank_value(row: SweepRow, metric: str) -> float | None:
    """The value ``row`` is ranked by: its best value of ``metric`` (what keep_best kept),
    else the last evaluation's, else the last training row's; None when it has none."""
    for source in (row.best or {}, row.metrics, row.final):
        v = _number(source.get(metric))
        if v is not None:
            return v
    return None


def pick_best(rows: list[SweepRow], metric: str | None) -> int | None:
    """Position of the best row by ``metric`` (evaluate.better's direction); the first of
    equals wins; None without a metric or when no row has a finite value of it."""
    if metric is None:
        return None
    best, best_value = None, None
    for i, row in enumerate(rows):
        v = rank_value(row, metric)
        if v is not None and better(metric, v, best_value):
            best, best_value = i, v
    return best


def load_sweep(path: str | Path) -> SweepData:
    """Read a sweep folder; only a folder with nothing to show raises (a GanforgeError)."""
    d = Path(path)
    warnings: list[str] = []
    record, why = _read_json(d / "sweep.json")
    if why is None and not (isinstance(record, dict) and record.get("format") == SWEEP_FORMAT):
        why = f'not a "{SWEEP_FORMAT}" record'
    if why is not None:
        warnings.append(f"{d / 'sweep.json'}: {why}; reading the run folders as they are")
        record = {}
    base = record.get("base") if isinstance(record.get("base"), dict) else {}
    vary = record.get("vary") if isinstance(record.get("vary"), dict) else {}

    try:
        folders = sorted((int(m.group(1)), p) for p in d.iterdir() if p.is_dir()
                         and (m := RUN_DIR_RE.match(p.name)))
    except OSError as e:
        raise GanforgeError(f"SWEEP_DIR {d}: cannot list it ({e.strerror or e})") from None
    expected = record.get("runs")
    if _is_num(expected) and len(folders) < expected:
        warnings.append(f"{d}: sweep.json names {expected} runs, {len(folders)} run "
                        "folder(s) found")
    loaded: dict[str, RunData | str] = {}
    for _, p in folders:
        try:
            loaded[p.name] = load_run(p)
        except GanforgeError as e:
            loaded[p.name] = str(e).removeprefix(f"RUN_DIR {p}: ")
            warnings.append(f"{p}: {loaded[p.name]}")

    summary, why = _read_json(d / "summary.json")
    rows = None
    if why is None:
        rows, why = _rows_from_summary(summary, loaded)
    if rows is None:
        warnings.append(f"{d / 'summary.json'}: {why}; reading each run folder's config.json "
                        "and metrics.jsonl instead")
        if not folders:
            raise GanforgeError(f"SWEEP_DIR {d}: no run-NNN folders and no readable "
                                "summary.json; nothing to report")
        rank_by = base.get("keep_best") or next(
            (r.config.get("keep_best") for r in loaded.values()
             if isinstance(r, RunData) and r.config.get("keep_best")), None)
        rank_by = rank_by if isinstance(rank_by, str) else None
        if not vary:  # sweep.json lost or silent: what differs between the runs was varied
            vary = _varied_in(r for r in loaded.values() if isinstance(r, RunData))
        rows = [_row_from_folder(k, p.name, loaded[p.name], vary, rank_by, warnings)
                for k, p in folders]
        source = "the run folders (no usable summary.json)"
    else:
        rank_by = summary.get("rank_by") if isinstance(summary.get("rank_by"), str) else None
        if isinstance(summary.get("vary"), dict):
            vary = summary["vary"]
        source = "summary.json"
        for row in rows:
            if isinstance(row.data, RunData) and row.data.skipped_lines:
                warnings.append(f"{row.data.dir / 'metrics.jsonl'}: {row.data.skipped_lines} "
                                "unreadable line(s) skipped")
    best = pick_best(rows, rank_by)
    claimed = summary.get("best_run") if source == "summary.json" else None
    if _is_num(claimed) and (best is None or rows[best].run != claimed):
        warnings.append(f"{d / 'summary.json'}: says best_run {claimed}, but by "
                        f"{rank_by} it is " + (f"run {rows[best].run}" if best is not None
                                               else "none") + "; marking that")
    return SweepData(dir=d, name=d.resolve().name or str(d), vary=vary, rank_by=rank_by,
                     rows=rows, best=best, source=source, base=base, warnings=warnings)


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _varied_in(runs: Iterable[RunData]) -> dict[str, list[Any]]:
    configs = [r.config for r in runs]
    out = {}
    for key in VARIABLE:  # what a sweep can vary per run, the seed aside (always one per run)
        values = list(dict.fromkeys(json.dumps(c.get(key)) for c in configs))
        if key != "seed" and len(values) > 1:
            out[key] = [json.loads(v) for v in values]
    return out


def _rows_from_summary(summary: Any, loaded: dict[str, RunData | str]
                       ) -> tuple[list[SweepRow] | None, str | None]:
    """The summary's rows, each with its run folder; (None, why) if it cannot be used."""
    if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
        return None, f'not a "{SUMMARY_FORMAT}" record'
    entries = summary.get("runs")
    if not isinstance(entries, list) or not entries:
        return None, '"runs" is not a list of runs'
    rows = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            return None, f"runs[{i}] is not a JSON object"
        k = e["run"] if isinstance(e.get("run"), int) and not isinstance(e["run"], bool) else i
        name = e.get("dir") if isinstance(e.get("dir"), str) else f"run-{k:03d}"
        # only the sweep's own run-NNN folders are looked up: a summary cannot point elsewhere
        found = loaded.get(Path(name).name) if RUN_DIR_RE.match(Path(name).name) else None
        if found is None:
            found = f"no run folder {name}"
        row = SweepRow(run=k, dir=name, seed=e.get("seed"), varied=_dict(e.get("varied")),
                       status=str(e.get("status", "—")), step=e.get("step"),
                       final=_dict(e.get("final")), best=_dict(e.get("best")) or None,
                       metrics=_dict(e.get("metrics")))
        row.data, row.problem = (found, None) if isinstance(found, RunData) else (None, found)
        rows.append(row)
    return rows, None


def _row_from_folder(k: int, name: str, run: RunData | str, vary: dict[str, Any],
                     rank_by: str | None, warnings: list[str]) -> SweepRow:
    """What summary.json would say about run ``k``, worked out from its folder."""
    if isinstance(run, str):
        return SweepRow(run=k, dir=name, status=f"unreadable: {run}", problem=run)
    cfg = run.config
    # `--vary lr=...` sets g_lr and d_lr alike: its value is the run's g_lr
    varied = {key: cfg.get("g_lr" if key == "lr" else key) for key in vary}
    row = SweepRow(run=k, dir=name, seed=cfg.get("seed"), varied=varied, data=run)
    if run.skipped_lines:
        warnings.append(f"{run.dir / 'metrics.jsonl'}: {run.skipped_lines} unreadable "
                        "line(s) skipped")
    if not run.train and not run.evals:
        warnings.append(f"{run.dir}: no rows in metrics.jsonl; its row has no results")
    if run.train:
        row.final = {key: v for key, v in run.train[-1].items() if key not in ("step", "it_s")}
    if run.evals:
        row.metrics = {key: v for key, v in run.evals[-1].items()
                       if key not in NOT_METRICS and _is_num(v) and not key.endswith("_std")}
    if rank_by is not None:
        best = None
        for r in run.evals:
            v = _number(r.get(rank_by))
            if v is not None and better(rank_by, v, best):
                best = v
        row.best = {rank_by: best} if best is not None else None
    steps = [r["step"] for r in run.train + run.evals]
    row.step = max(steps) if steps else None
    planned = cfg.get("steps")
    final_ckpt = (run.dir / "checkpoints" / "final.safetensors").is_file()
    if final_ckpt and row.step is not None and _is_num(planned) and row.step >= planned:
        row.status = "complete"
    elif row.step is None:
        row.status = "not started"
    else:
        # stopped, failed or still running: the folder alone cannot tell which
        row.status = f"incomplete ({row.step} of {planned} iterations logged)"
    if not any(key in row.final for key in LOSS_KEYS):
        row.final = {}
    return row
