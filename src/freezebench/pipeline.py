"""One run, end to end: config -> data -> model -> strategy -> engine -> measure -> record.

:func:`run` reads top to bottom: each stage returns its values, and the record is assembled once,
at the end, from them. A run that stops early (a failure, Ctrl-C) leaves a failed or cancelled
record instead.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, PreTrainedModel

from freezebench import results
from freezebench.config import RunConfig
from freezebench.data.loading import (
    SPLITS,
    TaskData,
    load_task_data,
    resolve_max_length,
    tokenize_splits,
)
from freezebench.engine.adaptive import GrowingCache
from freezebench.engine.batching import SplitInputs
from freezebench.engine.distributed import DataParallel, from_environment, is_main_process
from freezebench.engine.evaluation import evaluate
from freezebench.engine.freezing import apply_trainable, describe_prefix, planned
from freezebench.engine.precision import (
    resolve_device,
    resolve_precision,
    store_frozen_weights_for_autocast,
)
from freezebench.engine.prefix_cache import shared_store, weights_digest
from freezebench.engine.prefix_states import PrefixContext, prefix_states
from freezebench.engine.training import (
    EvalPoint,
    OnPoint,
    RateOf,
    Recipe,
    TrainOutcome,
    check_best_metric,
    show_progress,
    train,
    warm_up,
)
from freezebench.env import environment
from freezebench.errors import StorageError, TrainingError
from freezebench.failures import explain_failure
from freezebench.measure.efficiency import CacheUse, efficiency
from freezebench.measure.flops import (
    FlopRate,
    UnitCost,
    forward_flops,
    scheduled_train_flops,
    train_flops,
    unit_costs,
)
from freezebench.measure.memory import PeakMemory, memory_use
from freezebench.measure.quality import classification_metrics, regression_metrics
from freezebench.model.dropout import resolve_dropout_masks, use_numpy_dropout
from freezebench.model.layer_map import LayerMap, count_parameters
from freezebench.model.loading import (
    check_max_length,
    load_model,
    load_tokenizer,
    set_padding,
)
from freezebench.model.pooling import PoolingChoice, apply_pooling, resolve_pooling
from freezebench.model.staged import StagedForward, computes_first_token_only
from freezebench.record import (
    DataSummary,
    Efficiency,
    Environment,
    HistoryEntry,
    Metrics,
    ParamsSummary,
    PoolingUsed,
    PrefixBuild,
    RunError,
    RunRecord,
    SplitMetrics,
    Status,
    UnitParams,
    error_of,
    new_record,
    now,
    stopped_record,
)
from freezebench.saving import check_saveable, hub_repo, push_folder, save_finetuned
from freezebench.strategies import FreezePlan, check_params
from freezebench.trackers import Tracking

logger = logging.getLogger(__name__)


def run(config: RunConfig, *, on_point: OnPoint | None = None) -> RunRecord:
    """Run one configuration and save its record; failures are saved too, then re-raised.

    ``on_point`` is told of each history point as training makes it (with metrics at an
    evaluation): a Ray Tune trial reports validation from it, a tracker logs it.

    Running out of memory (GPU or CPU) and a full disk are re-raised as the user's errors
    (:class:`OutOfMemoryError`, :class:`StorageError`) with advice; a sweep goes on after the
    first and stops at the second. Under ``torchrun``/``accelerate launch`` every process runs
    this; rank 0 saves.
    """
    check_params(config.strategy, config.strategy_params)
    results.ensure_runs_dir(config.output_dir)
    parallel = from_environment()
    tracking = Tracking.of(config, main_process=parallel.is_main)  # a missing library fails here
    started = new_record(config, parallel.world_size)
    tracking.start(started)
    try:
        record = _execute(config, started, parallel, tracking.also(on_point))
    except KeyboardInterrupt:
        cancelled = RunError(type="KeyboardInterrupt", message="Interrupted by the user.")
        _stop(config, stopped_record(config, Status.CANCELLED, cancelled, base=started),
              tracking)
        raise
    except Exception as exc:  # user mistakes (FreezebenchError) and bugs alike leave a record
        error = explain_failure(exc, config)
        _stop(config, stopped_record(config, Status.FAILED, error_of(error), base=started),
              tracking)
        if error is exc:
            raise
        raise error from None
    if is_main_process():
        results.save_record(config.output_dir, record)
    tracking.finish(record)  # the record is safe; the push after it may fail
    if is_main_process():
        _push(config, record)
    return record


def _push(config: RunConfig, record: RunRecord) -> None:
    """Push the saved model; a failure raises after the folder and the record are written."""
    if config.push_to_hub and record.saved_model:
        url = push_folder(Path(record.saved_model), hub_repo(config, record.id))
        print(f"pushed {record.saved_model} to {url}")


def _stop(config: RunConfig, record: RunRecord, tracking: Tracking) -> None:
    """Save a failed or cancelled record and end its tracker runs so; neither may hide the error
    that stopped the run."""
    try:
        tracking.finish(record)
    except Exception as exc:  # a tracker's own failure (a server gone, ...)
        logger.error("Could not end the tracker run of %s: %s", record.id, exc)
    if not is_main_process():
        return
    try:
        results.save_record(config.output_dir, record)
    except StorageError as exc:  # a full disk must not hide the original error
        logger.error("Could not write the %s record %s: %s", record.status.value, record.id, exc)


@dataclass
class Prepared:
    """Everything a run trains with, built from the config."""

    task: TaskData
    tokenizer: Any
    model: PreTrainedModel
    layer_map: LayerMap
    plan: FreezePlan
    inputs: dict[str, SplitInputs]
    max_length: int
    pooling: PoolingChoice


def prepare(config: RunConfig) -> Prepared:
    """Data, tokenizer, model with its new head, and the strategy's plan, all validated."""
    task = load_task_data(
        config.dataset, dataset_config=config.dataset_config, text_column=config.text_column,
        label_column=config.label_column, encoding=config.encoding, seed=config.data_seed,
        max_train_samples=config.max_train_samples, max_eval_samples=config.max_eval_samples,
        text_pair_column=config.text_pair_column, drop_invalid_rows=config.drop_invalid_rows,
        problem_type=config.problem_type,
    )
    check_best_metric(config.select_checkpoint, config.metric_for_best_model, task.problem_type)
    tokenizer = load_tokenizer(config.model, revision=config.revision,
                               trust_remote_code=config.trust_remote_code)
    model = load_model(config.model, num_labels=task.num_labels, label_names=task.label_names,
                       seed=config.seed, revision=config.revision,
                       trust_remote_code=config.trust_remote_code)
    set_padding(tokenizer, model)
    pooling = resolve_pooling(config.pooling, config.model, model, revision=config.revision)
    check_saveable(config, pooling)
    apply_pooling(model, pooling.mode)
    model, layer_map, plan = planned(model, config.strategy, config.strategy_params)
    limit = check_max_length(model, resolve_max_length(tokenizer, config.max_length),
                             requested=config.max_length is not None)
    tokenized = tokenize_splits(task, tokenizer, limit)
    collator = DataCollatorWithPadding(tokenizer)
    inputs = {split: SplitInputs(tokenized[split], collator) for split in SPLITS}
    max_length = max(int(inputs[s].lengths.max()) for s in SPLITS)
    return Prepared(task, tokenizer, model, layer_map, plan, inputs, max_length, pooling)


