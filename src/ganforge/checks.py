"""The checks of a Config that need the registries: unknown names, remedies' ranges, metrics.

They sit above config.py (which cannot import the registries without a cycle) and add
themselves to :func:`ganforge.config.validate` when this module is imported, which
``import ganforge`` does. So an unknown name still fails as one line at ``resolve``/
``validate``, before any data is loaded or run folder touched.
"""

from __future__ import annotations

from .config import Config, add_check
from .data import DATASETS
from .errors import GanforgeError
from .evaluate import check_request
from .losses import OBJECTIVES
from .metrics import METRICS
from .models import INITS, MODELS
from .priors import PRIORS
from .remedies import check_config as check_remedies

__all__ = ["check_names", "check_evaluation"]


@add_check
def check_names(cfg: Config) -> None:
    """Unknown registry names fail here, each as ``unknown <kind> 'x'; valid names: ...``."""
    for registry, name in ((DATASETS, cfg.dataset), (MODELS, cfg.model), (INITS, cfg.init),
                           (PRIORS, cfg.prior), (OBJECTIVES, cfg.objective)):
        registry.get(name)
    # TODO(losses.py, optim.py): these two name checks belong to the objective and
    # optimiser registries; tests/test_layers.py reports them until they move there.
    if (cfg.objective == "began") != (cfg.model == "mlp-began"):
        raise GanforgeError("objective 'began' and model 'mlp-began' go together (BEGAN's D "
                            f"is an autoencoder); got objective {cfg.objective!r} with model "
                            f"{cfg.model!r}")
    if cfg.optimizer not in ("adam", "rmsprop"):
        raise GanforgeError(f"optimizer: expected adam or rmsprop, got {cfg.optimizer!r}")


add_check(check_remedies)


@add_check
def check_evaluation(cfg: Config) -> None:
    """Metric and feature-network names; with --eval-every, refuse now, not mid-run."""
    for m in cfg.metrics:
        METRICS.get(m)
    if cfg.eval_every or cfg.features is not None:
        check_request(cfg, cfg.metrics if cfg.eval_every else [], cfg.features)
