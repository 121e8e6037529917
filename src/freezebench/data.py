"""Load a text-classification dataset, validate it, tokenize it and batch it.

``load_task_data`` accepts a Hugging Face Hub id, a local folder, or one file (.parquet, .csv,
.tsv, .json, .jsonl) and returns :class:`TaskData`: exactly the splits train/validation/test with
exactly the columns ``text`` (str) and ``label`` (class id). Every problem a user can fix (a
missing column, an empty text, a label out of range, an undecodable byte, ...) is raised as a
:class:`~freezebench.errors.DataError` naming the file, split, row, column and value, before any
training starts. Validation works on whole columns (Python lists from Arrow), not row by row.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from huggingface_hub.errors import HfHubHTTPError
from sklearn.model_selection import train_test_split

from freezebench.errors import DataError, did_you_mean

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# fmt: off
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}
# usual column names, in order of preference (matched case-insensitively)
TEXT_NAMES = (
    "text", "sentence", "review", "content", "document", "question", "utterance", "tweet",
    "comment", "body", "message", "passage", "query", "title",
)
LABEL_NAMES = (
    "label", "labels", "sentiment", "class", "category", "target", "y", "intent", "emotion",
    "topic", "polarity",
)
# fmt: on
# file suffix -> (datasets builder, extra loader arguments)
FILE_LOADERS: dict[str, tuple[str, dict[str, str]]] = {
    ".parquet": ("parquet", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
}
CARVE_FRACTION = 0.1
# Tokenizers without a known limit report a huge sentinel (int(1e30)) as model_max_length.
DEFAULT_MAX_LENGTH = 512
_SENTINEL_MAX_LENGTH = 1_000_000


@dataclass
class TaskData:
    """A validated classification task: three splits with columns ``text`` and ``label``."""

    splits: DatasetDict
    label_names: list[str]
    text_column: str
    label_column: str
    source: str
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


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
) -> TaskData:
    """Load ``dataset`` (hub id, folder or file), validate it and return a :class:`TaskData`.

    Missing validation/test splits are carved (stratified, seeded) from train; the
    ``max_*_samples`` limits take stratified, seeded subsets. Raises :class:`DataError` for
    anything the user has to fix.
    """
    notes: list[str] = []
    raw, where = _load_raw(dataset, dataset_config, encoding, notes)
    raw = _normalize_splits(raw, where, notes)
    text_col, label_col = _resolve_columns(raw, where, text_column, label_column, notes)
    splits, names = _validated_splits(raw, text_col, label_col, where, notes)
    splits = _complete_splits(splits, seed, where, notes)
    splits = _limit_samples(splits, seed, max_train_samples, max_eval_samples, notes)
    final = DatasetDict({name: splits[name] for name in SPLITS})
    return TaskData(
        splits=final,
        label_names=names,
        text_column=text_col,
        label_column=label_col,
        source=dataset,
        notes=notes,
        fingerprint=_fingerprint(final, names),
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
    [token_type_ids], labels and length (number of tokens)."""
    limit = resolve_max_length(tokenizer, max_length)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = dict(tokenizer(batch["text"], truncation=True, max_length=limit))
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    # An explicit fingerprint spares datasets from pickling the tokenizer to hash it (slow, and
    # its bare except there would swallow a Ctrl-C).
    name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    fingerprint = hashlib.sha256(
        f"{task.fingerprint}|{name}|{len(tokenizer)}|{limit}".encode()).hexdigest()[:16]
    tokenized = DatasetDict({
        split: ds.map(encode, batched=True, remove_columns=["text"], desc="Tokenizing",
                      new_fingerprint=f"{fingerprint}-{split}")
        for split, ds in task.splits.items()
    })
    tokenized = tokenized.rename_column("label", "labels")
    return tokenized.cast_column("labels", Value("int64"))


def _load_raw(
    dataset: str, config: str | None, encoding: str | None, notes: list[str]
) -> tuple[DatasetDict, str]:
    """Load the dataset as given; return it with the phrase that names it in messages."""
    _check_encoding(encoding)
    path = Path(dataset).expanduser()
    if path.is_file():
        return _load_file(path, config, encoding, notes), f"File '{dataset}'"
    if path.is_dir():
        return _load_folder(path, config, encoding, notes), f"Folder '{dataset}'"
    if _looks_local(dataset):
        raise DataError(
            f"Local path '{dataset}' does not exist. Check the spelling and the working directory"
            f" ({Path.cwd()}), or give a Hugging Face Hub id such as 'rotten_tomatoes'."
        )
    return _load_hub(dataset, config, encoding), f"Dataset '{dataset}'"


