"""The architecture table: where each architecture keeps its embeddings, blocks, pooler and head.

Adding an architecture means adding one :class:`ArchitectureSpec` to ``ARCHITECTURES`` (keyed by
``config.model_type``): where its backbone, embeddings, blocks, pooler and head live, which
projections LoRA targets, how the head turns the last hidden states into logits, which token the
head reads (the first, or a decoder's last), how the staged forward embeds tokens and calls the
blocks (:mod:`freezebench.model.families`), and (optional) how its last block computes the token
the head reads alone (:mod:`freezebench.model.first_token`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from freezebench.errors import ModelError
from freezebench.model import families
from freezebench.model.families import BlockInputs
from freezebench.model.first_token import (
    FirstTokenBlockFn,
    bert_first_token_block,
    distilbert_first_token_block,
    rotary_last_token_block,
)

HeadFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
EmbedFn = Callable[[nn.Module, dict[str, torch.Tensor], "torch.Tensor | None"], torch.Tensor]
ExtrasFn = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], dict[str, Any]]
MaskFn = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"], Any]
BlockFn = Callable[[nn.Module, torch.Tensor, BlockInputs], torch.Tensor]
# a reason the model cannot be mapped (a variant of the architecture), or None
CheckFn = Callable[[PretrainedConfig], "str | None"]


def _bert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    pooled = model.bert.pooler(hidden)
    return model.classifier(model.dropout(pooled))


def _bert_head_without_pooler(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """BERT's classifier straight on a mean-pooled vector: its pooler reads the first token and
    was trained (next-sentence prediction) for that; a mean-pooling checkpoint never used it."""
    return model.classifier(model.dropout(hidden[:, 0]))


def _classifier_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """RoBERTa's and ELECTRA's classification heads read the first token themselves."""
    return model.classifier(hidden)


def _distilbert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    pooled = torch.relu(model.pre_classifier(hidden[:, 0]))
    return model.classifier(model.dropout(pooled))


def _deberta_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return model.classifier(model.dropout(model.pooler(hidden)))


def _llama_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The final norm and the score of the token read (per position, so reading it first is
    the same as scoring every position and then reading, as the model's forward does)."""
    return model.score(model.model.norm(hidden[:, 0]))


def _gpt2_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return model.score(model.transformer.ln_f(hidden[:, 0]))


def _modernbert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    raise ModelError("ModernBERT runs whole (StagedForward.whole); it has no staged head.")


@dataclass(frozen=True)
class ArchitectureSpec:
    """Where the parts of one architecture's sequence-classification model live, and how the
    staged forward (:class:`~freezebench.model.staged.StagedForward`) runs them."""

    backbone: str
    # modules of the embeddings unit (those the model has); everything every block shares goes
    # here, so that a block above a cached prefix never changes what the prefix computed with
    embeddings: tuple[str, ...]
    blocks: str
    # pretrained modules between the last block and the new head (BERT's pooler, a decoder's
    # final norm); they read the token the head reads
    pooler: tuple[str, ...]
    head: tuple[str, ...]
    attention_projections: tuple[str, ...]
    all_projections: tuple[str, ...]
    head_fn: HeadFn
    uses_token_type_ids: bool = False
    # RoBERTa numbers positions from padding_idx + 1, so it embeds that many fewer tokens
    positions_after_padding: bool = False
    # a block computed at the first tokens alone (None: the last block runs whole), and the
    # projections that still act on every token there (parameter-name prefixes within a block)
    first_token_block: FirstTokenBlockFn | None = None
    key_value_projections: tuple[str, ...] = ()
    # which token of each example the own head reads: the first (encoders) or the last real one
    # (decoders' *ForSequenceClassification)
    pooling: Literal["cls", "last"] = "cls"
    # the head on a mean-pooled vector, where it is not head_fn: it skips the pretrained pooler
    # (BERT's first-token pooler), whose parameters then belong to no unit that runs. None: the
    # head (and a decoder's final norm) reads the mean as it reads one token
    mean_head_fn: HeadFn | None = None
    causal: bool = False
    embed_fn: EmbedFn | None = None        # None: the one embeddings module, BERT-style
    extras_fn: ExtrasFn | None = None      # keyword arguments every block takes
    mask_fn: MaskFn | None = None          # None: the shared (transformers) mask functions
    block_fn: BlockFn = families.call_encoder_block
    # False: the model runs whole, from tokens, every batch (no frozen-prefix cache, no
    # packing); strategies still choose what trains
    staged: bool = True
    packs: bool = True
    check: CheckFn | None = None
    note: str = ""
    # a block's matrices that read its input (query, key, value), when they are not the first
    # three of all_projections: a fused one (GPT-2's c_attn)
    fused_input_projection: str | None = None

    def input_projections(self) -> tuple[str, ...]:
        """Name fragments of a block's query, key and value projections (FLOP counting)."""
        if self.fused_input_projection:
            return (self.fused_input_projection,)
        return self.all_projections[:3]


