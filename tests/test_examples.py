"""The example notebooks run end to end (with tiny step counts) and show what they promise."""

import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "classic_gan.ipynb"

# Appended to the executed copy only: what the kernel sees of this test's environment.
PROBE = """
import json, os, ganforge
print(json.dumps({"cache": os.environ.get("GANFORGE_CACHE"),
                  "mirrors": os.environ.get("GANFORGE_MIRRORS"),
                  "ganforge": ganforge.__file__}))
"""


def _tagged(nb, tag):
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert cells, f"no cell tagged {tag!r} in {NOTEBOOK.name}"
    return cells


def _images(cells):
    return [o for c in cells for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]


def _stdout(cells):
    return "".join(o.get("text", "") for c in cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def test_notebook_is_saved_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


def test_classic_gan_notebook_runs(tmp_path, monkeypatch):
    # The kernel inherits this environment: tiny runs, run folders in tmp_path, the package
    # from this checkout, and conftest's offline cache and closed-port mirrors.
    monkeypatch.setenv("GANFORGE_EXAMPLE_STEPS", "4")
    monkeypatch.setenv("GANFORGE_EXAMPLE_TOY_STEPS", "4")
    monkeypatch.setenv("GANFORGE_EXAMPLE_OUT", str(tmp_path / "runs"))
    src = str(REPO / "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE.strip(), metadata={"tags": ["probe"]}))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors

    seen = json.loads(_stdout(_tagged(nb, "probe")).strip().splitlines()[-1])
    assert seen["cache"] == os.environ["GANFORGE_CACHE"]
    assert seen["mirrors"] == os.environ["GANFORGE_MIRRORS"]
    assert Path(seen["ganforge"]).resolve().is_relative_to(REPO / "src")

    # section 4: the first and last sample grids, the loss curves, the loaded G's samples
    assert len(_images(_tagged(nb, "mnist-grids"))) == 2
    assert len(_images(_tagged(nb, "mnist-curves"))) == 2
    assert len(_images(_tagged(nb, "mnist-sample"))) == 1
    # section 5: the first and last density plots, and the sample statistics
    assert len(_images(_tagged(nb, "toy-plots"))) == 2
    assert "G's samples: mean" in _stdout(_tagged(nb, "toy-numbers"))

    runs = tmp_path / "runs"
    record = json.loads((runs / "mlp-mnist" / "config.json").read_text())
    assert record["steps"] == 4
    assert record["data_used"]["dataset"] == "mnist-sample"  # offline: nothing downloaded
    assert (runs / "toy-1d" / "checkpoints" / "final.safetensors").is_file()
