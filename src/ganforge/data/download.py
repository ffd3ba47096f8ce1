"""Checksum-verified downloads with mirror fallback, using only the standard library."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ganforge.distributed import is_main_process
from ganforge.errors import DownloadError

__all__ = [
    "FASHION_FILES",
    "FASHION_MIRRORS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "download_file",
    "md5sum",
    "mirrors_from_env",
    "offline",
]

MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

FASHION_MIRRORS: list[str] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
]

FASHION_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

MIRRORS_ENV = "GANFORGE_MIRRORS"
OFFLINE_ENV = "GANFORGE_OFFLINE"  # 1: never try the network (also `ganforge --offline`)

_CHUNK = 1 << 20


def md5sum(path: str | Path) -> str:
    """Hex MD5 of a file, read in chunks so large files do not need to fit in memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def mirrors_from_env(default: Sequence[str]) -> list[str]:
    """Mirror base URLs from $GANFORGE_MIRRORS (comma-separated), else `default`."""
    raw = os.environ.get(MIRRORS_ENV, "")
    mirrors = [m.strip() for m in raw.split(",") if m.strip()]
    return mirrors or list(default)


def offline() -> bool:
    """Whether $GANFORGE_OFFLINE asks for no network access at all."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _BadContent(Exception):
    """The server answered, but not with the expected bytes."""


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        # URLError wraps the socket error; its own str() adds a noisy "<urlopen error ...>".
        exc = exc.reason if isinstance(exc.reason, BaseException) else Exception(exc.reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed after {len(exc.partial)} bytes"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _fetch(url: str, md5: str, dest_dir: Path, final: Path, timeout: float,
           announce: bool) -> None:
    # The temporary file lives in dest_dir so os.replace is an atomic rename on one
    # filesystem: readers see either no file or the complete, verified one.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.part-", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                # said once the server answered: an unreachable mirror prints nothing, and
                # the caller says once that the data could not be fetched
                if announce:
                    print(f"downloading {final.name} from {url}", file=sys.stderr)
                announced = resp.headers.get("Content-Length")
                while chunk := resp.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        # read(n) returns a short body without raising when the server hangs up early;
        # the MD5 would catch it, but "closed after N of M bytes" says what went wrong.
        if announced is not None and announced.isdigit() and received != int(announced):
            raise _BadContent(f"connection closed after {received} of {announced} bytes")
        got = digest.hexdigest()
        if got != md5:
            raise _BadContent(f"MD5 mismatch (got {got})")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def download_file(
    filename: str,
    md5: str,
    mirrors: Sequence[str],
    dest_dir: str | Path,
    *,
    timeout: float = 30.0,
    quiet: bool = False,
) -> Path:
    """Download `filename` from the first mirror that serves it with the expected MD5.

    Returns dest_dir/filename. A file already there with the right MD5 is returned without
    any network access. Raises DownloadError (one line, listing each mirror and why it
    failed) when no mirror works; the final path is then never a partial or unverified file
    written by this call, and no temporary files are left behind.
    """
    md5 = md5.lower()
    dest_dir = Path(dest_dir)
    final = dest_dir / filename
    if final.is_file() and md5sum(final) == md5:
        return final
    if offline():
        raise DownloadError(f"not downloading {filename}: offline ({OFFLINE_ENV}=1)")
    if not mirrors:
        raise DownloadError(f"cannot download {filename}: no mirrors given")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot download {filename}: cannot create {dest_dir} ({_short_reason(exc)})"
        ) from None

    failures: list[str] = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + filename
        try:
            _fetch(url, md5, dest_dir, final, timeout, announce=not quiet and is_main_process())
        except (
            _BadContent,
            OSError,  # includes URLError, HTTPError, TimeoutError
            http.client.HTTPException,  # e.g. IncompleteRead when the server hangs up early
            ValueError,  # malformed URL or unknown scheme in a user-supplied mirror
        ) as exc:
            failures.append(f"{url}: {_short_reason(exc)}")
            continue
        return final
    raise DownloadError(
        f"could not download {filename} (expected MD5 {md5}) from {len(failures)} "
        f"mirror(s): {'; '.join(failures)}"
    )
