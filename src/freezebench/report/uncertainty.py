"""How sure the numbers are: paired t-intervals, seeds needed, and bootstrap stability.

Strategies of a study train on the same seeds, so a strategy is compared with full fine-tuning
seed by seed (a paired difference): the seed's own luck, shared by both runs, cancels out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
MAX_SEEDS = 1000
SPREAD_UNKNOWN = 0  # seeds_to_establish: one paired seed, no spread to extrapolate from


def t_interval(differences: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the two-sided 95 % t-interval of paired ``differences``; NaN bounds below two."""
    values = np.asarray(differences, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = _t(len(values)) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def _t(n: int) -> float:
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))


def seeds_to_establish(mean: float, std: float, tolerance: float) -> int | None:
    """The fewest seeds whose 95 % interval's lower bound reaches ``-tolerance``, if the mean
    and spread stayed as observed; None when the mean itself is not above ``-tolerance``,
    ``SPREAD_UNKNOWN`` when there is no spread (one pair), and ``MAX_SEEDS + 1`` when more than
    ``MAX_SEEDS`` would be needed."""
    margin = mean + tolerance
    if not math.isfinite(margin) or margin <= 0:
        return None
    if not math.isfinite(std):
        return SPREAD_UNKNOWN
    if std == 0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if _t(n) * std / math.sqrt(n) <= margin:
            return n
    return MAX_SEEDS + 1
