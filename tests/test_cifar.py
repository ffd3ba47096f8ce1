"""CIFAR-10 from the binary archive: batches built here at the real size (10,000 records),
read from a served and downloaded archive, from one in --data-dir and from folders."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import serve_directory

from ganforge.data import cifar
from ganforge.data.cifar import CIFAR10_ARCHIVE, load_cifar10
from ganforge.data.mnist import cache_dir
from ganforge.errors import DataError, GanforgeError

N = 10_000  # records in every official batch file
TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST = "test_batch.bin"
SEEDS = {name: seed for seed, name in enumerate([*TRAIN, TEST])}
# records that get a picture; the rest stay black, which keeps the archives small
PICTURED = [0, 1, 5_000, N - 1]
OFFICIAL_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"


def _images(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 pictures, as a camera gives them, and (N,) labels 0..9."""
    rng = np.random.default_rng(SEEDS[name])
    hwc = np.zeros((N, 32, 32, 3), np.uint8)
    hwc[PICTURED] = rng.integers(0, 256, (len(PICTURED), 32, 32, 3), dtype=np.uint8)
    return hwc, rng.integers(0, 10, N).astype(np.uint8)


def _batch(name: str) -> bytes:
    # the record layout as the CIFAR page describes it: the label byte, then 1024 red,
    # 1024 green and 1024 blue values, each plane row-major
    hwc, labels = _images(name)
    planes = [hwc[:, :, :, c].reshape(N, 1024) for c in range(3)]
    return np.concatenate([labels[:, None], *planes], axis=1).tobytes()


def _expected(names: list[str]) -> tuple[torch.Tensor, list[int]]:
    pairs = [_images(n) for n in names]
    x = np.concatenate([hwc for hwc, _ in pairs]).transpose(0, 3, 1, 2)
    return torch.from_numpy(x.copy()), [int(y) for _, labels in pairs for y in labels]


def _assert_split(ds, names: list[str]) -> None:
    x, y = _expected(names)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (N * len(names), 3, 32, 32)
    assert torch.equal(ds.images, x)
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == y
    assert ds.shape == (3, 32, 32) and ds.info["n"] == N * len(names)


def _write_tar(path: Path, members: dict[str, bytes | tarfile.TarInfo]) -> Path:
    """A .tar.gz of ``members``: bytes become regular files under cifar-10-batches-bin/
    (names starting with "/" or ".." stay as given), TarInfos are added as they are."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            if isinstance(data, tarfile.TarInfo):
                tar.addfile(data)
                continue
            info = tarfile.TarInfo(name if name.startswith(("/", "..")) else
                                   f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _official_members(names: list[str]) -> dict[str, bytes | tarfile.TarInfo]:
    # the folder entry, meta file and readme of the real archive, which the loader skips
    folder = tarfile.TarInfo("cifar-10-batches-bin")
    folder.type = tarfile.DIRTYPE
    return {"dir": folder, "batches.meta.txt": "\n".join(cifar.CIFAR10_CLASSES).encode(),
            "readme.html": b"<html></html>"} | {n: _batch(n) for n in names}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _trusted(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``path`` (built here) the archive whose MD5 the loader expects."""
    monkeypatch.setitem(cifar.CIFAR10_FILES, CIFAR10_ARCHIVE, _md5(path))
    return path


def _data_dir(tmp_path: Path, name: str = "data") -> Path:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    return d


def _one_line_error(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- reading -------------------------------------------------------------------------------


def test_cifar_record_layout_exactly(tmp_path: Path) -> None:
    # single bytes at known offsets of two records: where each lands names the layout
    records = np.zeros((N, 3073), np.uint8)
    records[0, 0] = 7
    records[0, 1 + 1] = 11  # red plane, row 0, column 1
    records[0, 1 + 1024 + 32] = 22  # green plane, row 1, column 0
    records[0, 1 + 2048 + 31 * 32 + 30] = 33  # blue plane, row 31, column 30
    records[N - 1, 0] = 9
    records[N - 1, 1 + 1023] = 44  # red plane, row 31, column 31
    (tmp_path / TEST).write_bytes(records.tobytes())

    ds = load_cifar10(str(tmp_path), "test")  # loose .bin files in the folder itself
    first = torch.zeros(3, 32, 32, dtype=torch.uint8)
    first[0, 0, 1], first[1, 1, 0], first[2, 31, 30] = 11, 22, 33
    last = torch.zeros(3, 32, 32, dtype=torch.uint8)
    last[0, 31, 31] = 44
    assert torch.equal(ds.images[0], first) and torch.equal(ds.images[N - 1], last)
    assert int(ds.images[1:N - 1].sum()) == 0
    assert ds.labels[0] == 7 and ds.labels[N - 1] == 9 and int(ds.labels[1:N - 1].sum()) == 0
    assert ds.info == {"dataset": "cifar10", "split": "test", "n": N,
                       "files": [str(tmp_path / TEST)], "classes": list(cifar.CIFAR10_CLASSES)}


def test_cifar_download_splits_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    www = _data_dir(tmp_path, "www")
    archive = _trusted(_write_tar(www / CIFAR10_ARCHIVE, _official_members([*TRAIN, TEST])),
                       monkeypatch)

    with serve_directory(www) as url:
        train = load_cifar10(None, "train", mirrors=[url])
        assert f"downloading {CIFAR10_ARCHIVE} from {url}" in capsys.readouterr().err
    cached = cache_dir() / "cifar10" / CIFAR10_ARCHIVE
    assert cached.read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in cached.parent.iterdir()) == [CIFAR10_ARCHIVE]
    _assert_split(train, TRAIN)
    assert train.info["split"] == "train" and train.info["files"] == [str(cached)]

    # the server is gone: the cached archive is used (its MD5 checked), mirrors given or not
    _assert_split(load_cifar10(None, "test", mirrors=[url]), [TEST])
    everything = load_cifar10(None, "all")
    _assert_split(everything, [*TRAIN, TEST])
    assert everything.info["split"] == "all"
    assert "downloading" not in capsys.readouterr().err


