"""Reader for the IDX format used by MNIST and Fashion-MNIST (gzip-compressed or raw).

Format: two zero bytes, a type code, the number of dimensions, then one big-endian
uint32 per dimension, then the data in C order with big-endian items.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ganforge.errors import DataError

__all__ = ["read_idx", "read_idx_pair"]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

_MAX_NDIM = 4
_TRAILING_SHOWN = 1 << 16  # trailing bytes counted exactly in the error, up to this many


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's IDX bytes, and whether they came out of a gzip stream."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: expected an IDX file, found a directory or special file")
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head != _GZIP_MAGIC:
                return fh.read(), False
            # Sniff the magic instead of trusting the suffix: files get renamed or
            # decompressed in place by other tools, keeping the wrong extension.
            try:
                with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                    return _read_declared(gz, path), True
            except EOFError:
                raise DataError(
                    f"{path}: truncated gzip stream (the file ends in the middle of the "
                    "compressed data)"
                ) from None
            except (zlib.error, gzip.BadGzipFile) as exc:
                raise DataError(f"{path}: corrupt gzip stream ({_one_line(exc)})") from None
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or _one_line(exc)})") from None


def _read_declared(stream: Any, path: Path) -> bytes:
    """Decompress only as much as the IDX header declares (and one byte more, to tell a
    file with trailing bytes): a small file that inflates without bound is refused, not
    read into memory."""
    head = stream.read(4)
    if len(head) == 4 and head[:2] == b"\0\0" and head[2] in _IDX_DTYPES \
            and 1 <= head[3] <= _MAX_NDIM:
        dims_raw = stream.read(4 * head[3])
        dims = [int.from_bytes(dims_raw[i:i + 4], "big") for i in range(0, len(dims_raw), 4)]
        size = math.prod(dims) * np.dtype(_IDX_DTYPES[head[2]]).itemsize
        from ..budget import require

        require(size, f"{path}: its IDX header's shape {tuple(dims)}")
        # past the declared size, read a little more so the message can say how much
        return head + dims_raw + stream.read(size + _TRAILING_SHOWN)
    return head + stream.read(1 << 16)  # not IDX: enough for _parse_idx to say so


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4:
        raise DataError(
            f"{path}: not an IDX file: expected at least a 4-byte header, found {len(data)} bytes"
        )
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES:
        raise DataError(
            f"{path}: not an IDX file: expected magic 00 00 <type in "
            f"{' '.join(f'{c:02x}' for c in _IDX_DTYPES)}> <ndim>, found {data[:4].hex(' ')}"
        )
    if not 1 <= ndim <= _MAX_NDIM:
        raise DataError(
            f"{path}: unsupported IDX header: expected 1 to {_MAX_NDIM} dimensions, found {ndim}"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated IDX header: expected {header_len} bytes, found {len(data)}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(d == 0 for d in dims):
        raise DataError(f"{path}: invalid IDX header: expected positive sizes, found {dims}")

    dtype = np.dtype(_IDX_DTYPES[type_code])
    # Python ints: a corrupt header with huge sizes must not overflow into a plausible number.
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header_len
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX file: expected {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: IDX file has {found - expected} trailing bytes: expected exactly "
            f"{expected} bytes of data for shape {dims}, found {found}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # astype copies, which also turns the read-only view of `data` into a writable array.
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-byte-order array.

    Raises DataError, with a one-line message naming the file, when the file is missing,
    not IDX, has an unsupported type or dimension count, or its data length differs from
    what the header promises.
    """
    path = Path(path)
    data, was_gzip = _read_bytes(path)
    try:
        return _parse_idx(data, path)
    except DataError as e:
        if path.suffix.lower() == ".gz" and not was_gzip and "not an IDX file" in str(e):
            # it was read as raw IDX because it is not gzip: say so, the name promised gzip
            raise DataError(f"{e} (and despite its .gz name, not gzip-compressed)") from None
        raise


def read_idx_pair(
    images_path: str | Path,
    labels_path: str | Path,
    *,
    expect_shape: tuple[int, int] | None = (28, 28),
) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label IDX files: images (N, H, W), labels (N,) uint8."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(
            f"{images_path}: expected images of shape (N, H, W), found shape {images.shape}"
        )
    if expect_shape is not None and images.shape[1:] != tuple(expect_shape):
        raise DataError(
            f"{images_path}: expected {tuple(expect_shape)} images, found {images.shape[1:]}"
        )
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected 1-D labels, found shape {labels.shape}")
    if labels.dtype != np.uint8:
        raise DataError(f"{labels_path}: expected uint8 labels, found {labels.dtype}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} "
            "labels: expected the same count"
        )
    return images, labels
