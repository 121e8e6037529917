"""Records -> findings: the numbers and the answers of each (model, dataset) in a results folder.

:func:`analyze` runs the numbers of :mod:`freezebench.report.analysis` for every (model, dataset)
in the records and answers the study's questions for each (:mod:`freezebench.report.answers`),
in one cost view and one decision metric (a task the metric cannot score, a regression among
classifiers or the reverse, in its kind's default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from freezebench.errors import FreezebenchError
from freezebench.measure.quality import chance_scores, trivial_scores
from freezebench.report.analysis import (
    BASELINE,
    aggregate,
    choose_learning_rates,
    compare_to_baseline,
    order_strategies,
    rate_scores,
)
from freezebench.report.answers import Answers, answer_questions
from freezebench.report.budgets import budget_table, evaluation_points, quality_curves
from freezebench.report.frame import (
    COST_VIEWS,
    METRICS,
    REGRESSION_METRICS,
    STUDY_KEY,
    record_field,
    records_to_frame,
)

DEFAULT_METRIC = "f1_macro"
REGRESSION_DEFAULT_METRIC = "pearson"


@dataclass
class Findings:
    """Everything the report says about one (model, dataset)."""

    model: str
    dataset: str
    summary: pd.DataFrame
    selected: pd.DataFrame
    curves: pd.DataFrame       # time to quality, per strategy and evaluation step
    budgets: pd.DataFrame      # the best strategy at each share of full fine-tuning's time
    baseline: str | None
    answers: Answers
    metric: str = DEFAULT_METRIC
    cost_view: str = "standalone"
    baselines: dict[str, Any] = field(default_factory=dict)
    record_ids: set[str] = field(default_factory=set)  # every run of this (model, dataset)

    @property
    def regression(self) -> bool:
        """Its runs are regressions (scored by correlations; no classes, baselines or
        collapse)."""
        return self.metric in REGRESSION_METRICS


def analyze(
    records: list[dict[str, Any]],
    *,
    metric: str = DEFAULT_METRIC,
    cost_view: str = "standalone",
    tolerance_points: float = 1.0,
    substantial_saving: float = 0.30,
    baseline: str = BASELINE,
) -> list[Findings]:
    """Choose rates, aggregate, compare and answer, once per (model, dataset) in ``records``.

    ``metric`` decides every task it scores; a task of the other kind (a regression among
    classifiers, or the reverse) is decided by its kind's default (:func:`task_metric`).
    """
    check_choices(metric, cost_view)
    check_metric_fits(metric, records)
    frame = records_to_frame(records)
    by_id = {r["id"]: r for r in records}
    studies = []
    for (model, dataset), runs in frame.groupby(STUDY_KEY, sort=True):
        task_records = [by_id[i] for i in runs["id"] if i in by_id]
        found = _task_findings(runs, task_records, model=model, dataset=dataset,
                               metric=task_metric(metric, task_records), cost_view=cost_view,
                               tolerance_points=tolerance_points,
                               substantial_saving=substantial_saving, baseline=baseline)
        if found is not None:
            studies.append(found)
    if not studies:
        raise FreezebenchError("None of the runs completed, so there are no numbers to report.")
    return studies


def _task_findings(frame: pd.DataFrame, records: list[dict[str, Any]], *, model: str,
                   dataset: str, metric: str, cost_view: str, tolerance_points: float,
                   substantial_saving: float, baseline: str) -> Findings | None:
    """The findings of one (model, dataset); None where none of its runs completed."""
    rates = rate_scores(frame, metric)
    runs = choose_learning_rates(frame, rates)
    if runs.empty:
        return None
    summary = compare_to_baseline(aggregate(runs, rates, metric, cost_view), runs, metric,
                                  baseline)
    summary = order_strategies(summary, baseline)
    has_base = bool((summary["strategy_label"] == baseline).any())
    chosen_ids = set(runs["id"])
    points = evaluation_points(records, runs, metric)
    budgets = budget_table(points, baseline, tolerance_points=tolerance_points)
    return Findings(
        model=model, dataset=dataset, summary=summary, selected=runs,
        curves=quality_curves(points), budgets=budgets,
        baseline=baseline if has_base else None,
        answers=answer_questions(summary, runs, metric=metric, cost_view=cost_view,
                                 tolerance_points=tolerance_points,
                                 substantial_saving=substantial_saving, baseline=baseline,
                                 budgets=budgets),
        metric=metric, cost_view=cost_view,
        baselines=trivial_baselines([r for r in records if r["id"] in chosen_ids]),
        record_ids=set(frame["id"]),
    )


def task_metric(metric: str, records: list[dict[str, Any]]) -> str:
    """``metric`` where it scores the task's runs; else the default of the task's kind (a
    regression in a study decided by macro-F1 is decided by Pearson's r, and the reverse)."""
    done = [r for r in records if r.get("status") == "completed"]
    regression = bool(done) and all(map(is_regression, done))
    if regression == (metric in REGRESSION_METRICS):
        return metric
    return REGRESSION_DEFAULT_METRIC if regression else DEFAULT_METRIC


def check_choices(metric: str, cost_view: str) -> None:
    """A metric the records hold (higher is better) and a known cost view, or a clear error."""
    if metric not in METRICS:
        raise FreezebenchError(f"Unknown metric '{metric}'. Choose one of: {', '.join(METRICS)}.")
    if cost_view not in COST_VIEWS:
        raise FreezebenchError(
            f"Unknown cost view '{cost_view}'. Choose one of: {', '.join(COST_VIEWS)}.")


def is_regression(record: dict[str, Any]) -> bool:
    return record_field(record, ("data", "problem_type")) == "regression"


def default_metric(records: list[dict[str, Any]]) -> str:
    """The decision metric when none is named: Pearson's r where the completed runs are
    regressions, else macro-F1."""
    done = [r for r in records if r.get("status") == "completed"]
    return REGRESSION_DEFAULT_METRIC if done and all(map(is_regression, done)) \
        else DEFAULT_METRIC


def check_metric_fits(metric: str, records: list[dict[str, Any]]) -> None:
    """A metric that scores some task: a classification metric where there are classifiers, a
    correlation where there are regressions (the other tasks use their kind's default). A task
    whose runs are of both kinds has no one metric, and neither does a metric no run holds."""
    done = [r for r in records if r.get("status") == "completed"]
    kinds: dict[tuple, set[bool]] = {}
    for record in done:
        key = tuple(record_field(record, ("config", name))
                    for name in ("model", "dataset", "dataset_config"))
        kinds.setdefault(key, set()).add(is_regression(record))
    mixed = [key for key, kind in kinds.items() if len(kind) > 1]
    if mixed:
        model, source, _ = mixed[0]
        raise FreezebenchError(
            f"The runs of {model} on {source} are regressions and classifiers both: no one "
            "metric scores both. Report them from separate results folders.")
    regressions = sum(map(is_regression, done))
    wanted = metric in REGRESSION_METRICS
    if done and ((wanted and not regressions) or (not wanted and regressions == len(done))):
        kind, choices = (("regressions", REGRESSION_METRICS) if regressions
                         else ("classifiers", [m for m in METRICS
                                               if m not in REGRESSION_METRICS]))
        raise FreezebenchError(
            f"The runs are {kind}, which metric '{metric}' does not score. Choose one of: "
            f"{', '.join(choices)} (--metric, or the study's metric:).")


def trivial_baselines(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What predicting one class for everything, and guessing at random, score on the test split
    (from the class counts the records hold; empty when they hold none)."""
    counts = next((c for r in records
                   if (c := ((r.get("data") or {}).get("label_counts") or {}).get("test"))), None)
    if not counts:
        return {}
    constant = trivial_scores(counts)
    majority = max(counts, key=lambda name: counts[name])
    return {"test_counts": counts, "majority_class": majority,
            "majority": constant[majority], "constant": constant, "chance": chance_scores(counts)}
