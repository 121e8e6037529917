"""The report's tables as display-ready text: one row per strategy, or per failed run.

Format-neutral frames of strings: the Markdown report and the CLI's printed tables share them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from freezebench.report.findings import Findings
from freezebench.report.formatting import (
    MISSING,
    count_text,
    finite,
    known,
    mean_std_text,
    metric_label,
    metric_name,
    percent_text,
    quantity_text,
    ratio_text,
    saving_words,
    share,
    signed,
    usd_text,
)


def main_table(study: Findings) -> pd.DataFrame:
    """One row per strategy with every number of the report, formatted for reading."""
    base, name = study.baseline, metric_name(study.metric)
    view = "standalone" if study.cost_view == "standalone" else "in study"
    rows = []
    for r in study.summary.itertuples():
        row = {
            "Strategy": r.strategy_label,
            "Trainable params": f"{count_text(r.trainable_mean)} "
                                f"({percent_text(r.trainable_percent_mean)} %)",
            f"Test {metric_label(study.metric)}": mean_std_text(r.quality_mean, r.quality_std,
                                                               r.n),
            f"Δ{name} vs full, 95 % CI": _delta(r, base) if base else None,
            **(_regression_columns(r, study.metric) if study.regression else {
                "Test accuracy (%)": mean_std_text(r.test_accuracy_mean, r.test_accuracy_std,
                                                   r.n),
                "Test F1 (%)": (mean_std_text(r.test_f1_mean, r.test_f1_std, r.n)
                                if study.metric != "f1" else None)}),
            f"Training time ({view})": quantity_text(r.seconds_mean, "time"),
            "Speed-up standalone": _speedup(r, "standalone", base),
            "Speed-up in study": _speedup(r, "study", base),
            "Peak memory": quantity_text(r.memory_mb_mean, "memory")
                           + _saving(r, "memory", base),
            f"Training FLOPs ({view})": quantity_text(r.flops_mean, "flops")
                                        + _saving(r, "flops", base),
            f"Cost (USD, {view})": usd_text(r.cost_mean) + _saving(r, "cost", base),
            "Collapsed runs": f"{r.collapsed_runs} of {r.n}",
        }
        rows.append({k: v for k, v in row.items() if v is not None})
    return pd.DataFrame(rows)


def _regression_columns(r: Any, metric: str) -> dict[str, str]:
    """A regression's other correlation beside the decision metric, and its squared error."""
    other = "spearman" if metric == "pearson" else "pearson"
    mean, std = getattr(r, f"test_{other}_mean"), getattr(r, f"test_{other}_std")
    mse, spread = r.test_mse_mean, r.test_mse_std
    return {f"Test {metric_label(other)}": mean_std_text(mean, std, r.n),
            "Test MSE": MISSING if not known(mse) else
            f"{mse:.3g}" + (f" ± {spread:.2g}" if known(spread) else "") + f" (n={int(r.n)})"}


def _delta(r: Any, base: str) -> str:
    if r.strategy_label == base:
        return "baseline"
    if not known(r.delta_low):
        return f"{signed(r.delta_points)} pts (no interval)"
    return f"{signed(r.delta_points)} [{signed(r.delta_low)}, {signed(r.delta_high)}] pts"


def _speedup(r: Any, view: str, base: str | None) -> str | None:
    if not base:
        return None
    value, spread = getattr(r, f"speedup_{view}"), getattr(r, f"speedup_{view}_std")
    if not known(value):
        return MISSING
    return ratio_text(value) + (f" ± {spread:.2f}" if known(spread) else "")


def _saving(r: Any, measure: str, base: str | None) -> str:
    value = getattr(r, f"{measure}_saving_percent")
    if not base or r.strategy_label == base or not known(value):
        return ""
    return f" ({saving_words(value, measure)})"


def baselines_table(study: Findings) -> pd.DataFrame:
    """What trivial predictors score on the test split, in the metrics the report shows."""
    found = study.baselines
    if not found:
        return pd.DataFrame()
    rows = [("Chance (each class guessed equally often)", found["chance"])]
    rows += [(f"Always '{name}'" + (" (majority class)" if name == found["majority_class"]
                                   else ""), scores)
             for name, scores in found["constant"].items()]
    columns = ["accuracy", "f1", "f1_macro"]
    return pd.DataFrame([{"Predictor": label, **{f"Test {metric_name(m)} (%)":
                                                 f"{100 * scores[m]:.1f}" for m in columns}}
                         for label, scores in rows])


def lr_table(study: Findings) -> pd.DataFrame:
    """Per strategy, the learning rates tried and the one chosen on validation."""
    rows = []
    for r in study.summary.itertuples():
        tried = ", ".join(f"{x:g}" for x in sorted(r.rates_tried))
        rows.append({"Strategy": r.strategy_label, "Learning rates tried": tried,
                     "Rates": len(r.rates_tried), "Chosen on validation": f"{r.learning_rate:g}",
                     "Seeds": ", ".join(str(int(s)) for s in r.seeds)})
    return pd.DataFrame(rows)


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


def budgets_table(study: Findings) -> pd.DataFrame:
    """The best strategy on validation at each share of full fine-tuning's training time."""
    name = metric_name(study.metric)
    rows = []
    for r in study.budgets.itertuples(index=False):
        chosen = isinstance(r.strategy_label, str)
        rows.append({
            "Budget": f"{share(r.fraction)} ({r.seconds:.0f} s)",
            "Best on validation": r.strategy_label if chosen else "none within the budget",
            f"Test {name}": (f"{100 * r.test:.1f} [{100 * r.test_low:.1f}, "
                             f"{100 * r.test_high:.1f}]" if chosen and finite(r.test_low)
                             else f"{100 * r.test:.1f}" if chosen else ""),
            f"Δ{name} vs full": (
                f"{signed(r.delta_points)} [{signed(r.delta_low)}, {signed(r.delta_high)}]"
                if chosen and finite(r.delta_low)
                else f"{signed(r.delta_points)} (no interval)" if chosen and finite(r.delta_points)
                else ""),
            "Acceptable": ("yes" if r.acceptable else "no") if chosen else "",
            "Strategies within budget": int(r.competing),
        })
    return pd.DataFrame(rows)