@dataclass(frozen=True)
class RunContext:
    """Where and how a run computes: what every stage after :func:`prepare` needs."""

    config: RunConfig
    device: torch.device
    precision: str
    parallel: DataParallel


def _execute(config: RunConfig, started: RunRecord, parallel: DataParallel,
             on_point: OnPoint | None) -> RunRecord:
    device = parallel.place(resolve_device(config.device))
    context = RunContext(config, device, resolve_precision(config.precision, device), parallel)
    prepared = prepare(config)
    model, layer_map, plan = prepared.model.to(device), prepared.layer_map, prepared.plan
    dropout_masks = resolve_dropout_masks(config.dropout_masks, device)
    if dropout_masks == "numpy":
        use_numpy_dropout(model, seed=(config.seed, parallel.rank))
    boundary = apply_trainable(model, layer_map, plan.trainable_at(0.0))
    store_frozen_weights_for_autocast(model, plan.ever_trainable(), context.precision)
    _print_data_notes(prepared.task, parallel)
    _print_trainable(model, parallel)
    staged = StagedForward(model, layer_map)
    use_cache = config.use_cache and not plan.schedule and boundary > 0 and staged.staged
    units = unit_costs(model, layer_map, plan.ever_trainable(), computes_first_token_only(model))
    # an adaptive plan's frozen prefix grows during training, and its cache with it
    growing = (GrowingCache(staged, prepared.inputs, units, device, context.precision)
               if config.use_cache and plan.adaptive is not None else None)
    if not parallel.active:  # before anything timed, the cache build included
        warm_up(staged, prepared.inputs["train"], boundary=0,
                batch_size=config.per_device_train_batch_size, device=device,
                precision=context.precision, packed=config.packed_batches)
    cache = (_attach_cache(context, prepared, staged, boundary, units) if use_cache
             else CacheUse.unused())
    rate_of = _rate_of(prepared, use_cache or growing is not None)
    with PeakMemory(device) as memory:
        outcome = _train(context, prepared, staged, boundary, rate_of, on_point, growing)
    if growing is not None:  # its builds ran inside training (and evaluation), timed there
        cache = growing.use()
    flops = {**_train_flops(prepared, units, boundary, use_cache, outcome.samples),
             "train_flops": outcome.flops}
    tensors = memory_use(model, plan.ever_trainable(),
                         optimizer_state_bytes=outcome.optimizer_state_bytes,
                         activations_bytes=outcome.activations_bytes,
                         cached_features_bytes=cache.train_bytes)
    selected = outcome.selected
    run_efficiency = efficiency(
        train_seconds=outcome.train_seconds, samples=outcome.samples, tokens=outcome.tokens,
        steps=outcome.steps, memory=memory, tensors=tensors, flops=flops, cache=cache,
        eval_samples=len(prepared.inputs["test"].lengths), eval_seconds=outcome.test_seconds,
        evaluation_seconds=outcome.evaluation_seconds,
        precision=context.precision, dropout_masks=dropout_masks,
        world_size=parallel.world_size,
        effective_train_batch_size=parallel.global_batch(config.per_device_train_batch_size),
        price_per_hour=config.price_per_hour)
    record = started.model_copy(update={
        "status": Status.COMPLETED,
        "finished_at": now(),
        "data": _data_summary(prepared),
        # an adaptive plan's frozen prefix at the end: every unit it froze
        "params": _params(model, layer_map, plan, boundary + len(outcome.freezing),
                          outcome.optimizer_state_bytes, prepared.pooling),
        "metrics": Metrics(validation=selected.validation, test=selected.test,
                           selected_step=selected.step),
        "efficiency": run_efficiency,
        "history": _standalone(outcome.history, run_efficiency),
        "freezing": outcome.freezing if plan.adaptive is not None else None,
        "env": Environment(**environment(device)),
    })
    return record.model_copy(update={"saved_model": _save_model(context, prepared, model, record)})


