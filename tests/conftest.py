"""Shared test helpers: where the read-only datasets are, and an offline, isolated cache."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    """``$GANFORGE_SHARED_DATA``, else the ``shared/data`` beside the repository (as in CI)."""
    env = os.environ.get("GANFORGE_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_files(subdir: str, *names: str) -> list[Path]:
    paths = [shared_data_dir() / subdir / name for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(
            f"shared data not found: {', '.join(missing)} "
            "(set GANFORGE_SHARED_DATA or place shared/data beside the repository)"
        )
    return paths


def closed_port_url() -> str:
    """A 127.0.0.1 URL nothing listens on: downloads fail at once, never touching the network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test reads the user's cache or reaches past this machine."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("GANFORGE_MIRRORS", closed_port_url())
    monkeypatch.delenv("GANFORGE_DATA", raising=False)
