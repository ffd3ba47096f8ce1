"""TensorBoard logging of a run: scalars, sample grids and warnings under ``<run>/tensorboard``.

tensorboard is an optional dependency (``pip install ganforge[tensorboard]``); it is imported
only when a logger is opened, so ``import ganforge`` never pays for it.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import GanforgeError

MODES = ("auto", "on", "off")
MISSING = "--tensorboard: the tensorboard package is not installed (pip install tensorboard)"

# Log-row keys and their TensorBoard tags; the shared prefixes put related curves side by
# side. Unknown numeric keys go under train/.
TAGS = {
    "d_loss": "loss/d",
    "g_loss": "loss/g",
    "d_real": "D/real",
    "d_fake": "D/fake",
    "grad_norm_d": "grad_norm/d",
    "grad_norm_g": "grad_norm/g",
    "it_s": "speed/it_s",
}
# What ganforge.evaluate returns (metrics and their spreads, mode counts): eval/<key>.
EVAL_KEYS = frozenset({
    "fid", "fid_eps", "kid", "kid_std", "kid_subset", "is", "is_std", "precision", "recall",
    "density", "coverage",
    "modes", "modes_strict", "strict_min_count", "high_quality", "kl", "n_modes", "n",
    "classes", "classes_kl", "classes_confident", "classes_hist", "classes_min_count", "n_classes",
})
HISTOGRAMS = frozenset({"classes_hist"})  # per-class counts: a TensorBoard histogram
SKIP = frozenset({"step"})


def available() -> bool:
    """Whether TensorBoard logging can work here (tensorboard and torch's writer import)."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def tag_for(key: str) -> str:
    """The TensorBoard tag of a log-row key."""
    if key in TAGS:
        return TAGS[key]
    if key in EVAL_KEYS:
        return f"eval/{key}"
    return f"train/{key}"


class TensorBoardLogger:
    """A thin wrapper of ``torch.utils.tensorboard.SummaryWriter`` speaking ganforge rows."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        if not available():
            raise GanforgeError(MISSING)
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        # purge_step: a resumed run drops the events it is about to log again
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step)

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        """Every numeric value of a log row (train, eval or warning row), and the class
        histogram of metric ``classes``; the rest is skipped."""
        for key, value in row.items():
            if key in HISTOGRAMS and isinstance(value, list):
                self.counts(step, tag_for(key), value)
            if key in SKIP or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            self.writer.add_scalar(tag_for(key), float(value), global_step=step)

    def counts(self, step: int, tag: str, counts: list[int]) -> None:
        """A histogram with one bin per class from per-class ``counts`` (bin k: class k)."""
        c = np.asarray(counts, dtype=np.float64)
        edges = np.arange(c.size + 1, dtype=np.float64) - 0.5
        centres = np.arange(c.size, dtype=np.float64)
        total = c.sum()
        # add_histogram_raw: the counts are the histogram already; no samples to rebuild
        self.writer.add_histogram_raw(
            tag, min=0.0, max=float(c.size - 1), num=float(total),
            sum=float((c * centres).sum()), sum_squares=float((c * centres ** 2).sum()),
            bucket_limits=edges[1:].tolist(), bucket_counts=c.tolist(), global_step=step)

    def image(self, step: int, tag: str, image: str | Path | np.ndarray | torch.Tensor) -> None:
        """An image: a PNG (or any PIL-readable) path, or a HW, HWC or CHW array or tensor,
        uint8 (or other integers) in 0..255 or float in [0, 1]."""
        arr = _as_uint8(image)
        self.writer.add_image(tag, arr, global_step=step,
                              dataformats="HW" if arr.ndim == 2 else "HWC")

    def text(self, step: int, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_logger(run_dir: str | Path, mode: str,
                purge_step: int | None = None) -> TensorBoardLogger | None:
    """The run's logger (``run_dir/tensorboard``) for ``--tensorboard auto|on|off``.

    "auto" logs when tensorboard is installed and quietly does nothing otherwise; "on" makes
    a missing tensorboard an error, since the user asked for it.
    """
    if mode not in MODES:
        raise GanforgeError(f"--tensorboard {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off" or (mode == "auto" and not available()):
        return None
    return TensorBoardLogger(Path(run_dir) / "tensorboard", purge_step)


def _as_uint8(image: str | Path | np.ndarray | torch.Tensor) -> np.ndarray:
    """HW or HWC (C = 3 or 4) uint8: one layout, so the writer never guesses a scale."""
    if isinstance(image, str | Path):
        from PIL import Image

        with Image.open(image) as im:
            keep = im.mode in ("L", "RGB", "RGBA")
            return np.asarray(im if keep else im.convert("RGB"))
    channels_first = isinstance(image, torch.Tensor)  # torch's convention, numpy's is last
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3:
        first, last = arr.shape[0] in (1, 3, 4), arr.shape[-1] in (1, 3, 4)
        if first and (channels_first or not last):
            arr = arr.transpose(1, 2, 0)
        elif not last:
            raise ValueError(f"image of shape {arr.shape}: expected HW, HWC or CHW with "
                             "1, 3 or 4 channels")
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    elif arr.ndim != 2:
        raise ValueError(f"image of shape {arr.shape}: expected HW, HWC or CHW (one image, "
                         "not a batch: make a grid first)")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"image of dtype {arr.dtype}: expected uint8 or float")
    if np.issubdtype(arr.dtype, np.integer):  # other integer types: already 0..255
        return np.clip(arr, 0, 255).astype(np.uint8)
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


__all__ = ["TensorBoardLogger", "available", "open_logger", "tag_for"]
