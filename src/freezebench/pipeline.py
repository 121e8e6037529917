"""One run, end to end: config -> data -> model -> strategy -> engine -> measure -> record."""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from transformers import DataCollatorWithPadding, PreTrainedModel

from freezebench import results
from freezebench.batching import SplitInputs
from freezebench.cache import shared_store, weights_digest
from freezebench.config import RunConfig
from freezebench.data import TaskData, load_task_data, resolve_max_length, tokenize_splits
from freezebench.distributed import DataParallel, from_environment, is_main_process
from freezebench.dropout import resolve_dropout_masks, use_numpy_dropout
from freezebench.engine import (
    Recipe,
    apply_trainable,
    describe_prefix,
    evaluate,
    resolve_device,
    resolve_precision,
    show_progress,
    store_frozen_weights_for_autocast,
    train,
)
from freezebench.env import environment
from freezebench.errors import StorageError, TrainingError
from freezebench.failures import explain_failure
from freezebench.measure import PeakMemory, UnitCost, classification_metrics, cost, train_flops
from freezebench.model import (
    LayerMap,
    StagedForward,
    build_layer_map,
    check_max_length,
    computes_first_token_only,
    count_parameters,
    load_model,
    load_tokenizer,
)
from freezebench.prefix import PrefixContext, prefix_states
from freezebench.saving import save_finetuned
from freezebench.strategies import FreezePlan, check_params, plan_for, strategy_label

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def record_id(config: RunConfig, world_size: int = 1) -> str:
    """The run's id; a run on ``N > 1`` processes trains on ``N x`` the batch, another run."""
    label = strategy_label(config.strategy, config.strategy_params)
    fingerprint = config.fingerprint()
    if world_size > 1:
        fingerprint = hashlib.sha256(
            f"{fingerprint}:world_size={world_size}".encode()).hexdigest()[:12]
    return results.run_id(label, config.learning_rate, config.seed, fingerprint)


def new_record(config: RunConfig, world_size: int = 1) -> dict[str, Any]:
    """The skeleton every record starts from (also what a failed run leaves)."""
    return {
        "schema_version": results.SCHEMA_VERSION,
        "id": record_id(config, world_size),
        "status": "running",
        "error": None,
        "strategy_label": strategy_label(config.strategy, config.strategy_params),
        "config": config.model_dump(mode="json"),
        "started_at": _now(),
        "finished_at": None,
        "data": {}, "params": {}, "metrics": {}, "efficiency": {}, "history": [], "env": {},
    }


def run(config: RunConfig) -> dict[str, Any]:
    """Run one configuration and save its record; failures are saved too, then re-raised.

    Running out of memory (GPU or CPU) and a full disk are re-raised as the user's errors
    (:class:`OutOfMemoryError`, :class:`StorageError`) with advice; a sweep goes on after the
    first and stops at the second. Under ``torchrun``/``accelerate launch`` every process runs
    this; rank 0 saves.
    """
    check_params(config.strategy, config.strategy_params)
    results.ensure_runs_dir(config.output_dir)
    parallel = from_environment()
    record = new_record(config, parallel.world_size)
    try:
        _execute(config, record, parallel)
    except KeyboardInterrupt:
        _finish(config, record, "cancelled", "KeyboardInterrupt", "Interrupted by the user.")
        raise
    except Exception as exc:  # user mistakes (FreezebenchError) and bugs alike leave a record
        error = explain_failure(exc, config)
        _finish(config, record, "failed", type(error).__name__, str(error),
                step=getattr(error, "step", None))
        if error is exc:
            raise
        raise error from None
    record.update(status="completed", finished_at=_now())
    _save(config, record)
    return record


def _save(config: RunConfig, record: dict) -> None:
    if is_main_process():
        results.save_record(config.output_dir, record)


