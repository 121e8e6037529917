"""The model's forward pass cut at unit boundaries, so frozen prefixes run (or are read) apart.

The heads read each example's first token alone, so :class:`StagedForward` runs the last block at
those positions only where the architecture says how (``first_token_block``, see
:mod:`freezebench.model.first_token`): the same logits and gradients with far less arithmetic.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.masking_utils import (
    ALL_MASK_ATTENTION_FUNCTIONS,
    create_bidirectional_mask,
    packed_sequence_mask_function,
)

from freezebench.model.architectures import architecture_of
from freezebench.model.first_token import DENSE_MASK_ATTENTION, FirstTokens
from freezebench.model.layer_map import LayerMap


def computes_first_token_only(model: PreTrainedModel) -> bool:
    """Whether :class:`StagedForward` runs ``model``'s last block at the first tokens alone: its
    architecture says how, its attention takes a dense mask, and it is an encoder."""
    _, spec = architecture_of(model)
    config = model.config
    return (spec.first_token_block is not None
            and config._attn_implementation in DENSE_MASK_ATTENTION
            and not getattr(config, "is_decoder", False))


class StagedForward:
    """The model's forward pass cut at unit boundaries.

    Boundary ``b`` is the hidden state after the first ``b`` units of the backbone: ``b = 0`` is the
    input, ``b = 1`` the embeddings' output, ``b = 1 + i`` the output of block ``i - 1``. Frozen
    prefixes run up to a boundary without autograd, and the frozen-prefix cache stores the states at
    one. Composing all stages gives exactly ``model(**batch).logits``.

    Rows hold one example each (padded, with a padding mask) or several (packed: ``positions``
    restart at each example and ``segments`` keep attention within it). The head reads each
    example's first token only, so the last block can compute those alone (:meth:`run_blocks`).
    """

    def __init__(self, model: PreTrainedModel, layer_map: LayerMap):
        self.model = model
        self.spec = layer_map.spec
        self.embeddings = model.get_submodule(self.spec.embeddings)
        self.blocks = list(model.get_submodule(self.spec.blocks))
        self.num_boundaries = len(self.blocks) + 1
        # the position id of an example's first token (RoBERTa counts from padding_idx + 1)
        self.first_position = ((model.config.pad_token_id or 0) + 1
                               if self.spec.positions_after_padding else 0)

    def embed(self, batch: dict[str, torch.Tensor], positions: torch.Tensor | None = None
              ) -> torch.Tensor:
        """The embeddings' output; ``positions`` counts each token's place in its example."""
        kwargs: dict[str, Any] = {"input_ids": batch["input_ids"]}
        if self.spec.uses_token_type_ids and "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        if positions is not None:
            kwargs["position_ids"] = positions + self.first_position
        return self.embeddings(**kwargs)

    def block_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
                   segments: torch.Tensor | None = None) -> Any:
        """The attention mask the blocks take, in the format of the model's attention code.

        ``attention_mask`` is the usual padding mask; ``segments`` (packed rows) gives the example
        of each position, and attention stays within an example.
        """
        config = self.model.config
        if segments is None:
            return create_bidirectional_mask(
                config=config, inputs_embeds=hidden, attention_mask=attention_mask)
        if config._attn_implementation not in DENSE_MASK_ATTENTION:
            return create_bidirectional_mask(
                config=config, inputs_embeds=hidden, attention_mask=None,
                and_mask_function=packed_sequence_mask_function(segments))
        # The packed mask compares segment ids by index, so it broadcasts over (row, head, query,
        # key) in one operation; create_bidirectional_mask would vmap it element by element for
        # any extra mask function, a visible share of a CPU training step.
        rows, width = segments.shape
        return ALL_MASK_ATTENTION_FUNCTIONS[config._attn_implementation](
            batch_size=rows, q_length=width, kv_length=width,
            mask_function=packed_sequence_mask_function(segments), attention_mask=None,
            allow_is_causal_skip=False, allow_is_bidirectional_skip=False, dtype=hidden.dtype,
            config=config, use_vmap=False, device=hidden.device)

    def run_blocks(self, hidden: torch.Tensor, mask: Any, start: int, stop: int,
                   first: FirstTokens | None = None) -> torch.Tensor:
        """Run blocks ``start .. stop-1`` (block indices) on ``hidden`` (``mask``: block_mask).

        With ``first``, the model's last block, when it is among them, computes the first tokens
        alone (:meth:`last_block_at`): the result is then ``[examples, 1, hidden]``.
        """
        last = len(self.blocks) - 1
        for index in range(start, stop):
            if first is not None and index == last:
                return self.last_block_at(hidden, mask, first)
            hidden = self.blocks[index](hidden, mask)
        return hidden

    def last_block_at(self, hidden: torch.Tensor, mask: Any, first: FirstTokens) -> torch.Tensor:
        """The last block's output at the first tokens, ``[examples, 1, hidden]``: its keys and
        values at every position, the rest at the first tokens only where the architecture allows
        (:func:`computes_first_token_only`), else the whole block and then the first tokens."""
        block = self.blocks[-1]
        if not computes_first_token_only(self.model):
            return first.gather(block(hidden, mask))
        assert self.spec.first_token_block is not None
        return self.spec.first_token_block(block, hidden, mask, first)

    def to_boundary(
        self, batch: dict[str, torch.Tensor], boundary: int, hidden: torch.Tensor | None = None,
        from_boundary: int = 0, first: FirstTokens | None = None,
    ) -> torch.Tensor:
        """Hidden states at ``boundary`` of a padded batch, from the input or from ``hidden`` at
        ``from_boundary`` (``first``: see :meth:`run_blocks`)."""
        if from_boundary == 0:
            hidden = self.embed(batch)
            from_boundary = 1
        assert hidden is not None
        mask = self.block_mask(hidden, batch["attention_mask"])
        return self.run_blocks(hidden, mask, from_boundary - 1, boundary - 1, first)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the last hidden states (pooler included); only position 0 is read."""
        return self.spec.head_fn(self.model, hidden)
