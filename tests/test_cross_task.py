"""Studies across tasks: a datasets list sweeps every (model, dataset); the report adds a
cross-task summary (mean rank, mean Δ vs full, the recommendation that holds or where it does
not) from each task's own findings."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freezebench.cli import app
from freezebench.errors import ConfigError
from freezebench.record import run_id
from freezebench.report.cross_task import cross_task
from freezebench.report.document import write_report
from freezebench.report.findings import analyze
from freezebench.study.config import expand, load_study, parse_study
from freezebench.study.selection import select_runs
from freezebench.study.sweep import STUDY_FILE, run_sweep

from .conftest import NEGATIVE, POSITIVE
from .fixtures.records import build

SEEDS = (1, 2, 3)
FULL = (0.80, 0.84, 0.88)  # full fine-tuning's test macro-F1 per seed, in every task


def record(label: str, dataset: str, *, seed: int, test: float, seconds: float) -> dict:
    """A fixture record of ``dataset`` whose macro-F1 is ``test`` on validation and test."""
    made = build.make_record(label, seed=seed, seconds=seconds, dataset=dataset)
    for split in ("test", "validation"):
        made["metrics"][split].update(f1_macro=test, collapsed=False)
    made["efficiency"].update(prefix_builds=[], standalone_train_seconds=seconds)
    return made


def task(dataset: str, offsets: dict[str, float], seconds: dict[str, float]) -> list[dict]:
    """Every strategy's runs on ``dataset``: full's scores moved by a constant per strategy."""
    return [record(label, dataset, seed=s, test=f + offsets[label], seconds=seconds[label])
            for label in offsets for s, f in zip(SEEDS, FULL, strict=True)]


SECONDS = {"full": 100.0, "bottom": 40.0, "head": 10.0}


def across(records: list[dict]):
    return cross_task(analyze(records))


def by_label(result) -> dict:
    return {r.label: r for r in result.strategies}


# --------------------------------------------------------------------------- numbers


def test_agreeing_tasks_give_mean_ranks_deltas_and_one_recommendation():
    offsets = {"full": 0.0, "bottom": -0.002, "head": -0.10}
    result = across(task("d1", offsets, SECONDS) + task("d2", offsets, SECONDS))
    rows = by_label(result)
    assert result.tasks == ["d1", "d2"]
    assert [r.label for r in result.strategies] == ["full", "bottom", "head"]
    assert [rows[k].mean_rank for k in ("full", "bottom", "head")] == [1.0, 2.0, 3.0]
    assert rows["bottom"].mean_delta == pytest.approx(-0.2)
    assert rows["head"].mean_delta == pytest.approx(-10.0)
    assert len(rows["bottom"].deltas) == 2 and math.isnan(rows["full"].mean_delta)
    assert (rows["bottom"].within_tolerance, rows["head"].below_zero) == (2, 2)
    assert rows["bottom"].speedup == pytest.approx(2.5)
    assert rows["bottom"].time_share == pytest.approx(0.4)
    assert result.recommended == {"d1": "bottom", "d2": "bottom"}
    assert result.agreed == "bottom" and result.acceptable_everywhere == ["bottom"]
    assert result.text.startswith("Every one of the 2 tasks recommends bottom.")


def test_disagreeing_tasks_say_which_task_recommends_what():
    d1 = task("d1", {"full": 0.0, "bottom": -0.002, "head": -0.10}, SECONDS)
    d2 = task("d2", {"full": 0.0, "bottom": -0.05, "head": 0.01}, SECONDS)
    result = across(d1 + d2)
    rows = by_label(result)
    # d1: full 1, bottom 2, head 3; d2: head 1, full 2, bottom 3
    assert [(r.label, r.mean_rank) for r in result.strategies] == [
        ("full", 1.5), ("head", 2.0), ("bottom", 2.5)]
    assert rows["head"].mean_delta == pytest.approx(-4.5)  # (-10 + 1) / 2
    assert (rows["head"].below_zero, rows["head"].above_zero) == (1, 1)
    assert rows["head"].within_tolerance == 1 and rows["bottom"].within_tolerance == 1
    assert result.agreed is None and result.acceptable_everywhere == []
    assert result.text.startswith("The tasks disagree: no one strategy is recommended in all "
                                  "of them (bottom in d1; head in d2).")
    assert "No strategy other than full fine-tuning is established" in result.text


def test_a_strategy_missing_from_a_task_is_ranked_over_the_tasks_it_ran_in():
    d1 = task("d1", {"full": 0.0, "bottom": -0.002, "head": -0.10}, SECONDS)
    d2 = task("d2", {"full": 0.0, "head": 0.01}, SECONDS)
    rows = by_label(across(d1 + d2))
    assert (rows["bottom"].tasks, rows["bottom"].mean_rank, len(rows["bottom"].deltas)) == (
        1, 2.0, 1)
    assert rows["head"].ranks == [3.0, 1.0]


def test_one_task_has_no_cross_task_summary():
    assert across(task("d1", {"full": 0.0, "head": -0.1}, SECONDS)) is None


def test_the_report_and_summary_json_carry_the_cross_task_numbers(tmp_path):
    d1 = task("d1", {"full": 0.0, "bottom": -0.002, "head": -0.10}, SECONDS)
    d2 = task("d2", {"full": 0.0, "bottom": -0.05, "head": 0.01}, SECONDS)
    build.write_records(tmp_path, d1 + d2)
    paths = write_report(tmp_path)
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert markdown.index("## Across the 2 tasks") < markdown.index("## bert-base-cased on d1")
    assert "The tasks disagree" in markdown and r"d1: −10.0 \[−10.0, −10.0\]" in markdown
    summary = json.loads(paths.summary.read_text())
    assert [t["dataset"] for t in summary["tasks"]] == ["d1", "d2"]
    cross = summary["cross_task"]
    assert cross["recommendation"] == {"label": None, "per_task": {"d1": "bottom", "d2": "head"},
                                       "acceptable_in_every_task": []}
    head = next(s for s in cross["strategies"] if s["label"] == "head")
    assert head["mean_rank"] == 2.0 and head["delta_vs_full"]["mean"] == pytest.approx(-0.045)
    assert [d["task"] for d in head["delta_vs_full"]["per_task"]] == ["d1", "d2"]


def test_a_task_without_full_runs_cannot_recommend_and_says_so():
    d1 = task("d1", {"full": 0.0, "bottom": -0.002}, SECONDS)
    d2 = task("d2", {"bottom": 0.0, "head": -0.1}, SECONDS)
    result = across(d1 + d2)
    assert result.recommended == {"d1": "bottom", "d2": None} and result.agreed is None
    assert "d2 cannot recommend" in result.text


# --------------------------------------------------------------------------- study config

BASE = {"name": "t", "model": "m", "seeds": [1], "learning_rates": [1e-4],
        "strategies": ["full"], "output_dir": "out"}


@pytest.mark.parametrize(("extra", "message"), [
    ({"dataset": "a", "datasets": ["b"]}, "give either 'datasets' or 'dataset'"),
    ({"text_column": "t", "datasets": ["b"]}, "move 'text_column' into each item"),
    ({"datasets": []}, "at least 1 item"),
    ({"datasets": [{"dataset": "a", "text_colum": "t"}]},
     "datasets[0]: unknown key 'text_colum'. Did you mean 'text_column'?"),
    ({"datasets": ["a", {"dataset": "a"}]}, "datasets[1] repeats datasets[0]"),
    ({"datasets": [7]}, "expected a dataset name or a mapping"),
])
def test_dataset_list_mistakes_are_clear(extra, message):
    with pytest.raises(ConfigError) as info:
        parse_study({**BASE, **extra})
    assert message in str(info.value)


def test_each_dataset_keeps_its_columns_and_runs_group_by_model_then_dataset():
    study = parse_study({**BASE, "models": ["m1", "m2"], "model": None, "datasets": [
        "a", {"dataset": "glue", "dataset_config": "sst2", "text_column": "sentence"}]})
    runs = expand(study)
    assert study.task_count() == 4
    assert [(r.model, r.dataset, r.dataset_config, r.text_column) for r in runs] == [
        ("m1", "a", None, None), ("m1", "glue", "sst2", "sentence"),
        ("m2", "a", None, None), ("m2", "glue", "sst2", "sentence")]


def test_only_picks_one_dataset_of_the_list():
    study = parse_study({**BASE, "datasets": ["a", "b"], "strategies": ["full", "head"]})
    kept = select_runs(expand(study), ["dataset=b"])
    assert [(r.dataset, r.strategy) for r in kept] == [("b", "full"), ("b", "head")]


# --------------------------------------------------------------------------- end to end

TOPICS = {
    "sport": ["the striker scored twice", "a late goal won the cup", "the team trained hard",
              "he ran the marathon", "the coach praised the defence", "a record lap time"],
    "food": ["simmer the sauce slowly", "add salt to the dough", "the soup needs basil",
             "bake the bread for an hour", "slice the onions thinly", "a rich chocolate cake"]}


def write_rows(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture()
def two_tasks(tmp_path, tiny_model_dirs) -> dict:
    """A study over two CSVs of different content: sentiment (text, label) and topic (found
    only through the entry's columns)."""
    sentiment = write_rows(tmp_path / "sentiment.csv", ["text", "label"],
                           [(t, 1) for t in POSITIVE] * 4 + [(t, 0) for t in NEGATIVE] * 4)
    topics = write_rows(tmp_path / "topics.csv", ["id", "sentence", "topic"],
                        [(i, t, name) for i, (name, texts) in enumerate(TOPICS.items())
                         for t in texts * 4])
    return {"name": "two", "model": tiny_model_dirs["bert"],
            "datasets": [str(sentiment), {"dataset": str(topics), "text_column": "sentence",
                                          "label_column": "topic"}],
            "recipe": {"max_train_samples": 16, "max_eval_samples": 8, "max_length": 16,
                       "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8},
            "seeds": [1], "learning_rates": [1e-3], "strategies": ["full", "head"],
            "output_dir": str(tmp_path / "results")}


def test_a_study_over_two_datasets_sweeps_both_and_reports_across_them(two_tasks, capsys):
    summary = run_sweep(parse_study(two_tasks))
    assert (summary.planned, summary.completed, summary.failed) == (4, 4, 0)
    assert "study two: 2 tasks (1 model x 2 datasets), 4 runs planned" in capsys.readouterr().out
    paths = write_report(two_tasks["output_dir"])
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "on sentiment.csv (local copy)" in markdown and "on topics.csv (local copy)" in markdown
    assert markdown.count("### The answers") == 2 and "## Across the 2 tasks" in markdown
    payload = json.loads(paths.summary.read_text())
    assert len(payload["tasks"]) == 2
    assert {s["label"] for s in payload["cross_task"]["strategies"]} == {"full", "head"}
    # resume: nothing left to run, and the saved study.yaml plans the same runs
    assert run_sweep(parse_study(two_tasks)).skipped == 4
    saved = load_study(Path(two_tasks["output_dir"]) / STUDY_FILE)
    assert [run_id(c) for c in expand(saved)] == [run_id(c) for c in expand(parse_study(two_tasks))]


def test_the_dry_run_counts_the_tasks_and_names_each_run_s_task(two_tasks, tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(json.dumps(two_tasks), encoding="utf-8")  # JSON is YAML
    result = CliRunner().invoke(app, ["sweep", "--config", str(path), "--dry-run",
                                      "--only", "strategy=head"])
    assert result.exit_code == 0, result.output
    assert "2 runs planned over 2 tasks, 2 pending" in result.output
    assert "task" in result.output and "topics" in result.output  # rich may wrap the cell


def as_regression(made: dict, pearson: float) -> dict:
    """A fixture record turned into a regression's: Pearson's r in place of the class metrics."""
    made["data"]["problem_type"] = "regression"
    for split in ("test", "validation"):
        made["metrics"][split].update(pearson=pearson, spearman=pearson, mse=1 - pearson,
                                      accuracy=None, f1=None, f1_macro=None, precision=None,
                                      recall=None)
    for point in made.get("history") or []:
        for split in ("validation", "test"):
            if point.get(split):
                point[split].update(pearson=pearson, spearman=pearson, f1_macro=None)
    return made


def test_a_classification_and_a_regression_task_are_each_decided_in_their_own_metric():
    offsets = {"full": 0.0, "bottom": -0.002, "head": -0.10}
    classes = task("d1", offsets, SECONDS)
    scores = [as_regression(r, r["metrics"]["test"]["f1_macro"] - 0.2)
              for r in task("d2", offsets, SECONDS)]
    studies = analyze(classes + scores)
    assert [(s.dataset, s.metric) for s in studies] == [("d1", "f1_macro"), ("d2", "pearson")]
    regression = studies[1].summary.set_index("strategy_label")
    assert regression.loc["full", "quality_mean"] == pytest.approx(0.64)
    result = cross_task(studies)
    assert result.metric is None
    assert by_label(result)["head"].mean_delta == pytest.approx(-10.0)
    with pytest.raises(Exception, match="does not score"):
        analyze(scores, metric="f1_macro")
