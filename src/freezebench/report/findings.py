"""Records -> findings: the numbers and the answers of each (model, dataset) in a results folder.

:func:`analyze` runs the numbers of :mod:`freezebench.report.analysis` for every (model, dataset)
in the records and answers the study's questions for each (:mod:`freezebench.report.answers`),
in one decision metric and one cost view.
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
    """Choose rates, aggregate, compare and answer, once per (model, dataset) in ``records``."""
    check_choices(metric, cost_view)
    check_metric_fits(metric, records)
    frame = records_to_frame(records)
    rates = rate_scores(frame, metric)
    chosen = choose_learning_rates(frame, rates)
    if chosen.empty:
        raise FreezebenchError("None of the runs completed, so there are no numbers to report.")
    summary = compare_to_baseline(aggregate(chosen, rates, metric, cost_view), chosen, metric,
                                  baseline)
    studies = []
    for (model, dataset), group in summary.groupby(STUDY_KEY, sort=True):
        group = order_strategies(group, baseline)
        has_base = bool((group["strategy_label"] == baseline).any())
        runs = chosen[(chosen["model"] == model) & (chosen["dataset"] == dataset)]
        ids = set(frame.loc[(frame["model"] == model) & (frame["dataset"] == dataset), "id"])
        chosen_ids = set(runs["id"])
        points = evaluation_points(records, runs, metric)
        budgets = budget_table(points, baseline, tolerance_points=tolerance_points)
        studies.append(Findings(
            model=model, dataset=dataset, summary=group, selected=runs,
            curves=quality_curves(points), budgets=budgets,
            baseline=baseline if has_base else None,
            answers=answer_questions(group, runs, metric=metric, cost_view=cost_view,
                                     tolerance_points=tolerance_points,
                                     substantial_saving=substantial_saving, baseline=baseline,
                                     budgets=budgets),
            metric=metric, cost_view=cost_view,
            baselines=trivial_baselines([r for r in records if r["id"] in chosen_ids]),
            record_ids=ids,
        ))
    return studies


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
    """A classification metric for classifiers, a correlation for regressions: a metric the
    completed runs do not hold would leave every number of the report empty."""
    done = [r for r in records if r.get("status") == "completed"]
    regressions = sum(map(is_regression, done))
    wanted = metric in REGRESSION_METRICS
    if 0 < regressions < len(done):
        raise FreezebenchError(
            f"{regressions} of the {len(done)} completed runs are regressions and the others "
            "classifiers: no one decision metric scores both. Report them from separate results "
            "folders.")
    if done and bool(regressions) != wanted:
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
