"""Benchmark: a freezebench study against the same study run with ``transformers.Trainer``.

Every run of a study YAML (``--quick``: ``configs/quick.yaml``) is made twice in one process:

* freezebench: ``freezebench.pipeline.run(config)``, what ``freezebench sweep`` does per run; its
  time is ``efficiency.train_seconds + efficiency.cache_build_seconds`` (the frozen-prefix cache
  is charged to the run that built it; later runs that reuse it pay nothing for it);
* the peer: the model, plan, tokenizer and tokenized splits from ``freezebench.pipeline.prepare``
  (same seed before the head is created, LoRA injected the same way), ``requires_grad=False`` on
  the parameters the strategy freezes, ``DataCollatorWithPadding`` and a plain ``Trainer`` with the
  same hyperparameters; its time is the Trainer's own ``train_runtime``.

Test and validation F1 come from the same metric function on both sides, peak memory from the same
``PeakMemory`` region around training alone.

    python benchmarks/trainer_vs_freezebench.py --quick

The last line printed is ``sweep speedup vs Trainer: X.XX`` (Trainer total / freezebench total).
See benchmarks/README.md for what is measured and the results.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from freezebench.config import RunConfig  # noqa: E402
from freezebench.engine.precision import resolve_device, resolve_precision
from freezebench.env import environment  # noqa: E402
from freezebench.errors import FreezebenchError  # noqa: E402
from freezebench.measure.memory import PeakMemory
from freezebench.measure.quality import classification_metrics
from freezebench.model.layer_map import build_layer_map
from freezebench.pipeline import prepare, run  # noqa: E402
from freezebench.results import write_json_atomic  # noqa: E402
from freezebench.strategies import plan_for, strategy_label  # noqa: E402
from freezebench.study.config import expand, load_study, parse_study

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK_STUDY = REPO_ROOT / "configs" / "quick.yaml"
FINAL_LINE = "sweep speedup vs Trainer: {:.2f}"
SIDES = ("freezebench", "trainer")


# --------------------------------------------------------------------------- workload


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", type=Path, help="a study YAML file (see configs/)")
    which.add_argument("--quick", action="store_true",
                       help=f"the quick CPU study, {QUICK_STUDY.relative_to(REPO_ROOT)}")
    parser.add_argument("--model", help="hub id or folder, instead of the study's model")
    parser.add_argument("--dataset", help="hub id, folder or file, instead of the study's dataset")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda [%(default)s]")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="auto: each side's default (freezebench: bf16 where the hardware "
                             "has native bf16, else fp32; Trainer: fp32); any other value goes "
                             "to both sides")
    parser.add_argument("--trainer-group-by-length", action="store_true",
                        help="also give the Trainer length-grouped batches (freezebench's "
                             "default; the Trainer's default is off)")
    parser.add_argument("--order", default="trainer-first",
                        choices=["trainer-first", "freezebench-first", "alternate"],
                        help="which side runs first for each run of the study [%(default)s]")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads for both sides [torch's default]")
    parser.add_argument("--output-dir", type=Path, default=Path("results/trainer_vs_freezebench"))
    return parser.parse_args(argv)


@dataclass
class Workload:
    study: str
    configs: list[RunConfig]
    device: str
    precision: str
    trainer_group_by_length: bool
    order: str
    output_dir: Path


def resolve_workload(args: argparse.Namespace) -> Workload:
    """The study's runs with the command line's model, dataset, device and precision."""
    path = QUICK_STUDY if args.quick else args.study
    values = load_study(path).model_dump(exclude_none=True)
    if args.model:
        values.pop("models", None)
        values["model"] = args.model
    if args.dataset:
        values["dataset"] = args.dataset
    device = resolve_device(args.device)
    if device.type == "cuda" and (device.index or 0) != 0:
        raise FreezebenchError("The Trainer uses the first visible GPU; choose the GPU with "
                               "CUDA_VISIBLE_DEVICES and pass --device cuda.")
    # the Trainer's model reads the first token through the architecture's own pooler; auto
    # would pool a sentence-transformers checkpoint (the offline MiniLM) by its mean instead
    values["recipe"] = {"pooling": "cls", **values.get("recipe", {}), "device": str(device),
                        "precision": args.precision, "disable_tqdm": True}
    values["output_dir"] = str(args.output_dir / "freezebench")
    configs = expand(parse_study(values, f"'{path}'"))
    check_trainer_can_run(configs)
    return Workload(study=str(path), configs=configs, device=str(device),
                    precision=args.precision, trainer_group_by_length=args.trainer_group_by_length,
                    order=args.order, output_dir=args.output_dir)


def check_trainer_can_run(configs: list[RunConfig]) -> None:
    """Refuse, before anything runs, runs a plain Trainer cannot reproduce: a pooling other
    than the first token through the architecture's own head, a strategy that changes what
    trains."""
    if any(config.pooling != "cls" for config in configs):
        raise FreezebenchError("The Trainer's model reads the first token with the "
                               "architecture's own head: compare at pooling cls only.")
    for model_name in {c.model for c in configs}:
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(
                AutoConfig.from_pretrained(model_name))
        layer_map = build_layer_map(model)
        for config in (c for c in configs if c.model == model_name):
            if plan_for(config.strategy, config.strategy_params, layer_map).schedule:
                raise FreezebenchError(
                    f"Strategy '{config.strategy}' changes what trains during training; a plain "
                    "Trainer cannot reproduce that. Leave it out of the benchmarked study.")


# --------------------------------------------------------------------------- the two sides


def run_freezebench(config: RunConfig) -> dict[str, Any]:
    """One freezebench run; its record's numbers in the benchmark's row format."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its per-run banner would drown the table
        record = run(config)
    wall = time.perf_counter() - start
    eff, metrics, params = record.efficiency, record.metrics, record.params
    assert eff and metrics and params  # run() raises unless the run completed
    return {
        "seconds": eff.train_seconds + eff.cache_build_seconds,
        "train_seconds": eff.train_seconds, "cache_build_seconds": eff.cache_build_seconds,
        "cache_hit": eff.cache_hit, "cache_mb": eff.cache_bytes / 2**20,
        "validation_f1": metrics.validation.f1, "f1": metrics.test.f1,
        "validation_f1_macro": metrics.validation.f1_macro, "f1_macro": metrics.test.f1_macro,
        "validation_loss": metrics.validation.loss,
        "validation_collapsed": metrics.validation.collapsed,
        "accuracy": metrics.test.accuracy,
        "peak_memory_mb": eff.peak_memory_mb, "memory_kind": eff.memory_kind,
        "precision": eff.precision, "dropout_masks": eff.dropout_masks,
        "steps": eff.steps, "trainable_params": params.trainable,
        "frozen_prefix": params.frozen_prefix,
        "end_to_end_seconds": wall, "record_id": record.id,
    }


