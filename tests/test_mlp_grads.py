"""Gradients derived by hand (the CPU's fast path) against autograd's, and the lean Adam step
against torch.optim's (issue: speed)."""

import copy
import dataclasses
import json

import pytest
import torch
from torch import nn

import ganforge
from ganforge.config import resolve
from ganforge.data import load_dataset
from ganforge.errors import GanforgeError
from ganforge.losses import OBJECTIVES
from ganforge.mlp_grads import Chain, MLPGradients
from ganforge.optim import lean_step, runs_step
from ganforge.remedies import MinibatchStdLinear
from ganforge.stack import run_views
from ganforge.train import Trainer

OBJECTIVE_NAMES = ("nonsaturating", "minimax", "least-squares", "hinge", "wasserstein")


def _nets(acts=(nn.ReLU, nn.Sigmoid), mbstd=0):
    """mbstd > 0: D's last layer takes the minibatch-std feature over groups of that size."""
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(6, 16), acts[0](), nn.Linear(16, 12), acts[1]())
    last = MinibatchStdLinear(8, 1, mbstd) if mbstd else nn.Linear(8, 1)
    D = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.LeakyReLU(0.2), nn.Linear(16, 8),
                      nn.Tanh(), last)
    return G.double(), D.double()


def _autograd_grads(G, D, objective, real, z_d, z_g):
    B = real.shape[0]
    out = D(torch.cat([real, G(z_d).detach()])).squeeze(1)
    d_loss = objective.d_loss(out[:B], out[B:])
    d_grads = torch.autograd.grad(d_loss, list(D.parameters()))
    g_loss = objective.g_loss(D(G(z_g)).squeeze(1))
    g_grads = torch.autograd.grad(g_loss, list(G.parameters()))
    return d_loss, d_grads, g_loss, g_grads


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
@pytest.mark.parametrize("acts,mbstd", [((nn.ReLU, nn.Sigmoid), 0), ((nn.Tanh, nn.Identity), 0),
                                        ((nn.ReLU, nn.Sigmoid), 5)])
def test_hand_gradients_equal_autograds(name, acts, mbstd):
    """mbstd 5: D's 20 inputs (10 real, 10 fake) in 4 groups; G's gradient reaches each fake
    sample also through its group's standard deviation."""
    G, D = _nets(acts, mbstd)
    objective = OBJECTIVES.get(name)()
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(10, 12, generator=gen, dtype=torch.float64)
    z_d, z_g = torch.randn(2, 10, 6, generator=gen, dtype=torch.float64)
    want_d_loss, want_d, want_g_loss, want_g = _autograd_grads(G, D, objective, real, z_d, z_g)

    hand = MLPGradients(Chain.of(G), Chain.of(D), objective)
    d_loss, out = hand.d_backward(real, z_d)
    assert out.shape == (20,)
    assert d_loss.item() == pytest.approx(want_d_loss.item(), rel=1e-12)
    for p, g in zip(D.parameters(), want_d, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)
    d_after = [p.grad for p in D.parameters()]
    g_loss = hand.g_backward(z_g)
    assert g_loss.item() == pytest.approx(want_g_loss.item(), rel=1e-12)
    for p, g in zip(G.parameters(), want_g, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)
    # G's step leaves D's gradients alone (no wasted D gradients, none overwritten)
    assert all(p.grad is q for p, q in zip(D.parameters(), d_after, strict=True))


@pytest.mark.parametrize("name", ["nonsaturating", "minimax"])
def test_closed_form_loss_gradients_keep_their_precision_when_d_is_sure(name):
    # logits where sigmoid(l) rounds to 1 in float32: sigmoid(l) - 1 would give 0
    logits = torch.tensor([-20.0, -8.0, 0.5, 8.0, 12.0, 16.0, 20.0, 30.0])
    objective = OBJECTIVES.get(name)()
    loss, g_real, g_fake = objective.d_loss_grad(logits, -logits)
    g_loss, g_gen = objective.g_loss_grad(logits)
    exact = [torch.autograd.grad(f(x), x) for f, x in (
        (lambda x: objective.d_loss(x, -logits.double()), logits.double().requires_grad_()),
        (lambda x: objective.d_loss(logits.double(), x), (-logits).double().requires_grad_()),
        (objective.g_loss, logits.double().requires_grad_()))]
    for got, (want,) in zip((g_real, g_fake, g_gen), exact, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0)
    assert loss.item() == pytest.approx(objective.d_loss(logits, -logits).item())
    assert g_loss.item() == pytest.approx(objective.g_loss(logits).item())


