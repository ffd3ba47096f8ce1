"""Every preset trains (tiny data, tiny widths) on the CPU; conditional and 2-D runs work."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
import ganforge.checkpoint
from ganforge.presets import PRESETS


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    """Two classes of small random images: 28x28 grey-ish and 32x32 colour, 24 files each."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for size, mode in ((28, "L"), (32, "RGB")):
        for cls in ("a", "b"):
            d = root / f"{size}" / cls
            d.mkdir(parents=True)
            for i in range(12):
                shape = (size, size) if mode == "L" else (size, size, 3)
                arr = (rng.random(shape) * (80 if cls == "a" else 255)).astype(np.uint8)
                Image.fromarray(arr, mode).save(d / f"{i}.png")
    return root


def _tiny_overrides(name, cfg, folders):
    kw = dict(steps=200, log_every=50, sample_every=100, ckpt_every=100, batch_size=8,
              progress=False)
    if cfg.model in ("dcgan", "resnet"):
        size = 32 if cfg.dataset == "cifar10" else 28
        kw.update(dataset="image-folder", data_dir=str(folders / str(size)), image_size=size,
                  channels=3 if size == 32 else 1, g_hidden=16 if cfg.model == "resnet" else 8,
                  d_hidden=16 if cfg.model == "resnet" else 8, n_samples=8)
    elif cfg.dataset in ("mnist", "fashion-mnist"):
        kw.update(dataset="mnist-sample", g_hidden=16, d_hidden=16)
    elif cfg.model == "mlp-pacgan":
        kw.update(g_hidden=16, d_hidden=16, n_samples=64)
    kw["batch_size"] *= cfg.pac  # whole packs (PacGAN presets)
    if cfg.mbstd_group:
        kw["batch_size"] *= cfg.mbstd_group
    return kw


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_trains_200_steps_with_finite_losses(name, tiny_folders, tmp_path):
    cfg = PRESETS.get(name)()
    run = ganforge.train(preset=name, out=str(tmp_path / name),
                         **_tiny_overrides(name, cfg, tiny_folders))
    assert run.metrics[-1]["step"] == 200
    for row in run.metrics:  # (training-health warnings are rows of text: skipped)
        assert "warning" in row or all(math.isfinite(v) for v in row.values()), row
    assert (run.dir / "samples" / "step-0000200.png").exists()
    g = ganforge.load(run.dir)
    x = g.sample(4, seed=0)
    assert torch.isfinite(x).all()


def test_conditional_grid_has_one_row_per_class_and_sampling_feeds_the_label(tiny_folders,
                                                                           tmp_path):
    run = ganforge.train(preset="dcgan-mnist-conditional", dataset="image-folder",
                         data_dir=str(tiny_folders / "28"), image_size=28, channels=1,
                         g_hidden=8, d_hidden=8, steps=4, batch_size=8, n_samples=8,
                         out=str(tmp_path / "c"), progress=False)
    used = json.loads((run.dir / "config.json").read_text())["data_used"]
    assert used["classes"] == ["a", "b"]
    grid = Image.open(run.dir / "samples" / "step-0000004.png")
    # 2 classes x 4 per row, tiles of 28 + 2 px padding, scaled x2
    assert grid.size == (2 * (4 * 30 + 2), 2 * (2 * 30 + 2))

    g = ganforge.load(run.dir)
    seen = []
    hook = g.G.register_forward_pre_hook(lambda m, args: seen.append(args[1].clone()))
    g.sample(5, seed=0, label=1)
    hook.remove()
    assert seen and torch.equal(seen[0], torch.ones(5, dtype=torch.long))
    # a different class gives different images from the same noise
    assert not torch.equal(g.sample(5, seed=0, label=0), g.sample(5, seed=0, label=1))
    with pytest.raises(ganforge.GanforgeError, match="expected a class in 0..1"):
        g.sample(2, label=2)


def test_sample_cli_class_flag(tiny_folders, tmp_path):
    from ganforge.cli import main

    run = ganforge.train(preset="dcgan-mnist-conditional", dataset="image-folder",
                         data_dir=str(tiny_folders / "28"), image_size=28, channels=1,
                         g_hidden=8, d_hidden=8, steps=2, batch_size=8, n_samples=8,
                         out=str(tmp_path / "c"), progress=False)
    out = tmp_path / "one.npy"
    assert main(["sample", str(run.dir), "--class", "1", "--n", "3", "--npy",
                 "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (3, 1, 28, 28) and 0 <= x.min() and x.max() <= 1  # mapped from tanh


def test_ema_generator_is_saved_and_used_for_sampling(tmp_path):
    run = ganforge.train(dataset="mnist-sample", steps=30, ema=10.0, out=str(tmp_path / "e"),
                         progress=False)
    g = ganforge.load(run.dir)
    assert g.ema
    live = ganforge.checkpoint.load(run.final_checkpoint)
    w_ema, w_live = live["G_ema"]["net.0.weight"], live["G"]["net.0.weight"]
    assert not torch.equal(w_ema, w_live)
    assert torch.equal(g.G.net[0].weight.detach(), w_ema)


def test_points_2d_run_writes_scatter_snapshots(tmp_path):
    run = ganforge.train(preset="ring-8", steps=20, sample_every=10, log_every=10,
                         out=str(tmp_path / "r"), progress=False)
    frames = sorted((run.dir / "samples").glob("step-*.png"))
    assert [f.name for f in frames] == ["step-0000000.png", "step-0000010.png",
                                        "step-0000020.png"]
    assert Image.open(run.dir / "progress.gif").n_frames == 3