def trainer_precision(config: RunConfig) -> str:
    """``auto`` compares against the Trainer's default, fp32; anything else goes to both."""
    return "fp32" if config.precision == "auto" else config.precision


def training_arguments(config: RunConfig, output_dir: Path, group_by_length: bool,
                       **override) -> TrainingArguments:
    precision = trainer_precision(config)
    values = dict(
        output_dir=str(output_dir), learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        num_train_epochs=config.num_train_epochs, weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        max_grad_norm=config.max_grad_norm or 0.0, lr_scheduler_type="linear", seed=config.seed,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
        disable_tqdm=True, use_cpu=resolve_device(config.device).type == "cpu",
        bf16=precision == "bf16", fp16=precision == "fp16",
    )
    values.update(override)
    return TrainingArguments(**values)


def run_trainer(config: RunConfig, output_dir: Path, group_by_length: bool = False,
                **arg_override) -> dict[str, Any]:
    """The same run with ``transformers.Trainer``: same model, head, plan, data and recipe."""
    start = time.perf_counter()
    device = resolve_device(config.device)
    prepared = prepare(config)  # seeds before the head; injects LoRA the way freezebench does
    model = prepared.model
    for name, param in model.named_parameters():
        param.requires_grad_(name in prepared.plan.trainable)
    splits = {s: prepared.inputs[s].dataset.remove_columns("length")
              for s in ("train", "validation", "test")}
    arguments = training_arguments(config, output_dir, group_by_length, **arg_override)
    trainer = Trainer(model=model, args=arguments,
                      data_collator=DataCollatorWithPadding(prepared.tokenizer),
                      train_dataset=splits["train"], processing_class=prepared.tokenizer)
    trainer.remove_callback(PrinterCallback)  # it prints the final log dict into the table
    with PeakMemory(device) as memory:
        outcome = trainer.train()
    scores = {}
    for split in ("validation", "test"):
        prediction = trainer.predict(splits[split])
        scores[split] = classification_metrics(
            prediction.predictions, prediction.label_ids, prepared.task.label_names,
            prediction.metrics["test_loss"])
    row = {
        "seconds": outcome.metrics["train_runtime"],
        "validation_f1": scores["validation"].f1, "f1": scores["test"].f1,
        "validation_f1_macro": scores["validation"].f1_macro, "f1_macro": scores["test"].f1_macro,
        "validation_loss": scores["validation"].loss,
        "validation_collapsed": scores["validation"].collapsed,
        "accuracy": scores["test"].accuracy,
        "peak_memory_mb": memory.megabytes, "memory_kind": memory.kind,
        "precision": trainer_precision(config), "dropout_masks": "torch",
        "steps": outcome.global_step,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "end_to_end_seconds": time.perf_counter() - start,
    }
    del trainer, model, prepared
    _release(device)
    return row


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def warm_up(work: Workload, scratch: Path) -> None:
    """One untimed tiny run of each side, so imports and first-call costs hit neither side."""
    first = work.configs[0]
    config = first.model_copy(update={
        "strategy": "full", "strategy_params": {}, "output_dir": str(scratch / "freezebench"),
        "max_train_samples": 2 * first.per_device_train_batch_size,
        "max_eval_samples": first.per_device_train_batch_size, "use_cache": False})
    run_trainer(config, scratch / "trainer", max_steps=1)
    run_freezebench(config)


