"""Benchmark: adaptive freezing (autofreeze, freezeout) against full fine-tuning and the best
static bottom(k), over seeds, with the cost counted standalone.

Every run goes through ``freezebench.pipeline.run`` (the record of each lands in
``<output-dir>/runs/``; a run already there is read back, not repeated), seed by seed, the
strategies in turns so a busy machine slows all alike. Per strategy the learning rate with the
best mean validation metric is kept; the static bottom(k) compared is the fastest whose mean
validation metric is within ``--tolerance`` points of full fine-tuning's (else the best on
validation), chosen on validation alone. For each, the table gives the test metric (mean ± std
over seeds), the standalone training time (training plus every frozen-prefix build it needs,
evaluation excluded), the speed-up over full fine-tuning (ratio of the means), and the paired
difference in the test metric against full fine-tuning on the same seeds with its 95 % t-interval.

    python benchmarks/adaptive_freezing.py                     # MiniLM, rotten_tomatoes, CPU
    python benchmarks/adaptive_freezing.py --train-samples 2000 --epochs 3 --seeds 5
    python benchmarks/adaptive_freezing.py --model bert-base-cased --dataset rotten_tomatoes \\
        --device cuda --learning-rates 2e-5 3e-5 --bottom-ks 2 4 6 8

The claim tested (issue 15): full fine-tuning's quality (interval within ±0.5 points) at >= 1.8x
standalone speed-up. See benchmarks/README.md for the command and results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from freezebench.config import RunConfig  # noqa: E402
from freezebench.pipeline import run  # noqa: E402
from freezebench.record import RunRecord, run_id  # noqa: E402
from freezebench.report.uncertainty import t_interval  # noqa: E402
from freezebench.results import read_records  # noqa: E402
from freezebench.study.config import resolve_alias  # noqa: E402

ADAPTIVE = ("autofreeze", "freezeout")
TARGET_POINTS, TARGET_SPEEDUP = 0.5, 1.8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="offline-minilm")
    parser.add_argument("--dataset", default="offline-rotten-tomatoes")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="training examples (default: the whole split)")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="validation and test examples each (default: the whole splits)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 42, 43, ... [%(default)s]")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-4])
    parser.add_argument("--bottom-ks", type=int, nargs="+", default=[1, 3, 5],
                        help="static bottom(k) candidates [%(default)s]")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--metric", default="f1_macro", help="decision metric [%(default)s]")
    parser.add_argument("--tolerance", type=float, default=TARGET_POINTS,
                        help="points of validation metric a static bottom(k) may lose")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--output-dir", default="results/adaptive_freezing")
    return parser.parse_args(argv)


def strategies(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """Full first, bottom(k) shallow to deep (each cache built from the one before), then the
    adaptive ones."""
    return [("full", {}), *(("bottom", {"k": k}) for k in sorted(args.bottom_ks)),
            *((name, {}) for name in ADAPTIVE)]


def config_of(args: argparse.Namespace, strategy: str, params: dict[str, Any], lr: float,
              seed: int) -> RunConfig:
    return RunConfig(
        model=resolve_alias("model", args.model), dataset=resolve_alias("dataset", args.dataset),
        strategy=strategy, strategy_params=params, learning_rate=lr, seed=seed,
        num_train_epochs=args.epochs, max_train_samples=args.train_samples,
        max_eval_samples=args.eval_samples, per_device_train_batch_size=args.batch_size,
        max_length=args.max_length, device=args.device, precision=args.precision,
        output_dir=args.output_dir, disable_tqdm=True)


def run_all(args: argparse.Namespace) -> list[RunRecord]:
    """Every (seed, strategy, learning rate) run, reading back those already recorded."""
    done = {r.id: r for r in read_records(args.output_dir) if r.completed} \
        if Path(args.output_dir, "runs").is_dir() else {}
    records = []
    for seed in range(42, 42 + args.seeds):
        for strategy, params in strategies(args):
            for lr in args.learning_rates:
                config = config_of(args, strategy, params, lr, seed)
                record = done.get(run_id(config)) or run(config)
                print(f"  {record.summary_line()}", flush=True)
                records.append(record)
    return records


def row_of(record: RunRecord, metric: str) -> dict[str, Any]:
    eff = record.efficiency
    assert record.metrics is not None and eff is not None
    # blocks frozen by the end: before training (static strategies: never trainable) or during it
    frozen = {u.unit for u in record.params.units
              if u.unit.startswith("blocks") and u.trainable == 0} if record.params else set()
    frozen |= {e.unit for e in record.freezing or [] if e.unit.startswith("blocks")}
    return {"id": record.id, "label": record.strategy_label,
            "learning_rate": record.config["learning_rate"], "seed": record.config["seed"],
            "validation": getattr(record.metrics.validation, metric),
            "test": getattr(record.metrics.test, metric),
            "standalone_seconds": eff.standalone_train_seconds,
            "train_seconds": eff.train_seconds, "standalone_flops": eff.standalone_train_flops,
            "blocks_frozen": len(frozen),
            "freezing": [e.model_dump() for e in record.freezing or []]}


def chosen_rows(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each strategy label's runs at its learning rate with the best mean validation metric."""
    by_label: dict[str, dict[float, list[dict[str, Any]]]] = {}
    for row in rows:
        by_label.setdefault(row["label"], {}).setdefault(row["learning_rate"], []).append(row)
    return {label: max(rates.values(), key=lambda rs: (_mean(rs, "validation"),
                                                        -rs[0]["learning_rate"]))
            for label, rates in by_label.items()}


