"""CIFAR-10 from the official "python version" archive, parsed without trusting its pickles.

The batches in ``cifar-10-python.tar.gz`` are Python 2 pickles of dicts holding a uint8
``data`` array (N, 3072: 1024 red, then 1024 green, then 1024 blue values, each a row-major
32x32 plane) and a ``labels`` list. ``pickle.load`` on a file can run any code the file
names, so batches go through ``_BatchUnpickler``: its ``find_class`` hands out vetted
stand-ins for the few globals an array needs and refuses every other global. The stand-ins
never call numpy's own unpickling code on the file's data: they check the pickled shape,
dtype and byte count and build the array with ``np.frombuffer``.

Members are read straight from the tar stream (nothing is extracted to disk); an extracted
``cifar-10-batches-py`` folder is accepted too.
"""

from __future__ import annotations

import io
import math
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import DataError, DownloadError, GanforgeError
from .base import ImageDataset
from .download import download_file, mirrors_from_env
from .mnist import search_dirs

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
# Module-level so tests (and users with a re-hosted copy) can substitute the checksum.
CIFAR10_FILES: dict[str, str] = {CIFAR10_ARCHIVE: "c58f30108f718f92721af3b95e74349a"}
CIFAR10_MIRRORS: list[str] = ["https://www.cs.toronto.edu/~kriz/"]
CIFAR10_MEMBER_DIR = "cifar-10-batches-py"
CIFAR10_SPLITS: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
    "all": (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

_PIXELS = 3 * 32 * 32
# A real batch is 10,000 images, about 31 MB pickled; anything far larger is not a batch,
# and refusing it up front stops a forged tar header from making us read gigabytes.
_MAX_BATCH_BYTES = 64 << 20
_MAX_DIMS = 32  # numpy's own limit on array dimensions


class _Refused(Exception):
    """The pickle asked for something a CIFAR batch never contains."""


# --- the restricted unpickler -------------------------------------------------------------


class _Global:
    """Stand-in for one allowed global. A fresh one per ``find_class`` call, so nothing a
    pickle does to it outlives the load; BUILD on it (setting its state) is refused."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> Any:
        raise _Refused(f"call of {self.name}")

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"setting the state of {self.name}")


class _NdarrayClass(_Global):
    """``numpy.ndarray``: only ever passed to ``_reconstruct``, never called."""

    __slots__ = ()


class _Latin1Encode(_Global):
    """``_codecs.encode``: how Python 3 writes ``bytes`` into protocol 0-2 pickles."""

    __slots__ = ()

    def __call__(self, *args: Any) -> bytes:
        if (len(args) != 2 or not isinstance(args[0], str)
                or args[1] not in ("latin1", "latin-1")):
            raise _Refused(f"{self.name} other than (str, 'latin1')")
        return args[0].encode("latin-1")


class _DtypeStub:
    """A pickled ``numpy.dtype``: plain numbers only (no objects, fields or sub-arrays)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, itemsize, alignment, flags[, meta])
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise _Refused(f"dtype state {_short(state)}")
        order = state[1].decode("ascii") if isinstance(state[1], bytes) else state[1]
        if order not in ("<", ">", "|", "=") or any(s is not None for s in state[2:5]):
            raise _Refused(f"dtype state {_short(state)}")
        if len(state) == 9 and state[8] is not None:
            raise _Refused("dtype metadata")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


class _DtypeClass(_Global):
    """``numpy.dtype``: called as ``dtype(code, align, copy)``."""

    __slots__ = ()

    def __call__(self, *args: Any) -> _DtypeStub:
        code = args[0] if args else None
        if isinstance(code, bytes):  # a Python 2 str read with encoding="bytes"
            code = code.decode("ascii", errors="replace")
        if not isinstance(code, str) or len(code) > 8:
            raise _Refused(f"numpy.dtype({_short(code)})")
        try:
            dt = np.dtype(code)
        except (TypeError, ValueError):
            raise _Refused(f"numpy.dtype({code!r})") from None
        if dt.kind not in "biuf" or dt.fields is not None or dt.subdtype is not None:
            raise _Refused(f"numpy.dtype({code!r}): only plain numeric dtypes")
        return _DtypeStub(dt)


class _ArrayStub:
    """What ``_reconstruct`` returns; BUILD then hands it the array's pickled state."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        # (version, shape, dtype, fortran order, raw bytes); very old pickles omit version
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise _Refused(f"array state of type {type(state).__name__}")
        shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and len(shape) <= _MAX_DIMS
                and all(type(d) is int and d >= 0 for d in shape)):
            raise _Refused(f"array shape {_short(shape)}")
        if not isinstance(dtype, _DtypeStub) or not isinstance(fortran, bool | int):
            raise _Refused("array state without a plain dtype")
        if not isinstance(raw, bytes):
            raise _Refused(f"array data of type {type(raw).__name__}")
        if len(raw) != math.prod(shape) * dtype.dtype.itemsize:
            raise _Refused(f"array data of {len(raw)} bytes for shape {shape} {dtype.dtype}")
        self.array = np.frombuffer(raw, dtype=dtype.dtype).reshape(
            shape, order="F" if fortran else "C")


class _Reconstruct(_Global):
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b"b")``: an empty array to fill."""

    __slots__ = ()

    def __call__(self, *args: Any) -> _ArrayStub:
        # shape and typecode here are placeholders that the state set next replaces
        if not args or not isinstance(args[0], _NdarrayClass):
            raise _Refused(f"{self.name} of anything but numpy.ndarray")
        return _ArrayStub()


