"""What each ``ganforge`` subcommand does, given its parsed arguments (see cli.py for
the arguments themselves)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from .errors import GanforgeError

# what `sample --out` can write: PIL's image formats for grids, matplotlib's for histograms
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".pdf", ".svg")

# flag name -> config field, for the common train options
TRAIN_FLAGS = {
    "preset": str, "dataset": str, "data_dir": str, "steps": int, "batch_size": int,
    "out": str, "seed": int, "device": str, "sample_every": int, "ckpt_every": int,
    "log_every": int, "cuda_graphs": str, "eval_every": int, "metrics": str, "keep_best": str,
}


def _overrides(args: argparse.Namespace) -> dict:
    """The fields set on the command line: --set pairs, then the flags."""
    from .config import coerce, parse_set

    overrides = parse_set(args.sets)
    flags = [*TRAIN_FLAGS, "on_nan", "tensorboard"]
    overrides.update({k: getattr(args, k) for k in flags if getattr(args, k, None) is not None})
    if isinstance(overrides.get("metrics"), str):  # --metrics fid,kid: a list given as text
        overrides["metrics"] = coerce("metrics", overrides["metrics"], from_text=True)
    return overrides


def _resolved_config(args: argparse.Namespace):
    from .config import read_config_file, resolve

    file_fields = read_config_file(args.config) if args.config else {}
    overrides = _overrides(args)
    preset = overrides.pop("preset", None) or file_fields.get("preset")
    return resolve(preset, file_fields, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from .distributed import is_main_process, launch, launched_by_torchrun

    if args.nproc is not None and not launched_by_torchrun():
        if args.dry_run:
            raise GanforgeError("--nproc: not with --dry-run")
        argv = list(args.argv)
        i = next(i for i, a in enumerate(argv) if a.startswith("--nproc"))
        del argv[i:i + (1 if "=" in argv[i] else 2)]
        if args.nproc < 1:
            raise GanforgeError(f"--nproc must be positive, got {args.nproc}")
        if not args.resume:  # bad input fails here, once, not in every process
            batch = _resolved_config(args).batch_size
            if batch % args.nproc:
                raise GanforgeError(f"--batch-size {batch} is the global batch: it must "
                                    f"divide evenly over --nproc {args.nproc} processes")
        return launch(args.nproc, argv)
    from .session import train

    if args.resume:
        if args.config or args.overwrite or args.dry_run:
            raise GanforgeError("--resume continues a run with its own config.json; it takes "
                                "no --config, --overwrite or --dry-run")
        run = train(resume=args.resume, **_overrides(args))
    else:
        cfg = _resolved_config(args)
        if args.dry_run:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        run = train(cfg, overwrite=args.overwrite)
    if run.stopped or not is_main_process():
        return 0  # a stop already said how to resume; only rank 0 reports
    cfg = run.config
    last = next((r for r in reversed(run.metrics) if "d_loss" in r), {})
    print(f"done: {cfg.steps} iterations, d_loss {last.get('d_loss', float('nan')):.4f}, "
          f"g_loss {last.get('g_loss', float('nan')):.4f}; run folder: {run.dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .session import Session
    from .sweep import parse_vary, sweep

    if args.resume:
        if args.config or args.overwrite or args.dry_run or args.vary or args.runs:
            raise GanforgeError("--resume continues a sweep with its own sweep.json and "
                                "config.json files; it takes no --config, --overwrite, "
                                "--dry-run, --vary or --runs")
        session = Session.resumed(Path(args.resume), _overrides(args), None)
        try:
            runs = session.run()
        finally:
            session.close()
    else:
        cfg = _resolved_config(args)
        vary = parse_vary(args.vary)
        if args.dry_run:
            print(json.dumps({"runs": args.runs, "vary": vary, "base": cfg.to_dict()},
                             indent=2))
            return 0
        runs = sweep(cfg, args.runs if args.runs is not None else (None if vary else 8),
                     vary, overwrite=args.overwrite)
    if any(r.stopped for r in runs):
        return 0  # a stop already said how to resume
    failed = [r for r in runs if r.failed]
    print(f"done: {len(runs) - len(failed)} of {len(runs)} runs x {runs[0].config.steps} "
          f"iterations; run folders and summary.json under {runs[0].dir.parent}")
    if failed:
        print(f"ganforge: error: {len(failed)} runs failed: " + "; ".join(
            f"{r.dir.name}: {r.failed}" for r in failed), file=sys.stderr)
        return 1
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from . import viz
    from .budget import require
    from .files import atomic_write_bytes, check_out, save_figure
    from .generator import load, resolve_checkpoint, run_folder_of

    if args.n <= 0:
        raise GanforgeError(f"--n must be positive, got {args.n}")
    from .generator import to_unit

    out = Path(args.out)
    suffix = out.suffix.lower()
    allowed = (".npy",) if args.npy else SAMPLE_SUFFIXES
    if suffix not in allowed:
        raise GanforgeError(f"--out {out}: expected a file ending in {', '.join(allowed)}"
                            + ("" if args.npy else " (or --npy with .npy)"))
    ckpt = resolve_checkpoint(args.path)
    check_out(out, [ckpt, *run_folder_of(ckpt)])
    g = load(ckpt)
    require(g.sample_bytes(args.n), f"--n {args.n} samples")
    x = g.sample(args.n, seed=args.seed, label=args.label).cpu()
    if x.dim() == 4:  # images: pixels in [0, 1] whatever range G works in
        x = to_unit(x, g.G).clamp(0, 1)
    if args.npy:
        buf = io.BytesIO()
        np.save(buf, x.numpy())
        atomic_write_bytes(out, buf.getvalue())
    elif x.dim() == 2:  # 1-D or vector data: a histogram says more than a grid
        fig, ax = viz.subplots(figsize=(6, 4))
        ax.hist(x[:, 0].numpy(), bins=60, density=True)
        ax.set_title(f"{args.n} samples, iteration {g.step}")
        save_figure(fig, out)
    else:
        viz.save_grid(x, out)
    print(f"wrote {args.n} samples from iteration {g.step} to {out}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .generator import load
    from .interpolate import resolve_mode, write_walk

    g = load(args.path)
    mode = resolve_mode(args.mode, g.config.prior)
    out = write_walk(g, args.out, args.n, args.steps, args.seed, mode, args.label)
    print(f"wrote {args.n} {mode} latent walks of {args.steps} steps from iteration {g.step} "
          f"to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    out = export(args.path, args.out, args.format, args.batch)
    print(f"wrote {out} (batch dimension dynamic; z, prior and output range in "
          f"{out.name}.json)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .config import coerce
    from .evaluate import evaluate_checkpoint, format_table

    metrics = coerce("metrics", args.metrics, from_text=True)
    result, out = evaluate_checkpoint(args.path, metrics, args.n, args.features, args.device,
                                      args.inception_weights, args.out)
    print(format_table(result))
    print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(f"wrote {write_report(args.run_dirs, args.out)}")
    return 0


def cmd_classifier_train(args: argparse.Namespace) -> int:
    from .features.lenet import train_classifier

    info = train_classifier(args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                            seed=args.seed, device=args.device)
    print(f"{args.dataset} classifier: test accuracy {100 * info['test_accuracy']:.2f}% on "
          f"{info['n_test']} images ({info['test_source']}), trained on {info['n_train']} "
          f"{info['train_source']} images; saved to {info['path']}")
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
