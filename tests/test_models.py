import math

import pytest
import torch

from ganforge.config import resolve
from ganforge.models import build_models, initialise
from ganforge.models.mlp import MLPDiscriminator


def test_seed_mlp_shapes_and_parameter_count():
    G, D = build_models(resolve("mlp-mnist"), (1, 28, 28))
    z = torch.rand(5, 100) * 2 - 1
    x = G(z)
    assert x.shape == (5, 1, 28, 28)
    assert 0.0 <= x.min() and x.max() <= 1.0  # sigmoid output: pixels in [0, 1]
    assert D(x).shape == (5,)
    # G: 100*128+128 + 128*784+784 ; D: 784*128+128 + 128+1
    assert sum(p.numel() for p in G.parameters()) == 100 * 128 + 128 + 128 * 784 + 784
    assert sum(p.numel() for p in D.parameters()) == 784 * 128 + 128 + 128 + 1


def test_notebook_preset_widths():
    G, D = build_models(resolve("mlp-mnist-notebook"), (1, 28, 28))
    assert G.net[0].weight.shape == (512, 100)
    assert D.net[1].weight.shape == (256, 784)


def _weights(init: str, fan_in=784, fan_out=512):
    torch.manual_seed(0)
    D = MLPDiscriminator((fan_in,), [fan_out])
    initialise(D, init)
    return D.net[1]


def test_he_normal_is_the_tutorial_xavier_init():
    # the tutorial's xavier_init: normal with stddev 1/sqrt(in_dim/2) = sqrt(2/fan_in)
    layer = _weights("he-normal")
    w = layer.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert w.mean().item() == pytest.approx(0.0, abs=3e-4)
    assert (w.abs() > 2.5 * math.sqrt(2 / 784)).any()  # not truncated
    assert torch.count_nonzero(layer.bias) == 0


def test_xavier_is_glorot_uniform():
    w = _weights("xavier").weight
    a = math.sqrt(6 / (784 + 512))
    assert w.abs().max().item() <= a
    assert w.abs().max().item() > 0.99 * a
    assert w.std().item() == pytest.approx(a / math.sqrt(3), rel=0.02)  # uniform's std


def test_normal001_is_truncated_at_two_std():
    w = _weights("normal0.01").weight
    assert w.abs().max().item() <= 0.02
    # a normal cut at +-2 sigma has std 0.8796 sigma
    assert w.std().item() == pytest.approx(0.008796, rel=0.02)


def test_toy_models_are_three_layer_relu_mlps():
    G, D = build_models(resolve("toy-1d"), (1,))
    assert sum(isinstance(m, torch.nn.Linear) for m in G.modules()) == 3
    assert sum(isinstance(m, torch.nn.Linear) for m in D.modules()) == 3
    assert G(torch.zeros(4, 8)).shape == (4, 1)
