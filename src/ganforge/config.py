"""The run configuration: one flat dataclass, its validation, and loading from files/flags.

Flat on purpose: every field can be set with ``--set key=value`` and reads the same in
``config.json``. Resolution order: dataclass defaults < preset < config file < flags.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from .errors import GanforgeError
from .registry import Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# Fields that may differ between the stacked runs of one sweep (``--vary``): none changes a
# tensor's shape, so R runs share one computation (ganforge.stack).
PER_RUN = ("seed", "g_lr", "d_lr", "g_betas", "d_betas", "gp_lambda", "clip", "r1_gamma",
           "r2_gamma", "ema", "init", "prior")

@dataclass
class Config:
    preset: str = "mlp-mnist"  # named starting configuration; the other fields override it
    # data
    dataset: str = "mnist"  # training data (see `ganforge datasets`)
    data_dir: str | None = None  # data folder (default: $GANFORGE_DATA, then the cache)
    split: str = "train"  # train | test | all (for datasets with splits)
    toy_means: list[float] = field(default_factory=lambda: [4.0])  # toy-1d: mixture means
    toy_stds: list[float] = field(default_factory=lambda: [0.5])  # toy-1d: mixture stds
    toy_weights: list[float] | None = None  # mixture weights; None = equal
    image_size: int = 32  # image-folder: square side after resize + centre crop
    channels: int = 3  # image-folder: 1 (grey) or 3 (RGB)
    strict: bool = False  # image-folder: fail on an unreadable file instead of skipping it
    # model
    model: str = "mlp"  # G and D architecture
    z_dim: int = 100  # latent (noise) dimension
    g_hidden: int = 128  # G's hidden width (MLP units; DCGAN/ResNet base channels)
    d_hidden: int = 128  # D's hidden width (MLP units; DCGAN/ResNet base channels)
    init: str = "he-normal"  # weight initialisation
    prior: str = "uniform"  # latent distribution of z
    conditional: bool = False  # labels into G and D (class-conditional GAN)
    cond_mode: str = "concat"  # how G takes the label: concat (embedding) | cbn (cond. BN)
    spectral_norm: bool = False  # spectral normalisation of D's layers
    d_batchnorm: bool = True  # dcgan: BatchNorm in D (off for WGAN-GP, implied off with SN)
    # objective and optimisation
    objective: str = "nonsaturating"  # GAN loss (D's and G's objectives)
    optimizer: str = "adam"  # the optimiser of G and D (rmsprop: WGAN's choice)
    clip: float = 0.01  # wasserstein: critic weight clipping
    gp_lambda: float = 10.0  # wgan-gp: gradient penalty weight
    began_gamma: float = 0.5  # began: diversity ratio gamma
    began_lambda_k: float = 0.001  # began: learning rate of k
    r1_gamma: float = 0.0  # R1 penalty gamma/2 E||grad D(x)||^2 on real data (0 = off)
    r2_gamma: float = 0.0  # R2: the same on generated samples (0 = off)
    reg_interval: int = 1  # lazy regularisation: apply R1/R2 every N D steps, weighted by N
    # mode-collapse remedies (see remedies.py); each combines with any objective and model
    pac: int = 1  # PacGAN: D judges packs of this many samples (1 = off)
    mbstd_group: int = 0  # minibatch-std feature into D's last layer over groups of N (0 = off)
    unroll_steps: int = 0  # unrolled GAN: G's loss through this many extra D steps (0 = off)
    topk: float = 1.0  # top-k: G learns from the share of its batch D rates best (1 = off)
    topk_steps: int = 0  # top-k for the first N iterations only, then every sample (0 = all)
    diffaugment: str = ""  # DiffAugment policies on D's images, e.g. "translation,cutout,color"
    ema: float = 0.0  # generator EMA half-life in iterations (0 = off); used for samples
    batch_size: int = 128  # real (and generated) samples per D step
    steps: int = 20_000  # iterations; one iteration = k_d D steps + k_g G steps
    k_d: int = 1  # D steps per iteration
    k_g: int = 1  # G steps per iteration
    g_lr: float = 1e-3  # G's learning rate
    d_lr: float = 1e-3  # D's learning rate
    #: G's Adam betas (beta1, beta2)
    g_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    #: D's Adam betas (beta1, beta2)
    d_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lr_decay: str = "none"  # schedule of both learning rates over the run's steps
    seed: int = 0  # random seed (weights, noise, data order)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # speed (see benchmarks/speed.py); none of these changes the algorithm
    cuda_graphs: str = "auto"  # auto | on | off: replay the whole iteration as one CUDA graph
    compile: bool = False  # torch.compile G and D
    amp: str = "off"  # off | bf16: autocast the forward passes
    channels_last: bool = False  # NHWC memory format for convolutional models
    backward: str = "auto"  # auto | autograd | manual: MLP gradients by hand (auto: on CPUs)
    tf32: bool = False  # TensorFloat-32 matmuls/convolutions on GPUs (faster, ~10-bit mantissa)
    # outputs
    out: str | None = None  # run folder (default runs/PRESET-TIMESTAMP)
    log_every: int = 100  # iterations between log rows (metrics.jsonl, console, trackers)
    sample_every: int = 1000  # iterations between sample grids (samples/)
    ckpt_every: int = 5000  # iterations between checkpoints/latest.safetensors
    n_samples: int = 64  # images in each sample grid (fixed noise)
    # evaluation during training (see `ganforge eval`)
    eval_every: int = 0  # iterations between evaluations (0 = off)
    #: metrics of --eval-every (comma-separated)
    metrics: list[str] = field(default_factory=lambda: ["fid", "kid", "precision", "recall"])
    eval_n: int = 10_000  # samples per evaluation (real and generated)
    features: str | None = None  # feature network; None = the data's default (lenet-mnist...)
    keep_best: str | None = None  # keep checkpoints/best.safetensors by this metric
    tensorboard: str = "auto"  # auto (on when installed) | on | off: RUN/tensorboard/
    mlflow: str = "off"  # on | off: params, metrics and artifacts to MLflow (ganforge[mlflow])
    mlflow_uri: str | None = None  # MLflow tracking URI or server; None = ./mlruns (a file store)
    mlflow_experiment: str = "ganforge"  # MLflow experiment the run is logged under
    # faults and scale-out
    on_nan: str = "stop"  # stop | rollback: what a non-finite loss or weight does
    nan_lr_factor: float = 0.5  # rollback: both learning rates are multiplied by this
    max_rollbacks: int = 3  # rollback: give up (stop) after this many
    sync_bn: bool = False  # several processes: BatchNorm statistics over the global batch
    dist_timeout: float = 300.0  # seconds a process waits for the others before failing

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Keys that config.json carries as a record of what happened, not as settings.
RECORD_ONLY = ("format", "data_used", "ganforge_version", "torch_version")

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)

POSITIVE_INTS = ("z_dim", "g_hidden", "d_hidden", "batch_size", "steps", "k_d", "k_g",
                 "log_every", "sample_every", "ckpt_every", "n_samples", "image_size",
                 "reg_interval", "eval_n")
POSITIVE_FLOATS = ("g_lr", "d_lr")
MAX_INT = 2**63  # integers beyond int64 reach torch and numpy as overflow errors
MAX_FILE_BYTES = 1 << 20  # a config file is a page of fields, not megabytes


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for hints like ``int``, ``str | None``, ``list[float] | None``."""
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def coerce(name: str, value: Any, *, from_text: bool = False) -> Any:
    """Check (and for text from the command line, parse) one field's value."""
    if name not in FIELDS:
        raise GanforgeError(
            f"unknown config field {name!r}; valid fields: {', '.join(FIELDS)}"
        )
    hint, optional = _base_type(_HINTS[name])
    if optional and (value is None or (from_text and value.lower() in ("none", "null"))):
        return None
    origin = typing.get_origin(hint)
    try:
        if origin is list:
            (item,) = typing.get_args(hint)
            if from_text:
                value = [v for v in value.replace("[", "").replace("]", "").split(",") if v]
            if not isinstance(value, list | tuple):
                raise TypeError
            return [_scalar(item, v, from_text) for v in value]
        return _scalar(hint, value, from_text)
    except (TypeError, ValueError):
        want = getattr(hint, "__name__", str(hint))
        raise GanforgeError(
            f"config field {name!r}: expected {want}, got {value!r}"
        ) from None


