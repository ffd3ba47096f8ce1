"""Never lose a run: exact resume, SIGTERM/SIGINT, SIGKILL during saves, non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import state_tensors

import ganforge
from ganforge import checkpoint
from ganforge.errors import GanforgeError
from ganforge.train import Trainer

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = dict(dataset="mnist-sample", batch_size=32, log_every=10, sample_every=20,
            ckpt_every=20, progress=False)


def _rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock field."""
    return [{k: v for k, v in json.loads(line).items() if k != "it_s"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _cli(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-m", "ganforge", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(cond, timeout=120.0, proc=None):
    t0 = time.time()
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


# --- resume --------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [
    {},  # the classic MLP GAN on an epoch-ordered dataset
    {"preset": "dcgan-mnist", "ema": 5.0, "r1_gamma": 1.0, "reg_interval": 4, "batch_size": 16},
], ids=["mlp", "dcgan-ema-r1"])
def test_resume_continues_bit_identically(tmp_path, extra):
    N = 40
    cfg = {**TINY, **extra}
    straight = ganforge.train(steps=2 * N, out=str(tmp_path / "straight"), **cfg)
    first = ganforge.train(steps=N, out=str(tmp_path / "resumed"), **cfg)
    resumed = ganforge.train(resume=first.dir, steps=2 * N, progress=False)
    assert resumed.dir == first.dir

    a = checkpoint.load(straight.final_checkpoint)
    b = checkpoint.load(resumed.final_checkpoint)
    assert a["step"] == b["step"] == 2 * N
    ta, tb = dict(state_tensors(a)), dict(state_tensors(b))
    assert ta.keys() == tb.keys()
    assert any(k.startswith(".opt_d") for k in ta) and any(k.startswith(".rng") for k in ta)
    if extra:
        assert any(k.startswith(".G_ema") for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k  # bit-identical: weights, optimisers, RNG, data
    assert _rows(straight.dir) == _rows(resumed.dir)
    assert sorted(p.name for p in (straight.dir / "samples").iterdir()) == \
        sorted(p.name for p in (resumed.dir / "samples").iterdir())


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    run = ganforge.train(steps=20, out=str(tmp_path / "r"), **TINY)
    with pytest.raises(GanforgeError, match="already reached iteration 20"):
        ganforge.train(resume=run.dir)
    with pytest.raises(GanforgeError, match="cannot change g_lr"):
        ganforge.train(resume=run.dir, steps=40, g_lr=0.5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanforgeError, match="not a ganforge run folder"):
        ganforge.train(resume=tmp_path / "empty", steps=40)


# --- signals -------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_the_step_checkpoints_and_exits_0(tmp_path, sig):
    out = tmp_path / "run"
    p = _cli("train", "--dataset", "mnist-sample", "--steps", "1000000", "--log-every", "5",
             "--batch-size", "16", "--out", str(out))
    metrics = out / "metrics.jsonl"
    _wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2, proc=p)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"stopped by {sig.name}" in stderr and f"--resume {out}" in stderr
    state = checkpoint.load(out / "checkpoints" / "latest.safetensors")
    assert 10 <= state["step"] < 1_000_000
    # and the run goes on from there
    step = state["step"]
    r = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(out),
                        "--steps", str(step + 7)], env={**os.environ, "PYTHONPATH": str(SRC)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert checkpoint.load(out / "checkpoints" / "final.safetensors")["step"] == step + 7


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    """Kill a real training process at random moments while it saves a checkpoint every
    iteration: the latest checkpoint always loads, and the run resumes from it."""
    out = tmp_path / "run"
    latest = out / "checkpoints" / "latest.safetensors"
    kills = 0
    for attempt in range(4):
        args = ["train", "--resume", str(out), "--steps", "1000000"] if attempt else [
            "train", "--preset", "mlp-mnist-notebook", "--dataset", "mnist-sample",
            "--steps", "1000000", "--ckpt-every", "1", "--log-every", "1", "--batch-size", "16",
            "--set", "sample_every=100000", "--out", str(out)]
        def logged(metrics: Path = out / "metrics.jsonl") -> int:
            return len(metrics.read_text().splitlines()) if metrics.exists() else 0

        before = logged()
        p = _cli(*args)
        # wait until it is saving every iteration, then kill it at an arbitrary moment
        _wait_for(lambda b=before: logged() >= b + 2, proc=p)
        time.sleep(0.3 + 0.17 * attempt)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        kills += 1
        state = checkpoint.load(latest)  # whole, whatever the moment of the kill
        assert state["step"] >= 1
        assert all(torch.isfinite(t).all() for _, t in state_tensors(state["G"]))
    assert kills == 4
    # a resume removes the temporary files that the kills left behind
    step = checkpoint.load(latest)["step"]
    r = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(out),
                        "--steps", str(step + 3)], env={**os.environ, "PYTHONPATH": str(SRC)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not list((out / "checkpoints").glob(".*.tmp*"))


# --- non-finite losses -----------------------------------------------------------------------
@pytest.fixture
def poison_once(monkeypatch):
    """Make D's weights NaN once, right after iteration ``at``."""
    state = {"at": None, "done": False}
    original = Trainer.iteration

    def iteration(self):
        original(self)
        if not state["done"] and self.step_count + 1 == state["at"]:
            state["done"] = True
            with torch.no_grad():
                next(self.D.parameters()).fill_(float("nan"))

    monkeypatch.setattr(Trainer, "iteration", iteration)
    return state


def test_nan_stops_with_the_step_and_keeps_the_good_checkpoint(tmp_path, poison_once):
    poison_once["at"] = 33
    out = tmp_path / "run"
    with pytest.raises(GanforgeError) as e:
        ganforge.train(steps=100, out=str(out), **TINY)
    msg = str(e.value)
    assert "non-finite" in msg and "iteration 40" in msg and "latest.safetensors" in msg
    assert "\n" not in msg
    state = checkpoint.load(out / "checkpoints" / "latest.safetensors")
    assert state["step"] == 20  # the last checkpoint before the NaN, untouched
    assert all(torch.isfinite(t).all() for _, t in state_tensors(state["D"]))


def test_nan_weights_are_never_written_over_a_good_checkpoint(tmp_path, poison_once):
    # poisoned just before a checkpoint step and without a log at that step
    poison_once["at"] = 40
    out = tmp_path / "run"
    with pytest.raises(GanforgeError, match="non-finite"):
        ganforge.train(steps=100, out=str(out), **{**TINY, "log_every": 50})
    state = checkpoint.load(out / "checkpoints" / "latest.safetensors")
    assert state["step"] == 20
    assert all(torch.isfinite(t).all() for _, t in state_tensors(state["D"]))


def test_nan_rollback_reloads_lowers_the_learning_rates_and_finishes(tmp_path, poison_once):
    poison_once["at"] = 33
    run = ganforge.train(steps=60, out=str(tmp_path / "run"), on_nan="rollback", **TINY)
    final = checkpoint.load(run.final_checkpoint)
    assert final["step"] == 60
    assert all(torch.isfinite(t).all() for _, t in state_tensors(final["G"]))
    assert all(torch.isfinite(t).all() for _, t in state_tensors(final["D"]))
    lr = final["opt_d"]["param_groups"][0]["lr"]
    assert float(lr) == pytest.approx(1e-3 * 0.5)  # mlp-mnist's 1e-3, halved once
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    warnings = [r for r in rows if r.get("warning") == "nan_rollback"]
    assert len(warnings) == 1 and warnings[0]["step"] == 20
    assert "iteration 40" in warnings[0]["message"]
    steps = [r["step"] for r in rows if "d_loss" in r]
    assert steps == [10, 20, 30, 40, 50, 60]  # the bad interval's rows were replaced
    assert all(r["d_loss"] == r["d_loss"] for r in rows if "d_loss" in r)  # no NaN left
