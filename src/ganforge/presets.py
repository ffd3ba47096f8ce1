"""Named starting configurations. Each reproduces one tutorial's setup or a paper's defaults."""

from __future__ import annotations

from collections.abc import Callable

from .config import Config
from .registry import Registry

PRESETS: Registry[Callable[[], Config]] = Registry("preset")


@PRESETS.register(
    "mlp-mnist",
    "the classic 2-layer MLP GAN (G 100-128-784, D 784-128-1), he-normal init, uniform prior, "
    "Adam defaults, batch 128, non-saturating loss (the default)",
)
def mlp_mnist() -> Config:
    return Config(preset="mlp-mnist")


@PRESETS.register(
    "mlp-mnist-notebook",
    "the notebook tutorial: G h=512, D h=256, Glorot init, batch 256, Adam lr 2e-5, "
    "k_d=1, k_g=2, 20,000 steps",
)
def mlp_mnist_notebook() -> Config:
    return Config(
        preset="mlp-mnist-notebook", g_hidden=512, d_hidden=256, init="xavier",
        batch_size=256, g_lr=2e-5, d_lr=2e-5, k_d=1, k_g=2, steps=20_000,
    )


@PRESETS.register(
    "mlp-mnist-saturating",
    "the saturating-loss tutorial: truncated-normal(0.01) init, N(0,1) prior, batch 32, "
    "minimax G loss mean(log(1 - D(G(z)))), Adam defaults",
)
def mlp_mnist_saturating() -> Config:
    return Config(
        preset="mlp-mnist-saturating", init="normal0.01", prior="normal", batch_size=32,
        objective="minimax", log_every=1000,
    )


@PRESETS.register(
    "toy-1d",
    "the 1-D toy: 3-layer ReLU MLPs learn N(4, 0.5); pictures show real density, "
    "G's density and D(x)",
)
def toy_1d() -> Config:
    return Config(
        preset="toy-1d", dataset="gaussian-1d", model="mlp-1d", z_dim=8, g_hidden=32,
        d_hidden=32, init="xavier", objective="minimax", batch_size=256, steps=3000,
        g_lr=1e-3, d_lr=1e-3, g_betas=[0.5, 0.999], d_betas=[0.5, 0.999],
        log_every=50, sample_every=200, ckpt_every=1000, n_samples=10_000,
    )
