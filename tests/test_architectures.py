"""The contract of every architecture mapped beyond BERT, RoBERTa and DistilBERT: the staged
forward equals the model's own (logits and every gradient, fp32, padded and packed rows), every
strategy trains what it names and nothing else, and a cached frozen prefix gives what recomputing
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
from freezebench.engine.training import Recipe, train
from freezebench.model.architectures import ARCHITECTURES
from freezebench.model.layer_map import build_layer_map
from freezebench.model.loading import with_lora
from freezebench.model.staged import StagedForward
from freezebench.record import SplitMetrics
from freezebench.strategies import STRATEGIES, plan_for

from .architectures import DECODERS, NEW_ARCHITECTURES, build_new_model

LENGTHS = [9, 4, 12, 7, 3, 12, 5, 8]
LABELS = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
NOT_EVALUATED = SplitMetrics(accuracy=0.0, f1=0.0, f1_macro=0.0, precision=0.0, recall=0.0,
                             loss=0.0, per_class_f1={}, samples=0)
PARAMS = {"custom": {"patterns": "*.1.*"}, "bottom": {"k": 1}, "top": {"n": 1}}


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
    model.zero_grad(set_to_none=True)
    logits = run()
    torch.nn.functional.cross_entropy(logits, LABELS).backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters()
                             if p.grad is not None}


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
    for batch in batches:
        logits, gradients = _logits_and_gradients(
            model, lambda batch=batch: forward_logits(staged, batch, 0))
        torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-6)
        assert gradients.keys() == expected.keys() == {n for n, _ in model.named_parameters()}
        for name, gradient in gradients.items():
            torch.testing.assert_close(gradient, expected[name], rtol=1e-4, atol=1e-6,
                                       msg=lambda m, name=name: f"{name}: {m}")


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
        for boundary in (2, staged.num_boundaries):  # inside the blocks; after the last one
            inputs.cached = build_states(staged, inputs, boundary, torch.device("cpu"), "fp32")
            for packed in (False, True):
                logits = forward_logits(staged, make_batch(inputs, indices, packed=packed),
                                        boundary)
                torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
            inputs.cached = None


def _trained(architecture: str, strategy: str, tokenizer):
    model = build_new_model(architecture, vocab_size=100).train()
    layer_map = build_layer_map(model)
    plan = plan_for(strategy, PARAMS.get(strategy, {}), layer_map)
    if plan.lora is not None:
        model = with_lora(model, plan.lora)
        layer_map = build_layer_map(model)
        plan = plan_for(strategy, PARAMS.get(strategy, {}), layer_map)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    boundary = apply_trainable(model, layer_map, plan.trainable_at(0.0))
    recipe = Recipe(learning_rate=1e-2, weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=1.0,
                    # one step, except for a schedule, which needs steps to unfreeze
                    num_train_epochs=2 if plan.schedule else 1, per_device_train_batch_size=8,
                    per_device_eval_batch_size=8, seed=0, group_by_length=True,
                    packed_batches=True)
    outcome = train(model=model, staged=StagedForward(model, layer_map), layer_map=layer_map,
                    plan=plan, inputs=_split(_examples(16 if plan.schedule else 8), tokenizer),
                    recipe=recipe,
                    device=torch.device("cpu"), precision="fp32", boundary=boundary,
                    on_epoch_end=lambda epoch: NOT_EVALUATED)
    return model, layer_map, plan, before, outcome


@pytest.mark.parametrize("architecture", NEW_ARCHITECTURES)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_trains_what_it_names_and_nothing_else(tokenizer, architecture, strategy):
    model, layer_map, plan, before, outcome = _trained(architecture, strategy, tokenizer)
    ever = plan.ever_trainable()
    assert set(layer_map.head) <= plan.trainable and ever <= set(layer_map.all_names())
    after = dict(model.named_parameters())
    frozen = set(after) - ever
    assert frozen or strategy in ("full", "gradual"), "partial strategies freeze something"
    for name in frozen:
        assert torch.equal(before[name], after[name]), f"frozen {name} changed"
    changed = {n for n in ever if not torch.equal(before[n], after[n])}
    assert set(layer_map.head) <= changed
    assert len(changed) >= 0.5 * len(ever), "most trainable tensors must move"
    assert all(id(after[n]) not in {id(p) for p in outcome.optimizer.state} for n in frozen)
    if strategy == "bottom":  # k=1: embeddings and the first block frozen, the rest trains
        assert not (set(layer_map.embeddings) | set(layer_map.blocks[0])) & ever
        assert set(layer_map.blocks[1]) | set(layer_map.pooler) <= ever
    if strategy == "lora":
        assert layer_map.adapters and ever == set(layer_map.adapters) | set(layer_map.head)
    if strategy == "layernorm":
        assert ever - set(layer_map.head), "the architecture's norms are found"


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
    last = packing.first_tokens(torch.device("cpu"), "last")
    assert torch.equal(last.starts - packing.starts, torch.tensor(lengths) - 1)
