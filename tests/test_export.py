"""Export to ONNX and .pt2: the files run without ganforge, at any batch size, and match G."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import GENERATOR_RUNS

import ganforge
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.export import EXTRA_FILE, example_inputs, export

TRACED, CHECKED = 3, 5  # batch traced at export, batch run afterwards
RUNS = GENERATOR_RUNS


@pytest.fixture(scope="module")
def runs(generator_runs: dict[str, str]) -> dict[str, str]:
    return generator_runs


@pytest.fixture(scope="module")
def exported(runs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every run in both formats, traced at batch TRACED: {(name, format): file}."""
    root = tmp_path_factory.mktemp("exports")
    return {(name, fmt): export(runs[name], root / f"{name}.{fmt}", fmt, batch=TRACED)
            for name in RUNS for fmt in ("onnx", "pt2")}


def expected(run: str, n: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Inputs for a batch of ``n`` and what ganforge's own generator makes of them."""
    g = ganforge.load(run)
    inputs = example_inputs(g, n, seed=7)
    with torch.no_grad():
        return inputs, g(*inputs)


def decode(value: str):
    """An ONNX metadata value: JSON, except for plain strings."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def check_metadata(meta: dict, run: str) -> None:
    g = ganforge.load(run)
    assert meta["z_dim"] == g.z_dim and meta["prior"] == g.config.prior
    assert meta["num_classes"] == g.num_classes and meta["step"] == 2
    assert meta["out_range"] == (list(g.out_range) if g.out_range else None)
    assert meta["ema"] == g.ema
    assert meta["data_shape"] == ([1] if g.config.model == "mlp-1d" else [1, 28, 28])


@pytest.mark.parametrize("name", list(RUNS))
def test_onnx_runs_in_onnxruntime_at_any_batch(runs, exported, name):
    out = exported[name, "onnx"]
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    props = {p.key: p.value for p in model.metadata_props}
    check_metadata({k: decode(v) for k, v in props.items()}, runs[name])

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    conditional = name == "cond"
    assert [i.name for i in session.get_inputs()] == (["z", "y"] if conditional else ["z"])
    assert [o.name for o in session.get_outputs()] == ["x"]
    if conditional:
        assert session.get_inputs()[1].type == "tensor(int64)"
    assert session.get_modelmeta().custom_metadata_map["prior"] == props["prior"]

    inputs, want = expected(runs[name], CHECKED)
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
    got = session.run(["x"], feeds)[0]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=0)
    # one sample alone gives what it gave in the batch: BatchNorm ran in eval mode
    alone = session.run(["x"], {k: v[:1] for k, v in feeds.items()})[0]
    np.testing.assert_allclose(alone, got[:1], atol=1e-5, rtol=0)
    assert json.loads(out.with_name(out.name + ".json").read_text())["z_dim"] == int(
        props["z_dim"])


@pytest.mark.parametrize("name", list(RUNS))
def test_pt2_loads_with_torch_export_at_any_batch(runs, exported, name):
    out = exported[name, "pt2"]
    extra = {EXTRA_FILE: ""}
    module = torch.export.load(out, extra_files=extra).module()
    check_metadata(json.loads(extra[EXTRA_FILE]), runs[name])
    sidecar = out.with_name(out.name + ".json")
    assert json.loads(sidecar.read_text()) == json.loads(extra[EXTRA_FILE])

    inputs, want = expected(runs[name], CHECKED)
    with torch.no_grad():
        got = module(*inputs)
        alone = module(*(t[:1] for t in inputs))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, got[:1], atol=1e-5, rtol=0)


@pytest.mark.slow  # a fresh interpreter importing torch: seconds
def test_exports_run_where_ganforge_cannot_be_imported(runs, exported, tmp_path):
    """A fresh interpreter in which ``import ganforge`` fails loads both files and gets G's
    outputs: nothing in them points back into ganforge."""
    inputs, want = expected(runs["cond"], 4)
    torch.save(inputs, tmp_path / "inputs.pt")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ganforge"] = None  # any import of ganforge now raises ImportError
        import numpy as np, onnxruntime as ort, torch
        z, y = torch.load("inputs.pt")
        s = ort.InferenceSession({str(exported["cond", "onnx"])!r},
                                 providers=["CPUExecutionProvider"])
        np.save("onnx.npy", s.run(["x"], {{"z": z.numpy(), "y": y.numpy()}})[0])
        with torch.no_grad():
            G = torch.export.load({str(exported["cond", "pt2"])!r}).module()
            np.save("pt2.npy", G(z, y).numpy())
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for fmt in ("onnx", "pt2"):
        np.testing.assert_allclose(np.load(tmp_path / f"{fmt}.npy"), want.numpy(), atol=1e-5,
                                   rtol=0)


def test_cli_export_infers_the_format_from_the_suffix(runs, tmp_path, capsys):
    out = tmp_path / "nested" / "mnist.pt2"
    assert main(["export", runs["mlp"], "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.is_file() and (tmp_path / "nested" / "mnist.pt2.json").is_file()
    out = tmp_path / "model.bin"
    assert main(["export", runs["toy"], "--format", "pt2", "--out", str(out),
                 "--batch", "4"]) == 0
    inputs, want = expected(runs["toy"], 2)
    torch.testing.assert_close(torch.export.load(out).module()(*inputs), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "--format: expected onnx or pt2, got 'tflite'"),
    (["--out", "g.bin"], "--format: expected onnx or pt2 (or an --out ending in .onnx"),
    (["--format", "pt2", "--batch", "1"], "--batch must be at least 2"),
])
def test_cli_export_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys, args, message):
    assert main(["export", runs["mlp"], *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ganforge: error:") and message in err


def test_cli_export_missing_run(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--format", "onnx"]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_missing_onnx_package_is_named(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    with pytest.raises(GanforgeError, match=r"onnxscript is missing\): pip install"):
        export(runs["mlp"], tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


def test_exporter_failure_is_one_line(runs, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("cannot trace\nthree pages of guards follow")

    monkeypatch.setattr(torch.export, "export", broken)
    with pytest.raises(GanforgeError) as info:
        export(runs["cond"], tmp_path / "g.pt2")
    assert str(info.value) == "pt2 export failed: RuntimeError: cannot trace"
