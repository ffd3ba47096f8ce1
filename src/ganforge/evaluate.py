"""Evaluate a generator: draw samples, embed them, compare with the real data by name.

Real-data features are computed once per (dataset, split, feature net, N) and cached under
``cache_dir()/features``. Feature networks: ``lenet-mnist`` / ``lenet-fashion`` (trained by
``ganforge classifier train``), ``inception`` (the FID network, weights supplied by the
user), ``raw`` (the samples themselves: the 1-D and 2-D toys).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch import nn

from .data import Dataset, Gaussian1D, Points2D, is_colour
from .data import default_features as data_default_features
from .data.mnist import cache_dir
from .errors import GanforgeError
from .files import atomic_write_bytes
from .metrics import (
    METRICS,
    count_modes_2d,
    count_modes_stacked,
    fid_eps,
    inception_score,
    kid,
    kid_subset_size,
    knn_metrics,
)
from .metrics.classes import class_histogram
from .priors import PRIORS

LOWER_IS_BETTER = ("fid", "kid", "kl", "classes_kl")
DEFAULT_METRICS = ("fid", "kid", "precision", "recall")
DEFAULT_N = 10_000  # samples per evaluation, unless the real data hold fewer


def default_features(cfg) -> str:
    """The feature network that suits the run's data."""
    return data_default_features(cfg)


MODE_DATASETS = ("ring-8", "grid-25", "stacked-mnist")  # what metric 'modes' can count
# what metric 'classes' can count: labelled grey 28x28 data and the classifier trained on them
CLASSIFIERS = {"mnist": "lenet-mnist", "mnist-sample": "lenet-mnist",
               "fashion-mnist": "lenet-fashion"}


def check_request(cfg, metrics, features: str | None = None, n: int | None = None) -> str:
    """Refuse, before any sample is drawn (or any run folder touched by ``--eval-every``),
    metric/feature/data combinations that cannot work; returns the feature net's name.
    ``n``: the number of samples per evaluation (``cfg.eval_n`` unless given)."""
    from .features import FEATURES

    for name in metrics:
        METRICS.get(name)
    n = cfg.eval_n if n is None else n
    if "kid" in metrics:
        try:
            kid_subset_size(n, n)
        except ValueError as e:
            raise GanforgeError(f"{n} samples (--n, --eval-n): {e}") from None
    features = features or default_features(cfg)
    if features != "raw" and features not in FEATURES:
        raise GanforgeError(f"unknown feature network {features!r}; valid names: raw, "
                            f"{', '.join(FEATURES.names())}")
    if "modes" in metrics and cfg.dataset not in MODE_DATASETS:
        raise GanforgeError("metric 'modes' needs a 2-D mixture (ring-8, grid-25) or "
                            f"stacked-mnist, not {cfg.dataset!r}")
    if "classes" in metrics and cfg.dataset not in CLASSIFIERS:
        raise GanforgeError(f"metric 'classes' needs labelled 28x28 grey images with a "
                            f"classifier ({', '.join(CLASSIFIERS)}), not {cfg.dataset!r}")
    rest = [m for m in metrics if m != "modes"]
    if "is" in rest and features == "raw":
        raise GanforgeError("metric 'is' needs a classifier; feature net 'raw' has no class "
                            "outputs")
    colour = is_colour(cfg)
    if rest and colour and features.startswith("lenet"):
        raise GanforgeError(f"feature net {features!r} takes grey images; for colour data use "
                            "--features inception (or raw)")
    return features


class _Raw:
    name, num_classes = "raw", 0

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()  # as generated
        return x.flatten(1).cpu(), None


def feature_net(name: str, device: torch.device, inception_weights: str | None = None):
    if name == "raw":
        return _Raw()
    from .features import get_feature_net

    opts = {"weights": inception_weights} if name == "inception" and inception_weights else {}
    return get_feature_net(name, device=device, **opts)