def best_static(chosen: dict[str, list[dict[str, Any]]], tolerance: float) -> str | None:
    """The fastest bottom(k) within ``tolerance`` points of full's validation metric, else the
    best bottom(k) on validation (validation alone chooses)."""
    static = [label for label in chosen if label.startswith("bottom")]
    if not static:
        return None
    floor = _mean(chosen["full"], "validation") - tolerance / 100
    near = [label for label in static if _mean(chosen[label], "validation") >= floor]
    if near:
        return min(near, key=lambda label: _mean(chosen[label], "standalone_seconds"))
    return max(static, key=lambda label: _mean(chosen[label], "validation"))


def summarize(rows: list[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    chosen = chosen_rows(rows)
    static = best_static(chosen, tolerance)
    labels = ["full", *([static] if static else []), *(a for a in ADAPTIVE if a in chosen)]
    full = {row["seed"]: row for row in chosen["full"]}
    full_seconds = _mean(chosen["full"], "standalone_seconds")
    summary = []
    for label in labels:
        runs = chosen[label]
        paired = [100 * (row["test"] - full[row["seed"]]["test"]) for row in runs
                  if row["seed"] in full]
        mean, low, high = t_interval(paired)
        speedup = full_seconds / _mean(runs, "standalone_seconds")
        summary.append({
            "label": label, "learning_rate": runs[0]["learning_rate"], "n": len(runs),
            "test_mean": _mean(runs, "test"), "test_std": _std(runs, "test"),
            "standalone_seconds": _mean(runs, "standalone_seconds"), "speedup": speedup,
            "delta_points": mean, "delta_low": low, "delta_high": high,
            "blocks_frozen": _mean(runs, "blocks_frozen"),
            "meets_target": (label != "full" and math.isfinite(low)
                             and low >= -TARGET_POINTS and speedup >= TARGET_SPEEDUP),
        })
    return summary


def table(summary: list[dict[str, Any]], metric: str) -> str:
    lines = [f"| strategy | lr | n | test {metric} (%) | standalone s | speed-up | "
             "Δ vs full, points [95 % CI] | blocks frozen at end | target met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        delta = ("—" if s["label"] == "full" else
                 f"{s['delta_points']:+.2f} [{s['delta_low']:+.2f}, {s['delta_high']:+.2f}]")
        target = "—" if s["label"] == "full" else ("yes" if s["meets_target"] else "no")
        lines.append(
            f"| {s['label']} | {s['learning_rate']:g} | {s['n']} | {100 * s['test_mean']:.2f} ± "
            f"{100 * s['test_std']:.2f} | {s['standalone_seconds']:.1f} | {s['speedup']:.2f}x | "
            f"{delta} | {s['blocks_frozen']:.1f} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.2f}")
    records = run_all(args)
    rows = [row_of(record, args.metric) for record in records]
    summary = summarize(rows, args.tolerance)
    print(table(summary, args.metric))
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None
                                                       else sys.argv[1:])]),
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                        else None, "load_average_after": os.getloadavg()[0]},
        "settings": vars(args), "target": {"points": TARGET_POINTS, "speedup": TARGET_SPEEDUP},
        "summary": summary, "runs": rows,
    }
    path = Path(args.output_dir) / "adaptive_freezing.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return result


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(row[key] for row in rows)


def _std(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.stdev(row[key] for row in rows) if len(rows) > 1 else math.nan


if __name__ == "__main__":
    main()
