"""This tree's trainer against an earlier one, in ONE process, rows interleaved round by round:
the tutorial reference loop, the default path (R = 1) and a sweep of 8, each as a ratio to the
reference timed in the same round (issue 14's no-regression check on a noisy machine).

    git worktree add /tmp/old-tree e8af242
    mkdir -p /tmp/oldpkg && cp -r /tmp/old-tree/src/ganforge /tmp/oldpkg/ganforge_old
    cd /tmp/oldpkg && sed -i 's/from ganforge\\./from ganforge_old./; \\
        s/^\\(\\s*\\)import ganforge$/\\1import ganforge_old as ganforge/' \\
        $(grep -rl ganforge ganforge_old)
    python benchmarks/speed_ab.py --old /tmp/oldpkg --rounds 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import speed  # noqa: E402  (the reference loop)

from ganforge.config import resolve  # noqa: E402
from ganforge.data import load_dataset  # noqa: E402
from ganforge.sweep import expand_runs  # noqa: E402
from ganforge.train import Trainer  # noqa: E402


def stepper(trainer, runs: int) -> Callable[[], int]:
    def one() -> int:
        trainer.step()
        if trainer.step_count % 100 == 0:  # a log row, as a run reads them
            trainer.read_stats()
        return runs
    return speed.warmed(one)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="folder holding the earlier tree as ganforge_old")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--chunk", type=float, default=0.25, help="seconds per row per round")
    args = ap.parse_args()
    sys.path.insert(0, args.old)
    import ganforge_old.config as old_config
    import ganforge_old.data as old_data
    import ganforge_old.sweep as old_sweep
    from ganforge_old.train import Trainer as OldTrainer

    dev = torch.device("cpu")
    over = {"dataset": "mnist-sample", "device": "cpu"}
    cfg, ocfg = resolve("mlp-mnist", overrides=over), old_config.resolve("mlp-mnist",
                                                                         overrides=over)
    data, odata = load_dataset(cfg), old_data.load_dataset(ocfg)
    rows = {"reference": speed.reference_loop(data.images, dev, cfg.batch_size),
            "new default": stepper(Trainer(cfg, data, dev), 1),
            "old default": stepper(OldTrainer(ocfg, odata, dev), 1),
            "new sweep 8": stepper(Trainer(expand_runs(cfg, 8, {}), data, dev), 8),
            "old sweep 8": stepper(old_sweep.SweepTrainer(old_sweep.expand_runs(ocfg, 8, {}),
                                                          odata, dev), 8)}
    ratios: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        rate = {}
        for name, step in rows.items():
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.chunk:
                n += step()
            rate[name] = n / (time.perf_counter() - t0)
        for k in rows:
            ratios[k].append(rate[k] / rate["reference"])
    for k, v in ratios.items():
        print(f"{k:12s} x reference: median {statistics.median(v):.3f}")
    for what in ("default", "sweep 8"):
        new, old = ratios[f"new {what}"], ratios[f"old {what}"]
        print(f"new/old {what}: median of per-round ratios "
              f"{statistics.median(a / b for a, b in zip(new, old, strict=True)):.3f}")


if __name__ == "__main__":
    main()
