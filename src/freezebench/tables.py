"""The report's tables as display-ready text: one row per strategy, or per failed run.

Format-neutral frames of strings: the Markdown report and the CLI's printed tables share them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from freezebench.answers import Study
from freezebench.formatting import (
    count_text,
    integer_text,
    known,
    mean_std_text,
    percent_text,
    quantity_text,
    ratio_text,
    saving_words,
    signed,
    usd_text,
)


def main_table(study: Study) -> pd.DataFrame:
    """One row per strategy with every number of the report, formatted for reading."""
    base = study.baseline
    rows = []
    for r in study.summary.itertuples():
        row = {
            "Strategy": r.strategy_label,
            "Trainable params": f"{count_text(r.trainable_mean)} "
                                f"({percent_text(r.trainable_percent_mean)} %)",
            "Test F1 (%)": mean_std_text(r.test_f1_mean, r.test_f1_std, r.n),
            "Test accuracy (%)": mean_std_text(r.test_accuracy_mean, r.test_accuracy_std, r.n),
            "ΔF1 vs full": _delta(r, base) if base else None,
            "Training time": quantity_text(r.train_seconds_mean, "time"),
            "Speed-up": ratio_text(r.speedup) if base else None,
            "Train samples/s": integer_text(r.train_samples_per_second_mean),
            "Peak memory": quantity_text(r.peak_memory_mb_mean, "memory")
                           + _saving(r, "memory", base),
            "Training FLOPs": quantity_text(r.train_flops_mean, "flops")
                              + _saving(r, "flops", base),
            "Cost (USD)": usd_text(r.cost_usd_mean) + _saving(r, "cost", base),
        }
        rows.append({k: v for k, v in row.items() if v is not None})
    return pd.DataFrame(rows)


def _delta(r: Any, base: str) -> str:
    if r.strategy_label == base:
        return "baseline"
    se = f" ± {r.delta_f1_points_se:.1f}" if known(r.delta_f1_points_se) else ""
    return f"{signed(r.delta_f1_points)}{se} pts ({signed(r.delta_f1_percent)} %)"


def _saving(r: Any, measure: str, base: str | None) -> str:
    value = getattr(r, f"{measure}_saving_percent")
    if not base or r.strategy_label == base or not known(value):
        return ""
    return f" ({saving_words(value, measure)})"


def lr_table(study: Study, records: list[dict[str, Any]]) -> pd.DataFrame:
    """The learning rates tried and the one chosen on validation for every seed."""
    grid = learning_rate_grid(study, records)
    done = learning_rate_grid(study, [r for r in records if r.get("status") == "completed"])
    rows = []
    for r in study.summary.itertuples():
        chosen = ", ".join(f"s{int(s)}: {lr:g}" for s, lr in zip(r.seeds, r.chosen_lr, strict=True))
        tried = [f"{x:g}" + ("" if x in done[r.strategy_label] else " (no completed run)")
                 for x in grid[r.strategy_label]]
        rows.append({"Strategy": r.strategy_label, "Learning rates tried": ", ".join(tried),
                     "Chosen on validation (seed: rate)": chosen})
    return pd.DataFrame(rows)


def learning_rate_grid(study: Study,
                       records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per strategy of ``study``, the learning rates that ``records`` tried, smallest first."""
    grid: dict[str, set[float]] = {label: set() for label in study.summary["strategy_label"]}
    for r in records:
        lr = (r.get("config") or {}).get("learning_rate")
        if r.get("strategy_label") in grid and lr is not None:
            grid[r["strategy_label"]].add(float(lr))
    return {label: sorted(rates) for label, rates in grid.items()}


def failures_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Runs that failed or were cancelled, with their error."""
    rows = [{"Run": r["id"], "Status": r.get("status"), "Error": error_text(r)}
            for r in records if r.get("status") != "completed"]
    return pd.DataFrame(rows, columns=["Run", "Status", "Error"])


def error_text(record: dict[str, Any]) -> str:
    """A record's error in one line: type, message and step, cut at 300 characters."""
    error = record.get("error") or {}
    step = f" (step {error['step']})" if error.get("step") is not None else ""
    text = f"{error.get('type', 'unknown error')}: {error.get('message', '')}{step}"
    return text if len(text) <= 300 else text[:297] + "..."
