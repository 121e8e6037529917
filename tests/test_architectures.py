"""The contract of every architecture mapped beyond BERT, RoBERTa and DistilBERT: the staged
forward equals the model's own (logits and every gradient, fp32, padded and packed rows), every
strategy trains what it names and nothing else (tests/test_architectures_strategies.py), and a
cached frozen prefix gives what recomputing
it gives. Tiny random models from configs (tests/architectures.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding

from freezebench.engine.batching import Batch, Packing, SplitInputs, forward_logits, make_batch
from freezebench.engine.freezing import apply_trainable
from freezebench.engine.prefix_states import build_states
from freezebench.model.architectures import ARCHITECTURES
from freezebench.model.dropout import use_numpy_dropout
from freezebench.model.layer_map import build_layer_map
from freezebench.model.staged import StagedForward, computes_first_token_only

from .architectures import (
    DECODERS,
    NEW_ARCHITECTURES,
    assert_same_logits_and_gradients,
    build_new_model,
    logits_and_gradients,
)
from .conftest import build_tiny_model

LENGTHS = [9, 4, 12, 7, 3, 12, 5, 8]
LABELS = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])


def _examples(count: int = len(LENGTHS), seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = (LENGTHS * (count // len(LENGTHS) + 1))[:count]
    return [torch.randint(5, 100, (n,), generator=generator) for n in lengths]


def _padded(examples: list[torch.Tensor]) -> Batch:
    ids = torch.nn.utils.rnn.pad_sequence(examples, batch_first=True, padding_value=0)
    lengths = torch.tensor([len(e) for e in examples])
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    return Batch(LABELS[: len(examples)], tokens={"input_ids": ids, "attention_mask": mask},
                 attention_mask=mask)


def _packed(examples: list[torch.Tensor]) -> Batch:
    packing = Packing.first_fit([len(e) for e in examples])
    return Batch(LABELS[: len(examples)], tokens={"input_ids": packing.pack(examples)},
                 packing=packing, positions=packing.positions(), segments=packing.segments())


def _model(architecture: str):
    model = build_new_model(architecture, vocab_size=100)
    for name, param in model.named_parameters():
        if "classifier" in name or "score" in name:  # a head far from zero makes gradients count
            torch.nn.init.normal_(param, std=0.5)
    return model.eval()  # no dropout: both paths must agree exactly


def _logits_and_gradients(model, run) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return logits_and_gradients(model, run, LABELS)


def test_every_architecture_of_this_file_is_mapped():
    assert set(NEW_ARCHITECTURES) <= set(ARCHITECTURES)


@pytest.mark.parametrize("architecture", NEW_ARCHITECTURES)
def test_the_staged_forward_gives_the_models_logits_and_gradients(architecture):
    model = _model(architecture)
    staged = StagedForward(model, build_layer_map(model))
    examples = _examples()
    padded = _padded(examples)
    reference, expected = _logits_and_gradients(model, lambda: model(**padded.tokens).logits)
    batches = [padded, _packed(examples)] if staged.packs else [padded]
    assert expected.keys() == {n for n, _ in model.named_parameters()}
    for batch in batches:
        assert_same_logits_and_gradients(
            _logits_and_gradients(model, lambda batch=batch: forward_logits(staged, batch, 0)),
            (reference, expected))


@pytest.mark.parametrize("attention", ["eager", "numpy"])
@pytest.mark.parametrize("architecture", ["llama", "qwen3"])
def test_the_cut_last_decoder_block_gives_the_models_gradients_under_every_attention(
        architecture, attention):
    model = _model(architecture)
    if attention == "numpy":
        use_numpy_dropout(model, seed=(0, 0))
    else:
        model.set_attn_implementation(attention)
    staged = StagedForward(model, build_layer_map(model))
    assert computes_first_token_only(model)
    examples = _examples()
    reference, expected = _logits_and_gradients(
        model, lambda: model(**_padded(examples).tokens).logits)
    logits, gradients = _logits_and_gradients(
        model, lambda: forward_logits(staged, _packed(examples), 0))
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-6)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "qwen3", "mistral"])
def test_the_last_decoder_mlp_sees_one_position_per_example_and_keys_see_all(architecture):
    model = _model(architecture)
    staged = StagedForward(model, build_layer_map(model))
    seen: dict[str, list[tuple[int, ...]]] = {"mlp": [], "key": []}
    last = staged.blocks[-1]
    last.mlp.register_forward_hook(lambda module, args, out: seen["mlp"].append(args[0].shape))
    last.self_attn.k_proj.register_forward_hook(
        lambda module, args, out: seen["key"].append(args[0].shape))
    batch = _packed(_examples())
    with torch.no_grad():
        forward_logits(staged, batch, 0)
    rows, width = batch.segments.shape
    assert seen == {"mlp": [(len(LENGTHS), 1, 32)], "key": [(rows, width, 32)]}


@pytest.mark.parametrize("architecture", ("bert", "roberta", "distilbert", *NEW_ARCHITECTURES))
def test_a_frozen_backbone_runs_every_dropout_outside_the_head_in_inference_mode(architecture):
    build = build_new_model if architecture in NEW_ARCHITECTURES else build_tiny_model
    model = build(architecture, vocab_size=100).train()
    layer_map = build_layer_map(model)
    apply_trainable(model, layer_map, set(layer_map.head))
    outside_head = [name for name, module in model.named_modules()
                    if isinstance(module, torch.nn.Dropout)
                    and not any(name.startswith(h) for h in layer_map.spec.head)]
    # (Llama-style decoders drop attention weights only, by a rate their blocks' mode governs)
    assert not [n for n in outside_head if model.get_submodule(n).training]


@pytest.mark.parametrize("architecture", DECODERS)
def test_decoders_read_the_last_real_token(architecture):
    model = _model(architecture)
    staged = StagedForward(model, build_layer_map(model))
    examples = _examples()
    with torch.no_grad():
        logits = forward_logits(staged, _padded(examples), 0)
        alone = forward_logits(staged, _padded(examples[:1]), 0)  # no padding at all
        # the last token decides: change it and the logits move; change the first of a
        # causal model's tokens and they move too, as every later token sees it
        changed = [e.clone() for e in examples]
        changed[0][-1] = 99 if changed[0][-1] != 99 else 98
        moved = forward_logits(staged, _padded(changed), 0)
    torch.testing.assert_close(logits[:1], alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(moved[0], logits[0]) and torch.allclose(moved[1:], logits[1:])


def _split(examples: list[torch.Tensor], tokenizer) -> SplitInputs:
    dataset = Dataset.from_dict({
        "input_ids": [e.tolist() for e in examples],
        "attention_mask": [[1] * len(e) for e in examples],
        "labels": [int(LABELS[i % len(LABELS)]) for i in range(len(examples))],
        "length": [len(e) for e in examples]})
    return SplitInputs(dataset, DataCollatorWithPadding(tokenizer))


@pytest.mark.parametrize("architecture", [a for a in NEW_ARCHITECTURES
                                          if ARCHITECTURES[a].staged])
def test_a_cached_prefix_gives_the_logits_of_recomputing_it(tokenizer, architecture):
    model = _model(architecture)
    staged = StagedForward(model, build_layer_map(model))
    inputs = _split(_examples(24, seed=1), tokenizer)  # the tokenizer pads with id 0
    indices = list(range(0, 24, 3))
    with torch.no_grad():
        expected = forward_logits(staged, make_batch(inputs, indices, packed=False), 0)
        below = build_states(staged, inputs, 2, torch.device("cpu"), "fp32")
        top = staged.num_boundaries
        entries = {2: below,  # inside the blocks; after the last one, built on from boundary 2
                   top: build_states(staged, inputs, top, torch.device("cpu"), "fp32",
                                     start=below, start_boundary=2)}
        for boundary, entry in entries.items():
            inputs.cached = entry
            for packed in (False, True):
                logits = forward_logits(staged, make_batch(inputs, indices, packed=packed),
                                        boundary)
                torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
            inputs.cached = None


def test_sequences_longer_than_a_sliding_window_are_refused():
    from freezebench.errors import ModelError

    model = build_new_model("mistral", vocab_size=100)
    model.config.sliding_window = 8
    staged = StagedForward(model, build_layer_map(model))
    with pytest.raises(ModelError, match="sliding attention window"):
        forward_logits(staged, _padded(_examples()), 0)


def test_a_deberta_with_a_convolution_is_refused_with_the_reason():
    from freezebench.errors import ModelError

    model = build_new_model("deberta-v2", vocab_size=100)
    model.config.conv_kernel_size = 3
    with pytest.raises(ModelError, match="convolution"):
        build_layer_map(model)


def test_packed_rows_of_examples_in_any_order_place_each_one_once():
    lengths = np.array(LENGTHS)
    packing = Packing.first_fit(list(lengths))
    last = packing.readout(torch.device("cpu"), "last")
    assert torch.equal(last.starts - packing.starts, torch.tensor(lengths) - 1)
