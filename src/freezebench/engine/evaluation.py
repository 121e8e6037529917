"""Evaluation: logits and loss (cross-entropy, or MSE for a regression) over a split, the whole
model in inference mode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from freezebench.engine.batching import SplitInputs, forward_logits, iter_batches
from freezebench.engine.distributed import SINGLE, DataParallel
from freezebench.engine.loss import task_loss
from freezebench.engine.precision import autocast
from freezebench.measure.timing import Stopwatch
from freezebench.model.staged import StagedForward


@dataclass
class Evaluation:
    logits: np.ndarray
    labels: np.ndarray
    loss: float
    seconds: float


def evaluate(
    model: nn.Module, staged: StagedForward, inputs: SplitInputs, *, boundary: int,
    batch_size: int, device: torch.device, precision: str, parallel: DataParallel = SINGLE,
) -> Evaluation:
    """Logits and mean loss over a split, whole model in inference mode (ranks score a shard
    each and share the results)."""
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    # Batches of similar length pad least; the logits go back to row order afterwards.
    order = parallel.eval_order(inputs.lengths, batch_size)
    logits, loss_sum = [], torch.zeros((), device=device)
    with Stopwatch(device) as watch, torch.inference_mode(), autocast(device, precision):
        for batch in iter_batches(inputs, order, device):
            out = forward_logits(staged, batch, boundary).float()
            loss_sum += task_loss(out, batch.labels, reduction="sum")
            logits.append(out)
    for module, mode in was_training.items():
        module.training = mode
    batched = torch.cat(logits).cpu().numpy()
    return Evaluation(
        logits=parallel.in_row_order(np.concatenate(order), batched),
        labels=inputs.labels.numpy(),
        loss=float(parallel.sum(loss_sum)) / max(len(inputs.labels), 1), seconds=watch.seconds,
    )
