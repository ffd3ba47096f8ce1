"""Does the fast path train the same GAN as the eager path? Same seed, losses side by side.

    python benchmarks/equivalence.py --device cuda --steps 300

Compares ``--cuda-graphs on`` with ``--cuda-graphs off`` (on a GPU) and prints the largest
relative difference of the logged losses; on the CPU both rows are eager (a sanity check).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ganforge  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--preset", default="mlp-mnist")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--dataset", default=None, help="default: the preset's")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", default="train")
    args = ap.parse_args()
    runs = {}
    for mode in ("off", "on" if args.device != "cpu" else "off"):
        runs[mode] = ganforge.train(
            preset=args.preset, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
            steps=args.steps, log_every=10, sample_every=10**9, device=args.device,
            cuda_graphs=mode, out=tempfile.mkdtemp(), overwrite=True, progress=False)
    eager, fast = runs["off"].metrics, runs[list(runs)[-1]].metrics
    worst = 0.0
    print("step | d_loss eager | d_loss graph | g_loss eager | g_loss graph")
    for a, b in zip(eager, fast, strict=True):
        for k in ("d_loss", "g_loss"):
            worst = max(worst, abs(a[k] - b[k]) / max(abs(a[k]), 1e-8))
        if a["step"] % 50 == 0:
            print(f"{a['step']} | {a['d_loss']:.6f} | {b['d_loss']:.6f} | {a['g_loss']:.6f} "
                  f"| {b['g_loss']:.6f}")
    print(f"{args.preset}: largest relative difference of logged losses over {args.steps} "
          f"steps: {worst:.2e} ({runs[list(runs)[-1]].config.cuda_graphs} vs off)")


if __name__ == "__main__":
    main()
