"""Generator/discriminator builders, looked up by ``config.model``."""

from __future__ import annotations

from . import mlp as _mlp  # noqa: F401  (registers the MLP models)
from .dcgan import build_dcgan
from .init import INITS, initialise
from .registry import MODELS, build_models
from .resnet import build_resnet

MODELS.register("dcgan", "DCGAN (Radford et al.): transposed-conv G with BatchNorm, conv D with "
                "LeakyReLU; 28/32/64 px, grey or colour")(build_dcgan)
MODELS.register("resnet", "SN-GAN ResNet (Miyato et al.) for 32x32: residual G and "
                "spectrally normalised residual D")(build_resnet)

__all__ = ["INITS", "MODELS", "build_models", "initialise"]
