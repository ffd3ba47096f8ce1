"""A folder of PNG/JPEG files as a square uint8 image dataset (optionally labelled by subfolder).

Every image is cropped to its centred square (side = its shorter side) and resampled to
``size`` x ``size`` with Pillow's LANCZOS filter in one step (``Image.resize(..., box=...)``):
the same result as "shorter side to ``size``, then centre-crop", without rounding an
intermediate size. LANCZOS because most photos are shrunk, and it is the sharpest of
Pillow's antialiasing filters; small images are enlarged with it too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError, GanforgeError
from .base import ImageDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
RESAMPLE = Image.Resampling.LANCZOS

# What Pillow raises for files it cannot decode: plugins use OSError (truncated data),
# SyntaxError (malformed headers), ValueError/EOFError (bad fields), DecompressionBombError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _image_files(root: Path) -> list[Path]:
    files = [p for p in root.rglob("*")
             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    # sorted by relative path so the order (and hence the indices) is the same on every
    # machine, whatever order the filesystem lists entries in
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not a PNG or JPEG image Pillow can read"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Transparent pixels over white: their stored colour is arbitrary (often black)."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba)
    return img


def _load_square(path: Path, size: int, mode: str) -> np.ndarray:
    """One image as uint8 (size, size) for mode L or (size, size, 3) for RGB."""
    with Image.open(path) as img:
        # camera JPEGs store "rotate me" in EXIF rather than rotating the pixels
        img = ImageOps.exif_transpose(img)
        img = _flatten_alpha(img).convert(mode)
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        img = img.resize((size, size), RESAMPLE, box=(left, top, left + side, top + side))
        return np.asarray(img, dtype=np.uint8)


def load_image_folder(root: str | Path, *, size: int, channels: int, labels: bool = False,
                      strict: bool = False, quiet: bool = False) -> ImageDataset:
    """All .png/.jpg/.jpeg files under ``root`` (recursively) as uint8 (N, C, size, size).

    ``channels`` 1 converts to greyscale (Pillow's "L": ITU-R 601 luma), 3 to RGB. With
    ``labels``, each first-level subfolder of ``root`` is a class (sorted names -> 0..K-1,
    kept in ``info["classes"]``) and images directly in ``root`` are an error. Files Pillow
    cannot read are skipped with one line on stderr (unless ``quiet``), or raise DataError
    with ``strict``.
    """
    if channels not in (1, 3):
        raise GanforgeError(f"image folder: channels must be 1 or 3, got {channels}")
    if size < 1:
        raise GanforgeError(f"image folder: size must be positive, got {size}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root}: no such directory")
    if not root.is_dir():
        raise DataError(f"image folder {root}: not a directory")
    files = _image_files(root)
    if not files:
        raise DataError(f"image folder {root}: no .png, .jpg or .jpeg files found")

    classes: list[str] = []
    if labels:
        loose = [p for p in files if p.parent == root]
        if loose:
            raise DataError(
                f"image folder {root}: with labels, every image must be in a class subfolder, "
                f"but {loose[0]} is directly in it"
            )
        # classes come from the file list, before decoding, so a class whose files all turn
        # out unreadable still keeps its number and the others do not shift
        classes = sorted({p.relative_to(root).parts[0] for p in files})
    class_of = {name: i for i, name in enumerate(classes)}

    mode = "L" if channels == 1 else "RGB"
    images = np.empty((len(files), channels, size, size), dtype=np.uint8)
    ys: list[int] = []
    skipped: list[tuple[Path, str]] = []
    for path in files:
        try:
            arr = _load_square(path, size, mode)
        except _DECODE_ERRORS as exc:
            if strict:
                raise DataError(f"{path}: unreadable image ({_reason(exc)})") from None
            skipped.append((path, _reason(exc)))
            continue
        i = len(ys)
        images[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
        ys.append(class_of[path.relative_to(root).parts[0]] if labels else 0)

    if skipped and not quiet:
        first, why = skipped[0]
        noun = "image" if len(skipped) == 1 else "images"
        print(f"ganforge: skipped {len(skipped)} unreadable {noun} in {root}: "
              f"first: {first} ({why})", file=sys.stderr)
    n = len(ys)
    if n == 0:
        first, why = skipped[0]
        raise DataError(f"image folder {root}: none of its {len(files)} image files could be "
                        f"read; first: {first} ({why})")

    info = {
        "dataset": "image-folder", "root": str(root), "n": n, "size": size,
        "channels": channels, "resample": "lanczos", "skipped": len(skipped),
    }
    if labels:
        info["classes"] = classes
    return ImageDataset(
        name="image-folder", shape=(channels, size, size), info=info,
        # copy only when files were skipped: the unused tail would otherwise stay allocated
        images=torch.from_numpy(images if n == len(files) else images[:n].copy()),
        labels=torch.tensor(ys, dtype=torch.int64) if labels else None,
    )


__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]
