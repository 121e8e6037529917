"""Time to quality: what each strategy reaches for a given budget of training time.

A frozen encoder is cheap per step, so in the time full fine-tuning takes for its recipe a cheaper
strategy can train longer. Each chosen run evaluates validation and test as it trains
(``HistoryEntry``); here those evaluations are read against the run's cumulative training time
and FLOPs in the **standalone** view (what one run costs on its own from scratch: the frozen
prefix's forward over the training split is paid before step 0), and:

* :func:`quality_curves`: per strategy and evaluation step, the mean over seeds of time, FLOPs
  and both splits' metric, with the 95 % t-interval over seeds;
* :func:`budget_table`: at a budget of a fraction of full fine-tuning's mean time, each
  strategy's runs are read at their last evaluation within the budget, the strategy with the best
  mean *validation* metric is chosen, and its *test* metric is reported with its interval and its
  paired difference (by seed) from full fine-tuning at its end. Test plays no part in choosing.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from freezebench.report.uncertainty import t_interval

FRACTIONS = (0.10, 0.25, 0.50, 1.00)
_EPS = 1e-9  # a run that ends exactly at the budget is within it

POINT_COLUMNS = ["strategy_label", "seed", "id", "step", "seconds", "flops", "validation",
                 "test"]


def evaluation_points(records: list[dict[str, Any]], chosen: pd.DataFrame,
                      metric: str) -> pd.DataFrame:
    """Every evaluation of the chosen runs: standalone seconds and FLOPs so far, and the
    validation and test ``metric`` there. Records without step-level history give none."""
    labels = dict(zip(chosen["id"], chosen["strategy_label"], strict=True))
    seeds = dict(zip(chosen["id"], chosen["seed"], strict=True))
    rows = [
        {"strategy_label": labels[r["id"]], "seed": seeds[r["id"]], "id": r["id"],
         "step": point["step"], "seconds": point.get("standalone_seconds"),
         "flops": point.get("standalone_flops"),
         "validation": point["validation"].get(metric), "test": point["test"].get(metric)}
        for r in records if r["id"] in labels
        for point in (r.get("history") or [])
        if point.get("validation") and point.get("test")
    ]
    frame = pd.DataFrame(rows, columns=POINT_COLUMNS)
    numeric = ["seed", "step", "seconds", "flops", "validation", "test"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return frame.dropna(subset=["seconds", "validation", "test"])


def quality_curves(points: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and evaluation step (every seed of a strategy evaluates at the same steps):
    mean seconds and FLOPs, and each split's mean with its 95 % interval over seeds."""
    rows = []
    for (label, step), group in points.groupby(["strategy_label", "step"], sort=False):
        row: dict[str, Any] = {"strategy_label": label, "step": int(step), "n": len(group),
                               "seconds": group["seconds"].mean(),
                               "flops": group["flops"].mean()}
        for split in ("validation", "test"):
            mean, low, high = t_interval(group[split])
            row.update({split: mean, f"{split}_low": low, f"{split}_high": high})
        rows.append(row)
    columns = ["strategy_label", "step", "n", "seconds", "flops", "validation",
               "validation_low", "validation_high", "test", "test_low", "test_high"]
    return pd.DataFrame(rows, columns=columns).sort_values(
        ["strategy_label", "step"], kind="stable").reset_index(drop=True)


def budget_table(points: pd.DataFrame, baseline: str, *, tolerance_points: float,
                 fractions: tuple[float, ...] = FRACTIONS) -> pd.DataFrame:
    """The best strategy (on validation) at each budget, a ``fraction`` of ``baseline``'s mean
    standalone training time; empty without the baseline's evaluations.

    A strategy competes at a budget when every one of its runs has an evaluation within it
    (step 0, the untrained head, counts: a budget below a strategy's cache build excludes it).
    ``acceptable``: the 95 % interval of the paired difference from the baseline's final test
    metric lies above ``-tolerance_points``.
    """
    columns = ["fraction", "seconds", "strategy_label", "validation", "test", "test_low",
               "test_high", "n", "delta_points", "delta_low", "delta_high", "acceptable",
               "competing"]
    base = points[points["strategy_label"] == baseline]
    if base.empty:
        return pd.DataFrame(columns=columns)
    base_final = base.loc[base.groupby("seed")["step"].idxmax()].set_index("seed")["test"]
    base_seconds = base.groupby("seed")["seconds"].max().mean()
    rows = []
    for fraction in fractions:
        budget = fraction * base_seconds
        reached = _within(points, budget)
        if reached.empty:
            rows.append({"fraction": fraction, "seconds": budget, "competing": 0})
            continue
        means = reached.groupby("strategy_label")["validation"].mean()
        label = means.idxmax()
        runs = reached[reached["strategy_label"] == label].set_index("seed")
        mean, low, high = t_interval(runs["test"])
        pairs = runs["test"].to_frame().join(base_final.rename("base"), how="inner")
        delta, delta_low, delta_high = t_interval(100 * (pairs["test"] - pairs["base"]))
        rows.append({
            "fraction": fraction, "seconds": budget, "strategy_label": label,
            "validation": means[label], "test": mean, "test_low": low, "test_high": high,
            "n": len(runs), "delta_points": delta, "delta_low": delta_low,
            "delta_high": delta_high,
            "acceptable": bool(math.isfinite(delta_low)
                               and delta_low >= -tolerance_points - _EPS),
            "competing": int(means.size)})
    return pd.DataFrame(rows, columns=columns)


def _within(points: pd.DataFrame, budget: float) -> pd.DataFrame:
    """Each run's last evaluation within ``budget`` seconds, for the strategies all of whose
    runs have one."""
    inside = points[points["seconds"] <= budget * (1 + _EPS) + _EPS]
    if inside.empty:
        return inside
    last = inside.loc[inside.groupby("id")["step"].idxmax()]
    runs = points.groupby("strategy_label")["id"].nunique()
    reached = last.groupby("strategy_label")["id"].nunique()
    complete = reached[reached == runs.reindex(reached.index)].index
    return last[last["strategy_label"].isin(complete)]


def smallest_acceptable(table: pd.DataFrame) -> pd.Series | None:
    """The row of the smallest budget whose best strategy is acceptable, if any."""
    hits = table[table["acceptable"].fillna(False).astype(bool)]
    return None if hits.empty else hits.sort_values("fraction").iloc[0]