_ROBERTA = ArchitectureSpec(
    backbone="roberta",
    embeddings=("roberta.embeddings",),
    blocks="roberta.encoder.layer",
    pooler=(),
    head=("classifier",),
    attention_projections=("query", "value"),
    all_projections=("query", "key", "value", "attention.output.dense"),
    head_fn=_classifier_head,
    positions_after_padding=True,
    first_token_block=bert_first_token_block,
    key_value_projections=("attention.self.key.", "attention.self.value."),
)


def _deberta_check(config: PretrainedConfig) -> str | None:
    if getattr(config, "conv_kernel_size", 0) > 0:
        return ("its first block is followed by a convolution over neighbouring tokens "
                "(conv_kernel_size > 0, as in deberta-v2-xlarge), which freezebench does not "
                "stage; DeBERTa-v3 and deberta-v2 models without it are mapped")
    return None


def _decoder(backbone: str) -> ArchitectureSpec:
    """Llama and the decoders built like it (Qwen2, Qwen3, Mistral): RMSNorm blocks with rotary
    position embeddings, a final norm, and a score read at the last real token."""
    return ArchitectureSpec(
        backbone=backbone,
        embeddings=("model.embed_tokens",),
        blocks="model.layers",
        pooler=("model.norm",),
        head=("score",),
        attention_projections=("q_proj", "v_proj"),
        all_projections=("q_proj", "k_proj", "v_proj", "o_proj"),
        head_fn=_llama_head,
        pooling="last",
        causal=True,
        embed_fn=families.embed_rotary_decoder,
        extras_fn=families.rotary_extras,
        block_fn=families.call_decoder_block,
        first_token_block=rotary_last_token_block,  # at the last real tokens
        key_value_projections=("self_attn.k_proj.", "self_attn.v_proj."),
        note="causal, rotary",
    )


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "bert": ArchitectureSpec(
        backbone="bert",
        embeddings=("bert.embeddings",),
        blocks="bert.encoder.layer",
        pooler=("bert.pooler",),
        head=("dropout", "classifier"),
        attention_projections=("query", "value"),
        all_projections=("query", "key", "value", "attention.output.dense"),
        head_fn=_bert_head,
        mean_head_fn=_bert_head_without_pooler,
        uses_token_type_ids=True,
        first_token_block=bert_first_token_block,
        key_value_projections=("attention.self.key.", "attention.self.value."),
    ),
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "distilbert": ArchitectureSpec(
        backbone="distilbert",
        embeddings=("distilbert.embeddings",),
        blocks="distilbert.transformer.layer",
        pooler=(),
        head=("pre_classifier", "dropout", "classifier"),
        attention_projections=("q_lin", "v_lin"),
        all_projections=("q_lin", "k_lin", "v_lin", "out_lin"),
        head_fn=_distilbert_head,
        first_token_block=distilbert_first_token_block,
        key_value_projections=("attention.k_lin.", "attention.v_lin."),
    ),
    "electra": ArchitectureSpec(
        backbone="electra",
        embeddings=("electra.embeddings", "electra.embeddings_project"),
        blocks="electra.encoder.layer",
        pooler=(),
        head=("classifier",),
        attention_projections=("query", "value"),
        all_projections=("query", "key", "value", "attention.output.dense"),
        head_fn=_classifier_head,
        uses_token_type_ids=True,
        first_token_block=bert_first_token_block,  # ElectraLayer is BertLayer
        key_value_projections=("attention.self.key.", "attention.self.value."),
        embed_fn=families.embed_electra,
    ),
    # DeBERTa-v2 and v3 (model_type deberta-v2). Every block reads the relative-position
    # embeddings the encoder keeps (and normalises) once for all blocks: they belong to the
    # embeddings unit, so a trainable copy of them means no frozen prefix. Its attention is
    # its own code, so the last block runs whole (no first-token cut).
    "deberta-v2": ArchitectureSpec(
        backbone="deberta",
        embeddings=("deberta.embeddings", "deberta.encoder.rel_embeddings",
                    "deberta.encoder.LayerNorm"),
        blocks="deberta.encoder.layer",
        pooler=(),
        # the context pooler is new (the checkpoints have none), so it trains with the head
        head=("pooler", "dropout", "classifier"),
        attention_projections=("query_proj", "value_proj"),
        all_projections=("query_proj", "key_proj", "value_proj", "attention.output.dense"),
        head_fn=_deberta_head,
        uses_token_type_ids=True,
        embed_fn=families.embed_deberta,
        extras_fn=families.deberta_extras,
        mask_fn=families.deberta_mask,
        block_fn=families.call_deberta_block,
        check=_deberta_check,
        note="relative positions",
    ),
    "gpt2": ArchitectureSpec(
        backbone="transformer",
        # the embedding dropout too: a frozen prefix runs it in inference mode
        embeddings=("transformer.wte", "transformer.wpe", "transformer.drop"),
        blocks="transformer.h",
        pooler=("transformer.ln_f",),
        head=("score",),
        # GPT-2 projects queries, keys and values in one matrix
        attention_projections=("c_attn",),
        all_projections=("c_attn", "attn.c_proj"),
        head_fn=_gpt2_head,
        pooling="last",
        causal=True,
        embed_fn=families.embed_gpt2,
        block_fn=families.call_decoder_block,
        fused_input_projection="c_attn",
        note="causal",
    ),
    "llama": _decoder("model"),
    "mistral": _decoder("model"),
    "qwen2": _decoder("model"),
    "qwen3": _decoder("model"),
    # ModernBERT runs whole: its layers alternate sliding-window and global attention, each
    # with rotary embeddings of its own base and a mask of its own, and its head mean-pools
    # every token by default; staging it would need all of that per block type, and the head's
    # mean reads every position, so neither a cut last block nor a cache of the top applies.
    # It is mapped so that the strategies choose what trains; it computes every unit each step.
    "modernbert": ArchitectureSpec(
        backbone="model",
        embeddings=("model.embeddings",),
        blocks="model.layers",
        pooler=("model.final_norm", "head"),
        head=("drop", "classifier"),
        attention_projections=("Wqkv",),
        all_projections=("Wqkv", "Wo"),
        head_fn=_modernbert_head,
        staged=False,
        packs=False,
        fused_input_projection="Wqkv",
        note="runs whole",
    ),
}


