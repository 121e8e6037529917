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
