"""The last block computed at the one token of each example that the head reads.

Under ``cls`` or ``last`` pooling the classification head reads one position of the last hidden
states in each example (its first token, or a decoder's last real one:
:class:`~freezebench.model.readout.TokenReadout`). So the last block needs its keys and values at
every position, but its query, attention output and feed-forward layers only at those tokens: these
functions run a block that way, with the block's own modules, attention function and dropout, and
give the same outputs at those positions as the whole block, with a fraction of its arithmetic
(what remains per token is its key and value projections).
:class:`~freezebench.model.staged.StagedForward` uses them for the last block where the
architecture names one (``ArchitectureSpec.first_token_block``). Under ``mean`` pooling the head
reads every token, and the last block runs whole.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from freezebench.model.dropout import ATTENTION as NUMPY_DROPOUT_ATTENTION
from freezebench.model.families import BlockInputs
from freezebench.model.readout import TokenReadout

# attention implementations whose functions take a dense (or no) mask of shape [batch, 1, q, k]
DENSE_MASK_ATTENTION = ("eager", "sdpa", NUMPY_DROPOUT_ATTENTION)


def _attention_function(attention: nn.Module) -> Callable:
    """The function the module's own forward dispatches to (eager: its modeling file's)."""
    return ALL_ATTENTION_FUNCTIONS.get_interface(
        attention.config._attn_implementation,
        inspect.getmodule(type(attention)).eager_attention_forward)


def _attend_first_tokens(
    attention: nn.Module, query: nn.Module, key: nn.Module, value: nn.Module,
    hidden: torch.Tensor, mask: torch.Tensor | None, read: TokenReadout,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention of each example's first token over its row, with the module's own
    projections, attention function and dropout: ``(first-token states, attention output)``, both
    ``[examples, 1, hidden]``."""
    head_size = attention.attention_head_size

    def heads(states: torch.Tensor) -> torch.Tensor:
        return states.view(*states.shape[:2], -1, head_size).transpose(1, 2)

    queries = read.gather(hidden)
    keys = read.row_of_each(heads(key(hidden)))
    values = read.row_of_each(heads(value(hidden)))
    output, _ = _attention_function(attention)(
        attention, heads(query(queries)), keys, values, read.mask_rows(mask),
        dropout=attention.dropout.p if attention.training else 0.0, scaling=attention.scaling)
    return queries, output.reshape(len(queries), 1, -1)


def bert_first_token_block(block: nn.Module, hidden: torch.Tensor, inputs: BlockInputs,
                           read: TokenReadout) -> torch.Tensor:
    """``BertLayer`` (and RoBERTa's, ELECTRA's) at the first tokens only."""
    attention = block.attention.self
    queries, context = _attend_first_tokens(attention, attention.query, attention.key,
                                            attention.value, hidden, inputs.mask, read)
    return block.feed_forward_chunk(block.attention.output(context, queries))


def distilbert_first_token_block(block: nn.Module, hidden: torch.Tensor, inputs: BlockInputs,
                                 read: TokenReadout) -> torch.Tensor:
    """DistilBERT's ``TransformerBlock`` at the first tokens only."""
    attention = block.attention
    queries, context = _attend_first_tokens(attention, attention.q_lin, attention.k_lin,
                                            attention.v_lin, hidden, inputs.mask, read)
    attended = block.sa_layer_norm(attention.out_lin(context) + queries)
    return block.output_layer_norm(block.ffn(attended) + attended)


def rotary_last_token_block(block: nn.Module, hidden: torch.Tensor, inputs: BlockInputs,
                            read: TokenReadout) -> torch.Tensor:
    """A Llama-style decoder layer (Llama, Qwen2, Qwen3, Mistral) at the last real tokens only,
    the ones its head reads: keys and values (normalised per head, rotated to their positions)
    at every position, the query, attention output and MLP at those tokens alone."""
    attention = block.self_attn
    rotate = inspect.getmodule(type(attention)).apply_rotary_pos_emb
    cos, sin = (table.expand(len(hidden), -1, -1) for table in
                inputs.extras["position_embeddings"])
    normed = block.input_layernorm(hidden)
    queries = read.gather(normed)

    def heads(projection: nn.Module, norm: str | None, states: torch.Tensor) -> torch.Tensor:
        states = projection(states).view(*states.shape[:2], -1, attention.head_dim)
        if norm is not None and hasattr(attention, norm):  # Qwen3 normalises each head
            states = getattr(attention, norm)(states)
        return states.transpose(1, 2)

    query, _ = rotate(*(2 * [heads(attention.q_proj, "q_norm", queries)]),
                      read.gather(cos), read.gather(sin))
    _, keys = rotate(*(2 * [heads(attention.k_proj, "k_norm", normed)]), cos, sin)
    values = heads(attention.v_proj, None, normed)
    output, _ = _attention_function(attention)(
        attention, query, read.row_of_each(keys), read.row_of_each(values),
        read.mask_rows(inputs.mask),
        dropout=attention.attention_dropout if attention.training else 0.0,
        scaling=attention.scaling)
    attended = read.gather(hidden) + attention.o_proj(output.reshape(len(query), 1, -1))
    return attended + block.mlp(block.post_attention_layernorm(attended))


FirstTokenBlockFn = Callable[[nn.Module, torch.Tensor, BlockInputs, TokenReadout], torch.Tensor]
