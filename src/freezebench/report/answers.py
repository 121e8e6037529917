"""The study's three questions answered in plain words, once per (model, dataset).

From the per-strategy summary of :mod:`freezebench.report.analysis`, for one (model, dataset):

1. how much performance freezing costs and what it saves (one sentence per strategy),
2. which strategy gives the best trade-off between performance and compute
   (:class:`Recommendation`),
3. whether acceptable performance can be kept while training time drops substantially.

*Acceptable* is a non-inferiority call: the 95 % interval of the paired difference from full
fine-tuning lies above ``-tolerance``. A difference whose interval reaches further down is *not
established*, however close its mean, and the answer says how many seeds would establish it at
the observed spread. Costs are in one cost view (standalone by default), the other beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from freezebench.report.analysis import BASELINE, pareto_front
from freezebench.report.formatting import (
    finite,
    metric_name,
    points_word,
    saving_words,
    share,
    signed,
    speed_words,
)
from freezebench.report.uncertainty import (
    MAX_SEEDS,
    bootstrap_agreement,
    seeds_to_establish,
    t_interval,
)

# Thresholds compare rounded-looking numbers (a drop of exactly 1.0 point is "within 1.0 point").
_EPS = 1e-9
_OTHER_VIEW = {"standalone": "study", "study": "standalone"}
_VIEW_WORDS = {"standalone": "one run on its own, from scratch",
               "study": "in this study, cache builds shared"}


@dataclass(frozen=True)
class Recommendation:
    """Question 2: which strategy gives the best trade-off.

    ``kind`` is ``"cheaper_and_acceptable"``, ``"baseline"`` (nothing cheaper is established as
    acceptable) or ``"no_baseline"`` (no completed ``full`` runs to compare with). ``stability``
    is the share of bootstrap replicates of the seeds that recommend the same strategy.
    """

    strategy: str
    kind: str
    runners_up: list[str]
    pareto: list[str]
    alternative: str | None
    text: str
    stability: float = math.nan


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
    metric: str
    cost_view: str
    established: dict[str, bool] = field(default_factory=dict)
    seeds_needed: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedTable:
    """Per strategy, the test metric and training time of its chosen runs on the seeds every
    strategy shares (what the bootstrap resamples)."""

    quality: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]

    @classmethod
    def from_runs(cls, runs: pd.DataFrame, metric: str, cost_view: str) -> SeedTable:
        by_label = {label: group.set_index("seed")
                    for label, group in runs.groupby("strategy_label", sort=False)}
        shared = sorted(set.intersection(*(set(g.index) for g in by_label.values())))
        return cls({k: g.loc[shared, f"test_{metric}"].to_numpy(float)
                    for k, g in by_label.items()},
                   {k: g.loc[shared, f"{cost_view}_seconds"].to_numpy(float)
                    for k, g in by_label.items()})

    @property
    def seeds(self) -> int:
        return len(next(iter(self.quality.values()), []))


def answer_questions(summary: pd.DataFrame, runs: pd.DataFrame, *, metric: str,
                     cost_view: str = "standalone", tolerance_points: float = 1.0,
                     substantial_saving: float = 0.30, baseline: str = BASELINE) -> Answers:
    """The answers to the three study questions for one (model, dataset)."""
    has_base = bool((summary["strategy_label"] == baseline).any())
    rows = summary.set_index("strategy_label")
    established = {k: bool(r.delta_low >= -tolerance_points - _EPS) for k, r in rows.iterrows()
                   if k != baseline and has_base}
    needed = {k: None if established[k] else
              seeds_to_establish(r.delta_points, r.delta_std, tolerance_points)
              for k, r in rows.iterrows() if k in established}
    context = _Context(metric, cost_view, tolerance_points, baseline, established, needed)
    sentences = {k: tradeoff_sentence(r, context) for k, r in rows.iterrows()
                 if k in established}
    verdict, qualifying, text = _keep_performance(rows, context, substantial_saving, has_base)
    table = SeedTable.from_runs(runs, metric, cost_view)
    return Answers(
        performance_vs_efficiency=sentences,
        recommendation=recommend(summary, table, context),
        acceptable_with_savings=verdict, qualifying=qualifying, keep_performance_text=text,
        tolerance_points=tolerance_points, substantial_saving=substantial_saving,
        metric=metric, cost_view=cost_view, established=established, seeds_needed=needed,
    )


@dataclass(frozen=True)
class _Context:
    metric: str
    cost_view: str
    tolerance: float
    baseline: str
    established: dict[str, bool]
    needed: dict[str, int | None]

    @property
    def name(self) -> str:
        return metric_name(self.metric)


def decide(table: SeedTable, rows: np.ndarray, baseline: str, tolerance: float) -> str:
    """The recommendation on the seeds at positions ``rows``: among strategies on the frontier
    of mean metric against mean time, the one saving the most time whose paired interval is
    above ``-tolerance``; the baseline when there is none."""
    if baseline not in table.quality:
        return baseline
    means = pd.DataFrame({
        "strategy_label": list(table.quality),
        "q": [table.quality[k][rows].mean() for k in table.quality],
        "s": [table.seconds[k][rows].mean() for k in table.quality]})
    front = pareto_front(means, "q", "s")
    base_q, base_s = table.quality[baseline][rows], table.seconds[baseline][rows].mean()
    best, best_s = baseline, base_s
    for label in front:
        seconds = table.seconds[label][rows].mean()
        low = t_interval(100 * (table.quality[label][rows] - base_q))[1]
        if label != baseline and seconds < best_s and low >= -tolerance - _EPS:
            best, best_s = label, seconds
    return best


def recommend(summary: pd.DataFrame, table: SeedTable, context: _Context) -> Recommendation:
    """Question 2 (see :func:`decide`), with how stable the choice is over the seeds."""
    front = pareto_front(summary, "quality_mean", "seconds_mean")
    rows = summary.set_index("strategy_label")
    base = context.baseline
    if base not in rows.index:
        best = rows["quality_mean"].idxmax()
        text = (f"There are no completed '{base}' runs to compare with, so only absolute "
                f"numbers can be given. Highest mean test {context.name}: {best} "
                f"({100 * rows.at[best, 'quality_mean']:.1f}); strategies on the frontier of "
                f"test {context.name} against training time: {', '.join(front)}.")
        return Recommendation(best, "no_baseline", [], front, None, text)
    pick = decide(table, np.arange(table.seeds), base, context.tolerance)
    stability = bootstrap_agreement(
        table.seeds, lambda r: decide(table, r, base, context.tolerance), pick)
    ok = [k for k in front if context.established.get(k) and rows.at[k, "time_saving"] > 0]
    ok.sort(key=lambda k: -rows.at[k, "time_saving"])
    runners = [k for k in ok if k != pick]
    if pick != base:
        text = _recommend_text(rows, pick, runners, front, context, stability)
        return Recommendation(pick, "cheaper_and_acceptable", runners, front, None, text,
                              stability)
    return Recommendation(base, "baseline", [], front, _alternative(rows, front),
                          _baseline_text(rows, front, context, stability), stability)


def _alternative(rows: pd.DataFrame, front: list[str]) -> str | None:
    cheaper = [k for k in front if rows.at[k, "time_saving"] > 0]
    return max(cheaper, key=lambda k: rows.at[k, "quality_mean"]) if cheaper else None


def _recommend_text(rows: pd.DataFrame, pick: str, runners: list[str], front: list[str],
                    context: _Context, stability: float) -> str:
    r = rows.loc[pick]
    text = (f"Recommended: {pick}. Of the strategies on the frontier of test {context.name} "
            f"against training time ({', '.join(front)}), it saves the most training time "
            f"({_time_words(r, context)}) while its {context.name} is established within "
            f"{points_word(context.tolerance)} of {_base_name(context.baseline)} "
            f"({_delta_words(r)}).{_stability_words(stability)}")
    if runners:
        text += " Also acceptable and cheaper: " + "; ".join(
            f"{k} ({share(rows.at[k, 'time_saving'])} less time, "
            f"{_delta_words(rows.loc[k])})" for k in runners) + "."
    return text


def _baseline_text(rows: pd.DataFrame, front: list[str], context: _Context,
                   stability: float) -> str:
    name = _base_name(context.baseline)
    text = (f"No strategy that trains faster than {name} is established within "
            f"{points_word(context.tolerance)} of it, so {name} is recommended."
            f"{_stability_words(stability)}")
    close = [k for k in front if k in context.established and rows.at[k, "time_saving"] > 0
             and rows.at[k, "delta_points"] >= -context.tolerance]
    for k in close:
        text += (f" {k} is within tolerance on its mean ({_delta_words(rows.loc[k])}, "
                 f"{_time_words(rows.loc[k], context)}) but not established"
                 f"{_seeds_words(context.needed.get(k))}.")
    alternative = _alternative(rows, front)
    if not close and alternative is not None:
        r = rows.loc[alternative]
        text += (f" The best cheaper alternative is {alternative}: {_time_words(r, context)}, "
                 f"{_delta_words(r)}.")
    return text


def _keep_performance(rows: pd.DataFrame, context: _Context, saving: float,
                      has_base: bool) -> tuple[bool | None, list[str], str]:
    """Question 3: is some strategy established as acceptable AND at least ``saving`` faster?"""
    rule = (f"{context.name} established within {points_word(context.tolerance)} of "
            f"{_base_name(context.baseline)} by its 95 % interval, and training time "
            f"({context.cost_view}) cut by at least {share(saving)}")
    if not has_base:
        return None, [], f"Cannot be answered without completed '{context.baseline}' runs ({rule})."
    others = rows.drop(index=context.baseline)
    fast = others[others["time_saving"] >= saving - _EPS]
    accepted = pd.Series([context.established[k] for k in fast.index], index=fast.index,
                         dtype=bool)
    hits = fast[accepted].sort_values("time_saving", ascending=False)
    if len(hits):
        evidence = "; ".join(f"{k} {_evidence(r, context)}" for k, r in hits.iterrows())
        return True, list(hits.index), f"Yes ({rule}): {evidence}."
    text = f"Not established ({rule})."
    near = fast[fast["delta_points"] >= -context.tolerance - _EPS]
    for k, r in near.iterrows():
        text += (f" {k} {_evidence(r, context)}, within tolerance on its mean but not "
                 f"established{_seeds_words(context.needed.get(k))}.")
    if len(fast) and not len(near):
        best = fast["delta_points"].idxmax()
        text += (f" The strategies that save {share(saving)} or more lose at least "
                 f"{-fast.at[best, 'delta_points']:.1f} points ({best}).")
    return False, [], text


def tradeoff_sentence(r: pd.Series, context: _Context) -> str:
    """Question 1 for one strategy: its paired change, time in both views, other savings."""
    verdict = "" if context.established.get(r.name) else (
        f" (acceptable not established{_seeds_words(context.needed.get(r.name))})")
    parts = [_delta_words(r) + verdict, _time_words(r, context)]
    for measure, what in [("memory", "peak memory"), ("flops", "training FLOPs"),
                          ("trainable", "trainable parameters"), ("cost", "cost")]:
        value = r[f"{measure}_saving_percent"]
        if finite(value):
            parts.append(f"{saving_words(value, measure)} {what}")
    return ", ".join(parts)


def _evidence(r: pd.Series, context: _Context) -> str:
    text = (f"cuts training time by {share(r['time_saving'])} ({_time_words(r, context)}) at "
            f"{_delta_words(r)}")
    if finite(r["memory_saving_percent"]):
        text += f", with {saving_words(r['memory_saving_percent'], 'memory')} peak memory"
    return text


def _delta_words(r: pd.Series) -> str:
    if not finite(r["delta_low"]):
        return f"{signed(r['delta_points'])} points (no interval: fewer than two paired seeds)"
    return (f"{signed(r['delta_points'])} points, 95 % CI [{signed(r['delta_low'])}, "
            f"{signed(r['delta_high'])}] over {int(r['pairs'])} paired seeds")


def _time_words(r: pd.Series, context: _Context) -> str:
    view, other = context.cost_view, _OTHER_VIEW[context.cost_view]
    spread = r[f"speedup_{view}_std"]
    main = speed_words(r[f"speedup_{view}"]) + (f" (± {spread:.2f})" if finite(spread) else "")
    text = f"{main} training, {_VIEW_WORDS[view]}"
    if finite(r[f"speedup_{other}"]):
        text += f"; {speed_words(r[f'speedup_{other}'])} {_VIEW_WORDS[other]}"
    return text


def _seeds_words(needed: int | None) -> str:
    if needed is None:
        return ""
    if needed > MAX_SEEDS:
        return f"; even {MAX_SEEDS} seeds would not establish it at the observed spread"
    return f"; about {needed} seeds would establish it at the observed spread"


def _stability_words(stability: float) -> str:
    if not finite(stability):
        return ""
    return (f" In {share(stability)} of bootstrap resamples of the seeds the same strategy is "
            "recommended.")


def _base_name(baseline: str) -> str:
    return "full fine-tuning" if baseline == BASELINE else f"'{baseline}'"
