"""ganforge: train Generative Adversarial Networks, from the classic MLP GAN onwards."""

from __future__ import annotations

from . import checks, presets  # noqa: F401  (they register into config.validate/resolve)
from .config import Config
from .errors import GanforgeError
from .generator import load
from .run import Run
from .session import train
from .version import __version__

__all__ = ["Config", "GanforgeError", "Run", "load", "train", "__version__"]
