"""Loading the FID Inception-v3 weights: the one accepted file, its checksum, the cache.

Weights are not shipped: get pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` and pass
its path, or set ``$GANFORGE_INCEPTION``. Only that file is accepted: its sha256 must be
:data:`WEIGHTS_SHA256` (the ``6726825d`` in its name is the digest's first 8 hex digits, the
torch.hub convention; the full digest is the one torch-fidelity, which rehosts the same file,
and other projects pin). The digest is checked before the file is unpickled, and unpickling
is ``torch.load(weights_only=True)``, which builds tensors and refuses to run code. The state
dict is then checked and converted to ``<cache>/inception/fid-inception.safetensors``, stamped
with the source digest; later loads read that file, and a ``.safetensors`` file is accepted
only with that stamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..checkpoint import atomic_write_bytes
from ..data.mnist import cache_dir
from ..errors import GanforgeError
from .base import FeatureNet
from .inception import FIDInceptionV3, inception_net

ENV_VAR = "GANFORGE_INCEPTION"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE)
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
CONVERTED_FORMAT = "ganforge-fid-inception-1"


def converted_path() -> Path:
    """Where a converted ``.pth`` is kept: ``<cache>/inception/fid-inception.safetensors``."""
    return cache_dir() / "inception" / "fid-inception.safetensors"


def _missing_weights_error() -> GanforgeError:
    return GanforgeError(
        f"no FID Inception weights: download pytorch-fid's {WEIGHTS_FILE} ({WEIGHTS_URL}) and "
        f"set {ENV_VAR}=/path/to/{WEIGHTS_FILE} (or pass the path as weights=); it is "
        f"converted once to {converted_path()}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise GanforgeError(f"{path}: not a safetensors file ({str(e).splitlines()[0]})") from None
    return tensors, meta


def _read_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # whatever the unpickler trips on, the file is at fault
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise GanforgeError(f"{path}: cannot read as a PyTorch weights file "
                            f"(weights_only=True): {first}") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise GanforgeError(f"{path}: expected a state dict (names -> tensors), "
                            f"got {type(state).__name__}")
    return state


def _refuse_digest(path: Path, digest: str) -> GanforgeError:
    return GanforgeError(f"{path}: not pytorch-fid's {WEIGHTS_FILE} (sha256 {digest[:16]}..., "
                         f"expected {WEIGHTS_SHA256}); get it from {WEIGHTS_URL}")


def _read_conversion(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ganforge conversion of the FID weights; refuses any other file."""
    tensors, meta = _read_safetensors(path)
    if meta.get("format") != CONVERTED_FORMAT or meta.get("source_sha256") != WEIGHTS_SHA256:
        raise GanforgeError(f"{path}: not ganforge's conversion of {WEIGHTS_FILE} (sha256 "
                            f"{WEIGHTS_SHA256}); pass the .pth itself (from {WEIGHTS_URL})")
    return tensors


def _listed(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _load_strict(module: FIDInceptionV3, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = module.state_dict()
    state = dict(state)
    for key in expected:
        # weight files saved before PyTorch 0.4.1 have no BatchNorm batch counters; they only
        # matter when training with momentum=None, so a zero stands in for them
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
    if not problems:
        wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
                 for k, v in expected.items() if state[k].shape != v.shape]
        if wrong:
            problems.append(f"{len(wrong)} of the wrong shape ({_listed(wrong)})")
    if problems:
        raise GanforgeError(f"{source}: not the FID Inception-v3 weights ({WEIGHTS_FILE}): "
                            f"{'; '.join(problems)} tensors")
    module.load_state_dict(state, strict=True)


def _write_converted(module: FIDInceptionV3, source: Path, digest: str) -> None:
    target = converted_path()
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {"format": CONVERTED_FORMAT, "source": str(source), "source_sha256": digest}
    try:
        atomic_write_bytes(target, st_save(tensors, metadata=meta))
    except OSError as e:
        # the weights are loaded and usable; only the next load will be slower
        print(f"ganforge: could not write {target} ({e.strerror or e}); the .pth will be "
              "read again next time", file=sys.stderr)


def load_inception_module(weights: str | Path | None = None,
                          logits_bias: bool = False) -> tuple[FIDInceptionV3, Path]:
    """The loaded network and the file its weights came from.

    ``weights``, else ``$GANFORGE_INCEPTION``, else an earlier conversion in the cache. A
    ``.safetensors`` file must be ganforge's conversion of the FID weights; anything else
    must be pytorch-fid's file itself (sha256 :data:`WEIGHTS_SHA256`, checked before it is
    unpickled with ``weights_only=True``), which is converted to :func:`converted_path` once.
    """
    module = FIDInceptionV3(logits_bias=logits_bias)
    given = weights if weights is not None else os.environ.get(ENV_VAR) or None
    if given is None:
        cached = converted_path()
        if not cached.is_file():
            raise _missing_weights_error()
        _load_strict(module, _read_conversion(cached), cached)
        return module, cached

    path = Path(given).expanduser()
    if not path.is_file():
        origin = "weights=" if weights is not None else f"${ENV_VAR}"
        raise GanforgeError(f"{path} ({origin}): FID Inception weights file not found; get "
                            f"{WEIGHTS_FILE} from {WEIGHTS_URL}")
    if path.suffix == ".safetensors":
        _load_strict(module, _read_conversion(path), path)
        return module, path

    digest = _sha256(path)
    if digest != WEIGHTS_SHA256:  # before unpickling: no other file gets that far
        raise _refuse_digest(path, digest)
    cached = converted_path()
    if cached.is_file():
        try:
            tensors = _read_conversion(cached)
        except GanforgeError:
            tensors = {}  # a damaged or foreign cache is rebuilt from the .pth below
        if tensors:
            _load_strict(module, tensors, cached)
            return module, cached
    _load_strict(module, _read_pth(path), path)
    _write_converted(module, path, digest)
    return module, path


def load_inception(weights: str | Path | None = None, *, device: str | torch.device = "cpu",
                   batch_size: int = 50, logits_bias: bool = False) -> FeatureNet:
    """The FID Inception-v3 as a :class:`FeatureNet` (features 2048-d, logits 1008).

    Raises :class:`GanforgeError` (one line) when no weights are configured or the file is
    not the FID Inception state dict.
    """
    module, source = load_inception_module(weights, logits_bias=logits_bias)
    info = {"weights": str(source), "logits_bias": logits_bias}
    return inception_net(module, device=device, batch_size=batch_size, info=info)



__all__ = [
    "CONVERTED_FORMAT",
    "ENV_VAR",
    "WEIGHTS_FILE",
    "WEIGHTS_SHA256",
    "WEIGHTS_URL",
    "converted_path",
    "load_inception",
    "load_inception_module",
]
