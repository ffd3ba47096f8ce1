"""Experiment trackers read back with their own readers: MLflow's client, TensorBoard's
event files (the HPARAMS view)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import ganforge
from ganforge.errors import GanforgeError

TINY = dict(preset="toy-1d", steps=20, log_every=5, sample_every=10, ckpt_every=10,
            n_samples=200, batch_size=32, progress=False)


def rows_of(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "d_loss" in r]


def mlflow_runs(uri: str):
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("ganforge")
    return client, client.search_runs([exp.experiment_id])


def test_mlflow_run_has_the_config_rows_and_artifacts(tmp_path):
    pytest.importorskip("mlflow")
    uri = (tmp_path / "store").as_uri()
    run = ganforge.train(**TINY, tensorboard="off", mlflow="on", mlflow_uri=uri,
                         out=str(tmp_path / "r"))
    client, found = mlflow_runs(uri)
    assert len(found) == 1 and found[0].info.status == "FINISHED"
    got = found[0]
    expected = {k: "none" if v is None else str(v) for k, v in run.config.to_dict().items()}
    assert got.data.params == expected
    rows = rows_of(run.dir)
    history = client.get_metric_history(got.info.run_id, "d_loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["d_loss"]) for r in rows]
    assert [m.step for m in client.get_metric_history(got.info.run_id, "g_loss")] == \
        [5, 10, 15, 20]

    def listing(path=None):
        return {f.path for f in client.list_artifacts(got.info.run_id, path)}

    top = listing()
    assert {"config.json", "report.html", "progress.gif", "samples", "checkpoints"} <= top
    assert listing("samples") == {f"samples/step-{s:07d}.png" for s in (0, 10, 20)}
    assert listing("checkpoints") == {"checkpoints/final.safetensors"}
    local = client.download_artifacts(got.info.run_id, "checkpoints/final.safetensors",
                                      str(tmp_path))
    assert Path(local).read_bytes() == run.final_checkpoint.read_bytes()


def test_mlflow_default_store_is_mlruns_in_the_working_folder(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    ganforge.train(**{**TINY, "steps": 5, "sample_every": 5}, tensorboard="off", mlflow="on",
                   out=str(tmp_path / "r"))
    _, found = mlflow_runs((tmp_path / "mlruns").as_uri())
    assert [r.info.run_name for r in found] == ["r"]


def test_resume_continues_the_same_mlflow_run(tmp_path):
    pytest.importorskip("mlflow")
    uri = (tmp_path / "store").as_uri()
    out = tmp_path / "r"
    ganforge.train(**{**TINY, "steps": 10}, tensorboard="off", mlflow="on", mlflow_uri=uri,
                   out=str(out))
    ganforge.train(resume=str(out), steps=20, progress=False)
    client, found = mlflow_runs(uri)
    assert len(found) == 1 and found[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(found[0].info.run_id, "d_loss")]
    assert steps == [5, 10, 15, 20]


def test_mlflow_is_off_unless_asked_and_missing_client_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ganforge.train(**{**TINY, "steps": 5, "sample_every": 5}, tensorboard="off",
                   out=str(tmp_path / "r"))
    assert not (tmp_path / "mlruns").exists()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(GanforgeError, match=r"mlflow=on: the MLflow client is not installed"):
        ganforge.train(**{**TINY, "steps": 5}, tensorboard="off", mlflow="on",
                       out=str(tmp_path / "r2"))
    with pytest.raises(GanforgeError, match="--mlflow: expected on or off"):
        ganforge.train(**TINY, mlflow="yes", out=str(tmp_path / "r3"))


def test_tensorboard_hparams_view_reads_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = ganforge.train(**TINY, tensorboard="on", g_lr=3e-4, out=str(tmp_path / "r"))
    acc = EventAccumulator(str(run.dir / "tensorboard"))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(c) for tag, c in content.items()}
    start = data["_hparams_/session_start_info"].session_start_info.hparams
    assert start["g_lr"].number_value == pytest.approx(3e-4)
    assert start["objective"].string_value == "minimax"
    assert start["g_betas"].string_value == "[0.5, 0.999]"
    metrics = {m.name.tag for m in data["_hparams_/experiment"].experiment.metric_infos}
    assert {"loss/d", "loss/g", "D/real"} <= metrics
    # the metric tags are the run's own curves, whose last point is the final row
    assert acc.Scalars("loss/d")[-1].value == pytest.approx(rows_of(run.dir)[-1]["d_loss"])
