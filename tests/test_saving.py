"""Saved models the ecosystem loads: ``transformers.pipeline`` for every strategy, PEFT for a LoRA
adapter, a model card the Hub reads, the trained-tensors-only form, and a push that fails clearly
offline while keeping what was written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard
from peft import PeftConfig, PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification, pipeline

from freezebench.config import RunConfig, resolve_run_config
from freezebench.errors import ConfigError
from freezebench.model.loading import OFFLINE_MODEL_HUB_ID
from freezebench.pipeline import run
from freezebench.results import read_records
from freezebench.saving import load_finetuned
from freezebench.saving.card import hub_name, model_card

from .conftest import NEGATIVE, POSITIVE, minilm_path
from .error_catalog import run_cli

TEST_TEXTS = [*POSITIVE, *NEGATIVE, "a joy to watch", "clever and heartfelt", "i loved it",
              "a wonderful surprise", "a waste of time", "i hated every minute", "clumsy and dull",
              "an utter failure"]
TEST_LABELS = [1] * len(POSITIVE) + [0] * len(NEGATIVE) + [1] * 4 + [0] * 4


@pytest.fixture()
def twenty_test_texts(tmp_path):
    """The sentiment data of conftest, with a test split of 20 sentences."""
    folder = tmp_path / "sentiment20"
    folder.mkdir()
    texts, labels = POSITIVE + NEGATIVE, [1] * len(POSITIVE) + [0] * len(NEGATIVE)
    for split, split_texts, split_labels in (("train", texts * 4, labels * 4),
                                             ("validation", texts, labels),
                                             ("test", TEST_TEXTS, TEST_LABELS)):
        Dataset.from_dict({"text": split_texts, "label": split_labels}).to_parquet(
            folder / f"{split}.parquet")
    return folder


def _run(model_dir, dataset, tmp_path, **overrides):
    values = dict(model=model_dir, dataset=str(dataset), output_dir=str(tmp_path / "out"),
                  learning_rate=5e-3, per_device_train_batch_size=8, per_device_eval_batch_size=5,
                  num_train_epochs=2, disable_tqdm=True, precision="fp32", save_model=True)
    values.update(overrides)
    return run(RunConfig(**values))


def _pipeline_scores(folder) -> tuple[np.ndarray, list[str]]:
    """Probabilities ``[texts, labels]`` the pipeline gives the test texts, and its label names."""
    classifier = pipeline("text-classification", model=str(folder), device="cpu")
    names = list(classifier.model.config.id2label.values())
    outputs = classifier(TEST_TEXTS, top_k=None)
    return np.array([[next(o["score"] for o in out if o["label"] == name) for name in names]
                     for out in outputs]), names


def _probabilities(model, tokenizer) -> np.ndarray:
    with torch.no_grad():
        logits = model.eval()(**tokenizer(TEST_TEXTS, padding=True, return_tensors="pt")).logits
    return logits.softmax(-1).numpy()


def assert_same_as_the_runs_evaluation(scores: np.ndarray, names: list[str], record) -> None:
    """The predictions scored as the run scored its test split give the record's numbers: the
    same accuracy, the same count of each predicted class, the same mean cross-entropy."""
    test = record.metrics.test
    predicted = scores.argmax(1)
    assert names == record.data.label_names
    assert test.samples == len(TEST_TEXTS) == 20
    assert (predicted == np.array(TEST_LABELS)).mean() == pytest.approx(test.accuracy, abs=1e-9)
    assert {n: int((predicted == i).sum()) for i, n in enumerate(names)} == test.predicted
    loss = -np.log(scores[np.arange(20), TEST_LABELS]).mean()
    assert loss == pytest.approx(test.loss, rel=1e-4)


# the roberta run learns enough to predict both classes; the others stay near chance, where the
# loss still tells their saved models from the runs'
@pytest.mark.parametrize("architecture,strategy,params,recipe", [
    ("bert", "full", {}, {}),
    ("roberta", "bottom", {"k": 2}, {"learning_rate": 1e-2, "num_train_epochs": 4}),
    ("distilbert", "head", {}, {})])
def test_a_saved_model_loads_in_a_pipeline_and_predicts_as_the_run(
        tiny_model_dirs, twenty_test_texts, tmp_path, architecture, strategy, params, recipe):
    record = _run(tiny_model_dirs[architecture], twenty_test_texts, tmp_path,
                  strategy=strategy, strategy_params=params, **recipe)
    if architecture == "roberta":
        assert min(record.metrics.test.predicted.values()) > 0
    folder = tmp_path / "out" / "models" / record.id
    assert record.saved_model == str(folder)
    assert_same_as_the_runs_evaluation(*_pipeline_scores(folder), record)
    model, tokenizer = load_finetuned(folder)
    assert_same_as_the_runs_evaluation(_probabilities(model, tokenizer),
                                       record.data.label_names, record)
    # the stock architecture's config: only the labels differ from the base model's
    base = AutoConfig.from_pretrained(tiny_model_dirs[architecture]).to_dict()
    saved = json.loads((folder / "config.json").read_text())
    assert {k for k in saved if saved[k] != base.get(k)} <= {"id2label", "label2id",
                                                            "transformers_version"}
    assert saved["id2label"] == {"0": "0", "1": "1"}  # the parquet labels have no names
    assert not (folder / "trained.safetensors").exists()


def test_a_lora_run_saves_a_merged_model_and_a_peft_adapter_that_agree(
        tiny_model_dirs, twenty_test_texts, tmp_path):
    record = _run(tiny_model_dirs["bert"], twenty_test_texts, tmp_path, strategy="lora",
                  strategy_params={"r": 4}, learning_rate=2e-2)
    folder = tmp_path / "out" / "models" / record.id
    scores, names = _pipeline_scores(folder)
    assert_same_as_the_runs_evaluation(scores, names, record)
    assert "lora" not in (folder / "config.json").read_text()

    adapter_config = PeftConfig.from_pretrained(str(folder), subfolder="adapter")
    assert "classifier" in adapter_config.modules_to_save
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dirs["bert"],
                                                              num_labels=2)
    adapted = PeftModel.from_pretrained(base, str(folder), subfolder="adapter").eval()
    merged = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = pipeline("text-classification", model=str(folder)).tokenizer
    batch = tokenizer(TEST_TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        adapted_logits, merged_logits = adapted(**batch).logits, merged(**batch).logits
    assert torch.equal(adapted_logits.argmax(-1), torch.from_numpy(scores.argmax(1)))
    torch.testing.assert_close(adapted_logits, merged_logits, atol=1e-5, rtol=1e-5)
    assert (folder / "adapter" / "adapter_model.safetensors").stat().st_size < \
        0.5 * (folder / "model.safetensors").stat().st_size
    assert ModelCard.load(folder / "adapter" / "README.md").data.library_name == "peft"


def test_the_model_card_carries_the_runs_facts(tiny_model_dirs, sentiment_folder, tmp_path):
    record = _run(tiny_model_dirs["bert"], sentiment_folder, tmp_path, strategy="bottom",
                  strategy_params={"k": 2})
    card = ModelCard.load(tmp_path / "out" / "models" / record.id / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag) == ("transformers", "text-classification")
    assert {"freezebench", "bottom"} <= set(data.tags)
    assert data.base_model is None  # a local folder is no Hub model
    test = record.metrics.test
    found = {(r.metric_type, r.metric_config): r.metric_value for r in data.eval_results}
    assert found[("accuracy", None)] == pytest.approx(test.accuracy, abs=1e-6)
    assert found[("f1", "macro")] == pytest.approx(test.f1_macro, abs=1e-6)
    assert {r.dataset_split for r in data.eval_results} == {"test"}
    assert record.id in card.text and f"{record.params.ever_trainable:,}" in card.text
    assert str(tmp_path) not in card.content  # no machine paths in a card that may be pushed

    on_hub = record.model_copy(update={"config": {**record.config,
                                                  "model": "google-bert/bert-base-cased"}})
    hub_card = ModelCard(str(model_card(on_hub, kind="pretrained", where="me/x")))
    assert hub_card.data.base_model == "google-bert/bert-base-cased"
    assert 'pipeline("text-classification", model="me/x")' in hub_card.text


def test_hub_names_of_sources(tmp_path):
    assert hub_name("rotten_tomatoes") == "rotten_tomatoes"
    assert hub_name(str(tmp_path)) is None
    assert hub_name(minilm_path()) == OFFLINE_MODEL_HUB_ID


@pytest.mark.parametrize("strategy,params", [("bottom", {"k": 2}), ("lora", {})])
def test_the_delta_form_keeps_only_trained_tensors_and_loads_back(
        tiny_model_dirs, twenty_test_texts, tmp_path, strategy, params):
    record = _run(tiny_model_dirs["roberta"], twenty_test_texts, tmp_path, strategy=strategy,
                  strategy_params=params, save_format="delta")
    folder = tmp_path / "out" / "models" / record.id
    assert not (folder / "model.safetensors").exists()
    model, tokenizer = load_finetuned(folder)
    size = (folder / "trained.safetensors").stat().st_size
    assert size < 0.8 * sum(p.numel() * 4 for p in model.parameters())
    assert_same_as_the_runs_evaluation(_probabilities(model, tokenizer),
                                       record.data.label_names, record)
    assert ModelCard.load(folder / "README.md").data.eval_results


def test_push_to_hub_offline_fails_clearly_and_keeps_the_folder_and_record(
        tiny_model_dirs, sentiment_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    outcome = run_cli(["run", "--model", tiny_model_dirs["bert"], "--dataset",
                       str(sentiment_folder), "--output-dir", "out", "--num-train-epochs", "1",
                       "--strategy", "head", "--push-to-hub", "--hub-model-id", "someone/tiny"],
                      tmp_path)
    assert outcome.exit_code == 2 and "Traceback" not in outcome.stderr
    [record] = read_records(tmp_path / "out")
    folder = f"out/models/{record.id}"
    assert (f"error: Could not push '{folder}' to the Hub repository 'someone/tiny'"
            in outcome.stderr)
    assert "HF_HUB_OFFLINE=1 is set, so nothing can reach the Hub" in outcome.stderr
    assert f"hf upload someone/tiny {folder}" in outcome.stderr
    assert record.status == "completed" and record.saved_model == folder
    assert (tmp_path / folder / "model.safetensors").is_file()
    assert (tmp_path / folder / "README.md").is_file()


def test_a_malformed_hub_model_id_is_refused_before_training():
    with pytest.raises(ConfigError, match="'hub_model_id' = 'me/two//slashes'"):
        resolve_run_config(overrides={"hub_model_id": "me/two//slashes", "push_to_hub": True})
