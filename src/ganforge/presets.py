"""Named starting configurations. Each reproduces one tutorial's setup or a paper's defaults."""

from __future__ import annotations

from .config import PRESETS, Config

__all__ = ["PRESETS"]


@PRESETS.register(
    "mlp-mnist",
    "the classic 2-layer MLP GAN (G 100-128-784, D 784-128-1), he-normal init, uniform prior, "
    "Adam defaults, batch 128, non-saturating loss (the default); 20,000 iterations, where the "
    "tutorial's loop runs 1,000,000",
)
def mlp_mnist() -> Config:
    return Config(preset="mlp-mnist")


@PRESETS.register(
    "mlp-mnist-mbstd",
    "mlp-mnist with one change against its collapse: the minibatch standard deviation over "
    "groups of 8 samples as an extra input of D's last layer (ProGAN); 20,000 iterations",
)
def mlp_mnist_mbstd() -> Config:
    """The tutorial exactly, plus ``mbstd_group=8``: D sees how varied each group of 8 of its
    samples is, so a G that makes one digit is told apart by its too-small spread. Chosen by
    the class histogram after 20,000 iterations on the embedded 5,000 digits against R1, G's
    EMA, packing, DiffAugment and groups of 4 (README, *The tutorial's collapse, counted*)."""
    return Config(preset="mlp-mnist-mbstd", mbstd_group=8)


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
    "minimax G loss mean(log(1 - D(G(z)))), Adam defaults; 20,000 iterations, where the "
    "tutorial's loop runs 100,000",
)
def mlp_mnist_saturating() -> Config:
    return Config(
        preset="mlp-mnist-saturating", init="normal0.01", prior="normal", batch_size=32,
        objective="minimax", log_every=1000,
    )


@PRESETS.register(
    "toy-1d",
    "the 1-D toy: 3-layer ReLU MLPs learn N(4, 0.5); pictures show real density, "
    "G's density and D(x); logs G's minimax loss mean(log(1 - D(G(z)))), where the tutorial "
    "prints -(D's loss)",
)
def toy_1d() -> Config:
    return Config(
        preset="toy-1d", dataset="gaussian-1d", model="mlp-1d", z_dim=8, g_hidden=32,
        d_hidden=32, init="xavier", objective="minimax", batch_size=256, steps=3000,
        g_lr=1e-3, d_lr=1e-3, g_betas=[0.5, 0.999], d_betas=[0.5, 0.999],
        log_every=50, sample_every=200, ckpt_every=1000, n_samples=10_000,
    )


# --- the GAN family (defaults from each paper) ------------------------------------------------
def _dcgan(**kw) -> Config:
    """DCGAN (Radford et al. 2015): Adam lr 2e-4, beta1 0.5, batch 128, N(0, 0.02) init."""
    base = dict(model="dcgan", z_dim=100, g_hidden=64, d_hidden=64, init="normal0.02",
                prior="normal", batch_size=128, g_lr=2e-4, d_lr=2e-4, g_betas=[0.5, 0.999],
                d_betas=[0.5, 0.999], steps=5000, log_every=50, sample_every=250,
                ckpt_every=1000)
    return Config(**{**base, **kw})


@PRESETS.register("dcgan-mnist", "DCGAN on MNIST 28x28: Adam 2e-4/0.5, batch 128, "
                  "N(0, 0.02) init, 5,000 iterations")
def dcgan_mnist() -> Config:
    return _dcgan(preset="dcgan-mnist", dataset="mnist")


@PRESETS.register("dcgan-mnist-conditional", "class-conditional DCGAN on MNIST: label "
                  "embedding into G, projection D; grids show one row per digit")
def dcgan_mnist_conditional() -> Config:
    return _dcgan(preset="dcgan-mnist-conditional", dataset="mnist", conditional=True)


@PRESETS.register("dcgan-stacked-mnist", "DCGAN on Stacked MNIST (1,000 modes; count them with "
                  "`ganforge eval RUN --metrics modes`)")
def dcgan_stacked_mnist() -> Config:
    return _dcgan(preset="dcgan-stacked-mnist", dataset="stacked-mnist", batch_size=64)


@PRESETS.register("dcgan-fashion-mnist", "DCGAN on Fashion-MNIST 28x28 (paper defaults)")
def dcgan_fashion_mnist() -> Config:
    return _dcgan(preset="dcgan-fashion-mnist", dataset="fashion-mnist")


