"""The fast paths train the same GANs as the plain algorithm (issue: speed)."""

import tempfile

import pytest
import torch

import ganforge
from ganforge.config import resolve
from ganforge.data import load_dataset
from ganforge.errors import GanforgeError
from ganforge.sweep import expand_runs, parse_vary, sweep
from ganforge.train import Trainer


def _cfg(**kw):
    return resolve("mlp-mnist", overrides={"dataset": "mnist-sample", "device": "cpu", **kw})


def _plain_losses(cfg, steps):
    """The textbook loop on the trainer's own data and noise streams: separate D calls on
    real and fake, unfused Adam, D gradients computed (and discarded) in the G step."""
    t = Trainer(cfg, load_dataset(cfg), torch.device("cpu"))
    opt_d = torch.optim.Adam(t.D.parameters(), lr=cfg.d_lr, betas=tuple(cfg.d_betas),
                             foreach=False)
    opt_g = torch.optim.Adam(t.G.parameters(), lr=cfg.g_lr, betas=tuple(cfg.g_betas),
                             foreach=False)
    out = []
    for _ in range(steps):
        real = t.batches.next()
        z_d, z_g = t.prior(2 * cfg.batch_size, cfg.z_dim, t.gen).split(cfg.batch_size)
        fake = t.G(z_d).detach()
        d_loss = t.objective.d_loss(t.D(real), t.D(fake))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = t.objective.g_loss(t.D(t.G(z_g)))
        opt_g.zero_grad()
        opt_d.zero_grad()
        g_loss.backward()
        opt_g.step()
        out.append((d_loss.item(), g_loss.item()))
    return out


def _fast_losses(trainer, steps, staged=False):
    out = []
    if staged:
        trainer.batches.make_static(trainer.cfg.k_d)
    for _ in range(steps):
        if staged:  # exactly what a CUDA-graph replay does, minus the graph
            trainer.batches.stage()
            trainer.iteration()
            trainer.step_count += 1
        else:
            trainer.step()
        trainer.counts = [1, 1]
        row = trainer.read_stats()[0]
        out.append((row["d_loss"], row["g_loss"]))
    return out


def test_default_path_matches_the_textbook_loop():
    cfg = _cfg(batch_size=64)
    steps = 200
    plain = _plain_losses(cfg, steps)
    fast = _fast_losses(Trainer(cfg, load_dataset(cfg), torch.device("cpu")), steps)
    for (pd, pg), (fd, fg) in zip(plain, fast, strict=True):
        assert fd == pytest.approx(pd, rel=2e-3, abs=1e-5)
        assert fg == pytest.approx(pg, rel=2e-3, abs=1e-5)


def test_staged_batches_replay_the_eager_data_order_exactly():
    cfg = _cfg(batch_size=500, k_d=2)  # 5000 digits: an epoch ends every 5 iterations
    data = load_dataset(cfg)
    eager = _fast_losses(Trainer(cfg, data, torch.device("cpu")), 12)
    staged = _fast_losses(Trainer(cfg, data, torch.device("cpu")), 12, staged=True)
    assert eager == staged


def test_failed_graph_capture_falls_back_to_the_same_training(capsys):
    cfg = _cfg(cuda_graphs="auto")
    data = load_dataset(cfg)
    ref = _fast_losses(Trainer(cfg, data, torch.device("cpu")), 10)
    t = Trainer(cfg, data, torch.device("cpu"))
    out = _fast_losses(t, 3)
    note = t.setup_cuda_graph()  # no CUDA here: capture must fail and say why
    assert note.startswith("off (capture failed: RuntimeError: CUDA graphs need a CUDA device")
    assert "training eagerly" in capsys.readouterr().err
    assert t.graph is None
    out += _fast_losses(t, 7)
    assert out == ref


def test_cuda_graphs_on_without_cuda_is_a_clear_error():
    cfg = _cfg(cuda_graphs="on")
    t = Trainer(cfg, load_dataset(cfg), torch.device("cpu"))
    with pytest.raises(GanforgeError, match="--cuda-graphs on needs a CUDA device"):
        t.wants_graph()


def test_options_compile_and_bf16_train_on_cpu(tmp_path):
    for i, extra in enumerate(({"amp": "bf16"}, {"compile": True})):
        run = ganforge.train(_cfg(steps=30, log_every=10, sample_every=100, **extra),
                             out=str(tmp_path / str(i)), progress=False)
        assert all(torch.isfinite(torch.tensor(r["d_loss"])) for r in run.metrics)


def test_sweep_run_k_equals_the_single_run_with_its_config():
    base = _cfg(steps=100, log_every=20, sample_every=50)
    runs = sweep(base, 4, {"lr": [1e-3, 2e-4]}, out=tempfile.mkdtemp(), progress=False)
    assert [r.config.seed for r in runs] == [0, 1, 2, 3]
    assert [r.config.g_lr for r in runs] == [1e-3, 2e-4, 1e-3, 2e-4]
    for k in (0, 3):
        single = ganforge.train(runs[k].config, out=tempfile.mkdtemp(), overwrite=True,
                                progress=False)
        assert len(single.metrics) == len(runs[k].metrics) == 5
        for a, b in zip(runs[k].metrics, single.metrics, strict=True):
            assert a["d_loss"] == pytest.approx(b["d_loss"], rel=1e-3)
            assert a["g_loss"] == pytest.approx(b["g_loss"], rel=1e-3)
        g = ganforge.load(runs[k].dir)
        for p, q in zip(g.G.parameters(), single.G.parameters(), strict=True):
            assert torch.allclose(p, q, atol=2e-3)
    # runs really differ from each other (not one GAN copied R times)
    assert runs[0].metrics[-1]["g_loss"] != runs[2].metrics[-1]["g_loss"]
    for r in runs:
        assert (r.dir / "samples" / "step-0000100.png").exists()
        assert (r.dir / "progress.gif").exists() and (r.dir / "losses.png").exists()


def test_sweep_rejects_what_it_cannot_vary():
    with pytest.raises(GanforgeError, match="--vary batch_size: a sweep can vary"):
        expand_runs(_cfg(), 2, parse_vary(["batch_size=32,64"]))
    with pytest.raises(GanforgeError, match="expected key=v1,v2"):
        parse_vary(["lr"])
