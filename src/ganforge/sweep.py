"""Many independent GANs in one process: stacked weights and batched matmuls.

R runs of an MLP preset become one "stacked" G and D whose layers hold R weight matrices
(R, in, out), applied with ``torch.baddbmm``. Every run keeps its own seed (initial weights,
data order, noise), its own hyper-parameters (learning rates) and its own run folder, so run k
of a sweep is the same GAN as ``ganforge train`` with run k's config, computed R at a time.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint, optim, viz
from .config import Config, coerce, validate
from .data import Dataset, Gaussian1D, load_dataset
from .data.base import EpochSampler
from .errors import GanforgeError
from .files import atomic_write_json
from .losses import OBJECTIVES
from .mlp_grads import Chain, MLPGradients
from .models import build_models
from .priors import PRIORS
from .run import SWEEP_FORMAT, Run, claim, default_out
from .train import DATA_SALT, FIXED_NOISE_SALT, GRAPH_WARMUP, graph_unroll_for, pick_device

# Fields a sweep may vary per run; everything else shapes the shared computation.
VARIABLE = ("lr", "g_lr", "d_lr", "seed")
STACKABLE_MODELS = ("mlp", "mlp-1d", "mlp-2d")
STACKABLE_OBJECTIVES = ("nonsaturating", "minimax", "least-squares", "hinge")


class StackedMLP(nn.Module):
    """R copies of one MLP architecture, each with its own weights: (R, B, in) -> (R, B, out)."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        per_run = [[m for m in net.modules() if isinstance(m, nn.Linear)] for net in nets]
        template = [m for m in nets[0].net if not isinstance(m, nn.Flatten)]
        self.acts = nn.ModuleList(m for m in template if not isinstance(m, nn.Linear))
        self.W = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i].weight.detach().t() for layers in per_run]))
            for i in range(len(per_run[0])))
        self.b = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i].bias.detach() for layers in per_run]).unsqueeze(1))
            for i in range(len(per_run[0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2)
        for i, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            x = torch.baddbmm(b, x, W)
            if i < len(self.acts):
                x = self.acts[i](x)
        return x

    def chain(self) -> Chain:
        """The same layers for backward passes by hand (:mod:`ganforge.mlp_grads`)."""
        acts = [self.acts[i] if i < len(self.acts) else nn.Identity() for i in range(len(self.W))]
        return Chain(list(self.W), list(self.b), acts, stacked=True)

    def unstack_into(self, net: nn.Module, k: int) -> nn.Module:
        """Copy run k's weights into an ordinary (unstacked) module of the same architecture."""
        layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, W, b in zip(layers, self.W, self.b, strict=True):
                layer.weight.copy_(W[k].t())
                layer.bias.copy_(b[k, 0])
        return net


class StackedAdam:
    """Adam (as torch.optim.Adam computes it) with a learning rate per run, shape (R, 1, 1).

    On CUDA it is a handful of multi-tensor kernels over the stacked tensors (capturable in a
    CUDA graph). On the CPU, where those kernels are passes over memory, the runs that share
    a learning rate are updated by one call of torch's fused Adam on their slices."""

    def __init__(self, params: list[nn.Parameter], lr: torch.Tensor, betas: list[float],
                 eps: float = 1e-8, fused: bool = True) -> None:
        self.params, self.lr, (self.b1, self.b2), self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros((), device=lr.device)  # a tensor, so CUDA graphs can capture it
        self.groups: dict[float, list[int]] = {}  # learning rate -> runs, for the fused update
        if fused and lr.device.type == "cpu" and optim.available():
            for k, value in enumerate(lr.view(-1).tolist()):
                self.groups.setdefault(value, []).append(k)

    @torch.no_grad()
    def step(self) -> None:
        if self.groups:
            self._fused_step()
            return
        # multi-tensor (foreach) kernels: a handful of launches for all layers, not ~10 each
        self.t += 1
        bc1 = 1 - self.b1 ** self.t
        bc2_sqrt = (1 - self.b2 ** self.t).sqrt()
        grads = [p.grad for p in self.params]
        torch._foreach_lerp_(self.m, grads, 1 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - self.b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(self.m, denom)
        torch._foreach_mul_(update, [self.lr / bc1] * len(update))  # per-run step sizes
        torch._foreach_sub_(self.params, update)

    def _fused_step(self) -> None:
        self.t += 1
        runs = [[t.unbind(0) for t in ts] for ts in
                (self.params, [p.grad for p in self.params], self.m, self.v)]
        for lr, ks in self.groups.items():
            p, g, m, v = ([t[k] for t in per_layer for k in ks] for per_layer in runs)
            optim.fused_adam_(p, g, m, v, [self.t] * len(p), lr=lr, betas=(self.b1, self.b2),
                              eps=self.eps)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def expand_runs(base: Config, runs: int, vary: dict[str, list[Any]]) -> list[Config]:
    """Run k gets seed ``base.seed + k`` and combination ``k % n`` of the varied values."""
    for key in vary:
        _check_variable(key)
    combos = list(itertools.product(*vary.values())) or [()]
    configs = []
    for k in range(runs):
        change: dict[str, Any] = {"seed": base.seed + k}
        for key, value in zip(vary, combos[k % len(combos)], strict=True):
            if key == "lr":
                change.update(g_lr=value, d_lr=value)
            else:
                change[key] = value
        configs.append(validate(dataclasses.replace(base, **change)))
    return configs


def _check_variable(key: str) -> None:
    if key not in VARIABLE:
        raise GanforgeError(f"--vary {key}: a sweep can vary {', '.join(VARIABLE)} only "
                            "(other fields change the shared computation)")


def parse_vary(items: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise GanforgeError(f"--vary {item!r}: expected key=v1,v2,...")
        key, values = item.split("=", 1)
        key = key.strip().replace("-", "_")
        _check_variable(key)
        field = "g_lr" if key == "lr" else key
        try:
            out[key] = [coerce(field, v, from_text=True) for v in values.split(",") if v]
        except GanforgeError as e:
            raise GanforgeError(f"--vary {item!r}: {e}") from None
        if not out[key]:
            raise GanforgeError(f"--vary {item!r}: no values")
    return out


class SweepTrainer:
    """R GANs stepping together; ``step()`` is one iteration of every run."""

    def __init__(self, configs: list[Config], data: Dataset, device: torch.device) -> None:
        cfg = configs[0]
        if cfg.model not in STACKABLE_MODELS:
            raise GanforgeError(f"sweep: model {cfg.model!r} cannot be stacked; "
                                f"supported: {', '.join(STACKABLE_MODELS)}")
        if cfg.objective not in STACKABLE_OBJECTIVES or cfg.conditional or cfg.ema or \
                cfg.r1_gamma or cfg.r2_gamma or cfg.spectral_norm or cfg.optimizer != "adam":
            raise GanforgeError(
                "sweep: vectorised runs support unconditional MLP GANs with Adam and the "
                f"objectives {', '.join(STACKABLE_OBJECTIVES)} (no penalties, EMA or SN)")
        self.configs, self.cfg, self.data, self.device = configs, cfg, data, device
        self.R, B = len(configs), cfg.batch_size
        Gs, Ds = [], []
        for c in configs:  # the same initial weights as a single run with this seed
            torch.manual_seed(c.seed)
            G, D = build_models(c, data.shape)
            Gs.append(G)
            Ds.append(D)
        self.templates = (Gs[0], Ds[0])
        self.G, self.D = StackedMLP(Gs).to(device), StackedMLP(Ds).to(device)
        self.objective = OBJECTIVES.get(cfg.objective)()
        self.prior = PRIORS.get(cfg.prior)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        lr = lambda name: torch.tensor([getattr(c, name) for c in configs],  # noqa: E731
                                       device=device).view(-1, 1, 1)
        # --compile compiles the multi-tensor update; the fused kernel on slices does not trace
        self.opt_g = StackedAdam(list(self.G.parameters()), lr("g_lr"), cfg.g_betas,
                                 fused=not cfg.compile)
        self.opt_d = StackedAdam(list(self.D.parameters()), lr("d_lr"), cfg.d_betas,
                                 fused=not cfg.compile)
        self.opt_g_step, self.opt_d_step = self.opt_g.step, self.opt_d.step
        self.by_hand: MLPGradients | None = None  # gradients by hand: the CPU's fast path
        if cfg.backward == "manual" or (cfg.backward == "auto" and device.type == "cpu"):
            self.by_hand = MLPGradients(self.G.chain(), self.D.chain(), self.objective)
        if cfg.compile:  # the Adam update becomes a few fused kernels instead of ~40
            self.opt_g_step = torch.compile(self.opt_g.step)
            self.opt_d_step = torch.compile(self.opt_d.step)
        self.gens = [torch.Generator(device).manual_seed(c.seed) for c in configs]
        self.data_gens = [torch.Generator(device).manual_seed(c.seed ^ DATA_SALT) for c in configs]
        data = data.to(device)
        self.samplers = [data.sampler(B, g) for g in self.data_gens]
        fixed = [torch.Generator().manual_seed(c.seed ^ FIXED_NOISE_SALT) for c in configs]
        self.fixed_z = torch.stack([self.prior(c.n_samples, c.z_dim, g)
                                    for c, g in zip(configs, fixed, strict=True)]).to(device)
        self.stats = torch.zeros(4, self.R, device=device)
        self.counts = [0, 0]
        self.step_count = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_note = "off"
        self._idx_static: torch.Tensor | None = None  # (k_d*unroll, R, B) staged per replay
        self.graph_unroll = 1
        self._k = 0

    def draw_noise(self) -> None:
        """Every run's z for the whole iteration, drawn as a single run draws it."""
        n = (self.cfg.k_d + self.cfg.k_g) * self.cfg.batch_size
        z = torch.stack([self.prior(n, self.cfg.z_dim, g) for g in self.gens])
        self.noise = list(z.split(self.cfg.batch_size, dim=1)[::-1])

    def real_batch(self) -> torch.Tensor:
        """(R, B, features): every run's own batch, gathered with one indexing kernel."""
        if not isinstance(self.samplers[0], EpochSampler):  # drawn, not indexed (toy data)
            return torch.stack([s.next() for s in self.samplers]).flatten(2)
        if self._idx_static is not None:
            idx = self._idx_static[self._k % self._idx_static.shape[0]]
            self._k += 1
        else:
            idx = torch.stack([s.next_indices() for s in self.samplers])
        return self.samplers[0].gather(idx).flatten(2)

    def stage(self) -> None:
        if self._idx_static is None:
            return
        for j in range(self._idx_static.shape[0]):
            torch.stack([s.next_indices() for s in self.samplers], out=self._idx_static[j])

    def d_step(self) -> None:
        B = self.cfg.batch_size
        real, z = self.reals.pop(), self.noise.pop()
        if self.by_hand is not None:  # sets every .grad
            loss, logits = self.by_hand.d_backward(real, z)
        else:
            self.opt_d.zero_grad()
            with torch.no_grad():
                fake = self.G(z)
            logits = self.D(torch.cat([real, fake], 1)).squeeze(2)
            loss = self.objective.d_loss(logits[:, :B], logits[:, B:])  # (R,)
            loss.sum().backward()  # runs share no weights: the sum's gradient is each run's own
        self.opt_d_step()
        with torch.no_grad():
            self.stats[0] += loss.detach()
            self.stats[2:] += torch.sigmoid(logits.detach()).view(self.R, 2, B).mean(2).t()

    def g_step(self) -> None:
        z = self.noise.pop()
        if self.by_hand is not None:
            loss = self.by_hand.g_backward(z)
        else:
            self.opt_g.zero_grad()
            self.D.requires_grad_(False)
            loss = self.objective.g_loss(self.D(self.G(z)).squeeze(2))
            loss.sum().backward()
            self.D.requires_grad_(True)
        self.opt_g_step()
        with torch.no_grad():
            self.stats[1] += loss.detach()

    def iteration(self) -> None:
        self.reals = [self.real_batch() for _ in range(self.cfg.k_d)][::-1]
        self.draw_noise()
        for _ in range(self.cfg.k_d):
            self.d_step()
        for _ in range(self.cfg.k_g):
            self.g_step()

    def step(self, remaining: int | None = None) -> int:
        """Like :meth:`ganforge.train.Trainer.step`: one replay or one eager iteration."""
        n = self.graph_unroll
        if self.graph is not None and (remaining is None or remaining >= n):
            self.stage()
            self.graph.replay()
        else:
            n = 1
            self._idx_static = None
            self.iteration()
        self.counts[0] += self.cfg.k_d * n
        self.counts[1] += self.cfg.k_g * n
        self.step_count += n
        return n

    def setup_cuda_graph(self, unroll: int = 1) -> str:
        try:
            graph = torch.cuda.CUDAGraph()
            indexed = isinstance(self.samplers[0], EpochSampler)
            for g in self.gens + ([] if indexed else self.data_gens):
                graph.register_generator_state(g)
            if isinstance(self.samplers[0], EpochSampler):
                self._idx_static = torch.zeros(self.cfg.k_d * unroll, self.R,
                                               self.cfg.batch_size, dtype=torch.long,
                                               device=self.device)
            self._k = 0
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                for _ in range(unroll):
                    self.iteration()
            self.graph, self.graph_unroll = graph, unroll
            self.graph_note = f"on ({unroll} iterations per replay)"
        except Exception as e:  # an optimisation only: fall back to eager
            self._idx_static = None
            self.graph = None
            self.graph_note = f"off ({type(e).__name__}: {str(e).splitlines()[0]})"
        return self.graph_note

    def read_stats(self) -> list[dict[str, float]]:
        sums = self.stats.t().tolist()
        self.stats.zero_()
        nd, ng = max(self.counts[0], 1), max(self.counts[1], 1)
        self.counts = [0, 0]
        return [{"d_loss": d / nd, "g_loss": g / ng, "d_real": r / nd, "d_fake": f / nd}
                for d, g, r, f in sums]

    def run_modules(self, k: int) -> tuple[nn.Module, nn.Module]:
        G, D = (m for m in build_models(self.configs[k], self.data.shape))
        return self.G.unstack_into(G, k), self.D.unstack_into(D, k)


def sweep(base: Config, runs: int, vary: dict[str, list[Any]] | None = None, *,
          out: str | Path | None = None, overwrite: bool = False,
          progress: bool | None = None) -> list[Run]:
    """Train ``runs`` GANs of ``base``'s preset at once; one run folder each under ``out``."""
    if runs <= 0:
        raise GanforgeError(f"--runs must be positive, got {runs}")
    configs = expand_runs(base, runs, vary or {})
    device = pick_device(base.device)
    data = load_dataset(base)
    trainer = SweepTrainer(configs, data, device)
    root = Path(out or base.out or default_out(f"sweep-{base.preset}"))
    # the whole sweep folder is one claim: an earlier, larger sweep's run-NNN folders are
    # moved aside with the rest of it and deleted once this one has started
    folder = claim(root, overwrite)
    try:
        run_list = []
        for k, c in enumerate(configs):
            d = root / f"run-{k:03d}"
            c = dataclasses.replace(c, out=str(d), dataset=data.name)
            trainer.configs[k] = c
            r = Run(dir=d, config=c)
            r.dir.mkdir()
            r.write_config({**data.info, "device": str(device), "sweep": str(root), "run": k})
            run_list.append(r)
        atomic_write_json(root / "sweep.json", {"format": SWEEP_FORMAT, "runs": runs,
                                                "vary": vary or {}, "base": base.to_dict()})
        _sweep_snapshot(trainer, run_list)
    except BaseException:
        folder.restore()
        folder.release()
        raise
    folder.commit()
    try:
        return _sweep_loop(trainer, run_list, base, data, progress)
    finally:
        folder.release()


def _sweep_loop(trainer: SweepTrainer, run_list: list[Run], base: Config, data: Any,
                progress: bool | None) -> list[Run]:
    device, runs = trainer.device, len(run_list)
    want_graph = device.type == "cuda" and base.cuda_graphs != "off"
    unroll = graph_unroll_for(base)
    capture_at = -(-GRAPH_WARMUP // unroll) * unroll
    bar = tqdm(total=base.steps, disable=None if progress is None else not progress, unit="it",
               desc=f"sweep x{runs}")
    t_last, n_last = time.perf_counter(), 0
    try:
        while trainer.step_count < base.steps:
            if want_graph and trainer.step_count == capture_at:
                note = trainer.setup_cuda_graph(unroll)
                if not note.startswith("on"):
                    print(f"ganforge: sweep CUDA graph capture failed, eager: {note}",
                          file=sys.stderr)
            trainer.step(base.steps - trainer.step_count)
            s = trainer.step_count
            if s % base.log_every == 0 or s == base.steps:
                now = time.perf_counter()
                its = (s - n_last) / max(now - t_last, 1e-9)
                t_last, n_last = now, s
                for r, row in zip(run_list, trainer.read_stats(), strict=True):
                    r.log({"step": s, **row, "it_s": round(its, 2)})
                bar.update(s - bar.n)
            if s % base.sample_every == 0 or s == base.steps:
                _sweep_snapshot(trainer, run_list)
    finally:
        bar.close()
    for k, r in enumerate(run_list):
        G, D = trainer.run_modules(k)
        state = {"step": trainer.step_count, "config": r.config.to_dict(),
                 "data_shape": list(data.shape), "G": dict(G.state_dict()),
                 "D": dict(D.state_dict())}
        checkpoint.save(r.final_checkpoint, state)
        frames = sorted(r.samples_dir.glob("step-*.png"))
        viz.save_gif(frames, r.dir / "progress.gif")
        viz.plot_losses(r.metrics, r.dir / "losses.png", title=f"run {k}: losses")
    return run_list


@torch.no_grad()
def _sweep_snapshot(trainer: SweepTrainer, runs: list[Run]) -> None:
    fake = trainer.G(trainer.fixed_z)  # (R, n, features)
    for k, r in enumerate(runs):
        path = r.samples_dir / f"step-{trainer.step_count:07d}.png"
        if isinstance(trainer.data, Gaussian1D):
            ds = trainer.data
            xs = torch.linspace(*ds.plot_range(), 400, device=trainer.device)
            d_all = torch.sigmoid(trainer.D(xs.view(1, -1, 1).expand(trainer.R, -1, -1)))
            viz.plot_density_1d(xs.cpu().numpy(), ds.pdf(xs.cpu()).numpy(),
                                fake[k, :, 0].cpu().numpy(), d_all[k, :, 0].cpu().numpy(), path,
                                title=f"run {k}, iteration {trainer.step_count}")
        else:
            viz.save_grid(fake[k].view(-1, *trainer.data.shape), path)
