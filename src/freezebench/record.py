"""The run record: what one run writes, typed, and the one place its schema lives.

Every part of freezebench exchanges runs as :class:`RunRecord`: the pipeline assembles one, the
results store writes and reads it, executors relay it, the report reads the folder of them.
``docs/results-format.md`` is generated from these models (``python -m tests.results_format``), and
a test keeps it in sync.

Schema versions: 1 (up to freezebench 0.1.0) kept the blocks of a run that stopped early as empty
mappings; 2 has ``null`` there. :func:`parse_record` reads both.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from freezebench.config import RunConfig
from freezebench.strategies import strategy_label

SCHEMA_VERSION = 3
COLLAPSE_SHARE = 0.95
_ID_LABEL_LENGTH = 60
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Status(str, Enum):
    """Where a run stands; only ``completed`` records carry numbers a report uses."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _Block(BaseModel):
    # unknown keys are a bug in the writer (or a newer reader's record): refuse them
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class RunError(_Block):
    """Why a run did not complete."""

    type: str = Field(description="TrainingError (diverged), OutOfMemoryError, KeyboardInterrupt "
                                  "(cancelled), DataError/ConfigError/ModelError/StrategyError "
                                  "(bad input), RayTrialError, or a bug's exception class")
    message: str = Field(description="what happened and what to do")
    step: int | None = Field(None, description="the step whose loss stopped being finite")


class DataSummary(_Block):
    """The data as it was loaded, carved and subsampled."""

    source: str = Field(description="hub id or local path the data came from")
    text_column: str = Field(description="the source's column read as text")
    label_column: str = Field(description="the source's column read as label")
    label_names: list[str] = Field(description="class names; class id i is label_names[i] "
                                               "(regression: [\"score\"])")
    num_labels: int = Field(description="number of classes (regression: 1, the one output)")
    problem_type: str | None = Field(None, description="classification | regression (null in "
                                                       "records before it was recorded: "
                                                       "classification)")
    sizes: dict[str, int] = Field(description="examples per split (train, validation, test)")
    train_tokens: int = Field(description="real (non-padding) tokens of the training split")
    max_length: int = Field(description="longest tokenized example over the three splits")
    fingerprint: str = Field(description="hash of the splits' texts and labels as used")
    notes: list[str] = Field(description="what was done to the data (splits carved, subsets)")
    label_counts: dict[str, dict[str, int]] | None = Field(
        None, description="examples of each class (by name) per split; what the trivial "
                          "baselines are computed from")
    text_pair_column: str | None = Field(
        None, description="the source's column read as the second text of a sentence pair "
                          "(null: single texts)")
    dropped: dict[str, dict[str, int]] | None = Field(
        None, description="rows dropped by --drop-invalid-rows, per split and reason (missing "
                          "text, empty text, missing text pair, empty text pair, missing "
                          "label); null: not asked to drop")


class UnitParams(_Block):
    """Parameters of one unit of the layer map."""

    unit: str = Field(description="embeddings, blocks[i], pooler or head")
    params: int = Field(description="parameters of the unit")
    trainable: int = Field(description="of those, the ones that train at some point of the run")


class PoolingUsed(_Block):
    """What the classification head read of the last hidden states."""

    mode: str = Field(description="cls (each example's first token), last (its last real "
                                  "token) or mean (the mean over its real tokens)")
    own_head: bool = Field(description="whether the architecture's own head reads this way")
    reason: str = Field(description="why: asked for, or what auto found")


class ParamsSummary(_Block):
    """What trains."""

    trainable: int = Field(description="parameters that train at the end of the run")
    total: int = Field(description="all parameters, adapters included")
    trainable_percent: float = Field(description="100 x trainable / total")
    ever_trainable: int = Field(description="parameters that train at some point (gradual "
                                            "unfreezing)")
    task_specific_bytes: int = Field(description="bytes a deployment stores per task (the "
                                                 "trained tensors)")
    optimizer_state_bytes: int = Field(description="AdamW's state at the end of training")
    frozen_prefix: str = Field(description="units that run in inference mode without autograd, "
                                           "e.g. embeddings+blocks[0:3]")
    units: list[UnitParams] = Field(description="bottom to top")
    pooling: PoolingUsed | None = Field(None, description="what the head read (absent in "
                                                          "records from before the setting)")


