"""Iterations per second of MLP presets on the CPU: hand-derived backward vs autograd's.

Both rows of a preset live in ONE process and take turns in short chunks, round after round;
each round's ratio is taken within the round, so the ratio holds on a machine whose speed
drifts (the median over rounds is printed).

    python benchmarks/backward.py                                   # grid-25-best, ring-8-best
    python benchmarks/backward.py --presets mlp-mnist-mbstd --set dataset=mnist-sample
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from ganforge.config import parse_set, resolve  # noqa: E402
from ganforge.data import load_dataset  # noqa: E402
from ganforge.errors import GanforgeError  # noqa: E402
from ganforge.train import Trainer  # noqa: E402


def timed(trainer: Trainer, iterations: int) -> float:
    t = time.perf_counter()
    for _ in range(iterations):
        trainer.step()
    trainer.read_stats()
    return iterations / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["grid-25-best", "ring-8-best"])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every preset, as `ganforge train --set` reads "
                         "them, e.g. dataset=mnist-sample")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--chunk", type=int, default=100, help="iterations per row per round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        over = {"device": "cpu", **parse_set(args.set)}
    except GanforgeError as e:
        raise SystemExit(f"backward.py: {e}") from None
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds of "
          f"{args.chunk} iterations per row")
    print("| preset | by hand (it/s) | autograd (it/s) | by hand / autograd |")
    print("|---|---:|---:|---:|")
    for preset in args.presets:
        trainers = {}
        for backward in ("manual", "autograd"):
            cfg = resolve(preset, overrides={**over, "backward": backward})
            trainers[backward] = Trainer(cfg, load_dataset(cfg), torch.device("cpu"))
            timed(trainers[backward], 20)  # warm-up: allocations, the first Adam steps
        rates: dict[str, list[float]] = {"manual": [], "autograd": []}
        for _ in range(args.rounds):
            for backward, trainer in trainers.items():
                rates[backward].append(timed(trainer, args.chunk))
        ratio = statistics.median(h / a for h, a in zip(rates["manual"], rates["autograd"],
                                                        strict=True))
        print(f"| {preset} | {statistics.median(rates['manual']):.0f} | "
              f"{statistics.median(rates['autograd']):.0f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