def _train_flops(prepared: Prepared, units: list[UnitCost], boundary: int, cached: bool,
                 samples: int) -> dict[str, float]:
    """The run's naive and cache-build FLOPs (the executed count comes from the training loop,
    batch by batch); a schedule's stages each with their own trainable set and prefix."""
    model, plan, lengths = prepared.model, prepared.plan, prepared.inputs["train"].lengths
    epochs = samples / len(lengths)  # max_steps may stop within an epoch
    if not plan.schedule:
        return train_flops(units, lengths, model.config.hidden_size, epochs,
                           prefix_units=boundary, cached=cached)
    starts = [0.0, *(start for start, _ in plan.schedule), 1.0]
    cut = computes_first_token_only(model)
    stages = [(end - begin, unit_costs(model, prepared.layer_map, plan.trainable_at(begin), cut))
              for begin, end in zip(starts, starts[1:], strict=False)]
    return scheduled_train_flops(stages, lengths, model.config.hidden_size, epochs)


def _rate_of(prepared: Prepared, cached: bool) -> RateOf:
    """The training loop's FLOP rate for a trainable set over a frozen prefix."""
    model, cut = prepared.model, computes_first_token_only(prepared.model)

    def rate_of(trainable: set[str], prefix: int) -> FlopRate:
        units = unit_costs(model, prepared.layer_map, trainable, cut)
        return FlopRate.of(units, model.config.hidden_size, prefix_units=prefix, cached=cached)

    return rate_of


