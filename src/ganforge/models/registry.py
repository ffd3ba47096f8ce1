from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import Config

# A builder takes the config, the shape of one data sample and the number of classes (0 for
# unlabelled data) and returns (G, D). G maps (N, z_dim) noise [and (N,) labels] to
# (N, *data_shape) samples in G.out_range; D maps samples [and labels] to (N,) outputs.
Builder = Callable[["Config", tuple[int, ...], int], tuple[nn.Module, nn.Module]]
MODELS: Registry[Builder] = Registry("model")


def build_models(cfg: Config, data_shape: tuple[int, ...],
                 num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    from .init import initialise

    G, D = MODELS.get(cfg.model)(cfg, data_shape, num_classes)
    initialise(G, cfg.init)
    initialise(D, cfg.init)
    return G, D
