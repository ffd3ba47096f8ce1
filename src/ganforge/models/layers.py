"""Pieces shared by the convolutional GANs (``dcgan.py``, ``resnet.py``).

- ``ConditionalBatchNorm2d``: BatchNorm whose scale and shift are looked up per class.
- ``ProjectionHead``: the discriminator's last layer, ``psi(phi) + <embed(y), phi>``
  (Miyato & Koyama 2018); without classes it is just the linear ``psi``.
- ``maybe_sn``: spectral normalisation (Miyato et al. 2018) switched by a flag.
- helpers that read the conditioning settings from the config and check labels and sizes,
  so both model files reject bad input with the same messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import GanforgeError

M = TypeVar("M", bound=nn.Module)

COND_MODES = ("concat", "cbn")
# Width of the learned label embedding concatenated to z in "concat" mode: a fixed size
# (not z_dim) so the label's share of G's input does not depend on the noise size.
LABEL_EMBED_DIM = 50


def maybe_sn(module: M, on: bool) -> M:
    """``module`` with its ``weight`` spectrally normalised when ``on``, else unchanged.

    The parametrisation keeps the raw weight in ``parametrizations.weight.original`` and
    divides it by a power-iteration estimate of its largest singular value on every access;
    the estimate is refined once per forward pass in train mode (SN-GAN's one iteration).
    """
    return spectral_norm(module) if on and not _SHAPES_ONLY[0] else module


# Set while ganforge.budget builds models on the meta device to count their parameters: SN's
# power iteration there would load torch's compiler stack (seconds) for two small vectors.
_SHAPES_ONLY = [False]


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Build models for their shapes alone: without spectral norm's parametrisation, and with
    torch's initialisers as no-ops (on the meta device they too load the compiler stack)."""
    inits = {name: fn for name, fn in vars(nn.init).items()
             if name.endswith("_") and not name.startswith("_") and callable(fn)}
    _SHAPES_ONLY[0] = True
    for name in inits:
        setattr(nn.init, name, _unchanged)
    try:
        yield
    finally:
        _SHAPES_ONLY[0] = False
        for name, fn in inits.items():
            setattr(nn.init, name, fn)


def _unchanged(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


class ConditionalBatchNorm2d(nn.Module):
    """``gamma[y] * BN(x) + beta[y]``: an affine-free BatchNorm2d with per-class affine.

    gamma starts at 1 and beta at 0 for every class, so a fresh layer is a plain BatchNorm
    and the classes drift apart only as training gives them reasons to. Embeddings (not
    Linear layers on one-hot labels) hold them so that ``initialise`` leaves them alone.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        return self.gamma(y)[:, :, None, None] * h + self.beta(y)[:, :, None, None]


def batch_norm(num_features: int, num_classes: int | None) -> nn.Module:
    """A conditional BatchNorm when ``num_classes`` is given, else a plain affine one."""
    if num_classes is None:
        return nn.BatchNorm2d(num_features)
    return ConditionalBatchNorm2d(num_features, num_classes)


def normalise(norm: nn.Module, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Apply a norm from ``batch_norm``: only the conditional kind takes the labels."""
    if isinstance(norm, ConditionalBatchNorm2d):
        return norm(h, y)
    return norm(h)


class ProjectionHead(nn.Module):
    """Logits from D's features ``phi`` (N, F): ``linear(phi) + <embed(y), phi>``.

    Projection, not concatenation, is how the label enters D: for a conditional model the
    logit splits into a class-independent term ``psi(phi)`` and a class term that is an inner
    product with the label's embedding, which Miyato & Koyama show matches the log-ratio of
    conditional densities. ``embed`` is None for unconditional models.
    """

    def __init__(self, in_features: int, num_classes: int | None, sn: bool) -> None:
        super().__init__()
        self.linear = maybe_sn(nn.Linear(in_features, 1), sn)
        self.embed: nn.Embedding | None = None
        if num_classes is not None:
            embed = nn.Embedding(num_classes, in_features)
            # Embedding's default N(0, 1) would make the class term sqrt(F) times larger than
            # the linear term at the start; Glorot-uniform (the reference code's choice) keeps
            # the two on the scale of a Linear layer. ``initialise`` skips Embeddings.
            nn.init.xavier_uniform_(embed.weight)
            # SN-GAN's projection discriminator normalises the embedding too (SNEmbedID).
            self.embed = maybe_sn(embed, sn)

    def forward(self, phi: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.linear(phi).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("the projection head of a conditional D needs labels y")
            out = out + (self.embed(y) * phi).sum(1)
        return out


def conditioning(cfg: Any, num_classes: int, model: str) -> tuple[bool, str]:
    """``(conditional, cond_mode)`` from the config, rejecting settings that cannot work."""
    conditional = bool(getattr(cfg, "conditional", False))
    mode = getattr(cfg, "cond_mode", "concat")
    if mode not in COND_MODES:
        raise GanforgeError(
            f"{model}: cond_mode must be one of {', '.join(COND_MODES)}, got {mode!r}"
        )
    if conditional and num_classes < 1:
        raise GanforgeError(
            f"{model}: conditional=true needs a labelled dataset, but it has {num_classes} classes"
        )
    return conditional, mode


def check_image_shape(model: str, data_shape: Sequence[int], sizes: Sequence[int]) -> int:
    """The side length of a (C, H, W) image shape that ``model`` supports, else one-line error."""
    shape = tuple(data_shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or shape[1] != shape[2] or shape[1] not in sizes:
        side = ", ".join(map(str, sizes))
        raise GanforgeError(
            f"{model}: unsupported data shape {shape}; supported: (C, H, W) with C in {{1, 3}} "
            f"and H = W in {{{side}}}"
        )
    return shape[1]


def require_labels(y: torch.Tensor | None, batch: int, who: str) -> torch.Tensor:
    """``y`` for a conditional module: present and one label per sample (shape checks only,
    no value check, which would synchronise a GPU on every call)."""
    if y is None:
        raise ValueError(f"{who} is conditional: pass class labels y, a LongTensor of shape (N,)")
    if y.shape != (batch,):
        raise ValueError(f"{who}: expected labels of shape ({batch},), got {tuple(y.shape)}")
    return y


class ProjectionDiscriminator(nn.Module):
    """Base of the conv discriminators: ``D(x, y) = head(phi(x), y)``.

    Subclasses build ``self.head`` (a :class:`ProjectionHead`), set ``self.conditional`` and
    define ``features(x)`` (phi); unconditional ones ignore ``y``.
    """

    label_name = "discriminator"
    conditional = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = require_labels(y, x.shape[0], self.label_name) if self.conditional else None
        return self.head(self.features(x), y)