# --------------------------------------------------------------------------- the sweep


def run_pair(work: Workload, config: RunConfig, index: int) -> list[dict[str, Any]]:
    """Both sides for one run of the study, in the order ``work.order`` asks for."""
    sides: dict[str, Callable[[], dict[str, Any]]] = {
        "trainer": lambda: run_trainer(config, work.output_dir / "trainer",
                                       work.trainer_group_by_length),
        "freezebench": lambda: run_freezebench(config)}
    order = ["trainer", "freezebench"]
    if work.order == "freezebench-first" or (work.order == "alternate" and index % 2):
        order.reverse()
    label = strategy_label(config.strategy, config.strategy_params)
    rows = []
    for side in order:
        row = {"strategy": label, "learning_rate": config.learning_rate, "seed": config.seed,
               "side": side, "position": len(rows) + 1, **sides[side]()}
        rows.append(row)
        print(f"  {label:<14} lr {config.learning_rate:<7g} seed {config.seed}  {side:<11} "
              f"{row['seconds']:8.2f} s  F1 {row['f1']:.4f}", flush=True)
    return rows


def run_sweep(work: Workload) -> list[dict[str, Any]]:
    """Every run of the study in the study's order (the order ``freezebench sweep`` uses)."""
    rows: list[dict[str, Any]] = []
    for index, config in enumerate(work.configs):
        rows += run_pair(work, config, index)
    return rows