def _stacked_chain(nets: list[nn.Sequential]) -> Chain:
    """R chains' weights stacked along a run axis, (R, out, in), as ganforge.stack holds them."""
    chains = [Chain.of(n) for n in nets]
    Ws = [nn.Parameter(torch.stack([c.layers[i][0].detach() for c in chains]))
          for i in range(len(chains[0].layers))]
    bs = [nn.Parameter(torch.stack([c.layers[i][1].detach() for c in chains]))
          for i in range(len(chains[0].layers))]
    return Chain(Ws, bs, [a for _, _, a in chains[0].layers], stacked=True,
                 mbstd=chains[0].mbstd)


@pytest.mark.parametrize("device_loops", [True, False])
@pytest.mark.parametrize("mbstd", [0, 5])
def test_stacked_hand_gradients_are_each_runs_own(monkeypatch, device_loops, mbstd):
    """Both stacked paths: the CPU's run-by-run products and the batched one GPUs take; with
    minibatch-std, each run's batch is grouped on its own."""
    import ganforge.mlp_grads as mg

    monkeypatch.setattr(mg, "_loops", lambda t: device_loops)
    nets = [_nets(mbstd=mbstd) for _ in range(3)]
    for k, (G, D) in enumerate(nets):  # three different GANs
        with torch.no_grad():
            for p in [*G.parameters(), *D.parameters()]:
                p.add_(0.1 * k)
    objective = OBJECTIVES.get("nonsaturating")()
    SG, SD = _stacked_chain([G for G, _ in nets]), _stacked_chain([D for _, D in nets])
    gen = torch.Generator().manual_seed(2)
    real = torch.rand(3, 10, 12, generator=gen, dtype=torch.float64)
    z = torch.randn(2, 3, 10, 6, generator=gen, dtype=torch.float64)
    hand = MLPGradients(SG, SD, objective)
    d_loss, _ = hand.d_backward(real, z[0])
    g_loss = hand.g_backward(z[1])
    for k, (G, D) in enumerate(nets):
        want = _autograd_grads(G, D, objective, real[k], z[0, k], z[1, k])
        assert d_loss[k].item() == pytest.approx(want[0].item(), rel=1e-12)
        assert g_loss[k].item() == pytest.approx(want[2].item(), rel=1e-12)
        # every layer: D's last one holds the weight of the minibatch-std column
        for chain, grads in ((SD, want[1]), (SG, want[3])):
            for i, (W, b, _) in enumerate(chain.layers):
                torch.testing.assert_close(W.grad[k], grads[2 * i], rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(b.grad[k], grads[2 * i + 1], rtol=1e-10, atol=1e-12)


def _cfg(**kw):
    return resolve("mlp-mnist", overrides={"dataset": "mnist-sample", "device": "cpu", **kw})


def _losses(cfg, data, steps):
    t = Trainer(cfg, data, torch.device("cpu"))
    rows = []
    for _ in range(steps):
        t.step()
        t.counts = [1, 1]
        rows.append(t.read_stats()[0])
    return t, rows


@pytest.mark.parametrize("preset,extra", [("mlp-mnist", {}), ("toy-1d", {}),
                                          ("mlp-mnist", {"objective": "minimax", "k_d": 2,
                                                         "ema": 50.0}),
                                          ("ring-8", {"mbstd_group": 8, "r1_gamma": 0.0})])
def test_trainer_by_hand_matches_autograd(preset, extra):
    over = {"dataset": "mnist-sample"} if preset == "mlp-mnist" else {}
    cfg = resolve(preset, overrides={**over, "device": "cpu", "batch_size": 64, **extra})
    data = load_dataset(cfg)
    hand, a = _losses(dataclasses.replace(cfg, backward="manual"), data, 150)
    auto, b = _losses(dataclasses.replace(cfg, backward="autograd"), data, 150)
    assert hand.by_hand is not None and auto.by_hand is None
    for ra, rb in zip(a, b, strict=True):
        for key in ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), key
    for p, q in zip(hand.sampling_G.parameters(), auto.sampling_G.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_by_hand_is_the_cpu_default_and_refuses_what_it_cannot_do(tmp_path):
    cfg = _cfg()
    data = load_dataset(cfg)
    assert Trainer(cfg, data, torch.device("cpu")).by_hand is not None
    for change, path in (({}, "by hand"), ({"backward": "autograd"}, "autograd"),
                         ({"r1_gamma": 0.1}, "autograd")):
        run = ganforge.train(preset="toy-1d", steps=3, device="cpu", out=tmp_path / path,
                             overwrite=True, progress=False, **change)
        record = json.loads((run.dir / "config.json").read_text())
        assert record["data_used"]["backward"] == path  # which path ran, in the run folder
    for change, what in (({"model": "dcgan"}, "model 'dcgan'"),
                         ({"r1_gamma": 1.0}, "the penalty r1"),
                         ({"objective": "wgan-gp"}, "the penalty gp"),
                         ({"amp": "bf16"}, "bf16")):
        c = dataclasses.replace(cfg, **change)
        if c.model == "dcgan":
            c = resolve("dcgan-mnist", overrides={"dataset": "mnist-sample", "device": "cpu"})
        assert Trainer(c, data, torch.device("cpu")).by_hand is None  # auto: autograd
        with pytest.raises(GanforgeError, match=f"backward=manual: .*{what}"):
            Trainer(dataclasses.replace(c, backward="manual"), data, torch.device("cpu"))


def test_lean_adam_step_is_torchs_fused_adam():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 1)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.Adam(n.parameters(), lr=1e-2, betas=(0.5, 0.99), fused=True)
            for n in nets]
    steps = [opts[0].step, lean_step(opts[1])]
    assert steps[1] != opts[1].step  # the lean path applies here
    x = torch.randn(32, 5)
    for i in range(25):
        if i == 10:  # what --on-nan rollback and resume do between steps
            for opt in opts:
                opt.param_groups[0]["lr"] *= 0.5
            opts[1].load_state_dict(copy.deepcopy(opts[0].state_dict()))  # as from a file
            nets[1].load_state_dict(nets[0].state_dict())
        for net, opt, step in zip(nets, opts, steps, strict=True):
            opt.zero_grad()
            net(x).square().mean().backward()
            step()
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(p, q)
    s0, s1 = opts[0].state_dict()["state"], opts[1].state_dict()["state"]
    assert all(torch.equal(s0[k]["exp_avg_sq"], s1[k]["exp_avg_sq"]) for k in s0)
    assert float(s1[0]["step"]) == 25
    # anything else keeps torch's own step
    sgd = torch.optim.SGD(nets[0].parameters(), lr=0.1)
    assert lean_step(sgd) == sgd.step


