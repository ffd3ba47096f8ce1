"""Image folders, CIFAR-10 (built, served and downloaded here) and the 2-D point mixtures."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import serve_directory
from PIL import Image

from ganforge.data import cifar
from ganforge.data.cifar import CIFAR10_ARCHIVE, load_cifar10
from ganforge.data.folder import load_image_folder
from ganforge.data.mixtures2d import MIXTURES
from ganforge.data.mnist import cache_dir
from ganforge.data.points2d import Points2D, plot_limits, plot_points_2d, points_2d
from ganforge.errors import DataError, GanforgeError

RED, GREEN, BLUE, CYAN = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255)
WHITE, BLACK = (255, 255, 255), (0, 0, 0)

# --- image folder --------------------------------------------------------------------------


def _bands(size: tuple[int, int], outer: tuple[tuple[int, int, int], ...],
           centre: tuple[int, int, int], horizontal: bool) -> Image.Image:
    """outer[0] | centre | outer[1] along the long side; the central square (plus a margin
    wider than the resampling filter reaches) is entirely ``centre``."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = centre
    long_side, short = (w, h) if horizontal else (h, w)
    band = (long_side - short) // 2 - short // 2  # leaves short/2 of centre colour around
    if horizontal:
        a[:, :band], a[:, w - band:] = outer[0], outer[1]
    else:
        a[:band], a[h - band:] = outer[0], outer[1]
    return Image.fromarray(a)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "sub").mkdir(parents=True)
    # wide PNG: red | green | blue, the green middle cyan in its top half (which tells rows
    # from columns); red and blue stay clear of the central square by more than LANCZOS reaches
    px = np.asarray(_bands((100, 20), (RED, BLUE), GREEN, horizontal=True)).copy()
    px[:10, 30:70] = CYAN
    Image.fromarray(px).save(root / "cats" / "wide.png")
    Image.new("RGB", (5, 7), (10, 20, 200)).save(root / "cats" / "small.png")  # enlarged
    # tall JPEG: black / white / black, centred white square
    _bands((24, 72), (BLACK, BLACK), WHITE, horizontal=False).save(
        root / "dogs" / "tall.jpg", quality=95)
    Image.new("RGB", (30, 30), (200, 100, 0)).save(root / "dogs" / "sub" / "deep.JPEG",
                                                   quality=95)
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    (root / "readme.txt").write_text("not an image, ignored\n")
    return root


# sorted relative paths: cats/small.png, cats/wide.png, dogs/broken.png (skipped),
# dogs/sub/deep.JPEG, dogs/tall.jpg
SMALL, WIDE, DEEP, TALL = range(4)


def test_folder_shapes_crop_and_labels(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = load_image_folder(tree, size=8, channels=3, labels=True)
    x = ds.images
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 8, 8) and ds.shape == (3, 8, 8)
    assert ds.labels.tolist() == [0, 0, 1, 1] and ds.labels.dtype == torch.int64
    assert ds.info["classes"] == ["cats", "dogs"]
    assert ds.info == {"dataset": "image-folder", "root": str(tree), "n": 4, "size": 8,
                       "channels": 3, "resample": "lanczos", "skipped": 1,
                       "classes": ["cats", "dogs"]}

    wide = x[WIDE].int()
    # the kept centre is green: the red and blue ends are cropped away, not squeezed in
    assert (wide[1] >= 250).all() and (wide[0] <= 3).all()
    # cyan on top, green at the bottom (a transposed crop would put cyan on the left)
    assert (wide[2, 0] >= 250).all() and (wide[2, 7] <= 3).all()
    tall = x[TALL].int()
    assert (tall >= 240).all()  # only the white middle; the black ends are gone
    assert (x[SMALL].int() - torch.tensor([10, 20, 200]).view(3, 1, 1)).abs().max() <= 1
    assert (x[DEEP].int() - torch.tensor([200, 100, 0]).view(3, 1, 1)).abs().max() <= 6

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "skipped 1 unreadable image" in err and str(tree / "dogs" / "broken.png") in err


