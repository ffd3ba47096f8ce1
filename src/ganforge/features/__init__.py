"""Feature networks for evaluation: FID/KID/precision-recall features and IS/accuracy logits.

Every network is reached by name through :data:`FEATURES` / :func:`get_feature_net` and shares
one small interface, :class:`FeatureNet`:

- ``features(images)`` -> ``(N, dim)``: the embedding that FID-style metrics compare,
- ``logits(images)`` -> ``(N, num_classes)``: class scores for the Inception Score and for
  classifier accuracy,
- ``features_and_logits(images)``: both from one forward pass.

Images are float tensors ``(N, C, H, W)`` in [0, 1] (uint8 0..255 is accepted too); ganforge
maps generator outputs in [-1, 1] to [0, 1] before calling. Work is done in batches of
``batch_size`` under ``torch.no_grad`` on the net's device; results come back on the CPU as
float32 so that statistics over many thousands of images do not pile up on the GPU.

Names:

- ``inception``: the FID Inception-v3 (2048-d pool3 features, 1008 logits); needs the
  pytorch-fid weights file (see :mod:`ganforge.features.inception_weights`).
- ``lenet-mnist``, ``lenet-fashion``: small CNN classifiers trained by ganforge itself
  (``ganforge classifier train --dataset mnist|fashion-mnist``), 128-d features, 10 logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..registry import Registry
from .base import FeatureNet, resolve_device

FEATURES: Registry[Callable[..., FeatureNet]] = Registry("feature network")


# The loaders import their modules lazily: nothing heavy is loaded until a network is
# actually asked for.
@FEATURES.register("inception", "FID Inception-v3 (2048-d pool3, 1008 logits); needs the "
                   "pytorch-fid weights ($GANFORGE_INCEPTION or weights=PATH)")
def _inception(device: str | torch.device = "cpu", **opts: Any) -> FeatureNet:
    from .inception_weights import load_inception

    return load_inception(device=device, **opts)


@FEATURES.register("lenet-mnist", "LeNet-style MNIST classifier trained by ganforge (128-d "
                   "features, 10 logits); `ganforge classifier train --dataset mnist`")
def _lenet_mnist(device: str | torch.device = "cpu", **opts: Any) -> FeatureNet:
    from .lenet import load_classifier

    return load_classifier("mnist", device=device, **opts)


@FEATURES.register("lenet-fashion", "LeNet-style Fashion-MNIST classifier trained by ganforge "
                   "(128-d features, 10 logits); `ganforge classifier train --dataset "
                   "fashion-mnist`")
def _lenet_fashion(device: str | torch.device = "cpu", **opts: Any) -> FeatureNet:
    from .lenet import load_classifier

    return load_classifier("fashion-mnist", device=device, **opts)


def get_feature_net(name: str, device: str | torch.device = "cpu", **opts: Any) -> FeatureNet:
    """The feature network ``name`` (see :data:`FEATURES`) on ``device``.

    ``opts`` go to its loader: ``batch_size`` for all; ``weights`` (a path) for ``inception``.
    """
    return FEATURES.get(name)(device=device, **opts)


__all__ = ["FEATURES", "FeatureNet", "get_feature_net", "resolve_device"]
