"""Mode collapse on ring-8 and grid-25, each row over several seeds, beside the papers.

    python benchmarks/modes.py                       # every row, 10 seeds, presets' steps
    python benchmarks/modes.py --rows ring-8-best grid-25-best --seeds 10
    python benchmarks/modes.py --rows pacgan2-ring-8 --seeds 3 --steps 3000
    python benchmarks/modes.py --rows grid-25-best --set mbstd_group=16   # a variant of a row
    python benchmarks/modes.py --rows grid-25-best --seed-list 2 7 8 9 --set d_hidden=256

Each row trains a preset once per seed (0 .. seeds-1, or those of ``--seed-list``), draws
2,500 samples (PacGAN and VEEGAN's budget) and prints modes captured, % high-quality samples
(within 3 std of the nearest centre) and reverse KL (KL of the high-quality samples' mode
histogram to uniform, PacGAN's "KL") as mean ± standard error over the seeds, with PacGAN's
Table 1 and VEEGAN's Table 1 beside it, plus how many seeds caught every mode.

A row whose preset stacks (plain MLP GANs: ring-8, grid-25) trains its seeds as ONE sweep,
the seeds stacked along the Trainer's run axis (run k equals the single run with seed k).
Rows that do not stack (PacGAN's packing and BatchNorm; the sweep says why) train their seeds
one after another through ``ganforge.train``; ``--jobs`` runs those in parallel processes on
machines with cores to spare.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import ganforge  # noqa: E402
from ganforge.config import parse_set, resolve  # noqa: E402
from ganforge.errors import GanforgeError, NotStackable  # noqa: E402
from ganforge.metrics import count_modes_2d  # noqa: E402
from ganforge.sweep import sweep  # noqa: E402

SAMPLES = 2500
# PacGAN (Lin et al. 2018), Table 1 as quoted in issue 15: modes / % HQ / reverse KL.
PACGAN = {
    ("ring-8", 1): (6.3, 98.2, 0.45), ("ring-8", 2): (7.9, 95.6, 0.07),
    ("ring-8", 4): (7.8, 95.9, 0.07),
    ("grid-25", 1): (17.3, 94.8, 0.70), ("grid-25", 2): (23.8, 91.3, 0.13),
    ("grid-25", 4): (24.8, 93.6, 0.04),
}
# VEEGAN (Srivastava et al. 2017), Table 1 (modes / % HQ; no KL for the 2-D sets), as in
# benchmarks/quality.py.
VEEGAN = {
    "ring-8": [("GAN", 1.0, 99.3), ("ALI", 2.8, 0.13), ("Unrolled GAN", 7.6, 35.6),
               ("VEEGAN", 8.0, 52.9)],
    "grid-25": [("GAN", 3.3, 0.5), ("ALI", 15.8, 1.6), ("Unrolled GAN", 23.6, 16.0),
                ("VEEGAN", 24.6, 40.0)],
}
ROWS = [f"pacgan{m}-{d}" for d in ("ring-8", "grid-25") for m in ("", "2", "3", "4")] + \
    ["ring-8", "grid-25", "ring-8-best", "grid-25-best"]


def one_seed(preset: str, seed: int, steps: int | None,
             overrides: dict[str, Any] | None = None) -> dict[str, float]:
    """Train ``preset`` with ``seed`` and count the modes of 2,500 samples."""
    torch.set_num_threads(1)
    t = time.time()
    kw = {**(overrides or {}), **({} if steps is None else {"steps": steps})}
    with tempfile.TemporaryDirectory() as out:
        run = ganforge.train(preset=preset, seed=seed, out=out, overwrite=True, progress=False,
                             sample_every=10**9, ckpt_every=10**9, **kw)
        x = ganforge.load(run.dir).sample(SAMPLES, seed=10_000 + seed)
        m = count_modes_2d(x.cpu().numpy(), run.config.dataset)
    r = {"modes": m["modes"], "all": m["modes"] == m["n_modes"],
         "hq": 100 * m["high_quality"], "kl": m["kl"], "s": time.time() - t,
         "n_modes": m["n_modes"], "steps": run.config.steps}
    # each seed as it lands (stderr), so that a long row interrupted still leaves its seeds
    print(f"{preset} seed {seed}: modes {r['modes']} HQ {r['hq']:.1f} KL {r['kl']:.3f} "
          f"({r['s']:.0f} s)", file=sys.stderr, flush=True)
    return r


def as_one_sweep(preset: str, seeds: list[int], steps: int | None,
                 overrides: dict[str, Any] | None = None) -> list[dict] | None:
    """Every seed of the row in one sweep; None when the preset does not stack."""
    base = resolve(preset, overrides={**(overrides or {}),
                                      **({} if steps is None else {"steps": steps})})
    base = dataclasses.replace(base, sample_every=10**9, ckpt_every=10**9, tensorboard="off")
    t = time.time()
    with tempfile.TemporaryDirectory() as out:
        try:
            runs = sweep(base, vary={"seed": seeds}, out=out, overwrite=True, progress=False)
        except NotStackable as e:
            print(f"{preset}: {e}; its seeds train one after another", file=sys.stderr)
            return None
        per_seed = (time.time() - t) / len(seeds)
        rs = []
        for run in runs:
            seed = run.config.seed
            x = ganforge.load(run.dir).sample(SAMPLES, seed=10_000 + seed)
            m = count_modes_2d(x.cpu().numpy(), run.config.dataset)
            rs.append({"modes": m["modes"], "all": m["modes"] == m["n_modes"],
                       "hq": 100 * m["high_quality"], "kl": m["kl"], "s": per_seed,
                       "n_modes": m["n_modes"], "steps": run.config.steps})
            print(f"{preset} seed {seed}: modes {m['modes']} HQ {rs[-1]['hq']:.1f} KL "
                  f"{m['kl']:.3f} (one sweep)", file=sys.stderr, flush=True)
    return rs


def mean_se(values: list[float]) -> str:
    if any(math.isinf(v) for v in values):
        return "inf"
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {se:.2f}" if mean < 1 else f"{mean:.1f} ± {se:.1f}"


def paper(preset: str) -> str:
    data = "ring-8" if "ring" in preset else "grid-25"
    if not preset.startswith("pacgan"):
        return ""
    m = preset[len("pacgan"):].split("-")[0] or "1"
    row = PACGAN.get((data, int(m)))
    return "not in issue 15's quote" if row is None else " / ".join(map(str, row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", nargs="+", default=ROWS, help="presets to run")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed-list", type=int, nargs="+", default=None, metavar="SEED",
                    help="train these seeds instead of 0 .. seeds-1 (a screen on chosen seeds)")
    ap.add_argument("--steps", type=int, default=None, help="override the presets' steps")
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every row, as `ganforge train --set` reads "
                         "them, e.g. mbstd_group=16")
    args = ap.parse_args()
    try:
        overrides = parse_set(args.set)
    except GanforgeError as e:
        raise SystemExit(f"modes.py: {e}") from None
    if overrides:
        print(f"every row with {overrides}")
    seeds = args.seed_list or list(range(args.seeds))
    if args.seed_list:
        print(f"seeds {seeds}")

    print("| preset | iterations | seeds | modes | all modes | % HQ | reverse KL | "
          "PacGAN Table 1 (modes / % HQ / KL) | s per seed |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for preset in args.rows:
        rs = as_one_sweep(preset, seeds, args.steps, overrides)
        if rs is None:
            with ProcessPoolExecutor(args.jobs) as pool:
                rs = list(pool.map(one_seed, [preset] * len(seeds), seeds,
                                   [args.steps] * len(seeds), [overrides] * len(seeds)))
        print(f"| {preset} | {rs[0]['steps']} | {len(rs)} | "
              f"{mean_se([r['modes'] for r in rs])} / {rs[0]['n_modes']} | "
              f"{sum(r['all'] for r in rs)}/{len(rs)} | {mean_se([r['hq'] for r in rs])} | "
              f"{mean_se([r['kl'] for r in rs])} | {paper(preset)} | "
              f"{statistics.fmean(r['s'] for r in rs):.0f} |", flush=True)
    for data, rows in VEEGAN.items():
        print(f"\nVEEGAN Table 1, {data} (modes / % HQ): " +
              "; ".join(f"{name} {m} / {hq}" for name, m, hq in rows))


if __name__ == "__main__":
    main()
