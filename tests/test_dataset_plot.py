"""Every dataset draws its own snapshot (``Dataset.plot``): the 1-D density plot with D's
curve, the 2-D scatter over fixed real points, and the image grid in G's value range."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge.data  # noqa: F401  (imports every Dataset subclass)
from ganforge import files, viz
from ganforge.data import points2d
from ganforge.data.base import Dataset, ImageDataset
from ganforge.data.points2d import points_2d
from ganforge.data.toy import Gaussian1D
from ganforge.errors import GanforgeError

TAB_RED = np.array([214, 39, 40])  # matplotlib's "tab:red", the colour of the D(x) curve


def _toy() -> Gaussian1D:
    return Gaussian1D(name="gaussian-1d", shape=(1,), means=[4.0], stds=[0.5])


def _images(channels: int = 1) -> ImageDataset:
    return ImageDataset(name="tiny", shape=(channels, 8, 8),
                        images=torch.zeros(6, channels, 8, 8, dtype=torch.uint8))


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB")).astype(int)


def _colours(a: np.ndarray) -> int:
    return len(np.unique(a.reshape(-1, 3), axis=0))


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_every_dataset_has_plot_with_the_one_signature() -> None:
    subs = _subclasses(Dataset)
    assert {Gaussian1D, points2d.Points2D, ImageDataset} <= set(subs)
    want = inspect.signature(Dataset.plot)
    for sub in subs:
        assert sub.plot is not Dataset.plot, f"{sub.__name__} does not draw itself"
        assert inspect.signature(sub.plot) == want, sub.__name__
    with pytest.raises(NotImplementedError):
        Dataset(name="abstract", shape=(1,)).plot(torch.zeros(2, 1), Path("x.png"), title="")


# --- 1-D toy ----------------------------------------------------------------------------------


def test_toy_calls_the_critic_across_plot_range_and_draws_its_curve(tmp_path: Path) -> None:
    ds = _toy()
    seen: list[torch.Tensor] = []

    def critic(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.full((x.shape[0],), 0.5)

    fake = torch.randn(256, 1, generator=torch.Generator().manual_seed(0)) + 3.0
    with_curve = tmp_path / "samples" / "with.png"
    ds.plot(fake, with_curve, title="iteration 7", critic=critic)
    assert len(seen) == 1
    x = seen[0]
    assert x.shape == (400, 1)
    lo, hi = ds.plot_range()
    assert x[0, 0].item() == pytest.approx(lo) and x[-1, 0].item() == pytest.approx(hi)
    assert bool((x[1:] > x[:-1]).all())

    without = tmp_path / "without.png"
    ds.plot(fake, without, title="iteration 7")
    a, b = _rgb(with_curve), _rgb(without)
    assert a.shape == b.shape == (400, 700, 3)
    assert _colours(b) > 20  # axes, text, the density and the histogram, not a blank canvas

    def red(img: np.ndarray) -> int:
        return int((np.abs(img - TAB_RED).sum(axis=2) < 30).sum())

    # the flat D(x) = 0.5 line spans the axis: hundreds of red pixels more than without it
    assert red(a) > red(b) + 300


def test_toy_critic_must_give_one_value_per_point(tmp_path: Path) -> None:
    with pytest.raises(GanforgeError, match="critic gave 1 values for 400 points"):
        _toy().plot(torch.zeros(8, 1), tmp_path / "p.png", title="",
                    critic=lambda x: torch.zeros(1))
    assert not any(tmp_path.iterdir())


# --- 2-D points -------------------------------------------------------------------------------


def test_points_2d_scatter_over_seeded_real_points(tmp_path: Path, monkeypatch) -> None:
    ds = points_2d("ring-8")
    fake = torch.randn(300, 2, generator=torch.Generator().manual_seed(1))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    ds.plot(fake, a, title="iteration 1")
    ds.plot(fake, b, title="iteration 1")
    img = _rgb(a)
    assert img.shape == (550, 500, 3) and _colours(img) > 20
    assert a.read_bytes() == b.read_bytes()  # the real points are the same every frame

    got = {}

    def spy(real, fake_np, centres, path, title=""):
        got.update(real=real, fake=fake_np, centres=centres, path=path, title=title)

    monkeypatch.setattr(points2d, "plot_points_2d", spy)
    ds.plot(fake, tmp_path / "c.png", title="iteration 9")
    want = ds.real_samples(300, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(got["real"], want.numpy())
    np.testing.assert_array_equal(got["fake"], fake.numpy())
    np.testing.assert_array_equal(got["centres"], ds.mixture.centres)
    assert got["title"] == "iteration 9" and got["path"] == tmp_path / "c.png"


# --- images -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0), (-3.0, 5.0)])
@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid_maps_value_range_to_black_and_white(tmp_path: Path, value_range,
                                                        channels: int) -> None:
    ds = _images(channels)
    lo, hi = value_range
    # the grid is nrow=2 images wide, scaled 2x: each cell is 16x16 px behind a 4 px border
    cell = (slice(4, 20), slice(4, 20))
    for value, want in [(lo, 0), (hi, 255), ((lo + hi) / 2, 128)]:
        path = tmp_path / f"{value}.png"
        ds.plot(torch.full((4, channels, 8, 8), value), path, title="", value_range=value_range,
                nrow=2)
        img = _rgb(path)
        assert img.shape == (2 * (2 * 10 + 2), 2 * (2 * 10 + 2), 3)
        assert np.abs(img[cell] - want).max() <= 1, (value, img[cell].min(), img[cell].max())
        assert img[0, 0].tolist() == [128] * 3  # the grey border around the cells


def test_image_grid_rows_follow_nrow(tmp_path: Path) -> None:
    ds = _images()
    fake = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ds.plot(fake, tmp_path / "row.png", title="", nrow=6)
    ds.plot(fake, tmp_path / "col.png", title="", nrow=1)
    assert _rgb(tmp_path / "row.png").shape[:2] == (24, 124)
    assert _rgb(tmp_path / "col.png").shape[:2] == (124, 24)
    assert _colours(_rgb(tmp_path / "row.png")) > 20


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(GanforgeError, match=r"tiny: plot\(\) expects .*\(n, 1, 8, 8\), got \(4, 3"):
        _images().plot(torch.zeros(4, 3, 8, 8), tmp_path / "p.png", title="")
    with pytest.raises(GanforgeError, match=r"value_range \(1.0, 1.0\)"):
        _images().plot(torch.zeros(4, 1, 8, 8), tmp_path / "p.png", title="",
                       value_range=(1.0, 1.0))
    with pytest.raises(GanforgeError, match=r"gaussian-1d: plot\(\) expects"):
        _toy().plot(torch.zeros(4, 2), tmp_path / "p.png", title="")
    assert not any(tmp_path.iterdir())
    assert viz.to_unit(torch.tensor([-1.0, 0.0, 1.0]), (-1.0, 1.0)).tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("kind", ["toy", "points", "images"])
def test_a_failed_write_leaves_the_old_picture_and_no_partial_file(tmp_path: Path, monkeypatch,
                                                                   kind: str) -> None:
    ds, fake = {"toy": (_toy(), torch.zeros(16, 1)),
                "points": (points_2d("grid-25"), torch.zeros(16, 2)),
                "images": (_images(), torch.zeros(4, 1, 8, 8))}[kind]
    path = tmp_path / "step-0000010.png"
    path.write_bytes(b"the previous picture")

    def full_disk(fd: int) -> None:  # the bytes are written, making them durable fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ds.plot(fake, path, title="")
    assert path.read_bytes() == b"the previous picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
