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

from freezebench.report.analysis import BASELINE, paired, pareto_front
from freezebench.report.budgets import smallest_acceptable
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
    SPREAD_UNKNOWN,
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
    equal_budget_text: str = ""  # question 3 at equal training time (report/budgets.py)


def answer_questions(summary: pd.DataFrame, runs: pd.DataFrame, *, metric: str,
                     cost_view: str = "standalone", tolerance_points: float = 1.0,
                     substantial_saving: float = 0.30, baseline: str = BASELINE,
                     budgets: pd.DataFrame | None = None) -> Answers:
    """The answers to the three study questions for one (model, dataset); ``budgets`` (from
    :func:`~freezebench.report.budgets.budget_table`) adds question 3 at equal training time."""
    has_base = bool((summary["strategy_label"] == baseline).any())
    rows = summary.set_index("strategy_label")
    established = {k: bool(r.delta_low >= -tolerance_points - _EPS) for k, r in rows.iterrows()
                   if k != baseline and has_base}
    needed = {k: None if established[k] else
              seeds_to_establish(r.delta_points, r.delta_std, tolerance_points)
              for k, r in rows.iterrows() if k in established}
    eligible = [k for k in established if established[k] and not rows.at[k, "collapsed_runs"]]
    context = _Context(metric, cost_view, tolerance_points, baseline, established, needed,
                       eligible, timed=bool(rows["seconds_mean"].notna().all()))
    sentences = {k: tradeoff_sentence(r, context) for k, r in rows.iterrows()
                 if k in established}
    verdict, qualifying, text = _keep_performance(rows, context, substantial_saving, has_base)
    return Answers(
        performance_vs_efficiency=sentences,
        recommendation=recommend(summary, runs, context),
        acceptable_with_savings=verdict, qualifying=qualifying, keep_performance_text=text,
        tolerance_points=tolerance_points, substantial_saving=substantial_saving,
        metric=metric, cost_view=cost_view, established=established, seeds_needed=needed,
        equal_budget_text=equal_budget_answer(budgets, metric, tolerance_points, baseline),
    )


def equal_budget_answer(budgets: pd.DataFrame | None, metric: str, tolerance: float,
                        baseline: str) -> str:
    """Question 3 read at equal budgets: the smallest share of full fine-tuning's training time
    (standalone) at which the strategy best on validation is established as acceptable."""
    if budgets is None or budgets.empty:
        return (f"At equal training time: cannot be answered without completed '{baseline}' "
                "runs that evaluated during training.")
    name = metric_name(metric)
    row = smallest_acceptable(budgets)
    rule = (f"the strategy best on validation at each share of {_base_name(baseline)}'s "
            f"standalone training time, its test {name} against {_base_name(baseline)}'s at its "
            "end, acceptable as above")
    if row is None:
        return (f"At equal training time ({rule}): no budget of "
                f"{', '.join(share(f) for f in budgets['fraction'])} reaches it.")
    return (f"At equal training time ({rule}): yes from {share(row['fraction'])} of the time "
            f"({row['seconds']:.0f} s): {row['strategy_label']} reaches "
            f"{100 * row['test']:.1f} % test {name}, {signed(row['delta_points'])} points "
            f"(95 % CI [{signed(row['delta_low'])}, {signed(row['delta_high'])}], {int(row['n'])}"
            " seeds).")


@dataclass(frozen=True)
class _Context:
    metric: str
    cost_view: str
    tolerance: float
    baseline: str
    established: dict[str, bool]
    needed: dict[str, int | None]
    eligible: list[str]  # established and none of its chosen runs collapsed
    timed: bool          # every strategy has a training time in the cost view

    @property
    def name(self) -> str:
        return metric_name(self.metric)


