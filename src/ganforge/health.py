"""Training-health warnings: spot the classic GAN failures from the logged statistics.

Three failures are watched, each reported once per episode (and again only after recovery):

- ``g_vanishing``: D(G(z)) stays near 0, i.e. D rejects every fake. With the saturating
  (minimax) G loss G's gradient is proportional to D(G(z)) and vanishes (Goodfellow et al.
  2014, section 3). Only meaningful when D's outputs are probabilities (logit objectives).
- ``mode_collapse``: the fixed-noise samples have become nearly alike: their mean pairwise
  distance has fallen far below that of real data.
- ``loss_explosion``: a loss is NaN/inf, or its magnitude jumps far above its recent median.

The monitor only reads host floats the trainer already has (a log row, a sample grid), so it
adds no synchronisation to the hot loop.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

LOSS_KEYS = ("d_loss", "g_loss")


@dataclass(frozen=True)
class Warning:  # shadows the builtin here only: import the module, use health.Warning
    """One health warning: what was seen (``kind``) at which iteration, in one line."""

    step: int
    kind: str  # g_vanishing | mode_collapse | loss_explosion
    message: str

    def as_row(self) -> dict[str, Any]:
        """The row appended to metrics.jsonl."""
        return {"step": self.step, "warning": self.kind, "message": self.message}


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """The mean L2 distance between distinct samples of ``x`` (N, ...), each flattened.

    The diagonal (a sample's distance to itself) is left out, so the value does not depend on
    N for i.i.d. samples. Computed in float64: near-identical samples (the case that matters
    for collapse) would otherwise drown in the rounding of the Gram-matrix shortcut.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"mean_pairwise_distance needs at least 2 samples, got {n}")
    flat = x.detach().reshape(n, -1).double()
    d = torch.cdist(flat, flat)
    return float((d.sum() - d.diagonal().sum()) / (n * (n - 1)))


def data_diversity(data: Any, n: int = 256, seed: int = 0) -> float:
    """``mean_pairwise_distance`` of ``n`` real samples of a :class:`ganforge.data.Dataset`.

    The samples come from the dataset's ``real_samples`` (images in [0, 1]) with a generator
    of their own, so the training data stream is untouched and the value is the same on
    resume. Compare it with G's samples mapped to [0, 1] (``ganforge.generator.to_unit``).
    """
    return mean_pairwise_distance(data.real_samples(n, torch.Generator().manual_seed(seed)))


