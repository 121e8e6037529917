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
from freezebench.engine.batching import (
    Batch,
    SplitInputs,
    batch_order,
    forward_logits,
    iter_batches,
)
from freezebench.engine.distributed import SINGLE, DataParallel, Share
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
    batch_size = parallel.global_batch(recipe.per_device_train_batch_size)
    total_steps = math.ceil(len(inputs.lengths) / batch_size) * recipe.num_train_epochs
    loop = _Loop(model=model, staged=staged, layer_map=layer_map, plan=plan, recipe=recipe,
                 device=device, precision=precision, parallel=parallel,
                 total_steps=total_steps, boundary=boundary)
    history, seconds = [], 0.0
    with tqdm(total=total_steps, desc="train", disable=not progress, leave=False) as bar:
        for epoch in range(recipe.num_train_epochs):
            order = batch_order(inputs.lengths, batch_size, shuffle=True, seed=recipe.seed,
                                epoch=epoch, group_by_length=recipe.group_by_length)
            train_loss, epoch_seconds = loop.epoch(inputs, order, epoch, bar)
            seconds += epoch_seconds
            history.append(HistoryEntry(
                epoch=epoch + 1, step=loop.step, train_loss=train_loss,
                learning_rate=loop.scheduler.get_last_lr()[0], seconds=epoch_seconds,
                trainable_params=trainable_count(model), validation=on_epoch_end(epoch)))
    epochs = recipe.num_train_epochs
    return TrainOutcome(history=history, train_seconds=seconds, steps=loop.step,
                        samples=len(inputs.lengths) * epochs,
                        tokens=int(inputs.lengths.sum()) * epochs,
                        optimizer_state_bytes=optimizer_state_bytes(loop.optimizer),
                        optimizer=loop.optimizer, activations_bytes=loop.saved.peak_bytes)


class _Loop:
    """The state of one training run between steps: optimizer, schedule, scaler, the current
    trainable set and frozen prefix, and the step count."""

    def __init__(self, *, model: nn.Module, staged: StagedForward, layer_map: LayerMap,
                 plan: FreezePlan, recipe: Recipe, device: torch.device, precision: str,
                 parallel: DataParallel, total_steps: int, boundary: int):
        self.model, self.staged, self.layer_map, self.plan = model, staged, layer_map, plan
        self.recipe, self.device, self.precision, self.parallel = recipe, device, precision, \
            parallel
        self.total_steps, self.step = total_steps, 0
        ever = plan.ever_trainable()
        self.optimizer = build_optimizer(model, ever, layer_map,
                                         learning_rate=recipe.learning_rate,
                                         weight_decay=recipe.weight_decay, device=device)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(recipe.warmup_ratio * total_steps), total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.trainable = plan.trainable_at(0.0)
        self.boundary = min(boundary, apply_trainable(model, layer_map, self.trainable))
        self.params = [p for n, p in model.named_parameters() if n in ever]
        self.forward = parallel.forward(staged)
        self.saved = SavedTensors()
        # checking the loss needs a device sync; on a GPU only now and then
        self.check_every = 50 if device.type == "cuda" else 1

    def epoch(self, inputs: SplitInputs, order: list[list[int]], epoch: int,
              bar: tqdm) -> tuple[float, float]:
        """One pass over ``order``'s batches; returns the mean training loss and the seconds."""
        shares = self.parallel.shares(order)
        loss_sum = torch.zeros((), device=self.device)
        with Stopwatch(self.device) as watch:
            batches = iter_batches(inputs, [share.indices for share in shares], self.device,
                                   packed=self.recipe.packed_batches and self.staged.packs)
            for share, batch in zip(shares, batches, strict=True):
                self._follow_schedule()
                loss_sum += self._step(batch, share)
                bar.update(1)
                if self.step % self.check_every == 0 and not self.parallel.all_finite(loss_sum):
                    raise TrainingError(
                        f"Training diverged: the loss became {float(loss_sum)} at step "
                        f"{self.step} (epoch {epoch + 1}). Lower the learning rate "
                        f"({self.recipe.learning_rate:g}) or use fp32.", step=self.step)
        train_loss = float(self.parallel.sum(loss_sum)) / self.parallel.world_size / len(order)
        if not math.isfinite(train_loss):
            raise TrainingError(f"Training diverged: the loss became {train_loss} in epoch "
                                f"{epoch + 1} (step {self.step}). Lower the learning rate.",
                                step=self.step)
        return train_loss, watch.seconds

    def _follow_schedule(self) -> None:
        """Unfreeze what a scheduled plan adds at this point of training."""
        if not self.plan.schedule:
            return
        trainable = self.plan.trainable_at(self.step / self.total_steps)
        if trainable == self.trainable:
            return
        self.trainable = trainable
        self.boundary = apply_trainable(self.model, self.layer_map, trainable)
        self.forward = self.parallel.forward(self.staged)
        logger.info("Step %d: %d parameter tensors train, frozen prefix %s", self.step,
                    len(trainable), describe_prefix(self.boundary))

    def _step(self, batch: Batch, share: Share) -> torch.Tensor:
        """Forward, backward, clipping and one optimizer step; returns the batch's loss."""
        with self.saved, autocast(self.device, self.precision):
            logits = self.forward(batch, self.boundary)
            loss = self.parallel.loss(logits.float(), batch.labels, share)
        self.scaler.scale(loss).backward()
        self.saved.step_done()
        if self.recipe.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.params if p.grad is not None], self.recipe.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.detach()


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
    batch = next(iter_batches(inputs, [indices], device, packed=packed and staged.packs))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), autocast(device, precision):
        loss = nn.functional.cross_entropy(forward_logits(copy, batch, boundary).float(),
                                           batch.labels)
    loss.backward()
