"""The two ends of a Ray Tune trial: the trainable that runs one run on a worker, and the callback
that hands each finished run's record to the sweep in the driver.

Imported only once Ray is set up (see :mod:`freezebench.study.ray_executor`): importing ``ray``
fixes which address a local instance binds to.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ray import tune

from freezebench import results
from freezebench.config import RunConfig
from freezebench.errors import FreezebenchError
from freezebench.record import (
    HistoryEntry,
    RunError,
    RunRecord,
    SplitMetrics,
    Status,
    stopped_record,
)
from freezebench.study.executors import OnResult, failed_record

logger = logging.getLogger(__name__)

NODE_CACHE_FOLDER = "freezebench-prefix-cache"


# --------------------------------------------------------------------------- worker side


def run_trial(params: dict[str, Any]) -> None:
    """One trial: run one config through the pipeline; its record lands in the results folder.

    ``params`` holds ``run`` (``id`` and ``config``), ``workdir`` (the driver's working folder,
    against which relative paths in the config resolve) and ``cache_dir`` (the node-shared
    frozen-prefix cache folder; ``None``: one under this node's temp folder). A run whose
    completed record already exists is not run again (a restored experiment may hold it). A
    user mistake (``FreezebenchError``) fails the same way every time, so it is reported, not
    retried; anything else raises, and Ray retries the trial (``FailureConfig``).
    """
    _quiet_libraries()
    if os.path.isdir(params["workdir"]):
        os.chdir(params["workdir"])  # a trial owns its process (reuse_actors=False)
    config = RunConfig.model_validate(params["run"]["config"])
    if config.use_cache and config.cache_dir is None:
        config = config.model_copy(update={"cache_dir": node_cache_dir(params["cache_dir"])})
    record = completed_record(config.output_dir, params["run"]["id"])
    if record is None:
        from freezebench.pipeline import run  # the heavy part, on the worker alone

        try:
            record = run(config, on_point=_report_evaluation)
        except FreezebenchError as exc:
            record = failed_record(config, exc)
    validation = record.metrics.validation if record.metrics else None
    tune.report({"status": record.status.value,
                 "step": record.efficiency.steps if record.efficiency else 0,
                 **_validation_metrics(validation)})


# Tune sees validation only: a scheduler or searcher a user plugs in must never pick on test
_REPORTED = ("f1_macro", "accuracy", "f1", "loss", "pearson", "spearman", "mse")


def _report_evaluation(point: HistoryEntry) -> None:
    """Each evaluation during training, as it happens: a Tune scheduler can stop on it."""
    if point.validation is None:
        return
    tune.report({"status": "running", "step": point.step,
                 "training_seconds": point.seconds, **_validation_metrics(point.validation)})


def _validation_metrics(validation: SplitMetrics | None) -> dict[str, float]:
    """The validation metrics the run's problem has (a regression's, or a classifier's)."""
    values = {m: getattr(validation, m) if validation else -1.0 for m in _REPORTED}
    return {f"validation_{m}": value for m, value in values.items() if value is not None}


def _quiet_libraries() -> None:
    """A trial's output goes to Ray's logs and the driver, never a terminal: no progress bars."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def node_cache_dir(folder: str | None) -> str:
    """The frozen-prefix cache folder the trials on this node share."""
    return folder or str(Path(tempfile.gettempdir()) / NODE_CACHE_FOLDER)


def completed_record(output_dir: str, run_id: str) -> RunRecord | None:
    """The completed record of ``run_id``; ``None`` when there is none (or none readable)."""
    try:
        record = results.load_record(results.record_path(output_dir, run_id))
    except (OSError, ValueError):
        return None
    return record if record.completed else None


def trial_name(trial: Any) -> str:
    """Trials and their folders are named by run id."""
    return str(trial.config["run"]["id"])


# --------------------------------------------------------------------------- driver side


@dataclass
class Receiver:
    """What the sweep waits for: the runs still to report, and where their records go."""

    pending: dict[str, RunConfig]
    on_result: OnResult
    started_at: datetime
    seen: set[str] = field(default_factory=set)

    def finished(self, trial: Any, error: bool) -> None:
        """Read the record ``trial`` left and hand it on (once per run of this sweep)."""
        run_id = trial_name(trial)
        if run_id not in self.pending or run_id in self.seen:
            return  # a run of a restored experiment that an earlier sweep already finished
        self.seen.add(run_id)
        config = self.pending[run_id]
        self.on_result(self._record(config, run_id, trial, error))

    def _record(self, config: RunConfig, run_id: str, trial: Any, error: bool) -> RunRecord:
        path = results.record_path(config.output_dir, run_id)
        try:
            record = results.load_record(path)
        except (OSError, ValueError):
            record = None
        if record is not None and (record.completed or self._this_sweep(record)):
            return record  # what the run wrote (a failed record too), or found completed
        if error:
            message = (f"The Ray trial failed {trial.num_failures} time(s) and is not retried "
                       f"again; last error: {error_text(trial)}")
        else:
            message = (f"The Ray trial finished but its record {path} is missing: is the "
                       "results folder on storage that every node of the cluster shares?")
        record = stopped_record(config, Status.FAILED,
                                RunError(type="RayTrialError", message=message))
        results.save_record(config.output_dir, record)
        return record

    def _this_sweep(self, record: RunRecord) -> bool:
        return datetime.fromisoformat(record.started_at) >= self.started_at


def error_text(trial: Any, limit: int = 300) -> str:
    """The gist of the trial's latest error: its first ``SomeError: message`` line (the root
    cause of a chain, e.g. a module missing on a worker node), else its last line."""
    text = None
    if trial.error_file and os.path.isfile(trial.error_file):  # the driver's copy, current
        with open(trial.error_file, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    lines = [line.strip() for line in (text or trial.get_error() or "").splitlines()
             if line.strip()]
    errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
    line = (errors or lines or ["unknown (Ray gave no error text)"])[0 if errors else -1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt): ")


_RECEIVER: Receiver | None = None


def set_receiver(receiver: Receiver | None) -> None:
    """Where :class:`RecordRelay` sends records in this process.

    A module variable rather than a field of the callback: Tune pickles its callbacks into the
    experiment state and uses those pickled copies when the experiment is restored, so the
    callback must not carry the sweep's (unpicklable, per-process) ``on_result``.
    """
    global _RECEIVER
    _RECEIVER = receiver


class RecordRelay(tune.Callback):
    """Tune callback in the driver: one ``on_result`` per finished run, as runs finish."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._relay(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._relay(trial, error=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logger.warning("Run %s failed (attempt %d: %s); Ray retries it.", trial_name(trial),
                       trial.num_failures, error_text(trial))

    @staticmethod
    def _relay(trial: Any, error: bool) -> None:
        if _RECEIVER is not None:
            _RECEIVER.finished(trial, error)