def _standalone(history: list[HistoryEntry], run: Efficiency) -> list[HistoryEntry]:
    """History points with the standalone view: the frozen prefix's forward over the training
    split (built before training) added to every point, as in the record's totals."""
    seconds = run.standalone_train_seconds - run.train_seconds
    flops = run.standalone_train_flops - run.train_flops
    return [point.model_copy(update={"standalone_seconds": point.seconds + seconds,
                                     "standalone_flops": (point.flops or 0.0) + flops})
            for point in history]


def _print_data_notes(task: TaskData, parallel: DataParallel) -> None:
    """What the data step decided (columns and class ids, sentence pairs, dropped rows, label
    mapping, carved splits, subsets, class warnings), before training, on stderr; the record keeps
    the notes in ``data.notes``."""
    if parallel.is_main:
        for note in [task.describe(), *task.notes]:
            tqdm.write(f"data: {note}", file=sys.stderr)


def _print_trainable(model: PreTrainedModel, parallel: DataParallel) -> None:
    """PEFT's parameter line, through tqdm so that a sweep's progress bar stays whole (on stdout,
    which ``freezebench run --json`` sends to stderr)."""
    trainable, total = count_parameters(model)
    if parallel.is_main:
        tqdm.write(f"trainable params: {trainable:,} || all params: {total:,} || "
                   f"trainable%: {100 * trainable / total:.4f}", file=sys.stdout)


def _attach_cache(context: RunContext, prepared: Prepared, staged: StagedForward,
                  boundary: int, units: list[UnitCost]) -> CacheUse:
    """Read (or build) the frozen prefix's states of every split; the inputs then start there."""
    backbone = [staged.embedding_modules, *([block] for block in staged.blocks)]
    key = PrefixContext(
        unit_digests=tuple(weights_digest(unit) for unit in backbone[:boundary]),
        data_fingerprint=prepared.task.fingerprint,
        tokenizer=type(prepared.tokenizer).__name__ + ":" + str(prepared.tokenizer.vocab_size),
        max_length=context.config.max_length or 0, precision=context.precision,
        device_type=context.device.type, pooling=staged.pooling,
        last_boundary=staged.num_boundaries,
    )
    outcome = prefix_states(staged=staged, splits=prepared.inputs, boundary=boundary,
                            store=shared_store(context.config.cache_dir), context=key,
                            device=context.device, precision=context.precision)
    for split, entry in outcome.entries.items():
        prepared.inputs[split].cached = entry
    lengths, hidden = prepared.inputs["train"].lengths, staged.model.config.hidden_size
    builds = tuple(
        PrefixBuild(key=build.key, from_boundary=build.from_boundary,
                    to_boundary=build.to_boundary, seconds=build.seconds,
                    flops=forward_flops(units, lengths, hidden, build.from_boundary,
                                        build.to_boundary),
                    built_by_this_run=here)
        for build, here in outcome.builds("train"))
    return CacheUse(hit=outcome.hit, build_seconds=outcome.build_seconds, bytes=outcome.bytes,
                    train_builds=builds, train_bytes=outcome.entries["train"].nbytes)


