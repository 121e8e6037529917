"""Faults during a sweep, made real: SIGKILL at random moments, Ctrl-C, CPU out of memory, a full
disk, and a loss that turns NaN. Each sweep runs as the user runs it, in a subprocess."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

from freezebench.config import RunConfig
from freezebench.engine.batching import batch_order
from freezebench.errors import TrainingError
from freezebench.pipeline import run
from freezebench.record import run_id
from freezebench.results import runs_dir, scan_records
from freezebench.study.config import expand, parse_study
from freezebench.study.sweep import run_sweep

RECIPE = {"max_train_samples": 16, "max_eval_samples": 12, "per_device_train_batch_size": 8,
          "per_device_eval_batch_size": 8, "max_length": 32}
# a hidden temp file of an atomic write that SIGKILL cut short: never read as a record
TEMP_FILE = re.compile(r"^\..+\.json\..+\.tmp$")


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory) -> Path:
    """A datasets cache of this module's own, shared by its subprocesses."""
    return tmp_path_factory.mktemp("hf-datasets-cache")


def sweep_command(study_file: Path) -> list[str]:
    return [sys.executable, "-m", "freezebench", "sweep", "--config", str(study_file)]


def child_env(hf_cache: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(hf_cache), "PYTHONUNBUFFERED": "1", **extra}


def write_study(tmp_path: Path, values: dict) -> tuple[Path, list[str]]:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, [run_id(c) for c in expand(parse_study(values))]


def snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    """Record file name -> (modification time in ns, content)."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs_dir(out).glob("*.json")}


def stored(out) -> list[dict]:
    """The readable records of ``out`` as stored (JSON)."""
    return [record.to_json() for record in scan_records(out)[0]]


def check_visible_records(out: Path, planned: list[str], kept: dict[str, tuple[int, bytes]]):
    """Every visible record parses, is planned and completed; no file was moved aside as corrupt;
    records seen before are byte-identical; anything else in runs/ is a hidden temp file."""
    records, bad = scan_records(out)
    assert bad == []
    assert {r.id for r in records} <= set(planned)
    assert all(r.completed for r in records)
    for path in runs_dir(out).iterdir() if runs_dir(out).is_dir() else []:
        assert path.suffix == ".json" or TEMP_FILE.match(path.name), path.name
    now = snapshot(out)
    for name, before in kept.items():
        assert now[name] == before, f"{name} was rewritten"
    return now


# ------------------------------------------------------------------------------------ SIGKILL


def test_sigkill_at_random_moments_then_resume_keeps_every_run_exactly_once(
        tiny_model_dirs, sentiment_folder, tmp_path, hf_cache):
    values = {"name": "kills", "model": tiny_model_dirs["bert"], "dataset": str(sentiment_folder),
              "recipe": RECIPE, "seeds": [1], "learning_rates": [1e-3, 3e-3],
              "strategies": ["full", "head", "bitfit", "layernorm",
                             {"name": "bottom", "params": {"k": [1, 2]}}],
              "output_dir": str(tmp_path / "results")}
    study_file, planned = write_study(tmp_path, values)
    out = Path(values["output_dir"])
    rng = random.Random(20261125)
    kept: dict[str, tuple[int, bytes]] = {}
    kills = 0
    for _ in range(4):
        with open(tmp_path / "sweep.log", "ab") as log:
            sweep = subprocess.Popen(sweep_command(study_file), env=child_env(hf_cache),
                                     cwd=tmp_path, stdout=log, stderr=log)
            # a random moment: after 0-2 more runs finished, plus a random part of a run
            wait_for = len(kept) + rng.randint(0, 2)
            deadline = time.monotonic() + 120
            while (len(snapshot(out)) < wait_for and sweep.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.8))
            if sweep.poll() is None:
                sweep.send_signal(signal.SIGKILL)
                kills += 1
            sweep.wait(timeout=60)
        kept = check_visible_records(out, planned, kept)
        if len(kept) == len(planned):
            break
    assert kills >= 3, (tmp_path / "sweep.log").read_text()
    assert len(kept) < len(planned), "the kills came too late to interrupt the sweep"

    final = subprocess.run(sweep_command(study_file), env=child_env(hf_cache), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert f"{len(planned)} runs planned: {len(kept)} already completed" in final.stdout
    kept = check_visible_records(out, planned, kept)
    assert sorted(kept) == sorted(f"{i}.json" for i in planned)  # every run, each once
    for _, content in kept.values():
        assert json.loads(content)["status"] == "completed"


_WRITER = """
import sys
from freezebench.config import RunConfig
from freezebench.record import new_record
from freezebench.results import save_record
out, n, base = sys.argv[1], 0, new_record(RunConfig())
while True:  # rewrite records of ~2 MB as fast as possible until killed
    n += 1
    record = base.model_copy(update={"id": f"run-{n % 3}",
                                     "config": {"n": n, "padding": "x" * 2_000_000}})
    save_record(out, record)
    print(n, flush=True)
