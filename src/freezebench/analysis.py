"""Records -> numbers: learning-rate selection, seed statistics, comparisons, the frontier.

Pure data, no words and no plotting. The learning rate is a nuisance parameter: for every (model,
dataset, strategy, seed) the rate with the best *validation* F1 is kept, and only its *test*
numbers are reported. Seeds are then aggregated per strategy (mean, std with ddof=1, n) and
compared with full fine-tuning (strategy label ``full``). :mod:`freezebench.answers` turns these
numbers into the study's answers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freezebench.errors import FreezebenchError

BASELINE = "full"
STUDY_KEY = ["model", "dataset"]
GROUP_KEY = [*STUDY_KEY, "strategy_label"]
# Columns aggregated over seeds (mean, std, n).
MEASURES = [
    "test_f1", "test_accuracy", "test_f1_macro", "test_loss", "validation_f1", "validation_loss",
    "train_seconds", "cache_build_seconds", "train_samples_per_second", "eval_samples_per_second",
    "peak_memory_mb", "train_flops", "train_flops_naive", "cost_usd", "trainable", "total",
    "trainable_percent", "task_specific_bytes",
]
# Where each flat column lives in a record.
_PATHS = {
    "trainable": ("params", "trainable"), "total": ("params", "total"),
    "trainable_percent": ("params", "trainable_percent"),
    "task_specific_bytes": ("params", "task_specific_bytes"),
    **{f"{split}_{m}": ("metrics", split, m) for split in ("validation", "test")
       for m in ("f1", "accuracy", "f1_macro", "loss")},
    **{name: ("efficiency", name) for name in (
        "train_seconds", "train_samples_per_second", "train_tokens_per_second",
        "eval_samples_per_second", "peak_memory_mb", "memory_kind", "train_flops",
        "train_flops_naive", "cache_build_seconds", "cache_hit", "timing_method", "cost_usd",
        "price_per_hour")},
    "device": ("env", "device"), "device_name": ("env", "device_name"),
    "error_type": ("error", "type"), "error_message": ("error", "message"),
    "error_step": ("error", "step"),
}


def record_field(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a record's nested sections; None where a level is missing."""
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config") or {}
    params = config.get("strategy_params") or {}
    label = record.get("strategy_label") or config.get("strategy")
    k = params.get("k")
    if k is None and (found := re.search(r"\bk=(\d+)", label or "")):
        k = int(found.group(1))
    row = {
        "id": record["id"], "status": record.get("status"),
        "strategy": config.get("strategy"), "strategy_label": label,
        "strategy_params": json.dumps(params, sort_keys=True), "k": k,
        "model": config.get("model"), "dataset": config.get("dataset"),
        "seed": config.get("seed"), "learning_rate": config.get("learning_rate"),
        "num_train_epochs": config.get("num_train_epochs"),
    }
    row.update({name: record_field(record, path) for name, path in _PATHS.items()})
    return row


def records_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record with flat columns (see ``MEASURES`` and the record format)."""
    columns = list(_flatten({"id": ""}).keys())
    frame = pd.DataFrame([_flatten(r) for r in records], columns=columns)
    frame[STUDY_KEY] = frame[STUDY_KEY].fillna("(unknown)")
    numeric = [c for c in (*MEASURES, "k", "seed", "learning_rate", "error_step",
                           "train_tokens_per_second", "price_per_hour") if c in frame]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return frame


def export_records(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the flat table of ``records`` as CSV or Parquet, chosen by the file suffix."""
    path = Path(path)
    frame = records_to_frame(records)
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        raise FreezebenchError(
            f"Cannot export to '{path}': use a file name ending in .csv or .parquet."
        )
    return path


