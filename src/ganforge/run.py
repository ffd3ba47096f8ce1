"""The run folder: config.json, metrics.jsonl, samples/, checkpoints/, progress.gif, losses.png."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import checkpoint
from .config import Config
from .errors import GanforgeError
from .files import (
    append_line,
    atomic_write_json,
    fsync_file,
    is_partial_write,
    remove_partial_writes,
)
from .version import __version__

RUN_FORMAT = "ganforge-run-1"  # config.json's marker: this folder is a ganforge run
SWEEP_FORMAT = "ganforge-sweep-1"  # sweep.json's marker
LOCK_NAME = ".ganforge.lock"
REPLACED_PREFIX = ".ganforge-replaced-"  # where --overwrite keeps the old run until the swap

# What ganforge writes into a run folder, and inside its subfolders which names are its own:
# --overwrite moves these aside and deletes them, and nothing else.
_OWN_FILES = {"config.json", "metrics.jsonl", "progress.gif", "losses.png", "report.html",
              "eval.json", "sweep.json", "summary.json", "summary.csv"}
_OWN_IN = {"samples": re.compile(r"^step-\d{7}\.png$"),
           "checkpoints": re.compile(r"^(latest|previous|final|best)\.safetensors$"),
           "tensorboard": re.compile(r"^events\.out\.tfevents\..+$")}
_SWEEP_RUN = re.compile(r"^run-\d{3,}$")


def default_out(preset: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{preset}-{stamp}"
    i = 1
    while out.exists():
        i += 1
        out = Path("runs") / f"{preset}-{stamp}-{i}"
    return out


def is_ganforge_folder(folder: Path) -> bool:
    """Whether ``folder`` carries ganforge's marker: a config.json (run) or sweep.json
    (sweep) that ganforge wrote. Folders of earlier versions, before the format field, are
    recognised by the record fields only ganforge writes."""
    for name, fmt in (("config.json", RUN_FORMAT), ("sweep.json", SWEEP_FORMAT)):
        p = folder / name
        if p.is_symlink() or not p.is_file():
            continue
        try:
            record = json.loads(p.read_bytes()[:50_000_000])
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(record, dict) and (record.get("format") == fmt or (
                name == "config.json" and "ganforge_version" in record
                and "data_used" in record)):
            return True
    return False


class RunLock:
    """One process at a time owns a run folder: an advisory ``flock`` on RUN/.ganforge.lock,
    which the OS releases when the holder exits however it exits (a lock left by a killed
    process is free at once). The file names the holder's PID and host for the message, and
    is removed on release; a lock won on a file that was removed meanwhile is tried again."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_NAME
        for _ in range(100):
            if self.path.is_symlink():
                raise GanforgeError(f"{self.path}: is a symbolic link; refusing to use it as "
                                    "a lock")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
                os.close(fd)
                pid, host = (holder + ["?", "?"])[:2]
                raise GanforgeError(f"{folder}: in use by another ganforge process (PID {pid} "
                                    f"on {host}); wait for it to finish or stop it first"
                                    ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we opened it: take the new one
        else:
            raise GanforgeError(f"{self.path}: could not take the run folder's lock")
        self._fd: int | None = fd
        try:  # the holder's name is for the message only: a full disk must not stop the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still held: no one can win this file after us
            os.close(self._fd)
            self._fd = None


class Claim:
    """A folder this process owns for a run or sweep: locked, and (with --overwrite) with the
    old run moved aside until :meth:`commit` deletes it or :meth:`restore` puts it back."""

    def __init__(self, folder: Path, lock: RunLock, replaced: Path | None = None) -> None:
        self.folder, self.lock, self.replaced = folder, lock, replaced

    def commit(self) -> None:
        """The new run has started: delete the old one (ganforge's own files only)."""
        if self.replaced is None:
            return
        left = [p for p in self.replaced.iterdir() if not _delete_own(p)]
        if left:
            print(f"ganforge: warning: --overwrite kept {len(left)} file(s) that ganforge did "
                  f"not write in {self.replaced}", file=sys.stderr)
        else:
            self.replaced.rmdir()
        self.replaced = None

    def restore(self) -> None:
        """The new run failed before it started: remove what it wrote, put the old one back."""
        if self.replaced is None:
            return
        for p in _own_entries(self.folder):
            if p != self.replaced:  # everything the new run wrote, not the old run itself
                _delete_own(p)
        for p in self.replaced.iterdir():
            if not os.path.lexists(self.folder / p.name):
                os.rename(p, self.folder / p.name)
        with contextlib.suppress(OSError):
            self.replaced.rmdir()
        self.replaced = None

    def release(self) -> None:
        self.lock.release()


def claim(out: Path, overwrite: bool) -> Claim:
    """Lock ``out`` for a new run. A non-empty folder is refused unless ``overwrite``, and
    then only if ganforge made it; its run is moved aside (not deleted) until the new run has
    passed everything that can fail before its first iteration."""
    if os.path.lexists(out) and not out.is_dir():
        raise GanforgeError(f"--out {out}: exists and is not a folder")
    # a folder with a lock file may be in use: say so first; otherwise make no lock file in
    # a folder that is refused (nothing of ganforge's is left in a user's folder)
    lock = RunLock(out) if os.path.lexists(out / LOCK_NAME) else None
    try:
        entries = [p for p in out.iterdir() if p.name != LOCK_NAME
                   and not is_partial_write(p)] if out.is_dir() else []
        if not entries:  # empty, or only what killed writes of a first attempt left
            claimed = Claim(out, lock or RunLock(out))
            remove_partial_writes(out)
            return claimed
        if not overwrite:
            raise GanforgeError(f"--out {out}: folder is not empty; pass --overwrite to replace "
                                "its run, or choose another --out")
        if out.is_symlink():
            raise GanforgeError(f"--out {out}: is a symbolic link; --overwrite does not "
                                "follow links: name the folder itself")
        if not is_ganforge_folder(out):
            raise GanforgeError(f"--out {out}: not a ganforge run folder (no config.json or "
                                "sweep.json that ganforge wrote); --overwrite replaces only "
                                "ganforge's runs: choose another --out")
        lock = lock or RunLock(out)
        own = list(_own_entries(out))
        replaced = Path(tempfile.mkdtemp(prefix=REPLACED_PREFIX, dir=out))
        for p in own:
            os.rename(p, replaced / p.name)  # a symlink moves as itself, never followed
        return Claim(out, lock, replaced)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def claim_existing(run_dir: Path) -> Claim:
    """Lock an existing run folder (--resume)."""
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise GanforgeError(f"--resume {run_dir}: not a ganforge run folder")
    return Claim(run_dir, RunLock(run_dir))


def _own_entries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name in _OWN_FILES or p.name in _OWN_IN
            or _SWEEP_RUN.match(p.name) or p.name.startswith(REPLACED_PREFIX)]


