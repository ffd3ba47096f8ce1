"""Image folders and the 2-D point mixtures (CIFAR-10 has its own file, test_cifar.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data.folder import load_image_folder
from ganforge.data.mixtures2d import MIXTURES
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
