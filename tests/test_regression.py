"""Regression (STS-B-like data): a float label, one output, MSE loss, Pearson/Spearman/MSE, and a
report that reads in those terms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from freezebench.config import RunConfig
from freezebench.data.loading import load_task_data, tokenize_splits
from freezebench.engine.distributed import DataParallel, Share
from freezebench.engine.loss import task_loss
from freezebench.engine.training import Checkpoint, Recipe, check_best_metric
from freezebench.errors import ConfigError, DataError, FreezebenchError
from freezebench.measure.quality import regression_metrics
from freezebench.record import HistoryEntry, SplitMetrics
from freezebench.report.document import write_report
from freezebench.report.findings import analyze
from freezebench.report.records import load_records
from freezebench.study.config import parse_study
from freezebench.study.sweep import run_sweep

from .conftest import NEGATIVE, POSITIVE


def write_scores_folder(folder: Path, pairs: bool = False) -> Path:
    """CSV splits of the conftest sentences with a similarity-like score in [0, 5]: positive
    sentences high, negative low, every row its own fractional value (seeded). ``pairs``: as
    STS-B, sentence1 and sentence2 (the second a positive sentence)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, repeat in (("train", 4), ("validation", 1), ("test", 1)):
        texts = (POSITIVE + NEGATIVE) * repeat
        base = ([4.0] * len(POSITIVE) + [1.0] * len(NEGATIVE)) * repeat
        scores = np.round(np.array(base) + rng.uniform(-1, 1, len(base)), 2)
        columns = ({"sentence1": texts, "sentence2": [POSITIVE[i % len(POSITIVE)]
                                                       for i in range(len(texts))]}
                   if pairs else {"sentence": texts})
        pd.DataFrame({**columns, "score": scores}).to_csv(folder / f"{split}.csv", index=False)
    return folder