@dataclass(frozen=True)
class Pairs:
    """Per strategy, its chosen runs paired by seed with the baseline's (a seed run twice counts
    once, averaged): the metric's difference in points and both training times. What the
    bootstrap resamples."""

    seeds: dict[str, np.ndarray]
    delta: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    base_seconds: dict[str, np.ndarray]

    @classmethod
    def from_runs(cls, runs: pd.DataFrame, metric: str, cost_view: str, baseline: str,
                  labels: list[str]) -> Pairs:
        seeds, delta, seconds, base = {}, {}, {}, {}
        for label in labels:
            quality = paired(runs, label, baseline, f"test_{metric}")
            times = paired(runs, label, baseline, f"{cost_view}_seconds").reindex(quality.index)
            seeds[label] = quality.index.to_numpy()
            delta[label] = 100 * (quality["strategy"] - quality["baseline"]).to_numpy(float)
            seconds[label] = times["strategy"].to_numpy(float)
            base[label] = times["baseline"].to_numpy(float)
        return cls(seeds, delta, seconds, base)

    def all_seeds(self) -> np.ndarray:
        return np.unique(np.concatenate([*self.seeds.values(), np.array([])]))


def decide(pairs: Pairs, counts: dict[float, int], tolerance: float, baseline: str) -> str:
    """The recommendation when each seed counts ``counts[seed]`` times: among the strategies
    whose paired interval clears ``-tolerance`` (two distinct seeds at least), the one that saves
    the most training time; the baseline when none does."""
    best, best_saving = baseline, 0.0
    for label, seeds in pairs.seeds.items():
        repeat = np.array([counts.get(seed, 0) for seed in seeds], dtype=int)
        if np.count_nonzero(repeat) < 2:
            continue
        low = t_interval(np.repeat(pairs.delta[label], repeat))[1]
        saving = 1 - (np.repeat(pairs.seconds[label], repeat).mean()
                      / np.repeat(pairs.base_seconds[label], repeat).mean())
        if low >= -tolerance - _EPS and saving > best_saving:
            best, best_saving = label, saving
    return best


def stability(pairs: Pairs, observed: str, tolerance: float, baseline: str, *,
              replicates: int = 1000, seed: int = 0) -> float:
    """The share of bootstrap resamples of the seeds (drawn with replacement, keeping those with
    two distinct seeds or more) whose recommendation is ``observed``; NaN below three seeds."""
    seeds = pairs.all_seeds()
    if len(seeds) < 3:
        return math.nan
    rng = np.random.default_rng(seed)
    agree = total = 0
    for draw in rng.choice(seeds, size=(replicates, len(seeds))):
        if len(np.unique(draw)) < 2:
            continue
        values, times = np.unique(draw, return_counts=True)
        total += 1
        agree += decide(pairs, dict(zip(values.tolist(), times.tolist(), strict=True)),
                        tolerance, baseline) == observed
    return agree / total if total else math.nan


def recommend(summary: pd.DataFrame, runs: pd.DataFrame, context: _Context) -> Recommendation:
    """Question 2: among the strategies established as acceptable (and not collapsed), the one
    that saves the most training time; with how stable that choice is over the seeds."""
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
    if not context.timed:
        text = (f"Cannot be answered: some strategies have no training time in the "
                f"{context.cost_view} view (records written before it was recorded).")
        return Recommendation(base, "no_time", [], front, None, text)
    ok = [k for k in context.eligible if rows.at[k, "time_saving"] > 0]
    ok.sort(key=lambda k: -rows.at[k, "time_saving"])
    pick = ok[0] if ok else base
    usable = [k for k in rows.index if k != base and not rows.at[k, "collapsed_runs"]]
    pairs = Pairs.from_runs(runs, context.metric, context.cost_view, base, usable)
    steady = stability(pairs, pick, context.tolerance, base)
    if pick != base:
        text = _recommend_text(rows, pick, ok[1:], context, steady)
        return Recommendation(pick, "cheaper_and_acceptable", ok[1:], front, None, text, steady)
    return Recommendation(base, "baseline", [], front, _alternative(rows, front),
                          _baseline_text(rows, front, context, steady), steady)


