"""One validated configuration tree for a run.

Field names follow ``transformers.TrainingArguments`` where one exists. Values resolve in the
order defaults < YAML file < command line; unknown keys are errors. The resolved config travels
inside every result record, so a record alone can reproduce its run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from freezebench.errors import ConfigError, did_you_mean

DEFAULT_MODEL = "bert-base-cased"
DEFAULT_DATASET = "rotten_tomatoes"

Precision = Literal["auto", "fp32", "bf16", "fp16"]
DropoutMasks = Literal["auto", "torch", "numpy"]
SchedulerType = Literal["linear", "cosine", "constant", "constant_with_warmup"]
SelectCheckpoint = Literal["last", "best"]
BestMetric = Literal["accuracy", "f1", "f1_macro", "precision", "recall", "pearson", "spearman",
                     "mse", "loss"]
# transformers' config.problem_type names; auto: regression for a float label with a fraction
ProblemType = Literal["auto", "classification", "regression"]
SaveFormat = Literal["pretrained", "delta"]
Pooling = Literal["auto", "cls", "mean", "last"]
ReportTo = Literal["none", "tensorboard", "mlflow", "wandb", "all"]

# Fields that say where output goes or how chatty a run is; they do not change what a run
# measures, so they are left out of the run id.
_NON_IDENTITY_FIELDS = frozenset({"output_dir", "save_model", "save_format", "push_to_hub",
                                  "hub_model_id", "disable_tqdm", "cache_dir",
                                  "report_to", "run_group"})


class RunConfig(BaseModel):
    """Everything that determines one fine-tuning run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    # what to fine-tune on what
    model: str = Field(DEFAULT_MODEL, description="Hub id or local folder of the pretrained model.")
    revision: str | None = Field(None, description="Model revision (commit) to load.")
    trust_remote_code: bool = Field(
        False, description="Run the model's own code (needs --revision).",
        json_schema_extra={"option": "--trust-remote-code"})
    dataset: str = Field(DEFAULT_DATASET, description="Hub id or local folder/file (csv, tsv, "
                                                      "json, jsonl, parquet).")
    dataset_config: str | None = Field(None, description="The hub dataset's configuration.")
    text_column: str | None = Field(None, description="Text column (default: found by common "
                                                      "names).")
    text_pair_column: str | None = Field(
        None, description="Second text of a sentence-pair task (default: found with the text "
                          "column by common pair names, e.g. sentence1/sentence2, "
                          "premise/hypothesis; --text-column given alone means single texts).")
    label_column: str | None = Field(None, description="Label column (default: found by common "
                                                       "names).")
    problem_type: ProblemType = Field(
        "auto", description="regression: one output, MSE loss, Pearson/Spearman/MSE (auto: when "
                            "the label column holds floats with a fractional value).")
    encoding: str | None = Field(None, description="Text encoding of csv/json files.")
    drop_invalid_rows: bool = Field(False, description="Drop rows with a missing or empty text "
                                                       "or a missing label, counted in the "
                                                       "record (off: such a row stops the run).")
    max_length: int | None = Field(None, ge=8, description="Longest tokenized example "
                                                           "(default: the model's limit).")
    max_train_samples: int | None = Field(None, ge=2, description="Train on a seeded subset "
                                                                  "of this size.")
    max_eval_samples: int | None = Field(None, ge=1, description="Validate and test on seeded "
                                                                 "subsets of this size.")
    # Off by default: at a few dozen steps, same-length batches made some seeds collapse.
    group_by_length: bool = Field(False, description="Batches of similar length (off: random "
                                                     "batches, as the Trainer).")
    packed_batches: bool = Field(True, description="Examples of a training batch share rows, "
                                                   "attention kept within each: same batches, "
                                                   "less padding.")

    # how to freeze
    strategy: str = Field("full", description="Freezing strategy (freezebench ls strategies).")
    strategy_params: dict[str, Any] = Field(
        default_factory=dict, description="Strategy parameter key=value (repeatable).",
        json_schema_extra={"option": "--strategy-param"})
    pooling: Pooling = Field(
        "auto", description="What the head reads of the last hidden states: the first token "
                            "(cls), the last real one (last, decoders), the mean over the "
                            "tokens (mean); auto: the architecture's own head, or mean for a "
                            "sentence-transformers checkpoint that pools by mean.")

    # the recipe (the study's: lr 2e-5, batch 16, 1 epoch, weight decay 0.01)
    learning_rate: float = Field(2e-5, gt=0, le=1.0, description="Peak learning rate (AdamW).")
    per_device_train_batch_size: int = Field(16, ge=1, description="Training examples per step "
                                                                   "and device.")
    per_device_eval_batch_size: int = Field(64, ge=1, description="Evaluation batch size.")
    num_train_epochs: int = Field(1, ge=1, description="Passes over the training split.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases and "
                                                        "LayerNorm).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to train (overrides "
                                                           "num_train_epochs).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Batches whose gradients add "
                                                                  "up to one optimizer step.")
    lr_scheduler_type: SchedulerType = Field("linear", description="Learning-rate schedule after "
                                                                   "the warm-up.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps of linear warm-up.")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warm-up (overrides "
                                                   "warmup_ratio when above 0).")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(42, ge=0, description="Seed of the head, dropout and batch order.")
    # apart from ``seed``, so every seed of a study trains and is scored on the same examples
    data_seed: int = Field(42, ge=0, description="Seed of carved splits and subsets (as "
                                                 "TrainingArguments.data_seed).")
    # when to log and evaluate, and which evaluation's model the run reports
    logging_steps: int | None = Field(None, ge=1, description="Steps between training-history "
                                                              "points (default: about 20 a run).")
    eval_steps: int | None = Field(None, ge=1, description="Steps between evaluations of "
                                                           "validation and test (default: about 5 "
                                                           "a run; also at step 0 and the end).")
    select_checkpoint: SelectCheckpoint = Field(
        "last", description="Report the model at the last evaluation, or at the best one on "
                            "validation (as load_best_model_at_end).")
    metric_for_best_model: BestMetric = Field(
        "f1_macro", description="Validation metric that picks the best evaluation (loss, mse: "
                                "lowest wins; pearson, spearman, mse: regression only).")
    precision: Precision = Field("auto", description="auto: bf16 where the hardware has it "
                                                     "natively, else fp32.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N.")

    # speed
    use_cache: bool = Field(True, description="Reuse the frozen prefix's outputs.",
                            json_schema_extra={"option": "--cache/--no-cache"})
    cache_dir: str | None = Field(None, description="Folder for the frozen-prefix cache (default: "
                                                    "memory, then a temporary folder).")
    # numpy draws CPU masks faster than torch, same distribution from another random stream
    # (freezebench.model.dropout)
    dropout_masks: DropoutMasks = Field("auto", description="Who draws dropout masks (auto: "
                                                            "numpy on a CPU, torch on a GPU).")

    # accounting
    price_per_hour: float = Field(1.0, ge=0, description="Device price, USD per hour.")

    # output
    output_dir: str = Field("freezebench-results", description="Results folder.")
    save_model: bool = Field(False, description="Keep the fine-tuned model in "
                                                "<output_dir>/models/<run-id>, with a model card.")
    save_format: SaveFormat = Field(
        "pretrained", description="pretrained: a whole model that transformers.pipeline loads "
                                  "(LoRA merged, and its PEFT adapter in adapter/); delta: only "
                                  "the trained tensors (freezebench.load_finetuned loads both).")
    push_to_hub: bool = Field(False, description="Upload the saved model to the Hugging Face Hub "
                                                 "(saves it as --save-model does).")
    hub_model_id: str | None = Field(None, description="Hub repository to push to, e.g. "
                                                       "user/name (default: the run id under "
                                                       "your account).")
    disable_tqdm: bool | None = Field(None, description="No progress bars (default: shown on a "
                                                        "terminal only).")
    report_to: ReportTo = Field(
        "none", description="Experiment tracker to log to (as TrainingArguments.report_to): "
                            "tensorboard (<output_dir>/tensorboard/<run-id>), mlflow "
                            "(MLFLOW_TRACKING_URI, default <output_dir>/mlflow.db), wandb (WANDB_* "
                            "settings), or all: those of the three that are installed.")
    run_group: str | None = Field(
        None, description="The trackers' group (MLflow experiment, W&B group) of this run "
                          "(default: the study's name in a sweep, else the output folder's "
                          "name).")

    @field_validator("model", "dataset", "strategy")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value or not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("hub_model_id")
    @classmethod
    def _hub_repo_id(cls, value: str | None) -> str | None:
        """Checked before training rather than when the push fails after it."""
        if value is not None:
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(value)
            except HFValidationError:
                raise ValueError("not a Hub repository id: use 'name' or 'namespace/name', of "
                                 "letters, digits, '-', '_' and '.'") from None
        return value

    def identity(self) -> dict[str, Any]:
        """The fields that determine what a run measures (the basis of its id)."""
        return self.model_dump(mode="json", exclude=set(_NON_IDENTITY_FIELDS))

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`identity`."""
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every way it can be wrong into a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file '{path}' does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"Config file '{path}' is not valid YAML{where}: {problem}.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file '{path}' is not UTF-8 text (byte offset {exc.start})."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of keys to values.")
    return data


def build_model(model_cls: type[BaseModel], values: dict[str, Any], source: str) -> Any:
    """Validate ``values`` into ``model_cls``; errors name the key, the value and the fix."""
    try:
        return model_cls.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model_cls, source)) from None


def format_validation_error(exc: ValidationError, model_cls: type[BaseModel], source: str) -> str:
    lines = [f"Invalid configuration in {source}:"]
    known = list(model_cls.model_fields)
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(str(err["loc"][-1]), known)
            lines.append(f"  unknown key '{key}'.{hint} Known keys: {', '.join(known)}.")
        elif err["type"] == "missing":  # its "input" is the whole mapping: not worth quoting
            lines.append(f"  '{key}' is required but missing.")
        else:
            lines.append(f"  '{key}' = {err.get('input')!r}: {err['msg']}.")
    return "\n".join(lines)


def resolve_run_config(
    config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults < YAML file < command-line overrides (``None`` overrides are ignored)."""
    values: dict[str, Any] = {}
    source = "command-line options"
    if config_file is not None:
        values.update(read_yaml(config_file))
        source = f"'{config_file}' and command-line options"
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_model(RunConfig, values, source)


def parse_key_values(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """Parse ``key=value`` pairs; values read as YAML scalars (``4`` -> int, ``true`` -> bool)."""
    parsed: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} expects key=value, got '{pair}'.")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            parsed[key.strip()] = raw
    return parsed