def select_best_lr(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, strategy, seed), the completed run with the best validation F1.

    Ties go to the lower validation loss, then the smaller learning rate. Test numbers play no
    part in the choice, so they stay an unbiased estimate.
    """
    done = frame[frame["status"] == "completed"]
    ranked = done.sort_values(
        ["validation_f1", "validation_loss", "learning_rate"],
        ascending=[False, True, True], na_position="last", kind="stable",
    )
    best = ranked.groupby([*GROUP_KEY, "seed"], sort=False).head(1)
    return best.sort_values([*GROUP_KEY, "seed"]).reset_index(drop=True)


def aggregate(selected: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof=1, NaN for one seed) and n over seeds for every strategy."""
    groups = selected.groupby(GROUP_KEY, sort=False)
    stats = groups[MEASURES].agg(["mean", "std"])
    stats.columns = [f"{col}_{stat}" for col, stat in stats.columns]
    stats["n"] = groups.size()
    stats["seeds"] = groups["seed"].agg(list)
    stats["chosen_lr"] = groups["learning_rate"].agg(list)
    stats["strategy"] = groups["strategy"].first()
    stats["k"] = groups["k"].first()
    stats["strategy_params"] = groups["strategy_params"].first()
    stats["memory_kind"] = groups["memory_kind"].first()
    return stats.reset_index()


def compare_to_baseline(summary: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Add changes against ``baseline`` within each (model, dataset); NaN where it is missing."""
    parts = [_compare_one(group, baseline) for _, group in summary.groupby(STUDY_KEY, sort=False)]
    return pd.concat(parts, ignore_index=True) if parts else summary


def _compare_one(group: pd.DataFrame, baseline: str) -> pd.DataFrame:
    out = group.copy()
    base_rows = group[group["strategy_label"] == baseline]
    base = base_rows.iloc[0] if len(base_rows) else pd.Series(dtype=float)

    def b(col: str) -> float:
        return float(base.get(col, np.nan))

    f1, f1_std = out["test_f1_mean"], out["test_f1_std"]
    out["delta_f1_points"] = (f1 - b("test_f1_mean")) * 100
    out["delta_f1_percent"] = (f1 / b("test_f1_mean") - 1) * 100
    # Standard error of the difference of two independent means, in points.
    out["delta_f1_points_se"] = 100 * np.sqrt(f1_std**2 / out["n"] + b("test_f1_std") ** 2 / b("n"))
    out.loc[out["strategy_label"] == baseline, "delta_f1_points_se"] = np.nan
    out["delta_accuracy_points"] = (out["test_accuracy_mean"] - b("test_accuracy_mean")) * 100
    out["speedup"] = b("train_seconds_mean") / out["train_seconds_mean"]
    out["time_saving"] = 1 - out["train_seconds_mean"] / b("train_seconds_mean")
    for col, name in [("peak_memory_mb", "memory"), ("train_flops", "flops"),
                      ("cost_usd", "cost"), ("trainable", "trainable")]:
        out[f"{name}_saving_percent"] = (1 - out[f"{col}_mean"] / b(f"{col}_mean")) * 100
    return out


def order_strategies(summary: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Baseline first, then by mean test F1, best first."""
    is_base = (summary["strategy_label"] == baseline).astype(int)
    return (summary.assign(_base=is_base)
            .sort_values(["_base", "test_f1_mean"], ascending=[False, False], kind="stable")
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


def training_curves(records: list[dict[str, Any]], selected: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch validation F1 and train loss of the selected runs, averaged over seeds."""
    chosen = dict(zip(selected["id"], selected["strategy_label"], strict=True))
    rows = [
        {"strategy_label": chosen[r["id"]], "seed": r["config"].get("seed"),
         "epoch": h.get("epoch"), "train_loss": h.get("train_loss"),
         "validation_f1": (h.get("validation") or {}).get("f1")}
        for r in records if r["id"] in chosen for h in (r.get("history") or [])
    ]
    frame = pd.DataFrame(rows, columns=["strategy_label", "seed", "epoch", "train_loss",
                                        "validation_f1"])
    frame[["epoch", "train_loss", "validation_f1"]] = frame[
        ["epoch", "train_loss", "validation_f1"]].apply(pd.to_numeric, errors="coerce")
    return (frame.groupby(["strategy_label", "epoch"], as_index=False, sort=False)
            [["train_loss", "validation_f1"]].mean())
