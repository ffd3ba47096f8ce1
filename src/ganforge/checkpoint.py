"""Checkpoints as safetensors: tensors plus a JSON skeleton in the metadata. Never pickle.

Nested state (optimizer state dicts, sampler state, RNG states) is flattened: every tensor goes
into the safetensors table under a dotted key and the rest of the structure is stored as JSON,
with ``{"__tensor__": key}`` where a tensor was. Loading therefore cannot execute code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import GanforgeError
from .files import atomic_write_bytes
from .optim import BASE_LR

__all__ = ["FORMAT", "atomic_write_bytes", "check_state", "load", "load_module_state", "save"]

FORMAT = "ganforge-checkpoint-1"


def _flatten(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        # clone: safetensors refuses tensors that share storage (e.g. views of one buffer)
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        pairs = [[_flatten(k, f"{key}.k{i}", tensors), _flatten(v, f"{key}.{i}", tensors)]
                 for i, (k, v) in enumerate(obj.items())]
        return {"__dict__": pairs}
    if isinstance(obj, list | tuple):
        items = [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {"__tuple__": items}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {key} in a checkpoint")


# The skeleton is JSON that :func:`save` wrote; anything deeper than this was not.
MAX_DEPTH = 64


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor], depth: int = 0) -> Any:
    """The inverse of :func:`_flatten`; a ValueError names what does not fit."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            key = obj["__tensor__"]
            if not isinstance(key, str) or key not in tensors:
                raise ValueError(f"names a tensor that is not in the file ({key!r})")
            return tensors[key]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors, depth + 1) for v in _list(obj["__tuple__"]))
        if set(obj) != {"__dict__"}:
            raise ValueError(f"unexpected object with keys {sorted(obj)[:5]}")
        out = {}
        for pair in _list(obj["__dict__"]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("a dict entry is not a [key, value] pair")
            k = _unflatten(pair[0], tensors, depth + 1)
            if not isinstance(k, str | int | float | bool | None):
                raise ValueError(f"a dict key is a {type(k).__name__}")
            out[k] = _unflatten(pair[1], tensors, depth + 1)
        return out
    if isinstance(obj, list):
        return [_unflatten(v, tensors, depth + 1) for v in obj]
    return obj


def _list(v: Any) -> list:
    if not isinstance(v, list):
        raise ValueError(f"expected a list, got {type(v).__name__}")
    return v


def save(path: str | Path, state: dict[str, Any]) -> Path:
    """Save a nested dict of tensors and plain values atomically as one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "s", tensors)
    meta = {"format": FORMAT, "state": json.dumps(skeleton)}
    path = Path(path)
    atomic_write_bytes(path, st_save(tensors, metadata=meta))
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Load what :func:`save` wrote; anything else is refused with a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise GanforgeError(f"{path}: checkpoint not found")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        # the metadata sits in the JSON header: 8-byte little-endian length, then the JSON
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise GanforgeError(
            f"{path}: not a ganforge checkpoint (expected a safetensors file; "
            f"pickled .pt/.pth files are never loaded): {str(e).splitlines()[0]}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "state" not in meta:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise GanforgeError(f"{path}: safetensors file without ganforge metadata "
                            f"(format {fmt!r}, expected {FORMAT!r})")
    try:
        state = _unflatten(json.loads(meta["state"]), tensors)
    except (ValueError, TypeError, RecursionError) as e:
        raise GanforgeError(f"{path}: checkpoint metadata 'state' is damaged "
                            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(state, dict):
        raise GanforgeError(f"{path}: checkpoint metadata 'state' is not an object")
    return state


# What every checkpoint holds (for sampling), and what a resume needs on top.
_MODEL_FIELDS = {"step": "int>=0", "config": "dict", "data_shape": "shape", "G": "tensors",
                 "D": "tensors"}
_RESUME_FIELDS = {"opt_g": "dict", "opt_d": "dict", "sampler": "dict", "rng": "dict",
                  "d_steps": "int>=0", "counts": "ints", "objective": "dict"}
MAX_STEP = 2**62


def check_state(state: dict[str, Any], path: str | Path, resume: bool = False) -> None:
    """Type- and range-check a loaded checkpoint's fields before anything uses them: a
    damaged or foreign file fails here in one line naming the file and the field."""
    wanted = {**_MODEL_FIELDS, **(_RESUME_FIELDS if resume else {})}
    if "G_ema" in state:
        wanted["G_ema"] = "tensors"
    for name, kind in wanted.items():
        if name not in state:
            raise GanforgeError(f"{path}: checkpoint has no {name!r} field")
        v = state[name]
        ok = {
            "int>=0": lambda v: isinstance(v, int) and not isinstance(v, bool)
            and 0 <= v <= MAX_STEP,
            "dict": lambda v: isinstance(v, dict),
            "shape": lambda v: isinstance(v, list) and 1 <= len(v) <= 4 and all(
                isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 2**20 for d in v),
            "tensors": lambda v: isinstance(v, dict) and all(
                isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items()),
            "ints": lambda v: isinstance(v, list) and all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in v),
        }[kind](v)
        if not ok:
            raise GanforgeError(f"{path}: checkpoint field {name!r} is not {_WHAT[kind]} "
                                f"(got {_brief(v)})")
    if resume:
        _check_rates(state, path)
    nc = state.get("num_classes")
    if nc is not None and not (isinstance(nc, int) and not isinstance(nc, bool)
                               and 0 <= nc <= 100_000):
        raise GanforgeError(f"{path}: checkpoint field 'num_classes' is not a class count "
                            f"(got {_brief(nc)})")


def _check_rates(state: dict[str, Any], path: str | Path) -> None:
    """The optimisers' learning rates (and lr_decay's starting rates), which the next step
    multiplies by: positive finite numbers, not whatever a damaged file holds."""
    for name in ("opt_g", "opt_d"):
        groups = state[name].get("param_groups", [])
        for group in groups if isinstance(groups, list) else []:
            for key in ("lr", BASE_LR):
                v = group.get(key, 1.0) if isinstance(group, dict) else 1.0
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    v = v.item()
                if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0 \
                        or not math.isfinite(v):
                    raise GanforgeError(f"{path}: {name} holds learning rate {key}={v!r}; "
                                        "expected a positive number")


_WHAT = {"int>=0": "a non-negative integer", "dict": "an object",
         "shape": "a data shape (1 to 4 positive integers)",
         "tensors": "a table of named tensors", "ints": "a list of non-negative integers"}


def _brief(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else f"{type(v).__name__} {text[:40]}..."


def module_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict())


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
                      path: str | Path) -> None:
    """``load_state_dict`` with a one-line error when the shapes belong to another model."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        # torch's first line only says that loading failed; the next names a key and shapes
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        first = lines[1] if len(lines) > 1 else lines[0]
        raise GanforgeError(f"{path}: {what} weights do not fit the model in its config "
                            f"({first})") from None
