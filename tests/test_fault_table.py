"""The fault table: every way a run could be lost, each row a real command.

Each row asserts the exit code, a single ``ganforge: error:`` line (no traceback), and that
every file that existed before is byte-identical afterwards. Disk full and read-only are real
mounts (a small tmpfs), made when the tests run as root and skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

import ganforge
from ganforge import checkpoint
from ganforge.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
TOY = ["--preset", "toy-1d", "--log-every", "10", "--sample-every", "20", "--ckpt-every", "20"]


def ganforge_cli(*args: str) -> subprocess.CompletedProcess:
    """``ganforge ARGS`` in this process (a subprocess costs seconds of torch import); an
    exception that escapes ``main`` is reported as the traceback a user would see."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - what a user would see as a crash
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def ganforge_proc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganforge", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links as their target text) -> its content's digest."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "link:" + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("ganforge: error:")]
    assert len(errors) == 1, r.stderr[-3000:]
    for n in needles:
        assert re.search(n, errors[0]), (n, errors[0])


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished 40-iteration toy run, copied by each row."""
    out = tmp_path_factory.mktemp("base") / "run"
    r = ganforge_cli("train", *TOY, "--steps", "40", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(base_run, dst, symlinks=True)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["out"] = str(dst)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return dst


# --- tampered checkpoints --------------------------------------------------------------------
def retamper(path: Path, edit: Callable[[dict, dict], None]) -> None:
    """Rewrite a checkpoint's metadata skeleton (and tensors) with ``edit(skeleton, tensors)``;
    ``edit`` may also replace the skeleton by raw text under the key ``"raw"``."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    skeleton = json.loads(meta["state"])
    box = {"skeleton": skeleton}
    edit(box, tensors)
    meta["state"] = box["raw"] if "raw" in box else json.dumps(box["skeleton"])
    path.write_bytes(st_save(tensors, metadata=meta))


def _entry(skeleton: dict, key: str) -> list:
    return next(pair for pair in skeleton["__dict__"] if pair[0] == key)


def _drop(key: str) -> Callable[[dict, dict], None]:
    def edit(box: dict, tensors: dict) -> None:
        box["skeleton"]["__dict__"] = [p for p in box["skeleton"]["__dict__"] if p[0] != key]
    return edit


def _set(key: str, value) -> Callable[[dict, dict], None]:
    def edit(box: dict, tensors: dict) -> None:
        _entry(box["skeleton"], key)[1] = value
    return edit


def _not_json(box: dict, tensors: dict) -> None:
    box["raw"] = '{"__dict__": [["step", 40], '


def _missing_tensor(box: dict, tensors: dict) -> None:
    tensors.pop(next(k for k in tensors if k.startswith("s.")))


def _huge_z(box: dict, tensors: dict) -> None:
    cfg = _entry(box["skeleton"], "config")[1]
    _entry(cfg, "z_dim")[1] = 10**7


def _deep(box: dict, tensors: dict) -> None:
    box["raw"] = '{"__dict__": [["step", ' + "[" * 100_000 + "]" * 100_000 + "]]}"


TAMPER = {
    "state is not JSON": (_not_json, "metadata 'state' is damaged"),
    "names a missing tensor": (_missing_tensor, "metadata 'state' is damaged"),
    "no rng": (_drop("rng"), "no 'rng' field"),
    "no sampler": (_drop("sampler"), "no 'sampler' field"),
    "no step": (_drop("step"), "no 'step' field"),
    "negative step": (_set("step", -5), "field 'step' is not a non-negative integer"),
    "nested 100,000 deep": (_deep, "damaged"),
    "config with z_dim 10^7": (_huge_z, "generator weights do not fit the model in its config"),
}
# what each command needs of a checkpoint: sampling commands need no optimiser or RNG state
SAMPLING_NEEDS = {"no rng", "no sampler"}


def _commands(run: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        "sample": ["sample", str(run), "--n", "4", "--out", str(tmp / "s.png")],
        "eval": ["eval", str(run), "--metrics", "modes", "--n", "100"],
        "export": ["export", str(run), "--out", str(tmp / "g.pt2")],
        "interpolate": ["interpolate", str(run), "--out", str(tmp / "w.png")],
        "resume": ["train", "--resume", str(run), "--steps", "60"],
    }


@pytest.mark.parametrize("case", list(TAMPER))
def test_tampered_checkpoint_is_refused_by_every_reader(run, tmp_path, case):
    edit, message = TAMPER[case]
    for name in ("final.safetensors", "latest.safetensors"):
        retamper(run / "checkpoints" / name, edit)
    before = tree(run)
    for command, argv in _commands(run, tmp_path).items():
        if command != "resume" and case in SAMPLING_NEEDS:
            continue  # sampling does not read the training state
        if command == "resume" and "config" in case:
            continue  # a resume takes its config from config.json, not the checkpoint
        if command == "eval" and case not in ("state is not JSON", "config with z_dim 10^7"):
            continue  # the same loader as sample: one representative is enough for eval
        r = ganforge_cli(*argv)
        assert_one_line_error(r, message)
        assert tree(run) == before, command


