"""The last block computed at the first tokens alone: same logits and gradients, less arithmetic
(its FLOP count: tests/test_flops.py)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from freezebench.engine.batching import Batch, Packing, forward_logits
from freezebench.model.dropout import use_numpy_dropout
from freezebench.model.layer_map import build_layer_map
from freezebench.model.readout import TokenReadout
from freezebench.model.staged import StagedForward, computes_first_token_only

from .architectures import assert_same_logits_and_gradients, logits_and_gradients
from .conftest import build_tiny_model

LENGTHS = [9, 4, 12, 7, 3, 12, 5]
FEED_FORWARD = {"bert": "intermediate.dense", "roberta": "intermediate.dense",
                "distilbert": "ffn.lin1"}
KEY = {"bert": "attention.self.key", "roberta": "attention.self.key",
       "distilbert": "attention.k_lin"}


def _model(architecture: str, attention: str, lora: bool = False):
    model = build_tiny_model(architecture, vocab_size=100)
    if lora:
        targets = ["q_lin", "v_lin"] if architecture == "distilbert" else ["query", "value"]
        model = inject_adapter_in_model(LoraConfig(r=4, target_modules=targets), model)
        for name, param in model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero; a nonzero B makes LoRA count
                torch.nn.init.normal_(param, std=0.1)
    if attention == "numpy":
        use_numpy_dropout(model, seed=(0, 0))
    else:
        model.set_attn_implementation(attention)
    return model.eval()  # no dropout: both paths must agree exactly


def _examples() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(5, 100, (n,), generator=generator) for n in LENGTHS]


def _padded(examples: list[torch.Tensor], labels: torch.Tensor) -> Batch:
    ids = torch.nn.utils.rnn.pad_sequence(examples, batch_first=True, padding_value=0)
    mask = (torch.arange(ids.shape[1])[None] < torch.tensor(LENGTHS)[:, None]).long()
    return Batch(labels, tokens={"input_ids": ids, "attention_mask": mask}, attention_mask=mask)


def _packed(examples: list[torch.Tensor], labels: torch.Tensor) -> Batch:
    packing = Packing.first_fit(LENGTHS)
    return Batch(labels, tokens={"input_ids": packing.pack(examples)}, packing=packing,
                 positions=packing.positions(), segments=packing.segments())


def _logits_and_gradients(model, run) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return logits_and_gradients(model, run, torch.tensor([0, 1] * 3 + [0]))


@pytest.mark.parametrize("attention", ["sdpa", "eager", "numpy"])
@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert"])
def test_the_cut_last_block_gives_the_models_logits_and_gradients(architecture, attention):
    model = _model(architecture, attention)
    staged = StagedForward(model, build_layer_map(model))
    examples, labels = _examples(), torch.tensor([0, 1] * 3 + [0])
    padded = _padded(examples, labels)
    reference, expected = _logits_and_gradients(model, lambda: model(**padded.tokens).logits)
    assert computes_first_token_only(model)
    for batch in (padded, _packed(examples, labels)):
        assert_same_logits_and_gradients(
            _logits_and_gradients(model, lambda batch=batch: forward_logits(staged, batch, 0)),
            (reference, expected))


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_lora_in_the_cut_block_trains_as_in_the_whole_one(architecture):
    model = _model(architecture, "sdpa", lora=True)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    staged = StagedForward(model, build_layer_map(model))
    examples, labels = _examples(), torch.tensor([0, 1] * 3 + [0])
    padded = _padded(examples, labels)
    reference, expected = _logits_and_gradients(model, lambda: model(**padded.tokens).logits)
    logits, gradients = _logits_and_gradients(
        model, lambda: forward_logits(staged, _packed(examples, labels), 1))
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-6)
    assert gradients.keys() == expected.keys() and len(gradients) > 0
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert"])
def test_the_last_feed_forward_sees_one_position_per_example_and_keys_see_all(architecture):
    model = _model(architecture, "sdpa")
    staged = StagedForward(model, build_layer_map(model))
    seen: dict[str, list[tuple[int, ...]]] = {"ffn": [], "key": []}
    last = staged.blocks[-1]
    last.get_submodule(FEED_FORWARD[architecture]).register_forward_hook(
        lambda module, args, out: seen["ffn"].append(tuple(args[0].shape)))
    last.get_submodule(KEY[architecture]).register_forward_hook(
        lambda module, args, out: seen["key"].append(tuple(args[0].shape)))
    batch = _packed(_examples(), torch.zeros(len(LENGTHS), dtype=torch.long))
    with torch.no_grad():
        forward_logits(staged, batch, 0)
    rows, width = batch.segments.shape
    assert seen == {"ffn": [(len(LENGTHS), 1, 32)], "key": [(rows, width, 32)]}


def test_an_attention_the_cut_does_not_know_runs_the_last_block_whole(monkeypatch):
    # SDPA under another name: an attention function whose mask format the cut cannot assume
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "other",
                        ALL_ATTENTION_FUNCTIONS["sdpa"])
    monkeypatch.setitem(ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, "other",
                        ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model = _model("bert", "other")
    assert not computes_first_token_only(model)
    staged = StagedForward(model, build_layer_map(model))
    seen = []
    staged.blocks[-1].intermediate.dense.register_forward_hook(
        lambda module, args, out: seen.append(tuple(args[0].shape)))
    examples, labels = _examples(), torch.tensor([0, 1] * 3 + [0])
    batch = _packed(examples, labels)
    with torch.no_grad():
        reference = model(**_padded(examples, labels).tokens).logits
        torch.testing.assert_close(forward_logits(staged, batch, 0), reference,
                                   rtol=1e-5, atol=1e-6)
    assert seen[-1] == (*batch.segments.shape, 32)


def test_first_tokens_cut_a_packed_mask_to_each_examples_query_row():
    packing = Packing.first_fit([3, 2, 4, 1])
    segments = packing.segments()
    mask = segments[:, None, :, None] == segments[:, None, None, :]
    first = packing.readout(torch.device("cpu"))
    cut = first.mask_rows(mask)
    assert cut.shape == (4, 1, 1, packing.width)
    for example, length in enumerate(packing.lengths):
        row = cut[example, 0, 0]
        assert int(row.sum()) == length
        start = int(packing.starts[example])
        assert row[start: start + length].all()
    padded = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    assert TokenReadout().mask_rows(padded).shape == (2, 1, 1, 5)
    assert TokenReadout().mask_rows(None) is None

