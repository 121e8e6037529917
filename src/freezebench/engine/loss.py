"""The task's loss, as ``*ForSequenceClassification`` computes it for its ``problem_type``."""

from __future__ import annotations

import torch
from torch import nn


def task_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
              ) -> torch.Tensor:
    """Cross-entropy over the classes for class ids; for float scores (a regression, one output)
    the squared error of the single logit, as transformers' ``problem_type="regression"``."""
    if labels.is_floating_point():
        return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype),
                                      reduction=reduction)
    return nn.functional.cross_entropy(logits, labels, reduction=reduction)