# --- bad values, before anything is touched --------------------------------------------------
VALUES = {
    "g_lr=nan": (["--set", "g_lr=nan"], "expected float"),
    "seed=1e23": (["--seed", "100000000000000000000000"], "seed"),
    "n_samples=1e9": (["--set", "n_samples=1000000000"], "would need about"),
    "batch_size=1e12": (["--batch-size", "1000000000000"], "would need about"),
    "toy_stds=nan": (["--set", "toy_stds=nan"], "toy_stds"),
    "eval_n=-1": (["--set", "eval_n=-1"], "eval-n"),
    "negative seed": (["--seed", "-3"], "--seed"),
}


@pytest.mark.parametrize("case", list(VALUES))
def test_bad_values_with_overwrite_leave_the_old_run_whole(run, case):
    extra, message = VALUES[case]
    before = tree(run)
    r = ganforge_cli("train", *TOY, "--steps", "40", "--out", str(run), "--overwrite", *extra)
    assert_one_line_error(r, message)
    assert tree(run) == before


def test_config_file_nested_100000_deep(tmp_path):
    for suffix, text in ((".json", '{"toy_means": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                         (".toml", "toy_means = " + "[" * 100_000 + "]" * 100_000 + "\n")):
        p = tmp_path / f"deep{suffix}"
        p.write_text(text)
        r = ganforge_cli("train", "--config", str(p), "--dry-run")
        assert_one_line_error(r, str(p))


def test_eval_n_1e12_is_refused_before_sampling(run):
    before = tree(run)
    r = ganforge_cli("eval", str(run), "--metrics", "modes", "--n", "1000000000000")
    assert_one_line_error(r, "would need about")
    assert tree(run) == before


def test_nproc_that_does_not_divide_the_batch_is_said_once(tmp_path):
    r = ganforge_proc("train", *TOY, "--nproc", "3", "--batch-size", "64", "--steps", "5",
                     "--out", str(tmp_path / "x"))
    assert_one_line_error(r, "--nproc 3")
    assert not (tmp_path / "x").exists()


# --- --overwrite deletes only what ganforge made ----------------------------------------------
def test_overwrite_refuses_a_folder_ganforge_never_made(tmp_path):
    out = tmp_path / "mine"
    (out / "samples").mkdir(parents=True)
    (out / "checkpoints").mkdir()
    (out / "config.json").write_text('{"learning_rate": 0.1}\n')
    (out / "samples" / "step-0000000.png").write_bytes(b"my picture")
    (out / "checkpoints" / "model.pt").write_bytes(b"my model")
    before = tree(out)
    r = ganforge_cli("train", *TOY, "--steps", "20", "--out", str(out), "--overwrite")
    assert_one_line_error(r, "not a ganforge run folder")
    assert tree(out) == before


def test_overwrite_never_follows_links_and_keeps_foreign_files(run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "step-0000000.png").write_bytes(b"not the run's")
    (elsewhere / "config.json").write_text("{}")
    (run / "samples" / "notes.txt").write_text("mine")
    (run / "checkpoints" / "keep.pt").write_bytes(b"mine too")
    (run / "tensorboard").mkdir(exist_ok=True)
    os.symlink(elsewhere, run / "tensorboard" / "linked")
    (run / "losses.png").unlink()
    os.symlink(elsewhere / "config.json", run / "losses.png")
    before_elsewhere = tree(elsewhere)
    r = ganforge_cli("train", *TOY, "--steps", "20", "--out", str(run), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert tree(elsewhere) == before_elsewhere  # nothing behind a link was touched
    kept = [p for p in run.iterdir() if p.name.startswith(".ganforge-replaced-")]
    assert len(kept) == 1 and "did not write" in r.stderr
    assert (kept[0] / "samples" / "notes.txt").read_text() == "mine"
    assert (kept[0] / "checkpoints" / "keep.pt").read_bytes() == b"mine too"
    assert not list((kept[0] / "samples").glob("step-*.png"))  # ganforge's own: deleted
    assert checkpoint.load(run / "checkpoints" / "final.safetensors")["step"] == 20


def test_sweep_overwrite_removes_a_larger_earlier_sweep(tmp_path):
    out = tmp_path / "sw"
    args = ["sweep", *TOY, "--steps", "20", "--out", str(out)]
    assert ganforge_cli(*args, "--runs", "3").returncode == 0
    r = ganforge_cli(*args, "--runs", "2", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "run-000", "run-001", "summary.csv", "summary.json", "sweep.json"]


# --- outputs that are inputs ------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["export", "{run}", "--out", "{run}/checkpoints/final.safetensors", "--format", "pt2"],
    ["report", "{run}", "--out", "{run}/config.json"],
    ["sample", "{run}", "--out", "{run}/samples/step-0000020.png"],
    ["sample", "{run}/checkpoints/final.safetensors", "--npy", "--out",
     "{run}/checkpoints/final.safetensors"],
], ids=["export-over-checkpoint", "report-over-config", "sample-over-snapshot",
        "sample-over-its-checkpoint"])
def test_out_may_not_be_a_file_being_read(run, argv):
    before = tree(run)
    r = ganforge_cli(*[a.format(run=run) for a in argv])
    assert_one_line_error(r, "--out")
    assert tree(run) == before


def test_sample_out_with_an_unknown_suffix(run, tmp_path):
    for out in ("x.xyz", "noext"):
        r = ganforge_cli("sample", str(run), "--out", str(tmp_path / out))
        assert_one_line_error(r, "expected a file ending in")
        assert not (tmp_path / out).exists()


def test_failed_export_leaves_the_target_byte_identical(run, tmp_path, monkeypatch):
    from ganforge import export as export_mod

    target = tmp_path / "g.pt2"
    target.write_bytes(b"the previous export")
    monkeypatch.setattr(export_mod, "_verify", lambda *a: (_ for _ in ()).throw(
        ganforge.errors.GanforgeError("pt2 export failed: does not reproduce")))
    with pytest.raises(ganforge.errors.GanforgeError):
        export_mod.export(run, target, "pt2")
    assert target.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt2", "run"]  # no temporary


# --- the run folder as input -------------------------------------------------------------------
def test_a_torn_last_metrics_line_is_dropped_with_a_warning(run):
    metrics = run / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + b'{"step": 41, "d_lo')
    r = ganforge_cli("train", "--resume", str(run), "--steps", "60")
    assert r.returncode == 0, r.stderr
    assert "dropped a truncated last line" in r.stderr
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [x["step"] for x in rows if "d_loss" in x] == [10, 20, 30, 40, 50, 60]
    r = ganforge_cli("report", str(run))
    assert r.returncode == 0, r.stderr


