"""Does memory grow on a long run? Trains in a subprocess and samples its RSS as it goes.

    python benchmarks/soak.py                        # toy-1d, 50,000 iterations
    python benchmarks/soak.py --preset mlp-mnist --steps 20000 --set dataset=mnist-sample

Starts ``python -m ganforge train`` with logging, sample grids and checkpoints at realistic
intervals (so every periodic path runs many times), reads VmRSS from /proc/PID/status every
--interval seconds and the iteration from the tail of metrics.jsonl, then prints RSS at 10%,
25%, 50%, 75% and 100% of the run, the growth from 25% (after warm-up) to the end, the peak
and the speed. Exit code 0 unless the training itself fails. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
POINTS = (0.10, 0.25, 0.50, 0.75, 1.00)
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a live process, or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def last_step(metrics: Path) -> int:
    """The iteration of the last complete row of metrics.jsonl (0 before the first)."""
    try:
        with open(metrics, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().split(b"\n")[:-1]  # the part after the last newline may be torn
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0


def window(samples: list[tuple[float, int, int]], lo: int, hi: int):
    """The samples with ``lo <= iteration < hi``."""
    return [s for s in samples if lo <= s[1] < hi]


def median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def slope_per_10k(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (iteration, MiB) points, in MiB per 10,000 iterations."""
    n = len(points)
    if n < 2:
        return 0.0
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    cov = sum((x - mx) * (y - my) for x, y in points)
    return 0.0 if var == 0 else 1e4 * cov / var


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="toy-1d")
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--sample-every", type=int, default=5000)
    ap.add_argument("--ckpt-every", type=int, default=1000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="passed on to ganforge train (repeatable)")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the run folder (printed)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ganforge-soak-"))
    run, log = tmp / "run", tmp / "train.log"
    cmd = [sys.executable, "-m", "ganforge", "train", "--preset", args.preset,
           "--steps", str(args.steps), "--log-every", str(args.log_every),
           "--sample-every", str(args.sample_every), "--ckpt-every", str(args.ckpt_every),
           "--device", args.device, "--out", str(run)]
    for item in args.sets:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    print("$ " + " ".join(cmd[1:]).replace(str(tmp), "TMP"), flush=True)

    samples: list[tuple[float, int, int]] = []  # (seconds since start, iteration, RSS bytes)
    peak = 0
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                rss = rss_bytes(proc.pid)
                if rss is not None:
                    peak = max(peak, rss)
                    samples.append((time.perf_counter() - t0, last_step(run / "metrics.jsonl"),
                                    rss))
                time.sleep(args.interval)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"soak: training failed (exit code {proc.returncode}); its output ends:",
              file=sys.stderr)
        print("\n".join(log.read_text().splitlines()[-20:]), file=sys.stderr)
        return proc.returncode or 1

    # RSS while the loop runs: each figure is the lowest sample within a window of the run,
    # the resident floor, which a leak raises and a transient spike (a sample grid's work, a
    # checkpoint being written) does not; the window's highest sample is shown beside it
    steps, half = args.steps, args.steps // 40  # windows of 5% of the run
    loop = window(samples, 1, steps)  # after the first log row, before the final saves
    rows = {}
    for p in POINTS:
        lo, hi = max(1, int(p * steps) - half), min(steps, int(p * steps) + half)
        w = window(loop, lo if p < 1 else steps - 2 * half, hi)
        if w:
            rows[p] = (median([t for t, _, _ in w]), median([i for _, i, _ in w]),
                       min(r for _, _, r in w) / MIB, max(r for _, _, r in w) / MIB)
    if 0.25 not in rows or 1.00 not in rows:
        print(f"soak: the run ended too fast to sample ({len(samples)} samples in {wall:.1f} s); "
              "use more --steps or a smaller --interval", file=sys.stderr)
        return 0
    print(f"\n{args.preset}, {steps} iterations, device {args.device}; log/sample/ckpt every "
          f"{args.log_every}/{args.sample_every}/{args.ckpt_every}; {len(samples)} RSS samples "
          f"every {args.interval} s; each row: the samples within +-2.5% of the run\n")
    print("| point | iteration | time (s) | RSS floor (MiB) | RSS max (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for p, (t, i, r, top) in rows.items():
        print(f"| {p:.0%} | {i:.0f} | {t:.1f} | {r:.1f} | {top:.1f} |")
    last = samples[-1]
    print(f"| exit (final checkpoint, GIF, plots) | {last[1]} | {last[0]:.1f} | "
          f"{last[2] / MIB:.1f} | |")
    r25, r100 = rows[0.25][2], rows[1.00][2]
    growth = r100 - r25
    its = (loop[-1][1] - loop[0][1]) / max(loop[-1][0] - loop[0][0], 1e-9)
    floors = [(lo + half, min(r for _, _, r in w) / MIB)
               for lo in range(int(0.25 * steps) - half, steps, 2 * half)
               if (w := window(loop, lo, lo + 2 * half))]
    slope = slope_per_10k(floors)
    print(f"\npeak RSS {peak / MIB:.1f} MiB (any sample, final pictures included); "
          f"{its:.0f} it/s while training; wall {wall:.1f} s")
    print(f"trend from 25% on: {slope:+.2f} MiB per 10,000 iterations (least squares over "
          f"{len(floors)} window floors)")
    print(f"growth after warm-up: {growth:+.1f} MiB ({100 * growth / r25:+.1f}%) from 25% to "
          "100% of the run")
    result = {
        "preset": args.preset, "steps": steps, "device": args.device,
        "log_every": args.log_every, "sample_every": args.sample_every,
        "ckpt_every": args.ckpt_every, "sets": args.sets, "interval_s": args.interval,
        "rss_mib": {f"{p:.0%}": {"iteration": round(i), "time_s": round(t, 2),
                                 "floor": round(r, 2), "max": round(top, 2)}
                    for p, (t, i, r, top) in rows.items()},
        "exit_rss_mib": round(last[2] / MIB, 2),
        "growth_mib": round(growth, 2), "growth_pct": round(100 * growth / r25, 2),
        "slope_mib_per_10k": round(slope, 3), "peak_mib": round(peak / MIB, 2),
        "it_s": round(its, 1), "wall_s": round(wall, 1),
        "samples": [[round(t, 2), i, r] for t, i, r in samples],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.keep:
        print(f"run folder: {run}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
