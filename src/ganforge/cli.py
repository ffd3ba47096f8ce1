"""The ``ganforge`` command: its arguments and the one-line error handling around them.

Subcommands: train, sweep, sample, interpolate, export, eval, report, classifier, presets,
datasets; what each does is in cli_commands.py."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .cli_commands import (
    TRAIN_FLAGS,
    cmd_classifier_train,
    cmd_datasets,
    cmd_eval,
    cmd_export,
    cmd_interpolate,
    cmd_presets,
    cmd_report,
    cmd_sample,
    cmd_sweep,
    cmd_train,
)
from .errors import GanforgeError


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
    from .version import __version__

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