def _delete_own(p: Path, pattern: re.Pattern[str] | None = None) -> bool:
    """Delete ``p`` if ganforge made it: one of its file names (or ``pattern``'s, inside a
    subfolder of its own), or a folder of its own after the files in it that ganforge made
    (the folder stays if anything else is left). Never follows a symbolic link. Returns
    whether ``p`` is gone."""
    if p.is_symlink():
        p.unlink()  # removes the link itself, not what it points to
        return True
    if p.is_file():
        if p.name in _OWN_FILES or p.name == LOCK_NAME or is_partial_write(p) or (
                pattern is not None and pattern.match(p.name)):
            p.unlink()
            return True
        return False
    tb = _OWN_IN["tensorboard"]
    if p.is_dir() and (p.name in _OWN_IN or _SWEEP_RUN.match(p.name) or pattern is tb
                       or p.name.startswith(REPLACED_PREFIX)):
        inner = _OWN_IN.get(p.name, pattern if pattern is tb else None)
        for child in list(p.iterdir()):
            _delete_own(child, inner)
        with contextlib.suppress(OSError):
            p.rmdir()
    return not os.path.lexists(p)


@dataclass
class Run:
    """A finished (or running) training run and where its files are."""

    dir: Path
    config: Config
    G: torch.nn.Module | None = None
    D: torch.nn.Module | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None  # the signal that stopped the run early, if one did
    failed: str | None = None  # why a run of a sweep stopped while the others went on

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
        record = {"format": RUN_FORMAT, **self.config.to_dict(), "data_used": data_used,
                  "ganforge_version": __version__, "torch_version": torch.__version__}
        atomic_write_json(self.dir / "config.json", record)

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    def log(self, row: dict[str, Any]) -> None:
        self.metrics.append(row)
        append_line(self.metrics_path, json.dumps(row))

    def save_checkpoint(self, state: dict[str, Any], final: bool = False,
                        keep_previous: bool = False) -> None:
        """checkpoints/latest (and final). ``keep_previous``: the latest one before it stays
        as checkpoints/previous (a hard link), for a sweep killed while saving: its runs
        resume from the round all of them saved (resume.py)."""
        if keep_previous and self.latest_checkpoint.is_file():
            tmp = self.checkpoints_dir / ".previous.safetensors.link"
            tmp.unlink(missing_ok=True)
            os.link(self.latest_checkpoint, tmp)
            os.replace(tmp, self.checkpoints_dir / "previous.safetensors")
        checkpoint.save(self.latest_checkpoint, state)
        if final:
            checkpoint.save(self.final_checkpoint, state)

    def sync_metrics(self) -> None:
        """Make the logged rows durable before a checkpoint that a resume pairs them with."""
        fsync_file(self.metrics_path)
