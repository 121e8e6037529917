"""``summary.json``: the numbers the answers come from, for scripts and for comparing studies.

Metric values, and their differences from full fine-tuning, are on a 0-1 scale (the report states
the differences in points, 0-100). One object per (model, dataset), a task; a folder with one task
writes that object alone, one with several writes ``{"tasks": [...], "cross_task": {...}}`` (see
:mod:`freezebench.report.cross_task`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from freezebench.report.cross_task import CrossTask
from freezebench.report.findings import Findings
from freezebench.report.uncertainty import MAX_SEEDS
from freezebench.results import write_text_atomic

STUDY_FILE = "study.yaml"


def study_metric(results_dir: str | Path) -> str | None:
    """The decision metric the study in ``results_dir`` names (its ``study.yaml``), if any."""
    path = Path(results_dir) / STUDY_FILE
    if not path.is_file():
        return None
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return values.get("metric") if isinstance(values, dict) else None


def write_summary(studies: list[Findings], path: Path, across: CrossTask | None = None
                  ) -> Path:
    """Write the studies' numbers, and ``across`` them where given, as JSON (atomically); return
    the path."""
    payload: Any = [study_summary(s) for s in studies]
    if across is not None:
        payload = {"tasks": payload, "cross_task": cross_task_summary(across)}
    elif len(payload) == 1:
        payload = payload[0]
    write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path


def study_summary(study: Findings) -> dict[str, Any]:
    """One study's numbers (see the module docstring)."""
    a = study.answers
    return {
        "model": study.model, "dataset": study.dataset, "metric": study.metric,
        "problem_type": "regression" if study.regression else "classification",
        "cost_view": study.cost_view, "tolerance_points": a.tolerance_points,
        "tolerance": a.tolerance_points / 100,  # on the 0-1 scale of delta_vs_full
        "substantial_saving": a.substantial_saving,
        "baselines": _baselines(study.baselines),
        "strategies": [_strategy(row, a) for _, row in study.summary.iterrows()],
        "recommendation": {"label": a.recommendation.strategy,
                           "stability": _number(a.recommendation.stability)},
        "acceptable_with_savings": {"answer": a.acceptable_with_savings,
                                    "strategies": a.qualifying},
        "budgets": budgets_summary(study.budgets),
    }


def cross_task_summary(across: CrossTask) -> dict[str, Any]:
    """The cross-task numbers (differences on the 0-1 scale, like each task's)."""
    return {
        "tasks": across.tasks, "metric": across.metric, "cost_view": across.cost_view,
        "tolerance": across.tolerance_points / 100,
        "recommendation": {"label": across.agreed, "per_task": across.recommended,
                           "acceptable_in_every_task": across.acceptable_everywhere},
        "strategies": [{
            "label": r.label, "tasks": r.tasks, "mean_rank": _number(r.mean_rank),
            "ranks": [_number(rank) for rank in r.ranks],
            "delta_vs_full": {
                "mean": _fraction(r.mean_delta), "tasks": len(r.deltas),
                "per_task": [{"task": d.task, "mean": _fraction(d.delta),
                              "ci95": [_fraction(d.low), _fraction(d.high)],
                              "established": d.established} for d in r.deltas],
                "below_zero": r.below_zero, "above_zero": r.above_zero,
                "within_tolerance": r.within_tolerance},
            "speedup_geometric_mean": _number(r.speedup),
            "time_share_of_full": _number(r.time_share),
        } for r in across.strategies],
    }


def _baselines(found: dict[str, Any]) -> dict[str, Any]:
    if not found:
        return {}
    return {metric: {"majority": found["majority"][metric],
                     "per_class": {name: scores[metric]
                                   for name, scores in found["constant"].items()},
                     "chance": found["chance"][metric]}
            for metric in ("accuracy", "f1", "f1_macro")}


def _strategy(row: Any, answers: Any) -> dict[str, Any]:
    label = row["strategy_label"]
    return {
        "label": label, "n_seeds": int(row["n"]), "seeds": [int(s) for s in row["seeds"]],
        "learning_rate": float(row["learning_rate"]),
        "learning_rates_tried": [float(x) for x in row["rates_tried"]],
        "test": {"mean": _number(row["quality_mean"]), "std": _number(row["quality_std"])},
        "test_accuracy": {"mean": _number(row["test_accuracy_mean"]),
                          "std": _number(row["test_accuracy_std"])},
        "delta_vs_full": {"mean": _fraction(row["delta_points"]),  # over the paired seeds
                          "ci95": [_fraction(row["delta_low"]), _fraction(row["delta_high"])],
                          "pairs": int(row["pairs"]),
                          "established": answers.established.get(label),
                          "seeds_to_establish": _seeds(answers.seeds_needed.get(label))},
        "speedup": {view: _number(row[f"speedup_{view}"]) for view in ("standalone", "study")},
        "speedup_std": {view: _number(row[f"speedup_{view}_std"])
                        for view in ("standalone", "study")},
        "train_seconds": {view: _number(row[f"{view}_seconds_mean"])
                          for view in ("standalone", "study")},
        "train_flops": {view: _number(row[f"{view}_flops_mean"])
                        for view in ("standalone", "study")},
        "cost_usd": {view: _number(row[f"{view}_cost_mean"]) for view in ("standalone", "study")},
        "peak_memory_bytes": _number(row["memory_bytes_mean"]),
        "peak_memory_bytes_std": _number(row["memory_bytes_std"]),
        "trainable_params": _number(row["trainable_mean"]),
        "collapsed_runs": int(row["collapsed_runs"]),
    }


def budgets_summary(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Per budget (report/budgets.py), the strategy chosen on validation, its test metric and its
    paired difference from full fine-tuning (0-1 scale), each with the 95 % interval (null where
    nothing competes)."""
    out = []
    for row in table.itertuples(index=False):
        label = row.strategy_label if isinstance(row.strategy_label, str) else None
        out.append({
            "fraction": float(row.fraction), "seconds": _number(row.seconds), "label": label,
            "test": {"mean": _number(row.test),
                     "ci95": [_number(row.test_low), _number(row.test_high)]},
            "delta_vs_full": {"mean": _fraction(row.delta_points),
                              "ci95": [_fraction(row.delta_low), _fraction(row.delta_high)]},
            "acceptable": bool(row.acceptable) if label else None,
        })
    return out


def _seeds(needed: int | None) -> int | None:
    """Seeds that would establish acceptability at the observed mean and spread; null when
    established, when the mean is outside the tolerance, when one seed gives no spread, or when
    more than the search's limit would be needed (``established`` and the report tell which)."""
    return needed if needed is not None and 1 < needed <= MAX_SEEDS else None


def _fraction(points: Any) -> float | None:
    value = _number(points)
    return None if value is None else value / 100


def _number(value: Any) -> float | None:
    """A JSON number, or null for a missing one (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
