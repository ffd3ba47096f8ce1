"""How much memory a run or a request would need, checked before anything is allocated.

A config value that passes its type and range checks can still ask for terabytes (a batch of
10^12, z_dim 10^7 in a tampered config.json, ``eval --n 10^12``). The models are first
built on PyTorch's ``meta`` device, which records shapes and allocates nothing, so parameters
are counted exactly for every architecture before any is allocated; once they are known to
fit, activations are measured as the outputs of one forward pass of two samples. Refused
above the machine's memory, with the figure.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from .errors import GanforgeError
from .models.layers import shapes_only

FLOAT = 4  # bytes; what training keeps (bf16 autocast saves less: an upper bound)


def machine_bytes(device: torch.device | str = "cpu") -> int:
    """The memory of the device: physical RAM for the CPU, the card's memory for a GPU."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # not on this OS: no limit we can state
        return 1 << 62


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def require(nbytes: float, what: str, device: torch.device | str = "cpu") -> None:
    """Refuse ``what`` in one line when it would need more memory than the device has."""
    have = machine_bytes(device)
    if nbytes > have:
        raise GanforgeError(f"{what} would need about {human(nbytes)} of memory; this "
                            f"machine has {human(have)}")


class Sizes:
    """Numbers of floats: parameters of G and D, and activations per sample of each."""

    def __init__(self, cfg: Any, data_shape: tuple[int, ...], num_classes: int = 0) -> None:
        from .models import MODELS

        self.cfg, self.shape, self.num_classes = cfg, tuple(data_shape), num_classes
        self.data = math.prod(data_shape)
        self.z = cfg.z_dim
        # spectral norm's power iteration is slow to run on the meta device, and its two
        # vectors per layer are a rounding error of the count: count D without it
        with torch.device("meta"), shapes_only():
            G, D = MODELS.get(cfg.model)(cfg, self.shape, num_classes)
        self.G = G  # shapes only: a checkpoint's G weights can be checked against them
        self.g_params = _count(G)
        self.d_params = _count(D)
        self.g_act = self.d_act = 0

    def measure_activations(self, device: torch.device | str = "cpu") -> None:
        """One forward pass of two samples through freshly built G and D (their weights are
        known to fit by now): the floats each layer outputs per sample. The global random
        state is left as it was."""
        from .models import MODELS

        with torch.random.fork_rng(devices=[]), torch.no_grad():
            G, D = MODELS.get(self.cfg.model)(self.cfg, self.shape, self.num_classes)
            self.g_act, self.d_act = activations(G.to(device), D.to(device), self.z,
                                                  self.num_classes)

    def weights_bytes(self, cfg: Any) -> float:
        return FLOAT * (self.g_params * (4 + (cfg.ema > 0)) + self.d_params * 4)

    def training_bytes(self, cfg: Any) -> float:
        """Weights, gradients and two Adam moments (and the EMA copy); a batch's activations
        kept for backward and their gradients (D sees real and fake); the fixed-noise grid;
        an evaluation's samples."""
        batch = cfg.batch_size * (self.g_act + 2 * self.d_act + self.z + self.data) * 2
        grid = cfg.n_samples * (self.z + self.g_act + self.data)
        evaluation = cfg.eval_n * self.data * 2 if cfg.eval_every else 0
        return self.weights_bytes(cfg) + FLOAT * (batch + grid + evaluation)

    def generator_bytes(self, n: int = 0) -> float:
        """G's weights, and a batch of ``n`` samples drawn at once."""
        return FLOAT * (self.g_params + n * (self.z + self.g_act + self.data))


def check_training(cfg: Any, data_shape: tuple[int, ...], num_classes: int,
                   device: torch.device | str, share: int = 1) -> Sizes:
    """Refuse a run whose weights, or then whose batches, grid and evaluation, would not fit
    (``share``: processes that split the batch)."""
    sizes = Sizes(cfg, data_shape, num_classes)
    what = (f"this run (batch_size {cfg.batch_size}, n_samples {cfg.n_samples}, data "
            f"{list(data_shape)}, z_dim {cfg.z_dim}, G {sizes.g_params:,} and D "
            f"{sizes.d_params:,} parameters)")
    require(sizes.weights_bytes(cfg), what, device)
    sizes.measure_activations()
    require(sizes.training_bytes(cfg) / share, what, device)
    return sizes


def shape_mismatch(model: nn.Module, weights: dict[str, torch.Tensor]) -> str | None:
    """The first tensor of ``weights`` whose shape differs from ``model``'s (on any device,
    meta included), or None when they fit."""
    for name, t in model.state_dict().items():
        w = weights.get(name)
        if w is None:
            return f"no {name!r}"
        if tuple(w.shape) != tuple(t.shape):
            return f"{name} is {list(w.shape)}, the config makes it {list(t.shape)}"
    return None


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())


def activations(G: nn.Module, D: nn.Module | None, z_dim: int,
                num_classes: int) -> tuple[int, int]:
    """Floats that one sample's forward pass produces in G and in D (every leaf module's
    output), measured on a batch of two; (0, 0) for a model that cannot run this way."""
    totals = [0]

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            totals[0] += output[:1].numel() if output.dim() else 1

    def measure(module: nn.Module, *args: torch.Tensor) -> tuple[int, Any]:
        totals[0] = 0
        handles = [m.register_forward_hook(hook) for m in module.modules()
                   if not list(m.children())]
        try:
            with torch.no_grad():
                out = module(*args)
        finally:
            for h in handles:
                h.remove()
        return totals[0], out

    device = next(G.parameters()).device
    y = (torch.zeros(2, dtype=torch.long, device=device),) if num_classes else ()
    try:
        z = torch.zeros(2, z_dim, device=device)  # 2: BatchNorm refuses a batch of one
        g_act, fake = measure(G, z, *y)
        d_act = measure(D, fake, *y)[0] if D is not None else 0
    except Exception:  # noqa: BLE001 - the estimate then counts weights only
        return 0, 0
    return g_act, d_act
