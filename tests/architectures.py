"""Tiny random models of every mapped architecture beyond BERT, RoBERTa and DistilBERT, built
from configs in code (hidden size 32, 2-3 blocks), and an offline GPT-2-style BPE tokenizer."""

from __future__ import annotations

import torch
from transformers import (
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    MistralConfig,
    MistralForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForSequenceClassification,
    Qwen3Config,
    Qwen3ForSequenceClassification,
)

ENCODERS = ("electra", "deberta-v2", "modernbert")
DECODERS = ("gpt2", "llama", "qwen2", "qwen3", "mistral")
NEW_ARCHITECTURES = ENCODERS + DECODERS

_DECODER_SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
                  "num_attention_heads": 4, "num_key_value_heads": 2,
                  "max_position_embeddings": 128}


def build_new_model(architecture: str, vocab_size: int, pad_token_id: int = 0,
                    num_labels: int = 2):
    """A tiny randomly initialised model of ``architecture`` (one of NEW_ARCHITECTURES)."""
    torch.manual_seed(0)
    common = {"vocab_size": vocab_size, "num_labels": num_labels, "pad_token_id": pad_token_id}
    if architecture == "electra":  # embeddings narrower than the blocks, as ELECTRA-small's
        return ElectraForSequenceClassification(ElectraConfig(
            embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128, **common))
    if architecture == "deberta-v2":  # DeBERTa-v3's settings: relative positions in buckets
        return DebertaV2ForSequenceClassification(DebertaV2Config(
            hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128, relative_attention=True, position_buckets=8,
            norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
            position_biased_input=False, type_vocab_size=0, pooler_hidden_size=32, **common))
    if architecture == "modernbert":
        return ModernBertForSequenceClassification(ModernBertConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
            max_position_embeddings=128, global_attn_every_n_layers=2, local_attention=8,
            **common))
    if architecture == "gpt2":
        return GPT2ForSequenceClassification(GPT2Config(
            n_embd=32, n_layer=3, n_head=2, n_positions=128, **common))
    classes = {"llama": (LlamaConfig, LlamaForSequenceClassification),
               "qwen2": (Qwen2Config, Qwen2ForSequenceClassification),
               "qwen3": (Qwen3Config, Qwen3ForSequenceClassification),
               "mistral": (MistralConfig, MistralForSequenceClassification)}
    config_class, model_class = classes[architecture]
    extra = {"head_dim": 8} if architecture == "qwen3" else {}
    return model_class(config_class(**_DECODER_SIZES, **extra, **common))


def bpe_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` offline, GPT-2 style: an end-of-text
    token and no pad token (freezebench has to set one)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
        model_input_names=["input_ids", "attention_mask"])
    tokenizer.model_max_length = 128
    return tokenizer


def logits_and_gradients(model, run, labels: torch.Tensor
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The logits ``run()`` gives and every parameter gradient of their cross-entropy."""
    model.zero_grad(set_to_none=True)
    logits = run()
    torch.nn.functional.cross_entropy(logits, labels).backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters()
                             if p.grad is not None}


def assert_same_logits_and_gradients(
        got: tuple[torch.Tensor, dict[str, torch.Tensor]],
        expected: tuple[torch.Tensor, dict[str, torch.Tensor]]) -> None:
    """Logits to 1e-5 and the same parameters' gradients, each to 1e-4 (fp32)."""
    logits, gradients = got
    reference, reference_gradients = expected
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-6)
    assert gradients.keys() == reference_gradients.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, reference_gradients[name], rtol=1e-4, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
