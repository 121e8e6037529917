"""The FLOP count against torch's: one real training step of every strategy on every architecture,
and the counts of simple cases worked out by hand.

What is compared: the matrix products ``torch.utils.flop_counter.FlopCounterMode`` counts in one
training step (the engine's staged forward from the run's frozen-prefix boundary, the prefix under
``no_grad``, no cache; then the backward of the loss) against :func:`pass_flops` for the positions
that step computed. The analytic count is per real token; a padded batch also computes its padding
and a packed row its tail, and each row's attention covers every pair in it, masked or not, so the
comparison gives the count what the batch computed (:func:`_computed`). A padded batch of examples
of one length computes exactly their real tokens: there :func:`train_flops` itself is compared.

Attention runs eager: torch's counter has no formula for SDPA's CPU kernel. The last block is cut
to the first tokens under ``eager`` (a dense mask); the same eager function under a name the cut
does not know runs it whole.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import eager_attention_forward

from freezebench.config import RunConfig
from freezebench.engine.batching import Batch, SplitInputs, forward_logits, make_batch
from freezebench.engine.freezing import apply_trainable
from freezebench.measure.flops import (
    Matrix,
    Positions,
    UnitCost,
    forward_flops,
    pass_flops,
    scheduled_train_flops,
    train_flops,
    unit_costs,
)
from freezebench.model.staged import StagedForward, computes_first_token_only
from freezebench.pipeline import prepare
from freezebench.strategies import STRATEGIES

from .conftest import write_sentiment_folder

ARCHITECTURES = ("bert", "roberta", "distilbert")
PARAMS = {"custom": {"patterns": "*.3.*"}, "bottom": {"k": 2}, "top": {"n": 1}}
WHOLE_BLOCK = "eager_unknown_to_the_cut"
EQUAL = "padded, one length"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    return str(write_sentiment_folder(tmp_path_factory.mktemp("flops") / "sentiment"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Steps this small run fastest on one thread (a second one waits more than it helps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def whole_block_attention():
    """Eager attention under a name outside the cut's dense-mask list: the last block runs whole."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, WHOLE_BLOCK,
                      eager_attention_forward)
        patch.setitem(ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, WHOLE_BLOCK,
                      ALL_MASK_ATTENTION_FUNCTIONS["eager"])
        yield WHOLE_BLOCK


def _batches(lengths: np.ndarray) -> dict[str, tuple[list[int], bool]]:
    """Eight examples of one length (padded), and the three shortest with the five longest, whose
    short ones share packed rows (padded and packed)."""
    order = np.argsort(lengths, kind="stable")
    mixed = [int(i) for i in (*order[:3], *order[-5:])]
    equal = [int(i) for i in np.flatnonzero(lengths == np.bincount(lengths).argmax())[:8]]
    return {EQUAL: (equal, False), "padded": (mixed, False), "packed": (mixed, True)}


def _computed(batch: Batch) -> Positions:
    """What ``batch`` computes: every position of every row, each row's attention over all its
    pairs, and in the cut block each example's one query over its row."""
    rows, width = batch.tokens["input_ids"].shape
    examples = len(batch.labels)
    return Positions(rows * width, examples, rows * width * width, examples * width)


