"""Training speed of the seed MLP GAN (and DCGAN): tutorial-style reference loops vs ganforge.

Everything runs in ONE process on the same model, batch and device. Rows take turns in short
chunks, round after round, and each row's ratio to its reference loop is taken within a round,
so the ratios hold even on a machine whose speed drifts. One iteration = k_d D steps + k_g G
steps (here 1 + 1).

    python benchmarks/speed.py                       # CPU (or the GPU when there is one)
    python benchmarks/speed.py --device cuda --rounds 11
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ganforge.config import resolve  # noqa: E402
from ganforge.data import load_dataset  # noqa: E402
from ganforge.train import GRAPH_WARMUP, Trainer, graph_unroll_for, pick_device  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Step = Callable[[], int]  # one call of a row: some GAN-iterations; returns how many


def warmed(one: Callable[[], int | None], calls: int = 20) -> Step:
    """``one`` after ``calls`` warm-up calls, as a Step (``one`` returns how many iterations
    it did, or None for one)."""
    for _ in range(calls):
        one()

    def step() -> int:
        n = one()
        return 1 if n is None else n

    return step


def tutorial_batches(images: torch.Tensor, batch: int):
    """Shuffled batches forever, from a DataLoader over float tensors (as tutorials load)."""
    loader = DataLoader(TensorDataset(images), batch_size=batch, shuffle=True, drop_last=True)
    while True:
        for (x,) in loader:
            yield x


def tutorial_step(G, D, opt_g, opt_d, loss, x, noise) -> tuple[float, float]:
    """One iteration as tutorials write it: D on real and on fake separately, fresh noise for
    G's step, D's gradients computed (and thrown away) in G's step, ``.item()`` on both."""
    out_real = D(x)
    ones, zeros = torch.ones_like(out_real), torch.zeros_like(out_real)
    d_loss = loss(out_real, ones) + loss(D(G(noise()).detach()), zeros)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = loss(D(G(noise())), ones)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


def reference_loop(images: torch.Tensor, device: torch.device, batch: int) -> Step:
    """The seed tutorial's loop: DataLoader over float tensors, numpy noise, BCE on
    probabilities, default Adam, ``.item()`` every step."""
    G = nn.Sequential(nn.Linear(100, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid()).to(device)
    D = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 1), nn.Sigmoid()).to(device)
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    batches = tutorial_batches(images.float().div(255).view(-1, 784), batch)
    bce, history = nn.BCELoss(), []

    def noise() -> torch.Tensor:
        return torch.from_numpy(np.random.uniform(-1, 1, (batch, 100))).float().to(device)

    def one() -> None:
        x = next(batches).to(device)
        history.append(tutorial_step(G, D, opt_g, opt_d, bce, x, noise))

    return warmed(one)


def tight_loop(images: torch.Tensor, device: torch.device, batch: int) -> Step:
    """The best hand-written eager loop (the speed issue's yardstick): data and noise on the
    device, fused Adam, one D call on cat(real, fake), logits with BCE-with-logits, no D
    weight gradients in the G step, no ``.item()``."""
    import torch.nn.functional as F

    G = nn.Sequential(nn.Linear(100, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid()).to(device)
    D = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 1)).to(device)
    opt_g = torch.optim.Adam(G.parameters(), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), fused=True)
    X = images.to(device).view(-1, 784)
    target = torch.cat([torch.ones(batch, 1), torch.zeros(batch, 1)]).to(device)

    def one() -> None:
        x = X[torch.randint(0, X.shape[0], (batch,), device=device)].float().div_(255)
        with torch.no_grad():
            fake = G(torch.empty(batch, 100, device=device).uniform_(-1, 1))
        d_loss = F.binary_cross_entropy_with_logits(D(torch.cat([x, fake])), target)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        D.requires_grad_(False)
        g_loss = F.softplus(-D(G(torch.empty(batch, 100, device=device).uniform_(-1, 1)))).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)

    return warmed(one)


