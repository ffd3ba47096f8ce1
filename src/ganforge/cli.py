"""The ``ganforge`` command: train, sample, presets, datasets."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import GanforgeError

# flag name -> config field, for the common train options
TRAIN_FLAGS = {
    "preset": str, "dataset": str, "data_dir": str, "steps": int, "batch_size": int,
    "out": str, "seed": int, "device": str, "sample_every": int, "ckpt_every": int,
    "log_every": int, "cuda_graphs": str, "eval_every": int, "metrics": str, "keep_best": str,
}


def _add_train(sub: argparse._SubParsersAction, name: str = "train") -> argparse.ArgumentParser:
    if name == "train":
        p = sub.add_parser("train", help="train a GAN (default: the classic MLP GAN on MNIST)",
                           description="Train a GAN. Defaults come from the preset; a --config "
                           "file overrides them, and flags override the file.")
    else:
        p = sub.add_parser("sweep", help="train many independent GANs at once (vectorised)",
                           description="Train --runs GANs of one MLP preset in one process, "
                           "stacked: run k gets seed SEED+k and combination k of the --vary "
                           "values, and a run folder of its own under --out.")
    for name, kind in TRAIN_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        metavar = {"str": "NAME", "int": "N"}[kind.__name__]
        if name in ("data_dir", "out"):
            metavar = "PATH" if name == "data_dir" else "DIR"
        if name in ("device", "cuda_graphs"):
            metavar = "auto|cpu|cuda" if name == "device" else "auto|on|off"
        if name in ("metrics", "keep_best"):
            metavar = "fid,kid,..." if name == "metrics" else "METRIC"
        p.add_argument(flag, dest=name, type=kind, default=None, metavar=metavar)
    p.add_argument("--config", metavar="FILE", help="TOML or JSON file of config fields")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field (repeatable), e.g. --set g_lr=2e-4")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty --out folder")
    p.set_defaults(func=cmd_train)
    return p


def _resolved_config(args: argparse.Namespace):
    from .config import coerce, parse_set, read_config_file, resolve

    file_fields = read_config_file(args.config) if args.config else {}
    overrides = parse_set(args.sets)
    overrides.update({k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None})
    if "metrics" in overrides:  # --metrics fid,kid: a list given as text
        overrides["metrics"] = coerce("metrics", overrides["metrics"], from_text=True)
    preset = overrides.pop("preset", None) or file_fields.get("preset")
    return resolve(preset, file_fields, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _resolved_config(args)
    if args.dry_run:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from .train import train

    run = train(cfg, overwrite=args.overwrite)
    last = next((r for r in reversed(run.metrics) if "d_loss" in r), {})
    print(f"done: {cfg.steps} iterations, d_loss {last.get('d_loss', float('nan')):.4f}, "
          f"g_loss {last.get('g_loss', float('nan')):.4f}; run folder: {run.dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import parse_vary, sweep

    cfg = _resolved_config(args)
    vary = parse_vary(args.vary)
    if args.dry_run:
        print(json.dumps({"runs": args.runs, "vary": vary, "base": cfg.to_dict()}, indent=2))
        return 0
    runs = sweep(cfg, args.runs, vary, overwrite=args.overwrite)
    print(f"done: {len(runs)} runs x {cfg.steps} iterations; run folders under "
          f"{runs[0].dir.parent}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from . import viz
    from .generator import load

    if args.n <= 0:
        raise GanforgeError(f"--n must be positive, got {args.n}")
    from .train import to_unit

    g = load(args.path)
    x = g.sample(args.n, seed=args.seed, label=args.label).cpu()
    if x.dim() == 4:  # images: pixels in [0, 1] whatever range G works in
        x = to_unit(x, g.G).clamp(0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.npy:
        np.save(out, x.numpy())
    elif x.dim() == 2:  # 1-D or vector data: a histogram says more than a grid
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(x[:, 0].numpy(), bins=60, density=True)
        ax.set_title(f"{args.n} samples, iteration {g.step}")
        fig.savefig(out)
        plt.close(fig)
    else:
        viz.save_grid(x, out)
    print(f"wrote {args.n} samples from iteration {g.step} to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .config import coerce
    from .evaluate import evaluate_checkpoint, format_table

    metrics = coerce("metrics", args.metrics, from_text=True)
    result, out = evaluate_checkpoint(args.path, metrics, args.n, args.features, args.device,
                                      args.inception_weights)
    print(format_table(result))
    print(f"wrote {out}")
    return 0


def cmd_classifier_train(args: argparse.Namespace) -> int:
    from .features.lenet import train_classifier

    info = train_classifier(args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                            seed=args.seed, device=args.device)
    print(f"{args.dataset} classifier: test accuracy {100 * info['test_accuracy']:.2f}% "
          f"(trained on {info['n_train']} {info['train_source']} images); saved to "
          f"{info['path']}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    width = max(map(len, PRESETS.names()))
    for name in PRESETS:
        print(f"{name:<{width}}  {PRESETS.doc(name)}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import DATASETS

    width = max(map(len, DATASETS.names()))
    for name in DATASETS:
        print(f"{name:<{width}}  {DATASETS.doc(name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="ganforge", description="Train and use GANs.")
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    p = _add_train(sub, "sweep")
    p.add_argument("--runs", type=int, default=8, help="how many GANs (default 8)")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                   help="values to cycle through: lr, g_lr, d_lr or seed (repeatable)")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("sample", help="draw samples from a trained generator")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", default="samples.png", help="output .png (or .npy with --npy)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--npy", action="store_true", help="write the raw array with numpy.save")
    p.add_argument("--class", dest="label", type=int, default=None, metavar="K",
                   help="a conditional generator draws only class K")
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("eval", help="evaluate a trained generator (FID, KID, IS, P/R, modes)")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--metrics", default="fid,kid,precision,recall",
                   help="comma-separated: fid, kid, is, precision, recall, density, coverage, "
                   "modes")
    p.add_argument("--n", type=int, default=10_000, help="samples, real and generated")
    p.add_argument("--features", default=None,
                   help="lenet-mnist, lenet-fashion, inception or raw (default: by dataset)")
    p.add_argument("--device", default="auto")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="FID Inception weights (.pth or .safetensors); or $GANFORGE_INCEPTION")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("classifier", help="the evaluation classifiers (LeNet)")
    csub = p.add_subparsers(dest="classifier_command", metavar="COMMAND")
    c = csub.add_parser("train", help="train and cache lenet-mnist / lenet-fashion")
    c.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    c.add_argument("--data-dir", default=None)
    c.add_argument("--epochs", type=int, default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default="cpu")
    c.set_defaults(func=cmd_classifier_train)
    sub.add_parser("presets", help="list presets").set_defaults(func=cmd_presets)
    sub.add_parser("datasets", help="list datasets").set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except GanforgeError as e:
        print(f"ganforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganforge: interrupted", file=sys.stderr)
        return 130
