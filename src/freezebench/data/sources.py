"""Where a dataset comes from: a file, a folder of split files, or the Hugging Face Hub.

:func:`load_raw` loads it as it is and turns every anticipated failure (an empty file, a header
without rows, undecodable bytes, files whose columns differ, a hub id that cannot be reached) into a
:class:`~freezebench.errors.DataError` naming the file and what to do; :func:`normalize_splits`
maps split names (dev, valid, testing, ...) onto train/validation/test.
"""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict
from huggingface_hub.errors import HfHubHTTPError

from freezebench.errors import DataError

# fmt: off
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}
# fmt: on
# file suffix -> (datasets builder, extra loader arguments)
FILE_LOADERS: dict[str, tuple[str, dict[str, str]]] = {
    ".parquet": ("parquet", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
}


def load_raw(
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


def normalize_splits(raw: DatasetDict, where: str, notes: list[str]) -> dict[str, Dataset]:
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
