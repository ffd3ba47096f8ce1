"""Reading one run folder tolerantly: its config, metrics rows, snapshots and eval.json."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GanforgeError
from .parts import LOSS_KEYS, _is_num

MAX_FRAMES = 200  # player frames per run: hundreds of inlined PNGs would make a huge page
STEP_RE = re.compile(r"step-(\d+)")


@dataclass
class RunData:
    """What one run folder holds, sorted into the kinds of rows the report shows."""

    dir: Path
    name: str
    config: dict[str, Any]
    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    frames: list[tuple[int | None, Path]] = field(default_factory=list)
    skipped_lines: int = 0
    eval_json: dict[str, Any] | None = None  # what `ganforge eval` last wrote (eval.json)


def load_run(path: str | Path) -> RunData:
    """Read a run folder; anything that is not one raises a one-line GanforgeError."""
    d = Path(path)
    if not d.exists():
        raise GanforgeError(f"RUN_DIR {d}: no such folder")
    if not d.is_dir():
        raise GanforgeError(f"RUN_DIR {d}: not a folder (expected a ganforge run folder)")
    cfg_path = d / "config.json"
    if not cfg_path.is_file() and (d / "sweep.json").is_file():
        raise GanforgeError(f"RUN_DIR {d}: a sweep folder (sweep.json); report it on its own "
                            f"(ganforge report {d}) or name its run-NNN folders")
    if not cfg_path.is_file():
        raise GanforgeError(f"RUN_DIR {d}: not a ganforge run folder (no config.json)")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise GanforgeError(f"RUN_DIR {d}: cannot read config.json ({e})") from e
    except json.JSONDecodeError as e:
        raise GanforgeError(f"RUN_DIR {d}: config.json is not valid JSON "
                            f"({e.msg}, line {e.lineno})") from e
    except RecursionError:
        raise GanforgeError(f"RUN_DIR {d}: config.json is nested too deeply") from None
    if not isinstance(config, dict):
        raise GanforgeError(f"RUN_DIR {d}: config.json does not hold a JSON object")
    run = RunData(dir=d, name=d.resolve().name or str(d), config=config)
    _read_metrics(run, d / "metrics.jsonl")
    run.frames = _frames(d / "samples")
    run.eval_json = _read_eval_json(d / "eval.json")
    return run


def _read_eval_json(path: Path) -> dict[str, Any] | None:
    # optional and written by another command: a broken one is left out, not an error
    try:
        found = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None


def _read_metrics(run: RunData, path: Path) -> None:
    # A run still training may have a half-written last line: skip what does not parse
    # and say how many, rather than refuse the whole report.
    if not path.is_file():
        return
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not _is_num(row.get("step")):
            run.skipped_lines += 1
        elif "warning" in row:
            run.warnings.append(row)
        elif any(k in row for k in LOSS_KEYS):
            run.train.append(row)
        else:
            run.evals.append(row)


def _frames(samples: Path) -> list[tuple[int | None, Path]]:
    if not samples.is_dir():
        return []
    found = []
    for p in samples.glob("*.png"):
        m = STEP_RE.search(p.stem)
        found.append((int(m.group(1)) if m else None, p))
    # by step, files without one last, by name
    found.sort(key=lambda sp: (sp[0] is None, sp[0] or 0, sp[1].name))
    return found


def subsample(n: int, k: int = MAX_FRAMES) -> list[int]:
    """At most ``k`` indices spread evenly over ``range(n)``, always the first and the last."""
    if n <= k:
        return list(range(n))
    if k <= 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _data_uri(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None  # a truncated or foreign file: leave it out rather than show a broken one
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float | None]]:
    """(step, value) for rows holding ``key``; None where the value is not a finite number."""
    out: list[tuple[float, float | None]] = []
    for r in rows:
        if key not in r:
            continue
        v = r[key]
        out.append((float(r["step"]), float(v) if _is_num(v) and math.isfinite(v) else None))
    return out


def _numeric_keys(rows: list[dict[str, Any]], skip: set[str]) -> list[str]:
    """Keys with at least one number, in order of first appearance."""
    keys: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k not in skip and _is_num(v) and not k.endswith("_std"):
                keys.setdefault(k, None)
    return list(keys)


def _final(rows: list[dict[str, Any]], key: str) -> tuple[Any, Any] | None:
    """The last numeric value of ``key`` and its step (NaN counts: a diverged run says so)."""
    for r in reversed(rows):
        if _is_num(r.get(key)):
            return r[key], r["step"]
    return None
