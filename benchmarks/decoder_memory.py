"""Benchmark: what each strategy holds in memory, and a step's time, when a decoder classifier
fine-tunes (issue 17, item 5), against Hugging Face Trainer + PEFT LoRA on the same model.

Every freezebench run goes through ``freezebench.pipeline.run`` with ``max_steps``, so its
figures are the ones a run records: weights, gradients, optimizer state, the tensors autograd
saves (activations), the cached frozen-prefix states, their total, and the process's peak
(``efficiency.peak_memory_mb``: GPU allocator peak, or the RSS growth of training on a CPU).
The peer, ``transformers.Trainer`` over ``peft.get_peft_model`` (LoRA on the same projections,
the same r, alpha and dropout, the head trained as PEFT's ``modules_to_save``), trains the same
model (same weights and head) on the same tokenized examples, batch size and steps; its peak is
measured by the same ``PeakMemory`` around ``trainer.train()``. A step's time is the median of
the steps after the first (both sides time each step). Each run, the peer's included, runs in a
process of its own, so no run's allocations raise another's figures; each also reports its
whole process's maximum RSS (loading included).

    python benchmarks/decoder_memory.py                  # Qwen2-0.5B's shape, random weights, CPU
    python benchmarks/decoder_memory.py --preset qwen2-tiny --steps 3          # a smoke run
    python benchmarks/decoder_memory.py --model Qwen/Qwen2.5-0.5B --device cuda --precision bf16 \\
        --batch-size 16 --max-length 128 --bottom-ks 6 12 18     # GPU, real weights (hub)

``--preset`` builds the model from a config written here, with random weights (memory and time
do not depend on the values), and the offline MiniLM tokenizer (Qwen2's is not offline): its ids
all fall within Qwen2's 151,936-token vocabulary, so the embedding matrix keeps Qwen2-0.5B's size
and every figure is Qwen2-0.5B's at these sequence lengths. Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    Qwen2Config,
    Qwen2ForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from freezebench.config import RunConfig  # noqa: E402
from freezebench.engine.precision import resolve_precision  # noqa: E402
from freezebench.measure.memory import PeakMemory, SavedTensors  # noqa: E402
from freezebench.model.loading import load_tokenizer  # noqa: E402
from freezebench.pipeline import prepare, run  # noqa: E402
from freezebench.record import RunRecord  # noqa: E402
from freezebench.strategies import plan_for  # noqa: E402
from freezebench.study.config import resolve_alias  # noqa: E402

# Qwen2-0.5B's config.json (Qwen/Qwen2-0.5B); qwen2-tiny: the same shape in miniature, for tests
PRESETS: dict[str, dict[str, Any]] = {
    "qwen2-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                       max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, use_sliding_window=False),
    "qwen2-tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=151936,
                       max_position_embeddings=512, tie_word_embeddings=True),
}
PEER = "trainer+peft lora"
MEMORY_KINDS = ("weights", "gradients", "optimizer_state", "activations", "cached_features",
                "total")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="qwen2-0.5b",
                        help="a model built from this config, random weights [%(default)s]")
    parser.add_argument("--model", default=None,
                        help="a hub id or folder instead of --preset (e.g. Qwen/Qwen2.5-0.5B)")
    parser.add_argument("--tokenizer", default="offline-minilm",
                        help="the tokenizer saved with a --preset model [%(default)s]")
    parser.add_argument("--dataset", default="offline-rotten-tomatoes")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps a run [%(default)s]")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=16,
                        help="validation and test examples each [%(default)s]")
    parser.add_argument("--bottom-ks", type=int, nargs="+", default=[12, 18, 22])
    parser.add_argument("--no-peer", action="store_true", help="leave the Trainer run out")
    parser.add_argument("--in-process", action="store_true",
                        help="every run in this process (faster; later peaks read low)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--output-dir", default="results/decoder_memory")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # a child's one run
    return parser.parse_args(argv)


def runs(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """The strategies measured, most memory first; the peer last."""
    return [("full", {}), ("lora", {}), *(("bottom", {"k": k}) for k in sorted(args.bottom_ks)),
            ("head", {}), *([] if args.no_peer else [(PEER, {})])]


def label_of(strategy: str, params: dict[str, Any]) -> str:
    return strategy + "".join(f"(k={k})" for k in params.values())


def model_folder(args: argparse.Namespace) -> str:
    """The model the runs load: ``--model``, or the preset built once (random weights, fp32
    safetensors) with the tokenizer beside it."""
    if args.model:
        return args.model
    folder = Path(args.output_dir) / f"model-{args.preset}"
    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)
        model = Qwen2ForSequenceClassification(Qwen2Config(**PRESETS[args.preset], num_labels=2))
        model.save_pretrained(folder)
        load_tokenizer(resolve_alias("model", args.tokenizer)).save_pretrained(folder)
        del model
    return str(folder)


def config_of(args: argparse.Namespace, strategy: str, params: dict[str, Any]) -> RunConfig:
    """One step logged at a time (each step's time); evaluation at the start and end only."""
    return RunConfig(
        model=model_folder(args), dataset=resolve_alias("dataset", args.dataset),
        strategy=strategy, strategy_params=params, learning_rate=args.learning_rate, seed=42,
        max_steps=args.steps, logging_steps=1, eval_steps=args.steps,
        max_train_samples=args.steps * args.batch_size, max_eval_samples=args.eval_samples,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        max_length=args.max_length, device=args.device, precision=args.precision,
        output_dir=str(Path(args.output_dir) / "freezebench"), disable_tqdm=True)


def measure_freezebench(args: argparse.Namespace, strategy: str,
                        params: dict[str, Any]) -> dict[str, Any]:
    with contextlib.redirect_stdout(io.StringIO()):  # its banner would drown the table
        record = run(config_of(args, strategy, params))
    return row_of(record)


def row_of(record: RunRecord) -> dict[str, Any]:
    eff, params = record.efficiency, record.params
    assert eff is not None and eff.memory is not None and params is not None
    seconds = [point.seconds for point in record.history]
    return {
        "label": record.strategy_label, "id": record.id, "trainable_params": params.trainable,
        "frozen_prefix": params.frozen_prefix,
        **{f"{kind}_mb": getattr(eff.memory, f"{kind}_bytes") / 2**20 for kind in MEMORY_KINDS},
        "peak_mb": eff.peak_memory_mb, "memory_kind": eff.memory_kind,
        "step_seconds": _step_time(seconds), "steps": eff.steps,
        "tokens_per_step": eff.train_tokens_per_second * eff.train_seconds / eff.steps,
        "cache_build_seconds": eff.cache_build_seconds, "precision": eff.precision,
    }


def measure_peer(args: argparse.Namespace) -> dict[str, Any]:
    """Trainer + ``get_peft_model``: the same model, head, examples, batch, steps and LoRA
    settings as freezebench's ``lora`` run."""
    from peft import LoraConfig, get_peft_model

    config = config_of(args, "full", {})
    prepared = prepare(config)  # the same examples, tokenized alike, and the same seeded head
    lora = plan_for("lora", {}, prepared.layer_map).lora
    assert lora is not None
    model = get_peft_model(prepared.model, LoraConfig(task_type="SEQ_CLS", **lora))
    precision = resolve_precision(args.precision, torch.device(args.device))
    arguments = TrainingArguments(
        output_dir=str(Path(args.output_dir) / "trainer"), max_steps=args.steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm or 0.0,
        seed=config.seed, report_to="none", save_strategy="no", eval_strategy="no",
        logging_strategy="no", disable_tqdm=True, use_cpu=args.device == "cpu",
        bf16=precision == "bf16", fp16=precision == "fp16")
    times = _StepTimes()
    trainer = _CountingTrainer(model=model, args=arguments, callbacks=[times],
                      train_dataset=prepared.inputs["train"].dataset.remove_columns("length"),
                      data_collator=prepared.inputs["train"].collator)
    with PeakMemory(torch.device(args.device)) as memory:
        trainer.train()
    return {"label": PEER, "trainable_params": sum(p.numel() for p in model.parameters()
                                                    if p.requires_grad),
            "activations_mb": trainer.saved.peak_bytes / 2**20,
            "peak_mb": memory.megabytes, "memory_kind": memory.kind,
            "step_seconds": _step_time(times.seconds), "steps": len(times.seconds) - 1,
            "precision": precision}


def _step_time(seconds: list[float]) -> float:
    """The median time of the steps after the first, from the seconds elapsed at each step's end
    (``seconds[0]``: the start)."""
    durations = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    return statistics.median(durations[1:] or durations)


class _CountingTrainer(Trainer):
    """The Trainer, with the tensors autograd saves in each step's forward counted as
    freezebench counts its own (:class:`SavedTensors`, weights left out)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.saved = SavedTensors(self.model.parameters())

    def compute_loss(self, *args, **kwargs):
        with self.saved:
            loss = super().compute_loss(*args, **kwargs)
        self.saved.step_done()
        return loss


class _StepTimes(TrainerCallback):
    """Notes the time at the start of training and at each step's end."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_begin(self, *args, **kwargs) -> None:
        self.seconds = [time.perf_counter()]

    def on_step_end(self, *args, **kwargs) -> None:
        self.seconds.append(time.perf_counter())


def measure_one(args: argparse.Namespace, label: str) -> dict[str, Any]:
    """One run (freezebench's or the peer's), with its process's maximum RSS so far."""
    strategy, params = next((s, p) for s, p in runs(args) if label_of(s, p) == label)
    row = measure_peer(args) if strategy == PEER else measure_freezebench(args, strategy, params)
    row["process_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return row


def measure_apart(args: argparse.Namespace, label: str, argv: list[str]) -> dict[str, Any]:
    """One run in a fresh process (this script with ``--only``), its row read from a file."""
    path = _row_file(args, label)
    path.unlink(missing_ok=True)
    subprocess.run([sys.executable, __file__, *argv, "--only", label], check=True)
    return json.loads(path.read_text())


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| run | trainable | weights | gradients | optimizer | activations | cached | "
             "total | peak (record) | process max RSS | s/step |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        tensors = [f"{row[f'{kind}_mb']:,.1f}" if f"{kind}_mb" in row else "—"
                   for kind in MEMORY_KINDS]
        lines.append(f"| {row['label']} | {row['trainable_params']:,} | {' | '.join(tensors)} | "
                     f"{row['peak_mb']:,.1f} | {row['process_max_rss_mb']:,.0f} | "
                     f"{row['step_seconds']:.2f} |")
    return "\n".join(lines)


def peer_ratios(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """freezebench's lora against the peer: peak memory and step time, peer / freezebench."""
    by_label = {row["label"]: row for row in rows}
    if PEER not in by_label or "lora" not in by_label:
        return None
    ours, peer = by_label["lora"], by_label[PEER]
    return {key: peer[key] / ours[key] if ours[key] else float("nan")
            for key in ("peak_mb", "process_max_rss_mb", "step_seconds")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    Path(args.output_dir, "rows").mkdir(parents=True, exist_ok=True)
    if args.only is not None:  # a child: one run, its row to a file
        row = measure_one(args, args.only)
        _row_file(args, args.only).write_text(json.dumps(row))
        return row
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.2f}; model {model_folder(args)}", flush=True)
    rows = []
    for strategy, params in runs(args):
        label = label_of(strategy, params)
        rows.append(measure_one(args, label) if args.in_process
                    else measure_apart(args, label, argv))
        print(f"  {label}: {rows[-1]['peak_mb']:,.0f} MB peak, "
              f"{rows[-1]['step_seconds']:.2f} s/step", flush=True)
    print("memory in MiB; peak: " + rows[0]["memory_kind"])
    print(table(rows))
    ratios = peer_ratios(rows)
    if ratios:
        print("Trainer+PEFT LoRA / freezebench lora: " + ", ".join(
            f"{key} {value:.2f}x" for key, value in ratios.items()))
    result = {
        "command": " ".join(["decoder_memory.py", *argv]), "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                        else None, "load_average_after": os.getloadavg()[0]},
        "settings": vars(args), "rows": rows, "peer_ratios": ratios,
    }
    path = Path(args.output_dir) / "decoder_memory.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return result


def _row_file(args: argparse.Namespace, label: str) -> Path:
    return Path(args.output_dir, "rows", "".join(c if c.isalnum() else "_" for c in label)
                + ".json")


if __name__ == "__main__":
    main()
