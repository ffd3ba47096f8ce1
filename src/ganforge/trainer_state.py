"""A run's checkpoint state, in one format whether the run trained alone or in a stack.

Run k of a sweep is saved exactly as the single run with its config would be: its own G, D
(and EMA G) weights, its optimisers' state_dicts, its data order and noise streams, and its
statistics since the last log row, so `ganforge sample`/`eval`/`--resume` read it alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import load_module_state
from .errors import GanforgeError
from .rng import rng_state, set_rng_state

if TYPE_CHECKING:
    from .train import Trainer


def run_state(t: Trainer, k: int) -> dict[str, Any]:
    G, D = t.run_modules(k)
    state = {
        "step": t.step_count,
        "config": t.configs[k].to_dict(),
        "data_shape": list(t.data.shape),
        "num_classes": t.num_classes,
        "G": dict(G.state_dict()),
        "D": dict(D.state_dict()),
        "opt_g": t.opts_g[k].state_dict(),
        "opt_d": t.opts_d[k].state_dict(),
        "sampler": t.samplers[k].state_dict(),
        "rng": rng_state(t.gens[k], t.data_gens[k]),
        "d_steps": t.d_steps,
        "stats": t.stats[k].clone(),  # sums since the last log row, for exact resume
        "counts": list(t.counts),
        "objective": t.objective.state_dict(),
    }
    if t.configs[k].ema > 0:
        state["G_ema"] = dict(t.sampling_G_of(k).state_dict())
    return state


def load_run_state(t: Trainer, state: dict[str, Any], path: str | Path, k: int) -> None:
    if list(state.get("data_shape", [])) != list(t.data.shape):
        raise GanforgeError(f"{path}: trained on data of shape {state.get('data_shape')}, "
                            f"but this run's data has shape {list(t.data.shape)}")
    G, D = t.run_nets[k]
    load_module_state(G, state["G"], "G", path)
    load_module_state(D, state["D"], "D", path)
    if t.R > 1:  # into run k's slices of the stack
        t.G.load_run(G, k)
        t.D.load_run(D, k)
    if t.G_ema is not None:
        ema = state.get("G_ema", state["G"])
        if t.R == 1:
            load_module_state(t.G_ema, ema, "G_ema", path)
        else:
            G_ema = t.sampling_G_of(k) if t.configs[k].ema > 0 else G
            load_module_state(G_ema, ema, "G_ema", path)
            t.G_ema.load_run(G_ema, k)
    try:
        t.opts_g[k].load_state_dict(state["opt_g"])
        t.opts_d[k].load_state_dict(state["opt_d"])
    except (ValueError, KeyError) as e:
        raise GanforgeError(f"{path}: optimiser state does not fit the model "
                            f"({str(e).splitlines()[0]})") from None
    try:  # checked for presence and type already; a foreign layout inside still fails here
        t.samplers[k].load_state_dict(state["sampler"])
        set_rng_state(state["rng"], t.gens[k], t.data_gens[k])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
        raise GanforgeError(f"{path}: checkpoint fields 'sampler'/'rng' do not hold this "
                            f"run's data order and random streams ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    t.step_count = int(state["step"])
    t.d_steps = int(state.get("d_steps", t.step_count * t.cfg.k_d))
    if "stats" in state and state["stats"].shape == t.stats[k].shape:
        t.stats[k].copy_(state["stats"])
        t.counts = [int(c) for c in state["counts"]]
    t.objective.load_state_dict(state.get("objective", {}))
