"""Per-run rows -> per-strategy numbers: the learning-rate choice, seed statistics, paired
comparisons with full fine-tuning, and the frontier.

Pure data, no words and no plotting. The learning rate is a nuisance parameter: each strategy gets
the one rate whose runs score best on *validation* on average over seeds (the decision metric),
and only the *test* numbers of that rate's runs are reported. A rate whose runs failed or collapsed
(one class predicted for nearly everything) is never chosen over one whose runs did not.
:mod:`freezebench.report.answers` turns these numbers into the study's answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from freezebench.report.frame import COST_VIEWS, GROUP_KEY, METRICS, STUDY_KEY
from freezebench.report.uncertainty import t_interval

BASELINE = "full"
# Columns aggregated over seeds (mean, std).
MEASURES = [
    *(f"{split}_{m}" for split in ("validation", "test") for m in (*METRICS, "loss", "mse")),
    "train_seconds", "cache_build_seconds", "train_samples_per_second", "eval_samples_per_second",
    "peak_memory_mb", "memory_bytes", "train_flops", "train_flops_naive", "cost_usd", "trainable",
    "total", "trainable_percent", "task_specific_bytes",
    *(f"{view}_{what}" for view in COST_VIEWS for what in ("seconds", "flops", "cost")),
]


def collapsed_runs(frame: pd.DataFrame) -> pd.Series:
    """Whether each run collapsed on validation or test (unknown counts as not)."""
    return (frame["validation_collapsed"].fillna(False).astype(bool)
            | frame["test_collapsed"].fillna(False).astype(bool))


def rate_scores(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per strategy and learning rate over seeds: completed runs, their mean validation metric
    and loss, and how many runs are unusable (failed, or collapsed on validation)."""
    done = frame["status"] == "completed"
    runs = frame[done | (frame["status"] == "failed")].assign(
        _unusable=lambda f: (f["status"] == "failed")
        | f["validation_collapsed"].fillna(False).astype(bool),
        _score=lambda f: f[f"validation_{metric}"].where(f["status"] == "completed"),
        _loss=lambda f: f["validation_loss"].where(f["status"] == "completed"),
        _done=lambda f: f["status"] == "completed")
    scores = (runs.groupby([*GROUP_KEY, "learning_rate"], sort=False)
              .agg(runs=("_done", "sum"), score=("_score", "mean"), loss=("_loss", "mean"),
                   unusable=("_unusable", "sum"))
              .reset_index())
    return scores[scores["runs"] > 0]


