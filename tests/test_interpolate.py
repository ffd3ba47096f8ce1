"""Latent walks: slerp/lerp, the paths per prior, the grid, the GIF, toy plots and the CLI."""

from __future__ import annotations

import pytest
import torch
from conftest import GENERATOR_RUNS
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.interpolate import (
    latent_walk,
    lerp,
    resolve_mode,
    slerp,
    walk_latents,
    write_walk,
)

RUNS = GENERATOR_RUNS


@pytest.fixture(scope="module")
def runs(generator_runs: dict[str, str]) -> dict[str, str]:
    return generator_runs


def tile(side: int, count: int) -> int:
    """Pixels along one side of a grid of ``count`` tiles (2 px padding, scaled x2)."""
    return 2 * (count * (side + 2) + 2)


# --- slerp and lerp ------------------------------------------------------------------------------
def equal_norm_pair(n: int = 6, d: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    return a, b * (a.norm(dim=1, keepdim=True) / b.norm(dim=1, keepdim=True))


def test_slerp_ends_are_the_inputs_and_equal_norms_are_kept():
    a, b = equal_norm_pair()
    t = torch.linspace(0, 1, 9)[None, :, None]
    path = slerp(a[:, None], b[:, None], t)
    assert path.shape == (6, 9, 64) and path.dtype == a.dtype
    assert torch.equal(path[:, 0], a) and torch.equal(path[:, -1], b)
    norms = path.norm(dim=-1)
    torch.testing.assert_close(norms, a.norm(dim=1, keepdim=True).expand(6, 9))
    # the angle from a grows linearly with t: a walk at constant speed along the arc
    cos = torch.nn.functional.cosine_similarity(path.double(), a[:, None].double(), dim=-1)
    angle = cos.clamp(-1, 1).acos()
    torch.testing.assert_close(angle, angle[:, -1:] * t[..., 0].double(), atol=1e-5, rtol=0)
    # the check has teeth: a straight line through the same ends shrinks in the middle
    straight = lerp(a[:, None], b[:, None], t)
    assert torch.equal(straight[:, 0], a) and torch.equal(straight[:, -1], b)
    assert (straight.norm(dim=-1)[:, 4] < 0.9 * norms[:, 4]).all()


def test_slerp_of_parallel_antiparallel_and_zero_vectors_is_finite():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    for b in (a * 2, a * (1 + 1e-7), -a, torch.zeros_like(a)):
        for t in (0.0, 0.3, 1.0):
            assert torch.isfinite(slerp(a, b, t)).all()
    # parallel ends have no arc between them: the path is the straight line
    torch.testing.assert_close(slerp(a, a * 2, 0.3), lerp(a, a * 2, 0.3))
    assert torch.equal(slerp(a, -a, 1.0), -a) and torch.equal(slerp(a, a * 2, 0.0), a)


def test_auto_mode_follows_the_prior_and_bad_modes_are_refused():
    assert resolve_mode("auto", "uniform") == "linear"
    assert resolve_mode("auto", "normal") == "slerp"
    assert resolve_mode("linear", "normal") == "linear"
    with pytest.raises(GanforgeError, match="--mode: expected auto, linear or slerp"):
        resolve_mode("cubic", "normal")


def test_uniform_walk_is_straight_and_stays_in_the_box():
    z = walk_latents("uniform", 100, 16, 7, seed=3)
    assert z.shape == (16, 7, 100)
    assert z.abs().max() <= 1
    a, b = z[:, 0], z[:, -1]
    torch.testing.assert_close(z[:, 3], (a + b) / 2)  # the midpoint of a straight line
    assert torch.equal(z, walk_latents("uniform", 100, 16, 7, seed=3))  # seeded
    assert not torch.equal(z, walk_latents("uniform", 100, 16, 7, seed=4))
    # slerp would leave the box: its weights sum to more than one in the middle
    assert slerp(a, b, 0.5).abs().max() > 1


def test_normal_walk_stays_on_the_shell():
    z = walk_latents("normal", 256, 32, 9, seed=0)
    ends = z[:, [0, -1]].norm(dim=-1).min(dim=1).values
    assert (z[:, 4].norm(dim=-1) > 0.97 * ends).all()  # slerp: no dip through the middle
    straight = walk_latents("normal", 256, 32, 9, seed=0, mode="linear")
    assert torch.equal(straight[:, [0, -1]], z[:, [0, -1]])  # same ends, other path
    assert (straight[:, 4].norm(dim=-1) < 0.8 * ends).all()


@pytest.mark.parametrize("n, steps, message", [
    (0, 5, "--n must be positive"), (2, 1, "--steps must be at least 2")])
def test_walk_sizes_are_checked(n, steps, message):
    with pytest.raises(GanforgeError, match=message):
        walk_latents("normal", 8, n, steps)


# --- pictures from real runs ---------------------------------------------------------------------
def test_png_grid_has_a_row_per_walk_and_a_column_per_step(runs, tmp_path):
    g = ganforge.load(runs["mlp"])
    out = write_walk(g, tmp_path / "walk.png", n=3, steps=5, seed=1)
    assert Image.open(out).size == (tile(28, 5), tile(28, 3))
    x = latent_walk(g, n=3, steps=5, seed=1)
    assert x.shape == (3, 5, 1, 28, 28)
    z = walk_latents("uniform", g.z_dim, 3, 5, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(x[:, 0], g(z[:, 0]))  # column 0 is G at the first latents
        torch.testing.assert_close(x[:, -1], g(z[:, -1]))
    assert not torch.equal(x[:, 0], x[:, -1])


def test_gif_has_a_frame_per_step(runs, tmp_path):
    g = ganforge.load(runs["cond"])
    assert g.config.prior == "normal"
    out = write_walk(g, tmp_path / "walk.gif", n=4, steps=6, seed=0)
    gif = Image.open(out)
    assert gif.n_frames == 6
    assert gif.size == (tile(28, 2), tile(28, 2))  # each frame: the 4 walks as a 2x2 grid


def test_conditional_rows_keep_their_class(runs):
    g = ganforge.load(runs["cond"])
    assert g.num_classes == 10 and g.ema
    z = walk_latents("normal", g.z_dim, 12, 3, seed=5).flatten(0, 1)
    with torch.no_grad():
        by_row = g(z, (torch.arange(12) % 10).repeat_interleave(3)).reshape(12, 3, 1, 28, 28)
        all_three = g(z, torch.full((36,), 3)).reshape(12, 3, 1, 28, 28)
    torch.testing.assert_close(latent_walk(g, 12, 3, seed=5), by_row)
    torch.testing.assert_close(latent_walk(g, 12, 3, seed=5, label=3), all_three)
    with pytest.raises(GanforgeError, match=r"--class 10: expected a class in 0\.\.9"):
        latent_walk(g, 2, 3, label=10)
    with pytest.raises(GanforgeError, match="not conditional"):
        latent_walk(ganforge.load(runs["mlp"]), 2, 3, label=1)


def test_toy_walk_is_a_plot(runs, tmp_path):
    g = ganforge.load(runs["toy"])
    x = latent_walk(g, 3, 11, seed=0)
    assert x.shape == (3, 11, 1)
    out = write_walk(g, tmp_path / "toy.png", n=3, steps=11, seed=0)
    assert Image.open(out).size == (700, 400)
    with pytest.raises(GanforgeError, match="a walk of vector outputs is a plot"):
        write_walk(g, tmp_path / "toy.gif", n=3, steps=4)


# --- the command ---------------------------------------------------------------------------------
def test_cli_interpolate_writes_png_and_gif(runs, tmp_path, capsys):
    png, gif = tmp_path / "w.png", tmp_path / "w.gif"
    assert main(["interpolate", runs["cond"], "--n", "3", "--steps", "4", "--out", str(png),
                 "--seed", "2", "--class", "7"]) == 0
    assert "wrote 3 slerp latent walks of 4 steps" in capsys.readouterr().out
    assert Image.open(png).size == (tile(28, 4), tile(28, 3))
    assert main(["interpolate", runs["cond"], "--n", "2", "--steps", "3", "--out", str(gif),
                 "--mode", "linear"]) == 0
    assert "linear" in capsys.readouterr().out
    assert Image.open(gif).n_frames == 3


@pytest.mark.parametrize("args, message", [
    (["--mode", "cubic"], "--mode: expected auto, linear or slerp, got 'cubic'"),
    (["--steps", "1"], "--steps must be at least 2"),
    (["--class", "1"], "not conditional"),
    (["--out", "walk.jpg"], "expected a .png or .gif file"),
])
def test_cli_interpolate_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys, args,
                                                         message):
    argv = ["interpolate", runs["mlp"], "--out", str(tmp_path / "w.png"), *args]
    if "--out" in args:
        argv = ["interpolate", runs["mlp"], *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("ganforge: error:")


def test_cli_interpolate_missing_run(tmp_path, capsys):
    assert main(["interpolate", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
