"""The model's forward pass cut at unit boundaries, so frozen prefixes run (or are read) apart.

The head reads what the run's pooling says (:mod:`freezebench.model.pooling`): one token of each
example (an encoder's first, a decoder's last real one), or the mean over its tokens
(:mod:`freezebench.model.readout`). Reading one token, :class:`StagedForward` runs the last block
at those positions only where the architecture says how (``first_token_block``, see
:mod:`freezebench.model.first_token`): the same logits and gradients with far less arithmetic.
What differs between architectures (embeddings, what the blocks take, how they are called) comes
from the architecture's spec (:mod:`freezebench.model.families`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.masking_utils import (
    ALL_MASK_ATTENTION_FUNCTIONS,
    and_masks,
    causal_mask_function,
    create_bidirectional_mask,
    create_causal_mask,
    packed_sequence_mask_function,
)

from freezebench.errors import ModelError
from freezebench.model.architectures import architecture_of
from freezebench.model.families import BlockInputs, embed_module
from freezebench.model.first_token import DENSE_MASK_ATTENTION
from freezebench.model.layer_map import LayerMap, present, skips_pooler
from freezebench.model.pooling import pooling_of
from freezebench.model.readout import Readout, TokenReadout

# No key-value cache: transformers 5.4 names it `past_key_values` (a required keyword), later
# versions `cache`; the floor (pyproject.toml) is 5.4
_NO_KV_CACHE = ({"cache": None}
                if "cache" in inspect.signature(create_causal_mask).parameters
                else {"past_key_values": None})


def computes_first_token_only(model: PreTrainedModel) -> bool:
    """Whether :class:`StagedForward` runs ``model``'s last block at the tokens the head reads
    alone: the head reads one token (not a mean), the architecture says how, its attention takes
    a dense mask, and it is not a BERT-style decoder."""
    _, spec = architecture_of(model)
    config = model.config
    return (spec.first_token_block is not None
            and pooling_of(model) != "mean"
            and config._attn_implementation in DENSE_MASK_ATTENTION
            and not getattr(config, "is_decoder", False))


class StagedForward:
    """The model's forward pass cut at unit boundaries.

    Boundary ``b`` is the hidden state after the first ``b`` units of the backbone: ``b = 0`` is the
    input, ``b = 1`` the embeddings' output, ``b = 1 + i`` the output of block ``i - 1``. Frozen
    prefixes run up to a boundary without autograd, and the frozen-prefix cache stores the states at
    one. Composing all stages gives exactly ``model(**batch).logits``.

    Rows hold one example each (padded on the right, with a padding mask) or several (packed:
    ``positions`` restart at each example and ``segments`` keep attention within it). The head
    reads one token of each example, or their mean (:attr:`pooling`); reading one token, the last
    block can compute those alone (:meth:`run_blocks`). An architecture that is not ``staged``
    runs whole (:meth:`whole`).
    """

    def __init__(self, model: PreTrainedModel, layer_map: LayerMap):
        self.model = model
        self.spec = layer_map.spec
        self.embedding_modules = present(model, self.spec.embeddings)
        self.blocks = list(model.get_submodule(self.spec.blocks))
        self.num_boundaries = len(self.blocks) + 1
        # the position id of an example's first token (RoBERTa counts from padding_idx + 1)
        self.first_position = ((model.config.pad_token_id or 0) + 1
                               if self.spec.positions_after_padding else 0)
        self.pooling = pooling_of(model)
        self.head_fn = (self.spec.mean_head_fn if skips_pooler(model) else self.spec.head_fn)

    @property
    def staged(self) -> bool:
        """Whether the model runs unit by unit (frozen prefix apart, cacheable); else whole."""
        return self.spec.staged

    @property
    def packs(self) -> bool:
        """Whether batches may share rows between examples and still compute each exactly."""
        return self.spec.packs

    def whole(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's own forward on a padded batch (architectures that are not staged)."""
        return self.model(input_ids=tokens["input_ids"],
                          attention_mask=tokens["attention_mask"]).logits

    def embed(self, batch: dict[str, torch.Tensor], positions: torch.Tensor | None = None
              ) -> torch.Tensor:
        """The embeddings' output; ``positions`` counts each token's place in its example."""
        if positions is not None:
            positions = positions + self.first_position
        if self.spec.embed_fn is not None:
            return self.spec.embed_fn(self.model, batch, positions)
        return embed_module(self.model, batch, positions, embeddings=self.spec.embeddings[0],
                            token_types=self.spec.uses_token_type_ids)

    def block_inputs(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
                     segments: torch.Tensor | None = None,
                     positions: torch.Tensor | None = None) -> BlockInputs:
        """What every block takes besides ``hidden``: the mask (:meth:`block_mask`) and, for
        some architectures, position embeddings computed once per batch."""
        extras = (self.spec.extras_fn(self.model, hidden, positions) if self.spec.extras_fn
                  else {})
        return BlockInputs(self.block_mask(hidden, attention_mask, segments), extras)

    def block_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
                   segments: torch.Tensor | None = None) -> Any:
        """The attention mask the blocks take, in the format of the model's attention code.

        ``attention_mask`` is the usual padding mask; ``segments`` (packed rows) gives the example
        of each position, and attention stays within an example (and, in a decoder, looks back).
        """
        if self.spec.mask_fn is not None:
            return self.spec.mask_fn(self.model, hidden, attention_mask, segments)
        config = self.model.config
        if self.spec.causal:
            self._check_window(hidden.shape[1])
        if segments is None:
            if self.spec.causal:
                return create_causal_mask(config=config, inputs_embeds=hidden,
                                          attention_mask=attention_mask, **_NO_KV_CACHE)
            return create_bidirectional_mask(
                config=config, inputs_embeds=hidden, attention_mask=attention_mask)
        within = packed_sequence_mask_function(segments)
        if self.spec.causal:
            within = and_masks(causal_mask_function, within)
        if config._attn_implementation not in DENSE_MASK_ATTENTION:
            create = create_causal_mask if self.spec.causal else create_bidirectional_mask
            extra = _NO_KV_CACHE if self.spec.causal else {}
            return create(config=config, inputs_embeds=hidden, attention_mask=None,
                          and_mask_function=packed_sequence_mask_function(segments), **extra)
        # The packed mask compares segment ids by index, so it broadcasts over (row, head, query,
        # key) in one operation; create_bidirectional_mask would vmap it element by element for
        # any extra mask function, a visible share of a CPU training step.
        rows, width = segments.shape
        return ALL_MASK_ATTENTION_FUNCTIONS[config._attn_implementation](
            batch_size=rows, q_length=width, kv_length=width, mask_function=within,
            attention_mask=None, allow_is_causal_skip=False, allow_is_bidirectional_skip=False,
            dtype=hidden.dtype, config=config, use_vmap=False, device=hidden.device)

    def _check_window(self, width: int) -> None:
        """Sliding-window attention is plain causal attention over rows no wider than the
        window; wider rows would need the window in the mask, which is not staged."""
        window = getattr(self.model.config, "sliding_window", None)
        if window is not None and width > window:
            raise ModelError(
                f"Sequences of {width} tokens are longer than this model's sliding attention "
                f"window ({window}); freezebench stages such models only up to the window. "
                f"Use --max-length {window} or less.")

    def run_blocks(self, hidden: torch.Tensor, inputs: BlockInputs, start: int, stop: int,
                   read: Readout | None = None) -> torch.Tensor:
        """Run blocks ``start .. stop-1`` (block indices) on ``hidden`` (``inputs``:
        :meth:`block_inputs`).

        With ``read``, the model's last block, when it is among them, gives what the head reads
        (:meth:`last_block_at`): the result is then ``[examples, 1, hidden]``.
        """
        last = len(self.blocks) - 1
        for index in range(start, stop):
            if read is not None and index == last:
                return self.last_block_at(hidden, inputs, read)
            hidden = self.spec.block_fn(self.blocks[index], hidden, inputs)
        return hidden

    def last_block_at(self, hidden: torch.Tensor, inputs: BlockInputs, read: Readout
                      ) -> torch.Tensor:
        """What the head reads of the last block's output, ``[examples, 1, hidden]``. Reading one
        token where the architecture allows (:func:`computes_first_token_only`): the keys and
        values at every position, the rest at those tokens only. Else (a mean, or no cut): the
        whole block, then pooled."""
        block = self.blocks[-1]
        if not (isinstance(read, TokenReadout) and computes_first_token_only(self.model)):
            return read.pool(self.spec.block_fn(block, hidden, inputs))
        assert self.spec.first_token_block is not None
        return self.spec.first_token_block(block, hidden, inputs, read)

    def to_boundary(
        self, batch: dict[str, torch.Tensor], boundary: int, hidden: torch.Tensor | None = None,
        from_boundary: int = 0, read: Readout | None = None,
    ) -> torch.Tensor:
        """Hidden states at ``boundary`` of a padded batch, from the input or from ``hidden`` at
        ``from_boundary`` (``read``: see :meth:`run_blocks`)."""
        if from_boundary == 0:
            hidden = self.embed(batch)
            from_boundary = 1
        assert hidden is not None
        inputs = self.block_inputs(hidden, batch["attention_mask"])
        return self.run_blocks(hidden, inputs, from_boundary - 1, boundary - 1, read)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from what the head reads, ``[examples, 1, hidden]`` (:meth:`last_block_at`;
        the pooler included where the pooling uses it)."""
        return self.head_fn(self.model, hidden)
