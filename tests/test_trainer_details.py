"""Trainer details the run-level tests pass over: a resume from a checkpoint between two log
rows (the statistics summed since the last row, and the D/G step counts they are divided by,
must come back), and G's EMA against a computation by hand."""

from __future__ import annotations

import copy
import signal

import pytest
import torch
from conftest import closed_port_url

import ganforge
from ganforge import checkpoint
from ganforge.config import resolve
from ganforge.data import load_dataset
from ganforge.train import Trainer

CPU = torch.device("cpu")
STEPS, LOG_EVERY, CKPT_EVERY = 30, 10, 7
# log rows at 10, 20, 30; checkpoints at 7, 14, 21, 28: none of them on a log step
RUN = dict(preset="mlp-mnist", dataset="mnist-sample", batch_size=32, log_every=LOG_EVERY,
           ckpt_every=CKPT_EVERY, sample_every=STEPS, progress=False)
INTERRUPT_AT = 17  # after the checkpoint at 14, before the log row at 20


class _Killed(Exception):
    """Stands in for SIGKILL: the run ends at once, its last periodic checkpoint stays."""


def _rows(run: ganforge.Run) -> list[dict]:
    """Every logged row (statistics and warnings) without the wall-clock rate."""
    return [{k: v for k, v in row.items() if k != "it_s"} for row in run.metrics]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> ganforge.Run:
    """The run trained to the end without a break, once for the module."""
    root = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as mp:  # the autouse isolation is per test; this is not
        mp.setenv("GANFORGE_CACHE", str(root / "cache"))
        mp.setenv("GANFORGE_MIRRORS", closed_port_url())
        return ganforge.train(steps=STEPS, out=str(root / "run"), **RUN)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int, how: str) -> None:
    """Make the run stop right after iteration ``step``, as a kill or as a SIGTERM."""
    original = Trainer.step

    def step_then_interrupt(self: Trainer, *args, **kwargs) -> int:
        n = original(self, *args, **kwargs)
        if self.step_count == step:
            if how == "kill":
                raise _Killed
            signal.raise_signal(signal.SIGTERM)  # the run finishes the step and checkpoints
        return n

    monkeypatch.setattr(Trainer, "step", step_then_interrupt)


@pytest.mark.parametrize("how, resumed_at", [
    ("kill", 14),      # resumes from the periodic checkpoint at 14, not a log step
    ("sigterm", INTERRUPT_AT),  # resumes from the stop's own checkpoint
])
def test_resume_between_log_rows_logs_what_a_straight_run_logs(tmp_path, monkeypatch, straight,
                                                               how, resumed_at):
    out = tmp_path / "resumed"
    with monkeypatch.context() as mp:
        _interrupt_at(mp, INTERRUPT_AT, how)
        if how == "kill":
            with pytest.raises(_Killed):
                ganforge.train(steps=STEPS, out=str(out), **RUN)
        else:
            assert ganforge.train(steps=STEPS, out=str(out), **RUN).stopped == "SIGTERM"
    at = checkpoint.load(out / "checkpoints" / "latest.safetensors")["step"]
    assert at == resumed_at and at % LOG_EVERY  # the case this test is for

    resumed = ganforge.train(resume=out, steps=STEPS, progress=False)
    rows = _rows(resumed)
    assert [r["step"] for r in rows if "d_loss" in r] == [10, 20, 30]
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"):
        assert name in rows[0]
    assert rows == _rows(straight)  # exactly: the row at 20 spans the interruption


def _trainer(preset: str, **overrides) -> Trainer:
    cfg = resolve(preset, overrides=overrides)
    return Trainer(cfg, load_dataset(cfg), CPU)


def test_trainer_state_carries_the_statistics_since_the_last_read():
    kw = dict(dataset="mnist-sample", batch_size=32)
    a = _trainer("mlp-mnist", **kw)
    for _ in range(10):
        a.step()
    a.read_stats()  # a log row at 10; the next one will cover 11..20
    for _ in range(3):
        a.step()
    # deep: state_dict()'s tensors may alias A's live weights, which go on changing
    state = copy.deepcopy(a.state_dict())
    b = _trainer("mlp-mnist", **kw)
    b.load_state_dict(state)
    for _ in range(7):
        a.step()
        b.step()
    row_a, row_b = a.read_stats(), b.read_stats()
    assert row_a == row_b, (row_a, row_b)
    for p, q in zip(a.G.parameters(), b.G.parameters(), strict=True):
        assert torch.equal(p, q)


# --- G's EMA --------------------------------------------------------------------------------
HALF_LIFE = 2.0  # short: G_ema lags G by a lot, so beta and 1 - beta cannot be mistaken


