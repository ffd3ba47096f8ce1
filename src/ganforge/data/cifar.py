"""CIFAR-10 from the official "binary version" archive, read as fixed-size records.

``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/data_batch_1.bin`` .. ``_5.bin``
(training) and ``test_batch.bin``, each 10,000 records of 3,073 bytes: one label byte
(0-9), then 1024 red, 1024 green and 1024 blue values, each a row-major 32x32 plane. That
is plain bytes for numpy, so nothing in the archive is ever unpickled. The "python
version" (``cifar-10-python.tar.gz``) stores pickles, which can run code when loaded, and
is refused with a pointer to the binary archive.

Members are read straight from the tar stream (nothing is extracted to disk); an extracted
``cifar-10-batches-bin`` folder is accepted too.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from ..errors import DataError, DownloadError, GanforgeError
from .base import ImageDataset
from .download import download_file, md5sum, mirrors_from_env
from .mnist import cache_dir, search_dirs

CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
# Module-level so tests (and users with a re-hosted copy) can substitute the checksum.
CIFAR10_FILES: dict[str, str] = {CIFAR10_ARCHIVE: "c32a1d4ab5d03f1284b67883e8d87530"}
CIFAR10_MIRRORS: list[str] = ["https://www.cs.toronto.edu/~kriz/"]
CIFAR10_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_MEMBER_DIR = "cifar-10-batches-bin"
_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_SPLITS: dict[str, tuple[str, ...]] = {
    "train": _TRAIN,
    "test": ("test_batch.bin",),
    "all": (*_TRAIN, "test_batch.bin"),
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS
_RECORDS = 10_000  # per batch file, in every official batch

# What the pickled "python version" leaves where a user keeps data: its archive, its
# extracted folder, or its batches (named like ours, without ".bin") loose in a folder.
_PICKLED_ARCHIVE = "cifar-10-python.tar.gz"
_PICKLED_DIR = "cifar-10-batches-py"
_PICKLED_BATCHES = ("data_batch_1", "test_batch")


# --- one batch ------------------------------------------------------------------------------


def _check_size(size: int, source: str) -> None:
    # checked before reading, so a forged tar header cannot make us read gigabytes
    if size % _RECORD:
        raise DataError(f"{source}: {size} bytes is not a whole number of {_RECORD}-byte "
                        "records (truncated, or not a CIFAR-10 binary batch)")
    if size // _RECORD != _RECORDS:
        raise DataError(f"{source}: {size // _RECORD} records, expected {_RECORDS:,} "
                        "(truncated, or not a CIFAR-10 binary batch)")


def _parse(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels as uint8 (n, 3072) and labels as int64 (n,), checked."""
    _check_size(len(raw), source)
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0]
    bad = np.flatnonzero(labels >= len(CIFAR10_CLASSES))
    if bad.size:
        raise DataError(f"{source}: record {bad[0]} has label {labels[bad[0]]}, expected "
                        f"0..{len(CIFAR10_CLASSES) - 1} (not a CIFAR-10 binary batch)")
    return records[:, 1:], labels.astype(np.int64)


# --- reading archives and folders --------------------------------------------------------


