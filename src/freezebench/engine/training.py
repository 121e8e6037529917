"""The training loop (our own; no ``transformers.Trainer`` inside the product).

The model is split at unit boundaries (:class:`~freezebench.model.staged.StagedForward`). The
frozen prefix, the bottom units with no trainable parameter, runs in inference mode without
autograd, or is read from the frozen-prefix cache; everything above it trains as usual.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from freezebench.config import RunConfig
from freezebench.engine.batching import SplitInputs, batch_order, forward_logits, iter_batches
from freezebench.engine.distributed import SINGLE, DataParallel
from freezebench.engine.freezing import apply_trainable, describe_prefix, trainable_count
from freezebench.engine.optimizer import build_optimizer, optimizer_state_bytes
from freezebench.engine.precision import autocast
from freezebench.errors import TrainingError
from freezebench.measure.memory import SavedTensors
from freezebench.measure.timing import Stopwatch
from freezebench.model.layer_map import LayerMap
from freezebench.model.staged import StagedForward
from freezebench.record import HistoryEntry, SplitMetrics
from freezebench.strategies import FreezePlan

logger = logging.getLogger(__name__)

@dataclass
class TrainOutcome:
    history: list[HistoryEntry]
    train_seconds: float
    steps: int
    samples: int
    tokens: int
    optimizer_state_bytes: int
    optimizer: torch.optim.Optimizer
    activations_bytes: int  # saved for the backward pass, at the largest step


def show_progress(disable_tqdm: bool | None) -> bool:
    """Progress bars only on a terminal unless asked otherwise."""
    return sys.stderr.isatty() if disable_tqdm is None else not disable_tqdm


@dataclass
class Recipe:
    """The optimisation settings of a run (a slice of RunConfig)."""

    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float | None
    num_train_epochs: int
    per_device_train_batch_size: int
    per_device_eval_batch_size: int
    seed: int
    group_by_length: bool
    packed_batches: bool

    @classmethod
    def from_config(cls, config: RunConfig) -> Recipe:
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


EpochCallback = Callable[[int], SplitMetrics]


def train(
    *, model: nn.Module, staged: StagedForward, layer_map: LayerMap, plan: FreezePlan,
    inputs: SplitInputs, recipe: Recipe, device: torch.device, precision: str,
    boundary: int, on_epoch_end: EpochCallback, progress: bool = False,
    parallel: DataParallel = SINGLE,
) -> TrainOutcome:
    """Train the plan's parameters; ``on_epoch_end(epoch)`` returns the validation metrics.

    ``boundary`` is the frozen prefix the inputs were prepared for (cached states start there).
    Plans with a schedule (gradual unfreezing) change the trainable set as training progresses.
    Under ``parallel``, each step is one global batch shared by the ranks (see distributed.py).
    """
    ever = plan.ever_trainable()
    optimizer = build_optimizer(model, ever, layer_map, learning_rate=recipe.learning_rate,
                                weight_decay=recipe.weight_decay, device=device)
    batch_size = parallel.global_batch(recipe.per_device_train_batch_size)
    steps_per_epoch = math.ceil(len(inputs.lengths) / batch_size)
    total_steps = steps_per_epoch * recipe.num_train_epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(recipe.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    trainable = plan.trainable_at(0.0)
    boundary = min(boundary, apply_trainable(model, layer_map, trainable))
    params = [p for n, p in model.named_parameters() if n in ever]
    forward = parallel.forward(staged)
    check_every = 50 if device.type == "cuda" else 1
    history, step, seconds = [], 0, 0.0
    saved = SavedTensors()
    bar = tqdm(total=total_steps, desc="train", disable=not progress, leave=False)
    for epoch in range(recipe.num_train_epochs):
        order = batch_order(inputs.lengths, batch_size, shuffle=True,
                            seed=recipe.seed, epoch=epoch, group_by_length=recipe.group_by_length)
        shares = parallel.shares(order)
        loss_sum = torch.zeros((), device=device)
        with Stopwatch(device) as watch:
            batches = iter_batches(inputs, [share.indices for share in shares], device,
                                   packed=recipe.packed_batches)
            for share, batch in zip(shares, batches, strict=True):
                if plan.schedule and plan.trainable_at(step / total_steps) != trainable:
                    trainable = plan.trainable_at(step / total_steps)
                    boundary = apply_trainable(model, layer_map, trainable)
                    forward = parallel.forward(staged)
                    logger.info("Step %d: %d parameter tensors train, frozen prefix %s", step,
                                len(trainable), describe_prefix(boundary))
                with saved, autocast(device, precision):
                    logits = forward(batch, boundary)
                    loss = parallel.loss(logits.float(), batch.labels, share)
                scaler.scale(loss).backward()
                saved.step_done()
                if recipe.max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(
                        [p for p in params if p.grad is not None], recipe.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach()
                step += 1
                bar.update(1)
                if step % check_every == 0 and not parallel.all_finite(loss_sum):
                    bar.close()
                    raise TrainingError(
                        f"Training diverged: the loss became {float(loss_sum)} at step {step} "
                        f"(epoch {epoch + 1}). Lower the learning rate "
                        f"({recipe.learning_rate:g}) or use fp32.", step=step)
        seconds += watch.seconds
        train_loss = float(parallel.sum(loss_sum)) / parallel.world_size / len(order)
        if not math.isfinite(train_loss):
            bar.close()
            raise TrainingError(f"Training diverged: the loss became {train_loss} in epoch "
                                f"{epoch + 1} (step {step}). Lower the learning rate.", step=step)
        history.append(HistoryEntry(
            epoch=epoch + 1, step=step, train_loss=train_loss,
            learning_rate=scheduler.get_last_lr()[0], seconds=watch.seconds,
            trainable_params=trainable_count(model), validation=on_epoch_end(epoch)))
    bar.close()
    samples = len(inputs.lengths) * recipe.num_train_epochs
    return TrainOutcome(history=history, train_seconds=seconds, steps=step, samples=samples,
                        tokens=int(inputs.lengths.sum()) * recipe.num_train_epochs,
                        optimizer_state_bytes=optimizer_state_bytes(optimizer),
                        optimizer=optimizer, activations_bytes=saved.peak_bytes)


_warmed_up = False


def warm_up(staged: StagedForward, inputs: SplitInputs, *, boundary: int, batch_size: int,
            device: torch.device, precision: str, packed: bool) -> None:
    """One untimed training step on a copy of the model, once per process.

    The first step of a process pays for thread pools, allocator growth and kernel selection; it
    would make whichever run comes first look slower. The copy, and a forked torch RNG, leave the
    run's weights and random streams exactly as they were.
    """
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True
    copy = deepcopy(staged)
    indices = list(range(min(batch_size, len(inputs.lengths))))
    batch = next(iter_batches(inputs, [indices], device, packed=packed))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), autocast(device, precision):
        loss = nn.functional.cross_entropy(forward_logits(copy, batch, boundary).float(),
                                           batch.labels)
    loss.backward()
