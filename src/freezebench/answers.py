"""The study's three questions answered in plain words, once per (model, dataset).

:func:`analyze` runs the numbers of :mod:`freezebench.analysis` for every (model, dataset) in the
records and answers, for each:

1. how much performance freezing costs and what it saves (one sentence per strategy),
2. which strategy gives the best trade-off between performance and compute
   (:class:`Recommendation`),
3. whether acceptable performance can be kept while training time drops substantially.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from freezebench.analysis import (
    BASELINE,
    STUDY_KEY,
    aggregate,
    compare_to_baseline,
    order_strategies,
    pareto_front,
    records_to_frame,
    select_best_lr,
    training_curves,
)
from freezebench.errors import FreezebenchError
from freezebench.formatting import (
    finite,
    points_text,
    points_word,
    saving_words,
    share,
    signed,
    speed_words,
)

# Thresholds compare rounded-looking numbers (a drop of exactly 1.0 point is "within 1.0 point").
_EPS = 1e-9


@dataclass(frozen=True)
class Recommendation:
    """Question 2: which strategy gives the best trade-off.

    ``kind`` is ``"cheaper_within_tolerance"``, ``"baseline"`` (nothing cheaper is acceptable) or
    ``"no_baseline"`` (no completed ``full`` runs to compare with).
    """

    strategy: str
    kind: str
    runners_up: list[str]
    pareto: list[str]
    alternative: str | None
    text: str


@dataclass(frozen=True)
class Answers:
    """The study's three answers, as sentences and as the values behind them."""

    performance_vs_efficiency: dict[str, str]
    recommendation: Recommendation
    acceptable_with_savings: bool | None
    qualifying: list[str]
    keep_performance_text: str
    tolerance_points: float
    substantial_saving: float


@dataclass
class Study:
    """Everything the report says about one (model, dataset)."""

    model: str
    dataset: str
    summary: pd.DataFrame
    selected: pd.DataFrame
    curves: pd.DataFrame
    baseline: str | None
    answers: Answers


def analyze(
    records: list[dict[str, Any]],
    *,
    tolerance_points: float = 1.0,
    substantial_saving: float = 0.30,
    baseline: str = BASELINE,
) -> list[Study]:
    """Select, aggregate, compare and answer, once per (model, dataset) in ``records``."""
    frame = records_to_frame(records)
    selected = select_best_lr(frame)
    if selected.empty:
        raise FreezebenchError("None of the runs completed, so there are no numbers to report.")
    summary = compare_to_baseline(aggregate(selected), baseline)
    studies = []
    for (model, dataset), group in summary.groupby(STUDY_KEY, sort=True):
        group = order_strategies(group, baseline)
        has_base = bool((group["strategy_label"] == baseline).any())
        chosen = selected[(selected["model"] == model) & (selected["dataset"] == dataset)]
        studies.append(Study(
            model=model, dataset=dataset, summary=group, selected=chosen,
            curves=training_curves(records, chosen), baseline=baseline if has_base else None,
            answers=answer_questions(group, tolerance_points=tolerance_points,
                                     substantial_saving=substantial_saving, baseline=baseline),
        ))
    return studies


def answer_questions(
    summary: pd.DataFrame, *, tolerance_points: float = 1.0, substantial_saving: float = 0.30,
    baseline: str = BASELINE,
) -> Answers:
    """The answers to the three study questions for one (model, dataset) summary."""
    has_base = bool((summary["strategy_label"] == baseline).any())
    sentences = {row.strategy_label: tradeoff_sentence(row) for row in summary.itertuples()
                 if has_base and row.strategy_label != baseline}
    verdict, qualifying, text = _keep_performance(summary, tolerance_points, substantial_saving,
                                                  baseline, has_base)
    return Answers(
        performance_vs_efficiency=sentences,
        recommendation=recommend(summary, tolerance_points=tolerance_points, baseline=baseline),
        acceptable_with_savings=verdict, qualifying=qualifying, keep_performance_text=text,
        tolerance_points=tolerance_points, substantial_saving=substantial_saving,
    )


