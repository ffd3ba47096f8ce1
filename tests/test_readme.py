"""The README's latent-walk and export examples run as written, on tiny trained runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np

from ganforge.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(section: str, lang: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(rf"```{lang}\n(.*?)```", text[start:end if end > 0 else None], re.S)


def test_latent_walk_and_export_examples_run_as_written(generator_runs, tmp_path, monkeypatch,
                                                         capsys):
    monkeypatch.chdir(tmp_path)
    (bash,) = blocks("Latent walks and export", "bash")
    places = {"COND_RUN_DIR": generator_runs["cond"], "RUN_DIR": generator_runs["mlp"]}
    for line in filter(None, map(str.strip, bash.splitlines())):
        argv = shlex.split(line, comments=True)
        assert argv[0] == "ganforge"
        argv = [places.get(a, a) for a in argv[1:]]
        assert main(argv) == 0, (line, capsys.readouterr().err)
    assert {"walk.png", "walk.gif", "walk3.png", "generator.onnx", "g.pt2"} <= {
        p.name for p in tmp_path.iterdir()}

    (python,) = blocks("Latent walks and export", "python")
    ns: dict = {}
    exec(compile(python, "README.md", "exec"), ns)  # noqa: S102 - the README's own snippet
    assert ns["meta"]["prior"] == "uniform"  # RUN_DIR is the default (mlp-mnist) run
    assert np.abs(ns["z"]).max() <= 1.0  # z drawn from that prior, not N(0, 1)
    np.testing.assert_allclose(ns["x2"].detach().numpy(), ns["x"], atol=1e-5)


def test_every_dataset_and_preset_is_in_the_readme():
    from ganforge.data import DATASETS
    from ganforge.presets import PRESETS

    text = README.read_text()
    data = text[text.index("## Data\n"):text.index("## Presets\n")]
    presets = text[text.index("## Presets\n"):]
    tables = "\n".join(ln for ln in presets.splitlines() if ln.startswith("| `"))
    assert [n for n in DATASETS if f"`{n}`" not in text] == []
    assert "`stacked-mnist`" in data
    assert [n for n in PRESETS if f"`{n}`" not in tables] == []


def test_presets_say_when_their_length_differs_from_their_tutorial():
    # the loops of /work/shared/seeds' 001 (range(1000000)) and 002 (range(100000))
    from ganforge.presets import PRESETS

    text = README.read_text()
    for name, tutorial in (("mlp-mnist", "1,000,000"), ("mlp-mnist-saturating", "100,000")):
        assert PRESETS.get(name)().steps != int(tutorial.replace(",", ""))
        assert f"tutorial's loop runs {tutorial}" in PRESETS.doc(name)
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| `{name}`"))
        assert f"the tutorial's loop runs {tutorial}" in row
