"""How each family of architectures embeds its tokens, builds what its blocks take, and calls them.

:class:`~freezebench.model.staged.StagedForward` runs a model unit by unit; what differs between
families is gathered here, one small function per difference, and named by the family's
:class:`~freezebench.model.architectures.ArchitectureSpec`:

* the embeddings: one module (BERT), a module and a projection (ELECTRA), the word and position
  tables (GPT-2), or the word table alone (rotary decoders, whose positions enter each block);
* what every block takes besides the hidden states (:class:`BlockInputs`): the attention mask,
  and the rotary position embeddings of a decoder or DeBERTa's relative positions and their
  embeddings. They are computed once per batch, as the model's own forward computes them once;
* how a block is called (its keyword names, and whether it returns a tuple).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class BlockInputs:
    """What every block of one batch takes besides the hidden states."""

    mask: Any
    extras: dict[str, Any] = field(default_factory=dict)


def default_positions(hidden: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """``positions``, or ``0 .. width-1`` for every row (padded rows start each example at 0)."""
    if positions is not None:
        return positions
    return torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)


# --- embeddings: (model, tokens, positions) -> hidden; ``positions`` None means 0 .. width-1 ---

def embed_module(model: nn.Module, tokens: dict[str, torch.Tensor],
                 positions: torch.Tensor | None, *, embeddings: str, token_types: bool
                 ) -> torch.Tensor:
    """A BERT-style embeddings module (words, positions, token types, LayerNorm, dropout)."""
    kwargs: dict[str, Any] = {"input_ids": tokens["input_ids"]}
    if token_types and "token_type_ids" in tokens:
        kwargs["token_type_ids"] = tokens["token_type_ids"]
    if positions is not None:
        kwargs["position_ids"] = positions
    return model.get_submodule(embeddings)(**kwargs)


def embed_electra(model: nn.Module, tokens: dict[str, torch.Tensor],
                  positions: torch.Tensor | None) -> torch.Tensor:
    """ELECTRA's embeddings, projected to the hidden size where the two differ (ELECTRA-small)."""
    hidden = embed_module(model, tokens, positions, embeddings="electra.embeddings",
                          token_types=True)
    project = getattr(model.electra, "embeddings_project", None)
    return hidden if project is None else project(hidden)


def embed_deberta(model: nn.Module, tokens: dict[str, torch.Tensor],
                  positions: torch.Tensor | None) -> torch.Tensor:
    """DeBERTa-v2's embeddings, which zero the padding positions (packed rows pass no mask: their
    padding is never attended to, so its values do not matter)."""
    kwargs: dict[str, Any] = {"input_ids": tokens["input_ids"],
                              "token_type_ids": tokens.get("token_type_ids"),
                              "mask": tokens.get("attention_mask")}
    if positions is not None:
        kwargs["position_ids"] = positions
    return model.deberta.embeddings(**kwargs)


def embed_gpt2(model: nn.Module, tokens: dict[str, torch.Tensor],
               positions: torch.Tensor | None) -> torch.Tensor:
    """GPT-2's word and position tables, summed, then its embedding dropout."""
    backbone = model.transformer
    words = backbone.wte(tokens["input_ids"])
    return backbone.drop(words + backbone.wpe(default_positions(words, positions)))


def embed_rotary_decoder(model: nn.Module, tokens: dict[str, torch.Tensor],
                         positions: torch.Tensor | None) -> torch.Tensor:
    """Llama-style decoders embed words alone; positions enter each block as rotary
    embeddings (:func:`rotary_extras`)."""
    return model.model.embed_tokens(tokens["input_ids"])


# --- what the blocks take besides the mask: (model, hidden, positions) -> keyword arguments ---

def rotary_extras(model: nn.Module, hidden: torch.Tensor, positions: torch.Tensor | None
                  ) -> dict[str, Any]:
    """The rotary embeddings of each token's position within its example (Llama, Qwen,
    Mistral), computed once per batch as the model's forward does."""
    positions = default_positions(hidden, positions)
    return {"position_embeddings": model.model.rotary_emb(hidden, positions),
            "position_ids": positions}


def deberta_extras(model: nn.Module, hidden: torch.Tensor, positions: torch.Tensor | None
                   ) -> dict[str, Any]:
    """DeBERTa's relative positions (row index differences, bucketed) and their embeddings.

    A difference of row indices is the same within a packed example as in a padded row, and
    attention stays within an example, so packed rows need nothing else.
    """
    encoder = model.deberta.encoder
    return {"relative_pos": encoder.get_rel_pos(hidden),
            "rel_embeddings": encoder.get_rel_embedding()}


# --- the attention mask of DeBERTa, whose attention is its own code (not the shared one) ---

def deberta_mask(model: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
                 segments: torch.Tensor | None) -> torch.Tensor:
    """DeBERTa takes a 0/1 mask ``[rows, 1, queries, keys]``; packed rows: same example."""
    if segments is not None:
        return segments[:, None, :, None] == segments[:, None, None, :]
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    return model.deberta.encoder.get_attention_mask(attention_mask)


# --- calling a block: (block, hidden, inputs) -> hidden ---

def call_encoder_block(block: nn.Module, hidden: torch.Tensor, inputs: BlockInputs
                       ) -> torch.Tensor:
    """BERT, RoBERTa, ELECTRA, DistilBERT: ``block(hidden, mask)``."""
    return block(hidden, inputs.mask)


def call_deberta_block(block: nn.Module, hidden: torch.Tensor, inputs: BlockInputs
                       ) -> torch.Tensor:
    """``DebertaV2Layer`` returns ``(states, attention weights or None)``."""
    return block(hidden, inputs.mask, **inputs.extras)[0]


def call_decoder_block(block: nn.Module, hidden: torch.Tensor, inputs: BlockInputs
                       ) -> torch.Tensor:
    """GPT-2 and Llama-style decoder layers, without a key/value cache."""
    return block(hidden, attention_mask=inputs.mask, **inputs.extras)