def recommend(summary: pd.DataFrame, *, tolerance_points: float = 1.0,
              baseline: str = BASELINE) -> Recommendation:
    """Among Pareto-optimal strategies (test F1 vs training time) within tolerance of the
    baseline, the one that saves the most training time."""
    front = pareto_front(summary, "test_f1_mean", "train_seconds_mean")
    rows = summary.set_index("strategy_label")
    if baseline not in rows.index:
        best = rows["test_f1_mean"].idxmax()
        text = (f"There are no completed '{baseline}' runs to compare with, so only absolute "
                f"numbers can be given. Highest mean test F1: {best} "
                f"({points_text(rows.at[best, 'test_f1_mean'])}); strategies on the frontier of "
                f"test F1 against training time: {', '.join(front)}.")
        return Recommendation(best, "no_baseline", [], front, None, text)
    ok = rows.loc[front]
    ok = ok[ok["delta_f1_points"] >= -tolerance_points - _EPS]
    ok = ok.sort_values("time_saving", ascending=False, kind="stable")
    pick = ok.index[0] if len(ok) else baseline
    if pick != baseline:
        runners = [s for s in ok.index[1:] if s != baseline]
        return Recommendation(pick, "cheaper_within_tolerance", runners, front, None,
                              _recommend_text(rows, pick, runners, front, tolerance_points,
                                              baseline))
    cheaper = rows.loc[[s for s in front if rows.at[s, "time_saving"] > 0]]
    alt = cheaper["test_f1_mean"].idxmax() if len(cheaper) else None
    name = _base_name(baseline)
    text = (f"No strategy that trains faster than {name} stays within "
            f"{points_word(tolerance_points)} of it, so {name} is recommended.")
    if alt is not None:
        text += (f" The best cheaper alternative is {alt}: {speed_words(rows.at[alt, 'speedup'])} "
                 f"training at a cost of {-rows.at[alt, 'delta_f1_points']:.1f} F1 points.")
    return Recommendation(baseline, "baseline", [], front, alt, text)


def _recommend_text(rows: pd.DataFrame, pick: str, runners: list[str], front: list[str],
                    tolerance: float, baseline: str) -> str:
    r = rows.loc[pick]
    text = (f"Recommended: {pick}. Of the strategies on the frontier of test F1 against "
            f"training time ({', '.join(front)}), it saves the most training time "
            f"({share(r['time_saving'])} less, {speed_words(r['speedup'])}) while staying within "
            f"{points_word(tolerance)} of {_base_name(baseline)} "
            f"({signed(r['delta_f1_points'])} points).")
    if runners:
        text += " Runners-up: " + "; ".join(
            f"{s} ({share(rows.at[s, 'time_saving'])} less time, "
            f"{signed(rows.at[s, 'delta_f1_points'])} points)" for s in runners) + "."
    return text


def _keep_performance(summary: pd.DataFrame, tolerance: float, saving: float, baseline: str,
                      has_base: bool) -> tuple[bool | None, list[str], str]:
    """Question 3: is some strategy within tolerance AND at least ``saving`` faster?"""
    rule = (f"F1 within {points_word(tolerance)} of {_base_name(baseline)} and training "
            f"time cut by at least {share(saving)}")
    if not has_base:
        return None, [], f"Cannot be answered without completed '{baseline}' runs ({rule})."
    others = summary[summary["strategy_label"] != baseline]
    close = others[others["delta_f1_points"] >= -tolerance - _EPS]
    fast = others[others["time_saving"] >= saving - _EPS]
    hits = close[close["time_saving"] >= saving - _EPS].sort_values("time_saving", ascending=False)
    if len(hits):
        evidence = "; ".join(_evidence(row) for row in hits.itertuples())
        return True, list(hits["strategy_label"]), f"Yes ({rule}): {evidence}."
    text = f"No, not with the thresholds used ({rule})."
    if len(close):
        top = close.loc[close["time_saving"].idxmax()]
        text += (f" The strategies within tolerance save at most {share(top['time_saving'])} "
                 f"of training time ({top['strategy_label']}).")
    if len(fast):
        top = fast.loc[fast["delta_f1_points"].idxmax()]
        text += (f" Those that save {share(saving)} or more lose at least "
                 f"{-top['delta_f1_points']:.1f} F1 points ({top['strategy_label']}).")
    return False, [], text


def _evidence(row: Any) -> str:
    text = (f"{row.strategy_label} cuts training time by {share(row.time_saving)} "
            f"({speed_words(row.speedup)}) at {signed(row.delta_f1_points)} F1 points")
    if finite(row.memory_saving_percent):
        text += f", with {saving_words(row.memory_saving_percent, 'memory')} peak memory"
    return text


def tradeoff_sentence(row: Any) -> str:
    """Question 1 for one strategy, e.g. '−0.8 F1 points (−0.9 %), 1.9× faster training, ...'."""
    parts = [f"{signed(row.delta_f1_points)} F1 points ({signed(row.delta_f1_percent)} %)"]
    if finite(row.speedup):
        parts.append(f"{speed_words(row.speedup)} training")
    for measure, what in [("memory", "peak memory"), ("flops", "training FLOPs"),
                          ("trainable", "trainable parameters"), ("cost", "cost")]:
        value = getattr(row, f"{measure}_saving_percent")
        if finite(value):
            parts.append(f"{saving_words(value, measure)} {what}")
    return ", ".join(parts)


def _base_name(baseline: str) -> str:
    return "full fine-tuning" if baseline == BASELINE else f"'{baseline}'"