def test_folder_grey_unlabelled_and_quiet(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = load_image_folder(tree, size=8, channels=1, quiet=True)
    assert ds.images.shape == (4, 1, 8, 8) and ds.labels is None and ds.shape == (1, 8, 8)
    assert "classes" not in ds.info
    # ITU-R 601 luma, .299 R + .587 G + .114 B: (10, 20, 200) -> 38 (plain mean: 77),
    # pure green -> 150 (plain mean: 85)
    assert ((ds.images[SMALL].int() - 38).abs() <= 1).all()
    assert ((ds.images[WIDE, 0, 7].int() - 150).abs() <= 2).all()
    assert capsys.readouterr().err == ""


def test_folder_strict_names_the_bad_file(tree: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(tree / "dogs" / "broken.png"))):
        load_image_folder(tree, size=8, channels=3, strict=True)


def test_folder_errors(tmp_path: Path, tree: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "missing"))):
        load_image_folder(tmp_path / "missing", size=8, channels=3)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "empty")) + ".*no .png"):
        load_image_folder(tmp_path / "empty", size=8, channels=3)
    Image.new("RGB", (4, 4)).save(tree / "loose.png")
    with pytest.raises(DataError, match=re.escape(str(tree / "loose.png"))):
        load_image_folder(tree, size=8, channels=3, labels=True)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of its 1 image files"):
        load_image_folder(bad, size=8, channels=3, quiet=True)
    with pytest.raises(GanforgeError, match="channels"):
        load_image_folder(tree, size=8, channels=4)


# --- CIFAR-10 -------------------------------------------------------------------------------


def _images(n: int, seed: int) -> np.ndarray:
    """(n, 32, 32, 3) uint8 pictures, as a camera would give them."""
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _official_rows(hwc: np.ndarray) -> np.ndarray:
    # the layout as the CIFAR page describes it: 1024 red, 1024 green, 1024 blue values,
    # each plane row-major
    return np.stack([np.concatenate([im[:, :, 0].ravel(), im[:, :, 1].ravel(),
                                     im[:, :, 2].ravel()]) for im in hwc])


def _batch(n: int, seed: int) -> dict:
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(v) for v in np.random.default_rng(seed + 100).integers(0, 10, n)],
        b"data": _official_rows(_images(n, seed)),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


BATCH_SIZES = {f"data_batch_{i}": 3 for i in range(1, 6)} | {"test_batch": 4}
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def _batches() -> dict[str, dict]:
    return {name: _batch(n, seed) for seed, (name, n) in enumerate(BATCH_SIZES.items())}


def _write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name if name.startswith(("/", "..")) else
                                   f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _archive(path: Path, batches: dict[str, dict], **raw: bytes) -> Path:
    # a meta file and readme like the real archive's, which the loader must skip
    members = {"batches.meta": pickle.dumps({b"label_names": [b"airplane"]}, protocol=2),
               "readme.html": b"<html></html>"}
    members |= {name: pickle.dumps(b, protocol=2) for name, b in batches.items()} | raw
    return _write_archive(path, members)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _expected(batches: dict[str, dict], names: list[str]) -> tuple[torch.Tensor, list[int]]:
    seeds = {name: seed for seed, name in enumerate(BATCH_SIZES)}
    x = np.concatenate([_images(BATCH_SIZES[n], seeds[n]) for n in names]).transpose(0, 3, 1, 2)
    return torch.from_numpy(x.copy()), [y for n in names for y in batches[n][b"labels"]]


def test_cifar_download_splits_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    www = tmp_path / "www"
    www.mkdir()
    batches = _batches()
    archive = _archive(www / CIFAR10_ARCHIVE, batches)
    monkeypatch.setitem(cifar.CIFAR10_FILES, CIFAR10_ARCHIVE, _md5(archive))

    with serve_directory(www) as url:
        train = load_cifar10(None, "train", mirrors=[url])
        assert f"downloading {CIFAR10_ARCHIVE} from {url}" in capsys.readouterr().err
    cached = cache_dir() / "cifar10" / CIFAR10_ARCHIVE
    assert cached.read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in cached.parent.iterdir()) == [CIFAR10_ARCHIVE]

    x, y = _expected(batches, TRAIN)
    assert train.images.dtype == torch.uint8 and train.images.shape == (15, 3, 32, 32)
    assert torch.equal(train.images, x)
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == y
    assert train.shape == (3, 32, 32) and train.info["n"] == 15
    assert train.info["split"] == "train" and train.info["files"] == [str(cached)]
    assert train.info["classes"][0] == "airplane" and len(train.info["classes"]) == 10

    # the server is gone: the cached archive is used, with the mirrors argument or without
    test = load_cifar10(None, "test", mirrors=[url])
    x, y = _expected(batches, ["test_batch"])
    assert torch.equal(test.images, x) and test.labels.tolist() == y
    everything = load_cifar10(None, "all")
    x, y = _expected(batches, [*TRAIN, "test_batch"])
    assert everything.images.shape[0] == 19 and torch.equal(everything.images, x)
    assert everything.labels.tolist() == y
    assert "downloading" not in capsys.readouterr().err


