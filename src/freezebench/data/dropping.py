"""Rows a run cannot use, dropped on request (``--drop-invalid-rows``) instead of stopping it.

A row is invalid when its text or text pair is missing or blank, or its label is missing. Each
dropped row counts once per split, under the first of :data:`REASONS` that applies. A label that is
present but wrong (out of range, unseen in train) is never dropped: validation still stops the run
on it, since that is a mistake in the data rather than a gap in it. Without the option, validation
stops at the first invalid row, naming it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from datasets import ClassLabel, Dataset

from freezebench.data.columns import Columns, column_values
from freezebench.data.validation import is_missing, labels_hidden
from freezebench.errors import DataError

REASONS = ("missing text", "empty text", "missing text pair", "empty text pair", "missing label")


def without_invalid_rows(
    splits: dict[str, Dataset], columns: Columns, where: str, notes: list[str]
) -> tuple[dict[str, Dataset], dict[str, dict[str, int]]]:
    """The splits without their invalid rows, and per split the rows dropped for each reason
    (splits with none dropped left out)."""
    kept: dict[str, Dataset] = {}
    dropped: dict[str, dict[str, int]] = {}
    for name, split in splits.items():
        hidden = _all_labels_hidden(name, split, columns)
        reasons = _reasons(split, columns, labels_checked=not hidden)
        counts = Counter(reason for reason in reasons if reason is not None)
        kept[name] = split
        if not counts:
            continue
        dropped[name] = {reason: counts[reason] for reason in REASONS if counts[reason]}
        detail = ", ".join(f"{n} {reason}" for reason, n in dropped[name].items())
        total = sum(counts.values())
        if total == len(split):
            raise DataError(
                f"{where}: split '{name}' has no valid rows: all {total} would be dropped"
                f" ({detail}). Check the columns (--text-column, --text-pair-column,"
                " --label-column) and the file."
            )
        kept[name] = split.select([row for row, reason in enumerate(reasons) if reason is None])
        notes.append(f"Dropped {total} of {len(split)} {name} rows ({detail}):"
                     " --drop-invalid-rows.")
    return kept, dropped


def _reasons(split: Dataset, columns: Columns, labels_checked: bool) -> list[str | None]:
    """For each row, the first reason it is invalid, or ``None``."""
    checks: list[tuple[str, list, Callable[[Any], bool]]] = []
    for role, column in (("text", columns.text), ("text pair", columns.text_pair)):
        if column is not None:
            values = column_values(split, column)
            checks += [(f"missing {role}", values, lambda v: v is None),
                       (f"empty {role}", values, lambda v: v is not None and not v.strip())]
    if labels_checked:
        checks.append(("missing label", column_values(split, columns.label),
                       _label_missing(split.features[columns.label])))
    return [next((reason for reason, values, bad in checks if bad(values[row])), None)
            for row in range(len(split))]


def _label_missing(feature: Any) -> Callable[[Any], bool]:
    """A ClassLabel marks a missing label as -1 (as GLUE's hidden test labels); other labels
    are missing as validation says."""
    if isinstance(feature, ClassLabel):
        return lambda v: v is None or v == -1
    return is_missing


def _all_labels_hidden(name: str, split: Dataset, columns: Columns) -> bool:
    """An evaluation split without any label is replaced by a carved one, not cleaned."""
    return name != "train" and labels_hidden(column_values(split, columns.label))
