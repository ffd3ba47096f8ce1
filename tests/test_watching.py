"""A run is watched while it trains: TensorBoard events and training-health warnings."""

from __future__ import annotations

import json

import pytest

import ganforge


def test_tensorboard_gets_the_scalars_and_the_sample_grids(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = ganforge.train(preset="mlp-mnist", dataset="mnist-sample", steps=40, batch_size=16,
                         log_every=10, sample_every=20, out=str(tmp_path / "run"),
                         progress=False, tensorboard="on")
    acc = EventAccumulator(str(run.dir / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("loss/d", "loss/g", "D/real", "D/fake", "grad_norm/d", "grad_norm/g",
                "speed/it_s"):
        assert tag in tags["scalars"], tag
    d_loss = [(e.step, e.value) for e in acc.Scalars("loss/d")]
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert d_loss == [(r["step"], pytest.approx(r["d_loss"])) for r in rows if "d_loss" in r]
    assert [e.step for e in acc.Images("samples")] == [0, 20, 40]


def test_tensorboard_off_writes_nothing(tmp_path):
    run = ganforge.train(preset="toy-1d", steps=20, log_every=10, sample_every=10,
                         out=str(tmp_path / "run"), progress=False, tensorboard="off")
    assert not (run.dir / "tensorboard").exists()


def test_a_winning_discriminator_is_reported(tmp_path, capsys):
    """G barely learns (tiny learning rate), D learns fast: D(G(z)) -> 0 and stays there,
    which is when the minimax G loss stops giving G gradients."""
    run = ganforge.train(preset="toy-1d", steps=400, log_every=20, sample_every=400,
                         g_lr=1e-9, d_lr=1e-2, out=str(tmp_path / "run"), progress=False,
                         tensorboard="off")
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    warnings = [r for r in rows if "warning" in r]
    assert [w["warning"] for w in warnings] == ["g_vanishing"]  # once, not every log
    assert "D(G(z))" in warnings[0]["message"]
    assert "ganforge: warning: iteration" in capsys.readouterr().err


def test_a_healthy_run_has_no_warnings(tmp_path):
    run = ganforge.train(preset="toy-1d", steps=600, log_every=50, sample_every=200,
                         out=str(tmp_path / "run"), progress=False, tensorboard="off")
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert not [r for r in rows if "warning" in r]