def test_cifar_bad_download_leaves_nothing(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    www = _data_dir(tmp_path, "www")
    _write_tar(www / CIFAR10_ARCHIVE, _official_members([TEST]))
    monkeypatch.setitem(cifar.CIFAR10_FILES, CIFAR10_ARCHIVE, "0" * 32)
    with serve_directory(www) as url, pytest.raises(DataError, match="MD5 mismatch"):
        load_cifar10(None, "test", mirrors=[url])
    assert [p for p in cache_dir().rglob("*") if p.is_file()] == []


def test_cifar_archive_md5_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _data_dir(tmp_path)
    archive = _write_tar(d / CIFAR10_ARCHIVE, _official_members([TEST]))
    # not the official file: the official checksum refuses it before anything is read
    assert cifar.CIFAR10_FILES[CIFAR10_ARCHIVE] == OFFICIAL_MD5
    with pytest.raises(DataError) as exc:
        load_cifar10(str(d), "test")
    message = _one_line_error(exc)
    assert message.startswith(f"{archive}: MD5 {_md5(archive)}, expected {OFFICIAL_MD5}")

    _trusted(archive, monkeypatch)
    ds = load_cifar10(str(d), "test")
    _assert_split(ds, [TEST])
    assert ds.info["files"] == [str(archive)]


def test_cifar_extracted_folders(tmp_path: Path) -> None:
    ex = tmp_path / "extracted" / "cifar-10-batches-bin"
    ex.mkdir(parents=True)
    for name in [*TRAIN, TEST]:
        (ex / name).write_bytes(_batch(name))
    ds = load_cifar10(str(ex.parent), "all")
    _assert_split(ds, [*TRAIN, TEST])
    assert ds.info["files"] == [str(ex / n) for n in [*TRAIN, TEST]]
    # a cifar10 subfolder of the data folder is searched too
    (tmp_path / "sub" / "cifar10").mkdir(parents=True)
    (tmp_path / "sub" / "cifar10" / TEST).write_bytes(_batch(TEST))
    _assert_split(load_cifar10(str(tmp_path / "sub"), "test"), [TEST])


# --- bad batches, archives and the pickled version ---------------------------------------


def _truncated(raw: bytes) -> bytes:
    return raw[:-1]


def _short(raw: bytes) -> bytes:
    return raw[:-3073]


def _label_10(raw: bytes) -> bytes:
    records = np.frombuffer(raw, np.uint8).reshape(N, 3073).copy()
    records[1234, 0] = 10
    return records.tobytes()


DEFECTS = [
    pytest.param(_truncated, "30729999 bytes is not a whole number of 3073-byte records",
                 id="truncated"),
    pytest.param(_short, "9999 records, expected 10,000", id="9999-records"),
    pytest.param(_label_10, "record 1234 has label 10, expected 0..9", id="label-10"),
]


@pytest.mark.parametrize(("defect", "says"), DEFECTS)
def test_cifar_bad_batch_file(tmp_path: Path, defect, says: str) -> None:
    d = _data_dir(tmp_path)
    (d / TEST).write_bytes(defect(_batch(TEST)))
    with pytest.raises(DataError) as exc:
        load_cifar10(str(d), "test")
    assert _one_line_error(exc) == f"{d / TEST}: {says}" + (
        " (not a CIFAR-10 binary batch)" if "label" in says
        else " (truncated, or not a CIFAR-10 binary batch)")


@pytest.mark.parametrize(("defect", "says"), DEFECTS)
def test_cifar_bad_batch_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defect,
                                says: str) -> None:
    d = _data_dir(tmp_path)
    members = _official_members([TEST]) | {TEST: defect(_batch(TEST))}
    archive = _trusted(_write_tar(d / CIFAR10_ARCHIVE, members), monkeypatch)
    with pytest.raises(DataError) as exc:
        load_cifar10(str(d), "test")
    assert _one_line_error(exc).startswith(
        f"{archive}:cifar-10-batches-bin/{TEST}: {says}")


