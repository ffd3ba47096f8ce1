"""Gradients of MLP GANs derived by hand: the CPU's fast path (``backward: auto|manual``).

On a CPU the seed MLPs' matmuls run near the machine's peak, and much of the rest of an
eager iteration is bookkeeping: autograd recording a graph it walks once, modules
dispatching per call, gradients allocated and zeroed. For a chain of Linear layers and
point-wise activations the chain rule is three matmuls per layer, so this module runs the
chain directly and writes each parameter's ``.grad``, with the kernels autograd itself would
run; the optimiser, the statistics and the checkpoints see what autograd would have
produced. The objective's gradient with respect to D's outputs comes from
``Objective.d_loss_grad``/``g_loss_grad``.

A chain holds either ``nn.Linear`` layers (weights ``(out, in)``) or the stacked weights of
R runs of a sweep (``(R, out, in)``, see :mod:`ganforge.stack`), whose products mirror the
single run's so that run k computes what the single run computes.

What the hand path covers is declared where each piece is: every penalty
(``Penalty.by_hand``) and remedy (``Remedy.by_hand``) says whether it is covered, and a term
that does not say so is refused here. As a last guard the Trainer compares one hand-derived
D and G step with autograd's at setup (:func:`agree`) and falls back on a mismatch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config
from .losses import Objective
from .models.mlp import MLPDiscriminator, MLPGenerator
from .penalties import PENALTIES
from .remedies import (
    MinibatchStdLinear,
    active_remedies,
    minibatch_std,
    minibatch_std_backward,
    top_k,
)

aten = torch.ops.aten

# activation -> (in-place forward, backward from the activation's *output*)
_ACTS: dict[type[nn.Module], tuple[Callable, Callable | None]] = {
    nn.ReLU: (lambda x, m: x.relu_(), lambda g, out, m: aten.threshold_backward(g, out, 0)),
    nn.Sigmoid: (lambda x, m: x.sigmoid_(), lambda g, out, m: aten.sigmoid_backward(g, out)),
    nn.Tanh: (lambda x, m: x.tanh_(), lambda g, out, m: aten.tanh_backward(g, out)),
    nn.LeakyReLU: (lambda x, m: F.leaky_relu_(x, m.negative_slope),
                   lambda g, out, m: aten.leaky_relu_backward(g, out, m.negative_slope, True)),
    nn.Identity: (lambda x, m: x, None),
}
MODELS = ("mlp", "mlp-1d", "mlp-2d")


class Chain:
    """Linear layers, each followed by one point-wise activation (or none). A layer's
    ``mbstd`` group (0: none) appends the minibatch-std feature of its input first, as
    :class:`~ganforge.remedies.MinibatchStdLinear` does."""

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 acts: Sequence[nn.Module], stacked: bool = False,
                 mbstd: Sequence[int] | None = None) -> None:
        for act in acts:
            if type(act) not in _ACTS:
                raise ValueError(f"activation {type(act).__name__}")
        self.layers = list(zip(weights, biases, acts, strict=True))
        self.stacked = stacked
        self.mbstd = list(mbstd) if mbstd is not None else [0] * len(self.layers)

    @classmethod
    def of(cls, net: nn.Sequential) -> Chain:
        """The chain of an ``nn.Sequential`` of Linear layers and activations."""
        linears: list[nn.Linear] = []
        acts: list[nn.Module] = []
        mbstd: list[int] = []
        for m in net:
            # exactly these types: a subclass, or spectral norm's parametrised class, does more
            if type(m) in (nn.Linear, MinibatchStdLinear):
                if m.bias is None:
                    raise ValueError("a Linear layer without bias")
                linears.append(m)
                acts.append(nn.Identity())
                mbstd.append(m.group if type(m) is MinibatchStdLinear else 0)
            elif isinstance(m, nn.Flatten) and not linears:
                continue
            elif linears and len(acts) == len(linears) and isinstance(acts[-1], nn.Identity):
                acts[-1] = m
            else:
                raise ValueError(f"{type(m).__name__} in {type(net).__name__}")
        return cls([m.weight for m in linears], [m.bias for m in linears], acts, mbstd=mbstd)

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output (written into ``out`` if given) and what ``backward`` reads: each
        layer's input, then the last output."""
        saved = []
        last = len(self.layers) - 1
        for i, (W, b, act) in enumerate(self.layers):
            if self.mbstd[i]:
                x = torch.cat([x, minibatch_std(x, self.mbstd[i], runs=self.stacked)], -1)
            saved.append(x)
            dst = out if i == last else None
            if self.stacked:
                x = _stacked_linear(x, W, b, dst)
            else:
                x = torch.addmm(b, x, W.t(), out=dst)
            x = _ACTS[type(act)][0](x, act)
        saved.append(x)
        return x, saved

    def backward(self, saved: list[torch.Tensor], grad: torch.Tensor, *, params: bool,
                 inputs: bool) -> torch.Tensor | None:
        """Back-propagate ``grad`` (d loss / d output). ``params``: set each weight's and
        bias's ``.grad``; ``inputs``: return d loss / d input."""
        for i in range(len(self.layers) - 1, -1, -1):
            W, b, act = self.layers[i]
            act_backward = _ACTS[type(act)][1]
            if act_backward is not None:  # the layer's output: the next input less its std
                grad = act_backward(grad, saved[i + 1].narrow(-1, 0, W.shape[-2]), act)
            if params:
                if self.stacked:
                    W.grad = _per_run(torch.mm, grad.mT, saved[i], like=W)
                    b.grad = grad.sum(1)
                else:
                    W.grad = torch.mm(grad.t(), saved[i])
                    b.grad = grad.sum(0)
            if i == 0 and not inputs:
                return None
            grad = _per_run(torch.mm, grad, W) if self.stacked else torch.mm(grad, W)
            if self.mbstd[i]:  # the extra input's gradient, back to the features it came from
                h = saved[i].narrow(-1, 0, W.shape[-1] - 1)
                grad = grad.narrow(-1, 0, h.shape[-1]) + minibatch_std_backward(
                    h, grad.select(-1, -1), self.mbstd[i], runs=self.stacked)
        return grad


