"""DCGAN and SN-GAN ResNet builders: shapes, architecture, spectral norm, conditioning."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganforge.errors import GanforgeError
from ganforge.models.dcgan import build_dcgan
from ganforge.models.init import initialise
from ganforge.models.layers import LABEL_EMBED_DIM, ConditionalBatchNorm2d
from ganforge.models.resnet import build_resnet

BUILDERS = {"dcgan": build_dcgan, "resnet": build_resnet}
CASES = [("dcgan", (1, 28, 28)), ("dcgan", (3, 32, 32)), ("dcgan", (1, 64, 64)),
         ("resnet", (3, 32, 32))]
VARIANTS = {
    "plain": {},
    "concat": {"conditional": True, "cond_mode": "concat"},
    "cbn": {"conditional": True, "cond_mode": "cbn"},
    "sn": {"spectral_norm": True},
}
N, Z, CLASSES = 4, 16, 10


def make_cfg(**fields) -> types.SimpleNamespace:
    """The config fields the builders read; small widths keep every test fast."""
    base = {"z_dim": Z, "g_hidden": 8, "d_hidden": 8}
    return types.SimpleNamespace(**(base | fields))


def build(name: str, shape, seed: int = 0, **fields) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return BUILDERS[name](make_cfg(**fields), shape, CLASSES)


def labels(value: int) -> torch.Tensor:
    return torch.full((N,), value, dtype=torch.long)


def spectral_norms(D: nn.Module) -> dict[str, float]:
    """Largest singular value of each weight of D, reshaped out x rest as SN-GAN does."""
    out = {}
    for name, m in D.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding):
            w = m.weight  # the effective (normalised, where parametrised) weight
            out[name] = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name,shape", CASES)
def test_shapes_range_and_gradients_reach_all_of_g(name, shape, variant):
    fields = VARIANTS[variant]
    G, D = build(name, shape, **fields)
    conditional = fields.get("conditional", False)
    assert (G.z_dim, G.data_shape, G.out_range) == (Z, shape, (-1.0, 1.0))
    assert (G.conditional, G.num_classes) == (conditional, CLASSES)

    y = torch.arange(N) % CLASSES if conditional else None
    x = G(torch.randn(N, Z), y)
    assert x.shape == (N, *shape)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0  # tanh, not a constant
    logits = D(x, y)
    assert logits.shape == (N,) and torch.isfinite(logits).all()

    logits.sum().backward()
    for pname, p in G.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


# Output side of each layer, in execution order, for the unconditional DCGAN.
G_LADDER = {28: [7, 14, 28], 32: [4, 8, 16, 32], 64: [4, 8, 16, 32, 64]}
D_LADDER = {28: [14, 7], 32: [16, 8, 4], 64: [32, 16, 8, 4]}


def trace(module: nn.Module, kinds: tuple[type, ...], *inputs) -> list[tuple[type, tuple]]:
    """(layer type, output shape) of the listed layer kinds, in the order they run."""
    seen: list[tuple[type, tuple]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((type(m), tuple(o.shape))))
             for m in module.modules() if type(m) in kinds]
    try:
        module(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_dcgan_layer_ladder(shape):
    G, D = build("dcgan", shape)
    C, side = shape[0], shape[1]
    ups, downs = G_LADDER[side], D_LADDER[side]
    n = len(ups) - 1  # stride-2 layers
    g, d = 8, 8

    seen = trace(G, (nn.ConvTranspose2d, nn.BatchNorm2d), torch.randn(N, Z))
    # every layer but the output one is followed by BatchNorm; channels halve as sides double
    kinds = [k for k, _ in seen]
    assert kinds == [nn.ConvTranspose2d, nn.BatchNorm2d] * n + [nn.ConvTranspose2d]
    convs = [s for k, s in seen if k is nn.ConvTranspose2d]
    widths = [g * 2 ** (n - 1 - i) for i in range(n)] + [C]
    assert convs == [(N, w, s, s) for w, s in zip(widths, ups, strict=True)]
    for m in [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)][1:]:
        assert (m.kernel_size, m.stride, m.padding) == ((4, 4), (2, 2), (1, 1))

    seen = trace(D, (nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU, nn.Linear), torch.randn(N, *shape))
    kinds = [k for k, _ in seen]
    assert kinds == ([nn.Conv2d, nn.LeakyReLU] + [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU] * (n - 1)
                     + [nn.Linear])  # no BatchNorm on the first layer
    convs = [s for k, s in seen if k is nn.Conv2d]
    assert convs == [(N, d * 2**i, s, s) for i, s in enumerate(downs)]
    for m in D.modules():
        if isinstance(m, nn.Conv2d):
            assert (m.kernel_size, m.stride, m.padding) == ((4, 4), (2, 2), (1, 1))
        if isinstance(m, nn.LeakyReLU):
            assert m.negative_slope == 0.2


def test_resnet_resolutions_and_sum_pooling():
    G, D = build("resnet", (3, 32, 32))
    seen = trace(G, (type(G.blocks[0]),), torch.randn(N, Z))
    assert [s for _, s in seen] == [(N, 8, 8, 8), (N, 8, 16, 16), (N, 8, 32, 32)]
    seen = trace(D, (type(D.blocks[0]),), torch.randn(N, 3, 32, 32))
    assert [s for _, s in seen] == [(N, 8, 16, 16), (N, 8, 8, 8), (N, 8, 8, 8), (N, 8, 8, 8)]
    # phi is a sum over the 8x8 map (SN-GAN), not a mean: 64 times the mean of the ReLU'd map
    x = torch.randn(N, 3, 32, 32)
    D.eval()
    first_input = []
    hook = D.blocks[0].conv1.register_forward_pre_hook(lambda m, a: first_input.append(a[0]))
    with torch.no_grad():
        phi, h = D.features(x), torch.relu(D.blocks(x))
    hook.remove()
    # the optimized first block convolves the image itself: no ReLU clipping its negatives
    torch.testing.assert_close(first_input[0], x)
    torch.testing.assert_close(phi, 64 * h.mean(dim=(2, 3)), rtol=1e-5, atol=1e-4)


def test_resnet_up_block_upsamples_by_nearest_neighbour_on_both_paths():
    G, _ = build("resnet", (3, 32, 32))
    G.eval()
    block = G.blocks[0]

    def nearest(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    x = torch.randn(N, 8, 4, 4)
    seen = []
    hook = block.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        block(x, None)
        hook.remove()
        # residual path: BN -> ReLU -> upsample feeds conv1
        torch.testing.assert_close(seen[0], nearest(torch.relu(block.bn1(x))))
        # silence the residual path: what is left is the shortcut, upsample -> 1x1 conv
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
        torch.testing.assert_close(block(x, None), block.shortcut(nearest(x)))


def test_parameter_counts_match_hand_derivation():
    # DCGAN 64x64 grey, z_dim 100, g = d = 64. Convs that feed a BatchNorm have no bias.
    # G: ConvT 100->512 k4      100*512*16 =   819_200   BN(512)  1_024
    #    ConvT 512->256 k4      512*256*16 = 2_097_152   BN(256)    512
    #    ConvT 256->128 k4      256*128*16 =   524_288   BN(128)    256
    #    ConvT 128->64  k4      128*64*16  =   131_072   BN(64)     128
    #    ConvT 64->1    k4 +b   64*1*16+1  =     1_025
    #    total 3_572_737 + 1_920 = 3_574_657
    # D: Conv 1->64 k4 +b       1*64*16+64 =     1_088   (no BN on the first layer)
    #    Conv 64->128 k4        64*128*16  =   131_072   BN(128)    256
    #    Conv 128->256 k4       128*256*16 =   524_288   BN(256)    512
    #    Conv 256->512 k4       256*512*16 = 2_097_152   BN(512)  1_024
    #    Linear 512*4*4 -> 1    8_192 + 1  =     8_193
    #    total 2_761_793 + 1_792 = 2_763_585
    torch.manual_seed(0)
    G, D = build_dcgan(make_cfg(z_dim=100, g_hidden=64, d_hidden=64), (1, 64, 64), 10)
    assert sum(p.numel() for p in G.parameters()) == 3_574_657
    assert sum(p.numel() for p in D.parameters()) == 2_763_585

    # SN-GAN ResNet 32x32 RGB, z_dim 16, ch = 16 (9 = 3x3 kernel, 256 = 16*16).
    # G: Linear 16 -> 4*4*16                        16*256 + 256      =  4_352
    #    up-block x3: BN 32 + conv1 9*256 (no bias) + BN 32 + conv2 9*256+16
    #                 + shortcut 1x1 256+16          = 4_960 each       = 14_880
    #    BN 32 + conv 16->3 3x3 9*48+3                                 =    467
    #    total 19_699
    # D: optimized: conv 3->16 9*48+16 + conv 16->16 9*256+16 + sc 1x1 48+16 =  2_832
    #    down-block: 2 x (9*256+16) + sc 1x1 256+16                       =  4_912
    #    2 x block, identity shortcut: 2 x 2 x (9*256+16)                   =  9_280
    #    Linear 16 -> 1                                                     =     17
    #    total 17_041 (spectral norm adds buffers u, v, not parameters)
    G, D = build("resnet", (3, 32, 32), z_dim=16, g_hidden=16, d_hidden=16)
    assert sum(p.numel() for p in G.parameters()) == 19_699
    assert sum(p.numel() for p in D.parameters()) == 17_041


SN_CASES = [("dcgan", (1, 28, 28), {"spectral_norm": True}),
            ("dcgan", (1, 64, 64), {"spectral_norm": True, "conditional": True}),
            # the SN-GAN ResNet normalises D whatever the flag says
            ("resnet", (3, 32, 32), {"spectral_norm": False, "conditional": True})]


@pytest.mark.parametrize("name,shape,fields", SN_CASES)
def test_spectral_norm_makes_every_d_weight_1_lipschitz(name, shape, fields):
    _, D = build(name, shape, **fields)
    layers = [m for m in D.modules() if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding)]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())  # SN-GAN: no BN in D
    x, y = torch.randn(2, *shape), torch.arange(2)

    def settle() -> None:
        # power iteration runs once per train-mode forward pass; the top singular values of
        # small random matrices sit close together, so give it a few dozen
        D.train()
        with torch.no_grad():
            for _ in range(30):
                D(x, y)

    settle()
    for lname, s in spectral_norms(D).items():
        assert s == pytest.approx(1.0, abs=0.05), lname
    # normalising by a constant fixed at construction would not survive the raw weights growing
    with torch.no_grad():
        for m in layers:
            m.parametrizations.weight.original.mul_(5.0)
    settle()
    for lname, s in spectral_norms(D).items():
        assert s == pytest.approx(1.0, abs=0.05), lname


def test_without_spectral_norm_d_weights_are_not_normalised():
    _, D = build("dcgan", (1, 64, 64), conditional=True)
    assert not any(parametrize.is_parametrized(m) for m in D.modules())
    initialise(D, "he-normal")
    D(torch.randn(2, 1, 64, 64), torch.arange(2))
    for lname, s in spectral_norms(D).items():
        if lname != "head.embed":  # the embedding keeps its own (Glorot) init
            assert abs(s - 1.0) > 0.05, lname


@pytest.mark.parametrize("mode", ["concat", "cbn"])
@pytest.mark.parametrize("name,shape", [("dcgan", (1, 28, 28)), ("resnet", (3, 32, 32))])
def test_conditional_generator_depends_on_the_label(name, shape, mode):
    G, _ = build(name, shape, conditional=True, cond_mode=mode)
    G.eval()  # running statistics: a batch of one label is not normalised away
    z = torch.randn(N, Z)
    if mode == "cbn":
        # gamma = 1, beta = 0 for every class at the start: the label has no effect yet ...
        torch.testing.assert_close(G(z, labels(7)), G(z, labels(3)))
        cbns = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
        # ... every BatchNorm of the up-sampling path is conditional ...
        assert len(cbns) == (2 if name == "dcgan" else 6)  # 28x28: 7->14 and 14->28 stages
        with torch.no_grad():  # ... until training moves the classes apart
            for m in cbns:
                m.gamma.weight.add_(0.3 * torch.randn_like(m.gamma.weight))
                m.beta.weight.add_(0.3 * torch.randn_like(m.beta.weight))
    else:
        first = G.stages[0].conv if name == "dcgan" else G.linear
        assert first.weight.shape[0 if name == "dcgan" else 1] == Z + LABEL_EMBED_DIM
    a, b = G(z, labels(7)), G(z, labels(3))
    assert (a - b).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every sample changes
    torch.testing.assert_close(G(z, labels(7)), a)  # deterministic: the label, not noise
    # each sample is conditioned on its own label: a mixed batch matches samples made one by one
    y = torch.tensor([7, 3, 0, 9])
    one_by_one = torch.cat([G(z[i:i + 1], y[i:i + 1]) for i in range(N)])
    torch.testing.assert_close(G(z, y), one_by_one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,shape", [("dcgan", (3, 32, 32)), ("resnet", (3, 32, 32))])
def test_projection_discriminator(name, shape):
    _, D = build(name, shape, conditional=True)
    D.eval()  # fixed BatchNorm statistics and spectral-norm vectors: one function of (x, y)
    x = torch.randn(N, *shape)
    y, y2 = torch.tensor([0, 1, 2, 3]), torch.tensor([7, 7, 9, 1])
    with torch.no_grad():
        logit, logit2 = D(x, y), D(x, y2)
        phi, embed = D.features(x), D.head.embed.weight
        psi = D.head.linear(phi).squeeze(1)
    assert phi.shape == (N, D.feature_dim) and embed.shape == (CLASSES, D.feature_dim)
    assert (logit - logit2).abs().min() > 1e-4  # a wrong label changes every logit
    tol = {"rtol": 1e-4, "atol": 1e-4}
    # logit = psi(phi) + <embed(y), phi>, hence the difference is the class term alone
    torch.testing.assert_close(logit, psi + (embed[y] * phi).sum(1), **tol)
    torch.testing.assert_close(logit - logit2, ((embed[y] - embed[y2]) * phi).sum(1), **tol)


@pytest.mark.parametrize("mode", ["concat", "cbn"])
@pytest.mark.parametrize("name,shape", [("dcgan", (1, 28, 28)), ("resnet", (3, 32, 32))])
def test_conditional_models_require_labels(name, shape, mode):
    G, D = build(name, shape, conditional=True, cond_mode=mode)
    z, x = torch.randn(N, Z), torch.randn(N, *shape)
    with pytest.raises(ValueError, match="labels"):
        G(z)
    with pytest.raises(ValueError, match="labels"):
        D(x)
    with pytest.raises(ValueError, match="shape"):
        D(x, torch.zeros(N + 1, dtype=torch.long))


@pytest.mark.parametrize("name,shape", [("dcgan", (1, 28, 28)), ("resnet", (3, 32, 32))])
def test_unconditional_models_ignore_labels(name, shape):
    G, D = build(name, shape)
    G.eval()
    D.eval()
    z, x = torch.randn(N, Z), torch.randn(N, *shape)
    torch.testing.assert_close(G(z), G(z, labels(5)))
    torch.testing.assert_close(D(x), D(x, labels(5)))
    assert D.head.embed is None


def test_conditional_batch_norm_applies_the_class_affine():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(4, 3)
    assert not cbn.bn.affine  # the per-class gamma/beta are the only affine
    x = torch.randn(6, 4, 5, 5) * 3 + 1
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + cbn.bn.eps)  # batch statistics over both classes
    torch.testing.assert_close(cbn(x, y), normed, rtol=1e-4, atol=1e-5)  # starts at 1 / 0
    with torch.no_grad():
        cbn.gamma.weight[0] = 2.0
        cbn.beta.weight[0] = 0.5
        cbn.gamma.weight[1] = -1.0
        cbn.beta.weight[1] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    out = cbn(x, y)
    torch.testing.assert_close(out[:3], 2 * normed[:3] + 0.5, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[3:], -normed[3:] + torch.arange(4.0)[:, None, None],
                               rtol=1e-4, atol=1e-5)
    # same input, other class: a different output
    assert not torch.allclose(cbn(x, torch.ones(6, dtype=torch.long)), out)


@pytest.mark.parametrize("name,shape,sizes", [
    ("dcgan", (1, 30, 30), "28, 32, 64"), ("dcgan", (2, 32, 32), "28, 32, 64"),
    ("dcgan", (3, 32, 28), "28, 32, 64"), ("dcgan", (784,), "28, 32, 64"),
    ("resnet", (3, 64, 64), "{32}"), ("resnet", (1, 28, 28), "{32}"),
])
def test_unsupported_sizes_are_one_line_errors(name, shape, sizes):
    with pytest.raises(GanforgeError) as err:
        BUILDERS[name](make_cfg(), shape, CLASSES)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{name}:") and sizes in msg


def test_bad_conditioning_settings_are_user_errors():
    with pytest.raises(GanforgeError, match="cond_mode"):
        build_dcgan(make_cfg(conditional=True, cond_mode="film"), (1, 28, 28), CLASSES)
    with pytest.raises(GanforgeError, match="labelled"):
        build_resnet(make_cfg(conditional=True), (3, 32, 32), 0)
