"""An unreachable network is said once, by rank 0 only; --offline / GANFORGE_OFFLINE=1 skips
the attempt."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QuietHandler, closed_port_url, serve_directory, shared_files

from ganforge.cli import build_parser, main
from ganforge.data.download import MNIST_FILES, download_file
from ganforge.data.mnist import load_idx_dataset
from ganforge.errors import DownloadError

LABELS = "t10k-labels-idx1-ubyte.gz"


class CountingHandler(QuietHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        CountingHandler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server() -> Iterator[str]:
    CountingHandler.requests = []
    folder = shared_files("mnist", LABELS)[0].parent
    with serve_directory(folder, CountingHandler) as url:
        yield url


def test_dead_mirrors_say_nothing_and_fail_in_one_line(tmp_path: Path, capsys) -> None:
    dead = [closed_port_url(), closed_port_url(), closed_port_url()]
    with pytest.raises(DownloadError) as info:
        download_file(LABELS, MNIST_FILES[LABELS], dead, tmp_path, timeout=2)
    assert capsys.readouterr().err == ""  # was one "downloading ..." line per mirror
    assert "\n" not in str(info.value) and str(info.value).count("connection refused") == 3


def test_offline_makes_no_request(server: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(DownloadError, match=r"offline \(GANFORGE_OFFLINE=1\)"):
        download_file(LABELS, MNIST_FILES[LABELS], [server], tmp_path, timeout=2)
    assert CountingHandler.requests == [] and capsys.readouterr().err == ""
    monkeypatch.setenv("GANFORGE_OFFLINE", "0")  # the same server is reachable otherwise
    download_file(LABELS, MNIST_FILES[LABELS], [server], tmp_path, timeout=2)
    assert CountingHandler.requests == [f"/{LABELS}"]


@pytest.mark.parametrize("rank, lines", [(None, 1), ("0", 1), ("1", 0)])
def test_only_rank_0_announces_a_download(server, tmp_path, monkeypatch, capsys, rank, lines):
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    download_file(LABELS, MNIST_FILES[LABELS], [server], tmp_path, timeout=2)
    assert capsys.readouterr().err.count("downloading ") == lines
    assert (tmp_path / LABELS).is_file()  # every rank still gets the file


@pytest.mark.parametrize("rank, offline", [("0", False), ("0", True), ("3", False)])
def test_mnist_fallback_is_one_line_from_rank_0(monkeypatch, capsys, rank, offline) -> None:
    # conftest points $GANFORGE_MIRRORS at a closed port and the cache at an empty folder
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("GANFORGE_OFFLINE", "1" if offline else "")
    data = load_idx_dataset("mnist", data_dir=None, split="train", files=MNIST_FILES,
                            mirrors=["http://unused/"], fallback_sample=True)
    assert data.name == "mnist-sample"
    err = capsys.readouterr().err
    assert err.count("\n") == (1 if rank == "0" else 0), err
    if rank == "0":
        assert ("offline (GANFORGE_OFFLINE=1)" if offline else "no mirror reachable") in err


@pytest.mark.parametrize("argv", [["--offline", "train"], ["train", "--offline"],
                                  ["eval", "RUN", "--offline"]])
def test_offline_flag_before_or_after_the_command(argv) -> None:
    assert build_parser().parse_args(argv).offline is True
    assert build_parser().parse_args([a for a in argv if a != "--offline"]).offline is False


def test_offline_flag_sets_the_environment(monkeypatch, capsys) -> None:
    monkeypatch.setenv("GANFORGE_OFFLINE", "")  # recorded, so main's change is undone after
    assert main(["train", "--dry-run", "--steps", "3"]) == 0
    assert os.environ["GANFORGE_OFFLINE"] == ""
    assert main(["train", "--offline", "--dry-run", "--steps", "3"]) == 0
    assert os.environ["GANFORGE_OFFLINE"] == "1"  # torchrun's processes inherit it
