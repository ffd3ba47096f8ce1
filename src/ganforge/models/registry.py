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
# D's first layer is sized by ``d_input_shape`` (PacGAN packs widen it).
Builder = Callable[["Config", tuple[int, ...], int], tuple[nn.Module, nn.Module]]
MODELS: Registry[Builder] = Registry("model")


def build_models(cfg: Config, data_shape: tuple[int, ...],
                 num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    from ..remedies import check_remedies, install_remedies
    from .init import initialise

    check_remedies(cfg, data_shape, num_classes)
    G, D = MODELS.get(cfg.model)(cfg, data_shape, num_classes)
    install_remedies(cfg, D, data_shape)  # before initialise: a widened layer is initialised
    initialise(G, cfg.init)
    initialise(D, cfg.init)
    return G, D


def d_input_shape(cfg: Config, data_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of what D's first layer takes: one sample, or a pack of ``cfg.pac``."""
    from ..remedies import packed_shape

    return packed_shape(tuple(data_shape), getattr(cfg, "pac", 1))