def freezebench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "freezebench", *args], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pairs"])
def test_float_scores_run_as_a_regression_through_the_cli(tiny_model_dirs, tmp_path, pairs):
    data = write_scores_folder(tmp_path / "sts", pairs=pairs)
    out = tmp_path / "out"
    result = freezebench("run", "--model", tiny_model_dirs["bert"], "--dataset", str(data),
                         "--learning-rate", "1e-3", "--num-train-epochs", "2",
                         "--precision", "fp32", "--save-model", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert "data: Regression: label column 'score' holds fractional values" in result.stderr
    assert "test Pearson / Spearman" in result.stdout
    [path] = (out / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["data"]["problem_type"] == "regression"
    assert (record["data"]["num_labels"], record["data"]["label_names"]) == (1, ["score"])
    assert record["data"]["label_counts"] is None
    assert record["data"]["text_pair_column"] == ("sentence2" if pairs else None)
    test = record["metrics"]["test"]
    assert test["accuracy"] is None and test["f1"] is None and test["pearson"] is not None
    assert test["loss"] == pytest.approx(test["mse"], rel=1e-5)  # the loss is the MSE

    # the saved model, scored here with transformers alone, gives the record's numbers
    model = AutoModelForSequenceClassification.from_pretrained(record["saved_model"]).eval()
    assert (model.config.num_labels, model.config.problem_type) == (1, "regression")
    tokenizer = AutoTokenizer.from_pretrained(record["saved_model"])
    frame = pd.read_csv(data / "test.csv")
    with torch.no_grad():
        texts = ([list(frame["sentence1"]), list(frame["sentence2"])] if pairs
                 else [list(frame["sentence"])])
        batch = tokenizer(*texts, padding=True, return_tensors="pt")
        predictions = model(**batch).logits.squeeze(-1).numpy().astype(np.float64)
    scores = frame["score"].to_numpy(dtype=np.float32).astype(np.float64)
    assert test["pearson"] == pytest.approx(stats.pearsonr(predictions, scores)[0], abs=1e-4)
    assert test["spearman"] == pytest.approx(stats.spearmanr(predictions, scores)[0], abs=1e-4)
    assert test["mse"] == pytest.approx(np.mean((predictions - scores) ** 2), rel=1e-4)


# --------------------------------------------------------------------------- data


def write_int_scores(path: Path) -> Path:
    rows = [f"review {i},{i % 6}" for i in range(60)]  # whole-number scores 0..5
    path.write_text("text,score\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_whole_number_scores_are_classes_unless_regression_is_forced(tmp_path):
    path = str(write_int_scores(tmp_path / "stars.csv"))
    classes = load_task_data(path)
    assert (classes.problem_type, classes.num_labels) == ("classification", 6)
    forced = load_task_data(path, problem_type="regression")
    assert (forced.problem_type, forced.label_names, forced.num_labels) == (
        "regression", ["score"], 1)
    labels = forced.splits["train"]["label"]
    assert all(isinstance(v, float) for v in labels) and set(labels) <= {0.0, 1.0, 2.0, 3.0,
                                                                           4.0, 5.0}
    # carved splits and subsets are random (scores are no classes), and no class warnings
    carved = [note for note in forced.notes if note.startswith("No ")]
    assert len(carved) == 2 and all("carved a random 10%" in note for note in carved)
    assert not any(note.startswith("Class ") for note in forced.notes)


def test_regression_labels_float_in_tokenized_splits(tmp_path, tokenizer):
    task = load_task_data(str(write_int_scores(tmp_path / "stars.csv")), problem_type="regression")
    tokenized = tokenize_splits(task, tokenizer)
    assert tokenized["train"].features["labels"].dtype == "float32"


def test_fractional_scores_choose_regression_and_say_so(tmp_path):
    folder = write_scores_folder(tmp_path / "sts")
    task = load_task_data(str(folder), max_train_samples=20)
    assert task.regression
    assert any(note.startswith("Regression: label column 'score'") for note in task.notes)
    assert "Subsampled train to 20 of 48 rows (random, seed 42)." in task.notes
    with pytest.raises(DataError, match="fractional"):
        load_task_data(str(folder), problem_type="classification")


@pytest.mark.parametrize(("rows", "expected"), [
    (["a,1.5", "b,1.5", "c,1.5"], "every score in split 'train'"),
    (["a,0.5", "b,", "c,2.5"], "the label is missing"),
    (["a,0.5", "b,inf", "c,2.5"], "the score is infinite"),
    (["a,x", "b,y", "c,z"], "a regression needs numbers"),
])
def test_bad_scores_are_clear_errors(tmp_path, rows, expected):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\n" + "\n".join(rows * 10) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=expected):
        load_task_data(str(path), problem_type="regression")


# --------------------------------------------------------------------------- loss and metrics


def test_the_regression_loss_is_the_squared_error_of_the_single_output():
    logits = torch.tensor([[0.5], [2.0], [-1.0]])
    scores = torch.tensor([1.0, 2.0, 1.0])
    squared = torch.tensor([0.25, 0.0, 4.0])
    assert task_loss(logits, scores).item() == pytest.approx(squared.mean().item())
    assert torch.allclose(task_loss(logits, scores, reduction="none"), squared)
    # class ids keep cross-entropy
    two = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert task_loss(two, torch.tensor([0, 1])).item() == pytest.approx(
        torch.nn.functional.cross_entropy(two, torch.tensor([0, 1])).item())
    # two ranks: each rank's weighted share adds up to the global mean's gradient
    ranks = DataParallel(rank=0, world_size=2)
    share = Share(indices=[0, 1, 2], weights=torch.ones(3), global_size=6)
    assert ranks.loss(logits, scores, share).item() == pytest.approx(squared.sum().item() / 3)


def test_regression_metrics_equal_scipy_and_constant_predictions_collapse():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 5, 50)
    predictions = scores + rng.normal(0, 1, 50)
    metrics = regression_metrics(predictions[:, None], scores, loss=1.0)
    assert metrics.pearson == pytest.approx(stats.pearsonr(predictions, scores)[0])
    assert metrics.spearman == pytest.approx(stats.spearmanr(predictions, scores)[0])
    assert metrics.mse == pytest.approx(np.mean((predictions - scores) ** 2))
    assert metrics.accuracy is None and metrics.collapsed is False
    flat = regression_metrics(np.full((50, 1), 2.5), scores, loss=1.0)
    assert flat.pearson is None and flat.spearman is None and flat.collapsed is True


def point(step: int, mse: float) -> HistoryEntry:
    metrics = SplitMetrics(accuracy=None, f1=None, f1_macro=None, precision=None, recall=None,
                           loss=mse, per_class_f1=None, samples=4, mse=mse, pearson=1 / mse,
                           spearman=0.5)
    return HistoryEntry(step=step, epoch=0.0, seconds=0.0, learning_rate=0.0,
                        trainable_params=1, validation=metrics, test=metrics)


def test_the_best_checkpoint_by_mse_is_the_lowest():
    config = RunConfig(select_checkpoint="best", metric_for_best_model="mse")
    checkpoint = Checkpoint(Recipe.from_config(config), params={})
    for step, mse in [(0, 3.0), (1, 1.0), (2, 2.0)]:
        checkpoint.consider(point(step, mse))
    assert checkpoint.restore().step == 1
    by_pearson = Checkpoint(Recipe.from_config(config.model_copy(
        update={"metric_for_best_model": "pearson"})), params={})
    for step, mse in [(0, 3.0), (1, 2.0), (2, 4.0)]:
        by_pearson.consider(point(step, mse))
    assert by_pearson.restore().step == 1  # pearson 1/2 is the highest


def test_the_best_metric_must_be_one_the_problem_has():
    check_best_metric("best", "spearman", "regression")
    check_best_metric("last", "f1_macro", "regression")  # no choice made: nothing to check
    with pytest.raises(ConfigError, match="pearson, spearman, mse, loss"):
        check_best_metric("best", "f1_macro", "regression")
    with pytest.raises(ConfigError, match="not a metric of a classification run"):
        check_best_metric("best", "mse", "classification")


# --------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def regression_study(tiny_model_dirs, tmp_path_factory) -> Path:
    """A tiny regression study's results: full and head, two seeds, one rate each."""
    root = tmp_path_factory.mktemp("regression-study")
    data = write_scores_folder(root / "sts")
    study = parse_study({
        "name": "sts-tiny", "model": tiny_model_dirs["bert"], "dataset": str(data),
        "metric": "pearson", "seeds": [1, 2], "output_dir": str(root / "results"),
        "recipe": {"num_train_epochs": 2, "per_device_train_batch_size": 8,
                   "precision": "fp32", "max_length": 32},
        "strategies": [{"name": "full", "learning_rates": [1e-3]},
                       {"name": "head", "learning_rates": [1e-2]}],
    }, "the regression study")
    summary = run_sweep(study, progress=False)
    assert summary.failed == 0
    return root / "results"


def test_a_regression_study_reports_in_pearson(regression_study, tmp_path):
    paths = write_report(regression_study, output_dir=tmp_path / "report")
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "Decision metric: test Pearson r." in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| Strategy | Train"))
    for column in ["Test Pearson r (×100)", "ΔPearson r vs full, 95 % CI",
                   "Test Spearman ρ (×100)", "Test MSE"]:
        assert column in header
    assert "Test accuracy" not in header and "Trivial baselines" not in markdown
    assert "no trivial classifiers to compare with" in markdown
    summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    assert (summary["metric"], summary["problem_type"]) == ("pearson", "regression")
    assert summary["baselines"] == {}
    # the report's Pearson is the records' mean test Pearson over seeds
    records = load_records(regression_study)[0]
    full = [r["metrics"]["test"]["pearson"] for r in records if r["strategy_label"] == "full"]
    row = next(s for s in summary["strategies"] if s["label"] == "full")
    assert row["test"]["mean"] == pytest.approx(np.mean(full))


def test_a_classification_metric_on_regressions_is_a_clear_error(regression_study):
    records = load_records(regression_study)[0]
    with pytest.raises(FreezebenchError, match="The runs are regressions.*pearson, spearman"):
        analyze(records, metric="f1_macro")
    assert analyze(records, metric="spearman")[0].regression
