"""The command line as a user runs it: a real subprocess, exit codes and output.

Every bad input and its message: tests/test_user_errors.py (catalog in tests/error_catalog.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def freezebench(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "freezebench", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600, check=False)


def test_ls_strategies_lists_every_strategy_with_parameters():
    from freezebench.strategies import STRATEGIES

    result = freezebench("ls", "strategies")
    assert result.returncode == 0
    for name in STRATEGIES:
        assert name in result.stdout
    assert "freeze_embeddings" in result.stdout


def test_run_prints_summary_and_writes_record(tiny_model_dirs, sentiment_folder, tmp_path):
    out = tmp_path / "out"
    result = freezebench("run", "--model", tiny_model_dirs["bert"], "--dataset",
                         str(sentiment_folder), "--strategy", "bottom", "--strategy-param", "k=1",
                         "--learning-rate", "1e-3", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert "trainable params:" in result.stdout and "test F1" in result.stdout
    [path] = (out / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["learning_rate"] == 1e-3
    assert record["strategy_label"] == "bottom(k=1)"


def test_env_reports_versions_and_offline_model():
    result = freezebench("env")
    assert result.returncode == 0
    assert "torch" in result.stdout and "offline model" in result.stdout
