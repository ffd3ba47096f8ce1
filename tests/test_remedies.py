"""The mode-collapse remedies: packing, minibatch-std, DiffAugment, unrolled D steps, top-k."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import state_tensors as _tensors
from test_faults import _rows

import ganforge
from ganforge import checkpoint
from ganforge.config import resolve
from ganforge.data import load_dataset
from ganforge.diffaugment import AUGMENTS, DiffAugment
from ganforge.errors import GanforgeError
from ganforge.losses import OBJECTIVES
from ganforge.models import build_models
from ganforge.remedies import (
    MinibatchStdLinear,
    g_loss_top_k,
    minibatch_std,
    pack,
    top_k,
    topk_share,
)
from ganforge.train import Trainer

CPU = torch.device("cpu")
RING = dict(batch_size=32, steps=20, log_every=10, sample_every=1000, ckpt_every=1000)


def _trainer(preset: str = "ring-8", **kw) -> Trainer:
    cfg = resolve(preset, overrides={**RING, **kw})
    return Trainer(cfg, load_dataset(cfg), CPU)


def _first_linear(D: torch.nn.Module) -> torch.nn.Linear:
    return next(m for m in D.modules() if isinstance(m, torch.nn.Linear))


# --- packing ---------------------------------------------------------------------------------
def test_packing_widens_d_and_every_sample_of_a_pack_reaches_its_output():
    cfg = resolve("ring-8", overrides=dict(pac=3, batch_size=99))
    _, D = build_models(cfg, (2,))
    assert _first_linear(D).in_features == 3 * 2  # m·d inputs
    x = torch.randn(9, 2, requires_grad=True)
    out = D(x)
    assert out.shape == (3,)
    out[1].backward()
    g = x.grad.abs().sum(1)
    # pack 1 is samples 3, 4, 5: all of them (and nothing else) get a gradient
    assert (g[3:6] > 0).all() and (g[:3] == 0).all() and (g[6:] == 0).all()


def test_packing_images_concatenates_along_channels():
    x = torch.arange(4 * 1 * 2 * 2, dtype=torch.float32).view(4, 1, 2, 2)
    p = pack(x, 2)
    assert p.shape == (2, 2, 2, 2)
    assert torch.equal(p[1], torch.cat([x[2], x[3]], 0))
    cfg = resolve("dcgan-mnist", overrides=dict(pac=2, dataset="mnist-sample", batch_size=8))
    _, D = build_models(cfg, (1, 28, 28))
    conv = next(m for m in D.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.in_channels == 2
    assert D(torch.rand(8, 1, 28, 28)).shape == (4,)


def test_packing_keeps_real_and_fake_packs_apart():
    t = _trainer(pac=4)
    seen = []
    t.D.net.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    t.iteration()
    x = seen[0]  # D step: 32 real then 32 fake samples, packed into 8 + 8 packs of 4
    assert x.shape == (16, 8)
    real = x[:8].reshape(-1, 2)
    # real ring-8 points lie near radius 2; an untrained G's points do not
    assert torch.allclose(real.norm(dim=1), torch.full((32,), 2.0), atol=0.2)
    assert not torch.allclose(x[8:].reshape(-1, 2).norm(dim=1), torch.full((32,), 2.0), atol=0.2)


@pytest.mark.parametrize("fields,message", [
    (dict(pac=3, batch_size=32), "multiple of the pack size"),
    (dict(pac=0), "pac: expected 1"),
    (dict(mbstd_group=3, batch_size=32), "must be a multiple of it"),
    (dict(pac=2, mbstd_group=32, batch_size=32), "batch of 16 .packs."),
    (dict(unroll_steps=-1), "unroll_steps: expected 0"),
    (dict(topk=0.0), r"topk: expected .* in \(0, 1\]"),
    (dict(topk=1.5), "topk: expected"),
    (dict(topk=float("nan")), "topk.: expected float, got nan"),
    (dict(topk_steps=-1), "topk_steps: expected 0"),
])
def test_bad_remedy_settings_are_one_line_errors(fields, message):
    with pytest.raises(GanforgeError, match=message) as e:
        resolve("ring-8", overrides=fields)
    assert "\n" not in str(e.value)


# --- minibatch standard deviation -------------------------------------------------------------
def test_minibatch_std_of_identical_samples_is_zero_and_of_a_known_batch_is_hand_computed():
    same = torch.randn(1, 5).expand(8, 5)
    assert torch.equal(minibatch_std(same, 4), torch.zeros(8, 1))
    # groups of 8 of D's 128 features (the presets' shape): the group mean rounds, the feature
    # stays far below a spread of one in ten thousand (sqrt(var + eps) alone would be 1e-4)
    same = torch.randn(64, 1, 128).expand(64, 8, 128).reshape(512, 128)
    assert minibatch_std(same, 8).abs().max() < 1e-9
    assert minibatch_std(same, 8, runs=False).shape == (512, 1)
    assert minibatch_std(same.view(2, 256, 128), 8, runs=True).abs().max() < 1e-9
    # group 1: [0, 0], [2, 4] -> population std per feature 1 and 2 -> mean 1.5
    # group 2: [1, 1], [1, 3] -> std 0 and 1 -> mean 0.5
    h = torch.tensor([[0.0, 0.0], [2.0, 4.0], [1.0, 1.0], [1.0, 3.0]])
    got = minibatch_std(h, 2).squeeze(1)
    want = torch.tensor([1.5, 1.5, 0.5, 0.5])
    assert torch.allclose(got, want, atol=2e-4)  # sqrt(var + 1e-8) - 1e-4


def test_mbstd_feeds_d_last_layer_within_its_group_only():
    cfg = resolve("ring-8", overrides=dict(mbstd_group=4))
    _, D = build_models(cfg, (2,))
    last = [m for m in D.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert isinstance(last, MinibatchStdLinear) and last.in_features == cfg.d_hidden + 1
    x = torch.randn(8, 2, requires_grad=True)
    D(x)[0].backward()
    g = x.grad.abs().sum(1)
    assert (g[1:4] > 0).all() and (g[4:] == 0).all()  # its group of 4, not the next one


# --- DiffAugment -----------------------------------------------------------------------------
def test_translation_is_a_zero_filled_integer_shift():
    x = torch.rand(16, 1, 8, 8) + 1.0  # no zeros of its own
    y = AUGMENTS.get("translation")(x, torch.Generator().manual_seed(0))
    shifted = 0
    for a, b in zip(x, y, strict=True):
        ok = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)
              if torch.equal(b, _shift(a, dy, dx))]
        assert ok, "not a shift"
        shifted += ok[0] != (0, 0)
    assert shifted > 0


def _shift(a: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(a)
    h, w = a.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        a[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


@pytest.mark.parametrize("name", ["translation", "cutout", "color"])
def test_each_augmentation_is_differentiable(name):
    op = AUGMENTS.get(name)
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: op(v, torch.Generator().manual_seed(1)), (x,))


def test_diffaugment_sees_real_and_fake_and_g_gets_its_gradient():
    t = _trainer("mlp-mnist", dataset="mnist-sample", diffaugment="translation,cutout,color")
    calls = []
    aug = t.D.diffaugment
    inner = aug.ops

    def spy(x, gen):
        calls.append((x.shape[0], x.requires_grad))
        return x

    aug.ops = [spy] + inner
    t.iteration()
    # D step: the 32 real and 32 fake images in one call; G step: 32 fake, in G's graph
    assert calls == [(64, False), (32, True)]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in t.G.parameters())


def test_diffaugment_refuses_points():
    with pytest.raises(GanforgeError, match="diffaugment: augments images"):
        _trainer(diffaugment="color")
    with pytest.raises(GanforgeError, match="unknown diffaugment policy"):
        resolve("mlp-mnist", overrides=dict(diffaugment="translation,flip"))


def test_diffaugment_draws_from_the_run_stream():
    assert isinstance(_trainer("mlp-mnist", dataset="mnist-sample",
                               diffaugment="cutout").D.diffaugment, DiffAugment)
    t = _trainer("mlp-mnist", dataset="mnist-sample", diffaugment="cutout")
    assert t.D.diffaugment.generator is t.gen


# --- unrolled D steps ------------------------------------------------------------------------
def _g_grads_after_one_g_phase(t: Trainer) -> list[torch.Tensor]:
    t.noise, t.fake_labels = [t.prior(t.cfg.batch_size, t.cfg.z_dim, t.gen)], [None]
    t.phases[1][2]()
    return [p.grad.clone() for p in t.G.parameters()]


def test_unrolled_steps_leave_d_unchanged_and_change_g_gradient():
    t, plain = _trainer(unroll_steps=3), _trainer()
    for tr in (t, plain):
        tr.iteration()  # Adam has state for D and G now
    d_before = [v.clone() for v in t.D.state_dict().values()]
    adam_before = [v.clone() for s in t.opt_d.state.values() for v in s.values()]
    assert all(torch.equal(a, b) for a, b in zip(t.D.parameters(), plain.D.parameters(),
                                                  strict=True))
    grads = _g_grads_after_one_g_phase(t)
    ref = _g_grads_after_one_g_phase(plain)
    assert all(torch.equal(a, b) for a, b in zip(t.D.state_dict().values(), d_before,
                                                  strict=True))
    assert all(torch.equal(a, b) for a, b in
               zip([v for s in t.opt_d.state.values() for v in s.values()], adam_before,
                   strict=True))
    # the same G, noise and D weights: only the unrolled D can make the gradients differ
    assert any(not torch.allclose(a, b) for a, b in zip(grads, ref, strict=True))


# --- top-k G updates ---------------------------------------------------------------------------
def test_top_k_keeps_what_d_scores_most_real_under_each_objectives_convention():
    out = torch.tensor([[0.3, -2.0, 5.0, 1.0, -0.5], [9.0, 8.0, -9.0, 0.0, 1.0]])
    kept, idx = top_k(OBJECTIVES.get("nonsaturating")(), out, 0.5)  # ceil(2.5) = 3 per row
    assert [sorted(r) for r in idx.tolist()] == [[0, 2, 3], [0, 1, 4]]
    assert torch.equal(kept, out.gather(-1, idx))
    # BEGAN's D is an autoencoder: a low reconstruction error is what it calls real
    _, idx = top_k(OBJECTIVES.get("began")(), out, 0.4)
    assert [sorted(r) for r in idx.tolist()] == [[1, 4], [2, 3]]
    # least squares: a score above 1 is more real, though G's loss 0.5 (d - 1)^2 grows there
    _, idx = top_k(OBJECTIVES.get("least-squares")(), torch.tensor([3.0, 1.0, 0.9, 0.2]), 0.5)
    assert sorted(idx.tolist()) == [0, 1]
    assert top_k(OBJECTIVES.get("hinge")(), out, 1.0) == (out, None)
    assert top_k(OBJECTIVES.get("hinge")(), torch.zeros(512), 0.75)[0].shape == (384,)


def test_topk_g_gradient_reaches_exactly_the_kept_samples():
    t = _trainer(topk=0.25, r1_gamma=0.0)
    z = t.prior(32, t.cfg.z_dim, t.gen)
    fake = t.G(z).detach().requires_grad_()
    out = t.D(fake)
    loss = g_loss_top_k(t.objective, out, 0.25)
    loss.backward()
    best = out.detach().topk(8).indices  # non-saturating: the 8 highest logits
    reached = fake.grad.abs().sum(1) > 0
    assert reached.sum() == 8 and reached[best].all()
    assert torch.allclose(loss, t.objective.g_loss(out[best]))


@pytest.mark.parametrize("topk", [1.0, 0.5])
def test_topk_by_hand_is_autograds_and_the_trainer_uses_it(topk):
    """The hand-derived G step scatters the kept samples' gradient (the setup self-check
    would refuse backward=manual otherwise), and a G step with top-k moves G differently."""
    hand = _trainer(topk=topk, r1_gamma=0.0, backward="manual")
    auto = _trainer(topk=topk, r1_gamma=0.0, backward="autograd")
    assert hand.by_hand is not None and auto.by_hand is None
    for t in (hand, auto):
        t.iteration()
    grads = _g_grads_after_one_g_phase(hand)
    ref = _g_grads_after_one_g_phase(auto)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    plain = _trainer(r1_gamma=0.0, backward="manual")
    plain.iteration()
    changed = any(not torch.allclose(a, b) for a, b in
                  zip(_g_grads_after_one_g_phase(plain), grads, strict=True))
    assert changed == (topk < 1.0)


def test_topk_is_refused_with_several_processes():
    """N processes must take the step one process takes with the whole batch; a top-k of
    each share is not the top-k of the batch."""
    from ganforge.remedies import check_batches

    cfg = resolve("ring-8", overrides=dict(topk=0.5, batch_size=32))
    check_batches(cfg, 32, 1)
    with pytest.raises(GanforgeError, match="topk=0.5: .* 2 processes") as e:
        check_batches(cfg, 16, 2)
    assert "\n" not in str(e.value)
    # the remedies cut from each share (packs, minibatch-std groups) are not refused
    shared = resolve("ring-8", overrides=dict(pac=2, mbstd_group=4, batch_size=32))
    check_batches(shared, 16, 2)


def test_topk_steps_hands_every_sample_back_after_its_iterations():
    """topk_steps=5: iterations 0-4 learn from the best half, iteration 5 on from all."""
    cfg = resolve("ring-8", overrides=dict(topk=0.5, topk_steps=5))
    assert [topk_share(cfg, i) for i in (0, 4, 5, 99)] == [0.5, 0.5, 1.0, 1.0]
    assert topk_share(resolve("ring-8", overrides=dict(topk=0.5)), 10**6) == 0.5
    early, late, plain = (_trainer(r1_gamma=0.0, **kw) for kw in
                          (dict(topk=0.5, topk_steps=5),) * 2 + ({},))
    early.step_count, late.step_count = 4, 5  # the same G, D and noise otherwise
    ref = _g_grads_after_one_g_phase(plain)
    assert all(torch.equal(a, b) for a, b in
               zip(_g_grads_after_one_g_phase(late), ref, strict=True))
    assert any(not torch.allclose(a, b) for a, b in
               zip(_g_grads_after_one_g_phase(early), ref, strict=True))


# --- fast paths and the sweep refuse what they cannot do ---------------------------------------
@pytest.mark.parametrize("field,value", [("pac", 2), ("unroll_steps", 1)])
def test_hand_gradients_step_aside_for_remedies(field, value):
    plain = dict(r1_gamma=0.0)  # ring-8's R1 would be refused first
    assert _trainer(**plain, backward="auto").by_hand is not None
    assert _trainer(**plain, **{field: value}, backward="auto").by_hand is None
    with pytest.raises(GanforgeError, match=f"backward=manual: .*remedy {field}"):
        _trainer(**plain, **{field: value}, backward="manual")


def test_sweep_refuses_remedies(tmp_path):
    from ganforge.sweep import sweep

    base = resolve("ring-8", overrides=dict(r1_gamma=0.0, pac=2, steps=2))
    with pytest.raises(GanforgeError, match="sweep: runs with pac do not stack"):
        sweep(base, 2, out=str(tmp_path / "s"), progress=False)


# --- resume continues the same run with each remedy on ------------------------------------------
@pytest.mark.parametrize("extra", [
    dict(preset="ring-8", pac=2),
    dict(preset="ring-8", mbstd_group=4),
    dict(preset="ring-8", unroll_steps=2),
    dict(preset="ring-8", topk=0.5, topk_steps=15),  # top-k ends after the resume
    dict(preset="mlp-mnist", dataset="mnist-sample", diffaugment="translation,cutout,color"),
], ids=["pac", "mbstd", "unroll", "topk", "diffaugment"])
def test_resume_is_bit_identical_with_each_remedy(tmp_path, extra):
    N = 10
    cfg = dict(batch_size=32, log_every=5, sample_every=10, ckpt_every=10, progress=False,
               **extra)
    straight = ganforge.train(steps=2 * N, out=str(tmp_path / "straight"), **cfg)
    first = ganforge.train(steps=N, out=str(tmp_path / "resumed"), **cfg)
    resumed = ganforge.train(resume=first.dir, steps=2 * N, progress=False)
    a = checkpoint.load(straight.final_checkpoint)
    b = checkpoint.load(resumed.final_checkpoint)
    ta, tb = dict(_tensors(a)), dict(_tensors(b))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert _rows(straight.dir) == _rows(resumed.dir)
    assert math.isfinite(_rows(straight.dir)[-1]["d_loss"])


def test_pacgan_presets_build_pacgans_nets():
    from ganforge.models.mlp import Maxout

    cfg = resolve("pacgan3-ring-8")
    assert (cfg.pac, cfg.batch_size, cfg.z_dim, cfg.steps) == (3, 300, 2, 400_000)
    G, D = build_models(cfg, (2,))
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in G.modules()) == 4
    maxouts = [m for m in D.modules() if isinstance(m, Maxout)]
    assert len(maxouts) == 3 and all(m.pieces == 5 for m in maxouts)
    assert maxouts[0].linear.in_features == 3 * 2 and maxouts[0].linear.out_features == 1000
    assert D(torch.randn(12, 2)).shape == (4,)
