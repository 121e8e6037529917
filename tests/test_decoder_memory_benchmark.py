"""The decoder-memory benchmark runs end to end on a tiny Qwen2 (a smoke run, not a result), and
its figures order as freezing says they must."""

from __future__ import annotations

import json

import pytest

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def benchmark():
    return load_benchmark("decoder_memory")


def test_the_benchmark_measures_every_strategy_and_the_peer(benchmark, sentiment_folder,
                                                            tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["--preset", "qwen2-tiny", "--dataset", str(sentiment_folder), "--steps", "3",
            "--batch-size", "4", "--eval-samples", "4", "--bottom-ks", "1", "3",
            "--in-process", "--output-dir", str(out)]
    result = benchmark.main(args)

    rows = {row["label"]: row for row in result["rows"]}
    assert list(rows) == ["full", "lora", "bottom(k=1)", "bottom(k=3)", "head",
                          benchmark.PEER]
    full, lora, head = rows["full"], rows["lora"], rows["head"]
    shallow, deep = rows["bottom(k=1)"], rows["bottom(k=3)"]
    ours = [full, lora, shallow, deep, head]
    for row in ours:  # one model (LoRA adds its adapters: well under 1 %)
        assert row["weights_mb"] == pytest.approx(full["weights_mb"], rel=0.01)
    assert full["gradients_mb"] == full["weights_mb"] and full["cached_features_mb"] == 0
    for row in ours:
        parts = sum(row[f"{kind}_mb"] for kind in benchmark.MEMORY_KINDS[:-1])
        assert row["total_mb"] == pytest.approx(parts)
        assert row["step_seconds"] > 0 and row["steps"] == 3
        assert row["process_max_rss_mb"] > 0
    # frozen weights hold no gradient and no optimizer state; a deeper prefix saves less
    assert lora["gradients_mb"] < full["gradients_mb"] / 100
    assert full["activations_mb"] > shallow["activations_mb"] > deep["activations_mb"] \
        > head["activations_mb"] > 0
    assert shallow["cached_features_mb"] > 0 and deep["frozen_prefix"] != shallow["frozen_prefix"]
    peer = rows[benchmark.PEER]
    assert peer["trainable_params"] == lora["trainable_params"]  # the same adapters and head
    # the peer's saved tensors, counted alike: the same order as freezebench's LoRA run's
    assert 0.2 * lora["activations_mb"] < peer["activations_mb"] < 5 * lora["activations_mb"]
    assert peer["step_seconds"] > 0 and set(result["peer_ratios"]) == {
        "peak_mb", "process_max_rss_mb", "step_seconds"}
    assert json.loads((out / "decoder_memory.json").read_text())["rows"] == result["rows"]
    printed = capsys.readouterr().out
    assert "| bottom(k=3) |" in printed and "Trainer+PEFT LoRA / freezebench lora" in printed


def test_a_run_apart_comes_back_from_its_own_process(benchmark, sentiment_folder, tmp_path):
    out = tmp_path / "apart"
    args = ["--preset", "qwen2-tiny", "--dataset", str(sentiment_folder), "--steps", "2",
            "--batch-size", "4", "--eval-samples", "4", "--output-dir", str(out)]
    row = benchmark.measure_apart(benchmark.parse_args(args), "head", args)
    assert row["label"] == "head" and row["steps"] == 2 and row["process_max_rss_mb"] > 0
