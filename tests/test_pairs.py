"""Sentence pairs (found by name, validated, tokenized as pairs, packed); invalid rows dropped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
import pytest
import torch
from transformers import DataCollatorWithPadding

from freezebench.data.columns import PAIR_NAMES
from freezebench.data.loading import load_task_data, tokenize_splits
from freezebench.engine.batching import SplitInputs, forward_logits, make_batch
from freezebench.errors import ConfigError, DataError
from freezebench.report.sections import _pairs_and_dropped
from freezebench.study.config import expand, parse_study

from .error_catalog import run_cli

# no hub calls, and the datasets cache in a temporary folder (conftest.py)
pytestmark = pytest.mark.usefixtures("offline_private_datasets_cache")


def write_rows(path: Path, header: list[str], rows: list[list]) -> str:
    """A CSV file (an empty cell reads as a missing value, as in a spreadsheet export)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return str(path)


def pair_rows(n: int = 40) -> list[list]:
    """``n`` paraphrase-like rows: (first, second, label), labels alternating."""
    return [[f"the first sentence number {i}", f"and its partner {i % 7} here", i % 2]
            for i in range(n)]


def load_error(*args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_task_data(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# columns


@pytest.mark.parametrize(("first", "second"), PAIR_NAMES, ids=[f"{a}-{b}" for a, b in PAIR_NAMES])
def test_every_usual_pair_of_names_is_found(tmp_path, first, second):
    # capitalised, among other columns, second before first: found by name, not by position
    path = write_rows(tmp_path / "pairs.csv", ["idx", second.upper(), first.capitalize(),
                                               "label"],
                      [[i, b, a, y] for i, (a, b, y) in enumerate(pair_rows())])
    task = load_task_data(path)
    assert (task.text_column, task.text_pair_column) == (first.capitalize(), second.upper())
    assert task.splits["train"].column_names == ["text", "text_pair", "label"]
    assert any(note.startswith("Sentence pairs: columns") for note in task.notes)


def test_single_texts_stay_single(tmp_path):
    path = write_rows(tmp_path / "single.csv", ["sentence", "label"],
                      [[a, y] for a, _, y in pair_rows()])
    task = load_task_data(path)
    assert task.text_pair_column is None
    assert task.splits["train"].column_names == ["text", "label"]


def test_text_column_alone_turns_pairs_off_and_either_column_can_be_given(tmp_path):
    path = write_rows(tmp_path / "pairs.csv", ["question", "sentence", "notes", "label"],
                      [[a, b, f"note {i}", y] for i, (a, b, y) in enumerate(pair_rows())])
    single = load_task_data(path, text_column="sentence")
    assert (single.text_column, single.text_pair_column) == ("sentence", None)
    # the pair alone: its text is its usual partner
    assert load_task_data(path, text_pair_column="sentence").text_column == "question"
    both = load_task_data(path, text_column="notes", text_pair_column="question")
    assert (both.text_column, both.text_pair_column) == ("notes", "question")
    assert both.splits["train"]["text_pair"][0] == "the first sentence number 0"


def test_pairs_stay_together_through_carving_and_subsets_and_in_the_fingerprint(tmp_path):
    rows = pair_rows(200)
    path = write_rows(tmp_path / "pairs.csv", ["premise", "hypothesis", "label"], rows)
    task = load_task_data(path, max_train_samples=50, max_eval_samples=10)
    partner = {a: b for a, b, _ in rows}
    for split in task.splits.values():
        assert all(partner[a] == b for a, b in zip(list(split["text"]),
                                                   list(split["text_pair"]), strict=True))
    rows[3][1] = "a different partner"
    changed = load_task_data(write_rows(tmp_path / "changed.csv",
                                        ["premise", "hypothesis", "label"], rows),
                             max_train_samples=50, max_eval_samples=10)
    assert changed.fingerprint != task.fingerprint


def test_an_empty_pair_text_names_file_split_row_and_column(tmp_path):
    rows = pair_rows()
    rows[6][1], rows[9][1] = "   ", "  "
    message = load_error(write_rows(tmp_path / "pairs.csv", ["sentence1", "sentence2", "label"],
                                    rows))
    for part in ("pairs.csv", "split 'train'", "row 6 (0-based)", "column 'sentence2'",
                 "the text pair is empty", "'   '", "2 rows", "--drop-invalid-rows",
                 "--text-pair-column"):
        assert part in message, message


def test_pair_column_mistakes_are_data_errors(tmp_path):
    path = write_rows(tmp_path / "pairs.csv", ["sentence1", "sentence2", "score", "label"],
                      [[a, b, 0.5, y] for a, b, y in pair_rows()])
    assert "Did you mean 'sentence2'" in load_error(path, text_pair_column="sentense2")
    assert "text pair column 'score' holds float64 values, not text" in load_error(
        path, text_column="sentence1", text_pair_column="score")
    assert "both 'sentence1'" in load_error(path, text_column="sentence1",
                                            text_pair_column="sentence1")


# ---------------------------------------------------------------------------------------------
# tokens


@pytest.fixture()
def pair_task(tmp_path):
    rows = pair_rows(48)
    rows[0] = ["a very long first sentence " * 30, "short second", 0]
    return load_task_data(write_rows(tmp_path / "pairs.csv", ["sentence1", "sentence2", "label"],
                                     rows))


def test_pairs_are_encoded_as_the_tokenizer_encodes_pairs(pair_task, tokenizer):
    tokenized = tokenize_splits(pair_task, tokenizer, max_length=64)
    for split in ("train", "test"):
        texts = list(pair_task.splits[split]["text"])
        pairs = list(pair_task.splits[split]["text_pair"])
        own = tokenizer(texts, pairs, truncation="longest_first", max_length=64)
        assert tokenized[split]["input_ids"] == own["input_ids"]
        assert tokenized[split]["token_type_ids"] == own["token_type_ids"]
    first = tokenized["train"][0]
    assert first["length"] == 64  # the long first text was cut, the short second one kept
    second_segment = first["input_ids"].index(tokenizer.sep_token_id) + 1
    assert set(first["token_type_ids"][:second_segment]) == {0}
    assert set(first["token_type_ids"][second_segment:]) == {1}
    assert tokenizer.decode(first["input_ids"][second_segment:-1]) == "short second"


def test_packed_pair_batches_give_the_models_own_logits(pair_task, tokenizer, tiny_model_dirs):
    """token_type_ids travel into padded and packed rows and into the staged embeddings."""
    from freezebench.model.layer_map import build_layer_map
    from freezebench.model.loading import load_model
    from freezebench.model.staged import StagedForward

    model = load_model(tiny_model_dirs["bert"], num_labels=2, label_names=["0", "1"],
                       seed=0).eval()
    staged = StagedForward(model, build_layer_map(model))
    split = tokenize_splits(pair_task, tokenizer, max_length=64)["train"]
    inputs = SplitInputs(split, DataCollatorWithPadding(tokenizer))
    indices = list(range(0, len(split), 3))
    rows = pair_task.splits["train"].select(indices)
    encoded = tokenizer(list(rows["text"]), list(rows["text_pair"]), truncation="longest_first",
                        max_length=64, padding=True, return_tensors="pt")
    packed = make_batch(inputs, indices, packed=True)
    assert packed.packing.num_rows < len(indices)
    with torch.no_grad():
        own = model(**encoded).logits
        without_types = model(input_ids=encoded["input_ids"],
                              attention_mask=encoded["attention_mask"]).logits
        assert not torch.allclose(own, without_types, atol=1e-4)  # the types matter here
        for batch in (make_batch(inputs, indices, packed=False), packed):
            for boundary in (0, 2, staged.num_boundaries):
                assert torch.allclose(forward_logits(staged, batch, boundary), own, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# dropping invalid rows


def test_invalid_rows_are_dropped_and_counted_per_split_and_reason(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    train = pair_rows(40)
    train[1][0], train[2][0], train[3][1], train[4][2], train[5][0] = "", " ", "\t", "", ""
    train[5][2] = ""  # two problems: counted once, under the first reason
    validation = pair_rows(12)
    validation[0][1] = ""
    header = ["sentence1", "sentence2", "label"]
    write_rows(folder / "train.csv", header, train)
    write_rows(folder / "validation.csv", header, validation)
    write_rows(folder / "test.csv", header, pair_rows(12))
    assert "--drop-invalid-rows" in load_error(str(folder))
    task = load_task_data(str(folder), drop_invalid_rows=True)
    assert task.dropped == {
        "train": {"missing text": 2, "empty text": 1, "empty text pair": 1, "missing label": 1},
        "validation": {"missing text pair": 1},
    }
    assert {name: len(split) for name, split in task.splits.items()} == {
        "train": 35, "validation": 11, "test": 12}
    assert ("Dropped 5 of 40 train rows (2 missing text, 1 empty text, 1 empty text pair, "
            "1 missing label): --drop-invalid-rows.") in task.notes
    clean = load_task_data(str(folder / "test.csv"), drop_invalid_rows=True)
    assert clean.dropped == {}  # asked, none invalid: the record says so


def test_a_wrong_label_is_not_dropped(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_rows(folder / "train.csv", ["text", "label"], [[f"text {i}", i % 2] for i in range(20)])
    write_rows(folder / "test.csv", ["text", "label"], [["fine", 0], ["", 1], ["unseen", 7]])
    message = load_error(str(folder), drop_invalid_rows=True)
    assert "split 'test', row 1 (0-based)" in message and "out of range" in message


def test_a_split_with_no_valid_row_left_is_an_error(tmp_path):
    rows = [[f"text {i}", ""] for i in range(20)]
    message = load_error(write_rows(tmp_path / "unlabelled.csv", ["text", "label"], rows),
                         drop_invalid_rows=True)
    assert "split 'train' has no valid rows: all 20 would be dropped (20 missing label)" in message


def test_hidden_evaluation_labels_are_carved_not_counted_as_dropped(tmp_path):
    folder = tmp_path / "glue"
    folder.mkdir()
    datasets.Dataset.from_dict(
        {"sentence": [f"s {i}" for i in range(40)], "label": [i % 2 for i in range(40)]},
        features=datasets.Features({"sentence": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["no", "yes"])}),
    ).to_parquet(folder / "train.parquet")
    datasets.Dataset.from_dict(
        {"sentence": ["t 1", "t 2"], "label": [-1, -1]},
        features=datasets.Features({"sentence": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["no", "yes"])}),
    ).to_parquet(folder / "test.parquet")
    task = load_task_data(str(folder), drop_invalid_rows=True)
    assert task.dropped == {}
    assert any("'test' has no labels" in note for note in task.notes)


# ---------------------------------------------------------------------------------------------
# through the command line, and in the report


def test_a_pair_csv_trains_end_to_end_through_the_cli(tiny_model_dirs, tmp_path):
    rows = pair_rows(60)
    rows[10][1] = ""
    write_rows(tmp_path / "pairs.csv", ["sentence1", "sentence2", "label"], rows)
    outcome = run_cli(["run", "--model", tiny_model_dirs["bert"], "--dataset", "pairs.csv",
                       "--drop-invalid-rows", "--strategy", "bottom", "--strategy-param", "k=2",
                       "--output-dir", "out", "--disable-tqdm"], tmp_path)
    assert outcome.exit_code == 0, outcome.stderr
    [path] = (tmp_path / "out" / "runs").glob("*.json")
    record = json.loads(path.read_text())
    data = record["data"]
    assert record["status"] == "completed"
    assert (data["text_column"], data["text_pair_column"]) == ("sentence1", "sentence2")
    assert data["dropped"] == {"train": {"missing text pair": 1}}
    assert sum(data["sizes"].values()) == 59
    assert record["config"]["text_pair_column"] is None  # found, not given
    printed = [line for line in outcome.stderr.splitlines() if line.startswith("data: ")]
    assert printed[0] == ("data: Columns: text 'sentence1', text pair 'sentence2', label "
                          "'label'; class ids: 0=0, 1=1.")
    assert any(line.startswith("data: Sentence pairs: columns 'sentence1' and 'sentence2'")
               for line in printed)
    assert "data: Dropped 1 of 60 train rows (1 missing text pair): --drop-invalid-rows." in printed
    assert any(line.startswith("data: No validation split: carved") for line in printed)
    assert _pairs_and_dropped([record]) == (
        "; sentence pairs: 'sentence1' with 'sentence2'; invalid rows dropped: train 1 "
        "(1 missing text pair)")


def test_a_study_sets_the_pair_column_and_dropping_for_every_run():
    study = parse_study({"dataset": "pairs.csv", "text_column": "premise",
                         "text_pair_column": "hypothesis", "drop_invalid_rows": True,
                         "seeds": 2, "strategies": ["full", "head"]})
    runs = expand(study)
    assert len(runs) == 4
    assert {(r.text_column, r.text_pair_column, r.drop_invalid_rows) for r in runs} == {
        ("premise", "hypothesis", True)}
    with pytest.raises(ConfigError, match="top-level key 'drop_invalid_rows'"):
        parse_study({"recipe": {"drop_invalid_rows": True}, "strategies": ["full"]})


def test_the_report_says_nothing_of_pairs_or_drops_for_single_texts():
    single = {"data": {"text_column": "text", "text_pair_column": None, "dropped": None}}
    assert _pairs_and_dropped([single]) == ""
    asked = {"data": {"text_column": "text", "dropped": {}}}
    assert _pairs_and_dropped([asked]) == "; invalid rows dropped: none"
