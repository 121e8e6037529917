"""Batches: dynamic padding per batch, seeded order, length grouping, cache path parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import DataCollatorWithPadding

from freezebench.batching import SplitInputs, batch_order, iter_batches
from freezebench.data import load_task_data, tokenize_splits

from .conftest import rotten_tomatoes_path


@pytest.fixture(scope="module")
def train_inputs(tokenizer) -> SplitInputs:
    task = load_task_data(str(rotten_tomatoes_path()), max_train_samples=256, max_eval_samples=8)
    split = tokenize_splits(task, tokenizer)["train"]
    return SplitInputs(split, DataCollatorWithPadding(tokenizer))


def test_batches_pad_to_their_own_longest_example(train_inputs):
    order = batch_order(train_inputs.lengths, 16, shuffle=False, seed=0, epoch=0,
                        group_by_length=False)
    batches = list(iter_batches(train_inputs, order, torch.device("cpu")))
    assert len(batches) == 16
    widths = {b.tokens["input_ids"].shape[1] for b in batches}
    assert len(widths) > 1
    for indices, batch in zip(order, batches, strict=True):
        assert batch.tokens["input_ids"].shape[1] == train_inputs.lengths[indices].max()
        assert batch.attention_mask.sum(1).tolist() == train_inputs.lengths[indices].tolist()
        assert batch.labels.dtype == torch.long


def test_order_is_deterministic_per_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(5, 60, size=500)
    first = batch_order(lengths, 32, shuffle=True, seed=5, epoch=0, group_by_length=False)
    assert first == batch_order(lengths, 32, shuffle=True, seed=5, epoch=0, group_by_length=False)
    assert first != batch_order(lengths, 32, shuffle=True, seed=6, epoch=0, group_by_length=False)
    assert first != batch_order(lengths, 32, shuffle=True, seed=5, epoch=1, group_by_length=False)
    assert sorted(i for b in first for i in b) == list(range(500))


def test_group_by_length_cuts_padding():
    lengths = np.random.default_rng(1).integers(5, 80, size=2000)

    def padding(group: bool) -> int:
        order = batch_order(lengths, 16, shuffle=True, seed=0, epoch=0, group_by_length=group)
        assert sorted(i for b in order for i in b) == list(range(2000))
        return sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in order)

    assert padding(True) < padding(False) / 4