def _check_encoding(encoding: str | None) -> None:
    if encoding is None:
        return
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(
            f"Unknown text encoding '{encoding}' (--encoding). Use a Python codec name such as"
            " 'utf-8', 'latin-1' or 'cp1252'."
        ) from None


def _looks_local(dataset: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else that names a path is local."""
    return (
        Path(dataset).suffix.lower() in FILE_LOADERS
        or dataset.startswith((".", "/", "~"))
        or "\\" in dataset
        or dataset.count("/") > 1
    )


def _load_file(
    path: Path, config: str | None, encoding: str | None, notes: list[str]
) -> DatasetDict:
    suffix = path.suffix.lower()
    if suffix not in FILE_LOADERS:
        raise DataError(
            f"File '{path}' has an unsupported type '{suffix or '(none)'}'. Use one of "
            f"{', '.join(FILE_LOADERS)}, or a folder of such files."
        )
    if config is not None:
        raise DataError(
            f"--dataset-config '{config}' applies to hub datasets and folders, not to the single"
            f" file '{path}'. Leave it out."
        )
    if path.stat().st_size == 0 or _blank_text_file(path, suffix):
        raise DataError(f"File '{path}' is empty. Give a file with a header and data rows.")
    builder, kwargs = FILE_LOADERS[suffix]
    kwargs = dict(kwargs)
    if encoding is not None and builder != "parquet":
        kwargs["encoding"] = encoding
    elif encoding is not None:
        notes.append(f"--encoding '{encoding}' ignored: Parquet files carry their own encoding.")
    return _call_loader(builder, f"File '{path}'", [path], encoding, data_files=str(path), **kwargs)


def _blank_text_file(path: Path, suffix: str) -> bool:
    """True for a small text file that holds only whitespace."""
    return suffix != ".parquet" and path.stat().st_size < 4096 and not path.read_bytes().strip()


def _load_folder(
    path: Path, config: str | None, encoding: str | None, notes: list[str]
) -> DatasetDict:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in FILE_LOADERS)
    if not files:
        raise DataError(
            f"Folder '{path}' holds no data files ({', '.join(FILE_LOADERS)}). Point --dataset"
            " at a folder with train/validation/test files, or at one file."
        )
    if encoding is not None and all(p.suffix.lower() == ".parquet" for p in files):
        notes.append(f"--encoding '{encoding}' ignored: Parquet files carry their own encoding.")
        encoding = None
    kwargs = {"encoding": encoding} if encoding is not None else {}
    return _call_loader(str(path), f"Folder '{path}'", files, encoding, name=config, **kwargs)


def _call_loader(
    source: str, where: str, files: Sequence[Path], codec: str | None, **kwargs: Any
) -> DatasetDict:
    """``datasets.load_dataset`` for local data, its anticipated failures as DataError."""
    try:
        loaded = datasets.load_dataset(source, **kwargs)
    except (datasets.exceptions.DatasetGenerationError, ValueError, StopIteration, OSError) as exc:
        raise _explain_local_failure(exc, where, files, codec) from None
    return loaded


def _explain_local_failure(
    exc: BaseException, where: str, files: Sequence[Path], encoding: str | None
) -> DataError:
    chain = _exception_chain(exc)
    if any(isinstance(e, UnicodeDecodeError) for e in chain):
        return _decode_error(where, files, encoding)
    if any(_is_empty_failure(e) for e in chain):
        empty = next((f"File '{p}'" for p in files if not _has_data_rows(p)), where)
        return DataError(f"{empty} holds no data rows. Give it a header and data rows.")
    mismatch = next((e for e in chain if isinstance(e, datasets.table.CastError)), None)
    if mismatch is not None:
        return DataError(
            f"{where}: its files do not all have the same columns: {mismatch.details()}"
            f" (expected {', '.join(mismatch.requested_column_names)}; one file has"
            f" {', '.join(mismatch.table_column_names)}). Give every split file the same columns."
        )
    cause = f"{type(chain[-1]).__name__}: {str(chain[-1]).rstrip('.')}"
    if isinstance(exc, datasets.exceptions.DatasetGenerationError):
        return DataError(
            f"{where} could not be parsed: {cause}. Check that each file is valid CSV, TSV,"
            " JSON (Lines) or Parquet, as its suffix says."
        )
    return DataError(f"{where} could not be loaded: {cause}.")


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_empty_failure(exc: BaseException) -> bool:
    message = str(exc)
    return (
        isinstance(exc, (StopIteration, datasets.data_files.EmptyDatasetError))
        or type(exc).__name__ == "EmptyDataError"
        or "corresponds to no data" in message
        or "BatchSize must be greater than 0" in message
    )


def _has_data_rows(path: Path) -> bool:
    """Whether a data file holds at least one row (a CSV/TSV header alone is none)."""
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows > 0
    needed = 2 if path.suffix.lower() in (".csv", ".tsv") else 1
    with path.open("rb") as handle:
        filled = (line for line in handle if line.strip() and line.strip() != b"[]")
        return sum(1 for _ in itertools.islice(filled, needed)) == needed


def _decode_error(where: str, files: Sequence[Path], encoding: str | None) -> DataError:
    codec = encoding or "utf-8"
    for path in files:
        position = _first_undecodable(path, codec)
        if position is not None:
            offset, line = position
            return DataError(
                f"File '{path}' is not valid {codec} text: undecodable byte at byte offset"
                f" {offset} (line {line}). Pass the file's encoding with --encoding (for example"
                " --encoding latin-1 or cp1252), or re-save the file as UTF-8."
            )
    return DataError(
        f"{where} is not valid {codec} text. Pass the file's encoding with --encoding (for"
        " example --encoding latin-1), or re-save it as UTF-8."
    )


def _first_undecodable(path: Path, codec: str) -> tuple[int, int] | None:
    """Byte offset and 1-based line of the first byte ``codec`` cannot decode, if any."""
    if path.suffix.lower() == ".parquet":
        return None
    decoder = codecs.getincrementaldecoder(codec)()
    offset, lines = 0, 1
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = offset - len(pending) + exc.start
                data = (pending + chunk)[: exc.start]
                return bad, lines + data.count(b"\n") - pending.count(b"\n")
            offset += len(chunk)
            lines += chunk.count(b"\n")
    return None


def _load_hub(dataset: str, config: str | None, encoding: str | None) -> DatasetDict:
    kwargs = {"encoding": encoding} if encoding is not None else {}
    try:
        return datasets.load_dataset(dataset, config, **kwargs)
    except (ConnectionError, FileNotFoundError, HfHubHTTPError) as exc:
        raise DataError(
            f"Dataset '{dataset}' could not be found: it is not a local folder or file, and"
            f" loading it from the Hugging Face Hub failed ({exc}). Check the name (for example"
            " 'rotten_tomatoes' or 'stanfordnlp/imdb'). With no network, pass a local folder or"
            " file (.parquet, .csv, .tsv, .json, .jsonl) instead; a hub dataset already in the"
            " local cache loads with HF_HUB_OFFLINE=1 set."
        ) from None
    except ValueError as exc:  # e.g. an unknown or missing --dataset-config
        raise DataError(f"Dataset '{dataset}' could not be loaded: {exc}") from None


# ---------------------------------------------------------------------------------------------
# splits and columns


def _normalize_splits(raw: DatasetDict, where: str, notes: list[str]) -> dict[str, Dataset]:
    """Map split aliases to train/validation/test; a lone split is train; no split is empty."""
    if len(raw) == 1:
        ((name, only),) = raw.items()
        if name != "train":
            notes.append(f"Only one split ('{name}'): used as train.")
        splits = {"train": only}
    else:
        splits = {}
        for name, split in raw.items():
            canonical = SPLIT_ALIASES.get(name.lower())
            if canonical is None or canonical in splits:
                notes.append(f"Split '{name}' ignored (not train, validation or test).")
                continue
            if canonical != name:
                notes.append(f"Split '{name}' used as {canonical}.")
            splits[canonical] = split
    if "train" not in splits:
        raise DataError(
            f"{where} has no train split (splits: {', '.join(raw)}). Name the training split"
            f" one of {', '.join(k for k, v in SPLIT_ALIASES.items() if v == 'train')}."
        )
    for name, split in splits.items():
        if len(split) == 0:
            raise DataError(f"{where}: split '{name}' has no rows. Give it data or remove it.")
    return splits


def _resolve_columns(
    splits: dict[str, Dataset],
    where: str,
    text_column: str | None,
    label_column: str | None,
    notes: list[str],
) -> tuple[str, str]:
    """The text and label column names, given or detected; each present in every split."""
    train = splits["train"]
    text = _find_column(train, where, text_column, "text", TEXT_NAMES, notes)
    label = _find_column(train, where, label_column, "label", LABEL_NAMES, notes, exclude=text)
    if text == label:
        raise DataError(
            f"{where}: the text and label columns are both '{text}'. Pass different columns"
            " with --text-column and --label-column."
        )
    for name, split in splits.items():
        for role, column in (("text", text), ("label", label)):
            if column not in split.column_names:
                raise DataError(
                    f"{where}: split '{name}' has no {role} column '{column}' (train has it)."
                    f" Available columns in '{name}': {', '.join(split.column_names)}."
                )
        _check_text_dtype(split, where, name, text)
    return text, label


def _find_column(
    split: Dataset,
    where: str,
    given: str | None,
    role: str,
    usual: Sequence[str],
    notes: list[str],
    exclude: str | None = None,
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
        if name in by_lower and by_lower[name] != exclude:
            return by_lower[name]
    fallback = _only_column_of_kind(split, role, exclude)
    if fallback is not None:
        notes.append(f"{role.capitalize()} column '{fallback}' chosen as the only {role}-like one.")
        return fallback
    hint = did_you_mean(usual[0], [c for c in columns if c != exclude])
    raise DataError(
        f"{where}: no {role} column found. None of its columns ({', '.join(columns)}) has a"
        f" usual {role} name ({', '.join(usual)}).{hint} Name the column with --{role}-column."
    )


def _only_column_of_kind(split: Dataset, role: str, exclude: str | None) -> str | None:
    """The single string column (text) or single ClassLabel column (label), if exactly one."""
    wanted = (
        (lambda f: isinstance(f, Value) and f.dtype in ("string", "large_string"))
        if role == "text"
        else (lambda f: isinstance(f, ClassLabel))
    )
    matches = [c for c, f in split.features.items() if c != exclude and wanted(f)]
    return matches[0] if len(matches) == 1 else None


def _check_text_dtype(split: Dataset, where: str, name: str, column: str) -> None:
    feature = split.features[column]
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        raise DataError(
            f"{where}, split '{name}': text column '{column}' holds {_describe(feature)} values,"
            " not text. Choose the column that holds the text with --text-column."
        )


def _describe(feature: Any) -> str:
    return feature.dtype if isinstance(feature, Value) else type(feature).__name__


def _column(split: Dataset, column: str) -> list:
    """One column as a Python list (through Arrow: fast, and respects an indices mapping)."""
    return split.with_format("arrow")[column].to_pylist()


# ---------------------------------------------------------------------------------------------
# validation


def _validated_splits(
    raw: dict[str, Dataset], text_col: str, label_col: str, where: str, notes: list[str]
) -> tuple[dict[str, Dataset], list[str]]:
    """Check every text and label; return splits with columns text and label (class ids)."""
    texts = {name: _texts(split, text_col, where, name) for name, split in raw.items()}
    labels = {name: _column(split, label_col) for name, split in raw.items()}
    _drop_unlabelled_eval_splits(labels, texts, notes)
    features = {name: raw[name].features[label_col] for name in labels}
    ids, names = _encode_labels(labels, features, where, label_col, notes)
    _check_train_classes(ids["train"], names, where, label_col)
    _warn_conflicting_duplicates(texts["train"], ids["train"], names)
    schema = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    splits = {
        name: Dataset.from_dict({"text": texts[name], "label": ids[name]}, features=schema)
        for name in labels
    }
    return splits, names


def _texts(split: Dataset, column: str, where: str, name: str) -> list[str]:
    """The texts of one split; an empty, blank or missing text is an error."""
    texts = _column(split, column)
    fix = "Remove or fill these rows, or pick another column with --text-column."
    _raise_first_bad(texts, lambda t: t is None, where, name, column, "the text is missing", fix)
    _raise_first_bad(texts, lambda t: not t.strip(), where, name, column, "the text is empty", fix)
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
        if name in labels and all(v is None or v == -1 for v in labels[name]):
            notes.append(f"Split '{name}' has no labels (all missing or -1): carved from train.")
            del labels[name], texts[name]


def _encode_labels(
    labels: dict[str, list], features: dict[str, Any], where: str, column: str, notes: list[str]
) -> tuple[dict[str, list[int]], list[str]]:
    """Class ids per split and the class names, by the label column's type.

    ClassLabel ids keep their names; other labels become ids in sorted order of the distinct
    train values (ids 0..N-1 map to themselves).
    """
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


def _label_kind(features: dict[str, Any], where: str, column: str) -> str:
    """classlabel, int, float, str or bool: the kind of label values, the same in every split."""
    kinds = {name: _kind_of(feature) for name, feature in features.items()}
    if kinds["train"] is None:
        raise DataError(
            f"{where}: label column '{column}' holds {_describe(features['train'])} values."
            " freezebench needs one class per row (an integer id, a string or a bool); pick"
            " another column with --label-column."
        )
    for name, kind in kinds.items():
        if kind != kinds["train"] and {kind, kinds["train"]} != {"classlabel", "int"}:
            raise DataError(
                f"{where}: label column '{column}' holds {_describe(features[name])} values in"
                f" split '{name}' but {_describe(features['train'])} values in train. Use the"
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


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


_MISSING = (_is_missing, "the label is missing", "Give every row a label, or remove such rows.")
_NEGATIVE = (
    lambda v: v < 0,
    "the label is negative",
    "Class ids must be 0, 1, 2, ...; renumber the labels or use class names.",
)
_FRACTIONAL = (
    lambda v: not float(v).is_integer(),
    "the label is fractional, but a class id must be a whole number",
    "Use whole-number class ids or class names, or pick another column with --label-column.",
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


def _warn_conflicting_duplicates(texts: list[str], ids: list[int], names: list[str]) -> None:
    """Log (not raise) texts that occur in train with more than one label."""
    seen: dict[str, dict[int, int]] = defaultdict(dict)
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


# ---------------------------------------------------------------------------------------------
# carving and subsetting


def _complete_splits(
    splits: dict[str, Dataset], seed: int, where: str, notes: list[str]
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
        splits["train"], splits[name], how = _split_off(splits["train"], size, seed)
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
) -> dict[str, Dataset]:
    """Stratified, seeded subsets: ``max_train`` for train, ``max_eval`` for validation and test."""
    for name in SPLITS:
        limit = max_train if name == "train" else max_eval
        if limit is None or limit >= len(splits[name]):
            continue
        before = len(splits[name])
        _, splits[name], how = _split_off(splits[name], limit, seed)
        notes.append(f"Subsampled {name} to {limit} of {before} rows ({how}, seed {seed}).")
    return splits


def _split_off(ds: Dataset, size: int, seed: int) -> tuple[Dataset, Dataset, str]:
    """Split ``size`` rows off ``ds``: (rest, taken, how), stratified by label where possible.

    Both parts keep the rows' original order.
    """
    labels = _column(ds, "label")
    counts = Counter(labels)
    stratify = min(counts.values()) >= 2 and min(size, len(ds) - size) >= len(counts)
    rest, taken = train_test_split(
        range(len(ds)), test_size=size, random_state=seed, stratify=labels if stratify else None
    )
    how = "stratified" if stratify else "random (too few rows per class to stratify)"
    return ds.select(sorted(rest)), ds.select(sorted(taken)), how


def _fingerprint(splits: DatasetDict, names: list[str]) -> str:
    """sha256 (first 16 hex digits) of the class names and every split's texts and labels."""
    digest = hashlib.sha256(json.dumps(names).encode())
    for name in SPLITS:
        content = [name, _column(splits[name], "text"), _column(splits[name], "label")]
        digest.update(json.dumps(content, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _token_lengths(split: Dataset) -> list[int]:
    if "length" in split.column_names:
        return _column(split, "length")
    return [len(ids) for ids in _column(split, "input_ids")]
