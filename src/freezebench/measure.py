"""Task metrics and efficiency measurements: quality, time, memory, FLOPs, cost.

Training FLOPs are counted from parameter counts, with freezing taken into account (the Trainer's
``total_flos`` ignores freezing). Per real (non-padding) token, a unit with ``N`` parameters costs

* forward: ``2 N`` (one multiply-add per weight);
* backward through its activations: ``2 N``, needed when anything below it trains;
* backward to its weights: ``2 N_trainable``.

So a fully trainable unit costs ``6 N`` per token, a frozen unit that gradients must cross ``4 N``,
and a unit of the frozen prefix ``2 N`` (or nothing once its outputs are cached). Self-attention
adds ``4 s d`` per token per block forward (scores and weighted sum over ``s`` tokens of width
``d``),
with the same multipliers. Embedding lookups are counted as free (they gather rows, no
arithmetic), and the pooler and head run once per sequence rather than per token.

The last block computes each sequence's first token alone where the architecture allows
(:meth:`~freezebench.model.StagedForward.last_block_at`): its key and value projections act on
every token, its other parameters once per sequence, and its attention has one query per sequence
(``4 s d`` per sequence). Executed FLOPs count it so; naive FLOPs count the whole block, as a run
that neither caches nor cuts the last block computes it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import psutil
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, label_names: list[str], loss: float
) -> dict:
    """Accuracy, F1 (binary: label 1 positive, else macro), macro-F1, precision, recall."""
    predictions = logits.argmax(axis=-1)
    binary = len(label_names) == 2
    average = "binary" if binary else "macro"
    ids = list(range(len(label_names)))
    per_class = f1_score(labels, predictions, labels=ids, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1": float(f1_score(labels, predictions, average=average, zero_division=0)),
        "f1_macro": float(f1_score(labels, predictions, labels=ids, average="macro",
                                   zero_division=0)),
        "precision": float(precision_score(labels, predictions, average=average, zero_division=0)),
        "recall": float(recall_score(labels, predictions, average=average, zero_division=0)),
        "loss": float(loss),
        "per_class_f1": {name: float(v) for name, v in zip(label_names, per_class, strict=True)},
        "samples": int(len(labels)),
    }


@dataclass(frozen=True)
class UnitCost:
    """Parameters of one unit of the model (bottom to top) for FLOP counting."""

    name: str
    params: int
    trainable: int
    per_token: bool        # blocks and embeddings act per token; pooler and head per sequence
    attention: bool        # blocks add the attention score term
    lookup: bool = False   # embeddings: a gather, counted as free
    # the last block at the first tokens: the parameters that still act on every token (keys and
    # values); None where the block runs whole
    key_value_params: int | None = None


def train_flops(
    units: list[UnitCost], lengths: np.ndarray, hidden_size: int, epochs: int,
    prefix_units: int, cached: bool,
) -> dict[str, float]:
    """FLOPs of a training run (see the module docstring).

    ``prefix_units`` is how many bottom units form the frozen prefix (no autograd); when ``cached``
    their forward runs once (``cache_build``) instead of every epoch.
    """
    tokens = float(lengths.sum())
    sequences = float(len(lengths))
    attention_tokens = float((lengths.astype(np.float64) ** 2).sum())
    lowest_trainable = next((i for i, u in enumerate(units) if u.trainable), len(units))
    prefix = {"executed": 0.0, "naive": 0.0}
    per_epoch = {"executed": 0.0, "naive": 0.0}
    for index, unit in enumerate(units):
        if unit.lookup:
            continue
        forward = {kind: _forward_flops(unit, tokens, sequences, attention_tokens, hidden_size,
                                        whole=kind == "naive")
                   for kind in per_epoch}
        if index < prefix_units:
            for kind, flops in forward.items():
                prefix[kind] += flops
            continue
        # forward, backward through the activations, backward to the trainable weights
        multiplier = 1.0 + (1.0 if index > lowest_trainable else 0.0)
        multiplier += unit.trainable / unit.params if unit.params else 0.0
        for kind, flops in forward.items():
            per_epoch[kind] += multiplier * flops
    executed = epochs * per_epoch["executed"] + (0.0 if cached else epochs * prefix["executed"])
    return {
        "train_flops": executed,
        "train_flops_naive": epochs * (per_epoch["naive"] + prefix["naive"]),
        "cache_build_flops": prefix["executed"] if cached else 0.0,
    }


def _forward_flops(unit: UnitCost, tokens: float, sequences: float, attention_tokens: float,
                   hidden_size: int, *, whole: bool = False) -> float:
    """One forward pass of ``unit`` over the data (``whole``: the last block uncut)."""
    if unit.key_value_params is not None and not whole:
        rest = unit.params - unit.key_value_params
        return (2.0 * unit.key_value_params * tokens + 2.0 * rest * sequences
                + 4.0 * tokens * hidden_size)
    count = tokens if unit.per_token else sequences
    flops = 2.0 * unit.params * count
    if unit.attention:
        flops += 4.0 * attention_tokens * hidden_size
    return flops


class PeakMemory:
    """Peak memory of a region: GPU allocator peak, or peak growth of this process's RSS on CPU.

    The CPU figure is sampled by a background thread every few milliseconds, so it reflects this
    region alone even when earlier runs in the same process already raised the lifetime peak.
    """

    def __init__(self, device: torch.device, interval: float = 0.005):
        self.device = device
        self.interval = interval
        self.kind = "cuda_allocated" if device.type == "cuda" else "cpu_rss_growth"
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._baseline = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        process = psutil.Process()
        self._baseline = self._peak = process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, args=(process,), daemon=True)
        self._thread.start()
        return self

    def _sample(self, process: psutil.Process) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._peak = torch.cuda.max_memory_allocated(self.device)
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, psutil.Process().memory_info().rss)

    @property
    def megabytes(self) -> float:
        peak = self._peak if self.device.type == "cuda" else self._peak - self._baseline
        return max(peak, 0) / 2**20


class Stopwatch:
    """Wall time of a region, synchronising the device so queued GPU work is counted."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        _sync(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        _sync(self.device)
        self.seconds += time.perf_counter() - self._start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cost(seconds: float, price_per_hour: float) -> dict[str, float]:
    hours = seconds / 3600.0
    return {"device_hours": hours, "price_per_hour": price_per_hour,
            "cost_usd": hours * price_per_hour}
