"""Batches: a deterministic order per epoch, and inputs from tokens or from the prefix cache.

Both paths share :func:`batch_order`, so a run with the frozen-prefix cache sees exactly the same
batches, in the same order, as the same run without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding

from freezebench.cache import CachedStates
from freezebench.model import StagedForward


def batch_order(
    lengths: np.ndarray, batch_size: int, *, shuffle: bool, seed: int, epoch: int,
    group_by_length: bool,
) -> list[list[int]]:
    """Indices of each batch for one epoch, deterministic in ``(seed, epoch)``.

    With ``group_by_length`` the shuffled examples are sorted by length within mega-batches of 50
    batches (as ``transformers``' LengthGroupedSampler does), so each batch pads little.
    """
    count = len(lengths)
    if shuffle:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(count)
    else:
        order = np.arange(count)
    if group_by_length:
        mega = batch_size * 50
        chunks = [order[i: i + mega] for i in range(0, count, mega)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
        batches = [order[i: i + batch_size].tolist() for i in range(0, count, batch_size)]
        if shuffle:
            rng.shuffle(batches)
        return batches
    return [order[i: i + batch_size].tolist() for i in range(0, count, batch_size)]


@dataclass
class SplitInputs:
    """A tokenized split and, when its prefix is cached, the cached states at ``boundary``."""

    dataset: Dataset
    collator: DataCollatorWithPadding
    cached: CachedStates | None = None
    lengths: np.ndarray = field(init=False)
    labels: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.dataset["length"])
        self.labels = torch.as_tensor(self.dataset["labels"])
        self._columns = [c for c in self.dataset.column_names if c not in ("length",)]
        self._table = self.dataset.select_columns(self._columns)

    def tokens(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        rows = self._table[indices]
        features = [{k: rows[k][i] for k in self._columns} for i in range(len(indices))]
        batch = self.collator(features)
        non_blocking = device.type == "cuda"
        return {k: (v.pin_memory() if non_blocking else v).to(device, non_blocking=non_blocking)
                for k, v in batch.items()}


@dataclass
class Batch:
    labels: torch.Tensor
    tokens: dict[str, torch.Tensor] | None = None
    hidden: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None


def iter_batches(inputs: SplitInputs, order: list[list[int]], device: torch.device
                 ) -> Iterator[Batch]:
    for indices in order:
        labels = inputs.labels[indices].to(device, non_blocking=device.type == "cuda")
        if inputs.cached is not None:
            hidden, mask = inputs.cached.batch(indices, device)
            yield Batch(labels, hidden=hidden, attention_mask=mask)
        else:
            tokens = inputs.tokens(indices, device)
            tokens.pop("labels", None)
            yield Batch(labels, tokens=tokens, attention_mask=tokens["attention_mask"])


def forward_logits(staged: StagedForward, batch: Batch, boundary: int) -> torch.Tensor:
    """Logits for a batch whose frozen prefix ends at ``boundary`` (cached or recomputed)."""
    top = staged.num_boundaries
    if batch.hidden is not None:
        hidden = batch.hidden
    elif boundary > 0:
        with torch.no_grad():
            hidden = staged.to_boundary(batch.tokens, boundary)
    else:
        hidden = staged.embed(batch.tokens)
        boundary = 1
    if boundary < top:
        hidden = staged.run_blocks(hidden, batch.attention_mask, boundary - 1, top - 1)
    return staged.head(hidden)