@PRESETS.register("dcgan-cifar10", "DCGAN on CIFAR-10 32x32 colour (paper defaults)")
def dcgan_cifar10() -> Config:
    return _dcgan(preset="dcgan-cifar10", dataset="cifar10", steps=20_000, sample_every=1000)


@PRESETS.register("wgan-gp-mnist", "WGAN-GP (Gulrajani et al.): DCGAN-shaped critic without "
                  "BatchNorm, lambda 10, 5 critic steps, Adam 1e-4 (0.5, 0.9)")
def wgan_gp_mnist() -> Config:
    return _dcgan(preset="wgan-gp-mnist", dataset="mnist", objective="wgan-gp", gp_lambda=10.0,
                  d_batchnorm=False, k_d=5, g_lr=1e-4, d_lr=1e-4, g_betas=[0.5, 0.9],
                  d_betas=[0.5, 0.9], batch_size=64)


@PRESETS.register("wgan-mnist", "WGAN (Arjovsky et al.): weight clipping 0.01, RMSprop "
                  "5e-5, 5 critic steps")
def wgan_mnist() -> Config:
    return _dcgan(preset="wgan-mnist", dataset="mnist", objective="wasserstein", clip=0.01,
                  optimizer="rmsprop", g_lr=5e-5, d_lr=5e-5, k_d=5, batch_size=64)


@PRESETS.register("hinge-sn-mnist", "hinge loss with spectrally normalised D (Miyato et al.), "
                  "Adam 2e-4 (0.5, 0.999)")
def hinge_sn_mnist() -> Config:
    return _dcgan(preset="hinge-sn-mnist", dataset="mnist", objective="hinge",
                  spectral_norm=True, batch_size=64)


@PRESETS.register("resnet-sn-cifar10", "SN-GAN ResNet on CIFAR-10 (Miyato et al.): hinge, "
                  "Adam 2e-4 (0, 0.9), 5 D steps, batch 64, G 256 / D 128 channels")
def resnet_sn_cifar10() -> Config:
    return Config(preset="resnet-sn-cifar10", dataset="cifar10", model="resnet", z_dim=128,
                  g_hidden=256, d_hidden=128, init="xavier", prior="normal", objective="hinge",
                  spectral_norm=True, batch_size=64, k_d=5, g_lr=2e-4, d_lr=2e-4,
                  g_betas=[0.0, 0.9], d_betas=[0.0, 0.9], steps=50_000, log_every=100,
                  sample_every=1000, ckpt_every=5000)


def _points(preset: str, dataset: str, **kw) -> Config:
    """The 2-D mixtures: MLPs as in the mode-collapse papers (2 hidden layers of 128), with
    an R1 penalty (gamma 0.1) on D, which keeps the non-saturating GAN on every mode."""
    base = dict(preset=preset, dataset=dataset, model="mlp-2d", z_dim=256, g_hidden=128,
                d_hidden=128, init="xavier", prior="normal", batch_size=512, g_lr=2e-4,
                d_lr=2e-4, g_betas=[0.5, 0.999], d_betas=[0.5, 0.999], r1_gamma=0.1,
                steps=10_000,
                log_every=50, sample_every=250, ckpt_every=1000, n_samples=2500)
    return Config(**{**base, **kw})


@PRESETS.register("ring-8", "8 Gaussians on a ring (radius 2, std 0.02): MLP GAN + R1 0.1, "
                  "10,000 iterations")
def ring_8() -> Config:
    return _points("ring-8", "ring-8")


@PRESETS.register("grid-25", "25 Gaussians on a 5x5 grid (std 0.05): MLP GAN + R1 0.1, "
                  "10,000 iterations")
def grid_25() -> Config:
    return _points("grid-25", "grid-25")


# --- PacGAN's synthetic-data experiments (Lin et al. 2018, Table 1) ---------------------------
PACGAN_EPOCHS, PACGAN_SAMPLES, PACGAN_BATCH = 400, 100_000, 100


