"""The training loop: alternate k_d discriminator steps and k_g generator steps.

One iteration (``config.steps`` counts these) is, as in Goodfellow et al.'s Algorithm 1:

    for k_d steps:  x ~ data, z ~ p(z);  D descends  d_loss(D(x), D(G(z)))
    for k_g steps:  z ~ p(z);            G descends  g_loss(D(G(z)))

Logging, sample grids and checkpoints happen every N iterations, from statistics that are
accumulated on the device so the hot loop never waits for the host.
"""

from __future__ import annotations

import copy
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import Config
from .cuda_graphs import capture_iteration
from .data import Dataset
from .distributed import World, average_, average_gradients, broadcast_module
from .errors import GanforgeError
from .losses import Objective, build_objective
from .mlp_grads import MLPGradients, hand_gradients
from .models import build_models
from .optim import lean_step
from .priors import PRIORS
from .regularisers import gradient_penalty, r1_penalty

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

    def __init__(self, cfg: Config, data: Dataset, device: torch.device,
                 world: World | None = None) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.world = world = world or World()
        if cfg.batch_size % world.size:
            raise GanforgeError(f"--batch-size {cfg.batch_size} is the global batch: it must "
                                f"divide evenly over the {world.size} processes")
        self.local_batch = cfg.batch_size // world.size  # this rank's share of each batch
        self.part = world.batch_slice(cfg.batch_size)  # ... and where it lies in the batch
        if world.distributed and cfg.objective == "began":
            raise GanforgeError("objective 'began' keeps its equilibrium k per process; it is "
                                "not supported with several processes")
        self.num_classes = data.num_classes if cfg.conditional else 0
        torch.manual_seed(cfg.seed)  # model init on the CPU: the same weights on any device
        G, D = build_models(cfg, data.shape, self.num_classes)
        if world.distributed and cfg.sync_bn:  # normalise by the global batch's statistics
            if device.type != "cuda":
                raise GanforgeError("sync_bn: torch's SyncBatchNorm runs on GPUs only; on CPUs "
                                    "each process normalises by its own part of the batch")
            G = nn.SyncBatchNorm.convert_sync_batchnorm(G)
            D = nn.SyncBatchNorm.convert_sync_batchnorm(D)
        memory_format = torch.channels_last if cfg.channels_last and len(data.shape) == 3 \
            else torch.contiguous_format
        self.G = G.to(device, memory_format=memory_format)
        self.D = D.to(device, memory_format=memory_format)
        broadcast_module(self.G, world)  # equal by seeding already; made certain here
        broadcast_module(self.D, world)
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
        self.batches.shard(self.part)
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
        self.by_hand = self._hand_gradients()
        if self.by_hand is not None:  # the rest of the CPU's fast path: see optim.py
            self.opt_d_step, self.opt_g_step = lean_step(self.opt_d), lean_step(self.opt_g)
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

    def _hand_gradients(self) -> MLPGradients | None:
        """MLP gradients derived by hand (``backward``): by default on CPUs, where autograd's
        bookkeeping costs about an eighth of an iteration (benchmarks/README.md); on GPUs the
        CUDA graph already removes it."""
        mode = self.cfg.backward
        if mode == "autograd" or (mode == "auto" and self.device.type != "cpu"):
            return None
        try:
            return hand_gradients(self.cfg, self.G, self.D, self.objective)
        except ValueError as e:
            if mode == "manual":
                raise GanforgeError(f"backward=manual: hand-derived gradients do not cover {e}; "
                                    "use backward=autograd") from None
            return None

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
        B = self.local_batch
        (real, y_real), z, y_fake = self.reals.pop(), self.noise.pop(), self.fake_labels.pop()
        if self.by_hand is not None:  # the same gradients without autograd; sets every .grad
            loss, out = self.by_hand.d_backward(real, z)
        else:
            self.opt_d.zero_grad(set_to_none=True)
            loss, out = self._d_loss(real, y_real, z, y_fake)
            loss.backward()
        average_gradients(self.D.parameters(), self.world)
        self.opt_d_step()
        out = out.detach()
        self.objective.after_d_step(self.D, out[:B], out[B:])
        self.d_steps += 1
        with torch.no_grad():  # few kernels: these run every step, also inside CUDA graphs
            self.stats[0] += loss.detach()
            shown = torch.sigmoid(out) if self.objective.outputs_logits else out
            self.stats[2:4] += shown.view(2, B).mean(1)
            extra = self.objective.stats()
            if extra is not None:
                self.stats[4:] += extra

    def _d_loss(self, real: torch.Tensor, y_real: torch.Tensor | None, z: torch.Tensor,
                y_fake: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """D's loss (penalties included) and its outputs on real then fake samples."""
        B = self.local_batch
        with torch.no_grad():
            fake = self._g(z, y_fake).to(real.dtype)
        if self.d_separate:
            real_out, fake_out = self._d(real, y_real), self._d(fake, y_fake)
            out = torch.cat([real_out.detach(), fake_out.detach()])
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
        return loss, out

    def g_step(self) -> None:
        z, y = self.noise.pop(), self.fake_labels.pop()
        if self.by_hand is not None:
            loss = self.by_hand.g_backward(z)
        else:
            self.opt_g.zero_grad(set_to_none=True)
            self.D.requires_grad_(False)  # G's step needs gradients through D, not for D
            loss = self.objective.g_loss(self._d(self._g(z, y), y))
            loss.backward()
            self.D.requires_grad_(True)
        average_gradients(self.G.parameters(), self.world)
        self.opt_g_step()
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
        self.noise = self._mine(z)
        if self.num_classes:
            y = torch.randint(self.num_classes, (n,), generator=self.gen, device=self.device)
            self.fake_labels = self._mine(y)
        else:
            self.fake_labels = [None] * (cfg.k_d + cfg.k_g)
        for _name, repeats, fn in self.phases:
            for _ in range(repeats):
                fn()

    def _mine(self, t: torch.Tensor) -> list[torch.Tensor]:
        """The per-step global batches of ``t``, cut to this rank's slice, last step first
        (``pop()`` hands them out in order). Every rank draws the same global numbers."""
        chunks = t.split(self.cfg.batch_size)
        if self.part is not None:
            chunks = [c[self.part] for c in chunks]
        return list(chunks[::-1])

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
        if self.world.distributed:  # the gradient all-reduce runs outside any graph
            if mode == "on":
                raise GanforgeError("--cuda-graphs on: not available with several processes")
            return False
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
        """Means since the last call (over all ranks), and the gradient norms of the last D
        and G steps; the one host sync per log interval."""
        norms = [_grad_norm(self.D), _grad_norm(self.G)]  # read here, not every step: free
        values = average_(torch.cat([self.stats, torch.stack(norms)]), self.world).tolist()
        nd, ng = max(self.counts[0], 1), max(self.counts[1], 1)
        self._zero_stats()
        row = {name: v / (ng if name == "g_loss" else nd)
               for name, v in zip(self.stat_names, values, strict=False)}
        row["grad_norm_d"], row["grad_norm_g"] = values[-2:]
        return row

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
            "rng": _rng_state(self.gen, self.data_gen),
            "d_steps": self.d_steps,
            "stats": self.stats.clone(),  # sums since the last log row, for exact resume
            "counts": list(self.counts),
            "objective": self.objective.state_dict(),
        }
        if self.G_ema is not None:
            state["G_ema"] = dict(self.G_ema.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any], path: str | Path = "checkpoint") -> None:
        """Continue exactly where ``state_dict()`` left off (same config, same data)."""
        from .checkpoint import load_module_state

        if list(state.get("data_shape", [])) != list(self.data.shape):
            raise GanforgeError(f"{path}: trained on data of shape {state.get('data_shape')}, "
                                f"but this run's data has shape {list(self.data.shape)}")
        load_module_state(self.G, state["G"], "G", path)
        load_module_state(self.D, state["D"], "D", path)
        if self.G_ema is not None:
            load_module_state(self.G_ema, state.get("G_ema", state["G"]), "G_ema", path)
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (ValueError, KeyError) as e:
            raise GanforgeError(f"{path}: optimiser state does not fit the model "
                                f"({str(e).splitlines()[0]})") from None
        try:  # checked for presence and type already; a foreign layout inside still fails here
            self.batches.load_state_dict(state["sampler"])
            _set_rng_state(state["rng"], self.gen, self.data_gen)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
            raise GanforgeError(f"{path}: checkpoint fields 'sampler'/'rng' do not hold this "
                                f"run's data order and random streams ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''})") from None
        self.step_count = int(state["step"])
        self.d_steps = int(state.get("d_steps", self.step_count * self.cfg.k_d))
        if "stats" in state and state["stats"].shape == self.stats.shape:
            self.stats.copy_(state["stats"])
            self.counts = [int(c) for c in state["counts"]]
        self.objective.load_state_dict(state.get("objective", {}))

    def set_learning_rates(self, factor: float) -> tuple[float, float]:
        """Multiply both learning rates (``--on-nan rollback``); returns the new (g, d)."""
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                lr = group["lr"]
                if isinstance(lr, torch.Tensor):  # capturable optimisers keep lr on the device
                    lr.mul_(factor)
                else:
                    group["lr"] = lr * factor
        return (float(self.opt_g.param_groups[0]["lr"]), float(self.opt_d.param_groups[0]["lr"]))

    @property
    def sampling_G(self) -> nn.Module:
        """The generator to show and evaluate: the EMA one when it is on."""
        return self.G_ema if self.G_ema is not None else self.G


def _grad_norm(module: nn.Module) -> torch.Tensor:
    """||grad|| over all of a module's parameters, on the device (no host sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(module.parameters()).device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _rng_state(gen: torch.Generator, data_gen: torch.Generator) -> dict[str, Any]:
    """Every random stream a run draws from: its own two, and the global ones (python, numpy,
    torch CPU and CUDA) that library code may use."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "gen": gen.get_state(), "data_gen": data_gen.get_state(),
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator,
                   data_gen: torch.Generator) -> None:
    gen.set_state(state["gen"])
    data_gen.set_state(state["data_gen"])
    torch.set_rng_state(state["torch"])
    if "python" in state:
        v, internal, gauss = state["python"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state({"bit_generator": "MT19937",
                             "state": {"key": s["key"].numpy().astype(np.uint32),
                                       "pos": s["pos"]},
                             "has_gauss": s["has_gauss"], "gauss": s["gauss"]})
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


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


from .session import train  # noqa: E402  (the run around the Trainer; kept importable here)

__all__ = ["Trainer", "train", "to_unit", "pick_device", "graph_unroll_for"]