def dcgan_reference_loop(cfg, data, device: torch.device) -> Step:
    """The PyTorch DCGAN tutorial's loop on ganforge's DCGAN models: DataLoader over float
    images in [-1, 1], noise drawn on the host, BCE on logits, Adam with the preset's rates."""
    from ganforge.models import build_models

    torch.manual_seed(cfg.seed)
    G, D = (m.to(device) for m in build_models(cfg, data.shape, 0))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=tuple(cfg.g_betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=tuple(cfg.d_betas))
    batches = tutorial_batches(data.images.float().div(127.5).sub(1), cfg.batch_size)
    bce = nn.BCEWithLogitsLoss()

    def noise() -> torch.Tensor:
        return torch.randn(cfg.batch_size, cfg.z_dim).to(device)

    def one() -> None:
        x = next(batches).to(device)
        tutorial_step(G, D, opt_g, opt_d, bce, x, noise)

    return warmed(one)


def trainer_stepper(cfg, data, device: torch.device) -> tuple[Step, str]:
    """ganforge's Trainer as train() runs it: warm-up, CUDA-graph capture where it applies,
    statistics read every ``log_every`` iterations."""
    trainer = Trainer(cfg, data, device)
    unroll = graph_unroll_for(cfg)  # as train() chooses it
    while trainer.step_count < unroll:
        trainer.step()
    note = trainer.setup_cuda_graph(unroll) if trainer.wants_graph() else "off"

    def step() -> int:
        n = trainer.step()
        if trainer.step_count % cfg.log_every == 0:  # what train() does
            trainer.read_stats()
        return n

    return warmed(step), f"cuda graph: {note}"


def sweep_stepper(cfg, data, device: torch.device, runs: int) -> tuple[Step, str]:
    """A sweep of ``runs`` GANs as ``ganforge sweep`` runs it; counts GAN-iterations."""
    from ganforge.sweep import expand_runs

    trainer = Trainer(expand_runs(cfg, runs, {}), data, device)
    unroll = graph_unroll_for(cfg)
    while trainer.step_count < unroll:
        trainer.step()
    note = trainer.setup_cuda_graph(unroll) if device.type == "cuda" else "off"

    def step() -> int:
        n = trainer.step()
        if trainer.step_count % cfg.log_every == 0:
            trainer.read_stats()
        return n * runs

    return warmed(step, calls=10), f"cuda graph: {note}"


def profile_path(trainer, device: torch.device, title: str, iters: int = 100) -> None:
    """Kernels per iteration of a path and their total time (what bounds it/s)."""
    from torch.profiler import ProfilerActivity, profile

    print(f"profile of {title}:", file=sys.stderr)
    for _ in range(GRAPH_WARMUP):
        trainer.step()
    if device.type == "cuda":
        trainer.setup_cuda_graph()
    for _ in range(20):
        trainer.step()
    sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(iters):
            trainer.step()
        sync(device)
    events = prof.key_averages()
    if device.type == "cuda":
        kernels = [e for e in events if e.device_type.name == "CUDA"]
        busy = sum(e.self_device_time_total for e in kernels)
        count = sum(e.count for e in kernels)
        print(f"profile: {count / iters:.1f} GPU kernels/iteration, GPU busy "
              f"{busy / iters:.1f} us/iteration", file=sys.stderr)
        for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:25]:
            print(f"  {e.count / iters:5.1f}/it {e.self_device_time_total / iters:7.2f} us/it  "
                  f"{e.key[:90]}", file=sys.stderr)
    else:
        print(events.table(sort_by="self_cpu_time_total", row_limit=20), file=sys.stderr)