# On a CPU the products loop over the runs in Python (a few microseconds per call), each run's
# product the very call its single run makes, so run k computes bit for bit what its single
# run computes, which the sweep's parity with `ganforge train` rests on. A batched matmul does
# not: with two threads MKL splits baddbmm otherwise than addmm (seen on the 2-core CI
# machine), and where a factor is a vector (D's logit) BLAS takes a matrix-vector path whose
# sums differ. GPUs take one batched kernel.
def _loops(t: torch.Tensor) -> bool:
    return t.device.type == "cpu"


def _per_run(mm: Callable, a: torch.Tensor, b: torch.Tensor,
             like: torch.Tensor | None = None) -> torch.Tensor:
    """``bmm(a, b)``, or run by run into one stacked result (see ``_loops``)."""
    if not _loops(a):
        return torch.bmm(a, b)
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return torch.stack([mm(x, y) for x, y in zip(a.unbind(0), b.unbind(0), strict=True)])
    out = a.new_empty(a.shape[0], a.shape[1], b.shape[2]) if like is None else \
        torch.empty_like(like)
    for k in range(a.shape[0]):
        mm(a[k], b[k], out=out[k])
    return out


def _stacked_linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
                    dst: torch.Tensor | None) -> torch.Tensor:
    """x (R, B, in) -> x W^T + b for each run's (out, in) weights, as nn.Linear computes."""
    if not _loops(x):
        return torch.baddbmm(b.unsqueeze(-2), x, W.mT, out=dst)
    if torch.is_grad_enabled() and (x.requires_grad or W.requires_grad):
        return torch.stack([torch.addmm(b[k], x[k], W[k].t()) for k in range(x.shape[0])])
    if dst is None:
        dst = x.new_empty(x.shape[0], x.shape[1], W.shape[1])
    for k in range(x.shape[0]):
        torch.addmm(b[k], x[k], W[k].t(), out=dst[k])
    return dst