class SplitMetrics(_Block):
    """Task metrics on one split: a classifier's (0-1 scale) or a regression's (the others null)."""

    accuracy: float | None = Field(description="share of examples classified correctly")
    f1: float | None = Field(description="binary: F1 of class 1; more classes: macro-F1")
    f1_macro: float | None = Field(description="mean of the per-class F1")
    precision: float | None = Field(description="binary: of class 1; more classes: macro")
    recall: float | None = Field(description="binary: of class 1; more classes: macro")
    loss: float = Field(description="mean cross-entropy (regression: mean squared error)")
    per_class_f1: dict[str, float] | None = Field(description="F1 of each class, by class name")
    samples: int = Field(description="examples scored")
    predicted: dict[str, int] | None = Field(None, description="examples predicted as each "
                                                               "class, by class name")
    collapsed: bool | None = Field(
        None, description="the predictions use fewer classes than the labels do, or put over "
                          f"{COLLAPSE_SHARE:.0%} of the examples in one class where the labels "
                          "do not (regression: every prediction is the same value)")
    pearson: float | None = Field(None, description="regression: Pearson's r of predictions and "
                                                    "scores (null when the predictions are "
                                                    "constant)")
    spearman: float | None = Field(None, description="regression: Spearman's rank correlation "
                                                     "(null when the predictions are constant)")
    mse: float | None = Field(None, description="regression: mean squared error")


class Metrics(_Block):
    """The model's metrics after training (at the selected evaluation)."""

    validation: SplitMetrics = Field(description="the split that chooses (learning rates, the "
                                                 "best checkpoint)")
    test: SplitMetrics = Field(description="the split that reports")
    selected_step: int | None = Field(None, description="the step of the evaluation reported: "
                                                        "the last, or the best on validation "
                                                        "(select_checkpoint)")


class HistoryEntry(_Block):
    """One point of the training history: every ``logging_steps``, every ``eval_steps`` (with
    metrics), at step 0 and at the end. Times and FLOPs are cumulative, evaluation excluded."""

    step: int = Field(description="optimizer steps so far")
    epoch: float = Field(description="passes over the training split so far (fractional)")
    examples: int | None = Field(None, description="training examples seen so far (None in "
                                                   "records before schema 3)")
    seconds: float = Field(description="training seconds so far, as executed (evaluation and "
                                       "cache builds excluded)")
    flops: float | None = Field(None, description="training FLOPs so far, as executed")
    standalone_seconds: float | None = Field(
        None, description="seconds so far as if the run stood alone: plus the frozen prefix's "
                          "forward over the training split, whoever built it")
    standalone_flops: float | None = Field(None, description="FLOPs so far, standalone")
    train_loss: float | None = Field(None, description="mean training loss since the previous "
                                                       "point (None at step 0)")
    learning_rate: float = Field(description="the rate at this step")
    trainable_params: int = Field(description="parameters training at this step")
    validation: SplitMetrics | None = Field(None, description="metrics at an evaluation point")
    test: SplitMetrics | None = Field(None, description="test metrics at an evaluation point, "
                                                        "for the curves (never used to choose)")


class FreezeEvent(_Block):
    """A unit an adaptive strategy (autofreeze, freezeout) froze during training."""

    unit: str = Field(description="embeddings or blocks[i]")
    step: int = Field(description="optimizer steps done when it froze; it did not train from "
                                  "then on")
    seconds: float = Field(description="training seconds so far, as executed, when it froze")


class MemoryUse(_Block):
    """What a run holds in tensors, by kind, counted the same way on any device."""

    weights_bytes: int = Field(description="every parameter as stored (frozen ones included)")
    gradients_bytes: int = Field(description="one gradient per trainable parameter")
    optimizer_state_bytes: int = Field(description="AdamW's moments of the trainable "
                                                   "parameters")
    activations_bytes: int = Field(description="tensors saved for the backward pass, at the "
                                               "largest training step")
    cached_features_bytes: int = Field(description="frozen-prefix states of the training split "
                                                   "that training read (host memory on a GPU)")
    total_bytes: int = Field(description="the sum: an upper bound of the run's peak tensor "
                                         "memory (gradients grow as the backward pass frees "
                                         "activations, so not all of both are held at once)")


class PrefixBuild(_Block):
    """One build of frozen-prefix states of the training split that a run's states are made of."""

    key: str = Field(description="the cache entry it built")
    from_boundary: int = Field(description="the boundary it started from (0: the tokens)")
    to_boundary: int = Field(description="the boundary it computed")
    seconds: float = Field(description="time of this build alone")
    flops: float = Field(description="forward FLOPs of this build")
    built_by_this_run: bool = Field(description="false: another run built it and this run "
                                                "read it")


