"""Turning user inputs (numpy arrays or torch tensors) into checked float64 arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_float64_2d(x: Any, what: str) -> np.ndarray:
    """``x`` as an (N, d) float64 numpy array; tensors are detached and moved to the CPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what} must have shape (N, d), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf")
    return a