def hand_gradients(cfg: Config, G: nn.Module, D: nn.Module, objective: Objective,
                   penalties: Sequence[str] = ()) -> MLPGradients:
    """The hand-derived passes for this run; ValueError says why they do not apply."""
    if type(G) is not MLPGenerator or type(D) is not MLPDiscriminator:
        raise ValueError(f"model {cfg.model!r} (it covers the plain MLP G and D)")
    reasons = [(cfg.conditional, "conditional models"), (cfg.spectral_norm, "spectral norm"),
               (cfg.compile, "torch.compile"), (cfg.amp != "off", "bf16 autocast")]
    reasons += [(not PENALTIES.get(n).by_hand, f"the penalty {n}") for n in penalties]
    reasons += [(True, f"the mode-collapse remedy {name}")
                for name in active_remedies(cfg, unless="by_hand")]
    for bad, what in reasons:
        if bad:
            raise ValueError(what)
    try:
        return MLPGradients(Chain.of(G.net), Chain.of(D.net), objective)
    except (AttributeError, ValueError) as e:
        raise ValueError(f"layers it does not know ({e})") from None


def agree(hand: Sequence[torch.Tensor], auto: Sequence[torch.Tensor | None],
          rtol: float = 1e-3) -> str | None:
    """None when two sets of gradients agree (relative L2 error per tensor <= ``rtol``, loose
    enough for float32 summation order), else which tensor differs and by how much."""
    for i, (h, a) in enumerate(zip(hand, auto, strict=True)):
        if a is None:
            a = torch.zeros_like(h)
        err = float(torch.linalg.vector_norm(h - a)) / max(float(torch.linalg.vector_norm(a)),
                                                          1e-12)
        if not err <= rtol:  # NaN disagrees too
            return f"parameter {i}: relative difference {err:.2g}"
    return None


class MLPGradients:
    """The D step's and the G step's forward and backward passes, for MLP G and D (one GAN,
    or R stacked ones: then every tensor has a leading run axis)."""

    def __init__(self, g_chain: Chain, d_chain: Chain, objective: Objective) -> None:
        self.g_chain, self.d_chain, self.objective = g_chain, d_chain, objective
        self._x: torch.Tensor | None = None  # D's input, real then fake, reused every step

    def d_backward(self, real: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
        """D's loss on ``real`` and G(z), D's outputs on both (real first), and D's
        gradients in ``.grad``."""
        with torch.no_grad():
            if not self.d_chain.stacked:  # a sweep's batches come flat already
                real = real.flatten(1)
            B = real.shape[-2]
            shape = (*real.shape[:-2], 2 * B, real.shape[-1])
            if self._x is None or self._x.shape != shape:
                self._x = real.new_empty(shape)
            x = self._x
            x.narrow(-2, 0, B).copy_(real)
            self.g_chain.forward(z, out=x.narrow(-2, B, B))  # G(z) straight into D's input
            out, saved = self.d_chain.forward(x)
            out = out.squeeze(-1)
            loss, g_real, g_fake = self.objective.d_loss_grad(out.narrow(-1, 0, B),
                                                              out.narrow(-1, B, B))
            grad = torch.cat([g_real, g_fake], -1).unsqueeze(-1)
            self.d_chain.backward(saved, grad, params=True, inputs=False)
        return loss, out

    def g_backward(self, z: torch.Tensor, topk: float = 1.0) -> torch.Tensor:
        """G's loss on G(z) (over the share ``topk`` of the samples D scores best,
        :func:`ganforge.remedies.top_k`), and G's gradients in ``.grad`` (D's are left as
        they are)."""
        with torch.no_grad():
            fake, g_saved = self.g_chain.forward(z)
            out, d_saved = self.d_chain.forward(fake)
            out = out.squeeze(-1)
            kept, idx = top_k(self.objective, out, topk)
            loss, grad = self.objective.g_loss_grad(kept)
            if idx is not None:  # the samples left out get no gradient
                grad = torch.zeros_like(out).scatter_(-1, idx, grad)
            grad = self.d_chain.backward(d_saved, grad.unsqueeze(-1), params=False, inputs=True)
            self.g_chain.backward(g_saved, grad, params=True, inputs=False)
        return loss