@pytest.mark.parametrize("preset, overrides", [
    ("mlp-mnist", dict(dataset="mnist-sample", batch_size=32)),
    ("pacgan2-grid-25", dict(batch_size=64, g_hidden=32, d_hidden=32)),  # BatchNorm G: buffers
], ids=["mlp", "pacgan-batchnorm"])
def test_ema_follows_its_formula_by_hand(preset, overrides):
    # one G step per iteration: one EMA update between two looks
    trainer = _trainer(preset, ema=HALF_LIFE, k_g=1, **overrides)
    beta = 0.5 ** (1.0 / HALF_LIFE)  # half-life in iterations: beta ** HALF_LIFE == 1/2
    assert trainer.ema_beta == pytest.approx(beta, rel=1e-12)
    G, ema = trainer.G, trainer.G_ema
    assert ema is not None and ema is not G
    buffers = list(G.buffers())
    if preset == "pacgan2-grid-25":
        assert buffers, "expected BatchNorm running statistics in this preset's G"

    # at the start the EMA is G itself, in its own storage
    for e, p in zip(ema.parameters(), G.parameters(), strict=True):
        assert torch.equal(e, p) and e.data_ptr() != p.data_ptr()
    for e, b in zip(ema.buffers(), buffers, strict=True):
        assert torch.equal(e, b)

    for _ in range(4):
        old = [e.detach().double().clone() for e in ema.parameters()]
        trainer.step()
        for e, p, o in zip(ema.parameters(), G.parameters(), old, strict=True):
            expected = beta * o + (1 - beta) * p.detach().double()
            torch.testing.assert_close(e.detach().double(), expected, rtol=1e-6, atol=1e-7)
        # BatchNorm statistics are not averaged: they are the live G's
        for e, b in zip(ema.buffers(), G.buffers(), strict=True):
            assert torch.equal(e, b)
    # and the EMA really lags: the check above compared two different networks
    assert any(not torch.equal(e, p) for e, p in zip(ema.parameters(), G.parameters(),
                                                       strict=True))



# --- lazy R1 and the hand backward's self-check (issue 14) -----------------------------------
def _penalty_part(trainer: Trainer, real: torch.Tensor, z: torch.Tensor) -> float:
    """D's loss minus its objective's loss on the same batch: the penalty terms alone."""
    loss, out = trainer._d_loss(real, None, z, None)
    real_out, fake_out = out.chunk(2, -1)
    return float((loss - trainer.objective.d_loss(real_out, fake_out)).detach())


def test_lazy_r1_over_an_interval_equals_the_non_lazy_penalty():
    """R1 every 4 D steps weighted by 4: over the 4 steps of an interval (same D, same batch)
    it adds what the non-lazy penalty adds, applied on the first of them only."""
    over = dict(dataset="mnist-sample", batch_size=16, r1_gamma=3.0, device="cpu")
    lazy = Trainer(resolve("mlp-mnist", overrides={**over, "reg_interval": 4}),
                   load_dataset(resolve("mlp-mnist", overrides=over)), CPU)
    eager = Trainer(resolve("mlp-mnist", overrides={**over, "reg_interval": 1}), lazy.data, CPU)
    eager.D.load_state_dict(lazy.D.state_dict())
    eager.G.load_state_dict(lazy.G.state_dict())
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(16, 1, 28, 28, generator=gen)
    z = torch.rand(16, 100, generator=gen) * 2 - 1
    parts = []
    for d_steps in range(8):
        lazy.d_steps = eager.d_steps = d_steps
        parts.append((_penalty_part(lazy, real, z), _penalty_part(eager, real, z)))
    x = real.requires_grad_(True)
    (grad,) = torch.autograd.grad(lazy.D(x).sum(), x)
    r1 = 1.5 * grad.flatten(1).pow(2).sum(1).mean().item()  # gamma / 2 E ||grad D(x)||^2
    for step, (lz, eg) in enumerate(parts):
        assert eg == pytest.approx(r1, rel=1e-4)
        assert lz == pytest.approx(4 * r1 if step % 4 == 0 else 0.0, rel=1e-4, abs=1e-6)
    assert sum(lz for lz, _ in parts) == pytest.approx(sum(eg for _, eg in parts), rel=1e-4)


def test_a_hand_backward_that_disagrees_falls_back_to_autograd(monkeypatch, tmp_path):
    """The hand-derived gradients are checked against autograd's at setup: a mutated one
    (a wrong factor in the backward pass, or a D-loss term it does not know) falls back with
    a note in config.json; backward=manual refuses."""
    from ganforge import mlp_grads
    from ganforge.errors import GanforgeError
    from ganforge.losses import NonSaturating

    over = dict(dataset="mnist-sample", batch_size=16, device="cpu")
    cfg = resolve("mlp-mnist", overrides=over)
    assert Trainer(cfg, load_dataset(cfg), CPU).backward_note == "by hand"
    real_backward = mlp_grads.Chain.backward

    def mutated(self, saved, grad, **kw):
        return real_backward(self, saved, grad * 1.01, **kw)
    with monkeypatch.context() as m:
        m.setattr(mlp_grads.Chain, "backward", mutated)
        t = Trainer(cfg, load_dataset(cfg), CPU)
        assert t.by_hand is None and "disagreed" in t.backward_note
        run = ganforge.train(cfg, steps=2, log_every=1, sample_every=2,
                             out=str(tmp_path / "r"), progress=False)
        note = run.dir.joinpath("config.json").read_text()
        assert "the hand-derived gradients disagreed with autograd" in note
        with pytest.raises(GanforgeError, match="backward=manual: the hand-derived"):
            Trainer(resolve("mlp-mnist", overrides={**over, "backward": "manual"}),
                    load_dataset(cfg), CPU)
    # a new D-loss term the hand path does not cover: its closed-form gradient misses it
    real_loss = NonSaturating.d_loss
    with monkeypatch.context() as m:
        m.setattr(NonSaturating, "d_loss",
                  lambda self, r, f: real_loss(self, r, f) + 0.1 * (r ** 2).mean(-1))
        assert Trainer(cfg, load_dataset(cfg), CPU).by_hand is None
