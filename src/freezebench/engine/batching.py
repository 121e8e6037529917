"""Batches: a deterministic order per epoch, and inputs from tokens or from the prefix cache.

Both paths share :func:`batch_order`, so a run with the frozen-prefix cache sees exactly the same
batches, in the same order, as the same run without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding

from freezebench.engine.prefix_cache import CachedStates
from freezebench.model.readout import MeanReadout, Readout, TokenReadout, padded_readout
from freezebench.model.staged import StagedForward


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


@dataclass(frozen=True)
class Packing:
    """Where the examples of one batch sit when they share rows ("packed" batches).

    Longest first, each example goes into the first row with room for it; rows are as wide as the
    longest example. Positions restart at each example and attention stays within it, so each
    example is computed exactly as in a padded batch, with far less padding: the same batch, the
    same loss, less arithmetic.
    """

    rows: torch.Tensor       # [examples]: the row of each example
    starts: torch.Tensor     # [examples]: its first position in that row
    lengths: list[int]
    width: int
    num_rows: int

    @classmethod
    def first_fit(cls, lengths: list[int]) -> Packing:
        width = max(lengths)
        free: list[int] = []  # room left in each row
        rows, starts = [0] * len(lengths), [0] * len(lengths)
        for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            row = next((r for r, room in enumerate(free) if room >= lengths[index]), len(free))
            if row == len(free):
                free.append(width)
            rows[index], starts[index] = row, width - free[row]
            free[row] -= lengths[index]
        return cls(torch.tensor(rows), torch.tensor(starts), list(lengths), width, len(free))

    def pack(self, pieces: list[torch.Tensor], fill: float | int = 0) -> torch.Tensor:
        """``[rows, width, ...]`` with example ``i``'s ``pieces[i]`` at its place."""
        packed = pieces[0].new_full((self.num_rows, self.width, *pieces[0].shape[1:]), fill)
        for piece, row, start in zip(pieces, self.rows.tolist(), self.starts.tolist(),
                                     strict=True):
            packed[row, start: start + len(piece)] = piece
        return packed

    def positions(self) -> torch.Tensor:
        """``[rows, width]``: each token's position within its example (padding: 0)."""
        return self.pack([torch.arange(n) for n in self.lengths])

    def owners(self) -> torch.Tensor:
        """``[rows, width]``: the example at each position (padding: -1)."""
        return self.pack([torch.full((n,), i) for i, n in enumerate(self.lengths)], fill=-1)

    def segments(self) -> torch.Tensor:
        """``[rows, width]``: the example at each position; each padding position an id of its
        own, so it attends to itself alone (a query with nothing to attend to would give NaN)."""
        padding = torch.arange(self.num_rows * self.width).view(self.num_rows, self.width)
        owner = self.owners()
        return torch.where(owner >= 0, owner, padding + len(self.lengths))

    def readout(self, device: torch.device, pooling: str = "cls") -> Readout:
        """What the head reads of each example: its first position, its last, or the mean over
        its positions (``pooling``)."""
        if pooling == "mean":
            return MeanReadout(self.owners().to(device), torch.tensor(self.lengths).to(device))
        starts = self.starts
        if pooling == "last":
            starts = starts + torch.tensor(self.lengths) - 1
        return TokenReadout(self.rows.to(device), starts.to(device))


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
        self._columns = [c for c in self.dataset.column_names if c not in ("length", "labels")]
        self._table = self.dataset.select_columns(self._columns)

    def tokens(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """The examples padded to the longest of them, with their attention mask."""
        rows = self._table[indices]
        features = [{k: rows[k][i] for k in self._columns} for i in range(len(indices))]
        return dict(self.collator(features))

    def packed_tokens(self, indices: list[int], packing: Packing) -> dict[str, torch.Tensor]:
        """The examples packed into rows as ``packing`` places them."""
        rows = self._table[indices]
        pad = self.collator.tokenizer.pad_token_id or 0
        return {column: packing.pack([torch.tensor(v) for v in rows[column]],
                                     fill=pad if column == "input_ids" else 0)
                for column in self._columns if column != "attention_mask"}


@dataclass
class Batch:
    """One batch, as padded rows (``attention_mask``) or packed rows (``packing``), from tokens
    or from cached states."""

    labels: torch.Tensor
    tokens: dict[str, torch.Tensor] | None = None
    hidden: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    packing: Packing | None = None
    positions: torch.Tensor | None = None
    segments: torch.Tensor | None = None

    def readout(self, pooling: str = "cls") -> Readout:
        """What the head reads in the rows (padded on the right, or packed): each example's
        first token (``cls``), its last real one (``last``) or the mean over its tokens
        (``mean``)."""
        device = self.labels.device
        if self.packing is not None:
            return self.packing.readout(device, pooling)
        if pooling == "cls":
            return TokenReadout()
        assert self.attention_mask is not None
        return padded_readout(pooling, self.attention_mask.to(device))


def make_batch(inputs: SplitInputs, indices: list[int], *, packed: bool) -> Batch:
    """The batch of ``indices`` on the CPU; ``packed`` shares rows between examples."""
    labels = inputs.labels[indices]
    cached = inputs.cached
    if not packed or (cached is not None and cached.pooled):  # one vector each: no padding
        if cached is not None:
            hidden, mask = cached.batch(indices)
            return Batch(labels, hidden=hidden, attention_mask=mask)
        tokens = inputs.tokens(indices)
        return Batch(labels, tokens=tokens, attention_mask=tokens["attention_mask"])
    packing = Packing.first_fit([int(inputs.lengths[i]) for i in indices])
    extra = {"packing": packing, "positions": packing.positions(), "segments": packing.segments()}
    if cached is not None:
        return Batch(labels, hidden=packing.pack(cached.pieces(indices)), **extra)
    return Batch(labels, tokens=inputs.packed_tokens(indices, packing), **extra)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` on ``device`` (pinned and copied without blocking on a GPU)."""
    if device.type == "cpu":
        return batch
    moved = {name: _move(getattr(batch, name), device)
             for name in ("labels", "tokens", "hidden", "attention_mask", "positions", "segments")}
    return dataclasses.replace(batch, **moved)


def _move(value, device: torch.device):
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return None if value is None else value.pin_memory().to(device, non_blocking=True)


def iter_batches(inputs: SplitInputs, order: list[list[int]], device: torch.device, *,
                 packed: bool = False) -> Iterator[Batch]:
    for indices in order:
        yield to_device(make_batch(inputs, indices, packed=packed), device)


def forward_logits(staged: StagedForward, batch: Batch, boundary: int) -> torch.Tensor:
    """Logits for a batch whose frozen prefix ends at ``boundary`` (cached or recomputed).

    The last block gives what the head reads (one token, computed alone where it can be, or the
    mean over each example's tokens); cached states after the last block are that already. An
    architecture that is not staged runs whole from the tokens (its batches are padded and never
    cached).
    """
    if not staged.staged:
        assert batch.tokens is not None and batch.packing is None
        return staged.whole(batch.tokens)
    top = staged.num_boundaries
    read = batch.readout(staged.pooling)
    runs_last_block = batch.hidden is None or boundary < top
    hidden = batch.hidden
    inputs = None
    if hidden is None:  # from tokens: the frozen prefix (if any) runs without autograd
        with torch.no_grad() if boundary > 0 else contextlib.nullcontext():
            hidden = staged.embed(batch.tokens, positions=batch.positions)
            inputs = staged.block_inputs(hidden, batch.attention_mask, batch.segments,
                                         batch.positions)
            boundary = max(boundary, 1)  # the embeddings' output
            hidden = staged.run_blocks(hidden, inputs, 0, boundary - 1, read)
    if boundary < top:
        if inputs is None:
            inputs = staged.block_inputs(hidden, batch.attention_mask, batch.segments,
                                         batch.positions)
        hidden = staged.run_blocks(hidden, inputs, boundary - 1, top - 1, read)
    if not runs_last_block:  # cached after the last block: one pooled vector per example
        hidden = hidden[:, :1]
    return staged.head(hidden)
