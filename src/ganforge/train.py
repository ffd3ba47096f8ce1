"""The training loop: alternate k_d discriminator steps and k_g generator steps.

One iteration (``config.steps`` counts these) is, as in Goodfellow et al.'s Algorithm 1:

    for k_d steps:  x ~ data, z ~ p(z);  D descends  d_loss(D(x), D(G(z)))
    for k_g steps:  z ~ p(z);            G descends  g_loss(D(G(z)))

Logging, sample grids and checkpoints happen every N iterations, from statistics that are
accumulated on the device so the hot loop never waits for the host.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint, viz
from .config import FIELDS, Config, from_dict, resolve, validate
from .cuda_graphs import capture_iteration
from .data import Dataset, Gaussian1D, load_dataset
from .errors import GanforgeError
from .losses import OBJECTIVES, Objective
from .models import build_models
from .priors import PRIORS
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
        torch.manual_seed(cfg.seed)  # model init on the CPU: the same weights on any device
        G, D = build_models(cfg, data.shape)
        memory_format = torch.channels_last if cfg.channels_last and len(data.shape) == 3 \
            else torch.contiguous_format
        self.G = G.to(device, memory_format=memory_format)
        self.D = D.to(device, memory_format=memory_format)
        self.objective: Objective = OBJECTIVES.get(cfg.objective)()
        self.prior = PRIORS.get(cfg.prior)
        # fused: one kernel for all parameters; capturable: its step counters live on the
        # device, which CUDA-graph capture requires
        on_cuda = device.type == "cuda"
        # with --compile on a GPU the (foreach) Adam step is compiled too: one fused kernel
        adam = dict(fused=not (cfg.compile and on_cuda), capturable=on_cuda)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr, betas=tuple(cfg.g_betas),
                                      **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=tuple(cfg.d_betas),
                                      **adam)
        # Separate streams for noise and data order: staging a replay's batches ahead of its
        # noise (CUDA graphs) then draws exactly the numbers eager training draws.
        self.gen = torch.Generator(device).manual_seed(cfg.seed)
        self.data_gen = torch.Generator(device).manual_seed(cfg.seed ^ DATA_SALT)
        self.batches = data.to(device).sampler(cfg.batch_size, self.data_gen)
        fixed = torch.Generator().manual_seed(cfg.seed ^ FIXED_NOISE_SALT)
        self.fixed_z = self.prior(cfg.n_samples, cfg.z_dim, fixed).to(device)
        self.g_fn: Callable[[torch.Tensor], torch.Tensor] = self.G
        self.d_fn: Callable[[torch.Tensor], torch.Tensor] = self.D
        self.opt_d_step, self.opt_g_step = self.opt_d.step, self.opt_g.step
        if cfg.compile:
            self.g_fn, self.d_fn = torch.compile(self.G), torch.compile(self.D)
            if on_cuda:
                self.opt_d_step = torch.compile(self.opt_d.step)
                self.opt_g_step = torch.compile(self.opt_g.step)
        if on_cuda:
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                       enabled=cfg.amp == "bf16")
        # The schedule is data: each phase names its step function and how often it runs.
        self.phases: list[tuple[str, int, Callable[[], None]]] = [
            ("D", cfg.k_d, self.d_step),
            ("G", cfg.k_g, self.g_step),
        ]
        self.step_count = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_unroll = 1
        self.graph_note = "off"
        self.stats = torch.zeros(4, device=device)
        self._zero_stats()

    # --- the algorithm -------------------------------------------------------------------
    def d_step(self) -> None:
        B = self.cfg.batch_size
        real, z = self.reals.pop(), self.noise.pop()
        with torch.no_grad(), self.autocast:
            fake = self.g_fn(z)
        with self.autocast:
            logits = self.d_fn(torch.cat([real, fake.to(real.dtype)])).float()  # one D call
        real_logits, fake_logits = logits[:B], logits[B:]
        loss = self.objective.d_loss(real_logits, fake_logits)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d_step()
        with torch.no_grad():  # few kernels: these run every step, also inside CUDA graphs
            self.stats[0] += loss.detach()
            self.stats[2:] += torch.sigmoid(logits.detach()).view(2, B).mean(1)

    def g_step(self) -> None:
        z = self.noise.pop()
        self.D.requires_grad_(False)  # G's step needs gradients through D, not for D
        with self.autocast:
            fake_logits = self.d_fn(self.g_fn(z)).float()
        loss = self.objective.g_loss(fake_logits)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g_step()
        self.D.requires_grad_(True)
        with torch.no_grad():
            self.stats[1] += loss.detach()

    def iteration(self) -> None:
        # The iteration's data, then its noise, drawn up front in this order whether eager or
        # replayed as a CUDA graph (which stages the data indices before each replay).
        self.reals = [self.batches.next() for _ in range(self.cfg.k_d)][::-1]
        # z ~ p(z) for every step of the iteration at once (one kernel, not k_d + k_g)
        n = self.cfg.k_d + self.cfg.k_g
        z = self.prior(n * self.cfg.batch_size, self.cfg.z_dim, self.gen)
        self.noise = list(z.split(self.cfg.batch_size)[::-1])  # pop() hands them out in order
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
        return self.graph_note

    # --- statistics ------------------------------------------------------------------------
    def _zero_stats(self) -> None:
        # zeroed in place: a captured CUDA graph keeps writing to this very tensor
        self.stats.zero_()  # sums of d_loss, g_loss, D(x), D(G(z))
        self.counts = [0, 0]

    def read_stats(self) -> dict[str, float]:
        """Means since the last call; the one host sync per logging interval."""
        d_loss, g_loss, d_real, d_fake = self.stats.tolist()
        nd, ng = max(self.counts[0], 1), max(self.counts[1], 1)
        self._zero_stats()
        return {"d_loss": d_loss / nd, "g_loss": g_loss / ng, "d_real": d_real / nd,
                "d_fake": d_fake / nd}

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "config": self.cfg.to_dict(),
            "data_shape": list(self.data.shape),
            "G": dict(self.G.state_dict()),
            "D": dict(self.D.state_dict()),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sampler": self.batches.state_dict(),
            "rng": {"gen": self.gen.get_state(), "data_gen": self.data_gen.get_state(),
                    "torch": torch.get_rng_state()},
        }


def _snapshot(trainer: Trainer, run: Run) -> Path:
    """Write this step's picture: an image grid, or the 1-D density/decision plot."""
    G, D, step = trainer.G, trainer.D, trainer.step_count
    path = run.samples_dir / f"step-{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = G.training
    G.eval()
    with torch.no_grad():
        fake = G(trainer.fixed_z)
        if isinstance(trainer.data, Gaussian1D):
            ds = trainer.data
            xs = torch.linspace(*ds.plot_range(), 400, device=trainer.device)
            d_of_x = torch.sigmoid(D(xs.unsqueeze(1)))
            viz.plot_density_1d(xs.cpu().numpy(), ds.pdf(xs.cpu()).numpy(),
                                fake.squeeze(1).cpu().numpy(), d_of_x.cpu().numpy(), path,
                                title=f"iteration {step}")
        else:
            viz.save_grid(fake, path)
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
            if s % cfg.ckpt_every == 0 and s != cfg.steps:
                checkpoint.save(run.latest_checkpoint, trainer.state_dict())
    finally:
        bar.close()
    state = trainer.state_dict()
    checkpoint.save(run.latest_checkpoint, state)
    checkpoint.save(run.final_checkpoint, state)
    _finish_pictures(run)
    return run


def _check_finite(row: dict[str, float], step: int, run: Run) -> None:
    bad = [k for k, v in row.items() if not np.isfinite(v)]
    if bad:
        last = run.latest_checkpoint if run.latest_checkpoint.exists() else "none yet"
        raise GanforgeError(f"non-finite {', '.join(bad)} at iteration {step}; "
                            f"last good checkpoint: {last}")
