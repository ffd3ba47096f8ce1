"""``ganforge sweep``: R runs of one preset trained at once, as one Session.

Run k gets seed ``base.seed + k`` and combination ``k % n`` of the ``--vary`` values (a grid:
the product of every field's values). The runs are stacked along the Trainer's run axis
(:mod:`ganforge.stack`), so run k is the single run with its config, computed R at a time;
each has its own run folder under the sweep folder, with every feature of a single run, and
the sweep folder gets sweep.json, summary.json and summary.csv.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

from .config import PER_RUN, Config, coerce, validate
from .errors import GanforgeError
from .run import SWEEP_FORMAT, Run, default_out
from .session import Session

# "lr" sets both learning rates; every other name is a per-run config field
VARIABLE = ("lr", *PER_RUN)


def expand_runs(base: Config, runs: int, vary: dict[str, list[Any]]) -> list[Config]:
    """Run k gets seed ``base.seed + k`` and combination ``k % n`` of the varied values."""
    for key in vary:
        _check_variable(key)
    combos = list(itertools.product(*vary.values())) or [()]
    configs = []
    for k in range(runs):
        change: dict[str, Any] = {"seed": base.seed + k}
        for key, value in zip(vary, combos[k % len(combos)], strict=True):
            if key == "lr":
                change.update(g_lr=value, d_lr=value)
            else:
                change[key] = value
        configs.append(validate(dataclasses.replace(base, **change)))
    return configs


def _check_variable(key: str) -> None:
    if key not in VARIABLE:
        raise GanforgeError(f"--vary {key}: a sweep can vary {', '.join(VARIABLE)} (fields "
                            "that change no tensor's shape); other fields change the shared "
                            "computation")


def parse_vary(items: list[str]) -> dict[str, list[Any]]:
    """``--vary key=v1,v2,...`` (repeatable: the runs cover the product of all of them)."""
    out: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise GanforgeError(f"--vary {item!r}: expected key=v1,v2,...")
        key, values = item.split("=", 1)
        key = key.strip().replace("-", "_")
        _check_variable(key)
        field = "g_lr" if key == "lr" else key
        # a list field's values (betas: "0.5,0.999") are separated by "/" instead
        sep = "/" if field.endswith("betas") else ","
        parts = [v for v in values.split(sep) if v]
        try:
            out[key] = [coerce(field, v, from_text=True) for v in parts]
        except GanforgeError as e:
            raise GanforgeError(f"--vary {item!r}: {e}") from None
        if not out[key]:
            raise GanforgeError(f"--vary {item!r}: no values")
    return out


def sweep(base: Config, runs: int | None = None, vary: dict[str, list[Any]] | None = None, *,
          out: str | Path | None = None, overwrite: bool = False,
          progress: bool | None = None) -> list[Run]:
    """Train ``runs`` GANs of ``base``'s preset at once (default: one per combination of the
    varied values); one run folder each under ``out``."""
    vary = vary or {}
    grid = 1
    for values in vary.values():
        grid *= len(values)
    runs = grid if runs is None else runs
    if runs <= 0:
        raise GanforgeError(f"--runs must be positive, got {runs}")
    configs = expand_runs(base, runs, vary)
    root = Path(out or base.out or default_out(f"sweep-{base.preset}"))
    record = {"format": SWEEP_FORMAT, "runs": runs, "vary": vary, "base": base.to_dict()}
    session = Session.fresh(configs, overwrite, progress, root=root, sweep_record=record)
    try:
        return session.run()
    finally:
        session.close()

