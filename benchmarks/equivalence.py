"""Do the fast paths train the same GAN as the plain eager path? Same seed, losses side by side.

    python benchmarks/equivalence.py --device cuda --steps 300
    python benchmarks/equivalence.py --device cpu --steps 300

Compares ``--cuda-graphs on`` with ``--cuda-graphs off`` (on a GPU) and the hand-derived
backward passes (``backward=manual``, the CPU default for MLPs) with autograd's, and prints
the largest relative difference of the logged losses for each pair.
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
    plain = {"cuda_graphs": "off", "backward": "autograd"}
    pairs = [("backward=manual", {**plain, "backward": "manual"})]
    if args.device != "cpu":
        pairs.insert(0, ("cuda_graphs=on", {**plain, "cuda_graphs": "on"}))

    def run(**change):
        return ganforge.train(
            preset=args.preset, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
            steps=args.steps, log_every=10, sample_every=10**9, device=args.device,
            out=tempfile.mkdtemp(), overwrite=True, progress=False, **change).metrics

    eager = [r for r in run(**plain) if "d_loss" in r]
    for name, change in pairs:
        fast = [r for r in run(**change) if "d_loss" in r]
        worst = 0.0
        print(f"step | d_loss plain | d_loss {name} | g_loss plain | g_loss {name}")
        for a, b in zip(eager, fast, strict=True):
            for k in ("d_loss", "g_loss"):
                worst = max(worst, abs(a[k] - b[k]) / max(abs(a[k]), 1e-8))
            if a["step"] % 50 == 0:
                print(f"{a['step']} | {a['d_loss']:.6f} | {b['d_loss']:.6f} | {a['g_loss']:.6f} "
                      f"| {b['g_loss']:.6f}")
        print(f"{args.preset}: largest relative difference of logged losses over {args.steps} "
              f"steps: {worst:.2e} ({name} vs eager autograd)\n")


if __name__ == "__main__":
    main()
