"""Run ``ganforge ARGS`` and SIGKILL the process in the middle of its Nth write of one kind.

    python kill_during_write.py KIND N PHASE -- ganforge-args...

KIND is what is being written: ``config.json``, ``checkpoint`` (.safetensors), ``png``,
``gif``, ``metrics`` (an append to metrics.jsonl) or ``truncate`` (resume cutting
metrics.jsonl). PHASE is where in that write: ``data`` (the bytes are written, nothing renamed
or flushed; for an append, half the line), ``rename`` (just after the rename, before the
folder's fsync). The kill is the process's own SIGKILL: nothing runs after it, as when the
machine loses power.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from ganforge import files
from ganforge import run as run_module

KIND, N, PHASE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ARGS = sys.argv[sys.argv.index("--") + 1:]
seen = {"n": 0}


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def matches(kind: str) -> bool:
    if kind != KIND:
        return False
    seen["n"] += 1
    return seen["n"] == N


def kind_of(path: Path) -> str:
    if path.name == "config.json":
        return "config.json"
    return {".safetensors": "checkpoint", ".png": "png", ".gif": "gif"}.get(path.suffix, "")


original_atomic_path = files.atomic_path


@contextlib.contextmanager
def atomic_path(path):
    hit = matches(kind_of(Path(path)))
    with original_atomic_path(path) as tmp:
        yield tmp
        if hit and PHASE == "data":
            die()  # the temporary file is written, the target untouched
    if hit and PHASE == "rename":
        die()


original_append = files.append_line


def append_line(path, line):
    if matches("metrics"):
        with open(path, "a", encoding="utf-8") as f:
            f.write(line[:len(line) // 2])  # a torn row, as a power cut leaves it
        die()
    original_append(path, line)


original_truncate = os.truncate


def truncate(path, length):
    hit = matches("truncate")
    if hit and PHASE == "data":
        die()
    original_truncate(path, length)
    if hit:
        die()


files.atomic_path = atomic_path  # every atomic write goes through this one function
files.append_line = append_line
run_module.append_line = append_line  # imported by name there
os.truncate = truncate  # only files.truncate_jsonl truncates

from ganforge.cli import main  # noqa: E402  (imported after the hooks are in place)

sys.exit(main(ARGS))