@torch.no_grad()
def generate(G: nn.Module, cfg, n: int, device: torch.device, seed: int = 0,
             num_classes: int = 0, batch: int = 500) -> torch.Tensor:
    """``n`` samples from G (images mapped to [0, 1]), in batches, on the CPU."""
    from .generator import to_unit

    gen = torch.Generator(device).manual_seed(seed)
    prior = PRIORS.get(cfg.prior)
    was_training = G.training
    G.eval()
    out = []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        z = prior(m, cfg.z_dim, gen)
        if num_classes:
            y = torch.randint(num_classes, (m,), generator=gen, device=device)
            x = G(z, y)
        else:
            x = G(z)
        out.append((to_unit(x, G).clamp(0, 1) if x.dim() == 4 else x).float().cpu())
    G.train(was_training)
    return torch.cat(out)


def stacked_modes(images: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """Classify each channel with lenet-mnist: modes captured of 1,000 and KL to uniform."""
    from .features import get_feature_net

    net = get_feature_net("lenet-mnist", device=device)
    digits = [net.logits(images[:, c:c + 1]).argmax(1) for c in range(3)]
    return count_modes_stacked(torch.stack(digits, 1).numpy())


def class_stats(images: torch.Tensor, cfg, net, device: torch.device) -> dict[str, Any]:
    """Metric ``classes`` of generated ``images`` under the dataset's classifier (``net`` when
    that is the one already loaded as the feature network)."""
    name = CLASSIFIERS[cfg.dataset]
    if getattr(net, "name", None) != name:
        from .features import get_feature_net

        net = get_feature_net(name, device=device)
    return class_histogram(net.logits(images))


def real_features(cfg, data: Dataset, net, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits) of ``n`` real samples, cached for image datasets."""
    path = None
    if not isinstance(data, Gaussian1D | Points2D):
        key = f"{data.name}-{cfg.split}-{net.name}-{n}"
        path = cache_dir() / "features" / f"{key}.safetensors"
        if path.is_file():
            cached = load_file(path)
            return cached["features"], cached.get("logits")
    gen = torch.Generator().manual_seed(0)
    if isinstance(data, Gaussian1D | Points2D):
        real = data.real_samples(n, torch.Generator(data.device).manual_seed(0)).cpu()
    else:
        if n > data.images.shape[0]:
            raise GanforgeError(f"--n {n}: the dataset {data.name!r} holds only "
                                f"{data.images.shape[0]} samples")
        idx = torch.randperm(data.images.shape[0], generator=gen)[:n]
        real = data.images.cpu()[idx]  # uint8: the feature net scales it to [0, 1]
    feats, logits = net.features_and_logits(real)
    if path is not None:
        tensors = {"features": feats.contiguous()}
        if logits is not None:
            tensors["logits"] = logits.contiguous()
        atomic_write_bytes(path, st_save(tensors))
    return feats, logits


def evaluate(G: nn.Module, cfg, data: Dataset,
             metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS, n: int = 10_000,
             features: str | None = None, device: torch.device | None = None,
             num_classes: int = 0, seed: int = 0,
             inception_weights: str | None = None, net: nn.Module | None = None
             ) -> dict[str, Any]:
    """Metric values for G against ``data`` (see :data:`ganforge.metrics.METRICS`).
    ``net``: the feature network already loaded (training evaluates many times)."""
    if n <= 1:
        raise GanforgeError(f"--n must be at least 2, got {n}")
    features = check_request(cfg, metrics, features, n)
    device = device or next(G.parameters()).device
    if net is None:
        net = feature_net(features, device, inception_weights)
    fake = generate(G, cfg, n, device, seed, num_classes)
    out: dict[str, Any] = {"n": n, "features": features}
    if "modes" in metrics:
        if isinstance(data, Points2D):
            out.update(count_modes_2d(fake.numpy(), data.name))
        elif data.name == "stacked-mnist":
            out.update(stacked_modes(fake, device))
        else:
            raise GanforgeError("metric 'modes' needs a 2-D mixture (ring-8, grid-25) or "
                                f"stacked-mnist, not {cfg.dataset!r}")
    if "classes" in metrics:
        out.update(class_stats(fake, cfg, net, device))
    rest = [m for m in metrics if m not in ("modes", "classes")]
    if not rest:
        return out
    fake_f, fake_l = net.features_and_logits(fake)
    real_f, _ = real_features(cfg, data, net, n)
    if fake.shape[1] == 3 and net.name.startswith("lenet"):
        raise GanforgeError(f"feature net {net.name!r} takes grey images; for colour data use "
                            "--features inception (or raw)")
    if "fid" in rest:
        out["fid"], eps = fid_eps(real_f.double().numpy(), fake_f.double().numpy())
        if eps:  # said only when it happened: the value is then not the exact formula's
            out["fid_eps"] = eps
    if "kid" in rest:
        out["kid_subset"] = kid_subset_size(n, n)
        out["kid"], out["kid_std"] = kid(real_f.double().numpy(), fake_f.double().numpy())
    if "is" in rest:
        if fake_l is None:
            raise GanforgeError(f"metric 'is' needs a classifier; feature net {features!r} "
                                "has no class outputs")
        out["is"], out["is_std"] = inception_score(fake_l.double().numpy(), from_logits=True)
    wanted = {"precision", "recall", "density", "coverage"} & set(rest)
    if wanted:
        # k=3 for precision/recall (Kynkaanniemi et al.), k=5 for density/coverage (Naeem et
        # al.), from one k-NN search per set and one pass over the real-fake distances
        out.update(knn_metrics(real_f, fake_f, k_pr=3, k_dc=5, metrics=wanted))
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in out.items()}


def better(metric: str, new: float, best: float | None) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(new)
    return new < best if metric in LOWER_IS_BETTER else new > best


def _number(v: float) -> str:
    # 4 decimals, but small values (KID near 0, fid_eps) keep their significant digits
    return f"{v:.3g}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"


def format_table(result: dict[str, Any]) -> str:
    rows = [(k, _number(v) if isinstance(v, float) else str(v)) for k, v in result.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def default_n(data: Dataset) -> int:
    """:data:`DEFAULT_N`, or every real image when the data set holds fewer (the 5,000-digit
    offline sample): real and generated sets are the same size."""
    held = getattr(data, "images", None)
    return DEFAULT_N if held is None else min(DEFAULT_N, int(held.shape[0]))


def evaluate_checkpoint(path: str | Path, metrics: list[str], n: int | None,
                        features: str | None = None, device: str = "auto",
                        inception_weights: str | None = None,
                        out: str | Path | None = None) -> tuple[dict, Path]:
    """``ganforge eval``: a run folder or checkpoint -> metrics, written to ``out`` (default
    the run folder's eval.json). ``n`` None: :func:`default_n`."""
    from .budget import require
    from .data import load_dataset
    from .files import atomic_write_json
    from .generator import load, resolve_checkpoint
    from .machine import pick_device

    dev = pick_device(device)
    ckpt = resolve_checkpoint(path)
    if n is not None and n <= 0:
        raise GanforgeError(f"--n must be positive, got {n}")
    g = load(ckpt, device=dev)
    if n is not None:
        require(2 * g.sample_bytes(n), f"--n {n} (real and generated samples)", dev)
    data = load_dataset(g.config).to(dev)
    n = default_n(data) if n is None else n
    result = {"step": g.step, "checkpoint": str(ckpt), "ema": g.ema,
              **evaluate(g.G, g.config, data, metrics, n, features, dev, g.num_classes,
                         inception_weights=inception_weights)}

    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    dest = Path(out) if out is not None else run_dir / "eval.json"
    if dest.is_dir():
        raise GanforgeError(f"--out {dest}: is a folder; expected a file such as eval.json")
    atomic_write_json(dest, result)
    return result, dest
