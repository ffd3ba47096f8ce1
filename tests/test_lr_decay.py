"""lr_decay: both learning rates follow a schedule of the iteration, in single and stacked
runs, through a rollback's lowered rate and a resume (the sweep's SIGTERM test in
test_sweep.py resumes a decaying sweep bit for bit)."""

import math

import pytest
import torch

from ganforge import checkpoint
from ganforge.config import resolve
from ganforge.data import load_dataset
from ganforge.errors import GanforgeError
from ganforge.sweep import expand_runs
from ganforge.train import Trainer

STEPS = 8
WANT = {"none": lambda u: 1.0, "linear": lambda u: 1.0 - u,
        "cosine": lambda u: 0.5 * (1.0 + math.cos(math.pi * u))}


def _trainer(decay, preset="toy-1d", runs=1, **kw):
    cfg = resolve(preset, overrides={"device": "cpu", "steps": STEPS, "lr_decay": decay,
                                     "g_lr": 2e-3, "d_lr": 1e-3, **kw})
    configs = cfg if runs == 1 else expand_runs(cfg, runs, {"lr": [2e-3, 5e-4]})
    return Trainer(configs, load_dataset(cfg), torch.device("cpu"))


def _rates_used(t, monkeypatch):
    """(G, D) rate of every run at each iteration, read as the iteration runs."""
    seen = []
    real = Trainer.iteration

    def iteration(self):
        seen.append([(g.param_groups[0]["lr"], d.param_groups[0]["lr"])
                     for g, d in zip(self.opts_g, self.opts_d, strict=True)])
        real(self)
    monkeypatch.setattr(Trainer, "iteration", iteration)
    for _ in range(STEPS):
        t.step()
    return seen


@pytest.mark.parametrize("decay", list(WANT))
def test_rates_follow_the_schedule(decay, monkeypatch):
    seen = _rates_used(_trainer(decay), monkeypatch)
    for i, [(g, d)] in enumerate(seen):
        f = WANT[decay](i / STEPS)
        assert g == pytest.approx(2e-3 * f, rel=1e-12) and d == pytest.approx(1e-3 * f, rel=1e-12)
    if decay != "none":
        assert 0 < seen[-1][0][0] < 2e-3 / STEPS * 1.01  # the last step still moves, a little


def test_stacked_runs_each_decay_from_their_own_rate(monkeypatch):
    seen = _rates_used(_trainer("linear", runs=2), monkeypatch)
    for i, rates in enumerate(seen):
        f = 1.0 - i / STEPS
        assert [g for g, _ in rates] == pytest.approx([2e-3 * f, 5e-4 * f], rel=1e-12)


def test_a_stacked_decaying_run_is_its_single_run():
    """Run 1 of a stack of two equals its single run when both rates decay (by hand)."""
    cfg = resolve("ring-8", overrides={"device": "cpu", "steps": 60, "batch_size": 64,
                                       "lr_decay": "cosine"})
    configs = expand_runs(cfg, 2, {"lr": [cfg.g_lr, cfg.g_lr * 0.5]})
    data = load_dataset(cfg)
    stack, single = (Trainer(c, data, torch.device("cpu")) for c in (configs, configs[1]))
    for _ in range(60):
        stack.step()
        single.step()
    for m, n in zip(stack.run_modules(1), (single.G, single.D), strict=True):
        for p, q in zip(m.parameters(), n.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    assert single.opts_g[0].param_groups[0]["lr"] < cfg.g_lr * 0.5 * 1e-2  # it did decay


def test_a_rollback_lowers_the_rate_the_schedule_starts_from():
    t = _trainer("linear")
    for _ in range(3):
        t.step()
    g, d = t.set_learning_rates(0.5)  # what --on-nan rollback does
    t.step()
    f = 1.0 - 3 / STEPS
    assert t.opts_g[0].param_groups[0]["lr"] == pytest.approx(0.5 * 2e-3 * f, rel=1e-12)
    assert t.opts_d[0].param_groups[0]["lr"] == pytest.approx(0.5 * 1e-3 * f, rel=1e-12)


def test_an_unknown_schedule_is_refused_by_name():
    with pytest.raises(GanforgeError, match="unknown lr_decay 'step'; valid names: none, "
                                            "linear, cosine"):
        resolve("toy-1d", overrides={"lr_decay": "step"})


@pytest.mark.parametrize("value", ["fast", -1.0, float("nan"), True])
def test_a_checkpoint_rate_that_is_no_positive_number_is_refused(value):
    t = _trainer("linear")
    t.step()
    state = t.state_dict()
    state["opt_d"]["param_groups"][0]["base_lr"] = value
    checkpoint.check_state(t.state_dict(), "ckpt", resume=True)  # the untouched state passes
    with pytest.raises(GanforgeError, match=r"ckpt: opt_d holds learning rate base_lr="):
        checkpoint.check_state(state, "ckpt", resume=True)  # what resume and rollback call
