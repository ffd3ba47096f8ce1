"""The GAN family's objectives and penalties against hand computations."""

import math

import pytest
import torch
from torch import nn

from ganforge.config import resolve
from ganforge.losses import BEGAN, OBJECTIVES, build_objective
from ganforge.penalties import clip_weights, gradient_penalty, r1_penalty

REAL = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
FAKE = torch.tensor([-3.0, 0.0, 1.5], dtype=torch.float64)


def mean(xs):
    return sum(xs) / len(xs)


@pytest.mark.parametrize("name, d_want, g_want", [
    ("least-squares",
     0.5 * mean([(r - 1) ** 2 for r in REAL.tolist()]) + 0.5 * mean([f**2 for f in FAKE.tolist()]),
     0.5 * mean([(f - 1) ** 2 for f in FAKE.tolist()])),
    ("hinge",
     mean([max(0, 1 - r) for r in REAL.tolist()]) + mean([max(0, 1 + f) for f in FAKE.tolist()]),
     -mean(FAKE.tolist())),
    ("wasserstein", mean(FAKE.tolist()) - mean(REAL.tolist()), -mean(FAKE.tolist())),
    ("wgan-gp", mean(FAKE.tolist()) - mean(REAL.tolist()), -mean(FAKE.tolist())),
])
def test_losses_at_known_outputs(name, d_want, g_want):
    obj = OBJECTIVES.get(name)()
    assert obj.d_loss(REAL, FAKE).item() == pytest.approx(d_want, rel=1e-12)
    assert obj.g_loss(FAKE).item() == pytest.approx(g_want, rel=1e-12)
    assert not obj.outputs_logits


def test_every_objective_is_registered():
    assert set(OBJECTIVES.names()) >= {"nonsaturating", "minimax", "wasserstein", "wgan-gp",
                                       "least-squares", "hinge", "began"}


class Linear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return x.flatten(1) @ self.w + 0.3


def test_wgan_gp_penalty_of_a_linear_critic_is_lambda_norm_minus_one_squared():
    torch.manual_seed(0)
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # ||w|| = 5 for every interpolate
    D = Linear(w)
    real, fake = torch.randn(16, 1, 2, 2), torch.randn(16, 1, 2, 2)
    gp = gradient_penalty(D, real, fake, torch.Generator().manual_seed(1))
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2, rel=1e-5)
    gp.backward()  # the penalty trains the critic: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w/||w||
    assert torch.allclose(D.w.grad, 2 * 4.0 * w / 5.0, rtol=1e-4)


def test_gradient_penalty_uses_one_coefficient_per_sample():
    # a critic whose gradient depends on where x_hat lies: D(x) = 0.5 ||x||^2, grad = x_hat
    class Quad(nn.Module):
        def forward(self, x):
            return 0.5 * x.flatten(1).pow(2).sum(1)

    real, fake = torch.ones(4, 3), torch.zeros(4, 3)
    gen = torch.Generator().manual_seed(7)
    eps = torch.rand((4, 1), generator=torch.Generator().manual_seed(7))
    # x_hat = eps * 1 + (1 - eps) * 0 = eps in every coordinate: ||grad|| = eps * sqrt(3)
    want = ((eps.squeeze(1) * math.sqrt(3) - 1) ** 2).mean()
    assert gradient_penalty(Quad(), real, fake, gen).item() == pytest.approx(want.item(), 1e-5)


def test_r1_on_a_quadratic_critic():
    a = 0.7

    class Quad(nn.Module):
        def forward(self, x):
            return 0.5 * a * x.flatten(1).pow(2).sum(1)

    x = torch.randn(8, 1, 3, 3)
    want = (a**2 * x.flatten(1).pow(2).sum(1)).mean()
    assert r1_penalty(Quad(), x).item() == pytest.approx(want.item(), rel=1e-5)


def test_weight_clipping_bounds_every_critic_parameter():
    D = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 1))
    with torch.no_grad():
        for p in D.parameters():
            p.mul_(100)
    clip_weights(D, 0.01)
    assert all(p.abs().max() <= 0.01 for p in D.parameters())
    assert any(p.abs().max() == 0.01 for p in D.parameters())


def test_began_k_follows_the_equilibrium_and_stays_in_unit_interval():
    obj = BEGAN(gamma=0.5, lambda_k=0.1)
    real, fake = torch.full((4,), 1.0), torch.full((4,), 0.2)
    obj.d_loss(real, fake)
    obj.after_d_step(None, real, fake)  # k += 0.1 (0.5 * 1.0 - 0.2) = 0.03
    assert obj.k.item() == pytest.approx(0.03)
    assert obj.m.item() == pytest.approx(1.0 + 0.3)  # M = L(x) + |gamma L(x) - L(G(z))|
    assert obj.d_loss(real, fake).item() == pytest.approx(1.0 - 0.03 * 0.2)
    for _ in range(100):
        obj.after_d_step(None, real * 100, fake)
    assert obj.k.item() == 1.0
    for _ in range(100):
        obj.after_d_step(None, real, fake * 100)
    assert obj.k.item() == 0.0


def test_began_training_logs_k_and_convergence_in_range(tmp_path):
    import ganforge

    run = ganforge.train(dataset="mnist-sample", model="mlp-began", objective="began",
                         steps=60, log_every=20, sample_every=1000,
                         out=str(tmp_path / "b"), progress=False)
    for row in run.metrics:
        assert 0.0 <= row["k"] <= 1.0 and row["convergence"] > 0


def test_objective_hyper_parameters_come_from_the_config():
    from ganforge.penalties import active_penalties, weight

    cfg = resolve(overrides={"objective": "wasserstein", "clip": 0.05})
    assert active_penalties([cfg], build_objective(cfg).penalties) == ["clip"]
    assert weight("clip", [cfg], torch.device("cpu")) == 0.05
    cfg = resolve(overrides={"objective": "wgan-gp", "gp_lambda": 3.0, "r1_gamma": 2.0})
    assert active_penalties([cfg], build_objective(cfg).penalties) == ["gp", "r1"]
    assert weight("gp", [cfg], torch.device("cpu")) == 3.0
    assert weight("r1", [cfg], torch.device("cpu")) == 1.0  # gamma / 2
    b = build_objective(resolve(overrides={"objective": "began", "model": "mlp-began",
                                           "began_gamma": 0.7}))
    assert b.gamma == 0.7


def test_began_state_loads_in_place():
    """BEGAN's k and M are read by a captured CUDA graph: a checkpoint is copied into the
    very same tensors, not swapped for new ones."""
    from ganforge.losses import BEGAN

    trained, fresh = BEGAN(), BEGAN()
    trained.k.fill_(0.3)
    trained.m.fill_(0.7)
    k, m = fresh.k, fresh.m
    fresh.load_state_dict(trained.state_dict())
    assert fresh.k is k and fresh.m is m
    assert float(k) == pytest.approx(0.3) and float(m) == pytest.approx(0.7)
