"""Shared test helpers: where the read-only datasets are, and an offline, isolated cache."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
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


# Three tiny trained generators that the export and latent-walk tests share.
GENERATOR_RUNS = {
    "mlp": dict(preset="mlp-mnist"),                                   # uniform prior, sigmoid
    # DCGAN: normal prior, BatchNorm, tanh; conditional, with an EMA generator
    "cond": dict(preset="dcgan-mnist-conditional", ema=1.0, g_hidden=8, d_hidden=8,
                 batch_size=16),
    "toy": dict(preset="toy-1d", dataset="gaussian-1d"),               # 1-D outputs
}


@pytest.fixture(scope="session")
def generator_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run folders of GENERATOR_RUNS, trained for two iterations once per session."""
    import ganforge

    root = tmp_path_factory.mktemp("generator-runs")
    tiny = dict(dataset="mnist-sample", steps=2, log_every=1, sample_every=2, ckpt_every=2,
                progress=False)
    with pytest.MonkeyPatch.context() as mp:  # the autouse isolation is per test; this is not
        mp.setenv("GANFORGE_CACHE", str(root / "cache"))
        mp.setenv("GANFORGE_MIRRORS", closed_port_url())
        for name, kw in GENERATOR_RUNS.items():
            ganforge.train(**{**tiny, **kw, "out": str(root / name)})
    return {name: str(root / name) for name in GENERATOR_RUNS}


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder without logging each request to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_directory(directory: Path,
                    handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 for ``directory``; yields its base URL (ending "/")."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)



def state_tensors(state, prefix: str = ""):
    """Every tensor of a nested checkpoint state, by its path (``.G.net.0.weight``)."""
    import torch

    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for k, v in state.items():
            yield from state_tensors(v, f"{prefix}.{k}")
    elif isinstance(state, list | tuple):
        for i, v in enumerate(state):
            yield from state_tensors(v, f"{prefix}.{i}")
