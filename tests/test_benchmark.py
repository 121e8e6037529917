"""The Trainer-vs-freezebench benchmark runs end to end on a tiny model and reports sane numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "trainer_vs_freezebench.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("trainer_vs_freezebench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_both_sides_and_ends_with_the_speedup(
    tiny_model_dirs, sentiment_folder, tmp_path, capsys
):
    benchmark = _load_benchmark()
    out = tmp_path / "bench"
    result = benchmark.main([
        "--model", tiny_model_dirs["bert"], "--dataset", str(sentiment_folder),
        "--strategies", "head", "--seeds", "42", "--device", "cpu", "--output-dir", str(out),
    ])

    runs = {row["side"]: row for row in result["runs"]}
    assert set(runs) == {"freezebench", "trainer"}
    for row in runs.values():
        assert math.isfinite(row["f1"]) and 0.0 <= row["f1"] <= 1.0
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["seconds"] > 0
        assert row["steps"] == 3  # 48 training rows at batch 16, one epoch, on both sides
    # the head trains alone on both sides, so the frozen prefix is the whole encoder
    assert runs["freezebench"]["trainable_params"] == runs["trainer"]["trainable_params"]
    assert runs["freezebench"]["cache_build_seconds"] > 0 and not runs["freezebench"]["cache_hit"]
    totals = result["total_seconds"]
    assert totals["freezebench"] > 0 and totals["trainer"] > 0
    assert result["speedup"] == totals["trainer"] / totals["freezebench"]

    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"sweep speedup vs Trainer: \d+\.\d\d", lines[-1])
    assert lines[-1] == f"sweep speedup vs Trainer: {result['speedup']:.2f}"
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["speedup"] == result["speedup"]
    assert len(list((out / "freezebench" / "runs").glob("*.json"))) == 1
