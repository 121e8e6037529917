"""A fine-tuned model whose head reads another pooling than its architecture's own.

The stock ``*ForSequenceClassification`` forward reads its own token (BERT's first, through its
pooler); a model trained with ``mean`` pooling computes its logits from the mean of the last
hidden states instead. :class:`PooledClassifier` wraps the model and computes them as training
did, with the same staged forward (:class:`~freezebench.model.staged.StagedForward`), so a saved
``delta`` loads back (:func:`freezebench.load_finetuned`) and predicts as the run measured it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from freezebench.model.layer_map import build_layer_map
from freezebench.model.readout import padded_readout
from freezebench.model.staged import StagedForward


class PooledClassifier(nn.Module):
    """``model`` with the run's pooling: call it as the model (``input_ids``,
    ``attention_mask``, ``token_type_ids``; rows padded on the right); ``.logits`` as usual."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.config = model.config
        self._staged = StagedForward(model, build_layer_map(model))

    @property
    def pooling(self) -> str:
        return self._staged.pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tokens = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            tokens["token_type_ids"] = token_type_ids
        staged = self._staged
        hidden = staged.to_boundary(tokens, staged.num_boundaries,
                                    read=padded_readout(staged.pooling, attention_mask))
        return SequenceClassifierOutput(logits=staged.head(hidden))
