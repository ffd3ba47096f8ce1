"""Bad input, one table row each: exit code 2, a one-line error that names the file or option,
no traceback, and an existing run folder left byte for byte (and mtime for mtime) as it was.

Rows that read data, config files or checkpoints run ``python -m ganforge`` in a subprocess, so
"no traceback" is checked on the real stderr; rows that only fail validation call
``ganforge.cli.main`` in-process (a subprocess costs ~2 s of torch import each).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import ganforge
from ganforge import checkpoint
from ganforge.cli import build_parser, main
from ganforge.config import resolve
from ganforge.models import build_models

SRC = Path(__file__).resolve().parents[1] / "src"
IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
FINAL = Path("checkpoints") / "final.safetensors"


def has_resume_flag() -> bool:
    """Whether ``ganforge train --help`` offers ``--resume`` (the resume rows need it)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args(["train", "--help"])
    return "--resume" in out.getvalue()


# --- building bad files ----------------------------------------------------------------------
def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    dims = b"".join(struct.pack(">I", d) for d in arr.shape)
    return bytes([0, 0, type_code, arr.ndim]) + dims + arr.tobytes()


def write_mnist(tmp: Path, n_images: int = 60, n_labels: int = 60, side: int = 28,
                type_code: int = 0x08) -> Path:
    """``tmp/data`` with gzipped IDX files (random pixels, so gzip cannot squeeze them away)."""
    d = tmp / "data"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, side, side), dtype=np.uint8)
    (d / IMAGES).write_bytes(gzip.compress(idx_bytes(images, type_code)))
    (d / LABELS).write_bytes(gzip.compress(idx_bytes(rng.integers(0, 10, n_labels))))
    return d


def truncated_gz(tmp: Path, run: Path) -> None:
    p = write_mnist(tmp) / IMAGES
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def text_named_gz(tmp: Path, run: Path) -> None:
    (write_mnist(tmp) / IMAGES).write_bytes(b"<html>404 Not Found</html>\n")


def corrupt_gz(tmp: Path, run: Path) -> None:
    (write_mnist(tmp) / IMAGES).write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)


def wrong_magic(tmp: Path, run: Path) -> None:
    write_mnist(tmp, type_code=0x42)


def count_mismatch(tmp: Path, run: Path) -> None:
    write_mnist(tmp, n_images=60, n_labels=59)


def cifar_sized(tmp: Path, run: Path) -> None:
    write_mnist(tmp, side=32)


def cifar_python_archive(tmp: Path, run: Path) -> None:
    (tmp / "data").mkdir()
    (tmp / "data" / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"pickles"))


def cifar_truncated_batch(tmp: Path, run: Path) -> None:
    (tmp / "data").mkdir()
    for i in range(1, 6):  # the first batch is read (and refused) first
        (tmp / "data" / f"data_batch_{i}.bin").write_bytes(bytes(3073 * 10_000 - 1))


def empty_data_dir(tmp: Path, run: Path) -> None:
    (tmp / "data").mkdir()


def config_file(name: str, text: str) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, run: Path) -> None:
        (tmp / name).write_text(text)

    return setup


class MarkerPayload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears iff pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_checkpoint(tmp: Path, run: Path) -> None:
    control = tmp / "control"  # the payload is live: unpickling it does create a file
    pickle.loads(pickle.dumps(MarkerPayload(control))).close()
    assert control.exists()
    (run / FINAL).write_bytes(pickle.dumps(MarkerPayload(tmp / "pwned")))


