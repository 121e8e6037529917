"""The command line as a user runs it: a real subprocess, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


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


@pytest.mark.parametrize("args,message", [
    (["--strategy", "bottm"], "Did you mean 'bottom'"),
    (["--dataset", "no/such/folder.csv"], "does not exist"),
    (["--learning-rate", "-1"], "'learning_rate' = -1.0"),
    (["--precision", "fp8"], "'precision' = 'fp8'"),
    (["--strategy-param", "k"], "key=value"),
])
def test_user_mistakes_exit_non_zero_without_traceback(args, message, tmp_path):
    result = freezebench("run", "--output-dir", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_model_that_cannot_be_found_offline(sentiment_folder, tmp_path):
    result = freezebench("run", "--model", "no-such-org/no-such-model", "--dataset",
                         str(sentiment_folder), "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert "could not be loaded" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_architecture_says_how_to_add_it(tmp_path, sentiment_folder, tokenizer):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    folder = tmp_path / "gpt2"
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=100,
                                             pad_token_id=0)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    result = freezebench("run", "--model", str(folder), "--dataset", str(sentiment_folder),
                         "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "'gpt2' has no layer map" in result.stderr and "ARCHITECTURES" in result.stderr


def test_env_reports_versions_and_offline_model():
    result = freezebench("env")
    assert result.returncode == 0
    assert "torch" in result.stdout and "offline model" in result.stdout
