"""Export a trained generator as ONNX or a torch.export program (.pt2), usable without ganforge.

Either file maps noise ``z`` (float32, (N, z_dim)) [and class labels ``y`` (int64, (N,))] to
samples ``x`` (N, *data_shape) in G's output range, with N free. What a user needs to draw z
(the prior, z_dim) and read x (out_range, data_shape) travels with the file: in the ONNX
model's metadata_props, in the .pt2 archive's extra file ``ganforge.json``, and in a sidecar
JSON beside either (``FILE.json``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import GanforgeError
from .files import atomic_path, atomic_write_json, check_out
from .generator import TrainedGenerator, load, resolve_checkpoint, run_folder_of
from .version import __version__

FORMATS = ("onnx", "pt2")
OPSET = 18
EXTRA_FILE = "ganforge.json"
# How each prior's z is drawn, in words a user of the exported file can act on.
PRIOR_RECIPES = {
    "uniform": "z ~ U(-1, 1) independently in every dimension",
    "normal": "z ~ N(0, I) (standard normal in every dimension)",
}


def metadata(g: TrainedGenerator, data_shape: tuple[int, ...]) -> dict[str, Any]:
    """What a user of the exported file needs to make z (and y) and to read x."""
    cfg = g.config
    return {
        "producer": f"ganforge {__version__}",
        "z_dim": g.z_dim,
        "prior": cfg.prior,
        "z_recipe": PRIOR_RECIPES.get(cfg.prior, f"z from ganforge prior {cfg.prior!r}"),
        "num_classes": g.num_classes,
        "out_range": list(g.out_range) if g.out_range else None,
        "data_shape": list(data_shape),
        "step": g.step,
        "ema": g.ema,
        "model": cfg.model,
        "preset": cfg.preset,
        "dataset": cfg.dataset,
        "inputs": ["z", "y"] if g.num_classes else ["z"],
        "outputs": ["x"],
    }


def export(path: str | Path, out: str | Path | None = None, fmt: str | None = None,
           batch: int = 2, verify: bool = True) -> Path:
    """Export the generator of run folder/checkpoint ``path`` to ``out`` as ``fmt``.

    ``fmt`` defaults to ``out``'s suffix; ``batch`` is the example batch traced (the batch
    dimension stays dynamic). With ``verify`` the exported file is run at another batch size
    and compared with G. Returns the written file.
    """
    fmt, out = _resolve_target(fmt, out)
    if batch < 2:  # torch.export specialises a dimension of size 1 to a constant
        raise GanforgeError(f"--batch must be at least 2 (the batch stays dynamic), got {batch}")
    if fmt == "onnx":
        _require_onnx()
    ckpt = resolve_checkpoint(path)
    check_out(out, [ckpt, *run_folder_of(ckpt)])
    g = load(ckpt)
    G = g.G.eval()  # BatchNorm uses its running statistics: a sample must not depend on the batch
    example = example_inputs(g, batch)
    with torch.no_grad():
        data_shape = tuple(G(*example).shape[1:])
    meta = metadata(g, data_shape)
    # written and checked under a temporary name: a failed export leaves the target as it was
    with _quiet(), atomic_path(out) as tmp:
        (_export_onnx if fmt == "onnx" else _export_pt2)(G, example, tmp, meta)
        if verify:
            _verify(G, g, fmt, tmp, batch + 3)
    atomic_write_json(out.with_name(out.name + ".json"), meta)
    return out


def example_inputs(g: TrainedGenerator, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``(z,)`` or ``(z, y)`` for a batch of ``n``; z from the run's prior, y cycling classes."""
    from .priors import PRIORS

    gen = torch.Generator().manual_seed(seed)
    z = PRIORS.get(g.config.prior)(n, g.z_dim, gen)
    if not g.num_classes:
        return (z,)
    return z, torch.arange(n) % g.num_classes


def _resolve_target(fmt: str | None, out: str | Path | None) -> tuple[str, Path]:
    if fmt is None:
        suffix = Path(out).suffix.lstrip(".").lower() if out else ""
        if suffix not in FORMATS:
            raise GanforgeError("--format: expected onnx or pt2 (or an --out ending in .onnx "
                                f"or .pt2), got {'--out ' + str(out) if out else 'neither'}")
        fmt = suffix
    if fmt not in FORMATS:
        raise GanforgeError(f"--format: expected onnx or pt2, got {fmt!r}")
    return fmt, Path(out) if out else Path(f"generator.{fmt}")


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise GanforgeError(f"ONNX export needs the onnx and onnxscript packages ({e.name} is "
                            "missing): pip install 'ganforge[export]'") from None


def _dynamic_shapes(example: tuple[torch.Tensor, ...]) -> tuple[dict, ...]:
    batch = torch.export.Dim("batch")
    return tuple({0: batch} for _ in example)  # z and y share one batch size


def _export_pt2(G: torch.nn.Module, example: tuple[torch.Tensor, ...], out: Path,
                meta: dict[str, Any]) -> None:
    try:
        program = torch.export.export(G, example, dynamic_shapes=_dynamic_shapes(example))
        torch.export.save(program, out, extra_files={EXTRA_FILE: json.dumps(meta)})
    except Exception as e:  # torch's errors are pages long: keep the first line
        raise GanforgeError(f"pt2 export failed: {_first_line(e)}") from e


def _export_onnx(G: torch.nn.Module, example: tuple[torch.Tensor, ...], out: Path,
                 meta: dict[str, Any]) -> None:
    import onnx

    names = ["z", "y"][:len(example)]
    try:
        program = torch.onnx.export(G, example, None, input_names=names, output_names=["x"],
                                    dynamic_shapes=_dynamic_shapes(example), opset_version=OPSET,
                                    dynamo=True, verbose=False)
        for key, value in meta.items():  # metadata_props hold strings; JSON for the rest
            program.model.metadata_props[key] = value if isinstance(value, str) else json.dumps(
                value)
        # one self-contained file: a generator is far below protobuf's 2 GB limit
        program.save(out, external_data=False)
        onnx.checker.check_model(str(out), full_check=True)
    except Exception as e:
        raise GanforgeError(f"ONNX export failed: {_first_line(e)}") from e


def _verify(G: torch.nn.Module, g: TrainedGenerator, fmt: str, out: Path, n: int) -> None:
    """Run the written file at a batch size other than the traced one; it must match G."""
    inputs = example_inputs(g, n, seed=1)
    with torch.no_grad():
        want = G(*inputs)
    try:
        got = _run_exported(fmt, out, inputs)
    except Exception as e:
        raise GanforgeError(f"{fmt} export failed: {out} does not run ({_first_line(e)})") from e
    if got is None:
        return
    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-4, rtol=1e-4):
        raise GanforgeError(f"{fmt} export failed: {out} does not reproduce the generator at "
                            f"batch {n} (expected outputs within 1e-4)")


def _run_exported(fmt: str, out: Path, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
    if fmt == "pt2":
        with torch.no_grad():
            return torch.export.load(out).module()(*inputs)
    try:
        import onnxruntime as ort
    except ImportError:  # onnx.checker has passed the file; running it is a bonus
        return None
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(["z", "y"], inputs, strict=False)}
    return torch.from_numpy(session.run(["x"], feeds)[0])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress lines and advisory warnings (e.g. torchvision missing);
    errors still surface as exceptions."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