def test_resume_truncates_metrics_in_place_keeping_the_rows_before(run):
    """Rows after the checkpoint are cut with one truncate: the kept bytes are the same
    bytes (never rewritten), so a kill at any instant leaves them whole."""
    metrics = run / "metrics.jsonl"
    ckpt = run / "checkpoints" / "latest.safetensors"
    state_20 = run / "checkpoints" / "final.safetensors"
    original = metrics.read_bytes()
    # make latest an iteration-20 checkpoint: the rows of 30 and 40 must go
    r = ganforge_cli("train", *TOY, "--steps", "20", "--out", str(run.parent / "r20"))
    assert r.returncode == 0
    shutil.copy(run.parent / "r20" / "checkpoints" / "final.safetensors", ckpt)
    state_20.unlink()
    inode = metrics.stat().st_ino
    r = ganforge_cli("train", "--resume", str(run), "--steps", "40")
    assert r.returncode == 0, r.stderr
    assert metrics.stat().st_ino == inode  # the same file, cut, not a rewritten copy
    cut = original.index(b'{"step": 30')
    assert metrics.read_bytes()[:cut] == original[:cut]


def test_resume_of_a_run_still_training_is_refused(tmp_path):
    out = tmp_path / "live"
    p = subprocess.Popen([sys.executable, "-m", "ganforge", "train", *TOY, "--steps",
                          "10000000", "--out", str(out)], env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not (out / "checkpoints" / "latest.safetensors").exists():
            assert p.poll() is None, p.communicate()
            assert time.time() - t0 < 120
            time.sleep(0.1)
        before_cfg = (out / "config.json").read_bytes()
        for argv in (["train", "--resume", str(out), "--steps", "20000000"],
                     ["train", *TOY, "--out", str(out), "--overwrite", "--steps", "5"]):
            r = ganforge_cli(*argv)
            assert_one_line_error(r, "in use by another ganforge process", f"PID {p.pid}")
        assert (out / "config.json").read_bytes() == before_cfg
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=120)
    assert p.returncode == 0
    # the lock went with the process: the run resumes now
    step = checkpoint.load(out / "checkpoints" / "latest.safetensors")["step"]
    r = ganforge_cli("train", "--resume", str(out), "--steps", str(step + 10))
    assert r.returncode == 0, r.stderr


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "ganforge", "train", *TOY, "--steps",
                          "10000000", "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (out / "checkpoints" / "latest.safetensors").exists():
        assert time.time() - t0 < 120 and p.poll() is None
        time.sleep(0.1)
    p.kill()
    p.wait()
    assert (out / ".ganforge.lock").read_text().split()[0] == str(p.pid)  # stale, left behind
    step = checkpoint.load(out / "checkpoints" / "latest.safetensors")["step"]
    r = ganforge_cli("train", "--resume", str(out), "--steps", str(step + 10))
    assert r.returncode == 0, r.stderr


