from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import Config

# A builder takes the config and the shape of one data sample and returns (G, D).
# G maps (N, z_dim) noise to (N, *data_shape) samples; D maps samples to (N,) logits.
Builder = Callable[["Config", tuple[int, ...]], tuple[nn.Module, nn.Module]]
MODELS: Registry[Builder] = Registry("model")


def build_models(cfg: Config, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    from .init import initialise

    G, D = MODELS.get(cfg.model)(cfg, data_shape)
    initialise(G, cfg.init)
    initialise(D, cfg.init)
    return G, D
