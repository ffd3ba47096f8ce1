"""Latent walks: G along paths between random latents, as a grid, an animation or a plot.

The path follows the prior. Uniform noise fills the box [-1, 1]^d, which is convex, so the
straight line between two draws stays inside it (slerp would leave it: its weights sum to
more than 1). Gaussian noise in d dimensions lives on a thin shell of radius ~sqrt(d); the
straight line cuts through the inside of the shell (its midpoint has norm ~sqrt(d/2)), where
G never saw a z, while the great-circle arc (slerp, White 2016) stays on it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from . import viz
from .errors import GanforgeError
from .files import save_figure
from .generator import TrainedGenerator
from .priors import PRIORS

MODES = ("auto", "linear", "slerp")
# "auto" per prior; a prior not listed walks straight lines, the one path that never leaves
# a convex support.
AUTO_MODE = {"uniform": "linear", "normal": "slerp"}
IMAGE_SUFFIXES = (".png", ".gif")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
CHUNK = 256  # images per G call: bounds memory for long walks of big images


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """``a + t (b - a)``; ``t`` broadcasts against ``a`` and ``b`` (give it a last dim of 1).
    Exactly ``a`` at t = 0 and ``b`` at t = 1."""
    return torch.lerp(a, b, torch.as_tensor(t, dtype=a.dtype, device=a.device))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor,
          eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation along the arc from ``a`` to ``b`` (vectors in the last dim);
    ``t`` broadcasts as in :func:`lerp`. Norms are interpolated smoothly, and kept exactly
    when ``a`` and ``b`` have equal norms. (Anti)parallel endpoints have no unique arc: there
    it falls back to the straight line."""
    dtype = a.dtype
    a, b = a.double(), b.double()  # acos near +-1 loses digits fast in float32
    t = torch.as_tensor(t, dtype=torch.float64, device=a.device)
    unit_a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    unit_b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    omega = torch.acos((unit_a * unit_b).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    near = sin.abs() < eps
    safe = torch.where(near, torch.ones_like(sin), sin)
    # sin((1 - t) omega) / sin(omega) is exactly 1 at t = 0 (same number over itself), so the
    # endpoints come back bit for bit
    wa = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / safe)
    wb = torch.where(near, t, torch.sin(t * omega) / safe)
    return (wa * a + wb * b).to(dtype)


def resolve_mode(mode: str, prior: str) -> str:
    """``linear`` or ``slerp``: ``auto`` picks the path that suits the prior."""
    if mode not in MODES:
        raise GanforgeError(f"--mode: expected auto, linear or slerp, got {mode!r}")
    return AUTO_MODE.get(prior, "linear") if mode == "auto" else mode


