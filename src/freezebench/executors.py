"""Executors: where the runs of a sweep execute.

An executor takes the runs still to do and calls ``on_result(record)`` once per finished run, in
any order, with the record its run wrote (completed, or failed). A failed run never stops the
others; Ctrl-C (``KeyboardInterrupt``) stops the sweep and propagates. To add one (a job queue),
write a class with the same ``execute`` method whose workers run :func:`freezebench.pipeline.run`,
and register a factory taking its options as keyword arguments in
:data:`freezebench.sweep.EXECUTORS`, which imports the Ray executor
(:mod:`freezebench.ray_executor`) only when it is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from freezebench import results
from freezebench.config import RunConfig
from freezebench.errors import FreezebenchError
from freezebench.pipeline import new_record, record_id
from freezebench.pipeline import run as run_pipeline

logger = logging.getLogger(__name__)

OnResult = Callable[[dict[str, Any]], None]


class Executor(Protocol):
    def execute(self, configs: list[RunConfig], on_result: OnResult) -> None:
        """Run every config; call ``on_result`` with each run's record as it finishes."""


class LocalExecutor:
    """One run after another in this process (runs share the in-memory frozen-prefix cache)."""

    def execute(self, configs: list[RunConfig], on_result: OnResult) -> None:
        for config in configs:
            on_result(run_one(config))


def run_one(config: RunConfig) -> dict[str, Any]:
    """Run ``config`` and return its record; a failure is logged and its failed record returned.

    ``pipeline.run`` has already saved the failed record when it raises; a ``KeyboardInterrupt``
    (its record saved as cancelled) is not caught, so the sweep stops.
    """
    try:
        return run_pipeline(config)
    except FreezebenchError as exc:
        logger.error("Run %s failed: %s", record_id(config), exc)
        return failed_record(config, exc)
    except Exception as exc:  # a bug, not the user's mistake: keep the traceback, go on
        logger.exception("Run %s failed with an unexpected error", record_id(config))
        return failed_record(config, exc)


def failed_record(config: RunConfig, exc: Exception) -> dict[str, Any]:
    """The record the failed run saved, or (if it could not be saved) one built in memory."""
    path = results.record_path(config.output_dir, record_id(config))
    try:
        return results.load_record(path)
    except (OSError, ValueError):
        record = new_record(config)
        record.update(status="failed", error={"type": type(exc).__name__, "message": str(exc)})
        return record