def test_cifar_bad_md5_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    www = tmp_path / "www"
    www.mkdir()
    _archive(www / CIFAR10_ARCHIVE, _batches())
    monkeypatch.setitem(cifar.CIFAR10_FILES, CIFAR10_ARCHIVE, "0" * 32)
    with serve_directory(www) as url, pytest.raises(DataError, match="MD5 mismatch"):
        load_cifar10(None, "train", mirrors=[url])
    assert [p for p in cache_dir().rglob("*") if p.is_file()] == []


def test_cifar_offline_error_names_places(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(cache_dir())) + ".*download failed"):
        load_cifar10(None, "test")  # conftest points $GANFORGE_MIRRORS at a closed port
    with pytest.raises(DataError, match="no such directory"):
        load_cifar10(str(tmp_path / "nowhere"), "test")
    with pytest.raises(GanforgeError, match="split"):
        load_cifar10(str(tmp_path), "valid")


class _Py2Pickler(pickle._Pickler):
    """Writes every str and bytes as a Python 2 ``str`` (BINSTRING), like the real batches,
    which a Python 3 reader gets back as bytes with encoding="bytes"."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("ascii") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def _py2_dumps(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1 (which wrote the real batches) names its module numpy.core, not numpy._core
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def test_cifar_python2_pickles_and_extracted_folder(tmp_path: Path) -> None:
    batches = _batches()
    payload = _py2_dumps(batches["test_batch"])
    assert b"_codecs" not in payload and b"numpy.core.multiarray" in payload
    d = tmp_path / "data"
    d.mkdir()
    _write_archive(d / CIFAR10_ARCHIVE, {"test_batch": payload})
    ds = load_cifar10(str(d), "test")
    x, y = _expected(batches, ["test_batch"])
    assert torch.equal(ds.images, x) and ds.labels.tolist() == y

    # an extracted cifar-10-batches-py folder is read in place of the archive
    ex = tmp_path / "extracted"
    (ex / "cifar-10-batches-py").mkdir(parents=True)
    for name, batch in batches.items():
        (ex / "cifar-10-batches-py" / name).write_bytes(pickle.dumps(batch, protocol=2))
    folder = load_cifar10(str(ex), "all")
    x, y = _expected(batches, [*TRAIN, "test_batch"])
    assert torch.equal(folder.images, x) and folder.labels.tolist() == y
    assert folder.info["files"][0] == str(ex / "cifar-10-batches-py" / "data_batch_1")


class _Exploit:
    """Unpickling this runs code, as any pickle may: the reason batches are not trusted."""

    def __init__(self, call: object, arg: str):
        self.call, self.arg = call, arg

    def __reduce__(self) -> tuple:
        return self.call, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "exec"])
def test_cifar_refuses_code_in_pickles(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    exploit = (_Exploit(os.system, f"touch {marker}") if kind == "os.system"
               else _Exploit(exec, f"open({str(marker)!r}, 'w').close()"))
    evil = pickle.dumps({b"data": exploit, b"labels": [1]}, protocol=2)
    # control: a plain pickle.loads really would run it
    pickle.loads(evil, encoding="bytes")
    assert marker.exists()
    marker.unlink()

    d = tmp_path / "data"
    d.mkdir()
    archive = _archive(d / CIFAR10_ARCHIVE, _batches(), test_batch=evil)
    refused = "system" if kind == "os.system" else "exec"
    with pytest.raises(DataError, match=re.escape(f"{archive}:cifar-10-batches-py/test_batch")
                       + f".*refused.*{refused}"):
        load_cifar10(str(d), "test")
    assert not marker.exists()


def test_cifar_refuses_object_arrays_and_bad_members(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    objects = {b"data": np.array([1, None], dtype=object), b"labels": [0, 1]}
    _archive(d / CIFAR10_ARCHIVE, {}, test_batch=pickle.dumps(objects, protocol=2))
    with pytest.raises(DataError, match="refused.*numpy.dtype.*plain numeric"):
        load_cifar10(str(d), "test")

    wrong = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    _archive(d / CIFAR10_ARCHIVE, {}, test_batch=pickle.dumps(wrong, protocol=2))
    with pytest.raises(DataError, match=r"expected data as uint8 \(n, 3072\)"):
        load_cifar10(str(d), "test")

    _write_archive(d / CIFAR10_ARCHIVE, {"../../escape": b"x"})
    with pytest.raises(DataError, match="unsafe path '../../escape'"):
        load_cifar10(str(d), "test")

    _archive(d / CIFAR10_ARCHIVE, {"data_batch_1": _batch(2, 0)})
    with pytest.raises(DataError, match="no member cifar-10-batches-py/test_batch"):
        load_cifar10(str(d), "test")


def test_cifar_truncated_archive(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    archive = _archive(d / CIFAR10_ARCHIVE, _batches())
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    with pytest.raises(DataError, match=re.escape(str(archive)) + ": corrupt or truncated"):
        load_cifar10(str(d), "train")


# --- 2-D points ------------------------------------------------------------------------------


def test_ring8_samples() -> None:
    ds = points_2d("ring-8")
    assert ds.shape == (2,)
    assert ds.info == {"dataset": "ring-8", "mixture": "ring-8", "centres": 8, "std": 0.02}
    g = torch.Generator().manual_seed(0)
    x = ds.sampler(4000, g).next()
    assert x.shape == (4000, 2) and x.dtype == torch.float32
    assert x.mean(0).abs().max() < 0.1
    assert ((x.norm(dim=1) - 2.0).abs() < 5 * 0.02).all()
    centres = torch.tensor(MIXTURES["ring-8"].centres, dtype=torch.float32)
    dist = torch.cdist(x, centres)
    assert (dist.min(1).values < 5 * 0.02).all()
    counts = torch.bincount(dist.argmin(1), minlength=8)
    assert (counts > 380).all()  # 500 expected per mode, sd about 21


def test_grid25_samples_and_determinism() -> None:
    ds = Points2D(name="grid-25", shape=(2,))
    assert ds.info["centres"] == 25 and ds.info["std"] == 0.05
    x = ds.real_samples(5000, torch.Generator().manual_seed(1))
    nearest = (x / 2).round().clamp(-2, 2) * 2
    assert ((x - nearest).norm(dim=1) < 5 * 0.05).all()
    assert len({tuple(p) for p in nearest.tolist()}) == 25

    a = ds.sampler(64, torch.Generator().manual_seed(7))
    b = ds.sampler(64, torch.Generator().manual_seed(7))
    first = a.next()
    assert torch.equal(first, b.next()) and torch.equal(a.next(), b.next())
    assert not torch.equal(first, a.next())
    # the very draws of the mixture's own sampler, so data and metrics agree on a seed
    assert torch.equal(ds.draw(64, torch.Generator().manual_seed(7)),
                       MIXTURES["grid-25"].sample(64, torch.Generator().manual_seed(7)))


def test_points_bad_names() -> None:
    with pytest.raises(GanforgeError, match="unknown 2-D mixture"):
        points_2d("ring-9")
    with pytest.raises(GanforgeError, match=r"shape \(2,\)"):
        Points2D(name="ring-8", shape=(1,))


def test_plot_points_2d(tmp_path: Path) -> None:
    ring = MIXTURES["ring-8"]
    g = torch.Generator().manual_seed(0)
    real = ring.sample(500, g).numpy()
    fake = np.array([[0.0, 0.0], [50.0, 50.0]])  # one point far off the axes
    a = plot_points_2d(real, fake, ring.centres, tmp_path / "frames" / "a.png", title="step 1")
    b = plot_points_2d(real, real * 0.5, ring.centres, tmp_path / "frames" / "b.png",
                       title="a much longer title, step 1000")
    with Image.open(a) as ia, Image.open(b) as ib:
        assert ia.format == "PNG" and ia.size == ib.size == (500, 550)
    x0, x1, y0, y1 = plot_limits(ring.centres)
    assert x1 - x0 == pytest.approx(y1 - y0)
    assert x0 < -2 and x1 > 2 and y0 < -2 and y1 > 2 and x1 - x0 < 10