def test_run_optimisers_over_slices_equal_single_runs_adam():
    """R runs' own torch Adams over their slices of the stack, grouped into fused calls where
    their settings agree, update exactly as R separate single-run Adams do."""
    torch.manual_seed(0)
    R, lrs = 4, [1e-2, 2e-3, 1e-2, 5e-4]
    stack = nn.Sequential(nn.Linear(3, 5))
    with torch.no_grad():
        stacked = [nn.Parameter(torch.randn(R, *p.shape)) for p in stack.parameters()]
    holder = nn.Module()
    holder.params = nn.ParameterList(stacked)
    views = run_views(holder, R)
    opts = [torch.optim.Adam(v, lr=lr, betas=(0.5, 0.999), fused=True)
            for v, lr in zip(views, lrs, strict=True)]
    singles = [[nn.Parameter(p[k].detach().clone()) for p in stacked] for k in range(R)]
    single_opts = [torch.optim.Adam(ps, lr=lr, betas=(0.5, 0.999), fused=True)
                   for ps, lr in zip(singles, lrs, strict=True)]
    steps = [lean_step(o) for o in single_opts]
    step = runs_step(opts, views, stacked)
    for _ in range(20):
        grads = [torch.randn(R, *p.shape[1:]) for p in stacked]
        for p, g in zip(stacked, grads, strict=True):
            p.grad = g.clone()
        step()
        for k in range(R):
            for p, g in zip(singles[k], grads, strict=True):
                p.grad = g[k].clone()
            steps[k]()
    for k in range(R):
        for p, q in zip(stacked, singles[k], strict=True):
            assert torch.equal(p[k], q)  # bit for bit
        assert float(opts[k].state_dict()["state"][0]["step"]) == 20
