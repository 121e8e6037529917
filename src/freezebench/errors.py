"""Errors a user can act on.

Every mistake in the user's input (data, config, model, strategy) is raised as a subclass of
:class:`FreezebenchError`; the CLI prints its message and exits non-zero without a traceback.
Anything else is a bug in freezebench and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FreezebenchError(Exception):
    """A problem with the user's input, explained in words they can act on."""


class ConfigError(FreezebenchError):
    """A run or study configuration that is invalid."""


class DataError(FreezebenchError):
    """A dataset that cannot be used as it is."""


class ModelError(FreezebenchError):
    """A model that cannot be loaded or whose architecture is not known."""


class StrategyError(FreezebenchError):
    """An unknown freezing strategy or an invalid strategy parameter."""


class TrainingError(FreezebenchError):
    """A run that had to stop during training (diverged, out of memory, ...).

    ``step`` is the optimizer step at which it stopped, when known (1-based).
    """

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


class OutOfMemoryError(TrainingError):
    """A run that ran out of GPU or CPU memory; the message says what to make smaller."""


class StorageError(FreezebenchError):
    """Results that cannot be written (disk full, quota, read-only folder): stops a sweep."""


class HubError(FreezebenchError):
    """A saved model that could not be pushed to the Hugging Face Hub; the local copy is kept."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""
