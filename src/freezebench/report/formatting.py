"""Number words and display formats shared by the answers, the report's tables and the plots.

Every function turns one number into the text a reader sees ('−0.8', '34 %', '1.5× faster',
'3,650 MB'); a missing number shows as '–' wherever a table cell needs one.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pandas as pd

MISSING = "–"


_METRIC_NAMES = {"accuracy": "accuracy", "f1": "F1", "f1_macro": "macro-F1",
                 "precision": "precision", "recall": "recall", "pearson": "Pearson r",
                 "spearman": "Spearman ρ"}
_CORRELATIONS = ("pearson", "spearman")


def metric_name(metric: str) -> str:
    """The metric as a reader calls it: 'macro-F1', 'accuracy', 'Pearson r', ..."""
    return _METRIC_NAMES.get(metric, metric)


def metric_unit(metric: str) -> str:
    """How the report shows the metric: shares in percent, correlations x 100 (as GLUE reports
    STS-B); a difference of 1 on either scale is one point."""
    return "×100" if metric in _CORRELATIONS else "%"


def metric_label(metric: str) -> str:
    """The metric's name with its unit, for a column or an axis: 'macro-F1 (%)'."""
    return f"{metric_name(metric)} ({metric_unit(metric)})"


def known(value: Any) -> bool:
    """True unless ``value`` is None or NaN (infinity counts as known)."""
    return value is not None and not pd.isna(value)


def finite(value: Any) -> bool:
    """True for a real number that is neither NaN nor infinite."""
    return isinstance(value, numbers.Real) and math.isfinite(value)


# --------------------------------------------------------------------------- words in sentences

def signed(value: float, digits: int = 1) -> str:
    """'+0.2' or '−0.8' (a true minus sign); rounding to zero gives '±0.0'; missing: '–'."""
    if not finite(value):
        return MISSING
    text = f"{abs(value):.{digits}f}"
    if float(text) == 0:
        return f"±{text}"
    return ("+" if value > 0 else "\u2212") + text


def share(fraction: float) -> str:
    """A fraction as a whole percentage: 0.34 -> '34 %'."""
    return f"{fraction * 100:.0f} %"


def speed_words(speedup: float) -> str:
    """A speed-up as words: '1.9× faster', or '1.2× slower' below 1; missing: 'no time'."""
    if not finite(speedup):
        return "no time recorded"
    if speedup >= 1:
        return f"{speedup:.1f}\u00d7 faster"
    return f"{1 / speedup:.1f}\u00d7 slower"


def points_word(tolerance: float) -> str:
    """A number of points with its noun: "1 point", "0.5 points"."""
    return f"{tolerance:g} point" + ("" if tolerance == 1 else "s")


def points_text(f1: float) -> str:
    """An F1 score (0-1) in points with one decimal: 0.855 -> '85.5'."""
    return f"{f1 * 100:.1f}"


def percent_text(value: float) -> str:
    """A percentage with enough digits to tell 99.9986 % from 100 % and 0.0014 % from 0 %."""
    if value == 0 or not finite(value):
        return f"{value:.0f}"
    if 99 < abs(value) < 100:
        digits = next((d for d in range(1, 5) if round(abs(value), d) < 100), 4)
        return f"{value:.{digits}f}"
    if abs(value) < 1:
        return f"{value:.2g}"
    return f"{value:.0f}"


# Words for a saving against the baseline and for a loss, per compared measure
# (the ``<measure>_saving_percent`` columns of the comparison).
SAVING_WORDS = {"memory": ("less", "more"), "flops": ("fewer", "more"),
                "trainable": ("fewer", "more"), "cost": ("lower", "higher")}


def saving_words(saving_percent: float, measure: str) -> str:
    """A saving as words: '30 % less' (peak memory), or for a loss '25 % higher' (cost)."""
    fewer, more = SAVING_WORDS[measure]
    word = fewer if saving_percent >= 0 else more
    return f"{percent_text(abs(saving_percent))} % {word}"


# --------------------------------------------------------------------------- table cells

def mean_std_text(mean: float, std: float, n: int) -> str:
    """A score (0-1) over seeds in points: '85.0 ± 0.2 (n=3)'; no spread for one seed."""
    if not known(mean):
        return MISSING
    spread = f" ± {points_text(std)}" if known(std) else ""
    return f"{points_text(mean)}{spread} (n={int(n)})"


def count_text(value: float) -> str:
    """A parameter count: '57.3 M' from a million up, else '1,538'."""
    if not known(value):
        return MISSING
    return f"{value / 1e6:.1f} M" if value >= 1e6 else f"{value:,.0f}"


def quantity_text(value: float, family: str) -> str:
    """A value in the unit of ``family`` that keeps it readable: '121 s', '493 TFLOP', '3,650 MB'.

    Three significant digits, except memory: whole megabytes, or gigabytes with one decimal.
    """
    if not known(value):
        return MISSING
    factor, unit = scale([value], family)
    if family == "memory":
        number = f"{value / factor:,.0f}" if factor == 1 else f"{value / factor:.1f}"
    else:
        number = f"{value / factor:.3g}"
    return f"{number} {unit}"


def ratio_text(value: float) -> str:
    """A ratio such as a speed-up: '1.52×'."""
    return f"{value:.2f}×" if known(value) else MISSING


def integer_text(value: float) -> str:
    """A whole number with thousands separators: '8,530'."""
    return f"{value:,.0f}" if known(value) else MISSING


def usd_text(value: float) -> str:
    """Dollars, three significant digits: '$0.0118'."""
    return f"${value:.3g}" if known(value) else MISSING


# --------------------------------------------------------------------------- units

def scale(values: pd.Series | np.ndarray, family: str) -> tuple[float, str]:
    """A divisor and unit that keep the largest value readable (s/min/h, MB/GB, GFLOP/TFLOP...)."""
    top = float(np.nanmax(np.asarray(values, dtype=float))) if len(values) else 0.0
    steps = {
        "time": [(3600, "h", 7200), (60, "min", 300), (1, "s", 0)],
        "memory": [(1024, "GB", 10240), (1, "MB", 0)],
        "flops": [(1e18, "EFLOP", 1e18), (1e15, "PFLOP", 1e15), (1e12, "TFLOP", 1e12),
                  (1e9, "GFLOP", 1e9), (1, "FLOP", 0)],
    }[family]
    return next((factor, unit) for factor, unit, above in steps if top >= above)
