"""Is run k of a sweep the single run with its config? Prints the largest loss difference.

    python benchmarks/sweep_check.py --device cuda --runs 8 --steps 300
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ganforge  # noqa: E402
from ganforge.config import resolve  # noqa: E402
from ganforge.sweep import sweep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--dataset", default="mnist-sample")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", default="train")
    args = ap.parse_args()
    base = resolve("mlp-mnist", overrides={
        "dataset": args.dataset, "data_dir": args.data_dir, "split": args.split,
        "steps": args.steps, "log_every": 10, "sample_every": 10**9, "device": args.device})
    runs = sweep(base, args.runs, {"lr": [1e-3, 2e-4]}, out=tempfile.mkdtemp(), progress=False)
    for k in (0, args.runs - 1):
        single = ganforge.train(runs[k].config, out=tempfile.mkdtemp(), overwrite=True,
                                progress=False)
        rows = [[r for r in run.metrics if "d_loss" in r] for run in (runs[k], single)]
        worst = max(abs(a[key] - b[key]) / max(abs(b[key]), 1e-8)
                    for a, b in zip(*rows, strict=True)
                    for key in ("d_loss", "g_loss"))
        print(f"run {k} (seed {runs[k].config.seed}, lr {runs[k].config.g_lr}): largest relative "
              f"loss difference to the single run over {args.steps} steps: {worst:.2e}")


if __name__ == "__main__":
    main()