# The only globals a batch needs: numpy's array reconstruction (module named as numpy 1
# and numpy 2 write it) and, in pickles written by Python 3, the bytes encoder.
_ALLOWED: dict[str, type[_Global]] = {
    "numpy.core.multiarray._reconstruct": _Reconstruct,
    "numpy._core.multiarray._reconstruct": _Reconstruct,
    "numpy.ndarray": _NdarrayClass,
    "numpy.dtype": _DtypeClass,
    "_codecs.encode": _Latin1Encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if key not in _ALLOWED:
            raise _Refused(f"global {key}")
        return _ALLOWED[key](key)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unpickle(fh: BinaryIO, source: str) -> Any:
    try:
        # encoding="bytes": the batches were written by Python 2, whose str is bytes
        return _BatchUnpickler(fh, encoding="bytes").load()
    except _Refused as exc:
        raise DataError(f"{source}: refused to unpickle {exc} "
                        "(a CIFAR-10 batch holds only arrays, lists and strings)") from None
    except RecursionError:
        raise DataError(f"{source}: pickle nested too deeply to be a CIFAR-10 batch") from None
    except Exception as exc:  # any failure to parse untrusted bytes means a bad file
        raise DataError(f"{source}: not a readable pickle "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None


def _field(batch: dict, key: str) -> Any:
    # Python 2 wrote the keys as str, which encoding="bytes" reads as bytes
    value = batch.get(key.encode(), batch.get(key))
    return value.array if isinstance(value, _ArrayStub) else value


def _batch_arrays(obj: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    """``data`` as uint8 (n, 3072) and ``labels`` as int64 (n,), checked."""
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a dict with data and labels, "
                        f"got {type(obj).__name__}")
    data, labels = _field(obj, "data"), _field(obj, "labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _PIXELS):
        got = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DataError(f"{source}: expected data as uint8 (n, {_PIXELS}), got {got}")
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not (isinstance(labels, list) and all(type(y) is int for y in labels)):
        raise DataError(f"{source}: expected labels as a list of ints")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (data.shape[0],):
        raise DataError(f"{source}: {y.shape[0]} labels for {data.shape[0]} images")
    if y.size and not (0 <= y.min() and y.max() < len(CIFAR10_CLASSES)):
        raise DataError(f"{source}: labels outside 0..{len(CIFAR10_CLASSES) - 1}")
    return data, y


# --- reading archives and folders --------------------------------------------------------


def _member_batch(archive: Path, name: str) -> str | None:
    """The batch a member holds (e.g. "test_batch"), or None; unsafe names are refused."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive}: refusing member with an unsafe path {name!r}")
    parts = [p for p in path.parts if p != "."]
    if len(parts) == 2 and parts[0] == CIFAR10_MEMBER_DIR:
        return parts[1]
    return None


def _read_archive(archive: Path, wanted: Sequence[str]) -> dict[str, tuple[np.ndarray, ...]]:
    found: dict[str, tuple[np.ndarray, ...]] = {}
    try:
        # "r|gz" reads the archive once, front to back, as a stream: members come in any
        # order, and gzip's checksum at the end is verified, so truncation is caught
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                batch = _member_batch(archive, member.name)
                if batch not in wanted:
                    continue
                source = f"{archive}:{member.name}"
                if batch in found:
                    raise DataError(f"{source}: member appears twice")
                if not member.isfile():
                    raise DataError(f"{source}: expected a regular file")
                if member.size > _MAX_BATCH_BYTES:
                    raise DataError(f"{source}: {member.size} bytes is too large for a batch")
                # read whole, then parse: a damaged stream then reads as a damaged archive,
                # not as a damaged pickle
                raw = tar.extractfile(member).read()
                found[batch] = _batch_arrays(_unpickle(io.BytesIO(raw), source), source)
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
        if path.stat().st_size > _MAX_BATCH_BYTES:
            raise DataError(f"{path}: {path.stat().st_size} bytes is too large for a batch")
        with path.open("rb") as fh:
            found[batch] = _batch_arrays(_unpickle(fh, str(path)), str(path))
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


def load_cifar10(data_dir: str | None, split: str,
                 mirrors: Sequence[str] | None = None) -> ImageDataset:
    """CIFAR-10 ``split`` (train: 50,000, test: 10,000, all: both) as uint8 (N, 3, 32, 32).

    Looks in ``data_dir`` (when given), else ``$GANFORGE_DATA``, then the cache, each
    directly and in a ``cifar10`` subfolder, for the archive or its extracted batch folder;
    else downloads the archive (MD5-checked) into ``data_dir``, or ``<cache>/cifar10``.
    ``mirrors`` (base URLs) replace the official one; without them ``$GANFORGE_MIRRORS``
    does, if set.
    """
    if split not in CIFAR10_SPLITS:
        raise GanforgeError(f"cifar10: split must be one of {', '.join(CIFAR10_SPLITS)}, "
                            f"got {split!r}")
    wanted = CIFAR10_SPLITS[split]
    roots, dirs, dest = search_dirs("cifar10", data_dir)

    source = _find(dirs, wanted)
    if source is None:
        # an explicit list is the caller's choice; only the default yields to the environment
        urls = list(mirrors) if mirrors is not None else mirrors_from_env(CIFAR10_MIRRORS)
        try:
            source = download_file(CIFAR10_ARCHIVE, CIFAR10_FILES[CIFAR10_ARCHIVE], urls, dest)
        except DownloadError as exc:
            where = ", ".join(str(d) for d in roots)
            raise DataError(
                f"cifar10 ({split}): {CIFAR10_ARCHIVE} not found in {where} and the download "
                f"failed ({exc}); put the archive there or pass --data-dir"
            ) from None

    if source.is_dir():
        batches = _read_folder(source, wanted)
        files = [str(source / b) for b in wanted]
    else:
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
