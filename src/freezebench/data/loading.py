"""Load a text-classification dataset, validate it, carve missing splits, and tokenize it.

``load_task_data`` accepts a Hugging Face Hub id, a local folder, or one file (.parquet, .csv,
.tsv, .json, .jsonl) and returns :class:`TaskData`: exactly the splits train/validation/test with
exactly the columns ``text`` (str), for a sentence-pair task ``text_pair`` (str), and ``label``
(class id). Every problem a user can fix (a missing column, an empty text, a label out of range,
an undecodable byte, ...) is raised as a :class:`~freezebench.errors.DataError` naming the file,
split, row, column and value, before any training starts; rows with a missing text or label may
be dropped instead (:mod:`freezebench.data.dropping`). Loading is :mod:`freezebench.data.sources`,
the checks :mod:`freezebench.data.validation`; this module puts them together, carves missing
splits and subsets, and tokenizes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, DatasetDict, Value
from sklearn.model_selection import train_test_split

from freezebench.data.columns import column_values, resolve_columns
from freezebench.data.dropping import without_invalid_rows
from freezebench.data.sources import load_raw, normalize_splits
from freezebench.data.validation import class_warnings, resolve_problem_type, validated_splits
from freezebench.errors import DataError

SPLITS = ("train", "validation", "test")
CARVE_FRACTION = 0.1
# Tokenizers without a known limit report a huge sentinel (int(1e30)) as model_max_length.
DEFAULT_MAX_LENGTH = 512
_SENTINEL_MAX_LENGTH = 1_000_000


@dataclass
class TaskData:
    """A validated task: three splits with columns ``text``, [``text_pair``] and ``label`` (a
    class id, or a float score for regression, whose ``label_names`` is ``["score"]``)."""

    splits: DatasetDict
    label_names: list[str]
    text_column: str
    label_column: str
    source: str
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    text_pair_column: str | None = None  # None: single texts
    # rows dropped per split and reason (None: not asked to drop; {}: none were invalid)
    dropped: dict[str, dict[str, int]] | None = None
    problem_type: str = "classification"  # or regression

    @property
    def regression(self) -> bool:
        return self.problem_type == "regression"

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def describe(self) -> str:
        """One line: the columns read and the class of each id (printed before training)."""
        pair = f", text pair '{self.text_pair_column}'" if self.text_pair_column else ""
        classes = ", ".join(f"{i}={name}" for i, name in enumerate(self.label_names[:20]))
        more = f", ... ({self.num_labels} in all)" if self.num_labels > 20 else ""
        return (f"Columns: text '{self.text_column}'{pair}, label '{self.label_column}';"
                f" class ids: {classes}{more}.")


# ---------------------------------------------------------------------------------------------
# public API


def load_task_data(
    dataset: str,
    *,
    dataset_config: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    seed: int = 42,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    text_pair_column: str | None = None,
    drop_invalid_rows: bool = False,
    problem_type: str = "auto",
) -> TaskData:
    """Load ``dataset`` (hub id, folder or file), validate it and return a :class:`TaskData`.

    Missing validation/test splits are carved (stratified, seeded) from train; the
    ``max_*_samples`` limits take stratified, seeded subsets (random for a regression).
    ``problem_type``: classification, regression, or auto (regression for float labels with a
    fractional value). Raises :class:`DataError` for anything the user has to fix; with
    ``drop_invalid_rows`` a row with a missing or empty text (or text pair) or a missing label
    is dropped and counted instead.
    """
    notes: list[str] = []
    raw, where = load_raw(dataset, dataset_config, encoding, notes)
    raw = normalize_splits(raw, where, notes)
    columns = resolve_columns(raw, where, text_column, label_column, notes, text_pair_column)
    dropped = None
    if drop_invalid_rows:
        raw, dropped = without_invalid_rows(raw, columns, where, notes)
    problem = resolve_problem_type(raw, columns.label, problem_type, where, notes)
    splits, names = validated_splits(raw, columns.text, columns.label, where, notes,
                                     pair_col=columns.text_pair, problem_type=problem)
    stratify = problem == "classification"
    splits = _complete_splits(splits, seed, where, notes, stratify)
    splits = _limit_samples(splits, seed, max_train_samples, max_eval_samples, notes, stratify)
    final = DatasetDict({name: splits[name] for name in SPLITS})
    if stratify:  # a regression has no classes to warn of
        notes += class_warnings({name: final[name]["label"] for name in SPLITS}, names)
    return TaskData(
        splits=final,
        label_names=names,
        text_column=columns.text,
        label_column=columns.label,
        source=dataset,
        notes=notes,
        fingerprint=_fingerprint(final, names),
        text_pair_column=columns.text_pair,
        dropped=dropped,
        problem_type=problem,
    )


def resolve_max_length(tokenizer: Any, max_length: int | None = None) -> int:
    """``max_length`` if given, else the tokenizer's limit (512 when it reports a sentinel)."""
    if max_length:
        return int(max_length)
    model_max = getattr(tokenizer, "model_max_length", None)
    if not model_max or model_max >= _SENTINEL_MAX_LENGTH:
        return DEFAULT_MAX_LENGTH
    return int(model_max)