class HealthMonitor:
    """Turns log rows and fixed-noise sample grids into :class:`Warning` s.

    ``probabilities``: D's logged outputs (``d_real``, ``d_fake``) are probabilities, i.e.
    ``trainer.objective.outputs_logits`` (nonsaturating, minimax). Wasserstein, hinge,
    least-squares and BEGAN outputs are unbounded scores, for which "D(G(z)) near 0" says
    nothing, so ``g_vanishing`` is never raised for them.

    ``data_diversity``: the real data's mean pairwise distance (see :func:`data_diversity`),
    in the same value range as the samples given to ``check_samples``; None turns the
    collapse check off.

    Defaults, and why:

    - ``vanish_below=0.01``: at D(G(z)) = 0.01 the minimax G gradient (proportional to
      D(G(z))) is 100 times weaker than at 0.5; healthy runs hover around 0.3-0.5.
    - ``vanish_patience=5`` log rows: D briefly winning early in training is normal; five
      logs in a row (500 iterations at the default ``log_every``) is not.
    - ``collapse_fraction=0.10``: a fully collapsed G gives ~0, while samples of a single
      MNIST digit class still reach ~0.65 of the data's value (the 1s, the tightest class)
      and an untrained MLP G ~0.6. Early training dips far lower while healthy: the default
      run (mlp-mnist on the offline 5,000-digit sample, 2,000 iterations, seeds 0, 1, 2)
      goes from 0.30 at iteration 100 to a minimum of 0.18 / 0.16 / 0.17 at iterations
      400-500 (blurry, average-looking digits) and climbs back to 0.46 / 0.49 / 0.40 by
      2,000; the former 0.25 fired on all three. A tenth sits
      well below that dip and well above a collapsed G. Step 0 (the untrained G, nearly
      constant under small inits) is never judged.
    - ``explode_factor=10``, ``explode_floor=1.0``, ``explode_window=20``,
      ``explode_min_rows=5``: a loss is compared with the median magnitude of its last 20
      finite log rows (at least 1.0, so losses near 0 cannot trigger), and only once 5 rows
      are known. WGAN critic and G losses drift by orders of magnitude over a run, but
      smoothly: a running median follows the drift, and ten times the recent median is a
      blow-up, not a drift. Non-finite losses are reported without any of these conditions
      (once per run of non-finite rows).
    """

    def __init__(self, *, probabilities: bool, data_diversity: float | None = None,
                 saturating: bool = False,
                 vanish_below: float = 0.01, vanish_patience: int = 5,
                 collapse_fraction: float = 0.10, explode_factor: float = 10.0,
                 explode_floor: float = 1.0, explode_window: int = 20,
                 explode_min_rows: int = 5) -> None:
        if vanish_patience < 1 or explode_window < 1 or explode_min_rows < 1:
            raise ValueError("vanish_patience, explode_window and explode_min_rows must be >= 1")
        if explode_min_rows > explode_window:
            raise ValueError("explode_min_rows cannot exceed explode_window")
        self.probabilities = probabilities
        self.saturating = saturating  # G minimises log(1 - D(G(z))): its gradients do vanish
        self.data_diversity = data_diversity
        self.vanish_below, self.vanish_patience = vanish_below, vanish_patience
        self.collapse_fraction = collapse_fraction
        self.explode_factor, self.explode_floor = explode_factor, explode_floor
        self.explode_window, self.explode_min_rows = explode_window, explode_min_rows
        self._reset()

    def _reset(self) -> None:
        self.vanish_streak = 0  # consecutive rows with D(G(z)) below the threshold
        self.vanish_since: int | None = None  # the first step of that streak
        self.vanish_fired = False
        self.collapse_fired = False
        self.history: dict[str, deque[float]] = {
            k: deque(maxlen=self.explode_window) for k in LOSS_KEYS}
        self.exploded = dict.fromkeys(LOSS_KEYS, False)  # in a spike episode
        self.nonfinite = dict.fromkeys(LOSS_KEYS, False)  # in a NaN/inf episode

    # --- log rows ------------------------------------------------------------------------
    def check_row(self, step: int, row: dict[str, Any]) -> list[Warning]:
        """Warnings raised by one log row (means over the interval ending at ``step``)."""
        out = []
        w = self._check_vanishing(step, row)
        if w is not None:
            out.append(w)
        w = self._check_losses(step, row)
        if w is not None:
            out.append(w)
        return out

    def _check_vanishing(self, step: int, row: dict[str, Any]) -> Warning | None:
        fake = row.get("d_fake")
        if not self.probabilities or not _is_number(fake) or not math.isfinite(fake):
            return None
        if fake >= self.vanish_below:  # recovered: the next streak may warn again
            self.vanish_streak, self.vanish_since, self.vanish_fired = 0, None, False
            return None
        if self.vanish_streak == 0:
            self.vanish_since = step
        self.vanish_streak += 1
        if self.vanish_fired or self.vanish_streak < self.vanish_patience:
            return None
        self.vanish_fired = True
        real = row.get("d_real")
        d_x = f", D(x) = {real:.3g}" if _is_number(real) else ""
        seen = (f"D(G(z)) below {self.vanish_below:g} for the last {self.vanish_streak} logs "
                f"(now {fake:.3g}{d_x}, since iteration {self.vanish_since}): D is winning")
        if self.saturating:
            return Warning(step, "g_vanishing", (
                f"{seen} and the saturating G loss log(1 - D(G(z))) gives G almost no "
                "gradient; try the non-saturating G loss, a lower D learning rate or fewer D "
                "steps, or one-sided label smoothing"))
        return Warning(step, "g_vanishing", (
            f"{seen}; the non-saturating G loss still gives G gradients, but if the samples "
            "stop improving try a lower D learning rate or fewer D steps, or one-sided label "
            "smoothing"))

    def _check_losses(self, step: int, row: dict[str, Any]) -> Warning | None:
        bad: list[str] = []
        spikes: list[str] = []
        for key in LOSS_KEYS:
            v = row.get(key)
            if not _is_number(v):
                continue
            hist = self.history[key]
            if not math.isfinite(v):
                if not self.nonfinite[key]:
                    bad.append(f"{key} = {v}")
                self.nonfinite[key] = True
                continue  # NaN/inf never enter the reference window
            self.nonfinite[key] = False
            ref = max(statistics.median(hist), self.explode_floor) if hist else math.inf
            high = len(hist) >= self.explode_min_rows and abs(v) > self.explode_factor * ref
            if high and not self.exploded[key]:
                spikes.append(f"|{key}| = {abs(v):.3g} vs a median of {ref:.3g} "
                              f"over the last {len(hist)} logs")
            self.exploded[key] = high
            # spikes enter the window too: a lasting shift of level (WGAN losses drift)
            # becomes the new reference instead of warning forever
            hist.append(abs(v))
        if bad:
            seen = "; ".join(bad + spikes)
            return Warning(step, "loss_explosion", (
                f"non-finite loss at iteration {step} ({seen}): training has diverged; "
                "resume from the last checkpoint with lower learning rates, amp off, or a "
                "gradient penalty (R1, WGAN-GP)"))
        if spikes:
            return Warning(step, "loss_explosion", (
                f"loss jumped more than {self.explode_factor:g}x at iteration {step} "
                f"({'; '.join(spikes)}): training may be diverging; try lower learning "
                "rates, spectral norm or a gradient penalty (R1, WGAN-GP)"))
        return None

    # --- sample grids ----------------------------------------------------------------------
    def check_samples(self, step: int, samples: torch.Tensor) -> list[Warning]:
        """Warnings raised by the fixed-noise samples (N, ...) generated at ``step``."""
        if self.data_diversity is None or self.data_diversity <= 0 or step == 0 \
                or samples.shape[0] < 2:
            return []
        # the first 1,024 are plenty for a mean (toy runs show 10,000: a 760 MB matrix)
        spread = mean_pairwise_distance(samples[:1024])
        threshold = self.collapse_fraction * self.data_diversity
        if spread >= threshold or not math.isfinite(spread):
            self.collapse_fired = False
            return []
        if self.collapse_fired:
            return []
        self.collapse_fired = True
        share = spread / self.data_diversity
        return [Warning(step, "mode_collapse", (
            f"the fixed-noise samples are nearly alike at iteration {step}: mean pairwise "
            f"distance {spread:.3g}, {share:.0%} of the real data's {self.data_diversity:.3g} "
            f"(warns below {self.collapse_fraction:.0%}): G may be collapsing onto few modes; "
            "try a lower G learning rate, WGAN-GP or R1, spectral norm, or resume from an "
            "earlier checkpoint"))]

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The monitor's running state as plain values (for checkpoints)."""
        return {
            "vanish_streak": self.vanish_streak,
            "vanish_since": self.vanish_since,
            "vanish_fired": self.vanish_fired,
            "collapse_fired": self.collapse_fired,
            "history": {k: list(v) for k, v in self.history.items()},
            "exploded": dict(self.exploded),
            "nonfinite": dict(self.nonfinite),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset()
        self.vanish_streak = int(state["vanish_streak"])
        since = state["vanish_since"]
        self.vanish_since = None if since is None else int(since)
        self.vanish_fired = bool(state["vanish_fired"])
        self.collapse_fired = bool(state["collapse_fired"])
        for k in LOSS_KEYS:
            self.history[k].extend(float(v) for v in state["history"].get(k, []))
            self.exploded[k] = bool(state["exploded"].get(k, False))
            self.nonfinite[k] = bool(state["nonfinite"].get(k, False))


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
