"""download_file against a real local HTTP server serving copies of the MNIST test files."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QuietHandler, serve_directory, shared_files

from ganforge.data.download import (
    FASHION_MIRRORS,
    MNIST_FILES,
    MNIST_MIRRORS,
    download_file,
    md5sum,
    mirrors_from_env,
)
from ganforge.errors import DownloadError

IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"
TIMEOUT = 2.0


def shared_mnist_dir() -> Path:
    return shared_files("mnist", IMAGES, LABELS)[0].parent


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        # /hangup/<name>: promise the full length, send half, close. Exercises the
        # client seeing a short body rather than an HTTP error.
        if self.path.startswith("/hangup/"):
            body = (Path(self.directory) / "good" / self.path.rsplit("/", 1)[1]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a server with good/, truncated/ and corrupt/ copies of the files."""
    src = shared_mnist_dir()
    root = tmp_path_factory.mktemp("www")
    for sub in ("good", "truncated", "corrupt"):
        (root / sub).mkdir()
    for name in (IMAGES, LABELS):
        data = (src / name).read_bytes()
        (root / "good" / name).write_bytes(data)
        (root / "truncated" / name).write_bytes(data[: len(data) // 3])
        # Same length, one byte flipped: only the checksum can tell.
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        (root / "corrupt" / name).write_bytes(bytes(flipped))
    with serve_directory(root, _Handler) as url:
        yield url.rstrip("/")


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def silent_server_url() -> Iterator[str]:
    """Accepts TCP connections (kernel backlog) but never answers: forces a timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


def _only(dest: Path, name: str) -> None:
    assert sorted(p.name for p in dest.iterdir()) == [name]


def test_good_mirror(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "new" / "dir"
    path = download_file(IMAGES, MNIST_FILES[IMAGES], [server + "/good/"], dest, timeout=TIMEOUT)
    assert path == dest / IMAGES
    assert path.read_bytes() == (shared_mnist_dir() / IMAGES).read_bytes()
    _only(dest, IMAGES)
    err = capsys.readouterr().err
    assert err == f"downloading {IMAGES} from {server}/good/{IMAGES}\n"


def test_quiet_prints_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download_file(LABELS, MNIST_FILES[LABELS], [server + "/good"], tmp_path, quiet=True)
    assert capsys.readouterr().err == ""
    assert md5sum(tmp_path / LABELS) == MNIST_FILES[LABELS]


def test_bad_md5_leaves_nothing(server: str, tmp_path: Path) -> None:
    wrong = "0" * 32
    with pytest.raises(DownloadError) as info:
        download_file(LABELS, wrong, [server + "/good/"], tmp_path, timeout=TIMEOUT, quiet=True)
    message = str(info.value)
    assert "\n" not in message
    assert LABELS in message and "MD5 mismatch" in message and wrong in message
    assert f"{server}/good/{LABELS}" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("first", ["closed_port", "http_404", "timeout"])
def test_falls_back_to_second_mirror(
    server: str,
    tmp_path: Path,
    closed_port_url: str,
    silent_server_url: str,
    capsys: pytest.CaptureFixture[str],
    first: str,
) -> None:
    first_url = {
        "closed_port": closed_port_url,
        "http_404": server + "/missing/",
        "timeout": silent_server_url,
    }[first]
    path = download_file(
        LABELS, MNIST_FILES[LABELS], [first_url, server + "/good/"], tmp_path, timeout=0.5
    )
    assert md5sum(path) == MNIST_FILES[LABELS]
    _only(tmp_path, LABELS)
    # only the mirror that answered is announced: a dead one adds no line of its own
    assert capsys.readouterr().err == f"downloading {LABELS} from {server}/good/{LABELS}\n"


@pytest.mark.parametrize("bad", ["truncated", "corrupt", "hangup"])
def test_bad_content_then_good_mirror(server: str, tmp_path: Path, bad: str) -> None:
    mirrors = [f"{server}/{bad}/", f"{server}/good/"]
    path = download_file(IMAGES, MNIST_FILES[IMAGES], mirrors, tmp_path, timeout=TIMEOUT)
    assert path.read_bytes() == (shared_mnist_dir() / IMAGES).read_bytes()
    _only(tmp_path, IMAGES)


def test_all_mirrors_fail_one_line_with_reasons(
    server: str, tmp_path: Path, closed_port_url: str, silent_server_url: str
) -> None:
    mirrors = [
        closed_port_url,
        server + "/missing/",
        server + "/truncated/",
        server + "/hangup/",
        silent_server_url,
    ]
    with pytest.raises(DownloadError) as info:
        download_file(IMAGES, MNIST_FILES[IMAGES], mirrors, tmp_path, timeout=0.5, quiet=True)
    message = str(info.value)
    assert "\n" not in message
    assert IMAGES in message
    for base in mirrors:
        assert base.rstrip("/") + "/" + IMAGES in message
    for reason in (
        "connection refused",
        "HTTP 404",
        "MD5 mismatch",
        "connection closed after",
        "timed out",
    ):
        assert reason in message
    assert list(tmp_path.iterdir()) == []


def test_existing_good_file_is_not_downloaded_again(
    tmp_path: Path, closed_port_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(shared_mnist_dir() / LABELS, tmp_path / LABELS)
    # The only mirror is unreachable: success proves no download was attempted.
    path = download_file(LABELS, MNIST_FILES[LABELS].upper(), [closed_port_url], tmp_path)
    assert path == tmp_path / LABELS
    assert capsys.readouterr().err == ""


def test_existing_bad_file_is_replaced(server: str, tmp_path: Path) -> None:
    (tmp_path / LABELS).write_bytes(b"stale partial download")
    path = download_file(LABELS, MNIST_FILES[LABELS], [server + "/good/"], tmp_path, quiet=True)
    assert md5sum(path) == MNIST_FILES[LABELS]
    _only(tmp_path, LABELS)


def test_existing_bad_file_is_never_returned(tmp_path: Path, closed_port_url: str) -> None:
    (tmp_path / LABELS).write_bytes(b"stale partial download")
    with pytest.raises(DownloadError, match="connection refused"):
        download_file(LABELS, MNIST_FILES[LABELS], [closed_port_url], tmp_path, quiet=True)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_malformed_mirror_url_is_a_download_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="not-a-url"):
        download_file(LABELS, MNIST_FILES[LABELS], ["not-a-url"], tmp_path, quiet=True)
    path = download_file(
        LABELS, MNIST_FILES[LABELS], ["not-a-url", server + "/good/"], tmp_path, quiet=True
    )
    assert md5sum(path) == MNIST_FILES[LABELS]


def test_no_mirrors(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=LABELS):
        download_file(LABELS, MNIST_FILES[LABELS], [], tmp_path)


def test_md5sum_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert md5sum(path) == hashlib.md5(data).hexdigest()
    assert md5sum(str(path)) == hashlib.md5(data).hexdigest()


def test_shared_files_match_published_md5() -> None:
    folder = shared_mnist_dir()
    for name in (IMAGES, LABELS):
        assert md5sum(folder / name) == MNIST_FILES[name]


def test_mirrors_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANFORGE_MIRRORS", raising=False)
    got = mirrors_from_env(MNIST_MIRRORS)
    assert got == MNIST_MIRRORS and got is not MNIST_MIRRORS

    monkeypatch.setenv("GANFORGE_MIRRORS", " http://a/x/ ,, http://b ,")
    assert mirrors_from_env(FASHION_MIRRORS) == ["http://a/x/", "http://b"]

    monkeypatch.setenv("GANFORGE_MIRRORS", " , ")
    assert mirrors_from_env(FASHION_MIRRORS) == FASHION_MIRRORS
