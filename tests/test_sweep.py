"""A sweep is R runs of the same Trainer and Session: run k equals the single run with its
config (issue 14), on every logged statistic and on the final weights."""

import dataclasses
import json
import os
import signal

import pytest
import torch

import ganforge
from ganforge.config import resolve
from ganforge.data import load_dataset
from ganforge.errors import GanforgeError, NotStackable
from ganforge.sweep import expand_runs, parse_vary, sweep
from ganforge.train import Trainer

OBJECTIVES = ("nonsaturating", "minimax", "least-squares", "hinge", "wasserstein", "wgan-gp")
PRESETS = {"mlp-mnist": {"dataset": "mnist-sample", "batch_size": 32},
           "toy-1d": {}, "ring-8": {"batch_size": 64}}
STATS = ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")


def _cfg(preset, **kw):
    return resolve(preset, overrides={**PRESETS[preset], "device": "cpu", **kw})


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-8)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_run_k_of_a_stack_is_the_single_run(preset, objective):
    """300 CPU iterations, a log row every 10: run 1 (its own seed and learning rates) of a
    stack of two against the single run with run 1's config."""
    base = _cfg(preset, objective=objective)
    configs = expand_runs(base, 2, {"lr": [base.g_lr, base.g_lr * 0.5]})
    data = load_dataset(base)
    stack = Trainer(configs, data, torch.device("cpu"))
    single = Trainer(configs[1], data, torch.device("cpu"))
    assert stack.backward_note == single.backward_note  # the same path: hand or autograd
    worst = 0.0
    for i in range(1, 301):
        stack.step()
        single.step()
        if i % 10 == 0:
            a, b = stack.read_stats()[1], single.read_stats()[0]
            worst = max(worst, *(_rel(a[k], b[k]) for k in STATS))
    assert worst <= 1e-5
    for m, n in zip(stack.run_modules(1), (single.G, single.D), strict=True):
        for p, q in zip(m.parameters(), n.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    # the runs are different GANs, not one copied
    assert not torch.equal(next(stack.run_modules(0)[0].parameters()),
                           next(stack.run_modules(1)[0].parameters()))


@pytest.mark.parametrize("remedy", [{"mbstd_group": 8}, {"topk": 0.5}], ids=["mbstd", "topk"])
@pytest.mark.parametrize("backward", ["manual", "autograd"])
def test_stacking_remedies_keep_each_run_alone(backward, remedy):
    """The remedies that stack: run 1 of a stack of two equals its single run, on the
    hand-derived path and on autograd's (a group spanning two runs' batches, or a top-k
    ranked over both runs' samples, would not)."""
    base = _cfg("ring-8", r1_gamma=0.0, backward=backward, **remedy)
    configs = expand_runs(base, 2, {})
    data = load_dataset(base)
    stack = Trainer(configs, data, torch.device("cpu"))
    single = Trainer(configs[1], data, torch.device("cpu"))
    assert stack.by_hand is not None if backward == "manual" else stack.by_hand is None
    for _ in range(100):
        stack.step()
        single.step()
    a, b = stack.read_stats()[1], single.read_stats()[0]
    assert max(_rel(a[k], b[k]) for k in STATS) <= 1e-5
    for m, n in zip(stack.run_modules(1), (single.G, single.D), strict=True):
        for p, q in zip(m.parameters(), n.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_per_run_penalty_weights_ema_and_optimiser():
    """Fields varied per run reach the run: gp_lambda, ema, betas, and RMSprop's own step."""
    base = _cfg("toy-1d", objective="wgan-gp", optimizer="rmsprop", ema=5.0)
    configs = expand_runs(base, 3, {"gp_lambda": [1.0, 10.0, 0.5], "ema": [5.0, 0.0, 2.0]})
    data = load_dataset(base)
    stack = Trainer(configs, data, torch.device("cpu"))
    for k in range(3):
        single = Trainer(configs[k], data, torch.device("cpu"))
        s = Trainer(configs, data, torch.device("cpu")) if k else stack
        for _ in range(40):
            s.step()
            single.step()
        a, b = s.read_stats()[k], single.read_stats()[0]
        assert max(_rel(a[n], b[n]) for n in STATS) <= 1e-5
        for p, q in zip(s.sampling_G_of(k).parameters(), single.sampling_G.parameters(),
                        strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_sweep_folders_summary_and_every_feature(tmp_path):
    """`ganforge sweep` is the Session with R runs: each run folder has what a single run's
    has (pictures, checkpoints, gradient norms, evaluation, best checkpoint), and the sweep
    folder a summary naming the best run."""
    base = _cfg("ring-8", steps=40, log_every=10, sample_every=20, eval_every=20,
                metrics=["modes"], eval_n=500, keep_best="modes", tensorboard="off")
    runs = sweep(base, None, parse_vary(["lr=1e-3,2e-4", "d_betas=0.5,0.999/0.9,0.999"]),
                 out=str(tmp_path / "s"), progress=False)
    assert len(runs) == 4  # the grid
    assert [r.config.d_betas for r in runs] == [[0.5, 0.999], [0.9, 0.999]] * 2
    for r in runs:
        names = sorted(p.name for p in r.dir.iterdir())
        assert {"config.json", "metrics.jsonl", "progress.gif", "losses.png", "samples",
                "checkpoints"} <= set(names)
        assert (r.dir / "checkpoints" / "best.safetensors").is_file()
        rows = [json.loads(line) for line in (r.dir / "metrics.jsonl").read_text().splitlines()]
        assert any("grad_norm_d" in row for row in rows) and any("modes" in row for row in rows)
        assert (r.dir / "samples" / "step-0000040.png").is_file()
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["rank_by"] == "modes" and len(summary["runs"]) == 4
    best = max(summary["runs"], key=lambda r: r["best"]["modes"])["best"]["modes"]
    assert summary["runs"][summary["best_run"]]["best"]["modes"] == best
    csv = (tmp_path / "s" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("run,dir,seed,lr,d_betas,status") and len(csv) == 5
    # run k's checkpoint is a single run's: ganforge.load and sample read it
    g = ganforge.load(runs[1].dir)
    assert g.config.seed == 1


def test_hinge_statistics_are_not_squashed(tmp_path):
    """The old sweep applied a sigmoid to every objective's outputs: the logged d_real of a
    hinge sweep now equals the single run's."""
    base = _cfg("toy-1d", objective="hinge", steps=20, log_every=10, sample_every=20,
                tensorboard="off")
    runs = sweep(base, 2, out=str(tmp_path / "s"), progress=False)
    single = ganforge.train(runs[0].config, out=str(tmp_path / "one"), progress=False)
    for a, b in zip([r for r in runs[0].metrics if "d_real" in r],
                    [r for r in single.metrics if "d_real" in r], strict=True):
        assert a["d_real"] == pytest.approx(b["d_real"], rel=1e-5)


def _stop_at(monkeypatch, at):
    real_step = Trainer.step

    def step(self, remaining=None):
        n = real_step(self, remaining)
        if self.step_count == at:
            os.kill(os.getpid(), signal.SIGTERM)
        return n
    monkeypatch.setattr(Trainer, "step", step)


@pytest.mark.parametrize("extra", [{}, {"mbstd_group": 8}, {"lr_decay": "linear"}],
                         ids=["plain", "mbstd", "lr_decay"])
def test_a_sigtermed_sweep_resumes_bit_identically(tmp_path, monkeypatch, extra):
    base = _cfg("mlp-mnist", steps=30, log_every=10, sample_every=30, ckpt_every=7,
                tensorboard="off", **extra)
    straight = sweep(base, 2, {"lr": [1e-3, 5e-4]}, out=str(tmp_path / "a"), progress=False)
    with monkeypatch.context() as m:
        _stop_at(m, 17)
        stopped = sweep(base, 2, {"lr": [1e-3, 5e-4]}, out=str(tmp_path / "b"),
                        progress=False)
    assert all(r.stopped == "SIGTERM" for r in stopped)
    resumed = ganforge.train(resume=tmp_path / "b", progress=False)
    assert resumed.dir == tmp_path / "b" / "run-000"
    for k in range(2):
        want = [{n: r[n] for n in STATS} for r in straight[k].metrics if "d_loss" in r]
        path = tmp_path / "b" / f"run-{k:03d}" / "metrics.jsonl"
        got = [json.loads(line) for line in path.read_text().splitlines()]
        assert [{n: r[n] for n in STATS} for r in got if "d_loss" in r] == want
        loaded = ganforge.load(tmp_path / "b" / f"run-{k:03d}")
        for p, q in zip(straight[k].G.parameters(), loaded.G.parameters(), strict=True):
            assert torch.equal(p, q)


def test_a_failing_run_stops_alone(tmp_path, monkeypatch):
    """A non-finite loss in run 1 stops run 1 (on_nan=stop); run 0 trains to the end."""
    base = _cfg("toy-1d", steps=30, log_every=10, sample_every=30, tensorboard="off")
    real_read = Trainer.read_stats

    def read(self):
        rows = real_read(self)
        if self.step_count == 20 and self.R == 2:
            rows[1]["d_loss"] = float("nan")
        return rows
    monkeypatch.setattr(Trainer, "read_stats", read)
    runs = sweep(base, 2, out=str(tmp_path / "s"), progress=False)
    assert runs[0].failed is None and runs[1].failed.startswith("non-finite d_loss")
    assert (runs[0].dir / "checkpoints" / "final.safetensors").is_file()
    assert not (runs[1].dir / "checkpoints" / "final.safetensors").exists()
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["runs"][1]["status"].startswith("failed: non-finite")


def test_what_does_not_stack_is_refused_with_the_reason(tmp_path):
    # NotStackable: what trains alone (benchmarks/modes.py falls back on it), not a bad config
    for over, why in (({"model": "dcgan", "dataset": "mnist-sample"}, "does not stack"),
                      ({"pac": 2}, "pac"), ({"unroll_steps": 1}, "unroll_steps")):
        base = dataclasses.replace(_cfg("toy-1d"), **over)
        with pytest.raises(NotStackable, match=why):
            sweep(base, 2, out=str(tmp_path / "x"), progress=False)
    with pytest.raises(GanforgeError, match="--vary batch_size: a sweep can vary"):
        parse_vary(["batch_size=32,64"])
    assert not (tmp_path / "x").exists()  # refused before any folder is made


def test_a_sweep_killed_while_saving_resumes_from_the_round_all_runs_saved(tmp_path,
                                                                           monkeypatch):
    """Killed after run 0 wrote its round-17 checkpoint but before run 1 did: run 1's latest
    is still round 14, run 0 keeps round 14 as checkpoints/previous, and resume continues
    both from 14 to what a straight sweep logs."""
    import shutil

    base = _cfg("mlp-mnist", steps=30, log_every=10, sample_every=30, ckpt_every=7,
                tensorboard="off")
    straight = sweep(base, 2, out=str(tmp_path / "a"), progress=False)
    with monkeypatch.context() as m:
        _stop_at(m, 17)
        sweep(base, 2, out=str(tmp_path / "b"), progress=False)
    ck = tmp_path / "b" / "run-001" / "checkpoints"
    shutil.copyfile(ck / "previous.safetensors", ck / "latest.safetensors")
    assert ganforge.checkpoint.load(ck / "latest.safetensors")["step"] == 14
    ganforge.train(resume=tmp_path / "b", progress=False)
    for k in range(2):
        want = [{n: r[n] for n in STATS} for r in straight[k].metrics if "d_loss" in r]
        path = tmp_path / "b" / f"run-{k:03d}" / "metrics.jsonl"
        got = [json.loads(line) for line in path.read_text().splitlines()]
        assert [{n: r[n] for n in STATS} for r in got if "d_loss" in r] == want
