"""A study's ``datasets`` list: each item a dataset name or a mapping with its own columns.

::

    datasets:
      - rotten_tomatoes
      - {dataset: glue, dataset_config: sst2, text_column: sentence}

Two items may not name the same dataset and configuration: the report tells tasks apart by them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from freezebench.config import format_validation_error
from freezebench.errors import ConfigError, did_you_mean


class DatasetEntry(BaseModel):
    """One ``datasets`` item: a dataset and the settings that say how to read it (a column setting
    added to :class:`~freezebench.config.RunConfig` is one more line here)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    dataset_config: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    encoding: str | None = None
    text_pair_column: str | None = None
    drop_invalid_rows: bool | None = None

    def run_values(self) -> dict[str, Any]:
        """The RunConfig fields this entry sets (those left out keep RunConfig's defaults)."""
        return self.model_dump(exclude_none=True)


DATASET_KEYS = list(DatasetEntry.model_fields)


def parse_datasets(items: list[Any], source: str) -> list[DatasetEntry]:
    """Validate a ``datasets`` list; every mistake is a :class:`ConfigError` naming the item."""
    entries = [_dataset_entry(i, item, source) for i, item in enumerate(items)]
    seen: dict[tuple[str, str | None], int] = {}
    for i, entry in enumerate(entries):
        first = seen.setdefault((entry.dataset, entry.dataset_config), i)
        if first != i:
            raise ConfigError(
                f"Invalid study in {source}: datasets[{i}] repeats datasets[{first}] "
                f"('{entry.dataset}'{_config_words(entry)}); give each dataset once.")
    return entries


def _dataset_entry(index: int, item: Any, source: str) -> DatasetEntry:
    where = f"{source}, datasets[{index}]"
    if isinstance(item, str):
        item = {"dataset": item}
    elif isinstance(item, DatasetEntry):
        return item
    if not isinstance(item, dict):
        raise ConfigError(f"Invalid study in {where}: expected a dataset name or a mapping with "
                          f"{', '.join(DATASET_KEYS)}; got {item!r}.")
    unknown = [key for key in item if key not in DATASET_KEYS]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"Invalid study in {where}: unknown key '{key}'."
                          f"{did_you_mean(key, DATASET_KEYS)} Keys: {', '.join(DATASET_KEYS)}.")
    try:
        return DatasetEntry.model_validate(item)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, DatasetEntry, where)) from None


def _config_words(entry: DatasetEntry) -> str:
    return f", configuration '{entry.dataset_config}'" if entry.dataset_config else ""
