"""Sweeps: every run once, re-runnable, failures recorded, bad records moved aside, resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from freezebench.cli import app
from freezebench.errors import ConfigError
from freezebench.record import RunError, RunRecord, Status, new_record, run_id
from freezebench.results import runs_dir, scan_records
from freezebench.study import executors
from freezebench.study.config import expand, load_study, parse_study
from freezebench.study.executors import LocalExecutor, get_executor
from freezebench.study.sweep import STUDY_FILE, run_sweep, write_study

RECIPE = {"max_train_samples": 16, "max_eval_samples": 12, "per_device_train_batch_size": 8,
          "per_device_eval_batch_size": 8, "max_length": 32}


@pytest.fixture()
def values(tiny_model_dirs, sentiment_folder, tmp_path) -> dict:
    """A study mapping over the tiny BERT and the small sentiment data (strategies to fill)."""
    return {"name": "tiny", "model": tiny_model_dirs["bert"], "dataset": str(sentiment_folder),
            "recipe": RECIPE, "seeds": [1], "learning_rates": [1e-3],
            "output_dir": str(tmp_path / "results")}


def planned_ids(study) -> list[str]:
    return [run_id(c) for c in expand(study)]


def record_files(output_dir) -> dict[str, int]:
    """Record file name -> modification time (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in runs_dir(output_dir).glob("*.json")}


def test_sweep_writes_each_record_once_and_a_second_sweep_skips_all(values, capsys):
    study = parse_study({**values, "strategies": [
        "full", {"name": "bottom", "params": {"k": [1, 2]}}, "head"]})
    ids = planned_ids(study)
    summary = run_sweep(study)
    assert (summary.planned, summary.skipped, summary.completed, summary.failed) == (4, 0, 4, 0)
    records, bad = scan_records(study.output_dir)
    assert bad == [] and sorted(r.id for r in records) == sorted(ids)
    assert {r.status for r in records} == {Status.COMPLETED}
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split()[1] for line in lines] == ids  # one line per run, in the planned order
    assert all(" completed  test F1 0." in line and line.endswith(" s") for line in lines)
    # study.yaml holds the resolved study and expands to the same runs
    assert planned_ids(load_study(Path(study.output_dir) / STUDY_FILE)) == ids

    before = record_files(study.output_dir)
    again = run_sweep(study)
    assert (again.planned, again.skipped, again.completed, again.failed) == (4, 4, 0, 0)
    assert record_files(study.output_dir) == before  # nothing re-run or rewritten


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(values):
    study = parse_study({**values, "strategies": [
        "full", {"name": "bottom", "params": {"k": [99]}}, "head"]})
    summary = run_sweep(study, progress=False)
    assert (summary.completed, summary.failed) == (2, 1)
    records = {r.strategy_label: r for r in scan_records(study.output_dir)[0]}
    assert records["bottom(k=99)"].status is Status.FAILED
    assert records["bottom(k=99)"].error.type == "StrategyError"
    assert "k=99 is out of range" in records["bottom(k=99)"].error.message
    assert summary.failed_ids == [records["bottom(k=99)"].id]
    assert records["head"].status is Status.COMPLETED  # the run after the failure still ran

    retry = run_sweep(study, progress=False)  # failed runs are retried, completed ones skipped
    assert (retry.skipped, retry.completed, retry.failed) == (2, 0, 1)