def _counted_step(staged: StagedForward, batch: Batch, boundary: int) -> float:
    """torch's count of one training step's forward and backward."""
    with FlopCounterMode(display=False) as counter:
        logits = forward_logits(staged, batch, boundary)
        torch.nn.functional.cross_entropy(logits, batch.labels).backward()
    staged.model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _step_counts(staged: StagedForward, inputs: SplitInputs, units: list[UnitCost],
                 boundary: int) -> dict[str, tuple[float, float]]:
    """``{batch kind: (torch's count, the analytic count)}`` for one training step each."""
    hidden = staged.model.config.hidden_size
    counts = {}
    for kind, (indices, packed) in _batches(inputs.lengths).items():
        batch = make_batch(inputs, indices, packed=packed)
        if kind == EQUAL:
            assert len(set(inputs.lengths[indices])) == 1 and batch.attention_mask.all()
            analytic = train_flops(units, inputs.lengths[indices], hidden, 1,
                                   prefix_units=boundary, cached=False)["train_flops"]
        else:
            # mixed lengths: the padded rows hold padding, the packed ones share rows
            assert (batch.packing.num_rows < len(indices) if packed
                    else not batch.attention_mask.all())
            analytic = sum(pass_flops(units, _computed(batch), hidden, prefix_units=boundary))
        counts[kind] = (_counted_step(staged, batch, boundary), analytic)
    return counts


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_the_count_agrees_with_torchs_on_a_training_step(
    tiny_model_dirs, dataset, whole_block_attention, architecture, strategy,
):
    prepared = prepare(RunConfig(model=tiny_model_dirs[architecture], dataset=dataset,
                                 strategy=strategy, strategy_params=PARAMS.get(strategy, {}),
                                 use_cache=False))
    model, layer_map, inputs = prepared.model, prepared.layer_map, prepared.inputs["train"]
    trainable = prepared.plan.trainable_at(0.0)  # gradual: its first stage, as a run starts
    boundary = apply_trainable(model, layer_map, trainable)
    staged = StagedForward(model, layer_map)
    units, steps = {}, {}
    for attention in ("eager", whole_block_attention):
        model.set_attn_implementation(attention)
        cut = computes_first_token_only(model)
        assert cut == (attention == "eager")
        units[cut] = unit_costs(model, layer_map, trainable, cut)
        steps[cut] = _step_counts(staged, inputs, units[cut], boundary)
    for cut, counts in steps.items():
        for kind, (counted, analytic) in counts.items():
            assert analytic == pytest.approx(counted, rel=0.02), ("cut" if cut else "whole", kind)
    equal = _batches(inputs.lengths)[EQUAL][0]
    naive = train_flops(units[True], inputs.lengths[equal], model.config.hidden_size, 1,
                        prefix_units=boundary, cached=False)["train_flops_naive"]
    assert naive == pytest.approx(steps[False][EQUAL][0], rel=0.02), "naive: the last block whole"


# By hand: blocks of width 4 (query, key, value, output 4 x 4; feed-forward 4 x 8, 8 x 4: 128
# multiply-adds per position, 48 of them in the projections that read the block's input) and a
# 4 x 2 head, over sequences of 3 and 5 tokens (8 tokens, 2 sequences, 34 attention pairs).
LENGTHS = np.array([3, 5])
MATRICES = 2 * 128 * 8                     # a whole block's matrices forward
ATTENTION = 2 * (2 * 4 * 34)                # and its attention's two products
FORWARD = MATRICES + ATTENTION
READ_INPUT = 2 * 48 * 8                     # the input gradients the lowest trained block skips
# the cut block: keys and values (2 x 16) on 8 tokens, the rest (96) on 2 first tokens, and
# attention over 8 pairs
CUT = 2 * 32 * 8 + 2 * 96 * 2 + 2 * (2 * 4 * 8)
CUT_READ_INPUT = 2 * (32 * 8 + 16 * 2)
HEAD = 2 * 8 * 2


def _block(trains: bool, cut: bool = False) -> UnitCost:
    reads_input = [Matrix(16, trains, False, every_token=i > 0) for i in range(3)]
    above = [Matrix(size, trains, trains, every_token=False) for size in (16, 32, 32)]
    return UnitCost("block", (*reads_input, *above), trains, per_token=True,
                    attention=(trains, trains, trains), cut=cut)


def _units(embeddings: bool, block0: bool, cut: bool = False) -> list[UnitCost]:
    return [UnitCost("embeddings", (), embeddings, per_token=True), _block(block0),
            _block(True, cut), UnitCost("head", (Matrix(8, True, False, False),), True,
                                        per_token=False)]


