"""The checks of a Config that need the registries: unknown names, remedies' ranges, metrics.

They sit above config.py (which cannot import the registries without a cycle) and add
themselves to :func:`ganforge.config.validate` when this module is imported, which
``import ganforge`` does. So an unknown name still fails as one line at ``resolve``/
``validate``, before any data is loaded or run folder touched.
"""

from __future__ import annotations

from .config import Config, add_check
from .data import DATASETS
from .evaluate import check_request
from .losses import OBJECTIVES, check_model_fits
from .metrics import METRICS
from .models import INITS, MODELS
from .optim import LR_SCHEDULES, OPTIMIZERS
from .priors import PRIORS
from .remedies import check_config as check_remedies

__all__ = ["check_names", "check_evaluation"]


@add_check
def check_names(cfg: Config) -> None:
    """Unknown registry names fail here, each as ``unknown <kind> 'x'; valid names: ...``."""
    for registry, name in ((DATASETS, cfg.dataset), (MODELS, cfg.model), (INITS, cfg.init),
                           (PRIORS, cfg.prior), (OBJECTIVES, cfg.objective),
                           (OPTIMIZERS, cfg.optimizer), (LR_SCHEDULES, cfg.lr_decay)):
        registry.get(name)
    check_model_fits(cfg.objective, cfg.model)


add_check(check_remedies)


@add_check
def check_evaluation(cfg: Config) -> None:
    """Metric and feature-network names; with --eval-every, refuse now, not mid-run."""
    for m in cfg.metrics:
        METRICS.get(m)
    if cfg.eval_every or cfg.features is not None:
        check_request(cfg, cfg.metrics if cfg.eval_every else [], cfg.features)
