"""The last block of an encoder computed at the first tokens alone.

The classification heads of the mapped architectures read one position of the last hidden states,
each example's first token. So the last block needs its keys and values at every position, but its
query, attention output and feed-forward layers only at the first tokens: these functions run a
block that way, with the block's own modules, attention function and dropout, and give the same
outputs at those positions as the whole block, with a fraction of its arithmetic (what remains
per token is its key and value projections). :class:`~freezebench.model.staged.StagedForward` uses
them for the last block where the architecture names one (``ArchitectureSpec.first_token_block``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from freezebench.model.dropout import ATTENTION as NUMPY_DROPOUT_ATTENTION

# attention implementations whose functions take a dense (or no) mask of shape [batch, 1, q, k]
DENSE_MASK_ATTENTION = ("eager", "sdpa", NUMPY_DROPOUT_ATTENTION)


@dataclass(frozen=True)
class FirstTokens:
    """Where the token a classification head reads sits in each example: its first token
    (encoders), or its last real one (decoders, whose heads read the last token; the name keeps
    the encoders' case).

    ``rows[i]``, ``starts[i]``: example ``i``'s row and that token's position there (packed rows
    hold several examples); ``None`` for padded rows, one example each, read at position 0.
    """

    rows: torch.Tensor | None = None
    starts: torch.Tensor | None = None

    def gather(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[examples, 1, ...]``: the first token of each example of ``hidden`` ``[rows, width,
        ...]``."""
        if self.rows is None:
            return hidden[:, :1]
        return hidden[self.rows, self.starts].unsqueeze(1)

    def row_of_each(self, states: torch.Tensor) -> torch.Tensor:
        """``states`` ``[rows, ...]`` repeated for each example of a row."""
        return states if self.rows is None else states[self.rows]

    def mask_rows(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """An attention mask ``[rows, 1, queries, keys]`` cut to the first tokens' queries."""
        if mask is None:
            return None
        if mask.shape[-2] == 1:  # one row for every query
            return self.row_of_each(mask)
        if self.rows is None:
            return mask[:, :, :1]
        return mask[self.rows, :, self.starts].unsqueeze(2)


def _attention_function(attention: nn.Module) -> Callable:
    """The function the module's own forward dispatches to (eager: its modeling file's)."""
    return ALL_ATTENTION_FUNCTIONS.get_interface(
        attention.config._attn_implementation,
        inspect.getmodule(type(attention)).eager_attention_forward)


def _attend_first_tokens(
    attention: nn.Module, query: nn.Module, key: nn.Module, value: nn.Module,
    hidden: torch.Tensor, mask: torch.Tensor | None, first: FirstTokens,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention of each example's first token over its row, with the module's own
    projections, attention function and dropout: ``(first-token states, attention output)``, both
    ``[examples, 1, hidden]``."""
    head_size = attention.attention_head_size

    def heads(states: torch.Tensor) -> torch.Tensor:
        return states.view(*states.shape[:2], -1, head_size).transpose(1, 2)

    queries = first.gather(hidden)
    keys = first.row_of_each(heads(key(hidden)))
    values = first.row_of_each(heads(value(hidden)))
    output, _ = _attention_function(attention)(
        attention, heads(query(queries)), keys, values, first.mask_rows(mask),
        dropout=attention.dropout.p if attention.training else 0.0, scaling=attention.scaling)
    return queries, output.reshape(len(queries), 1, -1)


def bert_first_token_block(block: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None,
                           first: FirstTokens) -> torch.Tensor:
    """``BertLayer`` (and RoBERTa's) at the first tokens only."""
    attention = block.attention.self
    queries, context = _attend_first_tokens(attention, attention.query, attention.key,
                                            attention.value, hidden, mask, first)
    return block.feed_forward_chunk(block.attention.output(context, queries))


def distilbert_first_token_block(block: nn.Module, hidden: torch.Tensor,
                                 mask: torch.Tensor | None, first: FirstTokens) -> torch.Tensor:
    """DistilBERT's ``TransformerBlock`` at the first tokens only."""
    attention = block.attention
    queries, context = _attend_first_tokens(attention, attention.q_lin, attention.k_lin,
                                            attention.v_lin, hidden, mask, first)
    attended = block.sa_layer_norm(attention.out_lin(context) + queries)
    return block.output_layer_norm(block.ffn(attended) + attended)


FirstTokenBlockFn = Callable[[nn.Module, torch.Tensor, Any, FirstTokens], torch.Tensor]
