"""Which columns of a loaded dataset hold the text, its pair (sentence-pair tasks) and the label:
given by the user, or found by their usual names.

Every problem is a :class:`~freezebench.errors.DataError` naming the file, split and column and
saying what to do. The values in those columns are checked by :mod:`freezebench.data.validation`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from datasets import ClassLabel, Dataset, Value

from freezebench.errors import DataError, did_you_mean

# fmt: off
# usual column names, in order of preference (matched case-insensitively)
TEXT_NAMES = (
    "text", "sentence", "review", "content", "document", "question", "utterance", "tweet",
    "comment", "body", "message", "passage", "query", "title",
)
LABEL_NAMES = (
    "label", "labels", "sentiment", "class", "category", "target", "y", "intent", "emotion",
    "topic", "polarity", "score",
)
# usual (text, text pair) column names of sentence-pair tasks, in order of preference (GLUE's
# MRPC/RTE/STS-B/WNLI, MNLI/SNLI, QNLI, QQP, BoolQ, and generic names)
PAIR_NAMES = (
    ("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "sentence"),
    ("question1", "question2"), ("question", "passage"), ("text_a", "text_b"),
    ("text1", "text2"), ("sentence_a", "sentence_b"),
)
# fmt: on


@dataclass(frozen=True)
class Columns:
    """The source's columns read as text, label and, for a sentence-pair task, the text pair."""

    text: str
    label: str
    text_pair: str | None = None


def resolve_columns(
    splits: dict[str, Dataset],
    where: str,
    text_column: str | None,
    label_column: str | None,
    notes: list[str],
    text_pair_column: str | None = None,
) -> Columns:
    """The text, label and text pair columns, given or detected; each present in every split.

    With no column given, a usual pair of names (:data:`PAIR_NAMES`) makes a pair task: the first
    is the text, the second its pair. ``text_column`` given alone means single texts (no pair is
    looked for); ``text_pair_column`` given alone finds the text as its usual partner or by the
    usual text names.
    """
    train = splits["train"]
    text, pair = _text_columns(train, where, text_column, text_pair_column, notes)
    label = _find_column(train, where, label_column, "label", LABEL_NAMES, notes,
                         exclude={text, pair})
    if label in (text, pair):
        raise DataError(
            f"{where}: the {'text' if label == text else 'text pair'} and label columns are both"
            f" '{label}'. Pass different columns"
            " with --text-column, --text-pair-column and --label-column."
        )
    roles = [("text", text, "--text-column"), ("text pair", pair, "--text-pair-column")]
    for name, split in splits.items():
        for role, column in (*((r, c) for r, c, _ in roles), ("label", label)):
            if column is not None and column not in split.column_names:
                raise DataError(
                    f"{where}: split '{name}' has no {role} column '{column}' (train has it)."
                    f" Available columns in '{name}': {', '.join(split.column_names)}."
                )
        for role, column, option in roles:
            if column is not None:
                _check_text_dtype(split, where, name, column, role, option)
    return Columns(text=text, label=label, text_pair=pair)


def _text_columns(
    train: Dataset, where: str, text_column: str | None, pair_column: str | None,
    notes: list[str],
) -> tuple[str, str | None]:
    """The text column and the text pair column (``None``: single texts)."""
    if text_column is not None and pair_column is None:
        return _find_column(train, where, text_column, "text", TEXT_NAMES, notes), None
    by_lower = {c.lower(): c for c in train.column_names}
    if pair_column is None:
        found = next(((by_lower[a], by_lower[b]) for a, b in PAIR_NAMES
                      if a in by_lower and b in by_lower), None)
        if found is None:
            return _find_column(train, where, None, "text", TEXT_NAMES, notes), None
        notes.append(f"Sentence pairs: columns '{found[0]}' and '{found[1]}' found by name,"
                     " tokenized as pairs (give --text-column alone for single texts).")
        return found
    pair = _find_column(train, where, pair_column, "text-pair", (), notes)
    partners = [a for a, b in PAIR_NAMES if b == pair.lower() and a in by_lower]
    usual = (*partners, *TEXT_NAMES)
    text = _find_column(train, where, text_column, "text", usual, notes, exclude={pair})
    if text == pair:
        raise DataError(
            f"{where}: the text and text pair columns are both '{text}'. Pass two different"
            " columns with --text-column and --text-pair-column."
        )
    return text, pair


def _find_column(
    split: Dataset,
    where: str,
    given: str | None,
    role: str,
    usual: Sequence[str],
    notes: list[str],
    exclude: Collection[str | None] = (),
) -> str:
    columns = split.column_names
    by_lower = {c.lower(): c for c in columns}
    if given is not None:
        if given in columns or given.lower() in by_lower:
            return given if given in columns else by_lower[given.lower()]
        raise DataError(
            f"{where} has no column '{given}' (given with --{role}-column)."
            f"{did_you_mean(given, columns)} Available columns: {', '.join(columns)}."
            f" Pass an existing column with --{role}-column."
        )
    for name in usual:
        if name in by_lower and by_lower[name] not in exclude:
            return by_lower[name]
    fallback = _only_column_of_kind(split, role, exclude)
    if fallback is not None:
        notes.append(f"{role.capitalize()} column '{fallback}' chosen as the only {role}-like one.")
        return fallback
    hint = did_you_mean(usual[0], [c for c in columns if c not in exclude])
    raise DataError(
        f"{where}: no {role} column found. None of its columns ({', '.join(columns)}) has a"
        f" usual {role} name ({', '.join(usual)}).{hint} Name the column with --{role}-column."
    )


def _only_column_of_kind(
    split: Dataset, role: str, exclude: Collection[str | None]
) -> str | None:
    """The single string column (text) or single ClassLabel column (label), if exactly one."""
    wanted = (
        (lambda f: isinstance(f, Value) and f.dtype in ("string", "large_string"))
        if role == "text"
        else (lambda f: isinstance(f, ClassLabel))
    )
    matches = [c for c, f in split.features.items() if c not in exclude and wanted(f)]
    return matches[0] if len(matches) == 1 else None


def _check_text_dtype(
    split: Dataset, where: str, name: str, column: str, role: str, option: str
) -> None:
    feature = split.features[column]
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        raise DataError(
            f"{where}, split '{name}': {role} column '{column}' holds {describe(feature)}"
            f" values, not text. Choose the column that holds the {role} with {option}."
        )


def describe(feature: Any) -> str:
    return feature.dtype if isinstance(feature, Value) else type(feature).__name__


def column_values(split: Dataset, column: str) -> list:
    """One column as a Python list (through Arrow: fast, and respects an indices mapping)."""
    return split.with_format("arrow")[column].to_pylist()
