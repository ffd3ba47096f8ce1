"""ganforge: train Generative Adversarial Networks, from the classic MLP GAN onwards."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .errors import GanforgeError  # noqa: E402
from .generator import load  # noqa: E402
from .run import Run  # noqa: E402
from .session import train  # noqa: E402

__all__ = ["Config", "GanforgeError", "Run", "load", "train", "__version__"]
