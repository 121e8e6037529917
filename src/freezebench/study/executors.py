"""Executors: where the runs of a sweep execute, and the registry that names them.

An executor takes the runs still to do and calls ``on_result(record)`` once per finished run, in
any order, with the record its run wrote (completed, or failed). A failed run never stops the
others; Ctrl-C (``KeyboardInterrupt``) stops the sweep and propagates. To add one (a job queue),
write a class with the same ``execute`` method whose workers run :func:`freezebench.pipeline.run`,
and register it in :data:`EXECUTORS` as ``"module:Class"``; its constructor takes the executor's
options as keyword arguments. A class is imported only when it is asked for, so the Ray executor
(:mod:`freezebench.study.ray_executor`) needs Ray installed only where it is used.
"""

from __future__ import annotations

import logging
import pkgutil
from collections.abc import Callable
from typing import Any, Protocol

from freezebench import results
from freezebench.config import RunConfig
from freezebench.errors import ConfigError, FreezebenchError, did_you_mean
from freezebench.record import RunRecord, Status, error_of, run_id, stopped_record

logger = logging.getLogger(__name__)

OnResult = Callable[[RunRecord], None]


class Executor(Protocol):
    def execute(self, configs: list[RunConfig], on_result: OnResult) -> None:
        """Run every config; call ``on_result`` with each run's record as it finishes."""


class LocalExecutor:
    """One run after another in this process (runs share the in-memory frozen-prefix cache)."""

    def __init__(self, **options: Any):
        if options:
            names = ", ".join("--" + name.replace("_", "-") for name in options)
            raise ConfigError(f"{names} apply only to --executor ray.")

    def execute(self, configs: list[RunConfig], on_result: OnResult) -> None:
        for config in configs:
            on_result(run_one(config))


def run_one(config: RunConfig) -> RunRecord:
    """Run ``config`` and return its record; a failure is logged and its failed record returned.

    ``pipeline.run`` has already saved the failed record when it raises; a ``KeyboardInterrupt``
    (its record saved as cancelled) is not caught, so the sweep stops.
    """
    try:
        return run_pipeline(config)
    except FreezebenchError as exc:
        logger.error("Run %s failed: %s", run_id(config), exc)
        return failed_record(config, exc)
    except Exception as exc:  # a bug, not the user's mistake: keep the traceback, go on
        logger.exception("Run %s failed with an unexpected error", run_id(config))
        return failed_record(config, exc)


def run_pipeline(config: RunConfig) -> RunRecord:
    """:func:`freezebench.pipeline.run`, imported when the first run starts: the heavy part."""
    from freezebench.pipeline import run

    return run(config)


def failed_record(config: RunConfig, exc: Exception) -> RunRecord:
    """The record the failed run saved, or (if it could not be saved) one built in memory."""
    try:
        return results.load_record(results.record_path(config.output_dir, run_id(config)))
    except (OSError, ValueError):
        return stopped_record(config, Status.FAILED, error_of(exc))


# --------------------------------------------------------------------------- the registry


# name -> "module:class"; a class is imported when asked for (Ray only when it is used), and its
# constructor takes the executor's options as keyword arguments.
EXECUTORS: dict[str, str] = {
    "local": "freezebench.study.executors:LocalExecutor",
    "ray": "freezebench.study.ray_executor:RayExecutor",
}


def get_executor(name: str, **options: Any) -> Executor:
    """The executor registered under ``name``, set up with ``options``."""
    if name not in EXECUTORS:
        raise ConfigError(
            f"Unknown executor '{name}'.{did_you_mean(name, EXECUTORS)} Available: "
            f"{', '.join(EXECUTORS)}.")
    return pkgutil.resolve_name(EXECUTORS[name])(**options)
