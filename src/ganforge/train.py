"""The training loop: alternate k_d discriminator steps and k_g generator steps.

One iteration (``config.steps`` counts these) is, as in Goodfellow et al.'s Algorithm 1:

    for k_d steps:  x ~ data, z ~ p(z);  D descends  d_loss(D(x), D(G(z))) + penalties
    for k_g steps:  z ~ p(z);            G descends  g_loss(D(G(z)))

for R runs at once: ``ganforge train`` is R = 1; a sweep stacks R runs' weights along a run
axis (:mod:`ganforge.stack`), each with its own seed, noise, data order and hyper-parameters.
Statistics are accumulated on the device, per run, so the hot loop never waits for the host.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Config
from .cuda_graphs import graph_unroll_for, setup_cuda_graph, wants_graph
from .data import Dataset
from .distributed import World, average_, average_gradients, broadcast_module
from .errors import GanforgeError
from .generator import to_unit
from .hand_check import choose_backward
from .losses import Objective, build_objective
from .machine import pick_device
from .models import build_models
from .optim import build_optimizer, decay_factor, lean_step, runs_step, scale_lr, schedule_lr
from .penalties import PENALTIES, DBatch, active_penalties, weight
from .priors import PRIORS
from .remedies import check_batches, g_loss_top_k, topk_share, unrolled_g_step
from .stack import RunBatches, check_stackable, grad_norms, run_views, stack_models
from .trainer_state import load_run_state, run_state

FIXED_NOISE_SALT = 0x5EED  # the grid's noise comes from its own stream, not the training one
DATA_SALT = 0xDA7A  # the data-order stream's seed is derived from the run's seed
GRAPH_WARMUP = 3  # eager iterations before capture, so lazy allocations happen outside it


class Trainer:
    """Holds G, D, their optimisers and the data/noise streams of R runs (R = 1 unless a
    sequence of configs is given); ``step()`` is one iteration of every run."""

    def __init__(self, cfg: Config | Sequence[Config], data: Dataset, device: torch.device,
                 world: World | None = None) -> None:
        self.configs = configs = [cfg] if isinstance(cfg, Config) else list(cfg)
        self.R = R = len(configs)
        self.lead = 1 if R == 1 else 2  # leading axes of a batch: (B, ...) or (R, B, F)
        self.cfg = cfg = configs[0]
        self.data, self.device = data, device
        self.world = world = world or World()
        if cfg.batch_size % world.size:
            raise GanforgeError(f"--batch-size {cfg.batch_size} is the global batch: it must "
                                f"divide evenly over the {world.size} processes")
        self.local_batch = cfg.batch_size // world.size  # this rank's share of each batch
        self.part = world.batch_slice(cfg.batch_size)  # ... and where it lies in the batch
        self.objective: Objective = build_objective(cfg)
        if world.distributed and self.objective.per_process_state:
            raise GanforgeError(f"objective {cfg.objective!r} keeps its state per process; it "
                                "is not supported with several processes")
        if R > 1:
            check_stackable(configs, self.objective, world.size)
        self.num_classes = data.num_classes if cfg.conditional else 0
        self.run_nets: list[tuple[nn.Module, nn.Module]] = []  # each run's own modules
        for c in configs:
            torch.manual_seed(c.seed)  # model init on the CPU: the same weights on any device
            self.run_nets.append(build_models(c, data.shape, self.num_classes))
        G, D = (stack_models([nets[i] for nets in self.run_nets]) for i in (0, 1))
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
        if R == 1:
            self.run_nets = [(self.G, self.D)]
        broadcast_module(self.G, world)  # equal by seeding already; made certain here
        broadcast_module(self.D, world)
        self.priors = [PRIORS.get(c.prior) for c in configs]
        self.prior = self.priors[0]
        check_batches(cfg, self.local_batch, world.size)
        self._build_optimizers()
        self.G_ema: nn.Module | None = None
        if any(c.ema > 0 for c in configs):  # the EMA of G's weights: smoother samples
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
            betas = [0.5 ** (1.0 / c.ema) if c.ema > 0 else 0.0 for c in configs]  # half-life
            self.ema_beta = betas[0] if R == 1 else torch.tensor(betas, device=device)
        # Separate streams for noise and data order: staging a replay's batches ahead of its
        # noise (CUDA graphs) then draws exactly the numbers eager training draws.
        self.gens = [torch.Generator(device).manual_seed(c.seed) for c in configs]
        self.data_gens = [torch.Generator(device).manual_seed(c.seed ^ DATA_SALT)
                          for c in configs]
        self.gen, self.data_gen = self.gens[0], self.data_gens[0]
        on_device = data.to(device)
        self.samplers = [on_device.sampler(cfg.batch_size, g) for g in self.data_gens]
        self.batches = self.samplers[0] if R == 1 else RunBatches(self.samplers)
        self.batches.shard(self.part)
        if getattr(self.D, "diffaugment", None) is not None:  # augment from the run's stream
            self.D.diffaugment.generator = self.gen
        if getattr(self.G, "out_range", None) and hasattr(self.batches, "value_range"):
            self.batches.value_range = self.G.out_range
        self.fixed = [self._fixed_inputs(c) for c in configs]
        self.fixed_z, self.fixed_y = self.fixed[0]
        # BatchNorm in D: real and fake go through D separately, so that each batch is
        # normalised by its own statistics (as DCGAN does); otherwise one call on both.
        self.d_separate = any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                              for m in self.D.modules())
        self.g_fn: Callable[..., torch.Tensor] = self.G
        self.d_fn: Callable[..., torch.Tensor] = self.D
        on_cuda = device.type == "cuda"
        if cfg.compile:
            self.g_fn, self.d_fn = torch.compile(self.G), torch.compile(self.D)
            if on_cuda and R == 1:  # the (foreach) optimiser update becomes one fused kernel
                self.opt_d_step = torch.compile(self.opt_d.step)
                self.opt_g_step = torch.compile(self.opt_g.step)
        if on_cuda:
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                       enabled=cfg.amp == "bf16")
        # D's step: its objective's loss plus the penalties the objective and config ask for
        self.penalties = [(PENALTIES.get(n), weight(n, configs, device), n)
                          for n in active_penalties(configs, self.objective.penalties)]
        self.d_steps = 0
        self.by_hand, self.backward_note = choose_backward(self)
        if self.by_hand is not None and R == 1:  # the rest of the CPU's fast path: optim.py
            self.opt_d_step, self.opt_g_step = lean_step(self.opt_d), lean_step(self.opt_g)
        # The schedule is data: each phase names its step function and how often it runs.
        self.phases: list[tuple[str, int, Callable[[], None]]] = [
            ("D", cfg.k_d, self.d_step),
            ("G", cfg.k_g, (lambda: unrolled_g_step(self)) if cfg.unroll_steps else self.g_step),
        ]
        self.step_count = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_unroll = 1
        self.graph_note = "off"
        self.stat_names = ("d_loss", "g_loss", "d_real", "d_fake", *self.objective.extra_stats)
        self.stats = torch.zeros(R, len(self.stat_names), device=device)
        self._zero_stats()

    def _build_optimizers(self) -> None:
        """One torch optimiser per run and network, over the run's own parameters (its slices
        of the stack): run k's update, state and state_dict are a single run's."""
        cfg, R = self.cfg, self.R
        self.g_views, self.d_views = run_views(self.G, R), run_views(self.D, R)
        self.opts_g = [build_optimizer(c.optimizer, v, c.g_lr, c.g_betas, self.device,
                                       cfg.compile) for c, v in zip(self.configs, self.g_views,
                                                                   strict=True)]
        self.opts_d = [build_optimizer(c.optimizer, v, c.d_lr, c.d_betas, self.device,
                                       cfg.compile) for c, v in zip(self.configs, self.d_views,
                                                                   strict=True)]
        self.opt_g, self.opt_d = self.opts_g[0], self.opts_d[0]
        if R == 1:
            self.opt_d_step, self.opt_g_step = self.opt_d.step, self.opt_g.step
        else:
            self.opt_d_step = runs_step(self.opts_d, self.d_views, list(self.D.parameters()))
            self.opt_g_step = runs_step(self.opts_g, self.g_views, list(self.G.parameters()))

    def _fixed_inputs(self, cfg: Config) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The grid's noise (and labels: one row per class) from a stream of its own."""
        C, prior = self.num_classes, PRIORS.get(cfg.prior)
        fixed = torch.Generator().manual_seed(cfg.seed ^ FIXED_NOISE_SALT)
        if not C:
            return prior(cfg.n_samples, cfg.z_dim, fixed).to(self.device), None
        per_row = max(1, -(-cfg.n_samples // C))
        z = prior(C * per_row, cfg.z_dim, fixed).to(self.device)
        return z, torch.arange(C, device=self.device).repeat_interleave(per_row)

    def _per_run(self, draw: Callable[[int, torch.Generator], torch.Tensor]) -> torch.Tensor:
        """``draw(k, run k's noise stream)`` for every run, stacked along the run axis (R > 1):
        each run draws exactly the numbers its single run draws."""
        if self.R == 1:
            return draw(0, self.gen)
        return torch.stack([draw(k, g) for k, g in enumerate(self.gens)])

    def _d(self, x: torch.Tensor, y: torch.Tensor | None,
           D: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        D = self.d_fn if D is None else D
        with self.autocast:
            return D(x, y).float() if y is not None else D(x).float()

    def _g(self, z: torch.Tensor, y: torch.Tensor | None,
           G: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        G = self.g_fn if G is None else G
        with self.autocast:
            return G(z, y) if y is not None else G(z)

    # --- the algorithm -------------------------------------------------------------------
    def d_step(self) -> None:
        (real, y_real), z, y_fake = self.reals.pop(), self.noise.pop(), self.fake_labels.pop()
        if self.by_hand is not None:  # the same gradients without autograd; sets every .grad
            loss, out = self.by_hand.d_backward(real, z)
        else:
            self.D.zero_grad(set_to_none=True)
            loss, out = self._d_loss(real, y_real, z, y_fake)
            loss.sum().backward()  # runs share no weights: the sum's gradient is each run's
        average_gradients(self.D.parameters(), self.world)
        self.opt_d_step()
        self._after_d_step(out.detach())
        with torch.no_grad():  # few kernels: these run every step, also inside CUDA graphs
            self.stats[:, 0] += loss.detach()
            shown = torch.sigmoid(out) if self.objective.outputs_logits else out
            self.stats[:, 2:4] += shown.view(self.R, 2, -1).mean(-1)  # -1: B, or B/pac packs
            extra = self.objective.stats()
            if extra is not None:
                self.stats[:, 4:] += extra

    def _after_d_step(self, out: torch.Tensor) -> None:
        for pen, w, _ in self.penalties:
            if pen.after_step is not None:  # weight clipping
                pen.after_step(self.D, w)
        self.objective.after_d_step(self.D, *out.chunk(2, -1))  # real, fake halves
        self.d_steps += 1

    def _d_loss(self, real: torch.Tensor, y_real: torch.Tensor | None, z: torch.Tensor,
                y_fake: torch.Tensor | None, G: nn.Module | None = None,
                D: nn.Module | None = None, gens: Sequence[torch.Generator] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """D's loss (per run, penalties included) and its outputs on real then fake."""
        with torch.no_grad():
            fake = self._g(z, y_fake, G).to(real.dtype)
        D_fn = self.d_fn if D is None else D
        if self.d_separate:
            real_out, fake_out = self._d(real, y_real, D_fn), self._d(fake, y_fake, D_fn)
            out = torch.cat([real_out.detach(), fake_out.detach()], -1)
        else:  # one D call for both halves
            y = None if y_real is None else torch.cat([y_real, y_fake])
            out = self._d(torch.cat([real, fake], self.lead - 1), y, D_fn)
            real_out, fake_out = out.chunk(2, -1)  # halves: B outputs each, or B/pac packs
        loss = self.objective.d_loss(real_out, fake_out)
        batch = DBatch(self.D if D is None else D, real, fake, y_real, y_fake,
                       self.gens if gens is None else gens, self.lead)
        interval = self.cfg.reg_interval
        for pen, w, _ in self.penalties:
            if pen.loss is None:
                continue
            if pen.lazy:  # every `interval` D steps, weighted by the interval
                if self.d_steps % interval:
                    continue
                w = w * interval
            loss = loss + w * pen.loss(batch)
        return loss, out

    def g_step(self) -> None:
        z, y = self.noise.pop(), self.fake_labels.pop()
        share = topk_share(self.cfg, self.step_count)  # 1: every sample
        if self.by_hand is not None:
            loss = self.by_hand.g_backward(z, share)
        else:
            self.G.zero_grad(set_to_none=True)
            self.D.requires_grad_(False)  # G's step needs gradients through D, not for D
            loss = g_loss_top_k(self.objective, self._d(self._g(z, y), y), share)
            loss.sum().backward()
            self.D.requires_grad_(True)
        average_gradients(self.G.parameters(), self.world)
        self.opt_g_step()
        if self.G_ema is not None:
            self._update_ema()
        with torch.no_grad():
            self.stats[:, 1] += loss.detach()

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema, live = list(self.G_ema.parameters()), list(self.G.parameters())
        if self.R == 1:
            torch._foreach_lerp_(ema, live, 1.0 - self.ema_beta)
        else:  # each run its own half-life
            w = 1.0 - self.ema_beta
            for e, p in zip(ema, live, strict=True):
                e.lerp_(p, w.view(-1, *([1] * (p.dim() - 1))))
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
        self.noise = self._mine(self._per_run(lambda k, g: self.priors[k](n, cfg.z_dim, g)))
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
        chunks = t.split(self.cfg.batch_size, self.lead - 1)
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
            if self.cfg.lr_decay != "none":  # every run's rates of this iteration
                schedule_lr((*self.opts_g, *self.opts_d),
                            decay_factor(self.cfg.lr_decay, self.step_count, self.cfg.steps))
            self.iteration()
        self.counts[0] += self.cfg.k_d * n
        self.counts[1] += self.cfg.k_g * n
        self.step_count += n
        return n

    def wants_graph(self) -> bool:
        return wants_graph(self)

    def setup_cuda_graph(self, unroll: int = 1) -> str:
        """Capture ``unroll`` iterations as one CUDA graph (after a few eager ones); returns
        "on", or why capture fell back to eager."""
        return setup_cuda_graph(self, unroll)

    # --- statistics ------------------------------------------------------------------------
    def _zero_stats(self) -> None:
        # zeroed in place: a captured CUDA graph keeps writing to this very tensor
        self.stats.zero_()
        self.counts = [0, 0]

    def read_stats(self) -> list[dict[str, float]]:
        """Per run, the means since the last call (over all ranks) and the gradient norms of
        the last D and G steps; the one host sync per log interval."""
        norms = torch.stack([grad_norms(self.D, self.R), grad_norms(self.G, self.R)], 1)
        values = average_(torch.cat([self.stats, norms], 1), self.world).tolist()
        nd, ng = max(self.counts[0], 1), max(self.counts[1], 1)
        self._zero_stats()
        rows = []
        for v in values:
            row = {name: x / (ng if name == "g_loss" else nd)
                   for name, x in zip(self.stat_names, v, strict=False)}
            row["grad_norm_d"], row["grad_norm_g"] = v[-2:]
            rows.append(row)
        return rows

    # --- each run's own modules and state ----------------------------------------------------
    def run_modules(self, k: int = 0) -> tuple[nn.Module, nn.Module]:
        """Run k's G and D as ordinary modules holding its current weights (R = 1: the
        trainer's own)."""
        if self.R == 1:
            return self.G, self.D
        G, D = (m.to(self.device) for m in self.run_nets[k])
        return self.G.unstack_into(G, k), self.D.unstack_into(D, k)

    def sampling_G_of(self, k: int = 0) -> nn.Module:
        """Run k's generator to show and evaluate: its EMA one when it has one."""
        if self.R == 1:
            return self.sampling_G
        if self.configs[k].ema > 0:
            if not hasattr(self, "_ema_nets"):
                self._ema_nets = [copy.deepcopy(G).eval() for G, _ in self.run_nets]
            return self.G_ema.unstack_into(self._ema_nets[k].to(self.device), k)
        return self.run_modules(k)[0]

    @property
    def sampling_G(self) -> nn.Module:
        """The generator to show and evaluate (run 0): the EMA one when it is on."""
        if self.R > 1:
            return self.sampling_G_of(0)
        return self.G_ema if self.G_ema is not None else self.G

    def state_dict(self, k: int = 0) -> dict[str, Any]:
        """Run k's state, in the format of a single run's checkpoint."""
        return run_state(self, k)

    def load_state_dict(self, state: dict[str, Any], path: str | Path = "checkpoint",
                        k: int = 0) -> None:
        """Continue run k exactly where ``state_dict(k)`` left off (same config and data)."""
        load_run_state(self, state, path, k)

    def set_learning_rates(self, factor: float, k: int = 0) -> tuple[float, float]:
        """Multiply run k's learning rates (``--on-nan rollback``); returns the new (g, d)."""
        return scale_lr(self.opts_g[k], factor), scale_lr(self.opts_d[k], factor)


__all__ = ["Trainer", "to_unit", "pick_device", "graph_unroll_for"]