def _scalar(kind: type, value: Any, from_text: bool) -> Any:
    if from_text and isinstance(value, str):
        value = value.strip()
        if kind is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            return _in_range(int, int(value.replace("_", "")))
        if kind is float:
            return _in_range(float, float(value))
        return value
    if kind is str and isinstance(value, PurePath):  # out=Path("runs/x") from Python
        return str(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and kind is not bool:
        raise TypeError
    if not isinstance(value, kind):
        raise TypeError
    return _in_range(kind, value)


def _in_range(kind: type, value: Any) -> Any:
    """No NaN or infinity, and integers that fit the 64 bits torch and numpy take."""
    if kind is float and not math.isfinite(value):
        raise ValueError("not a finite number")
    if kind is int and not -MAX_INT <= value < MAX_INT:
        raise ValueError("out of range")
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML or JSON file as data (never executed) into a dict of fields."""
    p = Path(path)
    if not p.is_file():
        raise GanforgeError(f"{p}: config file not found")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise GanforgeError(f"{p}: {p.stat().st_size} bytes; a config file of fields is "
                            f"expected to be under {MAX_FILE_BYTES} bytes")
    try:
        text = p.read_text()
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        elif p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            raise GanforgeError(f"{p}: expected a .toml or .json config file")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GanforgeError(f"{p}: not valid {p.suffix[1:].upper()}: {e}") from None
    except RecursionError:  # e.g. [[[[...]]]] 100,000 deep: no config field nests at all
        raise GanforgeError(f"{p}: nested too deeply; config fields are numbers, text "
                            "and flat lists") from None
    if not isinstance(data, dict):
        raise GanforgeError(f"{p}: expected a table/object of config fields at the top level")
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise GanforgeError(
            f"{p}: unknown config field(s) {', '.join(map(repr, unknown))}; "
            f"valid fields: {', '.join(FIELDS)}"
        )
    return {k: _coerce_in_file(p, k, v) for k, v in data.items()}


def _coerce_in_file(path: Path, key: str, value: Any) -> Any:
    try:
        return coerce(key, value)
    except GanforgeError as e:
        raise GanforgeError(f"{path}: {e}") from None


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs, typed by the field they name."""
    out: dict[str, Any] = {}  # run folder (default runs/PRESET-TIMESTAMP)
    for item in items:
        if "=" not in item:
            raise GanforgeError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = coerce(key, value, from_text=True)
    return out


# Checks that need a registry (names of datasets, models, objectives, metrics; remedies'
# ranges) live above this module, next to what they check (ganforge.checks), and add
# themselves here: validate() runs them while config imports nothing above it.
_CHECKS: list[Callable[[Config], None]] = []

# Every preset builds a Config, so presets.py sits above this module and registers into
# this registry; resolve() looks presets up here. ganforge/__init__ imports both.
PRESETS: Registry[Callable[[], Config]] = Registry("preset")


def validate(cfg: Config) -> Config:
    """Range checks that types alone cannot express, then the registered checks."""
    for name in POSITIVE_INTS + POSITIVE_FLOATS:
        if getattr(cfg, name) <= 0:
            flag = "--" + name.replace("_", "-")
            raise GanforgeError(f"{flag} must be positive, got {getattr(cfg, name)}")
    for name in ("g_betas", "d_betas"):
        b = getattr(cfg, name)
        if len(b) != 2 or not all(0.0 <= v < 1.0 for v in b):
            raise GanforgeError(f"{name}: expected two numbers in [0, 1), got {b}")
    if cfg.split not in ("train", "test", "all"):
        raise GanforgeError(f"split: expected train, test or all, got {cfg.split!r}")
    if len(cfg.toy_means) != len(cfg.toy_stds) or not cfg.toy_means:
        raise GanforgeError("toy_means and toy_stds: expected lists of the same, non-zero length")
    if any(s <= 0 for s in cfg.toy_stds):
        raise GanforgeError(f"toy_stds: expected positive numbers, got {cfg.toy_stds}")
    if cfg.toy_weights is not None and (
        len(cfg.toy_weights) != len(cfg.toy_means) or any(w < 0 for w in cfg.toy_weights)
        or sum(cfg.toy_weights) <= 0
    ):
        raise GanforgeError("toy_weights: expected one non-negative weight per mixture component")
    if cfg.cuda_graphs not in ("auto", "on", "off"):
        raise GanforgeError(f"--cuda-graphs: expected auto, on or off, got {cfg.cuda_graphs!r}")
    if cfg.backward not in ("auto", "autograd", "manual"):
        raise GanforgeError(f"backward: expected auto, autograd or manual, got {cfg.backward!r}")
    for name in ("r1_gamma", "r2_gamma", "ema", "gp_lambda", "clip"):
        if getattr(cfg, name) < 0:
            raise GanforgeError(f"{name}: expected a non-negative number, got {getattr(cfg, name)}")
    if cfg.channels not in (1, 3):
        raise GanforgeError(f"channels: expected 1 or 3, got {cfg.channels}")
    if cfg.cond_mode not in ("concat", "cbn"):
        raise GanforgeError(f"cond_mode: expected concat or cbn, got {cfg.cond_mode!r}")
    if cfg.eval_every < 0:
        raise GanforgeError(f"--eval-every: expected 0 (off) or a positive number, got "
                            f"{cfg.eval_every}")
    if cfg.keep_best is not None and cfg.keep_best not in cfg.metrics:
        raise GanforgeError(f"--keep-best {cfg.keep_best}: expected one of the evaluated "
                            f"metrics ({', '.join(cfg.metrics)})")
    for name, allowed in (("on_nan", ("stop", "rollback")), ("tensorboard", ("auto", "on", "off")),
                          ("mlflow", ("on", "off"))):
        if getattr(cfg, name) not in allowed:
            raise GanforgeError(f"--{name.replace('_', '-')}: expected {' or '.join(allowed)}, "
                                f"got {getattr(cfg, name)!r}")
    if not 0.0 < cfg.nan_lr_factor <= 1.0:
        raise GanforgeError(f"nan_lr_factor: expected a number in (0, 1], got {cfg.nan_lr_factor}")
    if cfg.seed < 0:
        raise GanforgeError(f"--seed: expected a non-negative integer, got {cfg.seed}")
    if cfg.max_rollbacks < 0 or cfg.dist_timeout <= 0:
        raise GanforgeError("max_rollbacks: expected >= 0; dist_timeout: expected > 0 seconds")
    if cfg.amp not in ("off", "bf16"):
        raise GanforgeError(f"amp: expected off or bf16, got {cfg.amp!r}")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise GanforgeError(f"--device: expected auto, cpu or cuda, got {cfg.device!r}")
    for check in _CHECKS:
        check(cfg)
    return cfg


def add_check(check: Callable[[Config], None]) -> Callable[[Config], None]:
    """Have :func:`validate` run ``check`` too (see ``_CHECKS``)."""
    _CHECKS.append(check)
    return check


def resolve(preset: str | None = None, file_fields: dict[str, Any] | None = None,
            overrides: dict[str, Any] | None = None) -> Config:
    """Preset defaults, then a config file's fields, then explicit overrides."""
    fields: dict[str, Any] = {}
    fields.update(file_fields or {})
    fields.update({k: v for k, v in (overrides or {}).items() if v is not None})
    name = preset or fields.get("preset") or Config.preset
    base = PRESETS.get(name)()
    merged = base.to_dict()
    for k, v in fields.items():
        merged[k] = coerce(k, v)
    merged["preset"] = name
    return validate(Config(**merged))


def from_dict(data: dict[str, Any]) -> Config:
    """A Config from a complete dict such as a run's config.json (no preset layering)."""
    data = {k: v for k, v in data.items() if k not in RECORD_ONLY}
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise GanforgeError(f"unknown config field(s): {', '.join(unknown)}")
    return validate(Config(**{k: coerce(k, v) for k, v in data.items()}))


def as_config(config: Config | dict[str, Any] | str | Path | None,
              overrides: dict[str, Any]) -> Config:
    """A Config from what ``ganforge.train`` accepts: a Config, a dict of fields (a preset
    plus overrides, or a complete config.json), a TOML/JSON file, or None (the default)."""
    if config is None:
        return resolve(overrides.pop("preset", None), overrides=overrides)
    if isinstance(config, Config):
        return validate(dataclasses.replace(config, **overrides))
    if isinstance(config, str | Path):
        fields = read_config_file(config)
        return resolve(overrides.pop("preset", None), fields, overrides)
    if isinstance(config, dict):
        merged = {**config, **overrides}
        if set(FIELDS) <= set(merged):  # a complete config, e.g. a run's config.json
            return from_dict(merged)
        return resolve(merged.pop("preset", None), overrides=merged)
    raise TypeError(f"config must be a Config, dict, path or None, not {type(config).__name__}")
