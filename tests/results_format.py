"""docs/results-format.md, generated from the typed record (freezebench.record).

``tests/test_results.py`` checks that the page matches. After changing the record, regenerate it::

    python -m tests.results_format > docs/results-format.md
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from freezebench.record import SCHEMA_VERSION, RunRecord, Status

HEAD = """# The results format

This page is generated from `freezebench.record` (`python -m tests.results_format >
docs/results-format.md`); a test keeps it in sync.

A results folder holds one JSON record per run and nothing else that the report needs:

    <output-dir>/
      runs/<run-id>.json        one record per run, written atomically (temp file, fsync,
                                os.replace)
      models/<run-id>/          only with --save-model: the model (by default whole, as
                                transformers.pipeline loads it; with --save-format delta the
                                trained tensors alone), tokenizer, model card (README.md) and
                                freezebench.json; a LoRA run's PEFT adapter in adapter/
      tensorboard/<run-id>/     only with --report-to tensorboard (or all): its event files
      mlflow.db                 only with --report-to mlflow (or all) and no MLFLOW_TRACKING_URI
      wandb/                    only with --report-to wandb (or all): W&B's local run files
      study.yaml                the resolved study, written by `freezebench sweep`
      ray/sweep-<time>/         only with `sweep --executor ray`: Ray Tune's experiment state
                                (what `Tuner.restore` resumes) and freezebench-sweep.json, the
                                runs it holds
      report.md, report.html    written by `freezebench report`

The run id is `<strategy-label>-lr<learning-rate>-s<seed>-<hash>`, where `<hash>` is the first 12
hex digits of the SHA-256 of the resolved config without its output-only fields (`output_dir`,
`save_model`, `save_format`, `push_to_hub`, `hub_model_id`, `disable_tqdm`, `cache_dir`,
`report_to`, `run_group`). A run on `N > 1` processes (`torchrun`) trains on `N` times the
per-device batch, so it is another run: its `<hash>` is the first 12 hex digits of the SHA-256 of
`<that hash>:world_size=<N>`. Names are
sanitised to `[A-Za-z0-9._-]`, so nothing in a config or a dataset can make a record land outside
`runs/`.

In Python, `freezebench.results.read_records(folder)` gives the records as `RunRecord` objects and
`freezebench.load_records(folder)` as a pandas DataFrame, one row per run.
"""

TAIL = """
## Reading records

A record alone reproduces its run: `config` is the resolved configuration (`freezebench run
--config` accepts it as it is, with another `output_dir`), `data.fingerprint` identifies the data as
it was loaded, carved and subsampled, and `env` the code and libraries that ran. On the CPU the same
config gives identical metrics.

A failed or cancelled record has `error` set and `null` in place of the blocks it did not measure.
Readers must treat any record whose status is not `completed` as missing numbers. `error.type` is
`TrainingError` for a run that diverged (with `error.step`, the step its loss stopped being finite),
`OutOfMemoryError` for a run that ran out of GPU or CPU memory (the message says what to make
smaller), `KeyboardInterrupt` for a cancelled run, the user-error class (`DataError`,
`ConfigError`, `ModelError`, `StrategyError`) for bad input, `RayTrialError` for a Ray trial that
crashed on every attempt, and the exception's class for a bug.

Earlier schema versions still load: version 1 (freezebench 0.1.0 before the typed record) kept the
blocks a stopped run never reached as empty mappings; they read as `null`. A record of a newer
version than the reader's is refused with a message to upgrade.

A record file that cannot be read (cut short, not JSON, not a valid record) is reported by
`freezebench ls runs`, skipped by `report`, and moved aside to `<name>.corrupt-<time>` by the next
`sweep`, which redoes its run. Writes never leave a partial record: a killed writer leaves at most a
hidden `.<run-id>.json.<random>.tmp` file, which no reader treats as a record.

## Runs on several processes

Under `torchrun` or `accelerate launch`, every process trains and only rank 0 writes the record
(and the saved model). Throughput (`train_samples_per_second`, `train_tokens_per_second`) counts the
examples of all ranks; `peak_memory_mb` is rank 0's; validation and test metrics are over the whole
split (each rank scores a shard of it and the ranks share their logits).
"""


def type_text(annotation: Any) -> str:
    """A field's type as the JSON reader sees it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(a) for a in args)
    if origin is list:
        return f"list of {type_text(args[0])}"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, Status):
        return " \\| ".join(f"`{s.value}`" for s in Status)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return {str: "string", int: "integer", float: "number", bool: "boolean",
            Any: "any"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model its fields hold, in the order they appear."""
    found: list[type[BaseModel]] = [model]
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            item = stack.pop()
            stack.extend(typing.get_args(item))
            if isinstance(item, type) and issubclass(item, BaseModel):
                found += [m for m in nested_models(item) if m not in found]
    return found


def model_section(model: type[BaseModel]) -> str:
    lines = [f"### {model.__name__}", "", (model.__doc__ or "").strip(), "",
             "| field | type | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        required = "" if field.is_required() else " (optional)"
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {type_text(field.annotation)}{required} | {meaning} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    sections = [model_section(m) for m in nested_models(RunRecord)]
    body = (f"\n## A record (schema version {SCHEMA_VERSION})\n\n" + "\n".join(sections))
    return HEAD + body + TAIL


if __name__ == "__main__":
    print(render(), end="")
