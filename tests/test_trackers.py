"""report_to: what a run logs to TensorBoard and MLflow, read back from their local stores."""

from __future__ import annotations

import json

import pytest

from freezebench.config import RunConfig
from freezebench.errors import ConfigError, DataError
from freezebench.pipeline import run
from freezebench.record import run_id
from freezebench.study.config import StudyConfig, expand
from freezebench.trackers import chosen, require


def _config(model_dir, dataset, tmp_path, **overrides) -> RunConfig:
    values = dict(model=model_dir, dataset=str(dataset), output_dir=str(tmp_path / "out"),
                  strategy="bottom", strategy_params={"k": 2}, learning_rate=5e-3,
                  per_device_train_batch_size=4, per_device_eval_batch_size=6,
                  num_train_epochs=1, disable_tqdm=True, precision="fp32", logging_steps=2,
                  eval_steps=4)
    values.update(overrides)
    return RunConfig(**values)


def test_tensorboard_events_hold_the_loss_curve_and_the_final_metrics(
        tiny_model_dirs, sentiment_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    record = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path,
                         report_to="tensorboard"))
    log_dir = tmp_path / "out" / "tensorboard" / record.id
    events = EventAccumulator(str(log_dir)).Reload()
    scalars = events.Tags()["scalars"]

    def curve(tag: str) -> list[tuple[int, float]]:
        return [(event.step, event.value) for event in events.Scalars(tag)]

    trained = [p for p in record.history if p.train_loss is not None]
    assert curve("train_loss") == [(p.step, pytest.approx(p.train_loss)) for p in trained]
    assert [step for step, _ in curve("learning_rate")] == [p.step for p in record.history]
    evaluated = [p for p in record.history if p.validation is not None]
    assert curve("validation_f1_macro") == [
        (p.step, pytest.approx(p.validation.f1_macro)) for p in evaluated]
    last = record.history[-1].step
    assert curve("final_test_f1") == [(last, pytest.approx(record.metrics.test.f1))]
    assert curve("final_test_accuracy") == [(last, pytest.approx(record.metrics.test.accuracy))]
    assert curve("final_train_seconds") == [
        (last, pytest.approx(record.efficiency.train_seconds))]
    assert {"final_train_flops", "final_peak_memory_mb", "final_trainable_params"} <= set(scalars)
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert set(start.hparams) == set(record.config)
    assert start.hparams["strategy"].string_value == "bottom"
    assert start.hparams["learning_rate"].number_value == pytest.approx(5e-3)


def test_mlflow_run_is_named_by_the_record_id_in_the_study_experiment(
        tiny_model_dirs, sentiment_folder, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = StudyConfig(name="tracked", model=tiny_model_dirs["bert"],
                        dataset=str(sentiment_folder), output_dir=str(tmp_path / "out"),
                        strategies=[{"name": "bottom", "params": {"k": 2}}], seeds=1,
                        learning_rates=[5e-3],
                        recipe={"report_to": "mlflow", "per_device_train_batch_size": 4,
                                "disable_tqdm": True, "precision": "fp32"})
    (config,) = expand(study)
    assert config.run_group == "tracked"
    record = run(config)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tracked")
    (found,) = client.search_runs([experiment.experiment_id],
                                  filter_string=f"attributes.run_name = '{record.id}'")
    assert found.info.status == "FINISHED"
    losses = client.get_metric_history(found.info.run_id, "train_loss")
    trained = [p for p in record.history if p.train_loss is not None]
    assert sorted((m.step, m.value) for m in losses) == [
        (p.step, pytest.approx(p.train_loss)) for p in trained]
    f1 = client.get_metric_history(found.info.run_id, "validation_f1_macro")
    assert sorted(m.step for m in f1) == [p.step for p in record.history if p.validation]
    assert found.data.metrics["final_test_f1"] == pytest.approx(record.metrics.test.f1)
    assert found.data.params["strategy"] == "bottom"
    assert found.data.params["learning_rate"] == "0.005"
    assert json.loads(found.data.params["strategy_params"]) == record.config["strategy_params"]
    assert set(found.data.params) == set(record.config)


def test_a_failed_run_ends_its_mlflow_run_failed(tiny_model_dirs, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = tmp_path / "bad.csv"
    data.write_text("text,label\ngood movie,1\n   ,0\nbad movie,0\n")
    config = _config(tiny_model_dirs["bert"], data, tmp_path, report_to="mlflow",
                     run_group="bad data")
    with pytest.raises(DataError, match="row 1"):
        run(config)
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("bad data").experiment_id])
    assert found.info.status == "FAILED"
    assert found.info.run_name == run_id(config)


def test_a_missing_tracker_library_names_the_extra_to_install():
    with pytest.raises(ConfigError, match=r"pip install 'freezebench\[tracker-x\]'") as error:
        require("x", "freezebench_no_such_module", "tracker-x")
    assert "report_to 'x' needs the 'freezebench_no_such_module' package" in str(error.value)
    assert chosen("none") == []


def test_report_to_and_run_group_leave_the_run_id_as_it_is(tmp_path):
    plain = RunConfig(output_dir=str(tmp_path))
    tracked = plain.model_copy(update={"report_to": "all", "run_group": "g"})
    assert tracked.fingerprint() == plain.fingerprint()


def test_wandb_offline_run_holds_the_history_summary_and_config(
        tiny_model_dirs, sentiment_folder, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    record = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path, report_to="wandb",
                         run_group="study-w"))
    wandb.teardown()  # some versions write the run's file out only when their service stops
    (path,) = (tmp_path / "out" / "wandb").glob("offline-run-*/run-*.wandb")
    kinds: dict[str, list] = {}
    for item in _wandb_records(path):
        kind = item.WhichOneof("record_type")
        kinds.setdefault(kind, []).append(getattr(item, kind))
    (started,) = kinds["run"][:1]
    assert started.display_name == record.id and started.run_group == "study-w"
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["strategy"] == "bottom" and config["report_to"] == "wandb"
    losses = {}
    for history in kinds["history"]:
        items = {"/".join(item.nested_key) or item.key: item.value_json for item in history.item}
        if "train_loss" in items:
            losses[int(items.get("_step", 0))] = float(items["train_loss"])
    trained = [p for p in record.history if p.train_loss is not None]
    assert sorted(losses.items()) == [(p.step, pytest.approx(p.train_loss)) for p in trained]
    summary = {"/".join(u.nested_key) or u.key: u.value_json
               for s in kinds["summary"] for u in s.update}
    assert float(summary["final_test_f1"]) == pytest.approx(record.metrics.test.f1)
    assert kinds["exit"][-1].exit_code == 0


def _wandb_records(path):
    """The records of a run's ``.wandb`` file (LevelDB's log format: 32 KiB blocks of chunks,
    each with a 7-byte header) as wandb's protobuf ``Record``s; wandb ships no reader in Python."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    offset, pending = 7, b""
    while offset + 7 <= len(data):
        left = block - offset % block
        _, length, chunk_type = struct.unpack("<IHB", data[offset:offset + 7])
        if left < 7 or (chunk_type == 0 and length == 0):  # a block's zero padding
            offset += left
            continue
        pending += data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if chunk_type in (1, 4):  # a full record, or the last chunk of one
            parsed = wandb_internal_pb2.Record()
            parsed.ParseFromString(pending)
            pending = b""
            yield parsed
