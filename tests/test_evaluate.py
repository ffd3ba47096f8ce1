"""Evaluation wired to runs: `ganforge eval`, --eval-every and --keep-best."""

import json

import pytest
import torch
from torch import nn

import ganforge
import ganforge.checkpoint
from ganforge.config import resolve
from ganforge.data import load_dataset
from ganforge.evaluate import evaluate, real_features
from ganforge.evaluate import feature_net as get_net


class Memoriser(nn.Module):
    """A 'generator' that returns real training images: every metric must call it perfect."""

    out_range = (0.0, 1.0)

    def __init__(self, images):
        super().__init__()
        self.register_buffer("images", images.float() / 255)
        self.anchor = nn.Parameter(torch.zeros(()))
        self.i = 0

    def forward(self, z):
        n = z.shape[0]
        out = self.images[self.i:self.i + n]
        self.i += n
        return out + 0 * self.anchor


def test_a_generator_of_real_data_scores_perfectly():
    cfg = resolve(overrides={"dataset": "mnist-sample"})
    data = load_dataset(cfg)
    G = Memoriser(data.images[torch.randperm(5000, generator=torch.Generator().manual_seed(0))])
    pairs = []
    real_cdist = torch.cdist

    def spy(a, b, *args, **kwargs):
        pairs.append((a.shape[0], b.shape[0]))
        return real_cdist(a, b, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "cdist", spy)
        r = evaluate(G, cfg, data, ["fid", "precision", "recall", "density", "coverage"],
                     n=800, features="raw")
    assert r["precision"] == 1.0 and r["recall"] == 1.0 and r["coverage"] == 1.0
    assert r["density"] == 1.0  # open balls, as the prdc package: a set against itself is 1
    # one k-NN search per set serves k=3 (precision/recall) and k=5 (density/coverage)
    assert sorted(pairs) == [(800, 800)] * 4
    # the generator's images are the same real ones the metric draws: FID of a set with itself.
    # 784 raw pixels from 800 images give a singular covariance, whose root is still usable
    assert r["fid"] == pytest.approx(0.0, abs=1e-6) and "fid_eps" not in r
    # real features are cached per (dataset, split, net, n) and reused
    net = get_net("raw", torch.device("cpu"))
    a, _ = real_features(cfg, data, net, 800)
    b, _ = real_features(cfg, data, net, 800)
    assert torch.equal(a, b)


def test_eval_every_logs_metrics_and_keeps_the_best_checkpoint(tmp_path):
    run = ganforge.train(preset="ring-8", steps=60, log_every=20, sample_every=1000,
                         eval_every=20, eval_n=500, metrics=["modes", "fid"], keep_best="fid",
                         out=str(tmp_path / "r"), progress=False)
    evals = [r for r in run.metrics if "fid" in r]
    assert [r["step"] for r in evals] == [20, 40, 60]
    assert all("modes" in r and "high_quality" in r for r in evals)
    best = ganforge.checkpoint.load(run.checkpoints_dir / "best.safetensors")
    assert best["best"]["fid"] == min(r["fid"] for r in evals)
    assert best["step"] == min(evals, key=lambda r: r["fid"])["step"]


def test_eval_command_writes_eval_json(tmp_path, capsys):
    from ganforge.cli import main

    run = ganforge.train(preset="ring-8", steps=20, sample_every=1000, out=str(tmp_path / "r"),
                         progress=False)
    assert main(["eval", str(run.dir), "--metrics", "modes,fid,kid", "--n", "400"]) == 0
    out = capsys.readouterr().out
    assert "modes" in out and "fid" in out
    saved = json.loads((run.dir / "eval.json").read_text())
    assert saved["step"] == 20 and saved["n"] == 400 and saved["features"] == "raw"
    assert 0 <= saved["modes"] <= 8 and saved["kid_std"] > 0
    assert saved["kid_subset"] == 200  # half of --n 400: subsets that differ, a real std
    assert main(["eval", str(run.dir), "--metrics", "kid", "--n", "3"]) == 2
    assert "at least 4 vectors" in capsys.readouterr().err


def test_eval_errors_are_one_line(tmp_path, capsys):
    from ganforge.cli import main

    run = ganforge.train(preset="toy-1d", steps=5, sample_every=1000, out=str(tmp_path / "t"),
                         progress=False)
    assert main(["eval", str(run.dir), "--metrics", "modes"]) == 2
    assert "needs a 2-D mixture (ring-8, grid-25) or stacked-mnist" in capsys.readouterr().err
    assert main(["eval", str(run.dir), "--metrics", "fidd"]) == 2
    assert "unknown metric 'fidd'" in capsys.readouterr().err


def test_stacked_mnist_images_and_mode_labels():
    from ganforge.data.stacked import stack_digits

    digits = load_dataset(resolve(overrides={"dataset": "mnist-sample"}))
    st = stack_digits(digits, 300, seed=1)
    assert st.images.shape == (300, 3, 28, 28) and st.images.dtype == torch.uint8
    assert st.num_classes == 1000
    # each channel is one of the source digits, and the label spells the three digits
    i = 7
    label = int(st.labels[i])
    for c, d in enumerate((label // 100, label // 10 % 10, label % 10)):
        matches = (digits.images[:, 0] == st.images[i, c]).flatten(1).all(1)
        assert matches.any() and int(digits.labels[matches][0]) == d


def test_stacked_modes_classifies_each_channel(monkeypatch):
    import ganforge.features as features
    from ganforge.evaluate import stacked_modes

    class Fake:  # a "classifier" that reads the digit off the image's mean brightness
        def logits(self, x):
            d = (x.flatten(1).mean(1) * 10).long().clamp(0, 9)
            return torch.nn.functional.one_hot(d, 10).float()

    monkeypatch.setattr(features, "get_feature_net", lambda name, device: Fake())
    # channel values chosen so the digits are (1, 2, 3) for half the images, (4, 5, 6) for the rest
    imgs = torch.zeros(10, 3, 28, 28)
    for c, (a, b) in enumerate(((1, 4), (2, 5), (3, 6))):
        imgs[:5, c] = a / 10 + 0.05
        imgs[5:, c] = b / 10 + 0.05
    r = stacked_modes(imgs, torch.device("cpu"))
    assert r["modes"] == 2 and r["n_modes"] == 1000


def test_kid_on_too_few_samples_is_refused_before_the_run_starts(tmp_path):
    from ganforge.errors import GanforgeError

    with pytest.raises(GanforgeError, match="3 samples.*at least 4 vectors") as err:
        ganforge.train(preset="ring-8", steps=2, eval_every=1, eval_n=3, metrics=["kid"],
                       out=str(tmp_path / "r"), progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()