def choose_learning_rates(frame: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """The completed runs of each strategy's chosen learning rate, from :func:`rate_scores`.

    Rates are ranked by how many of their runs failed or collapsed on validation (fewer first),
    then the mean validation ``metric`` over seeds (higher), then mean validation loss (lower),
    then the rate (smaller). Test numbers play no part in the choice.
    """
    ranked = rates.sort_values(
        ["unusable", "score", "loss", "learning_rate"], ascending=[True, False, True, True],
        na_position="last", kind="stable")
    best = ranked.groupby(GROUP_KEY, sort=False).head(1)[[*GROUP_KEY, "learning_rate"]]
    done = frame[frame["status"] == "completed"]
    chosen = done.merge(best, on=[*GROUP_KEY, "learning_rate"])
    return chosen.sort_values([*GROUP_KEY, "seed"]).reset_index(drop=True)


def aggregate(chosen: pd.DataFrame, rates: pd.DataFrame, metric: str,
              cost_view: str) -> pd.DataFrame:
    """Mean and std (ddof=1) over seeds of every measure per strategy, with the columns the
    answers read: ``quality`` (test ``metric``), ``seconds``/``flops``/``cost`` (``cost_view``)
    and ``memory_mb`` (peak tensor memory)."""
    data = chosen.assign(quality=chosen[f"test_{metric}"],
                         seconds=chosen[f"{cost_view}_seconds"],
                         flops=chosen[f"{cost_view}_flops"], cost=chosen[f"{cost_view}_cost"],
                         memory_mb=chosen["memory_bytes"] / 2**20,
                         collapsed=collapsed_runs(chosen))
    groups = data.groupby(GROUP_KEY, sort=False)
    columns = [*MEASURES, "quality", "seconds", "flops", "cost", "memory_mb"]
    stats = groups[columns].agg(["mean", "std"])
    stats.columns = [f"{col}_{stat}" for col, stat in stats.columns]
    stats["n"] = groups.size()
    stats["seeds"] = groups["seed"].agg(list)
    stats["learning_rate"] = groups["learning_rate"].first()
    stats["collapsed_runs"] = groups["collapsed"].sum().astype(int)
    for key in ("strategy", "k", "strategy_params", "memory_kind"):
        stats[key] = groups[key].first()
    tried = rates.groupby(GROUP_KEY, sort=False)["learning_rate"].agg(list)
    stats["rates_tried"] = tried.reindex(stats.index)
    return stats.reset_index()


def compare_to_baseline(summary: pd.DataFrame, chosen: pd.DataFrame, metric: str,
                        baseline: str = BASELINE) -> pd.DataFrame:
    """Paired (by seed) changes against ``baseline`` within each (model, dataset): the metric's
    difference in points with its 95 % t-interval, speed-ups in both cost views with their
    spread over seeds, and savings; NaN where the baseline is missing."""
    parts = []
    for (model, dataset), group in summary.groupby(STUDY_KEY, sort=False):
        runs = chosen[(chosen["model"] == model) & (chosen["dataset"] == dataset)]
        parts.append(_compare_one(group, runs, metric, baseline))
    return pd.concat(parts, ignore_index=True) if parts else summary


def paired(runs: pd.DataFrame, label: str, baseline: str, column: str) -> pd.DataFrame:
    """``column`` of ``label``'s and ``baseline``'s runs side by side, one row per shared seed
    (runs that share a seed, e.g. the same config on another number of GPUs, are averaged)."""
    mine = runs[runs["strategy_label"] == label].groupby("seed")[column].mean()
    base = runs[runs["strategy_label"] == baseline].groupby("seed")[column].mean()
    both = pd.concat({"strategy": mine, "baseline": base}, axis=1, join="inner")
    return both.dropna()


def _compare_one(group: pd.DataFrame, runs: pd.DataFrame, metric: str,
                 baseline: str) -> pd.DataFrame:
    out = group.copy()
    rows = []
    for label in out["strategy_label"]:
        quality = paired(runs, label, baseline, f"test_{metric}")
        accuracy = paired(runs, label, baseline, "test_accuracy")
        mean, low, high = t_interval(100 * (quality["strategy"] - quality["baseline"]))
        row: dict[str, Any] = {
            "pairs": len(quality), "delta_points": mean, "delta_low": low, "delta_high": high,
            "delta_std": float(np.std(100 * (quality["strategy"] - quality["baseline"]),
                                      ddof=1)) if len(quality) > 1 else np.nan,
            "delta_accuracy_points": t_interval(
                100 * (accuracy["strategy"] - accuracy["baseline"]))[0],
        }
        for view in COST_VIEWS:
            times = paired(runs, label, baseline, f"{view}_seconds")
            ratios = times["baseline"] / times["strategy"]
            row[f"speedup_{view}"] = ratios.mean() if len(ratios) else np.nan
            row[f"speedup_{view}_std"] = ratios.std(ddof=1) if len(ratios) > 1 else np.nan
        rows.append(row)
    out = pd.concat([out.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    out.loc[out["strategy_label"] == baseline, ["delta_low", "delta_high"]] = np.nan
    base = out[out["strategy_label"] == baseline]

    def b(col: str) -> float:
        return float(base[col].iloc[0]) if len(base) else np.nan

    out["time_saving"] = 1 - out["seconds_mean"] / b("seconds_mean")
    for view in COST_VIEWS:
        out[f"time_saving_{view}"] = 1 - out[f"{view}_seconds_mean"] / b(f"{view}_seconds_mean")
    for col, name in [("memory_mb", "memory"), ("flops", "flops"), ("cost", "cost"),
                      ("trainable", "trainable")]:
        out[f"{name}_saving_percent"] = (1 - out[f"{col}_mean"] / b(f"{col}_mean")) * 100
    return out


def order_strategies(summary: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Baseline first, then by mean test metric, best first."""
    is_base = (summary["strategy_label"] == baseline).astype(int)
    return (summary.assign(_base=is_base)
            .sort_values(["_base", "quality_mean"], ascending=[False, False], kind="stable")
            .drop(columns="_base").reset_index(drop=True))


def pareto_front(frame: pd.DataFrame, quality_col: str, cost_col: str) -> list[str]:
    """Labels of strategies no other strategy beats on both quality (max) and cost (min).

    Sorted by cost, cheapest first; rows missing either value take no part.
    """
    points = frame[["strategy_label", quality_col, cost_col]].dropna()
    q, c = points[quality_col].to_numpy(), points[cost_col].to_numpy()
    front = []
    for label, qi, ci in zip(points["strategy_label"], q, c, strict=True):
        dominated = np.any((q >= qi) & (c <= ci) & ((q > qi) | (c < ci)))
        if not dominated:
            front.append((ci, label))
    return [label for _, label in sorted(front, key=lambda item: item[0])]