def _train(context: RunContext, prepared: Prepared, staged: StagedForward, boundary: int,
           rate_of: RateOf, on_point: OnPoint | None, cache: GrowingCache | None
           ) -> TrainOutcome:
    config = context.config

    def evaluate_both(boundary: int) -> EvalPoint:
        validation, _ = _evaluate(context, prepared, staged, "validation", boundary)
        test, seconds = _evaluate(context, prepared, staged, "test", boundary)
        return EvalPoint(validation=validation, test=test, test_seconds=seconds)

    return train(model=staged.model, staged=staged, layer_map=prepared.layer_map,
                 plan=prepared.plan, inputs=prepared.inputs["train"],
                 recipe=Recipe.from_config(config), device=context.device,
                 precision=context.precision, boundary=boundary, evaluate=evaluate_both,
                 rate_of=rate_of,
                 progress=show_progress(config.disable_tqdm) and context.parallel.is_main,
                 parallel=context.parallel, on_point=on_point, cache=cache)


def _evaluate(context: RunContext, prepared: Prepared, staged: StagedForward, split: str,
              boundary: int) -> tuple[SplitMetrics, float]:
    """The metrics of ``split`` and the seconds the evaluation took."""
    result = evaluate(staged.model, staged, prepared.inputs[split], boundary=boundary,
                      batch_size=context.config.per_device_eval_batch_size,
                      device=context.device, precision=context.precision,
                      parallel=context.parallel)
    if not math.isfinite(result.loss):  # NaN logits: JSON cannot hold them, nor can a report
        raise TrainingError(
            f"Evaluation on the {split} split gave a non-finite loss ({result.loss}): the model's "
            "outputs are not finite. Lower the learning rate or use fp32, and check the model's "
            "weights for NaN or infinite values.")
    if prepared.task.regression:
        metrics = regression_metrics(result.logits, result.labels, result.loss)
    else:
        metrics = classification_metrics(result.logits, result.labels,
                                         prepared.task.label_names, result.loss)
    return metrics, result.seconds


def _save_model(context: RunContext, prepared: Prepared, model: PreTrainedModel,
                record: RunRecord) -> str | None:
    """Save the model (``--save-model``, or ``--push-to-hub`` which needs it saved) with a card
    of ``record``'s numbers; return its folder."""
    config = context.config
    if not (config.save_model or config.push_to_hub) or not context.parallel.is_main:
        return None
    folder = save_finetuned(model, prepared.tokenizer, config, record=record,
                            trained=prepared.plan.ever_trainable(), lora=prepared.plan.lora)
    return str(folder)


def _data_summary(prepared: Prepared) -> DataSummary:
    task = prepared.task
    return DataSummary(
        source=task.source, text_column=task.text_column, label_column=task.label_column,
        label_names=task.label_names, num_labels=task.num_labels,
        problem_type=task.problem_type,
        sizes={s: len(task.splits[s]) for s in SPLITS},
        label_counts=None if task.regression else {s: _label_counts(task, s) for s in SPLITS},
        train_tokens=int(prepared.inputs["train"].lengths.sum()),
        max_length=prepared.max_length, fingerprint=task.fingerprint, notes=task.notes,
        text_pair_column=task.text_pair_column, dropped=task.dropped,
    )


def _label_counts(task: TaskData, split: str) -> dict[str, int]:
    counts = np.bincount(np.asarray(task.splits[split]["label"]), minlength=task.num_labels)
    return {name: int(n) for name, n in zip(task.label_names, counts, strict=True)}


def _params(model: PreTrainedModel, layer_map: LayerMap, plan: FreezePlan, boundary: int,
            state_bytes: int, pooling: PoolingChoice) -> ParamsSummary:
    trainable, total = count_parameters(model)
    ever = plan.ever_trainable()
    sizes = {name: (p.numel(), p.element_size()) for name, p in model.named_parameters()}
    return ParamsSummary(
        trainable=trainable, total=total, trainable_percent=100.0 * trainable / total,
        ever_trainable=sum(sizes[n][0] for n in ever if n in sizes),
        task_specific_bytes=sum(count * width for n, (count, width) in sizes.items()
                                if n in ever),
        optimizer_state_bytes=state_bytes, frozen_prefix=describe_prefix(boundary),
        units=[UnitParams(unit=unit, params=sum(sizes[n][0] for n in names),
                          trainable=sum(sizes[n][0] for n in names if n in ever))
               for unit, names in layer_map.units()],
        pooling=PoolingUsed(mode=pooling.mode, own_head=pooling.own_head, reason=pooling.reason),
    )