class Efficiency(_Block):
    """What the run cost (see README, FLOPs)."""

    train_seconds: float = Field(description="wall time of the training steps alone, evaluation "
                                             "excluded")
    train_samples_per_second: float = Field(description="training examples / train_seconds")
    train_tokens_per_second: float = Field(description="real training tokens / train_seconds")
    eval_samples_per_second: float = Field(description="on the test split")
    evaluation_seconds: float | None = Field(
        None, description="every evaluation during training, both splits (outside "
                          "train_seconds; None before schema 3)")
    peak_memory_mb: float = Field(description="GPU: max_memory_allocated after a reset; CPU: "
                                              "peak RSS growth")
    memory_kind: str = Field(description="cuda_allocated | cpu_rss_growth")
    train_flops: float = Field(description="executed, with freezing and the cache taken into "
                                           "account")
    train_flops_naive: float = Field(description="the same run without the frozen-prefix cache "
                                                 "and with the last block whole")
    cache_build_flops: float = Field(description="forward FLOPs of the frozen prefix over the "
                                                 "data, when the run caches it")
    cache_hit: bool = Field(description="the run read frozen-prefix states another run built")
    cache_build_seconds: float = Field(description="one-off time this run spent building "
                                                   "frozen-prefix states (0: none built)")
    cache_bytes: int = Field(description="size of the cached states this run read (all splits)")
    timing_method: str = Field(description="what train_seconds measures, in words")
    precision: str = Field(description="what training ran in: config.precision resolved")
    dropout_masks: str = Field(description="who drew dropout masks: numpy | torch")
    steps: int = Field(description="optimizer steps (global batches)")
    world_size: int = Field(description="processes (devices) that trained together")
    effective_train_batch_size: int = Field(description="examples per optimizer step")
    device_hours: float = Field(description="(train_seconds + cache_build_seconds) x world_size "
                                            "/ 3600")
    price_per_hour: float = Field(description="USD per device hour (config.price_per_hour)")
    standalone_train_seconds: float | None = Field(
        None, description="what one run of this config costs on its own from scratch: "
                          "train_seconds plus its frozen prefix's forward over the training "
                          "split (the prefix_builds' seconds)")
    standalone_train_flops: float | None = Field(
        None, description="train_flops plus the prefix_builds' FLOPs")
    prefix_builds: list[PrefixBuild] = Field(
        default_factory=list, description="the cache builds, shallow to deep, whose states of "
                                          "the training split this run trained on")
    memory: MemoryUse | None = Field(None, description="peak tensor memory, by kind")
    cost_usd: float = Field(description="device_hours x price_per_hour")


class Environment(BaseModel):
    """Where the run measured; plus one key per library (torch, transformers, ...) with its
    version."""

    model_config = ConfigDict(extra="allow")

    device: str = Field(description="cpu | cuda")
    device_name: str = Field(description="GPU name, or the CPU's model name")
    cpu_count: int | None = Field(description="logical CPUs of the machine")
    torch_threads: int = Field(description="torch's intra-op threads")
    python: str = Field(description="Python version")
    platform: str = Field(description="operating system and architecture")
    freezebench: str = Field(description="freezebench version")
    git_commit: str | None = Field(description="the freezebench checkout's commit (null when "
                                               "installed from a package)")
    git_dirty: bool | None = Field(description="tracked files differed from that commit")
    cuda: str | None = Field(None, description="CUDA version torch was built with (null "
                                               "without a GPU)")
    cudnn: int | None = Field(None, description="cuDNN version")
    nvidia_driver: str | None = Field(None, description="the NVIDIA driver's version")
    gpu_count: int | None = Field(None, description="GPUs this process could see")


class RunRecord(_Block):
    """One run: its config, what it measured, and how it ended."""

    schema_version: int = Field(SCHEMA_VERSION, description="this format's version")
    id: str = Field(description="<strategy-label>-lr<lr>-s<seed>-<hash>, from the resolved config")
    status: Status = Field(description="only completed records carry numbers a report uses")
    error: RunError | None = Field(None, description="set when the run did not complete")
    strategy_label: str = Field(description="strategy name plus its non-default parameters, "
                                            "e.g. bottom(k=4)")
    config: dict[str, Any] = Field(description="the resolved RunConfig, every field")
    started_at: str = Field(description="ISO 8601, UTC")
    finished_at: str | None = Field(None, description="ISO 8601, UTC; null while running")
    data: DataSummary | None = Field(None, description="the data the run trained and scored on")
    params: ParamsSummary | None = Field(None, description="what trained")
    metrics: Metrics | None = Field(None, description="validation and test metrics at the end")
    efficiency: Efficiency | None = Field(None, description="time, memory, FLOPs and cost")
    history: list[HistoryEntry] = Field(default_factory=list,
                                        description="training history, oldest first")
    freezing: list[FreezeEvent] | None = Field(
        None, description="adaptive strategies: the units frozen during training, bottom up, "
                          "with when (null for strategies fixed in advance)")
    env: Environment | None = Field(None, description="device, versions and commit")
    saved_model: str | None = Field(None, description="folder of the model saved with "
                                                      "--save-model")

    @property
    def completed(self) -> bool:
        return self.status is Status.COMPLETED

    def to_json(self) -> dict[str, Any]:
        """The record as it is stored."""
        return self.model_dump(mode="json")

    def summary_line(self) -> str:
        """``<id>  <status>  test F1 <f1>  train <seconds> s`` (a regression: test Pearson; and a
        failed run's error)."""
        name, value = "F1", self.metrics.test.f1 if self.metrics else None
        if self.metrics and self.metrics.test.mse is not None:
            name, value = "Pearson", self.metrics.test.pearson
        shown = f"{value:.4f}" if value is not None else "-"
        seconds = f"{self.efficiency.train_seconds:.1f} s" if self.efficiency else "-"
        line = f"{self.id}  {self.status.value}  test {name} {shown}  train {seconds}"
        if self.error:
            first = self.error.message.splitlines()[0] if self.error.message else ""
            line += f"  ({self.error.type}: {first})"
        return line


