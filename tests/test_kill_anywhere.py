"""Kill anywhere: SIGKILL a training run and its resumes in the middle of every kind of write
(config.json, a metrics row, a snapshot, a checkpoint, the GIF, the cut of metrics.jsonl on
resume), resume each time, and end bit-identical to a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from conftest import state_tensors

from ganforge import checkpoint

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
STEPS = 150  # long enough that every kill below lands before the end
ARGS = ["--preset", "toy-1d", "--steps", str(STEPS), "--log-every", "5", "--sample-every", "10",
        "--ckpt-every", "10", "--set", "tensorboard=off"]

# (kind, which one in that process, where in the write): one kill after another
KILLS = [
    ("config.json", 1, "data"),    # the fresh run's first write
    ("checkpoint", 1, "data"),     # its first checkpoint, half-made
    ("metrics", 3, "half"),        # a torn row, after the last checkpoint
    ("truncate", 1, "data"),       # the resume about to cut the rows after its checkpoint
    ("truncate", 1, "after"),      # ... and just after the cut
    ("png", 2, "data"),            # a snapshot
    ("checkpoint", 2, "rename"),   # just after a checkpoint's rename
    ("config.json", 1, "rename"),  # a resume rewriting config.json
    ("checkpoint", 3, "data"),
    ("gif", 1, "data"),            # the end of the run: progress.gif
]


def _run(*argv: str, kill: tuple[str, int, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ganforge", *argv] if kill is None else [
        sys.executable, str(HERE / "helpers" / "kill_during_write.py"), kill[0], str(kill[1]),
        kill[2], "--", *argv]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "it_s"} for r in rows]


def test_killed_anywhere_the_run_resumes_to_the_same_end(tmp_path):
    straight = tmp_path / "straight"
    assert _run("train", *ARGS, "--out", str(straight)).returncode == 0
    out = tmp_path / "killed"
    kinds_hit = set()
    for kill in [*KILLS, None]:
        latest = out / "checkpoints" / "latest.safetensors"
        if latest.exists() and checkpoint.load(latest)["step"] == STEPS:
            break  # finished (a kill while it drew progress.gif leaves only the GIF undone)
        if latest.exists():
            argv = ["train", "--resume", str(out), "--steps", str(STEPS)]
        else:  # killed before its first checkpoint: start again in the same folder
            argv = ["train", *ARGS, "--out", str(out), "--overwrite"]
        r = _run(*argv, kill=kill)
        if kill is None:
            assert r.returncode == 0, r.stderr[-3000:]
            break
        if r.returncode == -signal.SIGKILL:
            kinds_hit.add(kill[0])
        else:  # the run ended before reaching that write (e.g. nothing left to truncate)
            assert r.returncode == 0, (kill, r.stderr[-3000:])
        # whatever the moment, what is on disk is whole
        if latest.exists():
            checkpoint.load(latest)
        if (out / "config.json").exists():
            json.loads((out / "config.json").read_text())
    assert kinds_hit == {kind for kind, _, _ in KILLS}, kinds_hit
    a = checkpoint.load(straight / "checkpoints" / "final.safetensors")
    b = checkpoint.load(out / "checkpoints" / "final.safetensors")
    assert a["step"] == b["step"] == STEPS
    for part in ("G", "D", "opt_g", "opt_d"):
        flat_a = {k: v for k, v in state_tensors(a[part])}
        flat_b = {k: v for k, v in state_tensors(b[part])}
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert torch.equal(flat_a[k], flat_b[k]), (part, k)
    assert _rows(straight) == _rows(out)
    assert sorted(p.name for p in (out / "samples").iterdir()) == sorted(
        p.name for p in (straight / "samples").iterdir())
    # the resumes removed what killed writes left; only the last kill's GIF is still there
    assert [p.name.split(".")[1] for p in out.rglob(".*.tmp*")] == ["progress"]