def truncated_checkpoint(tmp: Path, run: Path) -> None:
    data = (run / FINAL).read_bytes()
    (run / FINAL).write_bytes(data[: len(data) // 2])


def edit_checkpoint(edit: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    """Apply ``edit`` to the run's checkpoints (final and latest) and save them back."""
    def setup(tmp: Path, run: Path) -> None:
        for path in (run / "checkpoints").glob("*.safetensors"):
            state = checkpoint.load(path)
            edit(state)
            checkpoint.save(path, state)

    return setup


def wider_weights(state: dict) -> None:
    """G and D of another model (32 -> 64 hidden units) under the run's own config."""
    cfg = resolve("toy-1d", overrides={"g_hidden": 64, "d_hidden": 64})
    G, D = build_models(cfg, tuple(state["data_shape"]), 0)
    state["G"], state["D"] = dict(G.state_dict()), dict(D.state_dict())


def plain_safetensors(tmp: Path, run: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(run / FINAL))


def not_a_run(tmp: Path, run: Path) -> None:
    (tmp / "notarun").mkdir()
    (tmp / "notarun" / "notes.txt").write_text("not a run\n")


# --- the table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    argv: tuple[str, ...]  # "{tmp}" is the test's folder, "{run}" a copy of a real run folder
    names: tuple[str, ...]  # what the message must mention: the file, option or value
    setup: Callable[[Path, Path], None] | None = None
    subprocess: bool = True  # False: ganforge.cli.main in-process (pure validation)
    progress: bool = False  # "downloading ..." lines may come before the error
    absent: tuple[str, ...] = ()  # files that must not exist afterwards


def train(*extra: str, preset: str = "toy-1d") -> tuple[str, ...]:
    """A short training into the existing run folder, replacing it: bad input must stop it
    before anything there is touched."""
    return ("train", "--preset", preset, "--steps", "5", *extra, "--out", "{run}", "--overwrite")


def mnist(*extra: str) -> tuple[str, ...]:
    return train("--data-dir", "{tmp}/data", *extra, preset="mlp-mnist")


def cifar() -> tuple[str, ...]:
    return train("--data-dir", "{tmp}/data", preset="dcgan-cifar10")


def in_process(argv: tuple[str, ...], *names: str, **kw) -> Row:
    return Row(argv, names, subprocess=False, **kw)


def bad_config(name: str, text: str, *names: str) -> Row:
    """``ganforge train --config {tmp}/NAME`` with ``text`` in that file; the error names the
    file and ``names``."""
    path = "{tmp}/" + name
    return Row(("train", "--config", path, "--out", "{run}", "--overwrite"), (path, *names),
               config_file(name, text))


BAD_IMAGES = "{tmp}/data/" + IMAGES
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
needs_resume = pytest.mark.skipif(not has_resume_flag(),
                                  reason="`ganforge train --resume` is not there yet")


TABLE = [
    # data: MNIST IDX files
    pytest.param(Row(train("--data-dir", "/nonexistent", preset="mlp-mnist"),
                     ("--data-dir", "/nonexistent")),
                 id="data-dir-missing"),
    pytest.param(Row(mnist(), ("{tmp}/data", IMAGES.removesuffix(".gz")), empty_data_dir,
                     progress=True), id="data-dir-empty"),
    pytest.param(Row(mnist(), (BAD_IMAGES, "truncated gzip"), truncated_gz), id="idx-gz-truncated"),
    pytest.param(Row(mnist(), (BAD_IMAGES, "not gzip"), text_named_gz), id="idx-gz-not-gzip"),
    pytest.param(Row(mnist(), (BAD_IMAGES, "corrupt gzip"), corrupt_gz), id="idx-gz-corrupt"),
    pytest.param(Row(mnist(), (BAD_IMAGES, "not an IDX file"), wrong_magic), id="idx-wrong-magic"),
    pytest.param(Row(mnist(), (BAD_IMAGES, "{tmp}/data/" + LABELS, "60 images", "59 labels"),
                     count_mismatch), id="idx-count-mismatch"),
    pytest.param(Row(mnist(), (BAD_IMAGES, "(28, 28)", "(32, 32)"), cifar_sized),
                 id="idx-32x32-for-mnist"),
    # data: CIFAR-10
    pytest.param(Row(cifar(), ("{tmp}/data/cifar-10-python.tar.gz", "cifar-10-binary.tar.gz",
                               "https://www.cs.toronto.edu/~kriz/cifar.html"),
                     cifar_python_archive), id="cifar-python-archive"),
    pytest.param(Row(cifar(), ("{tmp}/data/data_batch_1.bin", "3073-byte records"),
                     cifar_truncated_batch), id="cifar-truncated-batch"),
    # config files
    pytest.param(bad_config("c.toml", 'preset = "toy-1d"\nsteps = 5\nbogus = 1\n', "'bogus'"),
                 id="toml-unknown-key"),
    pytest.param(bad_config("c.json", '{"preset": "toy-1d", "steps": 5, "bogus": 1}', "'bogus'"),
                 id="json-unknown-key"),
    pytest.param(bad_config("c.toml", 'preset = "toy-1d"\nsteps = "ten"\n', "'steps'", "'ten'"),
                 id="toml-wrong-type"),
    pytest.param(bad_config("c.json", '{"preset": "toy-1d", "batch_size": [128]}',
                            "'batch_size'", "[128]"), id="json-wrong-type"),
    pytest.param(bad_config("c.toml", 'preset = "toy-1d"\nsteps = = 5\n[[[\n', "TOML", "line 2"),
                 id="toml-broken"),
    pytest.param(bad_config("c.json", '{"preset": "toy-1d", "steps": ', "JSON"),
                 id="json-broken"),
    pytest.param(in_process(("train", "--config", "{tmp}/none.toml", "--out", "{run}"),
                            "{tmp}/none.toml", "not found"), id="config-missing"),
    pytest.param(in_process(("train", "--config", "{tmp}/c.yaml", "--out", "{run}"),
                            "{tmp}/c.yaml", ".toml or .json",
                            setup=config_file("c.yaml", "steps: 5\n")), id="config-yaml"),
    # sizes
    pytest.param(in_process(train("--batch-size", "0"), "--batch-size", "0"), id="batch-size-0"),
    pytest.param(in_process(train("--steps", "-5"), "--steps", "-5"), id="steps-negative"),
    pytest.param(in_process(train("--set", "z_dim=0"), "z-dim", "0"), id="z-dim-0"),
    pytest.param(in_process(train("--set", "g_hidden=-1"), "g-hidden", "-1"),
                 id="g-hidden-negative"),
    pytest.param(in_process(train("--set", "d_hidden=0"), "d-hidden", "0"), id="d-hidden-0"),
    pytest.param(in_process(train("--set", "g_lr=0"), "g-lr", "0"), id="g-lr-0"),
    pytest.param(in_process(train("--set", "g_betas=0.5"), "g_betas", "0.5"), id="g-betas-one"),
    pytest.param(in_process(train("--set", "toy_stds=-1"), "toy_stds", "-1"),
                 id="toy-stds-negative"),
    pytest.param(in_process(train("--set", "steps=ten"), "'steps'", "'ten'"), id="set-steps-ten"),
    # argparse types --steps itself; ganforge's parser reports its errors in one line too
    pytest.param(in_process(train("--steps", "ten"), "--steps", "'ten'"),
                 id="flag-steps-ten"),
    # unknown names
    pytest.param(in_process(train(preset="nope"), "preset", "'nope'"), id="preset-nope"),
    pytest.param(in_process(train("--dataset", "nope"), "dataset", "'nope'"), id="dataset-nope"),
    pytest.param(in_process(train("--set", "objective=nope"), "objective", "'nope'"),
                 id="objective-nope"),
    pytest.param(in_process(train("--set", "model=nope"), "model", "'nope'"), id="model-nope"),
    pytest.param(in_process(train("--set", "init=nope"), "init", "'nope'"), id="init-nope"),
    pytest.param(in_process(train("--set", "prior=nope"), "prior", "'nope'"), id="prior-nope"),
    pytest.param(in_process(train("--metrics", "nope"), "metric", "'nope'"), id="metrics-nope"),
    pytest.param(in_process(train("--set", "features=nope"), "feature network", "'nope'"),
                 id="features-nope"),
    pytest.param(in_process(train("--set", "nope=1"), "config field", "'nope'"),
                 id="set-unknown-field"),
    pytest.param(in_process(train("--set", "z_dim"), "--set", "'z_dim'"), id="set-no-value"),
    pytest.param(in_process(train("--device", "gpu"), "--device", "'gpu'"), id="device-gpu"),
    pytest.param(in_process(train("--device", "cuda"), "--device cuda", "CUDA"),
                 id="device-cuda", marks=no_cuda),
    # combinations that only fail at the first evaluation unless checked up front
    pytest.param(in_process(train("--eval-every", "2", "--metrics", "modes"), "'modes'",
                            "gaussian-1d"), id="eval-every-modes-on-1d"),
    pytest.param(in_process(train("--eval-every", "2", "--metrics", "fid", "--keep-best", "kid"),
                            "--keep-best kid"), id="keep-best-not-evaluated"),
    pytest.param(in_process(train("--cuda-graphs", "on"), "--cuda-graphs on"),
                 id="cuda-graphs-on-cpu", marks=no_cuda),
    pytest.param(in_process(train("--set", "backward=sideways"), "backward", "'sideways'"),
                 id="backward-nope"),
    pytest.param(in_process(train("--set", "backward=manual", "--set", "spectral_norm=true"),
                            "backward=manual", "spectral norm"), id="backward-manual-sn"),
    pytest.param(in_process(train("--dataset", "mnist-sample", "--eval-every", "2", "--metrics",
                                  "fid", preset="mlp-mnist"), "lenet-mnist", "classifier"),
                 id="eval-every-without-classifier"),
    # run folders
    pytest.param(in_process(("train", "--preset", "toy-1d", "--steps", "5", "--out", "{run}"),
                            "--out {run}", "--overwrite"), id="out-not-empty"),
    pytest.param(in_process(("train", "--preset", "toy-1d", "--out", "{run}/config.json",
                             "--overwrite"), "{run}/config.json", "not a folder"),
                 id="out-is-a-file"),
    pytest.param(Row(("sample", "{tmp}/notarun", "--out", "{tmp}/s.png"),
                     ("{tmp}/notarun", "not a ganforge run folder"), not_a_run,
                     absent=("{tmp}/s.png",)), id="sample-not-a-run"),
    pytest.param(in_process(("sample", "{tmp}/nowhere", "--out", "{tmp}/s.png"), "{tmp}/nowhere"),
                 id="sample-no-such-path"),
    pytest.param(in_process(("sample", "{run}", "--n", "0", "--out", "{tmp}/s.png"), "--n", "0"),
                 id="sample-n-0"),
    pytest.param(in_process(("sample", "{run}", "--class", "3", "--out", "{tmp}/s.png"),
                            "not conditional"), id="sample-class-unconditional"),
    # checkpoints
    pytest.param(Row(("sample", "{run}", "--out", "{tmp}/s.png"),
                     ("{run}/checkpoints/final.safetensors", "pickle"), pickle_checkpoint,
                     absent=("{tmp}/pwned", "{tmp}/s.png")), id="ckpt-pickle"),
    pytest.param(Row(("sample", "{run}", "--out", "{tmp}/s.png"),
                     ("{run}/checkpoints/final.safetensors", "not a ganforge checkpoint"),
                     truncated_checkpoint, absent=("{tmp}/s.png",)), id="ckpt-truncated"),
    pytest.param(Row(("sample", "{run}", "--out", "{tmp}/s.png"),
                     ("{run}/checkpoints/final.safetensors", "do not fit"),
                     edit_checkpoint(wider_weights), absent=("{tmp}/s.png",)),
                 id="ckpt-other-model"),
    pytest.param(Row(("sample", "{run}", "--out", "{tmp}/s.png"),
                     ("{run}/checkpoints/final.safetensors", "do not fit"),
                     edit_checkpoint(lambda s: s["config"].update(g_hidden=64)),
                     absent=("{tmp}/s.png",)), id="ckpt-config-edited"),
    pytest.param(Row(("sample", "{run}", "--out", "{tmp}/s.png"),
                     ("{run}/checkpoints/final.safetensors", "'G'"),
                     edit_checkpoint(lambda s: s.pop("G")), absent=("{tmp}/s.png",)),
                 id="ckpt-without-G"),
    pytest.param(Row(("sample", "{run}", "--out", "{tmp}/s.png"),
                     ("{run}/checkpoints/final.safetensors", "ganforge metadata"),
                     plain_safetensors, absent=("{tmp}/s.png",)), id="ckpt-plain-safetensors"),
    # eval and sweep
    pytest.param(Row(("eval", "{run}", "--metrics", "fid,nope"), ("metric", "'nope'"),
                     absent=("{run}/eval.json",)), id="eval-unknown-metric"),
    pytest.param(in_process(("eval", "{run}", "--metrics", "fid", "--features", "nope"),
                            "feature network", "'nope'", absent=("{run}/eval.json",)),
                 id="eval-unknown-features"),
    pytest.param(in_process(("eval", "{run}", "--metrics", "modes"), "'modes'", "gaussian-1d",
                            absent=("{run}/eval.json",)), id="eval-modes-on-1d"),
    pytest.param(in_process(("eval", "{run}", "--metrics", "fid", "--n", "1"), "--n", "1",
                            absent=("{run}/eval.json",)), id="eval-n-1"),
    pytest.param(in_process(("sweep", "--preset", "toy-1d", "--runs", "0", "--out", "{run}",
                             "--overwrite"), "--runs", "0"), id="sweep-runs-0"),
    pytest.param(in_process(("sweep", "--preset", "toy-1d", "--vary", "beta=1,2", "--out",
                             "{run}", "--overwrite"), "--vary beta"), id="sweep-vary-unknown"),
    pytest.param(in_process(("sweep", "--preset", "toy-1d", "--set", "pac=2",
                             "--runs", "2", "--out", "{run}", "--overwrite"), "sweep",
                            "pac do not stack"), id="sweep-remedy-not-stackable"),
    # resume (rows guarded by the flag's presence in `ganforge train --help`)
    pytest.param(Row(("train", "--resume", "{tmp}/notarun"), ("{tmp}/notarun",), not_a_run),
                 id="resume-not-a-run", marks=needs_resume),
    pytest.param(Row(("train", "--resume", "{run}", "--steps", "40"), ("{run}", "do not fit"),
                     edit_checkpoint(wider_weights)), id="resume-other-model", marks=needs_resume),
]


# --- running a row ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real, tiny run folder (final and latest checkpoints, samples, metrics)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    ganforge.train(preset="toy-1d", steps=20, log_every=10, sample_every=10, ckpt_every=10,
                   out=str(out), progress=False)
    return out


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root``: (sha256 of its bytes, or "dir"; mtime in ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        digest = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(root))] = (digest, p.stat().st_mtime_ns)
    return out


def run_ganforge(argv: list[str], row: Row, cwd: Path,
                 capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    if row.subprocess:
        env = {**os.environ, "PYTHONPATH": str(SRC)}  # with the test's GANFORGE_CACHE/MIRRORS
        r = subprocess.run([sys.executable, "-m", "ganforge", *argv], capture_output=True,
                           text=True, env=env, cwd=cwd, timeout=120)
        return r.returncode, r.stderr
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("row", TABLE)
def test_bad_input(row: Row, trained_run: Path, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)  # a fresh copy each: a row that harms it harms only it
    if row.setup:
        row.setup(tmp_path, run)
    fill = lambda s: s.format(tmp=tmp_path, run=run)  # noqa: E731
    before = snapshot(run)
    monkeypatch.chdir(tmp_path)  # a default --out (runs/...) would land here, not in the repo

    code, err = run_ganforge([fill(a) for a in row.argv], row, tmp_path, capsys)

    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    if row.progress:
        lines = [line for line in lines if not line.startswith("downloading ")]
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    message = lines[0]
    assert message.startswith("ganforge: error: "), err
    assert code == 2, err
    for text in row.names:
        assert fill(text) in message, f"{fill(text)!r} not in {message!r}"
    after = snapshot(run)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the run folder changed: {changed}"
    for path in row.absent:
        assert not Path(fill(path)).exists(), f"{fill(path)} was created"


def test_the_same_command_without_the_bad_input_replaces_the_run(
        trained_run: Path, tmp_path: Path) -> None:
    """The control: without the bad part, a row's command does rewrite the run folder, so the
    table's "unchanged" checks are not passing vacuously."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    assert main([a.format(run=run) for a in train()]) == 0
    assert snapshot(run) != before
