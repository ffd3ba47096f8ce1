"""Pictures a person wants to open: sample grids, the progress GIF, loss curves, 1-D plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import GanforgeError
from .files import save_figure, save_image


def grid_image(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """(N, C, H, W) floats in [0, 1] -> one PIL image, ``nrow`` images per row."""
    x = images.detach().float().cpu().clamp(0, 1)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    n, c, h, w = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    canvas = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad) * 0.5
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top:top + h, left:left + w] = x[i]
    arr = (canvas.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")


def to_unit(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Values in ``value_range`` (G's output range, e.g. (-1, 1) for tanh) mapped to [0, 1]."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise GanforgeError(f"value_range {value_range}: expected (low, high) with low < high")
    return (x - lo) / (hi - lo)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None,
              scale: int = 2) -> Path:
    img = grid_image(images, nrow)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return save_image(img, path)


def save_gif(frames: Sequence[str | Path], path: str | Path,
             ms_per_frame: int = 300) -> Path | None:
    """The snapshots in order as an animated GIF; the last frame is held a little longer."""
    if not frames:
        return None
    imgs = [Image.open(f).convert("P", palette=Image.ADAPTIVE) for f in frames]
    durations = [ms_per_frame] * (len(imgs) - 1) + [ms_per_frame * 5]
    return save_image(imgs[0], path, "GIF", save_all=True, append_images=imgs[1:],
                      duration=durations, loop=0)


def subplots(*args: Any, figsize: tuple[float, float] | None = None, dpi: float | None = None,
             **kwargs: Any) -> tuple[Any, Any]:
    """pyplot's ``subplots`` without pyplot: the figure is drawn by the Agg renderer on save
    and freed with its last reference, so nothing needs a display, nothing needs closing, and
    a notebook's own backend is left alone."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(*args, **kwargs)


def plot_losses(rows: Sequence[dict], path: str | Path, title: str = "") -> Path | None:
    """D and G loss against step, from metrics.jsonl rows."""
    rows = [r for r in rows if "d_loss" in r]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    fig, ax = subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, [r["d_loss"] for r in rows], label="D loss")
    ax.plot(steps, [r["g_loss"] for r in rows], label="G loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title or "losses")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_density_1d(xs: np.ndarray, real_pdf: np.ndarray, fake: np.ndarray,
                    d_of_x: np.ndarray | None, path: str | Path, title: str = "") -> Path:
    """Real density, G's density (histogram) and D(x) (left out when None), on one x axis."""
    fig, ax = subplots(figsize=(7, 4), dpi=100)
    ax.plot(xs, real_pdf, color="tab:blue", label="real density")
    inside = fake[(fake >= xs[0]) & (fake <= xs[-1])]
    if inside.size:  # G may start outside the axis entirely: then there is nothing to draw
        ax.hist(inside, bins=80, range=(xs[0], xs[-1]), density=True, alpha=0.45,
                color="tab:green", label=f"G's density ({inside.size / fake.size:.0%} shown)")
    if d_of_x is not None:
        ax.plot(xs, d_of_x, color="tab:red", label="D(x)")
    top = max(1.05, float(real_pdf.max()) * 1.3)
    ax.set_ylim(0, top)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_xlabel("x")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)
