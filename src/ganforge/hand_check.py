"""Which backward a run uses: autograd's, or the MLP gradients derived by hand
(:mod:`ganforge.mlp_grads`, the CPU's fast path), after checking them against autograd's.

At setup, one D step and one G step are computed both ways on copies of G and D, from inputs
drawn from a stream no run draws from; a mismatch (a mutated backward, a D-loss term the
hand path does not know) falls back to autograd with a note in config.json.
"""

from __future__ import annotations

import copy
import math
import sys
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import GanforgeError
from .mlp_grads import MLPGradients, agree, hand_gradients
from .remedies import g_loss_top_k

if TYPE_CHECKING:
    from .train import Trainer

CHECK_SEED = 0xC4EC  # the self-check's inputs: a stream no run draws from


def choose_backward(self: Trainer) -> tuple[MLPGradients | None, str]:
    """MLP gradients derived by hand (``backward``): by default on CPUs, where autograd's
    bookkeeping costs about an eighth of an iteration (benchmarks/README.md); on GPUs the
    CUDA graph already removes it. Checked against autograd once, on copies, first."""
    mode = self.cfg.backward
    if mode == "autograd" or (mode == "auto" and self.device.type != "cpu"):
        return None, "autograd"
    try:
        hand = make_hand(self, self.G, self.D)
    except ValueError as e:
        if mode == "manual":
            raise GanforgeError(f"backward=manual: hand-derived gradients do not cover {e}; "
                                "use backward=autograd") from None
        return None, "autograd"
    why = hand_disagrees(self)
    if why is None:
        return hand, "by hand"
    if mode == "manual":
        raise GanforgeError(f"backward=manual: the hand-derived gradients disagree with "
                            f"autograd's at setup ({why}); use backward=autograd")
    note = f"autograd (the hand-derived gradients disagreed with autograd's at setup: {why})"
    print(f"ganforge: warning: {note}", file=sys.stderr)
    return None, note

def make_hand(self: Trainer, G: nn.Module, D: nn.Module) -> MLPGradients:
    names = [n for _, _, n in self.penalties]
    G0, D0 = self.run_nets[0]
    hand = hand_gradients(self.cfg, G0, D0, self.objective, names)  # what it covers
    if self.R == 1:
        return hand if G is G0 else hand_gradients(self.cfg, G, D, self.objective, names)
    return MLPGradients(G.chain(), D.chain(), self.objective)

def hand_disagrees(self: Trainer) -> str | None:
    """One D step and one G step by hand and by autograd, on copies of G and D and on
    inputs from a stream of their own (the run's streams are untouched): None if they
    agree, else where they differ."""
    G, D = copy.deepcopy(self.G), copy.deepcopy(self.D)
    hand = make_hand(self, G, D)
    gen = torch.Generator(self.device).manual_seed(CHECK_SEED)
    B = self.local_batch
    shape = (B, *self.data.shape) if self.R == 1 else (self.R, B, math.prod(self.data.shape))
    real = torch.rand(shape, generator=gen, device=self.device)
    z = self._per_run(lambda k, g: self.priors[k](B, self.cfg.z_dim, gen))
    checks = []
    for net in (D, G):
        for p in (*G.parameters(), *D.parameters()):
            p.grad = None
        if net is D:
            hand.d_backward(real, z)
        else:
            hand.g_backward(z, self.cfg.topk)
        by_hand = [p.grad.clone() for p in net.parameters()]
        for p in (*G.parameters(), *D.parameters()):
            p.grad = None
        if net is D:
            loss, _ = self._d_loss(real, None, z, None, G=G, D=D, gens=[gen] * self.R)
        else:
            D.requires_grad_(False)
            loss = g_loss_top_k(self.objective, D(G(z)), self.cfg.topk)
        loss.sum().backward()
        D.requires_grad_(True)
        why = agree(by_hand, [p.grad for p in net.parameters()])
        if why is not None:
            checks.append(f"{'D' if net is D else 'G'} step, {why}")
    return "; ".join(checks) or None