def breakdown(cfg, data, device: torch.device, iters: int = 500) -> None:
    """Where the default CPU iteration's time goes: wall time of each part, per iteration."""
    from collections import Counter

    trainer = Trainer(cfg, data, device)
    if trainer.by_hand is None:
        print("breakdown: the default path here is not the hand-derived one", file=sys.stderr)
        return
    spent: Counter[str] = Counter()

    def wrap(obj, name: str, label: str) -> None:
        f = getattr(obj, name)

        def timed_call(*args, **kwargs):
            t = time.perf_counter()
            out = f(*args, **kwargs)
            spent[label] += time.perf_counter() - t
            return out

        setattr(obj, name, timed_call)

    hand = trainer.by_hand
    for obj, name, label in ((trainer.batches, "next_with_labels", "data"),
                             (trainer, "prior", "noise"),
                             (hand.g_chain, "forward", "forward passes"),
                             (hand.d_chain, "forward", "forward passes"),
                             (hand.g_chain, "backward", "backward passes"),
                             (hand.d_chain, "backward", "backward passes"),
                             (trainer.objective, "d_loss_grad", "loss gradients"),
                             (trainer.objective, "g_loss_grad", "loss gradients"),
                             (trainer, "opt_d_step", "Adam"), (trainer, "opt_g_step", "Adam")):
        wrap(obj, name, label)
    trainer.priors[0] = trainer.prior  # the timed one: the iteration draws through priors
    for _ in range(30):
        trainer.step()
    spent.clear()
    t = time.perf_counter()
    for _ in range(iters):
        trainer.step()
    total = (time.perf_counter() - t) / iters
    print(f"breakdown of the default iteration: {1e3 * total:.2f} ms ({1 / total:.0f} it/s)")
    for label, seconds in spent.most_common():
        print(f"  {label:<16} {1e3 * seconds / iters:.2f} ms")
    print(f"  {'the rest':<16} {1e3 * (total - sum(spent.values()) / iters):.2f} ms")


_MM = (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm)
MATMULS = tuple(op.default for op in _MM) + tuple(op.out for op in _MM)  # out=: a sweep's


def matmuls_alone(step: Step) -> Step:
    """An iteration that does nothing but its own matmuls (recorded from one ``step()``,
    replayed on copies of their operands, same shapes and strides): the ceiling of any loop
    on this model, batch and machine."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in MATMULS:
                calls.append((func, [a.clone() if isinstance(a, torch.Tensor) else a
                                     for a in args],
                              {k: v.clone() if isinstance(v, torch.Tensor) else v
                               for k, v in (kwargs or {}).items()}))
            return func(*args, **(kwargs or {}))

    with Record():
        per_call = step()

    def one() -> int:
        for func, args, kwargs in calls:
            func(*args, **kwargs)
        return per_call

    return warmed(one)


def flops_per_iteration(cfg, data, device: torch.device) -> int:
    trainer = Trainer(dataclasses.replace(cfg, cuda_graphs="off", compile=False), data, device)
    trainer.step()
    with FlopCounterMode(display=False) as counter:
        trainer.iteration()
    return counter.get_total_flops()


def matmul_peak(device: torch.device) -> float:
    """FLOP/s of a large float32 torch.mm: the machine's practical matmul ceiling."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 5 if device.type == "cpu" else 20
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


