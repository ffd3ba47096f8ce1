"""Weight initialisations by name. Biases always start at zero, as in the tutorials."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..registry import Registry

INITS: Registry[Callable[[torch.Tensor], None]] = Registry("init")


def _fans(w: torch.Tensor) -> tuple[int, int]:
    # nn.Linear/Conv weights are (out, in, *kernel): fan_in counts inputs feeding one output.
    receptive = math.prod(w.shape[2:]) if w.dim() > 2 else 1
    return w.shape[1] * receptive, w.shape[0] * receptive


@INITS.register("he-normal", "N(0, 2/fan_in): what the first tutorial's xavier_init draws")
def he_normal(w: torch.Tensor) -> None:
    fan_in, _ = _fans(w)
    with torch.no_grad():
        w.normal_(0.0, math.sqrt(2.0 / fan_in))


@INITS.register("xavier", "Glorot uniform U(-a, a), a = sqrt(6/(fan_in+fan_out)) (tf.contrib)")
def xavier(w: torch.Tensor) -> None:
    fan_in, fan_out = _fans(w)
    a = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        w.uniform_(-a, a)


@INITS.register("normal0.02", "N(0, 0.02): the DCGAN paper's initialisation")
def normal002(w: torch.Tensor) -> None:
    with torch.no_grad():
        w.normal_(0.0, 0.02)


@INITS.register("normal0.01", "truncated normal, std 0.01, cut at 2 std (tf.truncated_normal)")
def normal001(w: torch.Tensor) -> None:
    nn.init.trunc_normal_(w, mean=0.0, std=0.01, a=-0.02, b=0.02)


def initialise(module: nn.Module, name: str) -> None:
    """Apply the named init to every Linear/Conv weight of ``module`` and zero its biases."""
    from torch.nn.utils import parametrize

    fn = INITS.get(name)
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d):
            # a spectrally normalised layer recomputes .weight on access: init the raw one
            w = (m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight")
                 else m.weight)
            if isinstance(m, nn.ConvTranspose2d):
                # Transposed conv stores (in, out, k, k): fan_in is the second axis there too
                # from the output's point of view, so initialise the transposed view.
                fn(w.data.transpose(0, 1))
            else:
                fn(w)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
