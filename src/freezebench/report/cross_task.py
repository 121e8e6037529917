"""Findings of several tasks -> what holds across them.

A task is one (model, dataset) of a results folder, analysed on its own by
:func:`~freezebench.report.findings.analyze`. Across tasks, per strategy label:

- its mean rank over the tasks it ran in (by mean test metric within each task, 1 = best, ties
  share the mean of their ranks),
- its mean paired difference from full fine-tuning over the tasks that have one, with each
  task's difference and 95 % interval, and how many intervals lie below zero, above zero, or
  establish it within the tolerance (the per-task answers' call),
- its speed-up over full fine-tuning (geometric mean over tasks: the mean of ratios that does not
  depend on which side is the numerator) and its training time as a share of full's (mean), in
  the report's cost view.

The recommendation across tasks reads each task's own recommendation
(:mod:`freezebench.report.answers`); it holds where every task recommends the same strategy.
Nothing here goes back to the runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from freezebench.report.findings import Findings
from freezebench.report.formatting import (
    finite,
    metric_name,
    points_word,
    ratio_text,
    share,
    signed,
)

# recommendation kinds that compare with full fine-tuning (answers.Recommendation.kind)
_DECIDED = ("cheaper_and_acceptable", "baseline")


@dataclass(frozen=True)
class TaskDelta:
    """One task's paired difference from full fine-tuning, in points."""

    task: str
    delta: float
    low: float
    high: float
    established: bool   # its interval lies above minus the tolerance


@dataclass(frozen=True)
class StrategyAcrossTasks:
    """One strategy's numbers over the tasks it ran in."""

    label: str
    tasks: int
    mean_rank: float
    ranks: list[float]
    mean_delta: float             # points; NaN where no task compares it with full
    deltas: list[TaskDelta]       # the tasks that compare it with full
    below_zero: int               # intervals entirely below 0
    above_zero: int               # intervals entirely above 0
    within_tolerance: int         # established as acceptable
    speedup: float                # geometric mean over tasks, NaN where none
    time_share: float             # mean of its training time / full's, NaN where none


@dataclass(frozen=True)
class CrossTask:
    """What several tasks say together."""

    tasks: list[str]
    strategies: list[StrategyAcrossTasks]   # best mean rank first
    recommended: dict[str, str | None]      # per task; None where it has no full runs or times
    agreed: str | None                      # the strategy every task recommends
    acceptable_everywhere: list[str]        # established as acceptable in every task
    text: str
    metric: str | None                      # None: the tasks are decided by different metrics
    cost_view: str
    tolerance_points: float


def cross_task(studies: list[Findings]) -> CrossTask | None:
    """The cross-task summary of ``studies`` (one Findings per task); None for fewer than two."""
    if len(studies) < 2:
        return None
    names = task_names(studies)
    first = studies[0]
    labels = list(dict.fromkeys(label for s in studies for label in s.summary["strategy_label"]))
    rows = [_strategy(label, studies, names) for label in labels]
    rows.sort(key=lambda r: (r.mean_rank, -r.tasks))
    recommended = {names[i]: (s.answers.recommendation.strategy
                              if s.answers.recommendation.kind in _DECIDED else None)
                   for i, s in enumerate(studies)}
    picks = set(recommended.values())
    agreed = picks.pop() if len(picks) == 1 and None not in picks else None
    everywhere = [r.label for r in rows if r.within_tolerance == len(studies)]
    text = _recommendation_text(recommended, agreed, everywhere, first.answers.tolerance_points)
    metrics = {s.metric for s in studies}
    metric = first.metric if len(metrics) == 1 else None
    return CrossTask(names, rows, recommended, agreed, everywhere, text, metric,
                     first.cost_view, first.answers.tolerance_points)


def task_names(studies: list[Findings]) -> list[str]:
    """Each task as a reader names it: the dataset where every task has the same model, the
    model where every task has the same dataset, else 'model on dataset'."""
    if len({s.model for s in studies}) == 1:
        return [s.dataset for s in studies]
    if len({s.dataset for s in studies}) == 1:
        return [s.model for s in studies]
    return [f"{s.model} on {s.dataset}" for s in studies]