@dataclass
class Row:
    path: str
    step: Step | None  # None: the option failed to build (see note)
    note: str = ""
    group: str = "mlp"  # ratios are to the first row of the row's group
    mem: str = ""
    calls: int = 1  # calls per timed chunk
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def build_rows(args, cfg, data, device: torch.device) -> list[Row]:
    rows: list[Row] = []
    cuda = device.type == "cuda"

    def add(path: str, build: Callable[[], Step | tuple[Step, str]], note: str = "",
            group: str = "mlp") -> None:
        before = torch.cuda.memory_allocated(device) if cuda else 0
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        try:
            built = build()
            step, extra = built if isinstance(built, tuple) else (built, "")
            row = Row(path, step, " ".join(v for v in (note, extra) if v), group)
        except Exception as e:  # an option that fails here is reported, not fatal
            row = Row(path, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0]}", group)
        if cuda:
            row.mem = f"{(torch.cuda.max_memory_allocated(device) - before) / 2**20:.0f} MiB"
        rows.append(row)
        print(f"  built {path}", file=sys.stderr, flush=True)

    B, images = cfg.batch_size, data.images
    add("(a) reference tutorial loop", lambda: reference_loop(images, device, B))
    add("(a) tight hand-written eager loop", lambda: tight_loop(images, device, B))
    add("(b) ganforge default", lambda: trainer_stepper(cfg, data, device))
    if not cuda:  # on a GPU the ceiling is kernel launches, not matmuls
        add("(e) its matmuls alone (ceiling)",
            lambda: matmuls_alone(trainer_stepper(cfg, data, device)[0]),
            "no other work: what any loop could reach")
    options = [("(c) eager (--cuda-graphs off)", {"cuda_graphs": "off"}, cuda),
               ("(c) autograd backward (backward=autograd)", {"backward": "autograd"}, not cuda),
               ("(c) hand-derived backward (backward=manual)", {"backward": "manual"}, cuda),
               ("(c) torch.compile (G and D)", {"compile": True}, True),
               ("(c) bf16 autocast", {"amp": "bf16"}, True),
               ("(c) tf32 matmuls", {"tf32": True}, cuda),
               ("(c) torch.compile + tf32", {"compile": True, "tf32": True}, cuda)]
    for path, change, wanted in options:  # on a CPU the default is eager and by hand
        if wanted:
            c = dataclasses.replace(cfg, **change)
            add(path, lambda c=c: trainer_stepper(c, data, device))
    for n in [int(v) for v in args.sweep.split(",") if v]:
        add(f"(d) sweep, {n} runs (aggregate)", lambda n=n: sweep_stepper(cfg, data, device, n))
        if not cuda and n > 1:
            add(f"(e) sweep {n}: its matmuls alone (ceiling)",
                lambda n=n: matmuls_alone(sweep_stepper(cfg, data, device, n)[0]), "aggregate")
        if cuda and n == 64:
            for name, change in (("compiled Adam", {"compile": True}),
                                 ("compiled Adam + tf32", {"compile": True, "tf32": True})):
                c = dataclasses.replace(cfg, **change)
                add(f"(d) sweep, 64 runs, {name}", lambda c=c: sweep_stepper(c, data, device, 64))
    if args.dcgan:
        dc = resolve("dcgan-mnist", overrides={"dataset": args.dataset, "data_dir": args.data_dir,
                                               "split": args.split, "device": str(device)})
        add("(f) DCGAN reference tutorial loop", lambda: dcgan_reference_loop(dc, data, device),
            group="dcgan")
        add("(f) DCGAN ganforge default", lambda: trainer_stepper(dc, data, device),
            group="dcgan")
        dc_options = [("bf16 autocast", {"amp": "bf16"})]
        if cuda:
            dc_options += [("bf16 + channels_last", {"amp": "bf16", "channels_last": True}),
                           ("tf32", {"tf32": True})]
        for name, change in dc_options:
            c = dataclasses.replace(dc, **change)
            add(f"(f) DCGAN {name}", lambda c=c: trainer_stepper(c, data, device), group="dcgan")
    return rows


