"""Load a trained generator from a run folder or checkpoint, and sample from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import budget, checkpoint
from .config import Config, from_dict
from .errors import GanforgeError
from .models import MODELS
from .priors import PRIORS


class TrainedGenerator(nn.Module):
    """G plus what is needed to use it: ``g(z)`` maps noise, ``g.sample(n)`` draws from p(z)."""

    def __init__(self, G: nn.Module, config: Config, step: int, num_classes: int = 0,
                 ema: bool = False) -> None:
        super().__init__()
        self.G, self.config, self.step = G, config, step
        self.z_dim, self.num_classes, self.ema = config.z_dim, num_classes, ema
        self.out_range = getattr(G, "out_range", None)
        self.sizes: Any = None  # budget.Sizes of the model, set by load()

    def sample_bytes(self, n: int) -> float:
        """Memory that drawing ``n`` samples at once needs (see :mod:`ganforge.budget`)."""
        return self.sizes.generator_bytes(n) if self.sizes is not None else 0.0

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.G(z) if y is None else self.G(z, y)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None,
               label: int | torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples (in G's output range); a conditional G draws class ``label``, or
        random classes when it is None."""
        device = next(self.G.parameters()).device
        gen = torch.Generator(device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        z = PRIORS.get(self.config.prior)(n, self.z_dim, gen)
        if not self.num_classes:
            if label is not None:
                raise GanforgeError("--class: this generator is not conditional (its run was "
                                    "trained without conditional=true): it takes no class; "
                                    "drop --class")
            return self.G(z)
        if label is None:
            y = torch.randint(self.num_classes, (n,), generator=gen, device=device)
        else:
            y = torch.as_tensor(label, device=device).expand(n).long()
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise GanforgeError(
                    f"--class {label}: expected a class in 0..{self.num_classes - 1}")
        return self.G(z, y)


def to_unit(x: torch.Tensor, G: nn.Module) -> torch.Tensor:
    """G's outputs mapped to [0, 1] for pictures (tanh models work in [-1, 1])."""
    lo, hi = getattr(G, "out_range", None) or (0.0, 1.0)
    return (x - lo) / (hi - lo)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its final checkpoint (else its latest); a file means itself."""
    p = Path(path)
    if p.is_dir():
        for name in ("final.safetensors", "latest.safetensors"):
            if (p / "checkpoints" / name).is_file():
                return p / "checkpoints" / name
        raise GanforgeError(f"{p}: not a ganforge run folder (no checkpoints/final.safetensors "
                            "or checkpoints/latest.safetensors)")
    if not p.exists():
        raise GanforgeError(f"{p}: no such run folder or checkpoint")
    return p


def run_folder_of(ckpt: Path) -> list[Path]:
    """The run folder a checkpoint belongs to (RUN/checkpoints/x.safetensors), if any."""
    return [ckpt.parent.parent] if ckpt.parent.name == "checkpoints" else []


def load(path: str | Path, device: str | torch.device = "cpu") -> TrainedGenerator:
    """The generator of a run folder or checkpoint file, in eval mode, ready to call."""
    ckpt = resolve_checkpoint(path)
    state = checkpoint.load(ckpt)
    checkpoint.check_state(state, ckpt)
    try:
        cfg = from_dict(state["config"])
    except GanforgeError as e:
        raise GanforgeError(f"{ckpt}: checkpoint has no usable config ({e})") from None
    ema = "G_ema" in state  # the EMA generator is the one to sample from when there is one
    key = "G_ema" if ema else "G"
    weights = state.get(key)
    if not isinstance(weights, dict):
        raise GanforgeError(f"{ckpt}: checkpoint holds no generator weights (no {key!r} entry)")
    try:
        data_shape = tuple(int(s) for s in state["data_shape"])
        num_classes = int(state.get("num_classes", 0))
        step = int(state.get("step", 0))
        if not data_shape or min(data_shape) <= 0 or num_classes < 0:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise GanforgeError(f"{ckpt}: checkpoint has a missing or malformed data_shape, "
                            "num_classes or step entry") from None
    sizes = budget.Sizes(cfg, data_shape, num_classes)
    mismatch = budget.shape_mismatch(sizes.G, weights)
    if mismatch:  # a config that does not describe these weights: refuse before allocating
        raise GanforgeError(f"{ckpt}: generator weights do not fit the model in its config "
                            f"({mismatch})")
    budget.require(sizes.generator_bytes(), f"{ckpt}: its generator (z_dim {cfg.z_dim}, "
                   f"data {list(data_shape)})", device)
    G, _ = MODELS.get(cfg.model)(cfg, data_shape, num_classes)
    checkpoint.load_module_state(G, weights, "generator", ckpt)
    sizes.g_act, _ = budget.activations(G, None, cfg.z_dim, num_classes)
    gen = TrainedGenerator(G, cfg, step, num_classes, ema).to(device)
    gen.sizes = sizes
    return gen.eval()