def describe_architectures() -> list[dict[str, Any]]:
    """What each mapped architecture supports, for ``freezebench ls architectures``."""
    return [{"model_type": model_type, "staged": spec.staged,
             "cut_last_block": spec.first_token_block is not None,
             "packing": spec.packs,
             "pooling": spec.pooling if spec.staged else "classifier_pooling",
             "lora_targets": list(spec.attention_projections),
             "lora_targets_all": list(spec.all_projections), "note": spec.note}
            for model_type, spec in ARCHITECTURES.items()]


def architecture_of(model: PreTrainedModel) -> tuple[str, ArchitectureSpec]:
    model_type = getattr(model.config, "model_type", None) or ""
    if model_type not in ARCHITECTURES:
        raise unknown_architecture(model_type)
    spec = ARCHITECTURES[model_type]
    reason = spec.check(model.config) if spec.check else None
    if reason:
        raise ModelError(f"This '{model_type}' model cannot be mapped: {reason}.")
    return model_type, spec


def unknown_architecture(model_type: str) -> ModelError:
    return ModelError(
            f"Architecture '{model_type}' has no layer map. Known: "
            f"{', '.join(sorted(ARCHITECTURES))}. To add it, add an ArchitectureSpec for "
            f"'{model_type}' to freezebench.model.architectures.ARCHITECTURES naming its "
            "embeddings, encoder blocks, pooler and classification head (see README, 'Adding an "
            "architecture')."
    )