def walk_latents(prior: str, z_dim: int, n: int, steps: int, seed: int | None = None,
                 mode: str = "auto", device: str | torch.device = "cpu") -> torch.Tensor:
    """(n, steps, z_dim): n paths, each from one draw of the prior to another, ends included."""
    if n < 1:
        raise GanforgeError(f"--n must be positive, got {n}")
    if steps < 2:
        raise GanforgeError(f"--steps must be at least 2 (both ends of the walk), got {steps}")
    gen = torch.Generator(device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    ends = PRIORS.get(prior)(2 * n, z_dim, gen)
    a, b = ends[:n, None], ends[n:, None]
    t = torch.linspace(0.0, 1.0, steps, device=gen.device)[None, :, None]
    return (slerp if resolve_mode(mode, prior) == "slerp" else lerp)(a, b, t)


def row_labels(g: TrainedGenerator, n: int, label: int | None) -> torch.Tensor | None:
    """A class per walk: row i gets class i % num_classes, or ``label`` for every row."""
    if not g.num_classes:
        if label is not None:
            raise GanforgeError("--class: this generator is not conditional (its run was trained "
                                "without conditional=true): it takes no class; drop --class")
        return None
    if label is None:
        return torch.arange(n) % g.num_classes
    if not 0 <= label < g.num_classes:
        raise GanforgeError(f"--class {label}: expected a class in 0..{g.num_classes - 1}")
    return torch.full((n,), label, dtype=torch.long)


@torch.no_grad()
def latent_walk(g: TrainedGenerator, n: int = 8, steps: int = 10, seed: int | None = None,
                mode: str = "auto", label: int | None = None) -> torch.Tensor:
    """(n, steps, *data_shape): G along n latent paths, in G's output range."""
    device = next(g.G.parameters()).device
    y = row_labels(g, n, label)
    z = walk_latents(g.config.prior, g.z_dim, n, steps, seed, mode, device).flatten(0, 1)
    if y is not None:
        y = y.to(device).repeat_interleave(steps)  # one class along each row
    outs = [g(z[i:i + CHUNK], None if y is None else y[i:i + CHUNK])
            for i in range(0, len(z), CHUNK)]
    x = torch.cat(outs)
    return x.reshape(n, steps, *x.shape[1:])


def write_walk(g: TrainedGenerator, out: str | Path, n: int = 8, steps: int = 10,
               seed: int | None = None, mode: str = "auto", label: int | None = None,
               ms_per_frame: int = 150) -> Path:
    """Write the walk: a PNG grid (a row per walk, a column per step), a GIF (frame s shows
    every walk at step s) or, for 1-D and 2-D outputs, a plot. Returns ``out``."""
    from .generator import to_unit

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in IMAGE_SUFFIXES + PLOT_SUFFIXES:
        raise GanforgeError(f"--out {out}: expected a .png or .gif file (.pdf or .svg for "
                            "plots of 1-D and 2-D generators)")
    x = latent_walk(g, n, steps, seed, mode, label).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{n} latent walks ({resolve_mode(mode, g.config.prior)}), iteration {g.step}"
    if x.dim() == 3:  # vectors: toy data
        if suffix not in PLOT_SUFFIXES:
            raise GanforgeError(f"--out {out}: a walk of vector outputs is a plot: expected "
                                ".png, .pdf or .svg")
        return _plot_walk(x, out, title, row_labels(g, n, label))
    if x.dim() != 5:
        raise GanforgeError(f"cannot draw outputs of shape {tuple(x.shape[2:])}: expected "
                            "images (C, H, W) or vectors")
    if suffix not in IMAGE_SUFFIXES:
        raise GanforgeError(f"--out {out}: expected a .png or .gif file for images")
    x = to_unit(x, g.G).clamp(0, 1)
    if suffix == ".png":
        return viz.save_grid(x.flatten(0, 1), out, nrow=steps)
    with tempfile.TemporaryDirectory() as tmp:
        frames = [viz.save_grid(x[:, s], Path(tmp) / f"{s:05d}.png") for s in range(steps)]
        viz.save_gif(frames, out, ms_per_frame)
    return out


def _plot_walk(x: torch.Tensor, out: Path, title: str, y: torch.Tensor | None) -> Path:
    """1-D outputs: G(z(t)) against t, a line per walk; 2-D: each walk's path in the plane."""
    n, steps, dim = x.shape
    if dim > 2:
        raise GanforgeError(f"cannot plot a walk of {dim}-dimensional outputs: expected images, "
                            "1-D or 2-D outputs")
    fig, ax = viz.subplots(figsize=(7, 4) if dim == 1 else (6, 6), dpi=100)
    t = torch.linspace(0.0, 1.0, steps).numpy()
    for i in range(n):
        name = f"walk {i}" + (f" (class {int(y[i])})" if y is not None else "")
        if dim == 1:
            ax.plot(t, x[i, :, 0].numpy(), marker=".", label=name)
        else:
            line, = ax.plot(x[i, :, 0].numpy(), x[i, :, 1].numpy(), marker=".", label=name)
            ax.plot(*x[i, 0].numpy(), marker="o", color=line.get_color())  # where it starts
    if dim == 1:
        ax.set_xlabel("position along the walk, t")
        ax.set_ylabel("G(z(t))")
    else:
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x[0] (a dot marks each walk's start)")
        ax.set_ylabel("x[1]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if n <= 10:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out)
