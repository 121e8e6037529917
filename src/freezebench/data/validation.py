"""Checks of every text and label of a loaded dataset (which columns hold them:
:mod:`freezebench.data.columns`).

Every problem is a :class:`~freezebench.errors.DataError` naming the file, split, row (0-based),
column and value, and saying what to do; texts with conflicting labels are only a warning. Checks
work on whole columns (Python lists from Arrow), not row by row.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from datasets import ClassLabel, Dataset, Features, Value

from freezebench.data.columns import column_values, describe
from freezebench.errors import DataError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# values


def validated_splits(
    raw: dict[str, Dataset], text_col: str, label_col: str, where: str, notes: list[str],
    pair_col: str | None = None,
    problem_type: str = "classification",
) -> tuple[dict[str, Dataset], list[str]]:
    """Check every text, text pair and label; return splits with columns text, [text_pair] and
    label (class ids, or float scores for ``problem_type`` regression, whose one name is
    ``score``)."""
    texts = {name: _texts(split, text_col, where, name) for name, split in raw.items()}
    pairs = {name: _texts(split, pair_col, where, name, "text pair", "--text-pair-column")
             for name, split in raw.items()} if pair_col else {}
    labels = {name: column_values(split, label_col) for name, split in raw.items()}
    _drop_unlabelled_eval_splits(labels, texts, notes)
    features = {name: raw[name].features[label_col] for name in labels}
    ids, names = _encode_labels(labels, features, where, label_col, notes, problem_type)
    if problem_type == "regression":
        label_feature = Value("float32")
    else:
        _check_train_classes(ids["train"], names, where, label_col)
        examples = ({n: list(zip(t, pairs[n], strict=True)) for n, t in texts.items()}
                    if pairs else texts)
        _warn_conflicting_duplicates(examples["train"], ids["train"], names)
        label_feature = ClassLabel(names=names)
    pair_schema = {"text_pair": Value("string")} if pairs else {}
    schema = Features({"text": Value("string"), **pair_schema, "label": label_feature})
    splits = {
        name: Dataset.from_dict(
            {"text": texts[name], **({"text_pair": pairs[name]} if pairs else {}),
             "label": ids[name]}, features=schema)
        for name in labels
    }
    return splits, names


def _texts(
    split: Dataset, column: str, where: str, name: str, role: str = "text",
    option: str = "--text-column",
) -> list[str]:
    """The texts (or text pairs) of one split; an empty, blank or missing one is an error."""
    texts = column_values(split, column)
    fix = (f"Remove or fill these rows, drop them with --drop-invalid-rows, or pick another"
           f" column with {option}.")
    _raise_first_bad(texts, lambda t: t is None, where, name, column, f"the {role} is missing",
                     fix)
    _raise_first_bad(texts, lambda t: not t.strip(), where, name, column, f"the {role} is empty",
                     fix)
    return texts


def _row_error(
    where: str, split: str, column: str, rows: list[int], value: Any, problem: str, fix: str
) -> DataError:
    more = f" {len(rows)} rows in this split have this problem; the first is shown."
    return DataError(
        f"{where}, split '{split}', row {rows[0]} (0-based), column '{column}': {problem}"
        f" (value: {value!r}).{more if len(rows) > 1 else ''} {fix}"
    )


def _drop_unlabelled_eval_splits(
    labels: dict[str, list], texts: dict[str, list], notes: list[str]
) -> None:
    """Drop a validation/test split whose labels are all hidden (None or -1, as in GLUE)."""
    for name in ("validation", "test"):
        if name in labels and labels_hidden(labels[name]):
            notes.append(f"Split '{name}' has no labels (all missing or -1): carved from train.")
            del labels[name], texts[name]


def labels_hidden(values: list) -> bool:
    """Whether a split's labels are all hidden (None or -1, as in GLUE's test splits)."""
    return all(v is None or v == -1 for v in values)


def resolve_problem_type(
    raw: dict[str, Dataset], column: str, problem_type: str, where: str, notes: list[str]
) -> str:
    """``classification`` or ``regression``: as given, or (``auto``) regression where the label
    column holds floats with fractional values (a whole-number float column, as a CSV integer
    column with gaps reads, stays classes; a few fractional values among whole numbers are an
    error asking which was meant)."""
    if problem_type == "regression":
        notes.append(f"Regression (asked for): label column '{column}' read as scores; one "
                     "output, MSE loss, Pearson, Spearman and MSE.")
    if problem_type != "auto":
        return problem_type
    if _kind_of(raw["train"].features[column]) != "float":
        return "classification"
    found = {name: _fractional_rows(split, column) for name, split in raw.items()}
    fractional = sum(len(rows) for rows, _ in found.values())
    if not fractional:
        return "classification"
    total = sum(len(values) for _, values in found.values())
    name = next(name for name, (rows, _) in found.items() if rows)
    rows, values = found[name]
    first = f"the first {values[rows[0]]!r} at row {rows[0]} of '{name}', 0-based"
    if fractional < FEW_EXAMPLES and fractional <= STRAY_SHARE * total:
        raise DataError(
            f"{where}: label column '{column}' holds whole numbers but for {fractional} fractional "
            f"value(s) ({first}): a stray value in class ids, or scores? Fix those rows, or say "
            "which with --problem-type classification (class ids) or --problem-type regression "
            "(scores).")
    notes.append(
        f"Regression: label column '{column}' holds fractional values ({fractional} of {total} "
        f"rows, {first}): one output, MSE loss, Pearson, Spearman and MSE. Classes instead: "
        "--problem-type classification.")
    return "regression"


# fewer fractional labels than FEW_EXAMPLES, and at most this share of all, among whole numbers:
# too few to call the column scores, too many to ignore
STRAY_SHARE = 0.1


def _fractional_rows(split: Dataset, column: str) -> tuple[list[int], list]:
    values = column_values(split, column)
    return [row for row, value in enumerate(values) if _is_fraction(value)], values


def _is_fraction(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and not value.is_integer()


REGRESSION_NAMES = ["score"]  # a regression's one output, where a classifier names its classes


def _encode_labels(
    labels: dict[str, list], features: dict[str, Any], where: str, column: str, notes: list[str],
    problem_type: str = "classification",
) -> tuple[dict[str, list], list[str]]:
    """Class ids per split and the class names, by the label column's type (regression: the
    scores as floats, and the one name ``score``).

    ClassLabel ids keep their names; other labels become ids in sorted order of the distinct
    train values (ids 0..N-1 map to themselves).
    """
    if problem_type == "regression":
        return _scores(labels, features, where, column), list(REGRESSION_NAMES)
    kind = _label_kind(features, where, column)
    for split, values in labels.items():
        for test, problem, fix in _VALUE_CHECKS[kind]:
            _raise_first_bad(values, test, where, split, column, problem, fix)
    if kind == "classlabel":
        names = list(features["train"].names)
        classes = list(range(len(names)))
    else:
        classes = sorted({_as_class(v) for v in labels["train"]})
        names = [str(c) for c in classes]
    index = {value: i for i, value in enumerate(classes)}
    unknown = f"the label is out of range: it is not one of the {len(names)} classes" + (
        f" (ids 0..{len(names) - 1}: {', '.join(names[:20])})"
        if kind == "classlabel"
        else f" seen in train ({', '.join(names[:20])})"
    )
    for split, values in labels.items():
        _raise_first_bad(
            values,
            lambda v: _as_class(v) not in index,
            where,
            split,
            column,
            unknown,
            "Fix these labels or remove these rows.",
        )
    if classes != list(range(len(classes))) or kind in ("str", "bool"):
        mapping = ", ".join(f"{n}={i}" for i, n in enumerate(names[:20]))
        notes.append(f"Labels mapped to class ids in sorted order: {mapping}.")
    return {s: [index[_as_class(v)] for v in values] for s, values in labels.items()}, names


def _scores(labels: dict[str, list], features: dict[str, Any], where: str,
            column: str) -> dict[str, list[float]]:
    """A regression's labels: numbers in every split, none missing or infinite, not all the
    same in train (no correlation is defined against a constant)."""
    for split, feature in features.items():
        if _kind_of(feature) not in ("int", "float"):
            raise DataError(
                f"{where}: label column '{column}' holds {describe(feature)} values in split "
                f"'{split}'; a regression needs numbers. Pick the column of scores with "
                "--label-column, or use --problem-type classification.")
    for split, values in labels.items():
        for test, problem, fix in (_MISSING, _INFINITE):
            _raise_first_bad(values, test, where, split, column, problem, fix)
    if len(set(labels["train"])) < 2:
        raise DataError(
            f"{where}: every score in split 'train' of label column '{column}' is "
            f"{labels['train'][0]!r}; a regression needs scores that vary. Check the file, or "
            "pick the right column with --label-column.")
    return {split: [float(v) for v in values] for split, values in labels.items()}


def _label_kind(features: dict[str, Any], where: str, column: str) -> str:
    """classlabel, int, float, str or bool: the kind of label values, the same in every split."""
    kinds = {name: _kind_of(feature) for name, feature in features.items()}
    if kinds["train"] is None:
        raise DataError(
            f"{where}: label column '{column}' holds {describe(features['train'])} values."
            " freezebench needs one class per row (an integer id, a string or a bool); pick"
            " another column with --label-column."
        )
    for name, kind in kinds.items():
        if kind != kinds["train"] and {kind, kinds["train"]} != {"classlabel", "int"}:
            raise DataError(
                f"{where}: label column '{column}' holds {describe(features[name])} values in"
                f" split '{name}' but {describe(features['train'])} values in train. Use the"
                " same kind of label in every split."
            )
    return kinds["train"]


def _kind_of(feature: Any) -> str | None:
    if isinstance(feature, ClassLabel):
        return "classlabel"
    dtype = feature.dtype if isinstance(feature, Value) else ""
    if dtype in ("string", "large_string", "bool"):
        return "bool" if dtype == "bool" else "str"
    if dtype.startswith(("int", "uint", "float")):
        return "float" if dtype.startswith("float") else "int"
    return None


def _as_class(value: Any) -> Any:
    """Whole-number floats (a CSV integer column with gaps reads as float) become ints."""
    return int(value) if isinstance(value, float) else value


def is_missing(value: Any) -> bool:
    """A missing label: None, NaN or a blank string."""
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


_MISSING = (is_missing, "the label is missing",
            "Give every row a label, remove such rows, or drop them with --drop-invalid-rows.")
_NEGATIVE = (
    lambda v: v < 0,
    "the label is negative",
    "Class ids must be 0, 1, 2, ...; renumber the labels or use class names.",
)
_FRACTIONAL = (
    lambda v: not float(v).is_integer(),
    "the label is fractional, but a class id must be a whole number",
    "Use whole-number class ids or class names, pick another column with --label-column, or"
    " train a regression with --problem-type regression.",
)
_INFINITE = (
    lambda v: math.isinf(v),
    "the score is infinite",
    "Give every row a finite score, or remove such rows.",
)
# label kind -> checks that need no knowledge of the classes, in the order they run
_VALUE_CHECKS = {
    "classlabel": [(lambda v: v is None or v == -1, *_MISSING[1:])],
    "int": [_MISSING, _NEGATIVE],
    "float": [_MISSING, _FRACTIONAL, _NEGATIVE],
    "str": [_MISSING],
    "bool": [_MISSING],
}


def _raise_first_bad(
    values: list, test: Any, where: str, split: str, column: str, problem: str, fix: str
) -> None:
    """Raise a DataError naming the first value that fails ``test`` and how many do."""
    bad = [i for i, value in enumerate(values) if test(value)]
    if bad:
        raise _row_error(where, split, column, bad, values[bad[0]], problem, fix)


def _check_train_classes(ids: list[int], names: list[str], where: str, column: str) -> None:
    present = sorted(set(ids))
    if len(present) < 2:
        only = names[present[0]] if present else "(none)"
        raise DataError(
            f"{where}: split 'train' has only one class ('{only}') in label column '{column}'; a"
            " classifier needs at least two. Check the file, or pick the right column with"
            " --label-column."
        )


def _warn_conflicting_duplicates(
    texts: Sequence[Hashable], ids: list[int], names: list[str]
) -> None:
    """Log (not raise) texts (or text pairs) that occur in train with more than one label."""
    seen: dict[Hashable, dict[int, int]] = defaultdict(dict)
    for row, (text, label) in enumerate(zip(texts, ids, strict=True)):
        seen[text].setdefault(label, row)
    conflicts = [(text, rows) for text, rows in seen.items() if len(rows) > 1]
    if conflicts:
        text, rows = conflicts[0]
        detail = ", ".join(f"'{names[label]}' (row {row})" for label, row in rows.items())
        log.warning(
            "Train split has %d text(s) that occur with different labels, e.g. %r with %s. "
            "They are kept as they are.",
            len(conflicts),
            text[:80],
            detail,
        )


# fewer training examples than this for a class, and a classifier learns it by chance if at all
FEW_EXAMPLES = 5


def class_warnings(labels: dict[str, list[int]], names: list[str]) -> list[str]:
    """What a study should know of its classes before training: a class with fewer than
    ``FEW_EXAMPLES`` training examples (naming it and its first rows; a stray label among the
    others makes a class of its own), and a class absent from an evaluation split (its F1 there is
    undefined and pulls macro-F1 down)."""
    warnings = []
    for label, name in enumerate(names):
        rows = [row for row, value in enumerate(labels["train"]) if value == label]
        if len(rows) < FEW_EXAMPLES:
            shown = ", ".join(str(row) for row in rows[:5])
            warnings.append(f"Class '{name}' has only {len(rows)} training example(s) (rows "
                            f"{shown}, 0-based, after any subsampling): check those labels.")
        missing = [split for split in ("validation", "test")
                   if split in labels and label not in set(labels[split])]
        if missing:
            warnings.append(f"Class '{name}' does not occur in the {' and '.join(missing)} "
                            "split(s): its F1 there is 0 and macro-F1 counts it.")
    return warnings