"""


def test_sigkill_during_record_writes_never_shows_a_partial_record(tmp_path):
    """Kill a process that does nothing but write records, so most kills land inside a write."""
    rng = random.Random(7)
    out = tmp_path / "results"
    for _ in range(25):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(out)],
                                  stdout=subprocess.PIPE, env=os.environ)
        writer.stdout.readline()  # it has written at least one record
        time.sleep(rng.uniform(0.0, 0.05))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        records, bad = scan_records(out)
        assert bad == [], bad
        assert {r.id for r in records} <= {"run-0", "run-1", "run-2"}
        assert all(len(r.config["padding"]) == 2_000_000 for r in records)
    leftovers = [p.name for p in runs_dir(out).iterdir() if p.suffix != ".json"]
    assert all(TEMP_FILE.match(name) for name in leftovers)


# ------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_records_the_current_run_as_cancelled_and_resume_redoes_it(
        tiny_model_dirs, sentiment_folder, tmp_path, hf_cache):
    values = {"name": "ctrl-c", "model": tiny_model_dirs["bert"], "dataset": str(sentiment_folder),
              "recipe": {**RECIPE, "num_train_epochs": 5}, "seeds": [1],
              "learning_rates": [1e-3], "strategies": ["full", "head"],
              "output_dir": str(tmp_path / "results")}
    study_file, planned = write_study(tmp_path, values)
    log = tmp_path / "stdout.log"
    with open(log, "wb") as stdout:
        sweep = subprocess.Popen(sweep_command(study_file), env=child_env(hf_cache), cwd=tmp_path,
                                 stdout=stdout, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while "trainable params" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)  # the first run is training (5 epochs: seconds)
        sweep.send_signal(signal.SIGINT)
        _, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode == 130
    assert "Sweep interrupted after 0 of 2 runs; run the same command again" in stderr
    assert "Traceback" not in stderr
    [record] = stored(values["output_dir"])
    assert record["id"] == planned[0] and record["status"] == "cancelled"
    assert record["error"] == {"type": "KeyboardInterrupt", "message": "Interrupted by the user.",
                               "step": None}

    again = subprocess.run(sweep_command(study_file), env=child_env(hf_cache), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "2 runs planned: 0 already completed" in again.stdout
    assert [r["status"] for r in stored(values["output_dir"])] == ["completed"] * 2


# ------------------------------------------------------------------------------ out of memory

# Run the CLI with its address space limited to what it holds after importing everything plus a
# headroom: a real allocation failure, not a mock. Few threads and malloc arenas keep the
# headroom independent of the machine's core count.
_LIMITED = """
import re, resource, sys
import datasets, peft, sklearn.metrics, torch, transformers
import freezebench.cli, freezebench.pipeline, freezebench.study.sweep
status = open("/proc/self/status").read()
size = int(re.search(r"VmSize:\\s+(\\d+) kB", status).group(1)) * 1024 + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (size, size))
sys.argv = ["freezebench", *sys.argv[2:]]
freezebench.cli.main()
"""
HEADROOM = 1536 * 2**20


def _long_text_model(folder: Path, tokenizer, intermediate: int, layers: int) -> str:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=1, intermediate_size=intermediate,
                        max_position_embeddings=512)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmSize from /proc")
def test_cpu_out_of_memory_fails_the_run_with_advice_and_the_sweep_goes_on(
        tokenizer, tmp_path, hf_cache):
    # Wide: 50 x 512 tokens x 8192 intermediate floats = 838 MB per activation, several of them
    # kept for backward: far beyond the headroom. Narrow: a few MB. Same data, same recipe.
    wide = _long_text_model(tmp_path / "wide", tokenizer, intermediate=8192, layers=4)
    narrow = _long_text_model(tmp_path / "narrow", tokenizer, intermediate=64, layers=1)
    rng = random.Random(0)
    words = ["good", "bad", "film", "plot", "actor", "scene", "long", "short", "fun", "dull"]
    texts = [" ".join(rng.choice(words) for _ in range(600)) for _ in range(64)]
    Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(64)]}).to_json(
        tmp_path / "long.jsonl")
    values = {"name": "oom", "models": [wide, narrow], "dataset": str(tmp_path / "long.jsonl"),
              "recipe": {"per_device_train_batch_size": 64, "per_device_eval_batch_size": 4,
                         "max_length": 512},
              "seeds": [1], "learning_rates": [1e-3], "strategies": ["full"],
              "output_dir": str(tmp_path / "results")}
    study_file, planned = write_study(tmp_path, values)
    env = child_env(hf_cache, OMP_NUM_THREADS="2", MALLOC_ARENA_MAX="2")
    result = subprocess.run([sys.executable, "-c", _LIMITED, str(HEADROOM), "sweep", "--config",
                             str(study_file)], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # 1: a run failed, the sweep itself finished
    assert "Traceback" not in result.stderr
    records = {r["id"]: r for r in stored(values["output_dir"])}
    failed, done = records[planned[0]], records[planned[1]]
    assert failed["config"]["model"] == wide and failed["status"] == "failed"
    assert failed["error"]["type"] == "OutOfMemoryError"
    message = failed["error"]["message"]
    assert message.startswith("Out of CPU memory at batch size 64 (eval 4), max length 512:")
    assert "can't allocate memory" in message
    for advice in ("--per-device-train-batch-size", "--precision bf16", "freezes more"):
        assert advice in message and advice in result.stderr
    assert done["config"]["model"] == narrow and done["status"] == "completed"
    assert "1 completed, 1 failed" in result.stdout


# ---------------------------------------------------------------------------------- full disk


def _file_size_limit(limit: int):
    def apply() -> None:  # a write past the limit fails with EFBIG instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_stops_the_sweep_cleanly_and_keeps_the_records_written(
        tiny_model_dirs, sentiment_folder, tmp_path, hf_cache):
    values = {"name": "disk", "model": tiny_model_dirs["bert"], "dataset": str(sentiment_folder),
              "recipe": RECIPE, "seeds": [1], "learning_rates": [1e-3],
              "strategies": ["full", "head"], "output_dir": str(tmp_path / "results")}
    out = Path(values["output_dir"])
    assert run_sweep(parse_study(values), progress=False).completed == 2  # (in this process)
    written = snapshot(out)
    assert len(written) == 2

    values["strategies"] += ["bitfit", "layernorm"]
    study_file, planned = write_study(tmp_path, values)
    # Records are ~5 kB; 3 kB lets study.yaml and the datasets cache (~2 kB files) through and
    # fails the first new record.
    full = subprocess.run(sweep_command(study_file), env=child_env(hf_cache), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=_file_size_limit(3000))
    assert full.returncode == 2
    assert "Traceback" not in full.stderr
    path = runs_dir(values["output_dir"]) / f"{planned[2]}.json"
    assert f"error: Could not write '{path}': [Errno 27] File too large." in full.stderr
    assert "Free disk space" in full.stderr and "Files already written are intact" in full.stderr
    assert "trainable params" in full.stdout and full.stdout.count("trainable params") == 1
    assert check_visible_records(out, planned, written) == written  # nothing else became visible
    assert sorted(p.name for p in runs_dir(out).iterdir()) == sorted(written)  # no temp file

    resumed = subprocess.run(sweep_command(study_file), env=child_env(hf_cache), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(check_visible_records(out, planned, written)) == \
        sorted(f"{i}.json" for i in planned)


def test_full_disk_while_saving_a_model_fails_cleanly(tiny_model_dirs, sentiment_folder,
                                                      tmp_path, hf_cache):
    """tokenizers and safetensors write from Rust and raise a plain Exception ('os error 27')."""
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "freezebench", "run", "--model", tiny_model_dirs["bert"],
         "--dataset", str(sentiment_folder), "--strategy", "bottom", "--strategy-param", "k=2",
         "--num-train-epochs", "1", "--save-model", "--output-dir", str(out)],
        env=child_env(hf_cache), cwd=tmp_path, capture_output=True, text=True, timeout=300,
        preexec_fn=_file_size_limit(3000))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"error: Could not write '{out}': [Errno 27] File too large." in result.stderr
    # the failed record holds no measurement, so it is small enough to be written
    [path] = runs_dir(out).iterdir()
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "StorageError"


# ---------------------------------------------------------------------------------------- NaN


def test_a_nan_in_the_weights_stops_the_run_at_the_step_it_appears(
        tiny_model_dirs, sentiment_folder, tokenizer, tmp_path):
    """A NaN in the embedding row of a word that one training text holds: the loss turns NaN at
    the step whose batch holds that text, and the run stops there, recorded as failed."""
    config = RunConfig(model=str(tmp_path / "model"), dataset=str(sentiment_folder),
                       output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
                       learning_rate=1e-3, num_train_epochs=2, disable_tqdm=True,
                       group_by_length=False)  # batches in plain shuffled order, as below
    train = pq.read_table(sentiment_folder / "train.parquet").to_pydict()
    order = batch_order(np.zeros(len(train["text"])), 8, shuffle=True, seed=config.seed,
                        epoch=0, group_by_length=False)
    row = order[3][0]  # in the 4th batch of the first epoch
    train["text"][row] = "a zebra crossing"
    Dataset.from_dict(train).to_parquet(sentiment_folder / "train.parquet")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dirs["bert"])
    zebra = tokenizer.convert_tokens_to_ids("zebra")
    assert tokenizer.tokenize("a zebra crossing").count("zebra") == 1
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[zebra, 0] = float("nan")
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")

    with pytest.raises(TrainingError, match="diverged: the loss became nan at step 4 ") as info:
        run(config)
    assert info.value.step == 4
    [record] = scan_records(config.output_dir)[0]
    assert record.status == "failed" and record.history == []
    assert record.error.type == "TrainingError" and record.error.step == 4
    assert "Lower the learning rate" in record.error.message
