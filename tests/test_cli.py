"""The command line as a user runs it: a real subprocess, exit codes and output.

Every bad input and its message: tests/test_user_errors.py (catalog in tests/error_catalog.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def freezebench(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "freezebench", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600, check=False)


def test_ls_strategies_lists_every_strategy_with_parameters():
    from freezebench.strategies import STRATEGIES

    result = freezebench("ls", "strategies")
    assert result.returncode == 0
    for name in STRATEGIES:
        assert name in result.stdout
    assert "freeze_embeddings" in result.stdout


def test_run_prints_summary_and_writes_record(tiny_model_dirs, sentiment_folder, tmp_path):
    out = tmp_path / "out"
    result = freezebench("run", "--model", tiny_model_dirs["bert"], "--dataset",
                         str(sentiment_folder), "--strategy", "bottom", "--strategy-param", "k=1",
                         "--learning-rate", "1e-3", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert "trainable params:" in result.stdout and "test F1" in result.stdout
    [path] = (out / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["learning_rate"] == 1e-3
    assert record["strategy_label"] == "bottom(k=1)"


def test_env_reports_versions_and_offline_model():
    result = freezebench("env")
    assert result.returncode == 0
    assert "torch" in result.stdout and "offline model" in result.stdout


def test_run_has_an_option_for_every_config_field_with_its_default():
    from click.testing import CliRunner
    from typer.main import get_command

    from freezebench.cli import app
    from freezebench.config import RunConfig

    command = get_command(app).commands["run"]
    options = {name for param in command.params for name in param.opts}
    for field, info in RunConfig.model_fields.items():
        extra = info.json_schema_extra or {}
        flag = str(extra.get("option", "--" + field.replace("_", "-"))).split("/")[0]
        assert flag in options, f"RunConfig.{field} has no option"
    help_text = CliRunner().invoke(command, ["--help"], env={"COLUMNS": "240"}).output
    for shown in ("default: (16)", "default: (2e-05)", "default: (bert-base-cased)",
                  "auto | fp32 | bf16 | fp16", "auto | torch | numpy", "--no-cache"):
        assert shown in help_text, shown


def test_a_config_option_overrides_the_yaml_file_and_only_given_ones_do(tmp_path):
    from freezebench.cli_options import with_config_options
    from freezebench.config import RunConfig, resolve_run_config

    seen = {}

    def command(config=None, **values):
        seen.update(values)

    wrapped = with_config_options(command, RunConfig)
    wrapped(config=None, **{name: None for name in RunConfig.model_fields} | {"seed": 7})
    (tmp_path / "run.yaml").write_text("seed: 3\nlearning_rate: 1.0e-3\n")
    resolved = resolve_run_config(tmp_path / "run.yaml", seen)
    assert (resolved.seed, resolved.learning_rate) == (7, 1e-3)


def test_version_prints_the_installed_version():
    from importlib import metadata

    result = freezebench("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"freezebench {metadata.version('freezebench')}"


def test_report_names_a_bad_metric_and_exits_2(tmp_path):
    from .fixtures.records import build

    build.write_records(tmp_path, build.study_records())
    result = freezebench("report", str(tmp_path), "--metric", "auc")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Unknown metric 'auc'. Choose one of: accuracy, f1, f1_macro" in result.stderr
    assert not (tmp_path / "report.md").exists()
    result = freezebench("report", str(tmp_path), "--cost-view", "study")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["cost_view"] == "study"


def test_sweep_dry_run_lists_the_plan_as_json_and_writes_nothing(tiny_model_dirs,
                                                                sentiment_folder, tmp_path):
    out = tmp_path / "results"
    study = tmp_path / "study.yaml"
    study.write_text(f"name: plan\nmodel: {tiny_model_dirs['bert']}\ndataset: {sentiment_folder}\n"
                     "seeds: [1, 2]\nlearning_rates: [1.0e-3]\n"
                     "strategies: [full, {name: bottom, params: {k: [1, 2]}}]\n"
                     f"output_dir: {out}\n")
    result = freezebench("sweep", "--config", str(study), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [(r["strategy_label"], r["seed"]) for r in plan] == [
        ("full", 1), ("bottom(k=1)", 1), ("bottom(k=2)", 1),
        ("full", 2), ("bottom(k=1)", 2), ("bottom(k=2)", 2)]
    assert {r["status"] for r in plan} == {"pending"} and not out.exists()
    # after one run has completed, the plan says so
    first = plan[0]
    done = freezebench("run", "--model", tiny_model_dirs["bert"], "--dataset",
                       str(sentiment_folder), "--learning-rate", "1e-3", "--seed", "1",
                       "--output-dir", str(out))
    assert done.returncode == 0, done.stderr
    again = json.loads(freezebench("sweep", "--config", str(study), "--dry-run",
                                   "--json").stdout)
    assert {r["id"]: r["status"] for r in again}[first["id"]] == "done"
    report = freezebench("report", str(out), "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["strategies"][0]["label"] == "full"


def test_ls_and_compare_answer_in_json(tmp_path):
    from .fixtures.records import build

    strategies = {s["name"]: s for s in
                  json.loads(freezebench("ls", "strategies", "--json").stdout)}
    assert strategies["bottom"]["parameters"] == {"k": 0, "freeze_embeddings": True,
                                                  "freeze_pooler": False}
    assert strategies["head"]["parameters"] == {} and strategies["head"]["description"]
    folder = build.write_records(tmp_path / "a", build.study_records())
    runs = json.loads(freezebench("ls", "runs", str(folder), "--json").stdout)
    assert len(runs) == len(build.study_records()) and runs[0]["schema_version"] == 3
    other = build.write_records(tmp_path / "b", build.study_records())
    table = json.loads(freezebench("compare", str(folder), str(other), "--json").stdout)
    assert table[0]["Strategy"] == "full" and len(table) == 6


def test_run_json_prints_only_the_record_on_stdout(tiny_model_dirs, sentiment_folder, tmp_path):
    from .error_catalog import run_cli

    args = ["run", "--model", tiny_model_dirs["bert"], "--dataset", str(sentiment_folder),
            "--strategy", "head", "--learning-rate", "1e-3", "--output-dir", "out", "--json"]
    outcome = run_cli(args, tmp_path)
    assert outcome.exit_code == 0, outcome.stderr
    record = json.loads(outcome.stdout)  # the whole of stdout is the record
    [path] = (tmp_path / "out" / "runs").glob("*.json")
    assert record == json.loads(path.read_text())
    assert 0 <= record["metrics"]["test"]["accuracy"] <= 1
    assert "trainable params:" in outcome.stderr and "test F1" not in outcome.stderr

    # a run that fails after it started: its failed record on stdout, the error on stderr
    failed = run_cli([*args[:3], "--dataset", "missing.csv", *args[5:]], tmp_path)
    assert failed.exit_code == 2 and "error: Local path 'missing.csv'" in failed.stderr
    record = json.loads(failed.stdout)
    assert record["status"] == "failed" and "missing.csv" in record["error"]["message"]
    # a mistake caught before the run starts leaves no record, and stdout empty
    early = run_cli([*args, "--strategy-param", "k=1"], tmp_path)
    assert early.exit_code == 2 and early.stdout == "" and "error:" in early.stderr
