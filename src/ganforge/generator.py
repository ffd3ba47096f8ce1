"""Load a trained generator from a run folder or checkpoint, and sample from it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import checkpoint
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


def load(path: str | Path, device: str | torch.device = "cpu") -> TrainedGenerator:
    """The generator of a run folder or checkpoint file, in eval mode, ready to call."""
    ckpt = resolve_checkpoint(path)
    state = checkpoint.load(ckpt)
    if not isinstance(state, dict):
        raise GanforgeError(f"{ckpt}: not a training checkpoint (expected a table of entries, "
                            f"found {type(state).__name__})")
    try:
        cfg = from_dict(state["config"])
    except (KeyError, TypeError, GanforgeError) as e:
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
    G, _ = MODELS.get(cfg.model)(cfg, data_shape, num_classes)
    checkpoint.load_module_state(G, weights, "generator", ckpt)
    gen = TrainedGenerator(G, cfg, step, num_classes, ema).to(device)
    return gen.eval()