def _finish(config: RunConfig, record: dict, status: str, kind: str, message: str,
            step: int | None = None) -> None:
    error = {"type": kind, "message": message}
    if step is not None:
        error["step"] = step
    record.update(status=status, finished_at=_now(), error=error)
    try:
        _save(config, record)
    except StorageError as exc:  # a full disk must not hide the original error
        logger.error("Could not write the %s record %s: %s", status, record["id"], exc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def prepare(config: RunConfig) -> Prepared:
    """Data, tokenizer, model with its new head, and the strategy's plan, all validated."""
    task = load_task_data(
        config.dataset, dataset_config=config.dataset_config, text_column=config.text_column,
        label_column=config.label_column, encoding=config.encoding, seed=config.data_seed,
        max_train_samples=config.max_train_samples, max_eval_samples=config.max_eval_samples,
    )
    tokenizer = load_tokenizer(config.model, revision=config.revision,
                               trust_remote_code=config.trust_remote_code)
    model = load_model(config.model, num_labels=task.num_labels, label_names=task.label_names,
                       seed=config.seed, revision=config.revision,
                       trust_remote_code=config.trust_remote_code)
    plan = plan_for(config.strategy, config.strategy_params, build_layer_map(model))
    if plan.lora is not None:
        model = _inject_lora(model, plan.lora)
        plan = plan_for(config.strategy, config.strategy_params, build_layer_map(model))
    limit = check_max_length(model, resolve_max_length(tokenizer, config.max_length),
                             requested=config.max_length is not None)
    tokenized = tokenize_splits(task, tokenizer, limit)
    collator = DataCollatorWithPadding(tokenizer)
    inputs = {split: SplitInputs(tokenized[split], collator) for split in SPLITS}
    max_length = max(int(inputs[s].lengths.max()) for s in SPLITS)
    return Prepared(task, tokenizer, model, build_layer_map(model), plan, inputs, max_length)


def _inject_lora(model: PreTrainedModel, lora: dict) -> PreTrainedModel:
    """Add LoRA adapters in place (PEFT), keeping the model class and its parameter paths."""
    from peft import LoraConfig, inject_adapter_in_model

    return inject_adapter_in_model(LoraConfig(**lora), model)


def _execute(config: RunConfig, record: dict, parallel: DataParallel) -> None:
    device = parallel.place(resolve_device(config.device))
    precision = resolve_precision(config.precision, device)
    prepared = prepare(config)
    model, layer_map, plan = prepared.model.to(device), prepared.layer_map, prepared.plan
    dropout_masks = resolve_dropout_masks(config.dropout_masks, device)
    if dropout_masks == "numpy":
        use_numpy_dropout(model, seed=(config.seed, parallel.rank))
    boundary = apply_trainable(model, layer_map, plan.trainable_at(0.0))
    store_frozen_weights_for_autocast(model, plan.ever_trainable(), precision)
    trainable, total = count_parameters(model)
    if parallel.is_main:
        print(f"trainable params: {trainable:,} || all params: {total:,} || "
              f"trainable%: {100 * trainable / total:.4f}")
    record["data"] = _data_summary(prepared)
    record["env"] = environment(device)
    staged = StagedForward(model, layer_map)
    use_cache = config.use_cache and not plan.schedule and boundary > 0
    cache_info = {"cache_hit": False, "cache_build_seconds": 0.0, "cache_bytes": 0}
    if use_cache:
        cache_info = _attach_cache(config, prepared, staged, boundary, device, precision)
    recipe = Recipe(**{f: getattr(config, f) for f in Recipe.__dataclass_fields__})

    def on_epoch_end(epoch: int) -> dict:
        return {"validation": _evaluate(model, staged, prepared, "validation", boundary, config,
                                        device, precision, parallel)[0]}

    with PeakMemory(device) as memory:
        outcome = train(model=model, staged=staged, layer_map=layer_map, plan=plan,
                        inputs=prepared.inputs["train"], recipe=recipe, device=device,
                        precision=precision, boundary=boundary, on_epoch_end=on_epoch_end,
                        progress=_progress(config) and parallel.is_main, parallel=parallel)
    test_metrics, test_seconds = _evaluate(model, staged, prepared, "test", boundary, config,
                                           device, precision, parallel)
    record["history"] = outcome.history
    record["metrics"] = {"validation": outcome.history[-1]["validation"], "test": test_metrics}
    record["params"] = _params(model, layer_map, plan, boundary, outcome.optimizer_state_bytes)
    record["efficiency"] = _efficiency(config, prepared, model, layer_map, plan, boundary,
                                       outcome, memory, test_seconds, use_cache, cache_info,
                                       precision, dropout_masks, parallel)
    if config.save_model and parallel.is_main:
        record["saved_model"] = str(save_finetuned(model, prepared.tokenizer, config, record,
                                                   plan.ever_trainable()))


def _attach_cache(config, prepared, staged, boundary, device, precision) -> dict:
    backbone = [staged.embeddings, *staged.blocks]
    context = PrefixContext(
        unit_digests=tuple(weights_digest([unit]) for unit in backbone[:boundary]),
        data_fingerprint=prepared.task.fingerprint,
        tokenizer=type(prepared.tokenizer).__name__ + ":" + str(prepared.tokenizer.vocab_size),
        max_length=config.max_length or 0, precision=precision, device_type=device.type,
    )
    outcome = prefix_states(staged=staged, splits=prepared.inputs, boundary=boundary,
                            store=shared_store(config.cache_dir), context=context,
                            device=device, precision=precision)
    for split, entry in outcome.entries.items():
        prepared.inputs[split].cached = entry
    return {"cache_hit": outcome.hit, "cache_build_seconds": outcome.build_seconds,
            "cache_bytes": outcome.bytes}


def _evaluate(model, staged, prepared, split, boundary, config, device, precision, parallel):
    result = evaluate(model, staged, prepared.inputs[split], boundary=boundary,
                      batch_size=config.per_device_eval_batch_size, device=device,
                      precision=precision, parallel=parallel)
    if not math.isfinite(result.loss):  # NaN logits: JSON cannot hold them, nor can a report
        raise TrainingError(
            f"Evaluation on the {split} split gave a non-finite loss ({result.loss}): the model's "
            "outputs are not finite. Lower the learning rate or use fp32, and check the model's "
            "weights for NaN or infinite values.")
    metrics = classification_metrics(result.logits, result.labels, prepared.task.label_names,
                                     result.loss)
    return metrics, result.seconds


def _progress(config: RunConfig) -> bool:
    return show_progress(config.disable_tqdm)


def _data_summary(prepared: Prepared) -> dict:
    task = prepared.task
    return {
        "source": task.source, "text_column": task.text_column, "label_column": task.label_column,
        "label_names": task.label_names, "num_labels": task.num_labels,
        "sizes": {s: len(task.splits[s]) for s in SPLITS},
        "train_tokens": int(prepared.inputs["train"].lengths.sum()),
        "max_length": prepared.max_length,
        "fingerprint": task.fingerprint, "notes": task.notes,
    }


def _params(model, layer_map: LayerMap, plan: FreezePlan, boundary: int, state_bytes: int
            ) -> dict:
    trainable, total = count_parameters(model)
    ever = plan.ever_trainable()
    stored = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if n in ever)
    return {
        "trainable": trainable, "total": total,
        "trainable_percent": 100.0 * trainable / total,
        "ever_trainable": sum(p.numel() for n, p in model.named_parameters() if n in ever),
        "task_specific_bytes": stored, "optimizer_state_bytes": state_bytes,
        "frozen_prefix": describe_prefix(boundary),
        "units": [{"unit": unit, "params": sum(_numel(model, n) for n in names),
                   "trainable": sum(_numel(model, n) for n in names if n in ever)}
                  for unit, names in layer_map.units()],
    }


