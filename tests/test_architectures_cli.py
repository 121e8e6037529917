"""A tiny random model of each architecture mapped beyond BERT, RoBERTa and DistilBERT, saved
with a tokenizer to a folder, trains through ``freezebench run`` with ``bottom`` (k=1) and with
``lora``; decoders with a GPT-2-style BPE tokenizer that has no pad token."""

from __future__ import annotations

import csv
import json
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freezebench.cli import app

from .architectures import DECODERS, NEW_ARCHITECTURES, bpe_tokenizer, build_new_model
from .conftest import NEGATIVE, POSITIVE

STRATEGIES = (["--strategy", "bottom", "--strategy-param", "k=1"], ["--strategy", "lora"])


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory) -> Path:
    """64 short reviews with a 0/1 label, in one CSV file (the splits are carved from it)."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    rows = [(text, 1) for text in POSITIVE] + [(text, 0) for text in NEGATIVE]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for index in range(64):
            text, label = rows[index % len(rows)]
            writer.writerow([f"{text} {index}", label])
    return path


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory, tokenizer) -> dict[str, str]:
    """A folder per architecture: its tiny model and a tokenizer (BPE for the decoders)."""
    bpe = bpe_tokenizer(POSITIVE + NEGATIVE)
    folders = {}
    for architecture in NEW_ARCHITECTURES:
        words = bpe if architecture in DECODERS else tokenizer
        pad = None if architecture in DECODERS else words.pad_token_id
        folder = tmp_path_factory.mktemp(f"tiny-{architecture}")
        build_new_model(architecture, vocab_size=len(words), pad_token_id=pad
                        ).save_pretrained(folder)
        words.save_pretrained(folder)
        folders[architecture] = str(folder)
    return folders


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


@pytest.mark.parametrize("architecture", NEW_ARCHITECTURES)
def test_a_tiny_model_trains_through_run_with_bottom_and_lora(model_folders, reviews_csv,
                                                              tmp_path, architecture):
    out = tmp_path / "out"
    for strategy in STRATEGIES:
        result = CliRunner().invoke(app, [
            "run", "--model", model_folders[architecture], "--dataset", str(reviews_csv),
            *strategy, "--max-train-samples", "32", "--max-eval-samples", "16",
            "--per-device-train-batch-size", "8", "--learning-rate", "1e-3",
            "--output-dir", str(out)])
        assert result.exit_code == 0, "".join(traceback.format_exception(*result.exc_info))
    bottom, lora = sorted(_records(out), key=lambda r: r["strategy_label"])
    assert [bottom["status"], lora["status"]] == ["completed", "completed"]
    assert bottom["strategy_label"] == "bottom(k=1)" and lora["strategy_label"] == "lora"
    assert 0 < lora["params"]["trainable"] < bottom["params"]["trainable"]
    assert bottom["params"]["frozen_prefix"] == "embeddings+blocks[0:1]"
    assert bottom["data"]["sizes"]["train"] == 32


def test_ls_architectures_lists_every_mapped_architecture():
    from freezebench.model.architectures import ARCHITECTURES

    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["ls", "architectures", "--json"]).stdout)
    assert [row["model_type"] for row in listed] == list(ARCHITECTURES)
    rows = {row["model_type"]: row for row in listed}
    assert rows["llama"]["pooling"] == "last" and rows["llama"]["packing"]
    assert not rows["modernbert"]["staged"] and rows["bert"]["cut_last_block"]
    table = runner.invoke(app, ["ls", "architectures"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "deberta-v2" in table.stdout and "last" in table.stdout


def test_a_decoder_saved_with_save_model_classifies_in_a_pipeline(model_folders, reviews_csv,
                                                                   tmp_path):
    """A decoder's tokenizer had no pad token: the saved model's config names the one the run
    padded with, so a batched pipeline finds each example's last token."""
    from transformers import pipeline

    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "run", "--model", model_folders["qwen2"], "--dataset", str(reviews_csv),
        "--strategy", "bottom", "--strategy-param", "k=1", "--max-train-samples", "32",
        "--max-eval-samples", "16", "--learning-rate", "1e-3", "--save-model",
        "--output-dir", str(out)])
    assert result.exit_code == 0, "".join(traceback.format_exception(*result.exc_info))
    [record] = _records(out)
    classify = pipeline("text-classification", model=record["saved_model"], device="cpu")
    texts = [f"{text} {i}" for i, text in enumerate(POSITIVE + NEGATIVE)][:8]
    batched = classify(texts, batch_size=4)
    one_by_one = [classify(text)[0] for text in texts]
    assert [p["label"] for p in batched] == [p["label"] for p in one_by_one]
    assert [p["score"] for p in batched] == pytest.approx([p["score"] for p in one_by_one],
                                                          rel=1e-4)
