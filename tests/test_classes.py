"""Metric 'classes': the class histogram of generated samples under the dataset classifier."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import ganforge
from ganforge.cli import main
from ganforge.config import resolve
from ganforge.data import load_dataset
from ganforge.evaluate import check_request, evaluate
from ganforge.features import FeatureNet, get_feature_net
from ganforge.metrics import METRICS, class_histogram
from ganforge.models import build_models


def _one_hot_logits(labels: torch.Tensor, k: int = 10, margin: float = 20.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, k).double() * margin


def test_one_class_is_one_covered_class_and_kl_log_k() -> None:
    r = class_histogram(_one_hot_logits(torch.full((500,), 7)))
    assert r["classes"] == 1 and r["n_classes"] == 10
    assert r["classes_kl"] == pytest.approx(math.log(10), abs=1e-12)
    assert r["classes_hist"] == [0] * 7 + [500] + [0] * 2
    assert r["classes_confident"] == 1.0
    assert METRICS.get("classes") is class_histogram


def test_uniform_classes_give_kl_zero_and_all_covered() -> None:
    r = class_histogram(_one_hot_logits(torch.arange(1000) % 10))
    assert r["classes"] == 10 and r["classes_kl"] == pytest.approx(0.0, abs=1e-12)
    assert r["classes_hist"] == [100] * 10


def test_a_few_strays_do_not_cover_a_class() -> None:
    # 1,000 samples: a class needs ceil(0.1 * 1000 / 10) = 10 of them to be covered
    labels = torch.cat([torch.full((991,), 1), torch.full((9,), 4)])
    r = class_histogram(_one_hot_logits(labels))
    assert r["classes_min_count"] == 10 and r["classes"] == 1
    labels[0] = 4  # now 10 of class 4
    assert class_histogram(_one_hot_logits(labels))["classes"] == 2


def test_confident_share_uses_the_max_softmax_threshold() -> None:
    # two classes: softmax max = sigmoid(margin); 0.9 needs margin >= log 9 = 2.197
    logits = torch.tensor([[2.3, 0.0], [2.1, 0.0], [0.0, 5.0], [0.0, 0.1]])
    r = class_histogram(logits)
    assert r["classes_confident"] == 0.5 and r["classes_hist"] == [2, 2]
    assert class_histogram(logits, confidence=0.5)["classes_confident"] == 1.0


def test_bad_logits_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        class_histogram(torch.zeros(0, 10))
    with pytest.raises(ValueError, match="NaN"):
        class_histogram(torch.tensor([[float("nan"), 0.0]]))


@pytest.mark.parametrize("dataset", ["ring-8", "gaussian-1d", "cifar10", "stacked-mnist"])
def test_unlabelled_or_2d_data_is_refused_in_one_line(dataset: str) -> None:
    cfg = resolve(overrides={"dataset": dataset})
    with pytest.raises(ganforge.GanforgeError) as err:
        check_request(cfg, ["classes"])
    assert "metric 'classes' needs labelled 28x28 grey images" in str(err.value)
    assert "\n" not in str(err.value) and repr(dataset) in str(err.value)


def test_train_refuses_classes_on_a_2d_mixture_before_the_run(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    assert main(["train", "--preset", "ring-8", "--eval-every", "5", "--metrics", "classes",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganforge: error: metric 'classes' needs") and "\n" not in err
    assert not out.exists()


class _MeanBrightness(nn.Module):
    """A stand-in classifier: class = a fixed function of the image, logits one-hot."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1, keepdim=True)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return torch.full((f.shape[0], 10), -20.0).index_fill_(1, torch.tensor([3]), 20.0)


def test_evaluate_uses_the_dataset_classifier_even_with_other_features(monkeypatch) -> None:
    seen = []

    def fake_net(name, device="cpu", **opts):
        seen.append(name)
        return FeatureNet(name, _MeanBrightness(), dim=1, num_classes=10,
                          prepare=lambda x: x, device=device)

    monkeypatch.setattr("ganforge.features.get_feature_net", fake_net)
    cfg = resolve(overrides={"dataset": "mnist-sample", "steps": 1})
    data = load_dataset(cfg)
    G = build_models(cfg, data.shape)[0]
    r = evaluate(G, cfg, data, ["classes", "fid"], n=200, features="raw")
    assert seen == ["lenet-mnist"] and r["features"] == "raw"
    assert r["classes"] == 1 and r["classes_hist"][3] == 200 and "fid" in r
    assert r["classes_kl"] == pytest.approx(math.log(10))


def test_offline_classifier_and_eval_of_the_default_run(tmp_path, capsys) -> None:
    """Only the embedded 5k sample: the classifier holds out a test part, eval runs end to end
    with n = all 5,000 real digits, and --eval-every logs the histogram."""
    run = tmp_path / "run"
    assert main(["train", "--steps", "20", "--batch-size", "32", "--log-every", "10",
                 "--sample-every", "1000", "--out", str(run), "--tensorboard", "off"]) == 0
    assert main(["classifier", "train", "--dataset", "mnist", "--epochs", "1"]) == 0
    out = capsys.readouterr()
    assert "test split not found" in out.err
    assert "on 1000 images (held out: 1000 of the mnist-sample" in out.out
    info = get_feature_net("lenet-mnist").info
    assert info["n_train"] == 4000 and info["n_test"] == 1000
    assert info["test_accuracy"] > 0.5 and info["test_source"].startswith("held out")
    assert main(["eval", str(run), "--metrics", "fid,classes"]) == 0
    saved = json.loads((run / "eval.json").read_text())
    assert saved["n"] == 5000 and saved["features"] == "lenet-mnist"
    assert sum(saved["classes_hist"]) == 5000 and 0 <= saved["classes"] <= 10
    assert saved["fid"] > 0
    again = ganforge.train(dataset="mnist-sample", steps=4, batch_size=16, eval_every=2,
                           eval_n=300, metrics=["classes"], sample_every=1000,
                           out=str(tmp_path / "every"), progress=False, tensorboard="off")
    rows = [r for r in again.metrics if "classes" in r]
    assert [r["step"] for r in rows] == [2, 4]
    assert all(sum(r["classes_hist"]) == 300 for r in rows)
