"""The architecture table: where each architecture keeps its embeddings, blocks, pooler and head.

Adding an architecture means adding one :class:`ArchitectureSpec` to ``ARCHITECTURES`` (keyed by
``config.model_type``): where its backbone, embeddings, blocks, pooler and head live, which
projections LoRA targets, how the head turns the last hidden states into logits, and (optional) how
its last block computes the first token alone (:mod:`freezebench.model.first_token`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from freezebench.errors import ModelError
from freezebench.model.first_token import (
    FirstTokenBlockFn,
    bert_first_token_block,
    distilbert_first_token_block,
)

HeadFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _bert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    pooled = model.bert.pooler(hidden)
    return model.classifier(model.dropout(pooled))


def _roberta_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return model.classifier(hidden)


def _distilbert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    pooled = torch.relu(model.pre_classifier(hidden[:, 0]))
    return model.classifier(model.dropout(pooled))


@dataclass(frozen=True)
class ArchitectureSpec:
    """Where the parts of one architecture's sequence-classification model live."""

    backbone: str
    embeddings: str
    blocks: str
    pooler: str | None
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


_ROBERTA = ArchitectureSpec(
    backbone="roberta",
    embeddings="roberta.embeddings",
    blocks="roberta.encoder.layer",
    pooler=None,
    head=("classifier",),
    attention_projections=("query", "value"),
    all_projections=("query", "key", "value", "attention.output.dense"),
    head_fn=_roberta_head,
    positions_after_padding=True,
    first_token_block=bert_first_token_block,
    key_value_projections=("attention.self.key.", "attention.self.value."),
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "bert": ArchitectureSpec(
        backbone="bert",
        embeddings="bert.embeddings",
        blocks="bert.encoder.layer",
        pooler="bert.pooler",
        head=("dropout", "classifier"),
        attention_projections=("query", "value"),
        all_projections=("query", "key", "value", "attention.output.dense"),
        head_fn=_bert_head,
        uses_token_type_ids=True,
        first_token_block=bert_first_token_block,
        key_value_projections=("attention.self.key.", "attention.self.value."),
    ),
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "distilbert": ArchitectureSpec(
        backbone="distilbert",
        embeddings="distilbert.embeddings",
        blocks="distilbert.transformer.layer",
        pooler=None,
        head=("pre_classifier", "dropout", "classifier"),
        attention_projections=("q_lin", "v_lin"),
        all_projections=("q_lin", "k_lin", "v_lin", "out_lin"),
        head_fn=_distilbert_head,
        first_token_block=distilbert_first_token_block,
        key_value_projections=("attention.k_lin.", "attention.v_lin."),
    ),
}


def architecture_of(model: PreTrainedModel) -> tuple[str, ArchitectureSpec]:
    model_type = getattr(model.config, "model_type", None) or ""
    if model_type not in ARCHITECTURES:
        raise unknown_architecture(model_type)
    return model_type, ARCHITECTURES[model_type]


def unknown_architecture(model_type: str) -> ModelError:
    return ModelError(
            f"Architecture '{model_type}' has no layer map. Known: "
            f"{', '.join(sorted(ARCHITECTURES))}. To add it, add an ArchitectureSpec for "
            f"'{model_type}' to freezebench.model.architectures.ARCHITECTURES naming its "
            "embeddings, encoder blocks, pooler and classification head (see README, 'Adding an "
            "architecture')."
    )