def _numel(model, name: str) -> int:
    return model.get_parameter(name).numel()


def _efficiency(config, prepared, model, layer_map, plan, boundary, outcome, memory,
                test_seconds, use_cache, cache_info, precision, dropout_masks, parallel) -> dict:
    ever = plan.ever_trainable()
    last_block = f"blocks[{layer_map.num_blocks - 1}]"
    cut = computes_first_token_only(model)

    def key_value_params(unit: str, names: list[str]) -> int | None:
        if not cut or unit != last_block:
            return None
        projections = layer_map.spec.key_value_projections
        return sum(_numel(model, n) for n in names if any(p in n for p in projections))

    units = [
        UnitCost(unit, sum(_numel(model, n) for n in names),
                 sum(_numel(model, n) for n in names if n in ever),
                 per_token=unit not in ("pooler", "head"), attention=unit.startswith("blocks"),
                 lookup=unit == "embeddings", key_value_params=key_value_params(unit, names))
        for unit, names in layer_map.units()
    ]
    flops = train_flops(units, prepared.inputs["train"].lengths, model.config.hidden_size,
                        config.num_train_epochs, prefix_units=boundary,
                        cached=use_cache)
    seconds = outcome.train_seconds
    billed = (seconds + cache_info["cache_build_seconds"]) * parallel.world_size  # every device
    test_size = len(prepared.inputs["test"].lengths)
    return {
        "train_seconds": seconds,
        "train_samples_per_second": outcome.samples / seconds,
        "train_tokens_per_second": outcome.tokens / seconds,
        "eval_samples_per_second": test_size / max(test_seconds, 1e-9),
        "peak_memory_mb": memory.megabytes, "memory_kind": memory.kind,
        **flops,
        **cache_info,
        "timing_method": "measured wall time of the training steps, evaluation excluded",
        "precision": precision,
        "dropout_masks": dropout_masks,
        "steps": outcome.steps,
        "world_size": parallel.world_size,
        "effective_train_batch_size": parallel.global_batch(config.per_device_train_batch_size),
        **cost(billed, config.price_per_hour),
    }
