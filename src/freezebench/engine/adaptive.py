"""Adaptive freezing: controllers that decide during training how many bottom units stop learning.

The training loop asks its freezer before every step how many bottom units (the embeddings, then
blocks, in layer-map order; never the pooler or head) are frozen from then on, and freezes the new
ones for good: out of the optimizer (state included) and autograd, in inference mode. With the
frozen-prefix cache, :class:`GrowingCache` then deepens every split's cached states by the newly
frozen units, starting from the states already cached.

* :class:`AutoFreeze` follows the reference code of Liu et al. (2021), github.com/YuhanLiu11/
  AutoFreeze: the gradients of each block are summed over an interval of steps, the block's
  gradient norm is the L1 norm of that sum, and its change is ``|previous - current| / previous``
  against the previous interval. The threshold is the ``percentile`` of the changes of the blocks
  still training; the lowest blocks whose change is below it freeze (several at one check when
  the lowest few all are), the embeddings with the first.
* :class:`FreezeOut` follows Brock et al. (2017), github.com/ajbrock/FreezeOut: unit ``i`` of
  ``L`` (embeddings 0, blocks 1..L-1, pooler and head ``L``) has ``t_i = scaling(t0 + (1 - t0)
  i / L)``; its learning rate at step ``j`` of ``T`` is ``lr / t_i * (1 + cos(pi j / (t_i T))) / 2``
  (without ``/ t_i`` unless ``scale_lr``), and the unit freezes once ``j >= t_i T``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from freezebench.engine.batching import SplitInputs
from freezebench.engine.prefix_states import build_states
from freezebench.measure.efficiency import CacheUse
from freezebench.measure.flops import UnitCost, forward_flops
from freezebench.measure.timing import Stopwatch
from freezebench.model.layer_map import LayerMap
from freezebench.model.staged import StagedForward
from freezebench.strategies import AutoFreezeRule, FreezeOutRule

logger = logging.getLogger(__name__)

# the interval of AutoFreeze's checks when the strategy leaves it open: the reference runs
# twenty intervals a run (``--num_intervals 20``)
AUTOFREEZE_CHECKS = 20


def blocks_to_freeze(previous: Sequence[float], current: Sequence[float], frozen: int,
                     percentile: float, max_frozen: int) -> int:
    """AutoFreeze's decision at one check: how many bottom blocks are frozen after it.

    ``previous`` and ``current`` hold every block's gradient norm over the last two intervals
    (those of the ``frozen`` bottom blocks are ignored). The lowest trainable blocks whose
    relative change is below the ``percentile`` of the trainable blocks' changes freeze, up to
    ``max_frozen`` blocks in all.
    """
    changes = [_change(before, now) for before, now in zip(previous[frozen:], current[frozen:],
                                                          strict=True)]
    if not changes:
        return frozen
    threshold = float(np.percentile(changes, percentile))
    stable = next((i for i, change in enumerate(changes) if change >= threshold), len(changes))
    return max(frozen, min(frozen + stable, max_frozen))


def _change(before: float, now: float) -> float:
    if before == 0:  # no gradient before: any gradient now is all change
        return 0.0 if now == 0 else math.inf
    return abs(before - now) / before


class AutoFreeze:
    """Sums each trainable block's gradients over every ``interval`` steps and, from the second
    interval on, freezes the blocks :func:`blocks_to_freeze` says."""

    reads_gradients = True

    def __init__(self, rule: AutoFreezeRule, blocks: list[list[nn.Parameter]], interval: int):
        self.rule, self.blocks, self.interval = rule, blocks, interval
        self.sums = [[torch.zeros_like(p) for p in block] for block in blocks]
        self.previous: list[float] | None = None
        self.frozen_blocks = 0
        self.checks: list[list[float]] = []  # every check's gradient norms (for the record)

    def frozen_units(self, step: int) -> int:
        """Bottom units frozen from ``step`` on: the embeddings and the frozen blocks."""
        return 0 if self.frozen_blocks == 0 else 1 + self.frozen_blocks

    def after_backward(self, steps_done: int) -> None:
        """Add this step's gradients (before clipping); check at the end of an interval."""
        with torch.no_grad():
            for block, sums in zip(self.blocks[self.frozen_blocks:],
                                   self.sums[self.frozen_blocks:], strict=True):
                for param, total in zip(block, sums, strict=True):
                    if param.grad is not None:
                        total.add_(param.grad)
        if steps_done % self.interval == 0:
            self._check()

    def _check(self) -> None:
        current = []
        for sums in self.sums:
            current.append(float(sum(total.abs().sum() for total in sums)))
            for total in sums:
                total.zero_()
        if not all(math.isfinite(norm) for norm in current[self.frozen_blocks:]):
            # an fp16 step that overflowed (the scaler skipped it): no decision on this
            # interval, and the last finite one stays the reference
            logger.warning("AutoFreeze: non-finite gradients in the interval; no decision")
            return
        if self.previous is not None:
            self.frozen_blocks = blocks_to_freeze(self.previous, current, self.frozen_blocks,
                                                  self.rule.percentile, self.rule.max_frozen)
        self.previous = current

    def set_rates(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """AutoFreeze keeps the recipe's learning-rate schedule."""


SCALINGS = {"linear": lambda x: x, "squared": lambda x: x ** 2, "cubic": lambda x: x ** 3}


class FreezeOut:
    """Each unit's learning rate annealed to 0 by a cosine at its own point ``t_i`` of training,
    and the unit frozen there (the pooler and head at the end, never frozen)."""

    reads_gradients = False

    def __init__(self, rule: FreezeOutRule, layer_map: LayerMap, *, learning_rate: float,
                 total_steps: int, warmup_steps: int):
        self.rule, self.learning_rate = rule, learning_rate
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.top = layer_map.num_blocks + 1  # L: embeddings 0, blocks 1..L-1, pooler and head
        self.index = {unit: min(i, self.top) for i, (unit, _) in enumerate(layer_map.units())}

    def t(self, index: int) -> float:
        """The share of training after which unit ``index`` is frozen."""
        scale = SCALINGS[self.rule.scaling]
        return scale(self.rule.t0 + (1 - self.rule.t0) * index / self.top)

    def frozen_units(self, step: int) -> int:
        return sum(1 for i in range(self.top) if step >= self.t(i) * self.total_steps)

    def rate(self, index: int, step: int) -> float:
        """Unit ``index``'s learning rate at ``step`` (0 once it is frozen)."""
        end = self.t(index) * self.total_steps
        if step >= end:
            return 0.0
        start = self.learning_rate / self.t(index) if self.rule.scale_lr else self.learning_rate
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return warm * start * 0.5 * (1.0 + math.cos(math.pi * step / end))

    def set_rates(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Set every group's rate for ``step`` (the optimizer's groups are per unit)."""
        for group in optimizer.param_groups:
            group["lr"] = self.rate(self.index[group["unit"]], step)

    def after_backward(self, steps_done: int) -> None:
        """FreezeOut follows the step count alone."""


Freezer = AutoFreeze | FreezeOut


def freezer_for(rule: AutoFreezeRule | FreezeOutRule | None, model: nn.Module,
                layer_map: LayerMap, *, learning_rate: float, total_steps: int,
                warmup_steps: int) -> Freezer | None:
    """The controller of an adaptive plan's ``rule`` (``None`` for a plan fixed in advance)."""
    if isinstance(rule, AutoFreezeRule):
        params = dict(model.named_parameters())
        blocks = [[params[n] for n in names] for names in layer_map.blocks]
        interval = rule.interval or max(1, total_steps // AUTOFREEZE_CHECKS)
        return AutoFreeze(rule, blocks, interval)
    if isinstance(rule, FreezeOutRule):
        return FreezeOut(rule, layer_map, learning_rate=learning_rate,
                         total_steps=total_steps, warmup_steps=warmup_steps)
    return None


@dataclass
class GrowingCache:
    """Every split's frozen-prefix states, deepened as the frozen prefix grows during training.

    Each deepening runs the newly frozen units over the states cached so far (over the tokens at
    the first freeze). The training split's build is training cost (timed with training, its
    forward FLOPs returned); the evaluation splits' builds are evaluation cost.
    """

    staged: StagedForward
    splits: dict[str, SplitInputs]   # "train" and the evaluation splits
    units: list[UnitCost]
    device: torch.device
    precision: str

    def deepen(self, start: int, stop: int, watch: Stopwatch) -> tuple[float, float]:
        """States at boundary ``stop`` from those at ``start`` for every split; returns the
        training split's build FLOPs and the evaluation splits' build seconds."""
        evaluation_seconds = 0.0
        for split, inputs in self.splits.items():
            if split == "train":
                inputs.cached = self._build(inputs, start, stop)
                continue
            with watch.paused():
                began = time.perf_counter()
                inputs.cached = self._build(inputs, start, stop)
                evaluation_seconds += time.perf_counter() - began
        hidden = self.staged.model.config.hidden_size
        lengths = self.splits["train"].lengths
        return forward_flops(self.units, lengths, hidden, start, stop), evaluation_seconds

    def use(self) -> CacheUse:
        """What the run holds at the end: the deepest states of every split (their builds are
        in the training and evaluation times, none apart)."""
        held = [inputs.cached for inputs in self.splits.values() if inputs.cached is not None]
        train = self.splits["train"].cached
        return CacheUse(hit=False, build_seconds=0.0, bytes=sum(e.nbytes for e in held),
                        train_bytes=train.nbytes if train is not None else 0)

    def _build(self, inputs: SplitInputs, start: int, stop: int):
        entry = build_states(self.staged, inputs, stop, self.device, self.precision,
                             start=inputs.cached if start > 0 else None, start_boundary=start)
        logger.info("Frozen-prefix states deepened from boundary %d to %d: %.1f MB", start, stop,
                    entry.nbytes / 2**20)
        return entry