def measure(rows: list[Row], device: torch.device, rounds: int, chunk_s: float) -> None:
    """``rounds`` rounds; in each, every row runs for about ``chunk_s`` seconds in turn. A
    shared machine's speed drifts by tens of percent within a minute, so each row's ratio to
    its reference is taken within a round, where both saw the same machine, and the medians
    over rounds are reported."""
    live = [r for r in rows if r.step is not None]
    for r in live:  # calls per chunk, from a short calibration
        sync(device)
        t, calls = time.perf_counter(), 0
        while calls < 2 or time.perf_counter() - t < chunk_s / 4:
            r.step()
            calls += 1
        sync(device)
        r.calls = max(1, round(calls * chunk_s / (time.perf_counter() - t)))
    for k in range(rounds):
        for r in live:
            sync(device)
            t = time.perf_counter()
            n = sum(r.step() for _ in range(r.calls))
            sync(device)
            r.rates.append(n / (time.perf_counter() - t))
        base = {}
        for r in live:
            base.setdefault(r.group, r.rates[-1])
            r.ratios.append(r.rates[-1] / base[r.group])
        print(f"  round {k + 1}/{rounds}: " + ", ".join(f"{r.rates[-1]:.0f}" for r in live),
              file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=11, help="timed rounds over all rows")
    ap.add_argument("--chunk", type=float, default=None,
                    help="seconds per row per round (default 0.25 on a CPU, 0.1 on a GPU)")
    ap.add_argument("--dataset", default="mnist-sample")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", default="train")
    ap.add_argument("--sweep", default="1,8,64", help="sweep sizes to time ('' to skip)")
    ap.add_argument("--dcgan", action=argparse.BooleanOptionalAction, default=True,
                    help="time the DCGAN rows (f)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--profile", action="store_true", help="profile the default path first")
    ap.add_argument("--breakdown", action="store_true",
                    help="only time the parts of the default CPU iteration")
    args = ap.parse_args()
    device = pick_device(args.device)
    chunk = args.chunk or (0.1 if device.type == "cuda" else 0.25)
    # float32 everywhere unless a row says bf16/tf32 (the Trainer sets tf32 from its config)
    cfg = resolve("mlp-mnist", overrides={"dataset": args.dataset, "data_dir": args.data_dir,
                                          "split": args.split, "device": str(device)})
    data = load_dataset(cfg)
    if args.breakdown:
        breakdown(cfg, data, device)
        return
    if args.profile:
        from ganforge.sweep import expand_runs

        profile_path(Trainer(cfg, data, device), device, "the default path")
        profile_path(Trainer(expand_runs(cfg, 64, {}), data, device), device, "sweep x64")
    flops = flops_per_iteration(cfg, data, device)
    peak = matmul_peak(device)
    print(f"device {device}, torch {torch.__version__}, {flops / 1e6:.0f} MFLOP/iteration, "
          f"matmul peak {peak / 1e9:.0f} GFLOP/s", file=sys.stderr)
    rows = build_rows(args, cfg, data, device)
    measure(rows, device, args.rounds, chunk)
    report(args, cfg, device, flops, peak, rows)


def report(args, cfg, device, flops, peak, rows: list[Row]) -> None:
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\nganforge speed benchmark: {device} ({what}), torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"seed MLP GAN, batch {cfg.batch_size}, {flops / 1e6:.0f} MFLOP/iteration, "
          f"float32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"medians over {args.rounds} rounds; x reference: median of the per-round ratios to "
          "the reference loop timed in the same round\n")
    gpu = device.type == "cuda"
    for group, title in (("mlp", ""), ("dcgan", "\nDCGAN on MNIST 28x28 (the dcgan-mnist "
                                                  "preset), batch 128\n")):
        members = [r for r in rows if r.group == group]
        if not members:
            continue
        if title:
            print(title)
        print("| path | it/s | x reference | % of matmul peak |" + (" GPU memory |" if gpu else "")
              + " note |")
        print("|---|---:|---:|---:|" + ("---|" if gpu else "") + "---|")
        for r in members:
            rate = f"{np.median(r.rates):.1f}" if r.rates else "-"
            ratio = f"{np.median(r.ratios):.2f}" if r.rates else "-"
            frac = f"{100 * np.median(r.rates) * flops / peak:.1f}%" \
                if r.rates and group == "mlp" else ""
            print(f"| {r.path} | {rate} | {ratio} | {frac} |" + (f" {r.mem} |" if gpu else "")
                  + f" {r.note} |")
    if device.type == "cpu":
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\npeak RSS of the whole benchmark process (all rows alive at once): {rss:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"flops": flops, "peak": peak,
             "rows": [{k: v for k, v in vars(r).items() if k != "step"} for r in rows]}))


if __name__ == "__main__":
    main()
