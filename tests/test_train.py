"""Training through the Python API: the toy converges, runs are reproducible, data is found."""

import json
import shutil

import pytest
import torch
from conftest import shared_files

import ganforge
from ganforge.errors import GanforgeError

TIMING = ("it_s",)


def _rows(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_toy_1d_learns_the_target_mean_and_std(tmp_path):
    run = ganforge.train(preset="toy-1d", out=str(tmp_path / "toy"), progress=False)
    x = ganforge.load(run.dir).sample(50_000, seed=1)
    assert abs(x.mean().item() - 4.0) < 0.1 * 4.0
    assert abs(x.std().item() - 0.5) < 0.1 * 0.5
    # the snapshot pictures exist for every sample_every (200) plus the start
    assert len(list((run.dir / "samples").glob("step-*.png"))) == 3000 // 200 + 1


def test_same_seed_gives_identical_metrics(tmp_path):
    kw = dict(dataset="mnist-sample", steps=60, log_every=10, sample_every=1000, progress=False)
    a = ganforge.train(out=str(tmp_path / "a"), seed=5, **kw)
    b = ganforge.train(out=str(tmp_path / "b"), seed=5, **kw)
    c = ganforge.train(out=str(tmp_path / "c"), seed=6, **kw)
    assert _rows(a.dir) == _rows(b.dir)
    assert len(_rows(a.dir)) == 6
    assert _rows(a.dir) != _rows(c.dir)
    for p, q in zip(a.G.parameters(), b.G.parameters(), strict=True):
        assert torch.equal(p, q)


def test_k_d_and_k_g_count_steps(tmp_path):
    run = ganforge.train(preset="mlp-mnist-notebook", dataset="mnist-sample", steps=3,
                         batch_size=16, out=str(tmp_path / "nb"), progress=False)
    from ganforge import checkpoint

    state = checkpoint.load(run.final_checkpoint)
    # Adam's per-parameter step counter: k_d=1 D update and k_g=2 G updates per iteration
    assert state["opt_d"]["state"][0]["step"].item() == 3
    assert state["opt_g"]["state"][0]["step"].item() == 6


def test_mnist_from_a_data_dir(tmp_path):
    images, labels = shared_files("mnist", "t10k-images-idx3-ubyte.gz",
                                  "t10k-labels-idx1-ubyte.gz")
    run = ganforge.train(dataset="mnist", data_dir=str(images.parent), split="test", steps=5,
                         out=str(tmp_path / "r"), progress=False)
    used = json.loads((run.dir / "config.json").read_text())["data_used"]
    assert used["n"] == 10_000 and used["files"] == [str(images), str(labels)]


def test_mnist_found_in_ganforge_data(tmp_path, monkeypatch):
    images, labels = shared_files("mnist", "t10k-images-idx3-ubyte.gz",
                                  "t10k-labels-idx1-ubyte.gz")
    home = tmp_path / "data" / "mnist"
    home.mkdir(parents=True)
    for f in (images, labels):
        shutil.copy(f, home)
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "data"))
    run = ganforge.train(split="test", steps=2, out=str(tmp_path / "r"), progress=False)
    assert json.loads((run.dir / "config.json").read_text())["data_used"]["n"] == 10_000


def test_mnist_falls_back_to_the_sample_and_records_it(tmp_path, capfd):
    run = ganforge.train(steps=2, out=str(tmp_path / "r"), progress=False)
    err = capfd.readouterr().err
    assert "5,000 MNIST training digits" in err and "--data-dir" in err
    cfg = json.loads((run.dir / "config.json").read_text())
    assert cfg["dataset"] == "mnist-sample"
    assert cfg["data_used"]["requested"] == "mnist" and cfg["data_used"]["n"] == 5000


def test_explicit_empty_data_dir_is_an_error_not_a_fallback(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GanforgeError, match="IDX files not found in .*empty"):
        ganforge.train(data_dir=str(empty), steps=2, out=str(tmp_path / "r"), progress=False)
    assert not (tmp_path / "r").exists()  # bad input never creates the run folder


def test_fashion_mnist(tmp_path):
    shared_files("fashion-mnist", "t10k-images-idx3-ubyte.gz")
    data = shared_files("fashion-mnist", "t10k-labels-idx1-ubyte.gz")[0].parent
    run = ganforge.train(dataset="fashion-mnist", data_dir=str(data), split="test", steps=2,
                         out=str(tmp_path / "f"), progress=False)
    assert run.config.dataset == "fashion-mnist"


def test_loaded_generator_matches_the_trained_one(tmp_path):
    run = ganforge.train(dataset="mnist-sample", steps=20, out=str(tmp_path / "r"),
                         progress=False)
    g = ganforge.load(run.dir)
    z = torch.rand(4, 100) * 2 - 1
    run.G.eval()
    with torch.no_grad():
        assert torch.allclose(g(z), run.G(z))
    assert g.sample(3, seed=0).shape == (3, 1, 28, 28)
    assert torch.equal(g.sample(3, seed=0), g.sample(3, seed=0))
