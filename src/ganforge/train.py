"""The training loop: alternate k_d discriminator steps and k_g generator steps.

One iteration (``config.steps`` counts these) is, as in Goodfellow et al.'s Algorithm 1:

    for k_d steps:  x ~ data, z ~ p(z);  D descends  d_loss(D(x), D(G(z)))
    for k_g steps:  z ~ p(z);            G descends  g_loss(D(G(z)))

Logging, sample grids and checkpoints happen every N iterations, from statistics that are
accumulated on the device so the hot loop never waits for the host.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint, viz
from .config import FIELDS, Config, from_dict, resolve, validate
from .cuda_graphs import capture_iteration
from .data import Dataset, Gaussian1D, Points2D, load_dataset, plot_points_2d
from .errors import GanforgeError
from .losses import Objective, build_objective
from .models import build_models
from .priors import PRIORS
from .regularisers import gradient_penalty, r1_penalty
from .run import Run, default_out, prepare_dir

FIXED_NOISE_SALT = 0x5EED  # the grid's noise comes from its own stream, not the training one
DATA_SALT = 0xDA7A  # the data-order stream's seed is derived from the run's seed
GRAPH_WARMUP = 3  # eager iterations before capture, so lazy allocations happen outside it


def graph_unroll_for(cfg: Config, most: int = 16) -> int:
    """The largest divisor (<= ``most``) of the log, sample and checkpoint intervals."""
    g = math.gcd(cfg.log_every, cfg.sample_every, cfg.ckpt_every)
    return max(d for d in range(1, most + 1) if g % d == 0)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GanforgeError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


class Trainer:
    """Holds G, D, their optimisers and the data/noise streams; ``step()`` is one iteration."""

    def __init__(self, cfg: Config, data: Dataset, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.num_classes = data.num_classes if cfg.conditional else 0
        torch.manual_seed(cfg.seed)  # model init on the CPU: the same weights on any device
        G, D = build_models(cfg, data.shape, self.num_classes)
        memory_format = torch.channels_last if cfg.channels_last and len(data.shape) == 3 \
            else torch.contiguous_format
        self.G = G.to(device, memory_format=memory_format)
        self.D = D.to(device, memory_format=memory_format)
        self.objective: Objective = build_objective(cfg)
        self.prior = PRIORS.get(cfg.prior)
        self.opt_g = _optimizer(cfg, self.G, cfg.g_lr, cfg.g_betas, device)
        self.opt_d = _optimizer(cfg, self.D, cfg.d_lr, cfg.d_betas, device)
        self.G_ema: nn.Module | None = None
        if cfg.ema > 0:  # the EMA of G's weights: smoother samples, better FID
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
            self.ema_beta = 0.5 ** (1.0 / cfg.ema)  # half-life given in iterations
        # Separate streams for noise and data order: staging a replay's batches ahead of its
        # noise (CUDA graphs) then draws exactly the numbers eager training draws.
        self.gen = torch.Generator(device).manual_seed(cfg.seed)
        self.data_gen = torch.Generator(device).manual_seed(cfg.seed ^ DATA_SALT)
        self.batches = data.to(device).sampler(cfg.batch_size, self.data_gen)
        if getattr(self.G, "out_range", None) and hasattr(self.batches, "value_range"):
            self.batches.value_range = self.G.out_range
        self.fixed_z, self.fixed_y = self._fixed_inputs()
        # BatchNorm in D: real and fake go through D separately, so that each batch is
        # normalised by its own statistics (as DCGAN does); otherwise one call on both.
        self.d_separate = any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                              for m in self.D.modules())
        self.g_fn: Callable[..., torch.Tensor] = self.G
        self.d_fn: Callable[..., torch.Tensor] = self.D
        self.opt_d_step, self.opt_g_step = self.opt_d.step, self.opt_g.step
        on_cuda = device.type == "cuda"
        if cfg.compile:
            self.g_fn, self.d_fn = torch.compile(self.G), torch.compile(self.D)
            if on_cuda:  # the (foreach) optimiser update becomes one fused kernel
                self.opt_d_step = torch.compile(self.opt_d.step)
                self.opt_g_step = torch.compile(self.opt_g.step)
        if on_cuda:
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                       enabled=cfg.amp == "bf16")
        # The schedule is data: each phase names its step function and how often it runs,
        # and each regulariser of D how often (in D steps) it is added to D's loss.
        self.phases: list[tuple[str, int, Callable[[], None]]] = [
            ("D", cfg.k_d, self.d_step),
            ("G", cfg.k_g, self.g_step),
        ]
        self.regularisers: list[tuple[str, int, float]] = [
            (name, cfg.reg_interval, gamma / 2) for name, gamma in
            (("r1", cfg.r1_gamma), ("r2", cfg.r2_gamma)) if gamma > 0
        ]
        self.d_steps = 0
        self.step_count = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_unroll = 1
        self.graph_note = "off"
        self.stat_names = ("d_loss", "g_loss", "d_real", "d_fake", *self.objective.extra_stats)
        self.stats = torch.zeros(len(self.stat_names), device=device)
        self._zero_stats()

    def _fixed_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The grid's noise (and labels: one row per class) from a stream of its own."""
        cfg, C = self.cfg, self.num_classes
        fixed = torch.Generator().manual_seed(cfg.seed ^ FIXED_NOISE_SALT)
        if not C:
            return self.prior(cfg.n_samples, cfg.z_dim, fixed).to(self.device), None
        per_row = max(1, -(-cfg.n_samples // C))
        z = self.prior(C * per_row, cfg.z_dim, fixed).to(self.device)
        return z, torch.arange(C, device=self.device).repeat_interleave(per_row)

    def _d(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        with self.autocast:
            return self.d_fn(x, y).float() if y is not None else self.d_fn(x).float()

    def _g(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        with self.autocast:
            return self.g_fn(z, y) if y is not None else self.g_fn(z)

    # --- the algorithm -------------------------------------------------------------------
    def d_step(self) -> None:
        B = self.cfg.batch_size
        (real, y_real), z, y_fake = self.reals.pop(), self.noise.pop(), self.fake_labels.pop()
        with torch.no_grad():
            fake = self._g(z, y_fake).to(real.dtype)
        if self.d_separate:
            real_out, fake_out = self._d(real, y_real), self._d(fake, y_fake)
            out = torch.cat([real_out, fake_out])
        else:  # one D call for both halves
            y = None if y_real is None else torch.cat([y_real, y_fake])
            out = self._d(torch.cat([real, fake]), y)
            real_out, fake_out = out[:B], out[B:]
        loss = self.objective.d_loss(real_out, fake_out)
        if self.objective.gradient_penalty:
            loss = loss + self.objective.gradient_penalty * gradient_penalty(
                self.D, real, fake, self.gen, y_real)
        for name, interval, weight in self.regularisers:
            if self.d_steps % interval == 0:  # lazy: every `interval` D steps, x interval
                x, y = (real, y_real) if name == "r1" else (fake, y_fake)
                loss = loss + weight * interval * r1_penalty(self.D, x, y)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d_step()
        self.objective.after_d_step(self.D, real_out.detach(), fake_out.detach())
        self.d_steps += 1
        with torch.no_grad():  # few kernels: these run every step, also inside CUDA graphs
            self.stats[0] += loss.detach()
            out = out.detach()
            shown = torch.sigmoid(out) if self.objective.outputs_logits else out
            self.stats[2:4] += shown.view(2, B).mean(1)
            extra = self.objective.stats()
            if extra is not None:
                self.stats[4:] += extra

    def g_step(self) -> None:
        z, y = self.noise.pop(), self.fake_labels.pop()
        self.D.requires_grad_(False)  # G's step needs gradients through D, not for D
        loss = self.objective.g_loss(self._d(self._g(z, y), y))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g_step()
        self.D.requires_grad_(True)
        if self.G_ema is not None:
            self._update_ema()
        with torch.no_grad():
            self.stats[1] += loss.detach()

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema, live = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(ema, live, 1.0 - self.ema_beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)  # BatchNorm statistics follow the live G

    def iteration(self) -> None:
        # The iteration's data, then its noise, drawn up front in this order whether eager or
        # replayed as a CUDA graph (which stages the data indices before each replay).
        cfg = self.cfg
        reals = [self.batches.next_with_labels() for _ in range(cfg.k_d)]
        self.reals = reals[::-1] if self.num_classes else [(x, None) for x, _ in reals][::-1]
        # z ~ p(z) for every step of the iteration at once (one kernel, not k_d + k_g)
        n = (cfg.k_d + cfg.k_g) * cfg.batch_size
        z = self.prior(n, cfg.z_dim, self.gen)
        self.noise = list(z.split(cfg.batch_size)[::-1])  # pop() hands them out in order
        if self.num_classes:
            y = torch.randint(self.num_classes, (n,), generator=self.gen, device=self.device)
            self.fake_labels = list(y.split(cfg.batch_size)[::-1])
        else:
            self.fake_labels = [None] * (cfg.k_d + cfg.k_g)
        for _name, repeats, fn in self.phases:
            for _ in range(repeats):
                fn()

    def step(self, remaining: int | None = None) -> int:
        """Advance training: one replay of the captured graph (``graph_unroll`` iterations)
        when there is one and at least that many iterations remain, else one eager iteration.
        Returns the number of iterations done."""
        n = self.graph_unroll
        if self.graph is not None and (remaining is None or remaining >= n):
            self.batches.stage()
            self.graph.replay()
            self.d_steps += n * self.cfg.k_d
        else:
            n = 1
            if self.graph is not None:  # the tail after the last whole replay: eager
                self.batches.make_static(0)
            self.iteration()
        self.counts[0] += self.cfg.k_d * n
        self.counts[1] += self.cfg.k_g * n
        self.step_count += n
        return n

    def wants_graph(self) -> bool:
        mode = self.cfg.cuda_graphs
        if mode == "on" and self.device.type != "cuda":
            raise GanforgeError("--cuda-graphs on needs a CUDA device (try --device cuda)")
        return mode == "on" or (mode == "auto" and self.device.type == "cuda")

    def setup_cuda_graph(self, unroll: int = 1) -> str:
        """Capture ``unroll`` iterations as one CUDA graph; call after a few eager (warm-up)
        iterations. Returns a short note for the log: "on", or why capture fell back to eager.
        """
        d_steps = self.d_steps
        try:
            self.graph = capture_iteration(self, unroll)
            self.graph_unroll = unroll
            self.graph_note = f"on ({unroll} iterations per replay)"
        except Exception as e:  # capture is an optimisation: any failure falls back to eager
            self.graph = None
            self.batches.make_static(0)
            self.graph_note = f"off (capture failed: {type(e).__name__}: {str(e).splitlines()[0]})"
            print(f"ganforge: CUDA graph capture failed, training eagerly: {self.graph_note}",
                  file=sys.stderr)
        self.d_steps = d_steps  # capture records steps without running them
        return self.graph_note

    # --- statistics ------------------------------------------------------------------------
    def _zero_stats(self) -> None:
        # zeroed in place: a captured CUDA graph keeps writing to this very tensor
        self.stats.zero_()
        self.counts = [0, 0]

    def read_stats(self) -> dict[str, float]:
        """Means since the last call; the one host sync per logging interval."""
        values = self.stats.tolist()
        nd, ng = max(self.counts[0], 1), max(self.counts[1], 1)
        self._zero_stats()
        return {name: v / (ng if name == "g_loss" else nd)
                for name, v in zip(self.stat_names, values, strict=True)}

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "step": self.step_count,
            "config": self.cfg.to_dict(),
            "data_shape": list(self.data.shape),
            "num_classes": self.num_classes,
            "G": dict(self.G.state_dict()),
            "D": dict(self.D.state_dict()),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sampler": self.batches.state_dict(),
            "rng": {"gen": self.gen.get_state(), "data_gen": self.data_gen.get_state(),
                    "torch": torch.get_rng_state()},
        }
        if self.G_ema is not None:
            state["G_ema"] = dict(self.G_ema.state_dict())
        return state

    @property
    def sampling_G(self) -> nn.Module:
        """The generator to show and evaluate: the EMA one when it is on."""
        return self.G_ema if self.G_ema is not None else self.G


def _optimizer(cfg: Config, module: nn.Module, lr: float, betas: list[float],
               device: torch.device) -> torch.optim.Optimizer:
    on_cuda = device.type == "cuda"
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(module.parameters(), lr=lr, capturable=on_cuda)
    # fused: one kernel for all parameters; capturable: step counters live on the device,
    # which CUDA-graph capture requires; with --compile on a GPU the foreach step is compiled
    return torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(betas),
                            fused=not (cfg.compile and on_cuda), capturable=on_cuda)


def to_unit(x: torch.Tensor, G: nn.Module) -> torch.Tensor:
    """G's outputs mapped to [0, 1] for pictures (tanh models work in [-1, 1])."""
    lo, hi = getattr(G, "out_range", None) or (0.0, 1.0)
    return (x - lo) / (hi - lo)


def _snapshot(trainer: Trainer, run: Run) -> Path:
    """Write this step's picture: an image grid, the 1-D density plot or the 2-D scatter."""
    G, D, step = trainer.sampling_G, trainer.D, trainer.step_count
    path = run.samples_dir / f"step-{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = G.training
    G.eval()
    with torch.no_grad():
        y = trainer.fixed_y
        fake = G(trainer.fixed_z, y) if y is not None else G(trainer.fixed_z)
        data = trainer.data
        if isinstance(data, Gaussian1D):
            xs = torch.linspace(*data.plot_range(), 400, device=trainer.device)
            out = D(xs.unsqueeze(1))
            d_of_x = torch.sigmoid(out) if trainer.objective.outputs_logits else out
            viz.plot_density_1d(xs.cpu().numpy(), data.pdf(xs.cpu()).numpy(),
                                fake.squeeze(1).cpu().numpy(), d_of_x.cpu().numpy(), path,
                                title=f"iteration {step}")
        elif isinstance(data, Points2D):
            real = data.real_samples(len(fake), torch.Generator(trainer.device).manual_seed(0))
            plot_points_2d(real.cpu().numpy(), fake.cpu().numpy(), data.mixture.centres, path,
                           title=f"iteration {step}")
        else:
            nrow = len(fake) // trainer.num_classes if trainer.num_classes else None
            viz.save_grid(to_unit(fake, G), path, nrow=nrow)
    G.train(was_training)
    return path


def _finish_pictures(run: Run) -> None:
    frames = sorted(run.samples_dir.glob("step-*.png"))
    viz.save_gif(frames, run.dir / "progress.gif")
    viz.plot_losses(run.metrics, run.dir / "losses.png", title=f"{run.config.preset}: losses")


def _as_config(config: Config | dict[str, Any] | str | Path | None, overrides: dict[str, Any]):
    if config is None:
        return resolve(overrides.pop("preset", None), overrides=overrides)
    if isinstance(config, Config):
        return validate(dataclasses.replace(config, **overrides))
    if isinstance(config, str | Path):
        from .config import read_config_file

        fields = read_config_file(config)
        return resolve(overrides.pop("preset", None), fields, overrides)
    if isinstance(config, dict):
        merged = {**config, **overrides}
        if set(FIELDS) <= set(merged):  # a complete config, e.g. a run's config.json
            return from_dict(merged)
        return resolve(merged.pop("preset", None), overrides=merged)
    raise TypeError(f"config must be a Config, dict, path or None, not {type(config).__name__}")


def train(config: Config | dict[str, Any] | str | Path | None = None, *, overwrite: bool = False,
          progress: bool | None = None, **overrides: Any) -> Run:
    """Train a GAN and return its :class:`Run`.

    ``config`` is a :class:`Config`, a dict of fields (a preset name plus overrides, or a
    complete config.json), a TOML/JSON file, or None for the default preset. Keyword
    arguments override single fields: ``ganforge.train(preset="toy-1d", steps=500)``.
    """
    cfg = _as_config(config, dict(overrides))
    device = pick_device(cfg.device)
    # Everything that can fail on bad input happens before the run folder is touched.
    data = load_dataset(cfg)
    data_used = {**data.info, "device": str(device)}
    if data.name != cfg.dataset:  # mnist fell back to the offline sample: record what ran
        data_used["requested"] = cfg.dataset
        cfg = dataclasses.replace(cfg, dataset=data.name)
    trainer = Trainer(cfg, data, device)

    out = Path(cfg.out) if cfg.out else default_out(cfg.preset)
    cfg = dataclasses.replace(cfg, out=str(out))
    trainer.cfg = cfg
    prepare_dir(out, overwrite)
    run = Run(dir=out, config=cfg, G=trainer.G, D=trainer.D)
    run.write_config(data_used)
    _snapshot(trainer, run)

    bar = tqdm(total=cfg.steps, disable=None if progress is None else not progress,
               unit="it", dynamic_ncols=True, desc=cfg.preset)
    t_last, n_last = time.perf_counter(), 0
    best: float | None = None
    # a replay covers `unroll` iterations: a divisor of every interval keeps logs, grids and
    # checkpoints on their exact steps; capture starts on a multiple of it
    unroll = graph_unroll_for(cfg)
    capture_at = -(-GRAPH_WARMUP // unroll) * unroll if trainer.wants_graph() else -1
    try:
        while trainer.step_count < cfg.steps:
            if trainer.step_count == capture_at:
                data_used["cuda_graphs"] = trainer.setup_cuda_graph(unroll)
                run.write_config(data_used)
            trainer.step(cfg.steps - trainer.step_count)
            s = trainer.step_count
            if s % cfg.log_every == 0 or s == cfg.steps:
                row = trainer.read_stats()
                now = time.perf_counter()
                its = (s - n_last) / max(now - t_last, 1e-9)
                t_last, n_last = now, s
                run.log({"step": s, **row, "it_s": round(its, 2)})
                bar.update(s - bar.n)
                bar.set_postfix(d_loss=f"{row['d_loss']:.3f}", g_loss=f"{row['g_loss']:.3f}",
                                refresh=False)
                _check_finite(row, s, run)
            if s % cfg.sample_every == 0 or s == cfg.steps:
                _snapshot(trainer, run)
            if cfg.eval_every and (s % cfg.eval_every == 0 or s == cfg.steps):
                best = _evaluate(trainer, run, data, best)
            if s % cfg.ckpt_every == 0 and s != cfg.steps:
                checkpoint.save(run.latest_checkpoint, trainer.state_dict())
    finally:
        bar.close()
    state = trainer.state_dict()
    checkpoint.save(run.latest_checkpoint, state)
    checkpoint.save(run.final_checkpoint, state)
    _finish_pictures(run)
    return run


def _evaluate(trainer: Trainer, run: Run, data: Dataset, best: float | None) -> float | None:
    """Log the configured metrics (of the EMA generator when on); keep the best checkpoint."""
    from .evaluate import better, evaluate

    cfg = trainer.cfg
    result = evaluate(trainer.sampling_G, cfg, data, cfg.metrics, cfg.eval_n, cfg.features,
                      trainer.device, trainer.num_classes, seed=cfg.seed)
    run.log({"step": trainer.step_count, **{k: v for k, v in result.items()
                                            if isinstance(v, int | float)}})
    if cfg.keep_best and better(cfg.keep_best, result[cfg.keep_best], best):
        best = result[cfg.keep_best]
        checkpoint.save(run.checkpoints_dir / "best.safetensors",
                        {**trainer.state_dict(), "best": {cfg.keep_best: best}})
    return best


def _check_finite(row: dict[str, float], step: int, run: Run) -> None:
    bad = [k for k, v in row.items() if not np.isfinite(v)]
    if bad:
        last = run.latest_checkpoint if run.latest_checkpoint.exists() else "none yet"
        raise GanforgeError(f"non-finite {', '.join(bad)} at iteration {step}; "
                            f"last good checkpoint: {last}")
