"""How sure the numbers are: paired t-intervals, seeds needed, and bootstrap stability.

Strategies of a study train on the same seeds, so a strategy is compared with full fine-tuning
seed by seed (a paired difference): the seed's own luck, shared by both runs, cancels out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
MAX_SEEDS = 1000


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
    and spread stayed as observed; None when the mean itself is not above ``-tolerance``, and
    ``MAX_SEEDS + 1`` when more than ``MAX_SEEDS`` would be needed."""
    margin = mean + tolerance
    if not math.isfinite(margin) or margin <= 0:
        return None
    if not math.isfinite(std) or std == 0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if _t(n) * std / math.sqrt(n) <= margin:
            return n
    return MAX_SEEDS + 1


def bootstrap_agreement(seeds: int, decide: Callable[[np.ndarray], str], observed: str, *,
                        replicates: int = 1000, seed: int = 0) -> float:
    """How often ``decide`` (given resampled seed positions) gives ``observed``: the share of
    bootstrap replicates of the seeds, drawn with replacement, that agree."""
    if seeds < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, seeds, size=(replicates, seeds))
    return float(np.mean([decide(rows) == observed for rows in draws]))
