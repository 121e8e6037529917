"""The training loop (our own; no ``transformers.Trainer`` inside the product).

The model is split at unit boundaries (:class:`~freezebench.model.staged.StagedForward`). The
frozen prefix, the bottom units with no trainable parameter, runs in inference mode without
autograd, or is read from the frozen-prefix cache; everything above it trains as usual.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from freezebench.config import RunConfig
from freezebench.engine.adaptive import GrowingCache, freezer_for
from freezebench.engine.batching import (
    Batch,
    SplitInputs,
    batch_order,
    forward_logits,
    iter_batches,
)
from freezebench.engine.distributed import SINGLE, DataParallel, Share
from freezebench.engine.freezing import apply_trainable, describe_prefix, trainable_count
from freezebench.engine.loss import task_loss
from freezebench.engine.optimizer import build_optimizer, drop_parameters, optimizer_state_bytes
from freezebench.engine.precision import autocast
from freezebench.errors import ConfigError, TrainingError
from freezebench.measure.flops import FlopRate
from freezebench.measure.memory import SavedTensors
from freezebench.measure.timing import Stopwatch
from freezebench.model.dropout import numpy_masks_kept
from freezebench.model.layer_map import LayerMap
from freezebench.model.staged import StagedForward
from freezebench.record import FreezeEvent, HistoryEntry, SplitMetrics
from freezebench.strategies import FreezePlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalPoint:
    """What an evaluation during training returns: both splits' metrics, and the seconds the
    test split took (the record's evaluation throughput)."""

    validation: SplitMetrics
    test: SplitMetrics
    test_seconds: float


Evaluate = Callable[[int], EvalPoint]  # both splits, their frozen prefix ending at this boundary
OnPoint = Callable[[HistoryEntry], None]  # told of each history point as it is made
# the FLOP rate of a training pass with this trainable set over this frozen prefix
RateOf = Callable[[set[str], int], FlopRate]


@dataclass
class TrainOutcome:
    history: list[HistoryEntry]
    selected: HistoryEntry     # the evaluation the run reports (select_checkpoint)
    train_seconds: float
    flops: float               # training FLOPs as executed, summed batch by batch
    steps: int
    samples: int
    tokens: int
    optimizer_state_bytes: int
    optimizer: torch.optim.Optimizer
    activations_bytes: int     # saved for the backward pass, at the largest step
    test_seconds: float        # the last evaluation's test split
    evaluation_seconds: float  # every evaluation, both splits
    freezing: list[FreezeEvent]  # units an adaptive plan froze during training, in order


def show_progress(disable_tqdm: bool | None) -> bool:
    """Progress bars only on a terminal unless asked otherwise."""
    return sys.stderr.isatty() if disable_tqdm is None else not disable_tqdm


@dataclass
class Recipe:
    """The optimisation settings of a run (a slice of RunConfig)."""

    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    warmup_steps: int
    lr_scheduler_type: str
    max_grad_norm: float | None
    num_train_epochs: int
    max_steps: int | None
    gradient_accumulation_steps: int
    per_device_train_batch_size: int
    per_device_eval_batch_size: int
    seed: int
    group_by_length: bool
    packed_batches: bool
    logging_steps: int | None
    eval_steps: int | None
    select_checkpoint: str
    metric_for_best_model: str

    @classmethod
    def from_config(cls, config: RunConfig) -> Recipe:
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


# default cadences: about this many points a run
LOG_POINTS = 20
EVAL_POINTS = 5


@dataclass(frozen=True)
class Plan:
    """How long a run trains and when it logs and evaluates (at step 0 and the end too)."""

    steps_per_epoch: int
    total_steps: int
    logging_steps: int
    eval_steps: int

    @classmethod
    def of(cls, recipe: Recipe, examples: int, global_batch: int) -> Plan:
        batches = math.ceil(examples / global_batch)
        per_epoch = math.ceil(batches / recipe.gradient_accumulation_steps)
        total = recipe.max_steps or per_epoch * recipe.num_train_epochs
        return cls(per_epoch, total,
                   recipe.logging_steps or max(1, math.ceil(total / LOG_POINTS)),
                   recipe.eval_steps or max(1, math.ceil(total / EVAL_POINTS)))

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def warmup(self, recipe: Recipe) -> int:
        """Warm-up steps as ``TrainingArguments`` counts them."""
        if recipe.warmup_steps > 0:
            return recipe.warmup_steps
        return math.ceil(recipe.warmup_ratio * self.total_steps)

    def evaluates_at(self, step: int) -> bool:
        return step % self.eval_steps == 0 or step == self.total_steps

    def logs_at(self, step: int) -> bool:
        return step % self.logging_steps == 0 or self.evaluates_at(step)


def train(
    *, model: nn.Module, staged: StagedForward, layer_map: LayerMap, plan: FreezePlan,
    inputs: SplitInputs, recipe: Recipe, device: torch.device, precision: str,
    boundary: int, evaluate: Evaluate, rate_of: RateOf, progress: bool = False,
    parallel: DataParallel = SINGLE, on_point: OnPoint | None = None,
    cache: GrowingCache | None = None,
) -> TrainOutcome:
    """Train the plan's parameters, logging and evaluating (``evaluate(boundary)``) as the recipe
    says.

    ``boundary`` is the frozen prefix the inputs were prepared for (cached states start there).
    Plans with a schedule (gradual unfreezing) change the trainable set as training progresses;
    adaptive plans (AutoFreeze, FreezeOut) freeze bottom units as it progresses, and ``cache``,
    when given, deepens every split's cached states as they do.
    Under ``parallel``, each step is one global batch shared by the ranks (see distributed.py).
    Evaluation time stays outside the training time.
    """
    batch_size = parallel.global_batch(recipe.per_device_train_batch_size)
    schedule = Plan.of(recipe, len(inputs.lengths), batch_size)
    loop = _Loop(model=model, staged=staged, layer_map=layer_map, plan=plan, recipe=recipe,
                 device=device, precision=precision, parallel=parallel, schedule=schedule,
                 boundary=boundary, rate_of=rate_of, on_point=on_point, cache=cache)
    with tqdm(total=schedule.total_steps, desc="train", disable=not progress,
              leave=False) as bar, loop.watch:
        loop.record(inputs, evaluate)
        for epoch in range(schedule.epochs):
            order = batch_order(inputs.lengths, batch_size, shuffle=True, seed=recipe.seed,
                                epoch=epoch, group_by_length=recipe.group_by_length)
            for _ in loop.epoch(inputs, order, epoch):
                bar.update(1)
                if schedule.logs_at(loop.step):
                    loop.record(inputs, evaluate if schedule.evaluates_at(loop.step) else None)
    selected = loop.checkpoint.restore()
    return TrainOutcome(history=loop.history, selected=selected,
                        train_seconds=loop.history[-1].seconds, flops=loop.flops,
                        steps=loop.step,
                        samples=loop.examples, tokens=loop.tokens,
                        optimizer_state_bytes=optimizer_state_bytes(loop.optimizer),
                        optimizer=loop.optimizer, activations_bytes=loop.saved.peak_bytes,
                        test_seconds=loop.test_seconds,
                        evaluation_seconds=loop.evaluation_seconds, freezing=loop.freezing)


LOWER_IS_BETTER = frozenset({"loss", "mse"})  # of the metrics that may choose the best evaluation
# the metrics a record holds, by problem type, that may choose the best evaluation
BEST_METRICS = {"classification": ("accuracy", "f1", "f1_macro", "precision", "recall", "loss"),
                "regression": ("pearson", "spearman", "mse", "loss")}


def check_best_metric(select_checkpoint: str, metric: str, problem_type: str) -> None:
    """The metric that picks the best evaluation is one a run of ``problem_type`` records."""
    allowed = BEST_METRICS[problem_type]
    if select_checkpoint == "best" and metric not in allowed:
        raise ConfigError(
            f"metric_for_best_model '{metric}' is not a metric of a {problem_type} run (this "
            f"data makes one). Choose one of: {', '.join(allowed)} (--metric-for-best-model), "
            "or --select-checkpoint last.")


class Checkpoint:
    """The evaluation a run reports: the last, or the best on validation, whose trained
    parameters are kept (a copy of those that train) and put back at the end. Only validation
    metrics choose; test metrics ride along."""

    def __init__(self, recipe: Recipe, params: dict[str, nn.Parameter]):
        self.best = recipe.select_checkpoint == "best"
        self.metric = recipe.metric_for_best_model
        self.params = params
        self.chosen: HistoryEntry | None = None
        self.saved: dict[str, torch.Tensor] = {}

    def consider(self, point: HistoryEntry) -> None:
        if self.best and self.chosen is not None and not self._better(point, self.chosen):
            return
        self.chosen = point
        if self.best:
            self.saved = {n: p.detach().clone() for n, p in self.params.items()}

    def restore(self) -> HistoryEntry:
        if self.best:
            with torch.no_grad():
                for name, value in self.saved.items():
                    self.params[name].copy_(value)
        assert self.chosen is not None, "a run always evaluates at its end"
        return self.chosen

    def _better(self, point: HistoryEntry, than: HistoryEntry) -> bool:
        new = getattr(point.validation, self.metric)
        old = getattr(than.validation, self.metric)
        return new < old if self.metric in LOWER_IS_BETTER else new > old


class _Loop:
    """The state of one training run between steps: optimizer, schedule, scaler, the current
    trainable set and frozen prefix, counts so far and the history."""

    def __init__(self, *, model: nn.Module, staged: StagedForward, layer_map: LayerMap,
                 plan: FreezePlan, recipe: Recipe, device: torch.device, precision: str,
                 parallel: DataParallel, schedule: Plan, boundary: int, rate_of: RateOf,
                 on_point: OnPoint | None = None, cache: GrowingCache | None = None):
        self.model, self.staged, self.layer_map, self.plan = model, staged, layer_map, plan
        self.recipe, self.device, self.precision, self.parallel = recipe, device, precision, \
            parallel
        self.schedule, self.rate_of, self.step = schedule, rate_of, 0
        self.on_point, self.cache = on_point, cache
        ever = plan.ever_trainable()
        self.freezer = freezer_for(plan.adaptive, model, layer_map,
                                   learning_rate=recipe.learning_rate,
                                   total_steps=schedule.total_steps,
                                   warmup_steps=schedule.warmup(recipe))
        self.optimizer = build_optimizer(model, ever, layer_map,
                                         learning_rate=recipe.learning_rate,
                                         weight_decay=recipe.weight_decay, device=device,
                                         by_unit=self.freezer is not None)
        self.scheduler = get_scheduler(recipe.lr_scheduler_type, self.optimizer,
                                       num_warmup_steps=schedule.warmup(recipe),
                                       num_training_steps=schedule.total_steps)
        if self.freezer is not None:
            self.freezer.set_rates(self.optimizer, 0)
        self.frozen_units = 0  # bottom units the freezer has frozen so far
        self.freezing: list[FreezeEvent] = []
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.trainable = plan.trainable_at(0.0)
        self.boundary = min(boundary, apply_trainable(model, layer_map, self.trainable))
        self.rate = rate_of(self.trainable, self.boundary)
        named = {n: p for n, p in model.named_parameters() if n in ever}
        self.params = list(named.values())
        self.checkpoint = Checkpoint(recipe, named)
        self.forward = parallel.forward(staged)
        self.saved = SavedTensors(model.parameters())
        self.watch = Stopwatch(device)
        self.history: list[HistoryEntry] = []
        self.flops, self.examples, self.tokens = 0.0, 0, 0
        self.test_seconds = self.evaluation_seconds = 0.0
        self.loss_sum = torch.zeros((), device=device)
        self.losses = 0  # batches in loss_sum
        # checking the loss needs a device sync; on a GPU only now and then
        self.check_every = 50 if device.type == "cuda" else 1

    def epoch(self, inputs: SplitInputs, order: list[list[int]], epoch: int) -> Iterator[None]:
        """Optimizer steps over ``order``'s batches (``gradient_accumulation_steps`` batches a
        step, fewer at the epoch's end), yielding after each; stops at the run's last step."""
        shares = self.parallel.shares(order)
        batches = iter_batches(inputs, [share.indices for share in shares], self.device,
                               packed=self.recipe.packed_batches and self.staged.packs)
        group, count = self.recipe.gradient_accumulation_steps, len(order)
        items = zip(order, shares, batches, strict=True)
        for first in range(0, count, group):
            if self.step == self.schedule.total_steps:
                return
            self._follow_schedule()
            self._follow_freezer()
            size = min(group, count - first)
            for _ in range(size):
                indices, share, batch = next(items)
                self._accumulate(batch, share, size)
                lengths = inputs.lengths[indices]
                self.flops += self.rate.flops(lengths)
                self.examples += len(indices)
                self.tokens += int(lengths.sum())
            self._optimizer_step()
            if self.step % self.check_every == 0 and not self.parallel.all_finite(self.loss_sum):
                raise TrainingError(
                    f"Training diverged: the loss became {float(self.loss_sum)} at step "
                    f"{self.step} (epoch {epoch + 1}). Lower the learning rate "
                    f"({self.recipe.learning_rate:g}) or use fp32.", step=self.step)
            yield

    def record(self, inputs: SplitInputs, evaluate: Evaluate | None) -> None:
        """A history point (with both splits' metrics when ``evaluate``), outside the timing."""
        with self.watch.paused():
            train_loss = None
            if self.losses:
                train_loss = (float(self.parallel.sum(self.loss_sum))
                              / self.parallel.world_size / self.losses)
                if not math.isfinite(train_loss):
                    raise TrainingError(f"Training diverged: the loss became {train_loss} by "
                                        f"step {self.step}. Lower the learning rate.",
                                        step=self.step)
            self.loss_sum.zero_()
            self.losses = 0
            started = time.perf_counter()
            point = evaluate(self.boundary) if evaluate is not None else None
            self.evaluation_seconds += time.perf_counter() - started
            entry = HistoryEntry(
                step=self.step, epoch=self.examples / len(inputs.lengths),
                examples=self.examples, seconds=self.watch.seconds, flops=self.flops,
                train_loss=train_loss, learning_rate=self.optimizer.param_groups[-1]["lr"],
                trainable_params=trainable_count(self.model),
                validation=point.validation if point else None,
                test=point.test if point else None)
            self.history.append(entry)
            if point is not None:
                self.test_seconds = point.test_seconds
                self.checkpoint.consider(entry)
            if self.on_point is not None:
                self.on_point(entry)

    def _follow_schedule(self) -> None:
        """Unfreeze what a scheduled plan adds at this point of training."""
        if not self.plan.schedule:
            return
        trainable = self.plan.trainable_at(self.step / self.schedule.total_steps)
        if trainable == self.trainable:
            return
        self.trainable = trainable
        self.boundary = apply_trainable(self.model, self.layer_map, trainable)
        self.rate = self.rate_of(trainable, self.boundary)
        self.forward = self.parallel.forward(self.staged)
        logger.info("Step %d: %d parameter tensors train, frozen prefix %s", self.step,
                    len(trainable), describe_prefix(self.boundary))

    def _follow_freezer(self) -> None:
        """Freeze, for good, the bottom units an adaptive plan's freezer has stopped."""
        if self.freezer is None:
            return
        count = self.freezer.frozen_units(self.step)
        if count <= self.frozen_units:
            return
        units = self.layer_map.units()[self.frozen_units:count]
        names = {name for _, unit_names in units for name in unit_names}
        with self.watch.paused():  # the training seconds so far, up to date
            seconds = self.watch.seconds
        self.trainable = self.trainable - names
        drop_parameters(self.optimizer, [p for n, p in self.model.named_parameters()
                                         if n in names])
        start = self.boundary
        self.boundary = apply_trainable(self.model, self.layer_map, self.trainable)
        if self.cache is not None:  # the new units' forward over every split, once
            flops, evaluation_seconds = self.cache.deepen(start, self.boundary, self.watch)
            self.flops += flops
            self.evaluation_seconds += evaluation_seconds
        self.rate = self.rate_of(self.trainable, self.boundary)
        self.forward = self.parallel.forward(self.staged)
        self.frozen_units = count
        self.freezing += [FreezeEvent(unit=unit, step=self.step, seconds=seconds)
                          for unit, _ in units]
        logger.info("Step %d: froze %s; frozen prefix %s", self.step,
                    ", ".join(unit for unit, _ in units), describe_prefix(self.boundary))

    def _accumulate(self, batch: Batch, share: Share, group: int) -> None:
        """Forward and backward of one batch of a step of ``group`` batches."""
        with self.saved, autocast(self.device, self.precision):
            logits = self.forward(batch, self.boundary)
            loss = self.parallel.loss(logits.float(), batch.labels, share)
        self.scaler.scale(loss / group).backward()
        self.saved.step_done()
        self.loss_sum += loss.detach()
        self.losses += 1

    def _optimizer_step(self) -> None:
        """Clipping and one optimizer step over the accumulated gradients (which an adaptive
        freezer reads first, unscaled and unclipped)."""
        reads = self.freezer is not None and self.freezer.reads_gradients
        if self.recipe.max_grad_norm or reads:
            self.scaler.unscale_(self.optimizer)
        if self.freezer is not None:
            self.freezer.after_backward(self.step + 1)
        if self.recipe.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.params if p.grad is not None], self.recipe.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.freezer is not None:  # the rates of the next step
            self.freezer.set_rates(self.optimizer, self.step)


_warmed_up = False


def warm_up(staged: StagedForward, inputs: SplitInputs, *, boundary: int, batch_size: int,
            device: torch.device, precision: str, packed: bool) -> None:
    """One untimed forward and backward pass, once per process.

    The first step of a process pays for thread pools, allocator growth and kernel selection; it
    would make whichever run comes first look slower. It runs on the model itself, not a copy (a
    copy held a second set of weights, and its gradients, at once: twice a large model's memory
    under LoRA), and leaves no trace: no optimizer step, the gradients dropped, the torch random
    streams forked and the numpy dropout streams put back.
    """
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True
    indices = list(range(min(batch_size, len(inputs.lengths))))
    batch = next(iter_batches(inputs, [indices], device, packed=packed and staged.packs))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), numpy_masks_kept(staged.model):
        with autocast(device, precision):
            loss = task_loss(forward_logits(staged, batch, boundary).float(), batch.labels)
        loss.backward()
    for param in staged.model.parameters():
        param.grad = None
