"""Checkpoints as safetensors: tensors plus a JSON skeleton in the metadata. Never pickle.

Nested state (optimizer state dicts, sampler state, RNG states) is flattened: every tensor goes
into the safetensors table under a dotted key and the rest of the structure is stored as JSON,
with ``{"__tensor__": key}`` where a tensor was. Loading therefore cannot execute code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import GanforgeError

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


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any point leaves either the old file or the new one, never a torn one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    if meta.get("format") != FORMAT or "state" not in meta:
        raise GanforgeError(f"{path}: safetensors file without ganforge metadata "
                            f"(format {meta.get('format')!r}, expected {FORMAT!r})")
    return _unflatten(json.loads(meta["state"]), tensors)


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