def _member_batch(archive: Path, name: str) -> str | None:
    """The batch a member holds (e.g. "test_batch.bin"), or None; unsafe names are refused."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive}: refusing member with an unsafe path {name!r}")
    parts = [p for p in path.parts if p != "."]
    if len(parts) == 2 and parts[0] == CIFAR10_MEMBER_DIR:
        return parts[1]
    return None


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.isdev():
        return "device or FIFO"
    return f"type {member.type!r}"


def _check_md5(archive: Path) -> None:
    expected = CIFAR10_FILES.get(archive.name)
    if expected is None:
        return
    got = md5sum(archive)
    if got != expected.lower():
        raise DataError(f"{archive}: MD5 {got}, expected {expected} for the official "
                        f"{archive.name} (damaged or another file; fetch it again from "
                        f"{CIFAR10_PAGE})")


def _read_archive(archive: Path, wanted: Sequence[str]) -> dict[str, tuple[np.ndarray, ...]]:
    found: dict[str, tuple[np.ndarray, ...]] = {}
    try:
        # "r|gz" reads the archive once, front to back, as a stream: members come in any
        # order, and gzip's checksum at the end is verified, so truncation is caught
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                batch = _member_batch(archive, member.name)
                source = f"{archive}:{member.name}"
                if member.isdir():
                    continue
                # a link's target is resolved by whoever extracts it, not by us: nothing
                # but plain files belongs in this archive, so anything else is a bad sign
                if not member.isfile():
                    raise DataError(f"{source}: refusing a {_kind(member)} member "
                                    "(the archive holds only regular files)")
                if batch not in wanted:
                    continue
                if batch in found:
                    raise DataError(f"{source}: member appears twice")
                _check_size(member.size, source)
                # read whole, then parse: a damaged stream then reads as a damaged archive
                raw = tar.extractfile(member).read()
                found[batch] = _parse(raw, source)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{archive}: corrupt or truncated archive ({reason})") from None
    missing = [b for b in wanted if b not in found]
    if missing:
        raise DataError(f"{archive}: no member {CIFAR10_MEMBER_DIR}/{missing[0]}")
    return found


def _read_folder(folder: Path, wanted: Sequence[str]) -> dict[str, tuple[np.ndarray, ...]]:
    found = {}
    for batch in wanted:
        path = folder / batch
        _check_size(path.stat().st_size, str(path))
        found[batch] = _parse(path.read_bytes(), str(path))
    return found


def _find(dirs: Sequence[Path], wanted: Sequence[str]) -> Path | None:
    """An extracted batch folder holding every wanted batch, else the archive, per dir."""
    for d in dirs:
        for folder in (d / CIFAR10_MEMBER_DIR, d):
            if all((folder / b).is_file() for b in wanted):
                return folder
        if (d / CIFAR10_ARCHIVE).is_file():
            return d / CIFAR10_ARCHIVE
    return None


def _find_pickled(dirs: Sequence[Path]) -> Path | None:
    for d in dirs:
        for path in (d / _PICKLED_ARCHIVE, d / _PICKLED_DIR,
                     *(d / b for b in _PICKLED_BATCHES)):
            if path.exists():
                return path
    return None


def _refuse_pickled(dirs: Sequence[Path]) -> None:
    path = _find_pickled(dirs)
    if path is not None:
        raise DataError(
            f"{path}: the CIFAR-10 python version (pickled batches) is not read, since "
            f"unpickling can run code; use {CIFAR10_ARCHIVE} (the binary version, from "
            f"{CIFAR10_PAGE}) instead")


def load_cifar10(data_dir: str | None, split: str,
                 mirrors: Sequence[str] | None = None) -> ImageDataset:
    """CIFAR-10 ``split`` (train: 50,000, test: 10,000, all: both) as uint8 (N, 3, 32, 32).

    Looks in ``data_dir`` (when given), else ``$GANFORGE_DATA``, then the cache, each
    directly and in a ``cifar10`` subfolder, for the binary archive (MD5-checked) or its
    extracted batch folder; else downloads the archive (MD5-checked) into ``data_dir``, or
    ``<cache>/cifar10``. ``mirrors`` (base URLs) replace the official one; without them
    ``$GANFORGE_MIRRORS`` does, if set.
    """
    if split not in CIFAR10_SPLITS:
        raise GanforgeError(f"cifar10: split must be one of {', '.join(CIFAR10_SPLITS)}, "
                            f"got {split!r}")
    wanted = CIFAR10_SPLITS[split]
    roots, dirs, dest = search_dirs("cifar10", data_dir)

    source = _find(dirs, wanted)
    verified = False
    if source is None:
        # A pickled copy where the user keeps data is a mistake worth saying; one in the
        # cache is an older ganforge's download, which the binary archive simply replaces.
        cache = cache_dir().resolve()
        _refuse_pickled(dirs if data_dir is not None
                        else [d for d in dirs if not d.resolve().is_relative_to(cache)])
        # an explicit list is the caller's choice; only the default yields to the environment
        urls = list(mirrors) if mirrors is not None else mirrors_from_env(CIFAR10_MIRRORS)
        try:
            source = download_file(CIFAR10_ARCHIVE, CIFAR10_FILES[CIFAR10_ARCHIVE], urls, dest)
        except DownloadError as exc:
            where = ", ".join(str(d) for d in roots)
            raise DataError(
                f"cifar10 ({split}): {CIFAR10_ARCHIVE} not found in {where} and the download "
                f"failed ({exc}); put the archive there (from {CIFAR10_PAGE}) or pass "
                "--data-dir"
            ) from None
        verified = True  # download_file checked the MD5 of what it fetched or found

    if source.is_dir():
        batches = _read_folder(source, wanted)
        files = [str(source / b) for b in wanted]
    else:
        if not verified:
            _check_md5(source)
        batches = _read_archive(source, wanted)
        files = [str(source)]
    x = np.concatenate([batches[b][0] for b in wanted]).reshape(-1, 3, 32, 32)
    y = np.concatenate([batches[b][1] for b in wanted])
    return ImageDataset(
        name="cifar10", shape=(3, 32, 32),
        info={"dataset": "cifar10", "split": split, "n": int(x.shape[0]), "files": files,
              "classes": list(CIFAR10_CLASSES)},
        images=torch.from_numpy(x), labels=torch.from_numpy(y),
    )


def cifar10(cfg: Any) -> ImageDataset:
    """The dataset registry's entry point: ``cfg.data_dir`` and ``cfg.split``."""
    return load_cifar10(cfg.data_dir, cfg.split)


__all__ = ["CIFAR10_CLASSES", "CIFAR10_FILES", "CIFAR10_MIRRORS", "cifar10", "load_cifar10"]
