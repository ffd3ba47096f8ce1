"""Every random stream a run draws from, as checkpoint state: its own two (noise, data order)
and the global ones (python, numpy, torch CPU and CUDA) that library code may use."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state(gen: torch.Generator, data_gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    state = {
        "gen": gen.get_state(), "data_gen": data_gen.get_state(),
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], gen: torch.Generator,
                  data_gen: torch.Generator) -> None:
    gen.set_state(state["gen"])
    data_gen.set_state(state["data_gen"])
    torch.set_rng_state(state["torch"])
    if "python" in state:
        v, internal, gauss = state["python"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state({"bit_generator": "MT19937",
                             "state": {"key": s["key"].numpy().astype(np.uint32),
                                       "pos": s["pos"]},
                             "has_gauss": s["has_gauss"], "gauss": s["gauss"]})
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
