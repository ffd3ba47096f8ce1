"""The one way ganforge writes a file: atomically, or (for the metrics log) append-only.

Every file goes to a temporary file in the same folder, is flushed and fsynced, renamed over
its target, and the folder is fsynced: a crash, a kill or a full disk at any instant leaves
either the old file or the new one, never a torn one, and a failed write leaves the target
byte-identical. The temporary file's name (``.NAME.XXXXXXXX.tmp[.SUFFIX]``) is recognisably
ganforge's, so a later run may delete leftovers of a killed write and nothing else.

``metrics.jsonl`` is the exception that makes sense for a log: rows are appended (rewriting a
file of 100 MB per log row would be quadratic), a torn last line is dropped with a warning when
read, and cutting it back to a checkpoint's iteration is one ``truncate`` of the rows after it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import GanforgeError

_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (with the same suffix, for writers that choose
    the format by it); once the block succeeds, the file there replaces ``path`` atomically.
    If the block fails, the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    if path.is_dir():
        raise GanforgeError(f"{path}: is a folder; expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        yield tmp
        with open(tmp, "rb+") as f:  # whatever wrote it, make it durable before the rename
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """A matplotlib figure, atomically, in the format of ``path``'s suffix."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def save_image(img: Any, path: str | Path, fmt: str | None = None, **kwargs: Any) -> Path:
    """A PIL image (or animation, with ``save_all=True``), atomically."""
    buf = io.BytesIO()
    img.save(buf, format=fmt or _pil_format(path), **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def _pil_format(path: str | Path) -> str:
    from PIL import Image

    suffix = Path(path).suffix.lower()
    Image.init()
    fmt = Image.EXTENSION.get(suffix)
    if fmt is None:
        raise GanforgeError(f"{path}: cannot write images with suffix {suffix!r}; use .png, "
                            ".jpg, .gif, .webp, ...")
    return fmt


def is_partial_write(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an interrupted atomic write."""
    return bool(_TMP.match(path.name))


def remove_partial_writes(folder: Path) -> None:
    """Delete the temporary files that killed writes left in ``folder`` (ours only)."""
    if folder.is_dir() and not folder.is_symlink():
        for p in folder.iterdir():
            if is_partial_write(p) and p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)


# --- the append-only metrics log ---------------------------------------------------------------
def append_line(path: Path, line: str) -> None:
    """Append one line (a torn last line is what a crash can leave; readers drop it)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def fsync_file(path: Path) -> None:
    """Make what was appended to ``path`` durable (before a checkpoint that depends on it)."""
    if path.exists():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _scan_jsonl(path: Path, warn: Callable[[str], None] | None = None
                ) -> tuple[list[dict[str, Any]], list[int], int]:
    """(rows, the byte offset where each starts, the offset just past the last whole row).

    A last line that does not parse (a write cut short by a crash or a full disk) is dropped
    with a warning; a bad line before the last is an error naming the file and the line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], [], 0
    except OSError as e:
        raise GanforgeError(f"{path}: cannot read ({e.strerror or e})") from None
    rows: list[dict[str, Any]] = []
    offsets: list[int] = []
    lines = data.split(b"\n")
    pos = good_end = 0
    for i, raw in enumerate(lines):
        start, pos = pos, pos + len(raw) + 1
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except (ValueError, RecursionError) as e:
            if all(not x.strip() for x in lines[i + 1:]):
                (warn or _warn)(f"{path}: dropped a truncated last line ({len(raw)} bytes)")
                break
            raise GanforgeError(f"{path}: line {i + 1} is not a JSON object ({e})") from None
        rows.append(row)
        offsets.append(start)
        good_end = min(pos, len(data))
    return rows, offsets, good_end


def _warn(message: str) -> None:
    print(f"ganforge: warning: {message}", file=sys.stderr)


def truncate_jsonl(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep the rows up to iteration ``step`` (and drop a torn last line); return them.

    When the rows after ``step`` are a suffix of the file (the normal case: rows are appended
    in order), one ``truncate`` cuts them: the rows kept are never rewritten, so a crash at any
    instant leaves them whole. Otherwise the kept rows are written atomically."""
    rows, offsets, good_end = _scan_jsonl(path)
    if not path.exists():
        return []
    steps = [_step(r, path) for r in rows]
    cut = next((i for i, s in enumerate(steps) if s > step), len(rows))
    if all(s > step for s in steps[cut:]):
        end = offsets[cut] if cut < len(rows) else good_end
        if end != path.stat().st_size:
            os.truncate(path, end)
            fsync_file(path)
        return rows[:cut]
    kept = [r for r, s in zip(rows, steps, strict=True) if s <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _step(row: dict[str, Any], path: Path) -> int:
    s = row.get("step", 0)
    if not isinstance(s, int) or isinstance(s, bool):
        raise GanforgeError(f"{path}: a row's step is {s!r}; expected an integer")
    return s


# A run folder's files that its readers (report, eval, sample, export, resume) read.
_RUN_INPUTS = ("config.json", "metrics.jsonl", "progress.gif", "losses.png", "checkpoints",
               "samples", "tensorboard", "sweep.json", ".ganforge.lock")


def check_out(out: str | Path, reads: list[Path], flag: str = "--out") -> Path:
    """Refuse an output path that is one of the files being read (or any of a read run
    folder's own files): writing it would replace what the command reads, or the run."""
    out = Path(out)
    target = Path(os.path.realpath(out))
    for src in reads:
        real = Path(os.path.realpath(src))
        if target == real:
            raise GanforgeError(f"{flag} {out}: is the file being read ({src}); write "
                                "the output elsewhere")
        if real.is_dir() and target.is_relative_to(real):
            first = target.relative_to(real).parts[0]
            if first in _RUN_INPUTS:
                raise GanforgeError(f"{flag} {out}: is inside the run's own {first} ({src}); "
                                    "write the output elsewhere")
    return out