def _strategy(label: str, studies: list[Findings], names: list[str]) -> StrategyAcrossTasks:
    ranks, deltas, speedups, shares = [], [], [], []
    view = studies[0].cost_view
    for name, study in zip(names, studies, strict=True):
        summary = study.summary
        if label not in set(summary["strategy_label"]):
            continue
        rank = summary["quality_mean"].rank(ascending=False, method="average")
        row = summary[summary["strategy_label"] == label].iloc[0]
        ranks.append(float(rank[row.name]))
        if study.baseline is None or label == study.baseline:
            continue
        if finite(row["delta_points"]):
            deltas.append(TaskDelta(name, float(row["delta_points"]), float(row["delta_low"]),
                                    float(row["delta_high"]),
                                    bool(study.answers.established.get(label))))
        if finite(row[f"speedup_{view}"]) and row[f"speedup_{view}"] > 0:
            speedups.append(float(row[f"speedup_{view}"]))
        if finite(row["time_saving"]):
            shares.append(1 - float(row["time_saving"]))
    return StrategyAcrossTasks(
        label=label, tasks=len(ranks), mean_rank=float(np.mean(ranks)), ranks=ranks,
        mean_delta=float(np.mean([d.delta for d in deltas])) if deltas else math.nan,
        deltas=deltas,
        below_zero=sum(d.high < 0 for d in deltas if finite(d.high)),
        above_zero=sum(d.low > 0 for d in deltas if finite(d.low)),
        within_tolerance=sum(d.established for d in deltas),
        speedup=float(np.exp(np.mean(np.log(speedups)))) if speedups else math.nan,
        time_share=float(np.mean(shares)) if shares else math.nan)


def _recommendation_text(recommended: dict[str, str | None], agreed: str | None,
                         everywhere: list[str], tolerance: float) -> str:
    count = len(recommended)
    if agreed is not None:
        text = f"Every one of the {count} tasks recommends {agreed}."
    else:
        by_pick: dict[str | None, list[str]] = {}
        for task, pick in recommended.items():
            by_pick.setdefault(pick, []).append(task)
        parts = [f"{pick} in {_join(tasks)}" for pick, tasks in by_pick.items() if pick]
        text = "The tasks disagree: no one strategy is recommended in all of them"
        text += f" ({'; '.join(parts)})" if parts else ""
        if None in by_pick:
            text += (f"; {_join(by_pick[None])} cannot recommend (no completed full "
                     "fine-tuning runs, or no training times)")
        text += "."
    if everywhere:
        text += (f" Established within {points_word(tolerance)} of full fine-tuning in every "
                 f"task: {', '.join(everywhere)}.")
    else:
        text += (f" No strategy other than full fine-tuning is established within "
                 f"{points_word(tolerance)} of it in every task.")
    return text


def cross_task_table(result: CrossTask) -> pd.DataFrame:
    """The cross-task numbers as display text, one row per strategy (best mean rank first)."""
    # tasks of different kinds (classification, regression) are each in their own metric
    name = metric_name(result.metric) if result.metric else "metric (each task's own)"
    view = "standalone" if result.cost_view == "standalone" else "in study"
    rows = []
    for r in result.strategies:
        rows.append({
            "Strategy": r.label,
            "Tasks": str(r.tasks),
            f"Mean rank (test {name})": f"{r.mean_rank:.2f}",
            f"Mean Δ{name} vs full": (f"{signed(r.mean_delta)} ({len(r.deltas)} tasks)"
                                      if r.deltas else "–"),
            "Per task: Δ, 95 % CI": "; ".join(
                f"{d.task}: {signed(d.delta)} [{signed(d.low)}, {signed(d.high)}]"
                for d in r.deltas) or "–",
            "CI below 0 / above 0 / acceptable": (
                f"{r.below_zero} / {r.above_zero} / {r.within_tolerance} of {len(r.deltas)}"
                if r.deltas else "–"),
            f"Speed-up ({view}, geometric mean)": ratio_text(r.speedup),
            "Training time vs full (mean)": share(r.time_share) if finite(r.time_share)
            else "–",
        })
    return pd.DataFrame(rows)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
