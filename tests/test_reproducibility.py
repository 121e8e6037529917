"""A record alone reproduces its run: resolved config, versions, data fingerprint, git commit; and
the same config and seed give identical numbers on the CPU, in another process too."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

import freezebench
from freezebench.config import RunConfig
from freezebench.data.loading import load_task_data
from freezebench.pipeline import run
from freezebench.record import run_id

from .conftest import REPO_ROOT


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                          check=True).stdout


def test_a_record_holds_what_reproduces_its_run(tiny_model_dirs, sentiment_folder, tmp_path):
    config = RunConfig(model=tiny_model_dirs["distilbert"], dataset=str(sentiment_folder),
                       output_dir=str(tmp_path / "a"), strategy="bottom", strategy_params={"k": 1},
                       learning_rate=5e-3, per_device_train_batch_size=8, num_train_epochs=2,
                       max_train_samples=24, seed=7, disable_tqdm=True)
    record = run(config).to_json()

    # the resolved config: every field, and it rebuilds the same run
    assert set(record["config"]) == set(RunConfig.model_fields)
    assert record["config"] == config.model_dump(mode="json")
    assert run_id(RunConfig(**record["config"])) == record["id"]
    # versions of the code and libraries that ran
    env = record["env"]
    for package in ("torch", "transformers", "datasets", "tokenizers", "numpy", "scikit-learn"):
        assert env[package] == metadata.version(package)
    assert env["python"] == platform.python_version()
    assert env["freezebench"] == freezebench.__version__
    # the data as it was loaded and subsampled
    task = load_task_data(str(sentiment_folder), max_train_samples=24, seed=config.data_seed)
    assert record["data"]["fingerprint"] == task.fingerprint
    assert record["data"]["sizes"]["train"] == 24
    # the commit of the checkout the code came from (None when freezebench is installed)
    if REPO_ROOT in Path(freezebench.__file__).resolve().parents and (REPO_ROOT / ".git").exists():
        assert env["git_commit"] == _git("rev-parse", "HEAD").strip()
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no").strip())
        assert env["git_dirty"] is dirty
    else:
        assert env["git_commit"] is None

    # the record's config, as a YAML file in a fresh process: the very same numbers
    replay = dict(record["config"], output_dir=str(tmp_path / "b"))
    (tmp_path / "replay.yaml").write_text(yaml.safe_dump(replay))
    env_vars = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "freezebench", "run", "--config",
                             str(tmp_path / "replay.yaml")], env=env_vars, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [path] = (tmp_path / "b" / "runs").glob("*.json")
    again = json.loads(path.read_text())
    assert again["id"] == record["id"]
    assert again["metrics"] == record["metrics"]
    assert [h["train_loss"] for h in again["history"]] == \
        [h["train_loss"] for h in record["history"]]
    assert again["data"]["fingerprint"] == record["data"]["fingerprint"]