def _pacgan(dataset: str, m: int) -> Config:
    """PacGAN's 2-D setup, read from its code (fjxmlzn/PacGAN, synthetic_data_experiments,
    2DRing/2DGrid ``config.py`` and ``pacgan_task.py``): z ~ N(0, I_2); G 4 hidden layers of
    400 (BatchNorm, ReLU), linear output; D 3 maxout layers of 200 units x 5 pieces and a
    linear logit; N(0, 0.02) weights, zero biases; Adam lr 1e-4, beta1 0.8; the
    non-saturating loss; 100 packs per batch (m·100 samples), 400 epochs of 100,000 samples.
    Differences: PacGAN updates D and G at once from one batch (ALI's algorithm), ganforge
    alternates; PacGAN's BatchNorm normalises each of the m groups of G's batch apart."""
    name = f"pacgan{m if m > 1 else ''}-{dataset}"
    steps = PACGAN_EPOCHS * PACGAN_SAMPLES // PACGAN_BATCH
    return Config(preset=name, dataset=dataset, model="mlp-pacgan", z_dim=2, g_hidden=400,
                  d_hidden=200, init="normal0.02", prior="normal", objective="nonsaturating",
                  batch_size=PACGAN_BATCH * m, pac=m, g_lr=1e-4, d_lr=1e-4,
                  g_betas=[0.8, 0.999], d_betas=[0.8, 0.999], steps=steps, log_every=500,
                  sample_every=5000, ckpt_every=10_000, n_samples=2500)


_GEOMETRY = {
    "ring-8": "ganforge's ring-8 (radius 2, std 0.02): PacGAN's ring (radius 1, std 0.01) "
              "scaled by 2, the same test under the 3-std rule",
    "grid-25": "grid-25 (std 0.05), PacGAN's own grid",
}
for _data in ("ring-8", "grid-25"):
    for _m in (1, 2, 3, 4):
        PRESETS.register(
            f"pacgan{_m if _m > 1 else ''}-{_data}",
            f"PacGAN Table 1's {'GAN' if _m == 1 else f'PacGAN{_m}'} row on {_GEOMETRY[_data]}; "
            "its nets and optimiser, 400,000 iterations",
        )(lambda d=_data, m=_m: _pacgan(d, m))


# --- ganforge's own best on the mixtures (benchmarks/modes.py) ----------------------------------
# ring-8-best's GAN, which grid-25-best keeps and adds to
_EMA_RECIPE = dict(z_dim=2, batch_size=512, g_lr=3e-3, d_lr=3e-3, r1_gamma=0.0, ema=400.0,
                   steps=24_000, log_every=100, sample_every=2000, ckpt_every=4000)
@PRESETS.register("ring-8-best", "ganforge's best on ring-8 (radius 2, std 0.02): the plain "
                  "2-D MLPs with 2-D noise, Adam 3e-3 and G's EMA; 24,000 iterations")
def ring_8_best() -> Config:
    """The ring's 8 modes need no remedy: the non-saturating GAN on ring-8's MLPs with 2-D
    noise, a high rate (Adam 3e-3, (0.5, 0.999)), batch 512 and G's EMA (half-life 400
    iterations), which keeps the samples on the modes (found by stacked sweeps over EMA x
    rate x seed, benchmarks/README.md). Plain MLPs stack: its ten seeds train as one sweep."""
    return _points("ring-8-best", "ring-8", **_EMA_RECIPE)


@PRESETS.register("grid-25-best", "ganforge's best on grid-25 (std 0.05): ring-8-best's GAN "
                  "with minibatch-std in D, a G of 256 units, uniform noise, a falling rate "
                  "and top-k G updates for the first 18,000 of 24,000 iterations")
def grid_25_best() -> Config:
    """ring-8-best's recipe alone drops a third of the grid's modes for good by 5,000
    iterations (17 / 25 at 95% HQ); the minibatch standard deviation over groups of 8 in D's
    last layer keeps D seeing a G whose samples bunch (23.9 / 25 over 10 seeds). What keeps
    every mode in every seed: top-k G updates (``topk=0.75``: G learns from the 384 of its 512
    samples D scores best, so the samples D already rejects no longer drag G's mass off the
    modes it holds) with a G of 256 units, uniform noise and a linearly falling rate. Top-k
    also leaves the samples between modes without a gradient, so it stops after 18,000
    iterations and the last 6,000 (at a quarter of the rate and less) pull them onto the
    modes (benchmarks/README.md has every variant). Everything here stacks: its ten seeds
    train as one sweep."""
    return _points("grid-25-best", "grid-25", **_EMA_RECIPE, mbstd_group=8, g_hidden=256,
                   prior="uniform", lr_decay="linear", topk=0.75, topk_steps=18_000)
