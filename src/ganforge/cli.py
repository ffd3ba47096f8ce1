"""The ``ganforge`` command: train, sweep, sample, interpolate, export, eval, report,
classifier, presets, datasets."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import GanforgeError

# what `sample --out` can write: PIL's image formats for grids, matplotlib's for histograms
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".pdf", ".svg")

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
                           "values (their product: a grid), and a run folder of its own under "
                           "--out; summary.json/csv say which run did best.")
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
    p.field_help = True  # named flags and the field listing: filled in when help is printed
    p.add_argument("--config", metavar="FILE", help="TOML or JSON file of config fields")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field (repeatable), e.g. --set g_lr=2e-4")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty --out folder")
    p.add_argument("--resume", metavar="RUN_DIR" if name == "train" else "SWEEP_DIR",
                   default=None, help="continue that run (or sweep) in its folder from its "
                   "latest checkpoint (with --steps N to train it further)")
    p.add_argument("--on-nan", dest="on_nan", default=None, metavar="stop|rollback",
                   help="on a non-finite loss: stop (default) or roll back to the last good "
                   "checkpoint with lower learning rates (in a sweep: of the run that failed)")
    p.add_argument("--tensorboard", default=None, metavar="auto|on|off",
                   help="TensorBoard logs in RUN/tensorboard (auto: when installed)")
    if p.prog.endswith("train"):
        p.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="train with N data-parallel processes on this machine (starts "
                       "torchrun; --batch-size is the global batch)")
    _add_offline(p)
    p.set_defaults(func=cmd_train)
    return p


def _overrides(args: argparse.Namespace) -> dict:
    """The fields set on the command line: --set pairs, then the flags."""
    from .config import coerce, parse_set

    overrides = parse_set(args.sets)
    flags = [*TRAIN_FLAGS, "on_nan", "tensorboard"]
    overrides.update({k: getattr(args, k) for k in flags if getattr(args, k, None) is not None})
    if "metrics" in overrides:  # --metrics fid,kid: a list given as text
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
    from .train import to_unit

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


class _Parser(argparse.ArgumentParser):
    """argparse's mistakes (a missing value, ``--steps ten``) as ganforge reports every bad
    input: one line on stderr, exit code 2."""

    field_help = False  # train/sweep: document the config fields from config.py

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ganforge: error: {self.prog}: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        if not self.field_help:
            return super().format_help()
        # built only when asked for: the registries (choices) import the models and data
        from .fielddocs import field_docs, field_listing, flag_help

        for action in self._actions:
            if action.dest in field_docs() and action.help is None:
                action.help = flag_help(action.dest)
        return super().format_help() + "\n" + field_listing()


def _add_offline(p: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    # SUPPRESS on the subcommands: their default must not undo `ganforge --offline train`
    p.add_argument("--offline", action="store_true", default=default,
                   help="never try to download data (also GANFORGE_OFFLINE=1)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="ganforge", description="Train and use GANs.")
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    _add_offline(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    p = _add_train(sub, "sweep")
    p.add_argument("--runs", type=int, default=None,
                   help="how many GANs (default: one per --vary combination, else 8)")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                   help="values to cycle through: lr, g_lr, d_lr or seed (repeatable)")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("sample", help="draw samples from a trained generator",
                       description="Draw --n samples from a run's generator (the EMA one when "
                       "the run has it): an image grid .png, a histogram for 1-D toys, or the "
                       "raw array with --npy.")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", default="samples.png", help="output .png (or .npy with --npy)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--npy", action="store_true", help="write the raw array with numpy.save")
    p.add_argument("--class", dest="label", type=int, default=None, metavar="K",
                   help="a conditional generator draws only class K")
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("interpolate", help="latent walks: G between random latents (grid/GIF)",
                       description="Walk --n straight (uniform prior) or spherical (normal "
                       "prior) paths between random latents of --steps points each: a .png grid "
                       "(a row per walk), a .gif (a frame per step) or, for 1-D/2-D toys, a "
                       "plot.")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--n", type=int, default=8, help="how many walks (default 8)")
    p.add_argument("--steps", type=int, default=10, help="points per walk, ends included")
    p.add_argument("--out", default="walk.png", help="output .png grid or .gif animation")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--mode", default="auto", metavar="auto|linear|slerp",
                   help="path between latents (default: by the run's prior)")
    p.add_argument("--class", dest="label", type=int, default=None, metavar="K",
                   help="a conditional generator walks in class K (default: row i, class i)")
    p.set_defaults(func=cmd_interpolate)
    p = sub.add_parser("export", help="export the generator as ONNX or .pt2 (torch.export)",
                       description="Write the generator (the EMA one when the run has it) as "
                       "a file that runs without ganforge: inputs z [and int64 labels y], "
                       "output x, any batch size. The run's metadata (z_dim, prior, output "
                       "range) goes into the file and a FILE.json beside it.")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--format", default=None, metavar="onnx|pt2",
                   help="default: from --out's suffix")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default generator.onnx / generator.pt2)")
    p.add_argument("--batch", type=int, default=2,
                   help="example batch size traced (default 2; the batch stays dynamic)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("eval", help="evaluate a trained generator (FID, KID, IS, P/R, modes)",
                       description="Compare --n generated samples with --n real ones in a "
                       "feature space and print the metrics; they are also written as JSON to "
                       "--out (default RUN_DIR/eval.json).")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--metrics", default="fid,kid,precision,recall",
                   help="comma-separated: fid, kid, is, precision, recall, density, coverage, "
                   "modes, classes")
    p.add_argument("--n", type=int, default=None,
                   help="samples, real and generated (default 10,000, or all the real images "
                   "when there are fewer)")
    p.add_argument("--features", default=None,
                   help="lenet-mnist, lenet-fashion, inception or raw (default: by dataset)")
    p.add_argument("--device", default="auto")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="FID Inception weights (.pth or .safetensors); or $GANFORGE_INCEPTION")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the metrics as JSON here (default RUN_DIR/eval.json)")
    _add_offline(p)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("report", help="one self-contained HTML page about one or more runs, "
                       "or a sweep",
                       description="Write report.html: config, loss and metric curves, "
                       "samples with a snapshot player, warnings; several runs are overlaid "
                       "and compared side by side. A sweep folder (one with sweep.json) gets "
                       "one row per run, the best run marked, and each run's latest samples. "
                       "Works offline: everything is inlined.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folder(s), or one sweep folder")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output .html (default RUN_DIR/report.html for one run or sweep, "
                   "./report.html for several runs)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("classifier", help="the evaluation classifiers (LeNet)",
                       description="The LeNet classifiers whose features the MNIST-like "
                       "datasets are evaluated in (lenet-mnist, lenet-fashion).")
    csub = p.add_subparsers(dest="classifier_command", metavar="COMMAND")
    c = csub.add_parser("train", help="train and cache lenet-mnist / lenet-fashion",
                        description="Train the dataset's LeNet on its training split, report "
                        "its test accuracy and cache it for eval.")
    c.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    c.add_argument("--data-dir", default=None)
    c.add_argument("--epochs", type=int, default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default="cpu")
    _add_offline(c)
    c.set_defaults(func=cmd_classifier_train)
    sub.add_parser("presets", help="list presets", description="List the presets (named "
                   "starting configurations) with what each sets.").set_defaults(func=cmd_presets)
    sub.add_parser("datasets", help="list datasets", description="List the datasets --dataset "
                   "takes, with where each comes from.").set_defaults(func=cmd_datasets)
    return parser


def _one_line_warning(default: Callable[..., None]) -> Callable[..., None]:
    """ganforge's own warnings (e.g. FID from fewer samples than feature dimensions) as one
    ``ganforge: warning: ...`` line each, said once, like its errors; not Python's
    file:line display with a source line. Warnings raised elsewhere keep that display."""
    package = str(Path(__file__).resolve().parent)
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if not str(Path(filename).resolve()).startswith(package):
            default(message, category, filename, lineno, file, line)
            return
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"ganforge: warning: {text}", file=file or sys.stderr)

    return show


def _say_error(message: str) -> None:
    """A training process under torchrun also leaves its error for the launcher (torchelastic's
    error file), which reports the first failure once; ``--nproc``'s launcher prints it as
    ganforge's one line, so the ranks do not. Otherwise rank 0 (or a lone process) says it."""
    from .distributed import LAUNCHER_ENV, is_main_process, record_error

    record_error(message)
    if is_main_process() and not os.environ.get(LAUNCHER_ENV):
        print(f"ganforge: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.offline:  # the environment carries it to torchrun's processes too
        from .data.download import OFFLINE_ENV

        os.environ[OFFLINE_ENV] = "1"
    try:
        with warnings.catch_warnings():  # restores Python's own display afterwards
            warnings.showwarning = _one_line_warning(warnings.showwarning)
            return args.func(args)
    except GanforgeError as e:
        _say_error(str(e))
        return 2
    except OSError as e:  # disk full, read-only, permissions: the path and why, nothing more
        _say_error(f"{e.filename or 'a file'}: {e.strerror or e}")
        return 2
    except KeyboardInterrupt:
        print("ganforge: interrupted", file=sys.stderr)
        return 130
