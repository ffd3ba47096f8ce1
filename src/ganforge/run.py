"""The run folder: config.json, metrics.jsonl, samples/, checkpoints/, progress.gif, losses.png."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .errors import GanforgeError

# What ganforge writes into a run folder; --overwrite removes these and nothing else.
OWN_OUTPUTS = ("config.json", "metrics.jsonl", "samples", "checkpoints", "progress.gif",
               "losses.png", "tensorboard", "report.html")


def default_out(preset: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{preset}-{stamp}"
    i = 1
    while out.exists():
        i += 1
        out = Path("runs") / f"{preset}-{stamp}-{i}"
    return out


def prepare_dir(out: Path, overwrite: bool) -> None:
    """Refuse to write into a non-empty folder unless asked to, then clear only our outputs."""
    if out.exists() and not out.is_dir():
        raise GanforgeError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise GanforgeError(f"--out {out}: folder is not empty; pass --overwrite to replace "
                                "its run, or choose another --out")
        import shutil

        for name in OWN_OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class Run:
    """A finished (or running) training run and where its files are."""

    dir: Path
    config: Config
    G: torch.nn.Module | None = None
    D: torch.nn.Module | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None  # the signal that stopped the run early, if one did

    @property
    def samples_dir(self) -> Path:
        return self.dir / "samples"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def final_checkpoint(self) -> Path:
        return self.checkpoints_dir / "final.safetensors"

    @property
    def latest_checkpoint(self) -> Path:
        return self.checkpoints_dir / "latest.safetensors"

    def write_config(self, data_used: dict[str, Any]) -> None:
        import ganforge

        record = {**self.config.to_dict(), "data_used": data_used,
                  "ganforge_version": ganforge.__version__, "torch_version": torch.__version__}
        (self.dir / "config.json").write_text(json.dumps(record, indent=2) + "\n")

    def log(self, row: dict[str, Any]) -> None:
        self.metrics.append(row)
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