# --- real disk faults ---------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` until ``leave`` bytes are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free - leave))
    return filler


def test_disk_full_during_resume_and_training(tmp_path, base_run):
    straight = tmp_path / "straight"
    shutil.copytree(base_run, straight)
    assert ganforge_cli("train", "--resume", str(straight), "--steps", "400").returncode == 0
    with tmpfs(tmp_path / "small", "12m") as mnt:
        run = mnt / "run"
        shutil.copytree(base_run, run)
        before = tree(run)
        filler = _fill(mnt, 0)
        r = ganforge_cli("train", "--resume", str(run), "--steps", "400")
        assert_one_line_error(r, "No space left on device")
        filler.unlink()
        assert tree(run) == before  # config.json, metrics and checkpoints as they were
        # training itself runs out of space mid-run: the last good checkpoint is named
        # and whole, and the run resumes from it to the same weights as a straight run
        filler = _fill(mnt, 150_000)
        r = ganforge_cli("train", "--resume", str(run), "--steps", "400")
        assert_one_line_error(r, "No space left on device", "last good checkpoint")
        filler.unlink()
        r = ganforge_cli("train", "--resume", str(run), "--steps", "400")
        assert r.returncode == 0, r.stderr
        a = checkpoint.load(run / "checkpoints" / "final.safetensors")
        b = checkpoint.load(straight / "checkpoints" / "final.safetensors")
        for part in ("G", "D"):
            for k in a[part]:
                assert torch.equal(a[part][k], b[part][k]), (part, k)


def test_read_only_out(tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as mnt:
        r = ganforge_cli("train", *TOY, "--steps", "20", "--out", str(mnt / "run"))
        assert_one_line_error(r, "Read-only file system")
        r = ganforge_cli("report", str(tmp_path), "--out", str(mnt / "r.html"))
        assert r.returncode == 2 and "Traceback" not in r.stderr


def test_checkpoint_data_is_never_unpickled(tmp_path):
    """A .pt file that would run code when unpickled is refused by every reader."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(b"\x80\x04" + struct.pack("<Q", 0) + b"not a checkpoint")
    r = ganforge_proc("sample", str(bad), "--out", str(tmp_path / "s.png"))
    assert_one_line_error(r, "not a ganforge checkpoint")
    assert not marker.exists()
    torch.save({"x": 1}, tmp_path / "m.pt")
    r = ganforge_cli("export", str(tmp_path / "m.pt"), "--out", str(tmp_path / "g.pt2"))
    assert_one_line_error(r, "not a ganforge checkpoint")


def test_overwrite_that_fails_at_its_first_checkpoint_puts_the_old_run_back(run, monkeypatch):
    """The failure comes after the old run was moved aside (the first checkpoint cannot be
    written): the old run is restored byte for byte, and nothing of the new one is left,
    now or later. TensorBoard's writer writes from its own thread, whenever that thread gets
    to it; a writer still open when the old run is put back would write into it, so the
    new run's writers must be closed first."""
    import errno

    from ganforge import run as run_module
    from ganforge import tblog

    def full(path, state):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    opened: list[tblog.TensorBoardLogger] = []
    real_init, real_restore = tblog.TensorBoardLogger.__init__, run_module.Claim.restore

    def recording_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        opened.append(self)

    def still_open() -> list[tblog.TensorBoardLogger]:
        return [x for x in opened if x.writer.all_writers is not None]  # None once closed

    def late_restore(self):
        real_restore(self)
        for logger in still_open():  # an event its thread writes after the restore
            logger.writer.add_scalar("late", 0.0, 0)

    before = tree(run)
    monkeypatch.setattr(checkpoint, "save", full)
    monkeypatch.setattr(tblog.TensorBoardLogger, "__init__", recording_init)
    monkeypatch.setattr(run_module.Claim, "restore", late_restore)
    r = ganforge_cli("train", *TOY, "--steps", "20", "--seed", "7", "--out", str(run),
                     "--overwrite")
    assert_one_line_error(r, "No space left on device")
    assert opened, "the new run opened no TensorBoard writer: the test checks nothing"
    for logger in still_open():
        logger.flush()  # its thread's next write, made now
    assert tree(run) == before
