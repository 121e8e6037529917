"""Batches: dynamic padding per batch, seeded order, length grouping, packed rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import DataCollatorWithPadding

from freezebench.data.loading import load_task_data, tokenize_splits
from freezebench.engine.batching import (
    Packing,
    SplitInputs,
    batch_order,
    forward_logits,
    iter_batches,
    make_batch,
)
from freezebench.engine.prefix_cache import CachedStates

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


def test_packing_places_every_example_once_within_its_row():
    lengths = np.random.default_rng(2).integers(2, 40, size=16).tolist()
    packing = Packing.first_fit(lengths)
    assert packing.width == max(lengths) and packing.num_rows < len(lengths)
    taken = torch.zeros(packing.num_rows, packing.width, dtype=torch.int)
    for row, start, length in zip(packing.rows, packing.starts, lengths, strict=True):
        assert start + length <= packing.width
        taken[row, start: start + length] += 1
    assert taken.max() == 1 and taken.sum() == sum(lengths)  # no overlap, nothing lost
    segments = packing.segments()
    real = segments < len(lengths)
    assert real.sum() == sum(lengths)
    assert len(segments[~real].unique()) == int((~real).sum())  # each padding slot alone
    positions = packing.positions()
    for index, (row, start) in enumerate(zip(packing.rows, packing.starts, strict=True)):
        span = slice(int(start), int(start) + lengths[index])
        assert positions[row, span].tolist() == list(range(lengths[index]))
        assert (segments[row, span] == index).all()


def test_packed_training_batches_of_rotten_tomatoes_pad_little(train_inputs):
    order = batch_order(train_inputs.lengths, 16, shuffle=True, seed=0, epoch=0,
                        group_by_length=False)
    real = padded = packed = 0
    for indices in order:
        lengths = train_inputs.lengths[indices]
        packing = Packing.first_fit(lengths.tolist())
        real += lengths.sum()
        padded += lengths.max() * len(indices)
        packed += packing.num_rows * packing.width
    assert padded / real > 1.5 and packed / real < 1.2


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert"])
def test_packed_batches_give_the_logits_of_padded_ones(tokenizer, tiny_model_dirs,
                                                       sentiment_folder, architecture):
    """Same examples, from tokens at every frozen boundary and from cached states."""
    from freezebench.model.layer_map import build_layer_map
    from freezebench.model.loading import load_model
    from freezebench.model.staged import StagedForward

    task = load_task_data(str(sentiment_folder))
    model = load_model(tiny_model_dirs[architecture], num_labels=2, label_names=["0", "1"],
                       seed=0).eval()
    staged = StagedForward(model, build_layer_map(model))
    inputs = SplitInputs(tokenize_splits(task, tokenizer)["train"],
                         DataCollatorWithPadding(tokenizer))
    indices = list(range(0, 48, 3))  # 16 examples of several lengths
    padded = make_batch(inputs, indices, packed=False)
    packed = make_batch(inputs, indices, packed=True)
    assert packed.packing.num_rows < len(indices)
    with torch.no_grad():
        for boundary in (0, 1, 3, staged.num_boundaries):
            reference = forward_logits(staged, padded, boundary)
            assert torch.allclose(forward_logits(staged, packed, boundary), reference, atol=1e-5)
        everything = make_batch(inputs, list(range(48)), packed=False)
        states = staged.to_boundary(everything.tokens, 2)  # the cache of the whole split
    lengths = inputs.lengths
    inputs.cached = CachedStates(
        torch.cat([states[row, :n] for row, n in enumerate(lengths)]),
        torch.tensor(np.concatenate([[0], np.cumsum(lengths)])), pooled=False)
    from_cache = {p: make_batch(inputs, indices, packed=p) for p in (False, True)}
    with torch.no_grad():
        assert torch.allclose(forward_logits(staged, from_cache[True], 2),
                              forward_logits(staged, from_cache[False], 2), atol=1e-5)
        assert torch.allclose(forward_logits(staged, from_cache[True], 2), reference, atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "eager", "numpy"])
def test_the_packed_mask_is_the_one_transformers_builds(attention):
    """Built by broadcasting the segment ids, not by vmapping the mask function."""
    from transformers.masking_utils import (
        create_bidirectional_mask,
        packed_sequence_mask_function,
    )

    from freezebench.model.dropout import use_numpy_dropout
    from freezebench.model.layer_map import build_layer_map
    from freezebench.model.staged import StagedForward

    from .conftest import build_tiny_model

    model = build_tiny_model("bert", vocab_size=100)
    if attention == "numpy":
        use_numpy_dropout(model, seed=(0, 0))
    else:
        model.set_attn_implementation(attention)
    segments = Packing.first_fit([5, 3, 2, 7, 1, 4]).segments()
    hidden = torch.zeros(*segments.shape, 32, dtype=torch.bfloat16)
    mask = StagedForward(model, build_layer_map(model)).block_mask(hidden, None, segments)
    expected = create_bidirectional_mask(
        config=model.config, inputs_embeds=hidden, attention_mask=None,
        and_mask_function=packed_sequence_mask_function(segments))
    assert mask.shape == (segments.shape[0], 1, segments.shape[1], segments.shape[1])
    assert mask.dtype == expected.dtype and torch.equal(mask, expected)