def test_unreadable_records_are_moved_aside_and_their_runs_redone(values, caplog):
    study = parse_study({**values, "strategies": ["full", "head", "bitfit"]})
    run_sweep(study, progress=False)
    ids = planned_ids(study)
    broken = runs_dir(study.output_dir) / f"{ids[1]}.json"
    text = broken.read_text()
    broken.write_text(text[: len(text) // 2])  # cut short
    other = runs_dir(study.output_dir) / f"{ids[2]}.json"
    first = runs_dir(study.output_dir) / f"{ids[0]}.json"
    other.write_text(first.read_text())  # a valid record, but not of its run
    assert {b.path.name for b in scan_records(study.output_dir)[1]} == {broken.name, other.name}
    with caplog.at_level(logging.WARNING, logger="freezebench"):
        summary = run_sweep(study, progress=False)
    assert (summary.skipped, summary.completed, summary.failed) == (1, 2, 0)
    moved = list(runs_dir(study.output_dir).glob(f"{broken.name}.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_text() == text[: len(text) // 2]
    assert len(list(runs_dir(study.output_dir).glob(f"{other.name}.corrupt-*"))) == 1
    assert broken.name in caplog.text and "unreadable" in caplog.text
    assert "does not match its file name" in caplog.text
    assert json.loads(broken.read_text())["status"] == "completed"
    assert json.loads(other.read_text())["id"] == ids[2]
    assert scan_records(study.output_dir)[1] == []


def test_a_changed_study_keeps_the_earlier_study_file(values, tmp_path):
    out = tmp_path / "results"
    first = write_study(parse_study({**values, "strategies": ["full"]}), out)
    text = first.read_text()
    write_study(parse_study({**values, "strategies": ["full"]}), out)  # same study: no copy
    assert list(out.glob(f"{STUDY_FILE}.*")) == []
    write_study(parse_study({**values, "strategies": ["full", "head"]}), out)
    kept = list(out.glob(f"{STUDY_FILE}.previous-*"))
    assert len(kept) == 1 and kept[0].read_text() == text
    assert [s["name"] for s in yaml.safe_load(first.read_text())["strategies"]] == ["full", "head"]


def test_cli_sweep_exits_1_after_attempting_every_run(values, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**values, "strategies": [
        {"name": "bottom", "params": {"k": [99]}}, "head"]}))
    result = CliRunner().invoke(app, ["sweep", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert "2 runs planned: 0 already completed (skipped), 1 completed, 1 failed" in result.output
    result = CliRunner().invoke(app, ["sweep", "--config", str(path), "--executor", "rya"])
    assert isinstance(result.exception, ConfigError)
    assert "Unknown executor 'rya'. Did you mean 'ray'?" in str(result.exception)
    with pytest.raises(ConfigError, match="Did you mean 'local'"):
        get_executor("locl")


def test_local_executor_goes_on_after_a_bug_and_stops_on_ctrl_c(values, monkeypatch):
    configs = expand(parse_study({**values, "strategies": ["full", "head", "bitfit", "layernorm"]}))

    def fake_run(config):
        if config.strategy == "head":
            raise RuntimeError("a bug")
        if config.strategy == "layernorm":
            raise KeyboardInterrupt
        return new_record(config).model_copy(update={"status": Status.COMPLETED})

    monkeypatch.setattr(executors, "run_pipeline", fake_run)
    seen: list[RunRecord] = []
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor().execute(configs, seen.append)
    assert [(r.id, r.status) for r in seen] == [
        (run_id(configs[0]), Status.COMPLETED), (run_id(configs[1]), Status.FAILED),
        (run_id(configs[2]), Status.COMPLETED)]
    assert seen[1].error == RunError(type="RuntimeError", message="a bug")


def test_ctrl_c_stops_the_sweep_with_a_resume_hint(values, monkeypatch, caplog):
    study = parse_study({**values, "strategies": ["full", "head", "bitfit"]})
    started: list[str] = []

    def fake_run(config):
        started.append(config.strategy)
        if config.strategy == "head":
            raise KeyboardInterrupt
        return new_record(config).model_copy(update={"status": Status.COMPLETED})

    monkeypatch.setattr(executors, "run_pipeline", fake_run)
    with caplog.at_level(logging.WARNING, logger="freezebench"), pytest.raises(KeyboardInterrupt):
        run_sweep(study, progress=False)
    assert started == ["full", "head"]  # nothing started after Ctrl-C
    assert "interrupted after 1 of 3 runs" in caplog.text and "resume" in caplog.text


def test_only_runs_and_counts_the_chosen_runs_alone(values):
    study = parse_study({**values, "strategies": ["head", "bitfit"], "seeds": [1, 2]})
    summary = run_sweep(study, progress=False, only=["strategy=head", "seed=2"])
    assert (summary.planned, summary.completed, summary.failed) == (1, 1, 0)
    [record] = scan_records(study.output_dir)[0]
    assert (record.strategy_label, record.config["seed"]) == ("head", 2)