def test_cifar_truncated_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _data_dir(tmp_path)
    archive = _write_tar(d / CIFAR10_ARCHIVE, _official_members([TEST]))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    _trusted(archive, monkeypatch)  # a copy re-hosted with its own checksum, then cut short
    with pytest.raises(DataError) as exc:
        load_cifar10(str(d), "test")
    assert _one_line_error(exc).startswith(f"{archive}: corrupt or truncated archive")


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


BATCH_MEMBER = f"cifar-10-batches-bin/{TEST}"
ODD_MEMBERS = [
    pytest.param({TEST: _link(BATCH_MEMBER, tarfile.SYMTYPE, "/etc/passwd")},
                 f":{BATCH_MEMBER}: refusing a symbolic link member", id="symlink-batch"),
    pytest.param({TEST: _link(BATCH_MEMBER, tarfile.LNKTYPE, "cifar-10-batches-bin/x.bin")},
                 f":{BATCH_MEMBER}: refusing a hard link member", id="hardlink-batch"),
    # links are refused wherever they are, not only under the batch names
    pytest.param({"readme.html": _link("readme.html", tarfile.SYMTYPE, "../../.ssh/id_rsa")},
                 ":readme.html: refusing a symbolic link member", id="symlink-elsewhere"),
    pytest.param({"fifo": _link("cifar-10-batches-bin/fifo", tarfile.FIFOTYPE, "")},
                 ":cifar-10-batches-bin/fifo: refusing a device or FIFO member", id="fifo"),
    pytest.param({"../../escape": b"x"}, ": refusing member with an unsafe path '../../escape'",
                 id="unsafe-path"),
    pytest.param({TEST: None}, ": no member cifar-10-batches-bin/test_batch.bin",
                 id="missing"),
]


@pytest.mark.parametrize(("members", "says"), ODD_MEMBERS)
def test_cifar_refuses_odd_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   members: dict, says: str) -> None:
    d = _data_dir(tmp_path)
    merged = {k: v for k, v in (_official_members([TEST]) | members).items() if v is not None}
    archive = _trusted(_write_tar(d / CIFAR10_ARCHIVE, merged), monkeypatch)
    with pytest.raises(DataError) as exc:
        load_cifar10(str(d), "test")
    assert _one_line_error(exc).startswith(f"{archive}{says}")


def test_cifar_refuses_a_duplicate_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _data_dir(tmp_path)
    archive = d / CIFAR10_ARCHIVE
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for _ in range(2):
            info = tarfile.TarInfo(BATCH_MEMBER)
            info.size = N * 3073
            tar.addfile(info, io.BytesIO(_batch(TEST)))
    _trusted(archive, monkeypatch)
    with pytest.raises(DataError, match=re.escape(f"{archive}:{BATCH_MEMBER}: member appears "
                                                  "twice")):
        load_cifar10(str(d), "test")


@pytest.mark.parametrize("leftover", ["cifar-10-python.tar.gz", "cifar-10-batches-py",
                                      "data_batch_1", "cifar10/test_batch"])
def test_cifar_python_version_is_refused_helpfully(tmp_path: Path, leftover: str) -> None:
    d = _data_dir(tmp_path)
    path = d / leftover
    path.parent.mkdir(exist_ok=True)
    if leftover.endswith("-py"):
        path.mkdir()
        (path / "data_batch_1").write_bytes(b"\x80\x02}q\x00.")
    else:
        path.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(DataError) as exc:
        load_cifar10(str(d), "train")
    assert _one_line_error(exc) == (
        f"{path}: the CIFAR-10 python version (pickled batches) is not read, since "
        "unpickling can run code; use cifar-10-binary.tar.gz (the binary version, from "
        "https://www.cs.toronto.edu/~kriz/cifar.html) instead")


def test_cifar_old_pickled_download_in_the_cache_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an older ganforge downloaded the python version into the cache: the user never chose
    # it, so the binary archive is fetched next to it instead of an error
    old = cache_dir() / "cifar10" / "cifar-10-python.tar.gz"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old download")
    www = _data_dir(tmp_path, "www")
    _trusted(_write_tar(www / CIFAR10_ARCHIVE, _official_members([TEST])), monkeypatch)
    with serve_directory(www) as url:
        _assert_split(load_cifar10(None, "test", mirrors=[url]), [TEST])
    assert (old.parent / CIFAR10_ARCHIVE).is_file()


def test_cifar_offline_error_names_places(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_cifar10(None, "test")  # conftest points $GANFORGE_MIRRORS at a closed port
    message = _one_line_error(exc)
    assert str(cache_dir()) in message and "download failed" in message
    assert CIFAR10_ARCHIVE in message and "cifar.html" in message
    with pytest.raises(DataError, match="no such directory"):
        load_cifar10(str(tmp_path / "nowhere"), "test")
    with pytest.raises(GanforgeError, match="split"):
        load_cifar10(str(tmp_path), "valid")
