"""One run on two processes (torchrun, gloo on the CPU) against one process at twice the batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from freezebench.config import RunConfig
from freezebench.engine.distributed import DataParallel
from freezebench.pipeline import run
from freezebench.record import run_id
from freezebench.results import runs_dir

from .conftest import TINY

# 41 examples in global batches of 10: the last holds one example, so rank 1 runs a filler at
# weight 0 for it; 3 epochs of gradual unfreezing change the trainable set (and DDP) twice. fp32:
# under bf16 autocast, half batches round differently from whole ones.
RECIPE = {"learning_rate": 1e-2, "num_train_epochs": 3, "max_train_samples": 41,
          "max_length": 32, "per_device_eval_batch_size": 4, "precision": "fp32"}


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory, tokenizer) -> str:
    """A tiny BERT without dropout: dropout masks are per-rank random draws, so only without it
    is a 2-process run the same computation as one process at twice the batch."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=TINY["hidden"],
                        num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"],
                        intermediate_size=TINY["intermediate"], max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    folder = tmp_path_factory.mktemp("bert-no-dropout")
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "freezebench", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300, check=False)


@pytest.mark.parametrize("strategy,params", [("gradual", {}), ("bottom", {"k": 2})])
def test_two_processes_match_one_at_twice_the_batch(no_dropout_bert, sentiment_folder, tmp_path,
                                                    strategy, params):
    single = run(RunConfig(model=no_dropout_bert, dataset=str(sentiment_folder),
                           strategy=strategy, strategy_params=params,
                           per_device_train_batch_size=10, output_dir=str(tmp_path / "one"),
                           disable_tqdm=True, **RECIPE)).to_json()
    out = tmp_path / "two"
    args = ["run", "--model", no_dropout_bert, "--dataset", str(sentiment_folder),
            "--strategy", strategy, "--per-device-train-batch-size", "5", "--output-dir", str(out)]
    args += [f"--strategy-param={k}={v}" for k, v in params.items()]
    args += [f"--{key.replace('_', '-')}={value}" for key, value in RECIPE.items()]
    result = torchrun(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("record: ") == 1  # rank 0 alone reports...
    [path] = runs_dir(out).glob("*.json")  # ...and writes the one record
    ddp = json.loads(path.read_text())
    config = RunConfig(**ddp["config"])
    assert ddp["id"] == run_id(config, world_size=2) != run_id(config)

    assert ddp["efficiency"]["world_size"] == 2 and single["efficiency"]["world_size"] == 1
    assert ddp["efficiency"]["effective_train_batch_size"] == 10
    assert ddp["efficiency"]["steps"] == single["efficiency"]["steps"] == 15
    assert ddp["data"]["sizes"] == single["data"]["sizes"]
    assert ddp["efficiency"]["device_hours"] == pytest.approx(
        2 * (ddp["efficiency"]["train_seconds"] + ddp["efficiency"]["cache_build_seconds"])
        / 3600)
    # Same global batches, same gradients up to the order of float sums (2 half-batch sums
    # all-reduced vs one, 1 thread vs 2): 1e-5 relative. A rank training on its own half, or a
    # last batch of one example counted twice, moves these losses by more than 1e-3.
    assert ddp["history"][0]["train_loss"] is single["history"][0]["train_loss"] is None
    assert [h["train_loss"] for h in ddp["history"][1:]] == pytest.approx(
        [h["train_loss"] for h in single["history"][1:]], rel=1e-5)
    assert [h["trainable_params"] for h in ddp["history"]] == [
        h["trainable_params"] for h in single["history"]]
    for split in ("validation", "test"):  # gathered over both ranks: the whole split
        mine, theirs = ddp["metrics"][split], single["metrics"][split]
        assert mine["samples"] == theirs["samples"] == 12
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
        for key in ("accuracy", "f1", "f1_macro"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-9)


def test_ranks_split_every_global_batch_and_their_losses_average_to_its_mean():
    order = [[4, 0, 6, 2, 1], [5, 3], [7]]  # 5, 2 and 1 examples for 2 ranks
    ranks = [DataParallel(rank=r, world_size=2) for r in (0, 1)]
    logits, labels = torch.randn(8, 3), torch.tensor([0, 1, 2, 2, 1, 0, 1, 2])
    for step, batch in enumerate(order):
        shares = [rank.shares(order)[step] for rank in ranks]
        weighted = [i for share in shares
                    for i, w in zip(share.indices, share.weights, strict=True) if w]
        assert weighted == batch  # each example once, at weight 1, in order
        # DDP averages the ranks' gradients: the average of their losses is the batch mean
        losses = [rank.loss(logits[s.indices], labels[s.indices], s)
                  for rank, s in zip(ranks, shares, strict=True)]
        assert float(sum(losses)) / 2 == pytest.approx(
            float(torch.nn.functional.cross_entropy(logits[batch], labels[batch])), rel=1e-6)
    filler = ranks[1].shares(order)[2]
    assert filler.indices == [7] and filler.weights.tolist() == [0.0]  # joins, adds nothing


def test_a_sweep_under_torchrun_is_refused_with_the_way_to_scale_it(monkeypatch, tmp_path):
    from freezebench.errors import ConfigError
    from freezebench.study.config import parse_study
    from freezebench.study.sweep import run_sweep

    study = parse_study({"name": "s", "model": "m", "dataset": "d", "strategies": ["head"],
                         "output_dir": str(tmp_path / "out")})
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets in each process it starts
    with pytest.raises(ConfigError, match="--executor ray --gpus-per-run 1"):
        run_sweep(study, progress=False)
    assert not (tmp_path / "out").exists()  # refused before touching the results folder