def _alternative(rows: pd.DataFrame, front: list[str]) -> str | None:
    cheaper = [k for k in front if rows.at[k, "time_saving"] > 0]
    return max(cheaper, key=lambda k: rows.at[k, "quality_mean"]) if cheaper else None


def _recommend_text(rows: pd.DataFrame, pick: str, runners: list[str], context: _Context,
                    stability: float) -> str:
    r = rows.loc[pick]
    text = (f"Recommended: {pick}. Of the strategies whose {context.name} is established within "
            f"{points_word(context.tolerance)} of {_base_name(context.baseline)}, it saves the "
            f"most training time ({_time_words(r, context)}; {_delta_words(r)})."
            f"{_stability_words(stability)}")
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
    close = [k for k in front if k in context.established and not context.established[k]
             and rows.at[k, "time_saving"] > 0
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
    """Question 3: is some strategy established as acceptable (and not collapsed) AND at least
    ``saving`` faster?"""
    rule = (f"{context.name} established within {points_word(context.tolerance)} of "
            f"{_base_name(context.baseline)} by its 95 % interval, and training time "
            f"({context.cost_view}) cut by at least {share(saving)}")
    if not has_base:
        return None, [], f"Cannot be answered without completed '{context.baseline}' runs ({rule})."
    if not context.timed:
        return None, [], (f"Cannot be answered: some strategies have no training time in the "
                          f"{context.cost_view} view ({rule}).")
    others = rows.drop(index=context.baseline)
    fast = others[others["time_saving"] >= saving - _EPS]
    accepted = pd.Series([k in context.eligible for k in fast.index], index=fast.index,
                         dtype=bool)
    hits = fast[accepted].sort_values("time_saving", ascending=False)
    if len(hits):
        evidence = "; ".join(f"{k} {_evidence(r, context)}" for k, r in hits.iterrows())
        return True, list(hits.index), f"Yes ({rule}): {evidence}."
    text = f"Not established ({rule})."
    near = fast[fast["delta_points"] >= -context.tolerance - _EPS]
    for k, r in near.iterrows():
        why = (f"{int(r['collapsed_runs'])} of its chosen runs collapsed" if context.established[k]
               else f"not established{_seeds_words(context.needed.get(k))}")
        text += f" {k} {_evidence(r, context)}, within tolerance on its mean but {why}."
    if fast["delta_points"].notna().any() and not len(near):  # all unknown: no paired seeds
        best = fast["delta_points"].idxmax()
        text += (f" Of the strategies that save {share(saving)} or more, the best loses "
                 f"{-fast.at[best, 'delta_points']:.1f} points on its mean ({best}).")
    return False, [], text


def tradeoff_sentence(r: pd.Series, context: _Context) -> str:
    """Question 1 for one strategy: its paired change, time in both views, other savings."""
    verdict = "" if context.established.get(r.name) else (
        f" (acceptable not established{_seeds_words(context.needed.get(r.name))})")
    if r["collapsed_runs"]:
        verdict += f" ({int(r['collapsed_runs'])} of its {int(r['n'])} chosen runs collapsed)"
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
    if needed == SPREAD_UNKNOWN:
        return "; its spread is unknown with one paired seed: run more seeds"
    if needed > MAX_SEEDS:
        return (f"; even {MAX_SEEDS} seeds would not establish it if its mean and spread stayed "
                "as observed")
    return f"; about {needed} seeds would establish it if its mean and spread stayed as observed"


def _stability_words(stability: float) -> str:
    if not finite(stability):
        return ""
    return (f" In {share(stability)} of bootstrap resamples of the seeds the same strategy is "
            "recommended.")


def _base_name(baseline: str) -> str:
    return "full fine-tuning" if baseline == BASELINE else f"'{baseline}'"
