"""TensorBoard logging: what is written can be read back; the modes and a missing package."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import tblog
from ganforge.errors import GanforgeError

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)


def _read(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0,
                                                         "tensors": 0})
    acc.Reload()
    return acc


def test_scalars_images_and_text_round_trip(tmp_path):
    png = tmp_path / "grid.png"
    Image.fromarray(np.full((8, 12), 200, np.uint8)).save(png)
    with tblog.open_logger(tmp_path, "on") as log:
        assert log.log_dir == tmp_path / "tensorboard"
        for step in (100, 200):
            log.scalars(step, {"step": step, "d_loss": step / 100, "g_loss": 0.5,
                               "d_real": 0.7, "d_fake": 0.3, "it_s": 250.0, "k": 0.01,
                               "grad_norm_d": 3.0, "grad_norm_g": 0.5,
                               "note": "skipped", "flag": True})
        log.scalars(200, {"step": 200, "fid": 12.5, "kid": 0.01, "n": 1000})
        log.scalars(200, {"step": 200, "warning": "g_vanishing", "message": "text only"})
        log.image(100, "samples", png)
        log.image(200, "samples", torch.rand(3, 10, 14))  # CHW float
        log.image(200, "density", np.zeros((9, 7, 3), np.uint8))  # HWC uint8
        log.text(200, "warnings", "ganforge: warning: D(G(z)) = 0.003")
    acc = _read(tmp_path / "tensorboard")
    tags = acc.Tags()
    assert set(tags["scalars"]) == {"loss/d", "loss/g", "D/real", "D/fake", "speed/it_s",
                                    "train/k", "eval/fid", "eval/kid", "eval/n",
                                    "grad_norm/d", "grad_norm/g"}
    d = acc.Scalars("loss/d")
    assert [(e.step, e.value) for e in d] == [(100, pytest.approx(1.0)),
                                              (200, pytest.approx(2.0))]
    assert [e.value for e in acc.Scalars("eval/fid")] == [pytest.approx(12.5)]
    assert acc.Scalars("D/fake")[0].value == pytest.approx(0.3)

    images = acc.Images("samples")
    assert [(e.step, e.width, e.height) for e in images] == [(100, 12, 8), (200, 14, 10)]
    assert [(e.width, e.height) for e in acc.Images("density")] == [(7, 9)]
    texts = acc.Tensors("warnings/text_summary")
    assert texts[0].step == 200
    assert b"D(G(z)) = 0.003" in texts[0].tensor_proto.string_val[0]


def test_image_layouts_and_scale():
    from ganforge.tblog import _as_uint8

    f = torch.tensor([[0.0, 0.5], [1.0, 2.0]])
    assert _as_uint8(f).tolist() == [[0, 128], [255, 255]]  # floats in [0, 1], clipped
    assert _as_uint8(f.unsqueeze(0)).shape == (2, 2)  # 1-channel CHW -> HW
    assert _as_uint8(np.zeros((5, 6, 3), np.float32)).shape == (5, 6, 3)  # HWC
    assert _as_uint8(torch.zeros(3, 5, 6)).shape == (5, 6, 3)  # CHW
    assert _as_uint8(np.full((2, 2), 300, np.int64)).max() == 255
    with pytest.raises(ValueError, match="batch"):
        _as_uint8(torch.zeros(4, 3, 8, 8))


def test_modes(tmp_path):
    assert tblog.open_logger(tmp_path, "off") is None
    assert not (tmp_path / "tensorboard").exists()
    with pytest.raises(GanforgeError, match="--tensorboard 'maybe'"):
        tblog.open_logger(tmp_path, "maybe")
    auto = tblog.open_logger(tmp_path, "auto")
    assert isinstance(auto, tblog.TensorBoardLogger)
    auto.close()


@pytest.mark.parametrize("how", ["sys.modules", "available"])
def test_missing_tensorboard(tmp_path, monkeypatch, how):
    if how == "sys.modules":  # as if not installed: importing it raises ImportError
        monkeypatch.setitem(sys.modules, "tensorboard", None)
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    else:
        monkeypatch.setattr(tblog, "available", lambda: False)
    assert not tblog.available()
    assert tblog.open_logger(tmp_path, "auto") is None
    with pytest.raises(GanforgeError, match=r"pip install tensorboard"):
        tblog.open_logger(tmp_path, "on")
    assert not (tmp_path / "tensorboard").exists()


def test_importing_ganforge_does_not_import_tensorboard():
    code = ("import sys, ganforge, ganforge.tblog, ganforge.health; "
            "assert 'tensorboard' not in sys.modules, 'tensorboard imported'; "
            "assert 'torch.utils.tensorboard' not in sys.modules")
    src = Path(__file__).resolve().parents[1] / "src"
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PYTHONPATH": str(src)})


def test_class_histogram_is_a_histogram_with_one_bin_per_class(tmp_path):
    counts = [5, 0, 30, 1, 0, 0, 0, 0, 4, 60]
    with tblog.open_logger(tmp_path, "on") as log:
        log.scalars(300, {"step": 300, "classes": 3, "classes_kl": 0.9, "classes_hist": counts})
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"histograms": 0})
    acc.Reload()
    assert {"eval/classes", "eval/classes_kl"} <= set(acc.Tags()["scalars"])
    (event,) = acc.Histograms("eval/classes_hist")
    h = event.histogram_value
    assert event.step == 300 and h.num == sum(counts)
    assert list(h.bucket) == counts and list(h.bucket_limit) == [k + 0.5 for k in range(10)]
