"""Time to quality: curves over seeds and the best strategy at equal budgets."""

from __future__ import annotations

import pandas as pd
import pytest

from freezebench.report.budgets import (
    POINT_COLUMNS,
    budget_table,
    quality_curves,
    smallest_acceptable,
)
from freezebench.report.summary import budgets_summary


def _points(rows: list[tuple]) -> pd.DataFrame:
    """(label, seed, step, seconds, validation, test) rows; FLOPs = 10 x seconds."""
    return pd.DataFrame(
        [{"strategy_label": label, "seed": seed, "id": f"{label}-{seed}", "step": step,
          "seconds": seconds, "flops": 10 * seconds, "validation": val, "test": test}
         for label, seed, step, seconds, val, test in rows], columns=POINT_COLUMNS)


# full: 100 s, ends at 0.80 (seed 1) / 0.82 (seed 2).
# head: a 5 s cache build before step 0, good early on validation, mediocre on test.
# bottom: a 30 s build, excellent on test at the end, worse than head on validation early.
POINTS = _points([
    ("full", 1, 0, 0.0, 0.5, 0.5), ("full", 1, 10, 50.0, 0.70, 0.70),
    ("full", 1, 20, 100.0, 0.80, 0.80),
    ("full", 2, 0, 0.0, 0.5, 0.5), ("full", 2, 10, 52.0, 0.72, 0.72),
    ("full", 2, 20, 100.0, 0.82, 0.82),
    ("head", 1, 0, 5.0, 0.5, 0.5), ("head", 1, 10, 8.0, 0.75, 0.60),
    ("head", 1, 20, 11.0, 0.76, 0.61),
    ("head", 2, 0, 5.0, 0.5, 0.5), ("head", 2, 10, 8.0, 0.77, 0.62),
    ("head", 2, 20, 11.0, 0.78, 0.63),
    ("bottom", 1, 0, 30.0, 0.5, 0.5), ("bottom", 1, 10, 40.0, 0.74, 0.99),
    ("bottom", 1, 20, 48.0, 0.85, 0.805),
    ("bottom", 2, 0, 30.0, 0.5, 0.5), ("bottom", 2, 10, 40.0, 0.74, 0.99),
    ("bottom", 2, 20, 48.0, 0.86, 0.825),
])


def test_curves_average_seeds_at_each_evaluation():
    curves = quality_curves(POINTS)
    head = curves[curves["strategy_label"] == "head"].set_index("step")
    assert list(head.index) == [0, 10, 20] and (head["n"] == 2).all()
    assert head.at[10, "validation"] == pytest.approx(0.76)
    assert head.at[10, "seconds"] == 8.0 and head.at[10, "flops"] == 80.0
    assert head.at[10, "test_low"] < head.at[10, "test"] < head.at[10, "test_high"]


def test_each_budget_chooses_on_validation_and_reports_test():
    table = budget_table(POINTS, "full", tolerance_points=1.0).set_index("fraction")
    # 10 s: only head's evaluations fit (bottom's build alone is 30 s, full is at step 0)
    assert table.at[0.10, "strategy_label"] == "head" and table.at[0.10, "competing"] == 2
    assert table.at[0.10, "test"] == pytest.approx(0.61)  # head at step 10, seeds averaged
    # 25 s: full and head compete; bottom's build is still beyond the budget
    assert table.at[0.25, "competing"] == 2
    # 50 s: bottom reaches step 20 (48 s) and leads on validation; bottom at step 10 had the
    # best test of all (0.99) but was never chosen, for its validation was lower than head's
    assert table.at[0.50, "strategy_label"] == "bottom"
    assert table.at[0.50, "test"] == pytest.approx(0.815)
    assert table.at[0.50, "delta_points"] == pytest.approx(0.5)  # paired with full's end
    assert table.at[0.50, "acceptable"]
    assert not table.at[0.10, "acceptable"]
    assert smallest_acceptable(table.reset_index())["fraction"] == 0.50
    summary = budgets_summary(table.reset_index())
    assert [b["fraction"] for b in summary] == [0.10, 0.25, 0.50, 1.00]
    assert summary[2]["label"] == "bottom" and summary[2]["acceptable"] is True
    assert summary[2]["test"]["mean"] == pytest.approx(0.815)
    assert summary[0]["delta_vs_full"]["mean"] == pytest.approx(-0.20)


def test_a_strategy_competes_only_when_every_seed_has_an_evaluation_within_the_budget():
    late = POINTS.copy()
    late.loc[(late["strategy_label"] == "head") & (late["seed"] == 2), "seconds"] += 4.0
    table = budget_table(late, "full", tolerance_points=1.0).set_index("fraction")
    assert table.at[0.10, "strategy_label"] == "head"  # seed 2's step 0 at 9 s
    later = POINTS.copy()
    later.loc[(later["strategy_label"] == "head") & (later["seed"] == 2), "seconds"] += 6.0
    table = budget_table(later, "full", tolerance_points=1.0).set_index("fraction")
    assert table.at[0.10, "strategy_label"] == "full"  # head's seed 2 starts at 11 s
    assert table.at[0.10, "test"] == 0.5  # full at step 0: untrained


def test_no_baseline_no_budgets():
    assert budget_table(POINTS[POINTS["strategy_label"] != "full"], "full",
                        tolerance_points=1.0).empty