# --------------------------------------------------------------------------- ids and builders


def safe_name(text: str, max_length: int = 80) -> str:
    """A file-name-safe form of ``text``: no separators, no leading dots, bounded length (run ids
    and every name taken from configs or data)."""
    cleaned = _UNSAFE.sub("-", text).strip("-.")
    return (cleaned or "run")[:max_length]


def now() -> str:
    """The current time as records hold it (ISO 8601, UTC, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_id(config: RunConfig, world_size: int = 1) -> str:
    """``<strategy-label>-lr<lr>-s<seed>-<hash>``: the hash covers what the run measures (the
    config without its output-only fields); a run on ``N > 1`` processes trains on ``N x`` the
    batch, so it is another run."""
    fingerprint = config.fingerprint()
    if world_size > 1:
        fingerprint = hashlib.sha256(
            f"{fingerprint}:world_size={world_size}".encode()).hexdigest()[:12]
    label = strategy_label(config.strategy, config.strategy_params)
    label = safe_name(label.replace("=", "").replace(",", "-"), max_length=_ID_LABEL_LENGTH)
    return f"{label}-lr{config.learning_rate:g}-s{config.seed}-{fingerprint}"


def new_record(config: RunConfig, world_size: int = 1) -> RunRecord:
    """A record of ``config`` that has just started."""
    return RunRecord(
        id=run_id(config, world_size), status=Status.RUNNING,
        strategy_label=strategy_label(config.strategy, config.strategy_params),
        config=config.model_dump(mode="json"), started_at=now(),
    )


def stopped_record(config: RunConfig, status: Status, error: RunError, *,
                   base: RunRecord | None = None, world_size: int = 1) -> RunRecord:
    """The record of a run that failed or was cancelled: ``base`` (what it measured before the
    stop) or a new one, with ``status`` and ``error`` set."""
    record = base if base is not None else new_record(config, world_size)
    return record.model_copy(update={"status": status, "error": error, "finished_at": now()})


def error_of(exc: BaseException) -> RunError:
    """``exc`` as a record's error (with the step of a diverged run)."""
    return RunError(type=type(exc).__name__, message=str(exc) or type(exc).__name__,
                    step=getattr(exc, "step", None))


# --------------------------------------------------------------------------- reading


def parse_record(payload: Any) -> RunRecord:
    """A record from its JSON form, of this schema version or an earlier one.

    Raises ``ValueError`` (with the reason) for anything that is not a readable record.
    """
    if not isinstance(payload, dict) or not {"id", "status", "config"} <= payload.keys():
        raise ValueError("not a freezebench record (needs id, status and config)")
    version = payload.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r} is newer than this freezebench reads "
                         f"({SCHEMA_VERSION}); upgrade freezebench")
    if version == 1:
        payload = _from_v1(payload)
    if version < 3:
        payload = _from_v2(payload)
    try:
        return RunRecord.model_validate(payload)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).splitlines()
        raise ValueError(f"not a valid record: {' '.join(first[:3])}") from None


def _from_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept the blocks a stopped run never reached as empty mappings."""
    upgraded = dict(payload, schema_version=SCHEMA_VERSION)
    for block in ("data", "params", "metrics", "efficiency", "env"):
        if not upgraded.get(block):
            upgraded[block] = None
    return upgraded


def _from_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Versions 1-2 kept one history point per epoch with that epoch's seconds; now points hold
    cumulative seconds."""
    upgraded = dict(payload, schema_version=SCHEMA_VERSION)
    history, seconds = [], 0.0
    for entry in payload.get("history") or []:
        seconds += entry.get("seconds", 0.0)
        history.append({**entry, "epoch": float(entry["epoch"]), "seconds": seconds})
    upgraded["history"] = history
    return upgraded
