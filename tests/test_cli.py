"""The ganforge command end to end, in subprocesses, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def ganforge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "ganforge", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_train_writes_the_whole_run_folder_and_sample_reads_it(tmp_path):
    out = tmp_path / "run"
    r = ganforge("train", "--dataset", "mnist-sample", "--steps", "200", "--log-every", "50",
                 "--sample-every", "100", "--ckpt-every", "100", "--seed", "3",
                 "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"run folder: {out}" in r.stdout
    assert "Traceback" not in r.stderr

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steps"] == 200 and cfg["seed"] == 3 and cfg["out"] == str(out)
    assert cfg["data_used"]["n"] == 5000 and cfg["model"] == "mlp"

    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [50, 100, 150, 200]
    for row in rows:
        assert set(row) == {"step", "d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d",
                            "grad_norm_g", "it_s"}
        assert 0 < row["d_real"] < 1 and 0 < row["d_fake"] < 1 and row["it_s"] > 0
        assert row["grad_norm_d"] > 0 and row["grad_norm_g"] > 0

    grids = sorted(p.name for p in (out / "samples").iterdir())
    assert grids == ["step-0000000.png", "step-0000100.png", "step-0000200.png"]
    first, last = (np.asarray(Image.open(out / "samples" / g)) for g in (grids[0], grids[-1]))
    assert first.shape == last.shape and not np.array_equal(first, last)  # G moved
    gif = Image.open(out / "progress.gif")
    assert gif.n_frames == 3
    assert Image.open(out / "losses.png").size[0] > 300
    assert {p.name for p in (out / "checkpoints").iterdir()} == {
        "latest.safetensors", "final.safetensors"}

    png = tmp_path / "grid.png"
    r = ganforge("sample", str(out), "--n", "16", "--out", str(png), "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert Image.open(png).size == (2 * (4 * 30 + 2),) * 2  # 4x4 tiles of 28+2 px, scaled x2
    npy = tmp_path / "x.npy"
    r = ganforge("sample", str(out / "checkpoints" / "final.safetensors"), "--n", "5", "--npy",
                 "--out", str(npy))
    assert r.returncode == 0, r.stderr
    x = np.load(npy)
    assert x.shape == (5, 1, 28, 28) and 0 <= x.min() and x.max() <= 1


def test_presets_datasets_and_dry_run():
    r = ganforge("presets")
    assert r.returncode == 0
    for name in ("mlp-mnist", "mlp-mnist-notebook", "mlp-mnist-saturating", "toy-1d"):
        assert name in r.stdout
    r = ganforge("datasets")
    assert all(n in r.stdout for n in ("mnist", "mnist-sample", "fashion-mnist", "gaussian-1d"))
    r = ganforge("train", "--preset", "mlp-mnist-notebook", "--set", "g_lr=1e-4", "--dry-run")
    cfg = json.loads(r.stdout)
    assert (cfg["g_hidden"], cfg["g_lr"], cfg["k_g"]) == (512, 1e-4, 2)


@pytest.mark.parametrize("args, message", [
    (["train", "--preset", "nope"], "unknown preset 'nope'; valid names: mlp-mnist"),
    (["train", "--dataset", "nope"], "unknown dataset 'nope'; valid names:"),
    (["train", "--set", "objective=nope", "--steps", "1"], "unknown objective 'nope'"),
    (["train", "--steps", "0"], "--steps must be positive"),
    (["train", "--batch-size", "-5"], "--batch-size must be positive"),
    (["train", "--set", "d_lr=0"], "--d-lr must be positive"),
    (["train", "--set", "wat=1"], "unknown config field 'wat'"),
    (["train", "--config", "missing.toml"], "missing.toml: config file not found"),
    (["train", "--data-dir", "/nonexistent/dir"], "--data-dir /nonexistent/dir: no such"),
    (["sample", "/nonexistent/run"], "/nonexistent/run: no such run folder or checkpoint"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    r = ganforge(*args, cwd=tmp_path)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_corrupt_idx_file_names_the_file(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    (d / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")
    r = ganforge("train", "--data-dir", str(d), "--steps", "1", cwd=tmp_path)
    assert r.returncode == 2 and "train-images-idx3-ubyte" in r.stderr
    assert "Traceback" not in r.stderr


def test_non_empty_out_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    args = ["train", "--preset", "toy-1d", "--steps", "20", "--out", str(out)]
    r = ganforge(*args)
    assert r.returncode == 2 and "not empty" in r.stderr and "--overwrite" in r.stderr
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    r = ganforge(*args, "--overwrite")  # not a run ganforge made: refused, untouched
    assert r.returncode == 2 and "not a ganforge run folder" in r.stderr
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    (out / "precious.txt").unlink()
    assert ganforge(*args).returncode == 0
    (out / "precious.txt").write_text("keep me")  # a user's file beside a run
    r = ganforge(*args, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert (out / "precious.txt").read_text() == "keep me"  # only ganforge's files replaced
    assert (out / "checkpoints" / "final.safetensors").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".ganforge-replaced")]


def test_sample_refuses_a_pickle(tmp_path):
    bad = tmp_path / "model.pt"
    import torch

    torch.save({"G": torch.ones(1)}, bad)
    r = ganforge("sample", str(bad))
    assert r.returncode == 2 and "not a ganforge checkpoint" in r.stderr


def test_sweep_command_writes_one_run_folder_per_gan(tmp_path):
    out = tmp_path / "sw"
    r = ganforge("sweep", "--preset", "toy-1d", "--runs", "3", "--vary", "lr=1e-3,5e-4",
                 "--steps", "40", "--log-every", "20", "--sample-every", "20", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["run-000", "run-001", "run-002",
                                                      "summary.csv", "summary.json",
                                                      "sweep.json"]
    cfgs = [json.loads((out / f"run-00{k}" / "config.json").read_text()) for k in range(3)]
    assert [(c["seed"], c["g_lr"]) for c in cfgs] == [(0, 1e-3), (1, 5e-4), (2, 1e-3)]
    for k in range(3):
        rows = (out / f"run-00{k}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in rows] == [20, 40]
    r = ganforge("sweep", "--preset", "dcgan-mnist", "--runs", "2", "--steps", "1",
                 "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "does not stack" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_metrics_given_through_set_or_the_flag_alike(tmp_path):
    """--set metrics=... is parsed once (it crashed with a traceback when the --metrics
    flag's text parsing ran on the already parsed list)."""
    for args in (("--set", "metrics=fid,kid"), ("--metrics", "fid,kid")):
        r = ganforge("train", "--preset", "toy-1d", *args, "--dry-run")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["metrics"] == ["fid", "kid"]
