"""The adaptive-freezing benchmark runs end to end on a tiny model (a smoke run, not a result)."""

from __future__ import annotations

import json
import math

from .conftest import load_benchmark


def test_the_benchmark_compares_adaptive_strategies_with_full_and_static(
        tiny_model_dirs, sentiment_folder, tmp_path, capsys):
    benchmark = load_benchmark("adaptive_freezing")
    out = tmp_path / "bench"
    args = ["--model", tiny_model_dirs["bert"], "--dataset", str(sentiment_folder),
            "--seeds", "2", "--epochs", "1", "--bottom-ks", "1", "2", "--batch-size", "8",
            "--learning-rates", "5e-3", "--device", "cpu", "--precision", "fp32",
            "--output-dir", str(out)]
    result = benchmark.main(args)

    assert len(result["runs"]) == 2 * 5  # (full, bottom 1 and 2, autofreeze, freezeout) x 2
    labels = [s["label"] for s in result["summary"]]
    assert labels[0] == "full" and labels[-2:] == ["autofreeze", "freezeout"]
    assert labels[1] in ("bottom(k=1)", "bottom(k=2)")
    for row in result["summary"]:
        assert row["n"] == 2 and row["standalone_seconds"] > 0 and row["speedup"] > 0
        if row["label"] != "full":
            assert math.isfinite(row["delta_low"]) and row["delta_low"] <= row["delta_points"]
    assert json.loads((out / "adaptive_freezing.json").read_text())["summary"] == \
        result["summary"]
    printed = capsys.readouterr().out
    assert "| autofreeze | 0.005 | 2 |" in printed and "speed-up" in printed
    # a second call reads the recorded runs back instead of training again
    again = benchmark.main(args)
    assert [r["id"] for r in again["runs"]] == [r["id"] for r in result["runs"]]
    assert again["summary"] == result["summary"]
