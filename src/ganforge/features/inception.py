"""The FID Inception-v3: the 2015 TensorFlow graph that FID and IS numbers are reported with.

The layer structure is Inception-v3 as in the PyTorch port used by the reference FID code
(pytorch-fid), including its departures from the ImageNet-trained torchvision model, which
make the port reproduce the TF graph:

- the average pools inside the Mixed_5x, Mixed_6b-e and Mixed_7b blocks exclude the zero
  padding from the average (TF's behaviour, ``count_include_pad=False``),
- Mixed_7c (the last block, "E_2") pools its pool branch with a 3x3 *max* pool,
- the classifier has 1008 outputs (the graph's 1000 ImageNet classes, a background class and
  7 unused ones), and there is no auxiliary classifier.

Parameter names equal those of pytorch-fid's weight file, so its state dict loads unchanged.

Inputs: images in [0, 1] are resized to 299x299 (bilinear, ``align_corners=False``) and
mapped to [-1, 1]; grey images are repeated over 3 channels. ``features`` is the 2048-d
average-pooled ``pool_3`` activation (FID, KID). ``logits`` are the 1008 ``pool_3 @ W``
scores *without* the fc bias by default: the original Inception Score code (and
torch-fidelity's ``logits_unbiased``) takes the softmax over all 1008 of those, so IS values
are comparable with published ones when computed as ``softmax(logits)`` over all 1008.
``logits_bias=True`` gives the graph's own softmax input instead.

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
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..checkpoint import atomic_write_bytes
from ..data.mnist import cache_dir
from ..errors import GanforgeError
from . import FeatureNet, resolve_device

ENV_VAR = "GANFORGE_INCEPTION"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE)
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
CONVERTED_FORMAT = "ganforge-fid-inception-1"


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (TF's epsilon 0.001), ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding,
                              bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    # TF averages only over the window cells inside the image; the torchvision default
    # (count_include_pad=True) would darken every border pixel of the pool branch.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _max_pool_reduce(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=2)


class FIDInceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pool branches (Mixed_5b/5c/5d)."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_same(x))
        return torch.cat([a, b, c, d], 1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Mixed_6a); unchanged from the ImageNet model."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, _max_pool_reduce(x)], 1)


class FIDInceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b-6e)."""

    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        row, col = (1, 7), (7, 1)  # a 1x7 then a 7x1 convolution stand in for one 7x7
        row_pad, col_pad = (0, 3), (3, 0)
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, row, padding=row_pad)
        self.branch7x7_3 = BasicConv2d(c7, 192, col, padding=col_pad)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, col, padding=col_pad)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, row, padding=row_pad)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, col, padding=col_pad)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, row, padding=row_pad)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            c = layer(c)
        d = self.branch_pool(_avg_pool_same(x))
        return torch.cat([a, b, c, d], 1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (Mixed_7a); unchanged from the ImageNet model."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = layer(b)
        return torch.cat([a, b, _max_pool_reduce(x)], 1)


class FIDInceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 outputs (Mixed_7b = "E_1", Mixed_7c = "E_2").

    The two FID variants differ only in the pool branch: ``pool="avg"`` (E_1, padding
    excluded from the average) or ``pool="max"`` (E_2, a quirk of the TF graph).
    """

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = _avg_pool_same if pool == "avg" else _max_pool_same
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = self.branch_pool(self.pool(x))
        return torch.cat([a, self.branch3x3_2a(b), self.branch3x3_2b(b),
                          self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c), d], 1)


class FIDInceptionV3(nn.Module):
    """The network; ``embed`` gives pool_3 (N, 2048), ``head`` the (N, 1008) logits.

    Takes (N, 3, 299, 299) inputs already scaled to [-1, 1]; :func:`prepare_inception_input`
    makes them from [0, 1] images of any size.
    """

    def __init__(self, logits_bias: bool = False) -> None:
        super().__init__()
        self.logits_bias = logits_bias
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 64 x 147 x 147
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(_max_pool_reduce(x)))  # 192 x 71 x 71
        x = _max_pool_reduce(x)  # 192 x 35 x 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # ends at 2048 x 8 x 8
        return x.mean(dim=(2, 3))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        if self.logits_bias:
            return self.fc(f)
        return f @ self.fc.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def prepare_inception_input(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (N, 1 or 3, H, W) -> (N, 3, 299, 299) in [-1, 1], as the reference does."""
    channels = images.shape[1]
    if channels == 1:
        images = images.expand(-1, 3, -1, -1)
    elif channels != 3:
        raise GanforgeError(f"inception: expected 1 (grey) or 3 (RGB) channels, got {channels}")
    if tuple(images.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
        images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                               align_corners=False)
    return images * 2.0 - 1.0


def inception_net(module: FIDInceptionV3, *, device: str | torch.device = "cpu",
                  batch_size: int = 50, info: dict[str, Any] | None = None) -> FeatureNet:
    """Wrap a (loaded or freshly built) :class:`FIDInceptionV3` as a :class:`FeatureNet`."""
    return FeatureNet("inception", module, dim=FEATURE_DIM, num_classes=NUM_CLASSES,
                      prepare=prepare_inception_input, device=resolve_device(device),
                      batch_size=batch_size, info=info)


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
    "ENV_VAR",
    "FIDInceptionV3",
    "WEIGHTS_FILE",
    "WEIGHTS_SHA256",
    "WEIGHTS_URL",
    "converted_path",
    "inception_net",
    "load_inception",
    "load_inception_module",
    "prepare_inception_input",
]
