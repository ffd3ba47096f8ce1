"""Data-parallel training on CPU: gloo, 2 processes, launched the standard way (torchrun)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ganforge import checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
TRAIN = ["--dataset", "mnist-sample", "--batch-size", "32", "--log-every", "10",
         "--ckpt-every", "10", "--sample-every", "1000", "--seed", "5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ganforge(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganforge", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    two = _ganforge("train", "--nproc", "2", "--steps", "30", *TRAIN, "--out",
                    str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = _ganforge("train", "--steps", "30", *TRAIN, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr

    assert json.loads((tmp_path / "two" / "config.json").read_text())["data_used"][
        "processes"] == 2
    assert two.stdout.count("done:") == 1  # only rank 0 reports and writes
    a = checkpoint.load(tmp_path / "two" / "checkpoints" / "final.safetensors")
    b = checkpoint.load(tmp_path / "one" / "checkpoints" / "final.safetensors")
    for net in ("G", "D"):
        for name, t in a[net].items():
            # the same steps; only the order of float additions differs
            torch.testing.assert_close(t, b[net][name], rtol=1e-4, atol=1e-5)
    rows_two, rows_one = ([json.loads(x) for x in (tmp_path / name / "metrics.jsonl")
                           .read_text().splitlines()] for name in ("two", "one"))
    assert [r["step"] for r in rows_two] == [10, 20, 30]
    for r2, r1 in zip(rows_two, rows_one, strict=True):  # logged means are over both ranks
        for k in ("d_loss", "g_loss", "d_real", "d_fake"):
            assert abs(r2[k] - r1[k]) < 1e-4 * max(1.0, abs(r1[k])), (k, r2[k], r1[k])


def test_all_ranks_hold_identical_parameters(tmp_path):
    """DCGAN: BatchNorm (D called on real and fake separately), so each rank normalises its
    own slice; the averaged gradients still keep every replica's weights equal."""
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", str(ROOT / "tests" / "helpers" / "ddp_worker.py"),
                        str(out), "dcgan-mnist", "6"], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_file(out / "rank-0.safetensors"), load_file(out / "rank-1.safetensors")
    assert [(out / f"rank-{k}.group").read_text() for k in (0, 1)] == ["destroyed"] * 2
    assert len(a) > 4 and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    start = checkpoint.load(out / "checkpoints" / "latest.safetensors")  # step 6's own
    assert start["step"] == 6


def test_a_rank_that_dies_makes_the_other_exit_with_a_clear_error(tmp_path):
    """Two ranks started by hand (as torchrun would); rank 1 is SIGKILLed mid-run. Rank 0
    must not hang: it exits 2 with one line naming what happened."""
    env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2"}
    procs = []
    for rank in (0, 1):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ganforge", "train", "--steps", "1000000", *TRAIN,
             "--set", "dist_timeout=30", "--out", str(tmp_path / "run")],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    metrics = tmp_path / "run" / "metrics.jsonl"
    t0 = time.time()
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert all(p.poll() is None for p in procs), procs[0].communicate()
        assert time.time() - t0 < 180, "training did not start"
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGKILL)
    t_kill = time.time()
    _, stderr = procs[0].communicate(timeout=120)
    waited = time.time() - t_kill
    assert procs[0].returncode == 2, stderr
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganforge: error: rank 0: lost the other"), \
        stderr
    assert "Traceback" not in stderr
    assert waited < 60  # well inside dist_timeout + start-up, not a hang
    procs[1].wait()
    # the run folder still holds a loadable checkpoint
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "latest.safetensors")["step"] >= 0


def test_sigterm_stops_every_process_after_the_same_step(tmp_path):
    """`ganforge train --nproc 2` signalled: the ranks agree on a step, rank 0 checkpoints,
    everything exits 0 (torchrun is not torn down mid-step), and the run resumes."""
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "ganforge", "train", "--nproc", "2",
                          "--steps", "1000000", *TRAIN, "--out", str(out)], env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    t0 = time.time()
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 180, "training did not start"
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.count("stopped by SIGTERM") == 1 and f"--resume {out}" in stderr
    step = checkpoint.load(out / "checkpoints" / "latest.safetensors")["step"]
    assert step % 10 == 0 and step >= 20  # the ranks stop together, at a log step
    r = _ganforge("train", "--nproc", "2", "--resume", str(out), "--steps", str(step + 10))
    assert r.returncode == 0, r.stderr[-2000:]
    assert checkpoint.load(out / "checkpoints" / "final.safetensors")["step"] == step + 10


def test_an_error_in_the_training_processes_is_said_once_without_launcher_noise(tmp_path):
    """An error that only the ranks can find (BEGAN's per-process equilibrium): one line, from
    rank 0, exit 2; neither torchrun's per-worker report nor its traceback."""
    r = _ganforge("train", "--nproc", "2", "--steps", "5", *TRAIN, "--set", "objective=began",
                  "--set", "model=mlp-began", "--out", str(tmp_path / "x"))
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("ganforge: error:")]
    assert len(errors) == 1 and "began" in errors[0], r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "ChildFailedError" not in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()