def _flops(units: list[UnitCost], prefix_units: int = 0, cached: bool = False,
           epochs: int = 1) -> dict[str, float]:
    return train_flops(units, LENGTHS, 4, epochs, prefix_units=prefix_units, cached=cached)


def test_a_trained_unit_costs_three_forwards_less_what_the_lowest_one_need_not_pass_down():
    # block 1 and the head: forward, input and weight gradients; block 0, the lowest trained
    # unit, computes no gradient for the input of its query, key and value projections
    assert _flops(_units(False, True))["train_flops"] == \
        (3 * FORWARD - READ_INPUT) + 3 * FORWARD + 3 * HEAD
    # trained embeddings below: the frozen block 0 passes gradients down, through its matrices
    # (input gradients only) and its attention (the gradients of queries, keys, values, weights)
    assert _flops(_units(True, False))["train_flops"] == \
        (2 * MATRICES + 3 * ATTENTION) + 3 * FORWARD + 3 * HEAD
    # block 0 as the frozen prefix: forward only; block 1 is now the lowest trained unit
    assert _flops(_units(False, False), prefix_units=2)["train_flops"] == \
        FORWARD + (3 * FORWARD - READ_INPUT) + 3 * HEAD


def test_the_cut_block_counts_its_keys_and_values_per_token_and_naive_counts_it_whole():
    flops = _flops(_units(False, True, cut=True), epochs=2)
    assert flops == {"train_flops": 2 * ((3 * FORWARD - READ_INPUT) + 3 * CUT + 3 * HEAD),
                     "train_flops_naive": 2 * ((3 * FORWARD - READ_INPUT) + 3 * FORWARD
                                               + 3 * HEAD),
                     "cache_build_flops": 0.0}
    uncut = _flops(_units(False, True), epochs=2)
    assert uncut["train_flops"] == uncut["train_flops_naive"] == flops["train_flops_naive"]


def test_a_cached_prefix_runs_forward_once_below_the_cut_block():
    flops = _flops(_units(False, False, cut=True), prefix_units=2, cached=True, epochs=3)
    assert flops == {"train_flops": 3 * ((3 * CUT - CUT_READ_INPUT) + 3 * HEAD),
                     "train_flops_naive": 3 * (FORWARD + (3 * FORWARD - READ_INPUT) + 3 * HEAD),
                     "cache_build_flops": float(FORWARD)}


def test_the_lowest_unit_above_the_prefix_is_the_lowest_that_passes_gradients():
    # gradual counts with its ever-trainable set: block 0 trains later, but while it is in the
    # frozen prefix nothing below block 1 gets a gradient
    assert _flops(_units(False, True), prefix_units=2)["train_flops"] == \
        FORWARD + (3 * FORWARD - READ_INPUT) + 3 * HEAD


def test_a_schedule_counts_each_stage_with_its_own_trainable_set_and_prefix():
    # gradual: block 1 and the head for the first 40 % of the steps, then block 0 joins
    first, later = _units(False, False), _units(False, True)
    flops = scheduled_train_flops([(0.4, first), (0.6, later)], LENGTHS, 4, 1)
    assert flops["train_flops"] == pytest.approx(
        0.4 * (FORWARD + (3 * FORWARD - READ_INPUT) + 3 * HEAD)  # block 0 forward only
        + 0.6 * ((3 * FORWARD - READ_INPUT) + 3 * FORWARD + 3 * HEAD))
    assert flops["cache_build_flops"] == 0.0


def test_a_cache_build_counts_the_forward_of_the_units_it_computes():
    units = _units(False, False, cut=True)
    whole_prefix = _flops(units, prefix_units=4, cached=True)["cache_build_flops"]
    assert forward_flops(units, LENGTHS, 4, 0, 4) == whole_prefix
    assert forward_flops(units, LENGTHS, 4, 0, 2) + forward_flops(units, LENGTHS, 4, 2, 4) == \
        whole_prefix
    assert forward_flops(units, LENGTHS, 4, 1, 2) == FORWARD  # block 0 alone
