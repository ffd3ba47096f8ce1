"""Generator/discriminator builders, looked up by ``config.model``."""

from __future__ import annotations

from . import mlp as _mlp  # noqa: F401  (registers the MLP models)
from .init import INITS, initialise
from .registry import MODELS, build_models

__all__ = ["INITS", "MODELS", "build_models", "initialise"]