def tokenize_splits(task: TaskData, tokenizer: Any, max_length: int | None = None) -> DatasetDict:
    """Tokenize every split (truncated, unpadded) into input_ids, attention_mask,
    [token_type_ids], labels and length (number of tokens).

    A text pair is encoded as the tokenizer encodes pairs (``[CLS] a [SEP] b [SEP]`` for BERT,
    token type 1 on the second segment); an over-long pair is cut longest first, a token at a
    time from the longer text, so neither text is lost whole.
    """
    limit = resolve_max_length(tokenizer, max_length)
    texts = [c for c in ("text", "text_pair") if c in task.splits["train"].column_names]

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = dict(tokenizer(*(batch[c] for c in texts), truncation="longest_first",
                                 max_length=limit))
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    # An explicit fingerprint spares datasets from pickling the tokenizer to hash it (slow, and
    # its bare except there would swallow a Ctrl-C).
    name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    fingerprint = hashlib.sha256(
        f"{task.fingerprint}|{name}|{len(tokenizer)}|{limit}".encode()).hexdigest()[:16]
    tokenized = DatasetDict({
        split: ds.map(encode, batched=True, remove_columns=texts, desc="Tokenizing",
                      new_fingerprint=f"{fingerprint}-{split}")
        for split, ds in task.splits.items()
    })
    tokenized = tokenized.rename_column("label", "labels")
    # the dtypes the losses take: class ids for cross-entropy, float32 scores for MSE
    return tokenized.cast_column("labels", Value("float32" if task.regression else "int64"))


# ---------------------------------------------------------------------------------------------
# carving and subsetting


def _complete_splits(
    splits: dict[str, Dataset], seed: int, where: str, notes: list[str], stratify: bool = True
) -> dict[str, Dataset]:
    """Carve a missing validation and then a missing test split from train."""
    missing = [name for name in ("validation", "test") if name not in splits]
    size = math.ceil(CARVE_FRACTION * len(splits["train"]))
    if len(splits["train"]) - size * len(missing) < 2:
        raise DataError(
            f"{where}: split 'train' has only {len(splits['train'])} rows: too few to carve"
            f" {' and '.join(missing)} splits of {CARVE_FRACTION:.0%} each from it. Provide"
            " these splits, or more training data."
        )
    for name in missing:
        splits["train"], splits[name], how = _split_off(splits["train"], size, seed, stratify)
        notes.append(
            f"No {name} split: carved a {how} {CARVE_FRACTION:.0%} of train"
            f" ({size} rows, seed {seed})."
        )
    return splits


def _limit_samples(
    splits: dict[str, Dataset],
    seed: int,
    max_train: int | None,
    max_eval: int | None,
    notes: list[str],
    stratify: bool = True,
) -> dict[str, Dataset]:
    """Seeded subsets, stratified by class where ``stratify``: ``max_train`` for train,
    ``max_eval`` for validation and test."""
    for name in SPLITS:
        limit = max_train if name == "train" else max_eval
        if limit is None or limit >= len(splits[name]):
            continue
        before = len(splits[name])
        _, splits[name], how = _split_off(splits[name], limit, seed, stratify)
        notes.append(f"Subsampled {name} to {limit} of {before} rows ({how}, seed {seed}).")
    return splits


def _split_off(ds: Dataset, size: int, seed: int, by_class: bool = True
               ) -> tuple[Dataset, Dataset, str]:
    """Split ``size`` rows off ``ds``: (rest, taken, how), stratified by label where
    ``by_class`` and possible (a regression's scores are no classes: random).

    Both parts keep the rows' original order.
    """
    labels = column_values(ds, "label")
    counts = Counter(labels)
    stratify = (by_class and min(counts.values()) >= 2
                and min(size, len(ds) - size) >= len(counts))
    rest, taken = train_test_split(
        range(len(ds)), test_size=size, random_state=seed, stratify=labels if stratify else None
    )
    how = ("stratified" if stratify else "random (too few rows per class to stratify)"
           if by_class else "random")
    return ds.select(sorted(rest)), ds.select(sorted(taken)), how


def _fingerprint(splits: DatasetDict, names: list[str]) -> str:
    """sha256 (first 16 hex digits) of the class names and every split's texts, text pairs and
    labels."""
    digest = hashlib.sha256(json.dumps(names).encode())
    for name in SPLITS:
        content = [name, column_values(splits[name], "text"), column_values(splits[name], "label")]
        if "text_pair" in splits[name].column_names:  # single texts hash as they always did
            content.append(column_values(splits[name], "text_pair"))
        digest.update(json.dumps(content, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _token_lengths(split: Dataset) -> list[int]:
    if "length" in split.column_names:
        return column_values(split, "length")
    return [len(ids) for ids in column_values(split, "input_ids")]
