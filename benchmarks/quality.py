"""Sample quality of ganforge's GANs, with the published figures beside them.

    python benchmarks/quality.py            # about 15 minutes on a 2-core CPU

1. The default preset (the classic MLP GAN on MNIST; offline: the 5,000-digit sample) trained
   once, evaluated with lenet-mnist features (FID, KID, precision, recall) at several
   iteration counts. Needs `ganforge classifier train --dataset mnist` first (done here if
   the classifier is missing).
2. ring-8 and grid-25: modes captured, high-quality share and KL to uniform, for the plain
   non-saturating GAN and with an R1 penalty, next to VEEGAN's Table 1 (Srivastava et al.,
   NeurIPS 2017), which used 2,500 samples and the same definitions.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ganforge  # noqa: E402
from ganforge.errors import GanforgeError  # noqa: E402
from ganforge.metrics import count_modes_2d  # noqa: E402

# VEEGAN (Srivastava et al. 2017), Table 1: modes captured / % high-quality samples.
PUBLISHED = {
    "ring-8": [("GAN", 1.0, 99.3), ("ALI", 2.8, 0.13), ("Unrolled GAN", 7.6, 35.6),
               ("VEEGAN", 8.0, 52.9)],
    "grid-25": [("GAN", 3.3, 0.5), ("ALI", 15.8, 1.6), ("Unrolled GAN", 23.6, 16.0),
                ("VEEGAN", 24.6, 40.0)],
}


def mnist_quality(steps: list[int], n: int) -> None:
    from ganforge.features.lenet import classifier_path, train_classifier

    if not classifier_path("mnist").is_file():
        print("training lenet-mnist first ...", file=sys.stderr)
        train_classifier("mnist", quiet=True)
    t = time.time()
    run = ganforge.train(steps=max(steps), eval_every=math.gcd(*steps), eval_n=n,
                         metrics=["fid", "kid", "precision", "recall"],
                         out=tempfile.mkdtemp(), overwrite=True, progress=False)
    rows = {r["step"]: r for r in run.metrics if "fid" in r}
    print(f"\n### Default preset (mlp-mnist on {run.config.dataset}), lenet-mnist features, "
          f"n = {n} ({time.time() - t:.0f} s)\n")
    print("| iterations | FID | KID | precision | recall |")
    print("|---:|---:|---:|---:|---:|")
    for s in steps:
        r = rows.get(s)
        if r:
            print(f"| {s} | {r['fid']:.1f} | {r['kid']:.2f} | {r['precision']:.3f} | "
                  f"{r['recall']:.3f} |")


def mode_tables(presets: list[str], samples: int) -> None:
    for preset in presets:
        print(f"\n### {preset}: {samples} samples, high quality = within 3 std of a centre\n")
        print("| model | modes (of {}) | strict modes | % high quality | KL to uniform | "
              "source |".format(8 if preset == "ring-8" else 25))
        print("|---|---:|---:|---:|---:|---|")
        for label, extra in (("GAN (non-saturating)", {"r1_gamma": 0.0}),
                             ("GAN + R1 (gamma 0.1), the preset", {}),
                             ("hinge + R1 (gamma 0.1)", {"objective": "hinge"})):
            t = time.time()
            run = ganforge.train(preset=preset, out=tempfile.mkdtemp(), overwrite=True,
                                 progress=False, sample_every=10**6, **extra)
            x = ganforge.load(run.dir).sample(samples, seed=0)
            m = count_modes_2d(x.numpy(), preset)
            print(f"| {label} | {m['modes']} | {m['modes_strict']} | "
                  f"{100 * m['high_quality']:.1f} | {m['kl']:.3f} | ganforge, "
                  f"{run.config.steps} it., {time.time() - t:.0f} s |", flush=True)
        for label, modes, hq in PUBLISHED[preset]:
            print(f"| {label} | {modes} | | {hq} | | VEEGAN Table 1 |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="2000,5000,10000,20000")
    ap.add_argument("--n", type=int, default=5000, help="samples per FID/KID/P/R evaluation")
    ap.add_argument("--toys", default="ring-8,grid-25")
    ap.add_argument("--samples", type=int, default=2500, help="samples per mode count")
    args = ap.parse_args()
    print(f"ganforge quality benchmark, {time.strftime('%Y-%m-%d')}")
    try:
        if args.steps:
            mnist_quality([int(s) for s in args.steps.split(",")], args.n)
        if args.toys:
            mode_tables(args.toys.split(","), args.samples)
    except GanforgeError as e:
        raise SystemExit(f"quality: {e}") from None


if __name__ == "__main__":
    main()
