"""Which config fields have an effect in a run, and what the run's preset sets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _c(key: str, *values: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda cfg: cfg.get(key) in values


# Config fields that matter only in some runs, and when they do; every other field always
# matters. The report shows a run's fields that matter and hides the rest behind a checkbox.
MATTERS_WHEN: dict[str, Callable[[dict[str, Any]], bool]] = {
    **dict.fromkeys(("toy_means", "toy_stds", "toy_weights"), _c("dataset", "gaussian-1d")),
    **dict.fromkeys(("image_size", "channels", "strict"), _c("dataset", "image-folder")),
    "cond_mode": _c("conditional", True),
    "d_batchnorm": _c("model", "dcgan"),
    "channels_last": _c("model", "dcgan", "resnet"),
    "clip": _c("objective", "wasserstein"),
    "gp_lambda": _c("objective", "wgan-gp"),
    **dict.fromkeys(("began_gamma", "began_lambda_k"), _c("objective", "began")),
    "reg_interval": lambda cfg: bool(cfg.get("r1_gamma") or cfg.get("r2_gamma")),
    **dict.fromkeys(("metrics", "eval_n", "features", "keep_best"),
                    lambda cfg: bool(cfg.get("eval_every"))),
    **dict.fromkeys(("nan_lr_factor", "max_rollbacks"), _c("on_nan", "rollback")),
    **dict.fromkeys(("sync_bn", "dist_timeout"),
                    lambda cfg: (cfg.get("data_used") or {}).get("processes", 1) > 1),
    **dict.fromkeys(("mlflow_uri", "mlflow_experiment"), _c("mlflow", "on")),
}


def matters(key: str, cfg: dict[str, Any]) -> bool:
    """Whether config field ``key`` has any effect in the run of ``cfg``."""
    when = MATTERS_WHEN.get(key)
    return when is None or bool(when(cfg))


def preset_values(cfg: dict[str, Any]) -> dict[str, Any]:
    """The fields of the run's preset as the preset sets them ({} for an unknown preset)."""
    from ..presets import PRESETS

    name = cfg.get("preset")
    if not isinstance(name, str) or name not in PRESETS:
        return {}
    return PRESETS.get(name)().to_dict()
