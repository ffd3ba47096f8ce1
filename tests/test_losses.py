import math

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.losses import OBJECTIVES

REAL = [2.0, -1.0, 0.5]
FAKE = [-3.0, 0.0, 1.5]


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def hand_d_loss() -> float:
    # -mean(log D(x) + log(1 - D(G(z)))), written out with probabilities
    terms = [math.log(sig(r)) + math.log(1 - sig(f)) for r, f in zip(REAL, FAKE, strict=True)]
    return -sum(terms) / len(terms)


@pytest.mark.parametrize("name", ["nonsaturating", "minimax"])
def test_d_loss_matches_hand_computation(name):
    obj = OBJECTIVES.get(name)()
    real, fake = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
    got = obj.d_loss(real, fake)
    assert got.item() == pytest.approx(hand_d_loss(), rel=1e-12)


def test_nonsaturating_g_loss_is_minus_mean_log_d():
    want = -sum(math.log(sig(f)) for f in FAKE) / len(FAKE)
    got = OBJECTIVES.get("nonsaturating")().g_loss(torch.tensor(FAKE, dtype=torch.float64))
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_minimax_g_loss_is_mean_log_one_minus_d():
    want = sum(math.log(1 - sig(f)) for f in FAKE) / len(FAKE)
    got = OBJECTIVES.get("minimax")().g_loss(torch.tensor(FAKE, dtype=torch.float64))
    assert got.item() == pytest.approx(want, rel=1e-12)
    assert got.item() < 0  # log of a probability


@pytest.mark.parametrize("name", ["nonsaturating", "minimax"])
def test_losses_stay_finite_where_sigmoid_saturates(name):
    # sigmoid(+-200) is exactly 0 or 1 in float32: log(0) would be -inf; softplus is not
    obj = OBJECTIVES.get(name)()
    big = torch.tensor([200.0, -200.0], requires_grad=True)
    loss = obj.d_loss(big, -big) + obj.g_loss(big)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    # D confidently right: its loss is ~0 on the real +200 / fake -200 pair
    assert obj.d_loss(big[:1], -big[:1]).item() == pytest.approx(0.0, abs=1e-6)


def test_saturating_gradient_vanishes_where_nonsaturating_does_not():
    # the reason for the non-saturating loss: when D rejects fakes (logit -10), minimax's
    # gradient for G is tiny while the non-saturating one is ~1
    grads = {}
    for name in ("minimax", "nonsaturating"):
        logit = torch.tensor([-10.0], requires_grad=True)
        OBJECTIVES.get(name)().g_loss(logit).backward()
        grads[name] = abs(logit.grad.item())
    assert grads["minimax"] < 1e-4 < 0.99 < grads["nonsaturating"]


def test_unknown_objective_lists_valid_names():
    with pytest.raises(GanforgeError, match="nonsaturating") as e:
        OBJECTIVES.get("wgan-typo")
    assert "\n" not in str(e.value)