# --------------------------------------------------------------------------- summaries


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def _std(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0.0


def _select(rows, **match) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def summarize_group(rows: list[dict[str, Any]], strategy: str, lr: float) -> dict[str, Any]:
    """Means (and std) over seeds of one (strategy, learning rate) on both sides."""
    fb = _select(rows, strategy=strategy, learning_rate=lr, side="freezebench")
    tr = _select(rows, strategy=strategy, learning_rate=lr, side="trainer")
    return {
        "strategy": strategy, "learning_rate": lr, "n": len(fb),
        "freezebench_seconds": _mean(fb, "seconds"), "freezebench_seconds_std": _std(fb, "seconds"),
        "freezebench_train_seconds": _mean(fb, "train_seconds"),
        "freezebench_cache_build_seconds": _mean(fb, "cache_build_seconds"),
        "trainer_seconds": _mean(tr, "seconds"), "trainer_seconds_std": _std(tr, "seconds"),
        "speedup": _mean(tr, "seconds") / _mean(fb, "seconds"),
        "freezebench_f1": _mean(fb, "f1"), "freezebench_f1_std": _std(fb, "f1"),
        "trainer_f1": _mean(tr, "f1"), "trainer_f1_std": _std(tr, "f1"),
        "f1_difference_points": 100 * (_mean(fb, "f1") - _mean(tr, "f1")),
        "freezebench_peak_memory_mb": _mean(fb, "peak_memory_mb"),
        "trainer_peak_memory_mb": _mean(tr, "peak_memory_mb"),
        "freezebench_cache_mb": _mean(fb, "cache_mb"),
    }


def summarize_strategy(rows: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
    """Each side at the learning rate the report would choose (fewest collapsed runs, then the
    best mean validation macro-F1, the lower mean validation loss, the smaller rate), scored on
    test."""
    summary: dict[str, Any] = {"strategy": strategy}
    for side in SIDES:
        mine = _select(rows, strategy=strategy, side=side)
        rates = _unique(r["learning_rate"] for r in mine)

        def rank(lr: float, mine=mine) -> tuple:
            runs = _select(mine, learning_rate=lr)
            collapsed = sum(bool(r["validation_collapsed"]) for r in runs)
            return (collapsed, -_mean(runs, "validation_f1_macro"),
                    _mean(runs, "validation_loss"), lr)

        best = min(rates, key=rank)
        chosen = _select(mine, learning_rate=best)
        summary[side] = {"learning_rate": best, "n": len(chosen), "f1": _mean(chosen, "f1"),
                         "f1_std": _std(chosen, "f1"), "f1_macro": _mean(chosen, "f1_macro"),
                         "f1_macro_std": _std(chosen, "f1_macro"),
                         "seconds": sum(r["seconds"] for r in mine)}
    summary["f1_difference_points"] = 100 * (summary["freezebench"]["f1"]
                                             - summary["trainer"]["f1"])
    summary["f1_macro_difference_points"] = 100 * (summary["freezebench"]["f1_macro"]
                                                   - summary["trainer"]["f1_macro"])
    summary["speedup"] = summary["trainer"]["seconds"] / summary["freezebench"]["seconds"]
    return summary


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (strategy, rate) and per strategy, and the totals of the whole sweep."""
    totals = {side: sum(r["seconds"] for r in _select(rows, side=side)) for side in SIDES}
    strategies = _unique(r["strategy"] for r in rows)
    groups = _unique((r["strategy"], r["learning_rate"]) for r in rows)
    per_strategy = [summarize_strategy(rows, s) for s in strategies]
    return {
        "per_run_group": [summarize_group(rows, s, lr) for s, lr in groups],
        "per_strategy": per_strategy,
        "largest_f1_difference_points": max(abs(s["f1_difference_points"])
                                            for s in per_strategy),
        "total_seconds": totals,
        "total_train_seconds_freezebench_without_cache": sum(
            r["train_seconds"] for r in _select(rows, side="freezebench")),
        "end_to_end_seconds": {side: sum(r["end_to_end_seconds"]
                                         for r in _select(rows, side=side)) for side in SIDES},
        "speedup": totals["trainer"] / totals["freezebench"],
    }


# --------------------------------------------------------------------------- printing


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def group_table(summary: dict[str, Any]) -> str:
    headers = ["strategy", "lr", "n", "fb s (train+cache)", "fb train s", "fb cache s",
               "Trainer s", "speed-up", "F1 fb", "F1 Trainer", "dF1 pts", "mem fb MB",
               "mem Trainer MB", "fb cache MB"]
    rows = [[
        g["strategy"], f"{g['learning_rate']:g}", str(g["n"]),
        f"{g['freezebench_seconds']:.2f} ± {g['freezebench_seconds_std']:.2f}",
        f"{g['freezebench_train_seconds']:.2f}", f"{g['freezebench_cache_build_seconds']:.2f}",
        f"{g['trainer_seconds']:.2f} ± {g['trainer_seconds_std']:.2f}", f"{g['speedup']:.2f}x",
        f"{g['freezebench_f1']:.4f} ± {g['freezebench_f1_std']:.4f}",
        f"{g['trainer_f1']:.4f} ± {g['trainer_f1_std']:.4f}", f"{g['f1_difference_points']:+.2f}",
        f"{g['freezebench_peak_memory_mb']:.0f}", f"{g['trainer_peak_memory_mb']:.0f}",
        f"{g['freezebench_cache_mb']:.0f}",
    ] for g in summary["per_run_group"]]
    return format_table(headers, rows)


def strategy_table(summary: dict[str, Any]) -> str:
    headers = ["strategy", "fb lr", "F1 fb", "Trainer lr", "F1 Trainer", "dF1 pts",
               "fb s (all its runs)", "Trainer s", "speed-up"]
    rows = [[
        s["strategy"], f"{s['freezebench']['learning_rate']:g}",
        f"{s['freezebench']['f1']:.4f} ± {s['freezebench']['f1_std']:.4f}",
        f"{s['trainer']['learning_rate']:g}",
        f"{s['trainer']['f1']:.4f} ± {s['trainer']['f1_std']:.4f}",
        f"{s['f1_difference_points']:+.2f}", f"{s['freezebench']['seconds']:.2f}",
        f"{s['trainer']['seconds']:.2f}", f"{s['speedup']:.2f}x",
    ] for s in summary["per_strategy"]]
    return format_table(headers, rows)


def shown(path: str) -> str:
    """A local path relative to the working folder (results carry no machine paths); a hub id
    as it is."""
    return os.path.relpath(path) if os.path.exists(path) else path


def batching(grouped: bool, packed: bool) -> str:
    return ("grouped by length" if grouped else "random") + (", packed" if packed else ", padded")


def print_report(work: Workload, summary: dict[str, Any], load: dict[str, Any]) -> None:
    first = work.configs[0]
    def per_side(key: str) -> dict[str, list]:
        return {side: _unique(r[key] for r in summary["rows"] if r["side"] == side)
                for side in SIDES}

    precisions, masks = per_side("precision"), per_side("dropout_masks")
    print()
    print(f"study {shown(work.study)}: {len(work.configs)} runs  model {shown(first.model)}  "
          f"dataset {shown(first.dataset)}  device {work.device}  order {work.order}")
    print(f"precision: freezebench {precisions['freezebench']}, Trainer {precisions['trainer']}; "
          f"batches: freezebench {batching(first.group_by_length, first.packed_batches)}, "
          f"Trainer {batching(work.trainer_group_by_length, False)}; dropout masks: freezebench "
          f"{masks['freezebench']}, Trainer {masks['trainer']}")
    print("Per run group (mean ± std over seeds; fb = freezebench train + cache build charged to "
          "the run that built it; Trainer = train_runtime; F1 on test; memory: peak during "
          "training):")
    print(group_table(summary))
    print()
    print("Per strategy, each side at the learning rate the report would choose (fewest "
          "collapsed runs, best mean validation macro-F1; F1 on test, mean ± std over seeds; "
          "seconds: all the strategy's runs):")
    print(strategy_table(summary))
    totals, e2e = summary["total_seconds"], summary["end_to_end_seconds"]
    print(f"largest |dF1| over strategies: {summary['largest_f1_difference_points']:.2f} points")
    print(f"sweep total: freezebench {totals['freezebench']:.2f} s (train alone "
          f"{summary['total_train_seconds_freezebench_without_cache']:.2f} s), Trainer "
          f"{totals['trainer']:.2f} s; end to end incl. loading and evaluation: freezebench "
          f"{e2e['freezebench']:.2f} s, Trainer {e2e['trainer']:.2f} s")
    print(f"load average (1/5/15 min) before {load['before']}, after {load['after']}; "
          f"{load['cpu_count']} CPUs, torch threads {load['torch_threads']}")
    print(FINAL_LINE.format(summary["speedup"]))


# --------------------------------------------------------------------------- main


def _quiet_libraries() -> None:
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns (and writes to <output-dir>/benchmark.json) every number."""
    _quiet_libraries()
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = resolve_workload(args)
    load_before = os.getloadavg()
    print(f"warm-up (untimed) ... then {len(work.configs)} runs of {shown(work.study)} x 2 sides",
          flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        warm_up(work, Path(scratch))
    rows = run_sweep(work)
    load = {"before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    device = resolve_device(work.device)
    result = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/trainer_vs_freezebench.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "workload": {"study": shown(work.study), "model": shown(work.configs[0].model),
                     "dataset": shown(work.configs[0].dataset),
                     "runs": len(work.configs), "device": work.device,
                     "precision": work.precision,
                     "freezebench_precision": resolve_precision(work.precision, device),
                     "trainer_group_by_length": work.trainer_group_by_length,
                     "order": work.order, "output_dir": str(work.output_dir)},
        "environment": {**environment(device), "platform": platform.platform(),
                        "load_average": load},
        "rows": rows, **summarize(rows),
    }
    write_json_atomic(work.output_dir / "benchmark.json", result)
    print(f"wrote {work.output_dir / 'benchmark.json'}")
    print_report(work, result, load)
    return result


if __name__ == "__main__":
    try:
        main()
    except FreezebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
