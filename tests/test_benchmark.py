"""The Trainer-vs-freezebench benchmark runs a study end to end on a tiny model."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from freezebench.errors import FreezebenchError

from .conftest import load_benchmark, minilm_path, rotten_tomatoes_path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "trainer_vs_freezebench.py"


def _study(tmp_path, model_dir, dataset, strategies) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "model": model_dir, "dataset": str(dataset), "seeds": [42, 43],
        "recipe": {"per_device_train_batch_size": 16, "max_length": 32},
        "strategies": strategies, "output_dir": str(tmp_path / "unused")}))
    return path


def test_benchmark_runs_every_run_of_the_study_on_both_sides(
    tiny_model_dirs, sentiment_folder, tmp_path, capsys
):
    benchmark = load_benchmark("trainer_vs_freezebench")
    study = _study(tmp_path, tiny_model_dirs["bert"], sentiment_folder, [
        {"name": "head", "learning_rates": [1e-3, 1e-2]}, {"name": "full",
                                                            "learning_rates": [1e-4]}])
    out = tmp_path / "bench"
    result = benchmark.main(["--study", str(study), "--device", "cpu", "--precision", "fp32",
                             "--output-dir", str(out)])

    rows = result["rows"]
    assert len(rows) == 2 * 3 * 2  # (head x 2 rates + full) x 2 seeds, each on both sides
    for side in ("freezebench", "trainer"):
        mine = [r for r in rows if r["side"] == side]
        assert sorted((r["strategy"], r["learning_rate"], r["seed"]) for r in mine) == sorted(
            (s, lr, seed) for s, lr in [("head", 1e-3), ("head", 1e-2), ("full", 1e-4)]
            for seed in (42, 43))
        for row in mine:
            assert 0.0 <= row["f1"] <= 1.0 and 0.0 <= row["validation_f1"] <= 1.0
            assert row["seconds"] > 0 and row["precision"] == "fp32"
            assert row["steps"] == 3  # 48 training rows at batch 16, one epoch, on both sides
    head = {r["side"]: r for r in rows if r["strategy"] == "head" and r["seed"] == 42
            and r["learning_rate"] == 1e-3}
    assert head["freezebench"]["trainable_params"] == head["trainer"]["trainable_params"]
    assert head["freezebench"]["cache_build_seconds"] > 0  # the first head run builds the cache
    later = [r for r in rows if r["side"] == "freezebench" and r["strategy"] == "head"][1:]
    assert all(r["cache_hit"] and r["cache_build_seconds"] == 0 for r in later)

    [head_summary, full_summary] = result["per_strategy"]
    for side in ("freezebench", "trainer"):  # the rate with the best mean validation F1 wins
        runs = [r for r in rows if r["side"] == side and r["strategy"] == "head"]
        best = max((1e-3, 1e-2), key=lambda lr: sum(
            r["validation_f1"] for r in runs if r["learning_rate"] == lr))
        assert head_summary[side]["learning_rate"] == best
    assert full_summary["freezebench"]["n"] == 2
    totals = result["total_seconds"]
    assert result["speedup"] == totals["trainer"] / totals["freezebench"]
    assert totals["freezebench"] == pytest.approx(sum(
        r["seconds"] for r in rows if r["side"] == "freezebench"))

    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"sweep speedup vs Trainer: \d+\.\d\d", lines[-1])
    assert lines[-1] == f"sweep speedup vs Trainer: {result['speedup']:.2f}"
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["speedup"] == result["speedup"] and math.isfinite(saved["speedup"])
    assert len(list((out / "freezebench" / "runs").glob("*.json"))) == 6


def test_benchmark_refuses_a_strategy_the_trainer_cannot_reproduce(
    tiny_model_dirs, sentiment_folder, tmp_path
):
    benchmark = load_benchmark("trainer_vs_freezebench")
    study = _study(tmp_path, tiny_model_dirs["bert"], sentiment_folder, ["full", "gradual"])
    with pytest.raises(FreezebenchError, match="'gradual' changes what trains"):
        benchmark.main(["--study", str(study), "--device", "cpu", "--output-dir",
                        str(tmp_path / "bench")])
    assert not (tmp_path / "bench").exists()  # refused before anything ran


def test_random_bert_base_has_bert_base_shapes_and_loads_as_a_freezebench_model(tmp_path):
    module = load_benchmark("random_bert_base")
    folder = module.write_random_bert_base(tmp_path / "bert-base")

    from freezebench.model.layer_map import build_layer_map, count_parameters
    from freezebench.model.loading import load_model

    model = load_model(str(folder), num_labels=2, label_names=["neg", "pos"], seed=0)
    layer_map = build_layer_map(model)
    assert layer_map.num_blocks == 12 and model.config.hidden_size == 768
    # bert-base-uncased's 109,482,240 encoder parameters (vocab 30,522) plus a 2-class head
    assert count_parameters(model)[1] == 109_482_240 + 768 * 2 + 2


def test_the_gpu_benchmark_studies_expand_to_the_issue_workloads():
    from freezebench.study.config import expand, parse_study

    def runs(name: str):
        values = yaml.safe_load((SCRIPT.parent / "studies" / name).read_text())
        assert values["dataset"] == "offline-rotten-tomatoes"
        return expand(parse_study({**values, "dataset": "d"}))  # the alias is tested elsewhere

    full_head = runs("gpu-full-head.yaml")
    assert sorted({r.strategy for r in full_head}) == ["full", "head"] and len(full_head) == 6
    depth = runs("gpu-depth-sweep.yaml")
    assert sorted({r.strategy_params.get("k") for r in depth if r.strategy == "bottom"}) == list(
        range(13))
    assert len(depth) == (13 + 1) * 3
    assert {(r.per_device_train_batch_size, r.num_train_epochs) for r in depth} == {(16, 1)}


def test_dropout_masks_benchmark_times_both_choices_on_the_offline_model():
    minilm_path(), rotten_tomatoes_path()  # skip where the offline model or data is missing
    script = SCRIPT.parent / "dropout_masks.py"
    result = subprocess.run(
        [sys.executable, str(script), "--strategies", "bitfit", "--rounds", "1", "--steps", "2"],
        capture_output=True, text=True, cwd=SCRIPT.parents[1], timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    draws = re.search(r"one mask of \(7, 12, 60, 60\): torch ([\d.]+) ms, numpy ([\d.]+) ms",
                      result.stdout)
    step = re.search(r"^bitfit +torch +([\d.]+) ms +numpy +([\d.]+) ms +change [+-]\d+%",
                     result.stdout, re.MULTILINE)
    assert draws and step, result.stdout
    assert all(float(value) > 0 for value in (*draws.groups(), *step.groups()))
