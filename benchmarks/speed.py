"""Training speed of the seed MLP GAN: a tutorial-style reference loop vs ganforge's paths.

Everything runs in ONE process on the same model, batch and device, so the ratios are
comparable even on a noisy machine. One iteration = k_d D steps + k_g G steps (here 1 + 1).

    python benchmarks/speed.py                       # CPU (or the GPU when there is one)
    python benchmarks/speed.py --device cuda --iters 3000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import sys
import time
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


def timed(one, iters: int, device: torch.device) -> float:
    """Iterations/s of ``one()`` after 20 warm-up calls."""
    for _ in range(20):
        one()
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        one()
    sync(device)
    return iters / (time.perf_counter() - t)


def reference_loop(images: torch.Tensor, device: torch.device, iters: int, batch: int) -> float:
    """The loop as tutorials write it: DataLoader over float tensors, numpy noise, separate D
    calls on real and fake, BCE on probabilities, default Adam, ``.item()`` every step."""
    G = nn.Sequential(nn.Linear(100, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid()).to(device)
    D = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 1), nn.Sigmoid()).to(device)
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    bce = nn.BCELoss()
    loader = DataLoader(TensorDataset(images.float().div(255).view(-1, 784)), batch_size=batch,
                        shuffle=True, drop_last=True)
    ones, zeros = torch.ones(batch, 1, device=device), torch.zeros(batch, 1, device=device)
    d_hist, g_hist = [], []

    def batches():
        while True:
            yield from loader

    it = batches()

    def one() -> None:
        (x,) = next(it)
        x = x.to(device)
        z = torch.from_numpy(np.random.uniform(-1, 1, (batch, 100))).float().to(device)
        d_loss = bce(D(x), ones) + bce(D(G(z).detach()), zeros)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        z = torch.from_numpy(np.random.uniform(-1, 1, (batch, 100))).float().to(device)
        g_loss = bce(D(G(z)), ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        d_hist.append(d_loss.item())
        g_hist.append(g_loss.item())

    return timed(one, iters, device)


def tight_loop(images: torch.Tensor, device: torch.device, iters: int, batch: int) -> float:
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

    return timed(one, iters, device)


def trainer_rate(cfg, data, device: torch.device, iters: int) -> tuple[float, str]:
    trainer = Trainer(cfg, data, device)
    unroll = graph_unroll_for(cfg)  # as train() chooses it
    while trainer.step_count < unroll:
        trainer.step()
    note = trainer.setup_cuda_graph(unroll) if trainer.wants_graph() else "off"
    for _ in range(20):
        trainer.step()
    sync(device)
    start, t = trainer.step_count, time.perf_counter()
    while trainer.step_count - start < iters:
        trainer.step()
        if trainer.step_count % cfg.log_every == 0:  # what train() does
            trainer.read_stats()
    sync(device)
    return (trainer.step_count - start) / (time.perf_counter() - t), note


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


def memory(device: torch.device) -> str:
    if device.type == "cuda":
        mb = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return f"{mb:.0f} MiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB RSS*"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations per row")
    ap.add_argument("--dataset", default="mnist-sample")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", default="train")
    ap.add_argument("--sweep", default="1,8,64", help="sweep sizes to time ('' to skip)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--profile", action="store_true", help="profile the default path first")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time the rows this many times, interleaved, and report medians (a "
                    "shared machine's speed drifts by tens of percent within a minute)")
    args = ap.parse_args()
    device = pick_device(args.device)
    iters = args.iters or (3000 if device.type == "cuda" else 1000)
    # float32 everywhere unless a row says bf16/tf32 (the Trainer sets tf32 from its config)
    cfg = resolve("mlp-mnist", overrides={"dataset": args.dataset, "data_dir": args.data_dir,
                                          "split": args.split, "device": str(device)})
    data = load_dataset(cfg)
    images = data.images
    if args.profile:
        from ganforge.sweep import SweepTrainer, expand_runs

        profile_path(Trainer(cfg, data, device), device, "the default path")
        profile_path(SweepTrainer(expand_runs(cfg, 64, {}), data, device), device, "sweep x64")

    flops = flops_per_iteration(cfg, data, device)
    peak = matmul_peak(device)
    rows: dict[str, dict] = {}

    def add(name: str, rate: float, note: str = "") -> None:
        row = rows.setdefault(name, {"path": name, "rates": [], "note": note})
        row["rates"].append(rate)
        row["mem"] = memory(device)
        print(f"  {name:<34} {rate:>10.0f} it/s  {note}", file=sys.stderr, flush=True)

    print(f"device {device}, torch {torch.__version__}, {flops / 1e6:.0f} MFLOP/iteration, "
          f"matmul peak {peak / 1e9:.0f} GFLOP/s", file=sys.stderr)
    memory(device)
    for _ in range(args.repeat):
        time_rows(args, cfg, data, images, device, iters, add)
    rows = list(rows.values())
    for r in rows:
        r["it_s"] = float(np.median(r["rates"]))
    report(args, cfg, device, flops, peak, rows)


def time_rows(args, cfg, data, images, device, iters, add) -> None:
    """One pass over every row, in order."""
    add("(a) reference tutorial loop", reference_loop(images, device, iters, cfg.batch_size))
    add("(a) tight hand-written eager loop", tight_loop(images, device, iters, cfg.batch_size))
    rate, note = trainer_rate(cfg, data, device, iters)
    add("(b) ganforge default", rate, f"cuda graph: {note}")
    variants = [("(c) eager (--cuda-graphs off)", {"cuda_graphs": "off"}),
                ("(c) torch.compile (G and D)", {"compile": True}),
                ("(c) bf16 autocast", {"amp": "bf16"}),
                ("(c) tf32 matmuls", {"tf32": True}),
                ("(c) torch.compile + tf32", {"compile": True, "tf32": True})]
    for name, change in variants:
        if device.type == "cpu" and ("cuda-graphs" in name or "tf32" in name):
            continue  # on the CPU the default path is already eager, and tf32 is GPU-only
        try:
            rate, note = trainer_rate(dataclasses.replace(cfg, **change), data, device, iters)
            add(name, rate, f"cuda graph: {note}")
        except Exception as e:  # an option that fails here is reported, not fatal
            add(name, float("nan"), f"failed: {type(e).__name__}: {str(e).splitlines()[0]}")
    if args.sweep:
        from ganforge.sweep import sweep_rate

        sizes = [int(v) for v in args.sweep.split(",")]
        for n in sizes:
            rate, note = sweep_rate(cfg, data, device, n, max(iters // max(n // 8, 1), 200))
            add(f"(d) sweep, {n} runs (aggregate)", rate, note)
        if device.type == "cuda":
            n = max(sizes)
            for name, change in (("compiled Adam", {"compile": True}),
                                 ("compiled Adam + tf32", {"compile": True, "tf32": True})):
                rate, note = sweep_rate(dataclasses.replace(cfg, **change), data, device, n,
                                        max(iters // max(n // 8, 1), 200))
                add(f"(d) sweep, {n} runs, {name}", rate, note)



def report(args, cfg, device, flops, peak, rows) -> None:
    base = rows[0]["it_s"]
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\nganforge speed benchmark: {device} ({what}), torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"seed MLP GAN, batch {cfg.batch_size}, {flops / 1e6:.0f} MFLOP/iteration, "
          f"float32 matmul peak {peak / 1e9:.0f} GFLOP/s\n")
    if args.repeat > 1:
        print(f"medians of {args.repeat} interleaved passes\n")
    print("| path | it/s | x reference | % of matmul peak | peak memory | note |")
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        frac = r["it_s"] * flops / peak
        print(f"| {r['path']} | {r['it_s']:.0f} | {r['it_s'] / base:.2f} | {100 * frac:.1f}% "
              f"| {r['mem']} | {r['note']} |")
    if device.type == "cpu":
        print("\n*RSS: the process's peak so far (rows run in order in one process)")
    if args.json:
        Path(args.json).write_text(json.dumps({"flops": flops, "peak": peak, "rows": rows}))


if __name__ == "__main__":
    main()
