"""Dropout with numpy masks: nn.Dropout's distribution, SDPA's arithmetic, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from freezebench.model.dropout import ATTENTION, NumpyDropout, attention, drop, use_numpy_dropout
from freezebench.model.layer_map import build_layer_map
from freezebench.strategies import plan_for
from tests.conftest import build_tiny_model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masks_drop_at_rate_p_and_keep_the_mean(dtype):
    values = torch.ones(1_000_000, dtype=dtype)
    dropped = drop(values, 0.1, np.random.default_rng(0))
    assert dropped.dtype == dtype
    assert torch.unique(dropped.float()).tolist() == pytest.approx([0.0, 1 / 0.9], rel=1e-2)
    # 1M Bernoulli(0.1) draws: the share of zeros has a standard deviation of 3e-4
    assert (dropped == 0).float().mean().item() == pytest.approx(0.1, abs=2e-3)
    assert dropped.float().mean().item() == pytest.approx(1.0, abs=5e-3)


def test_the_gradient_is_masked_and_scaled_like_the_values():
    values = torch.randn(64, 32, requires_grad=True)
    dropped = drop(values, 0.25, np.random.default_rng(1))
    dropped.sum().backward()
    kept = dropped.detach() != 0
    assert torch.equal(values.grad[kept], torch.full_like(values.grad[kept], 1 / 0.75))
    assert torch.equal(values.grad[~kept], torch.zeros_like(values.grad[~kept]))


def test_a_module_in_eval_mode_or_at_p_zero_passes_values_through():
    values = torch.randn(8, 16)
    module = NumpyDropout(0.5, np.random.default_rng(2)).eval()
    assert module(values) is values
    assert NumpyDropout(0.0, np.random.default_rng(2)).train()(values) is values


def _packed_mask(rows: int, width: int) -> torch.Tensor:
    """[rows, 1, width, width]: two examples per row, attention kept within each."""
    segments = (torch.arange(width) >= width // 3).long().expand(rows, width)
    return (segments[:, :, None] == segments[:, None, :])[:, None]


@pytest.mark.parametrize("mask", ["none", "packed", "additive"])
def test_attention_computes_what_sdpa_computes(mask):
    torch.manual_seed(0)
    query, key, value = (torch.randn(3, 4, 10, 8) for _ in range(3))
    masks = {"none": None, "packed": _packed_mask(3, 10)}
    masks["additive"] = torch.where(_packed_mask(3, 10), 0.0, torch.finfo(torch.float32).min)
    module = nn.Module()
    module.dropout = NumpyDropout(1e-12, np.random.default_rng(3))  # keeps every weight
    module.is_causal = False
    ours, _ = attention(module, query, key, value, masks[mask], dropout=1e-12, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, query, key, value, masks[mask], dropout=0.0,
                                       scaling=0.3)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_causal_attention_is_left_to_sdpa():
    torch.manual_seed(1)
    query, key, value = (torch.randn(1, 2, 6, 4) for _ in range(3))
    module = nn.Module()
    module.dropout = NumpyDropout(1e-12, np.random.default_rng(3))
    module.is_causal = True
    ours, _ = attention(module, query, key, value, None, dropout=1e-12)
    causal = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True)
    torch.testing.assert_close(ours, causal.transpose(1, 2), rtol=1e-5, atol=1e-5)


def test_attention_drops_weights_at_rate_p():
    module = nn.Module()
    module.dropout = NumpyDropout(0.5, np.random.default_rng(4))
    module.is_causal = False
    # one key position holds all the weight, so each output row is its weight's dropout
    value = torch.ones(1, 1, 2000, 4)
    query, key = torch.zeros(1, 1, 2000, 4), torch.zeros(1, 1, 1, 4)
    out, _ = attention(module, query, key, value[:, :, :1], None, dropout=0.5, scaling=1.0)
    share_dropped = (out[..., 0] == 0).float().mean().item()
    assert share_dropped == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert"])
def test_a_swapped_model_gives_the_same_logits_in_eval_and_reproducible_ones_in_training(
        architecture):
    model = build_tiny_model(architecture, vocab_size=100)
    inputs = {"input_ids": torch.randint(1, 100, (4, 12)),
              "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    inputs["attention_mask"][0, 8:] = 0
    model.eval()
    with torch.no_grad():
        before = model(**inputs).logits
    swapped = use_numpy_dropout(model, seed=(5, 0))
    assert swapped > 0
    assert not any(type(m) is nn.Dropout for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, before, rtol=1e-5, atol=1e-6)

    def training_logits() -> torch.Tensor:
        fresh = build_tiny_model(architecture, vocab_size=100)
        use_numpy_dropout(fresh, seed=(5, 0))
        fresh.train()
        return fresh(**inputs).logits

    first, second = training_logits(), training_logits()
    assert torch.equal(first, second)
    assert not torch.allclose(first, before)  # dropout did fire


def test_lora_dropout_is_swapped_too():
    from peft import LoraConfig, inject_adapter_in_model

    model = build_tiny_model("bert", vocab_size=100)
    plan = plan_for("lora", {}, build_layer_map(model))
    model = inject_adapter_in_model(LoraConfig(**plan.lora), model)
    use_numpy_dropout(model, seed=(6, 0))
    lora_dropouts = [m for n, m in model.named_modules() if ".lora_dropout." in n]
    assert lora_dropouts and all(isinstance(m, NumpyDropout) for m in lora_dropouts)
    assert model.config._attn_implementation == ATTENTION
