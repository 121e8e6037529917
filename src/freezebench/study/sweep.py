"""Run a study: expand it, skip the runs already completed, hand the rest to an executor.

A sweep is re-runnable: run the same command again after a crash, a Ctrl-C or a kill and it does
only what is missing. Completed records are kept; failed and cancelled runs are redone; a record
file that cannot be read (cut short, not JSON) is moved aside to ``<name>.corrupt-<time>`` (never
deleted) and its run redone. The resolved study is saved as ``<output_dir>/study.yaml``.

A run that cannot write its record (disk full, quota, read-only folder) stops the sweep with a
:class:`~freezebench.errors.StorageError`: every later run would fail the same way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import yaml
from tqdm.auto import tqdm

from freezebench import results, trackers
from freezebench.config import RunConfig
from freezebench.engine.distributed import launched_processes
from freezebench.errors import ConfigError, StorageError
from freezebench.record import RunRecord, run_id
from freezebench.strategies import strategy_label
from freezebench.study.config import StudyConfig, expand, resolve_aliases
from freezebench.study.executors import Executor, LocalExecutor
from freezebench.study.selection import select_runs

logger = logging.getLogger(__name__)

STUDY_FILE = "study.yaml"
_STUDY_HEADER = ("# The resolved study of this results folder, written by `freezebench sweep`.\n"
                 "# `freezebench sweep --config <this file>` resumes it.\n")


@dataclass
class SweepSummary:
    """What a sweep planned and what became of it."""

    planned: int
    skipped: int
    output_dir: str
    completed: int = 0
    failed: int = 0
    failed_ids: list[str] = field(default_factory=list)

    def add(self, record: RunRecord) -> None:
        if record.completed:
            self.completed += 1
        else:
            self.failed += 1
            self.failed_ids.append(record.id)

    def __str__(self) -> str:
        return (f"{self.planned} runs planned: {self.skipped} already completed (skipped), "
                f"{self.completed} completed, {self.failed} failed. Results in {self.output_dir}")


def run_sweep(
    study: StudyConfig,
    *,
    executor: Executor | None = None,
    output_dir: str | Path | None = None,
    progress: bool = True,
    only: Sequence[str] = (),
) -> SweepSummary:
    """Run every run of ``study`` that has no completed record yet; see the module docstring.

    ``only``: ``KEY=VALUE`` filters (:mod:`freezebench.study.selection`); the runs they leave
    out are neither run nor counted. ``progress`` shows a bar (on a terminal only) and prints
    one line per finished run.
    Ctrl-C stops the sweep (the current run is recorded as cancelled) and re-raises.
    """
    if launched_processes() > 1:
        raise ConfigError(
            "freezebench sweep runs each run in one process; it cannot run under torchrun or "
            "accelerate launch (those are for one run: freezebench run). To use several GPUs "
            "for a study, run it with --executor ray --gpus-per-run 1.")
    if output_dir is not None:
        study = study.model_copy(update={"output_dir": str(output_dir)})
    study = resolve_aliases(study)
    configs = select_runs(expand(study), only)
    for report_to in {config.report_to for config in configs}:
        trackers.chosen(report_to)  # a tracker's missing library fails before anything runs
    out = study.results_dir()
    quarantine_unreadable(out)
    write_study(study, out)
    done = results.completed_ids(out)
    pending = [config for config in configs if run_id(config) not in done]
    summary = SweepSummary(planned=len(configs), skipped=len(configs) - len(pending),
                           output_dir=out)
    _say(progress, f"study {study.name}: {task_words(study)}, {summary.planned} runs planned, "
                   f"{summary.skipped} already completed, {len(pending)} to run -> {out}")
    with WorkBar(pending, desc=f"sweep {study.name}", enabled=None if progress else False
                 ) as bar:

        def on_result(record: RunRecord) -> None:
            summary.add(record)
            bar.finished(record.id)
            done_now = summary.completed + summary.failed
            _say(progress, f"[{done_now}/{len(pending)}] {record.summary_line()}")
            if record.error is not None and record.error.type == StorageError.__name__:
                raise StorageError(record.error.message)

        try:
            (executor or LocalExecutor()).execute(pending, on_result)
        except KeyboardInterrupt:
            logger.warning("Sweep interrupted after %d of %d runs; run the same command again "
                           "to resume it.", summary.completed + summary.failed, len(pending))
            raise
    return summary


class WorkBar:
    """A progress bar over the pending runs' expected work (:mod:`freezebench.study.work`), not
    their number; its time left is that work at the seconds per unit of work of the runs done so
    far (an estimate, and the bar says so). Shown on a terminal only, on stderr."""

    def __init__(self, configs: list[RunConfig], *, desc: str, enabled: bool | None = None,
                 file: TextIO | None = None):
        """``enabled``: ``None`` shows the bar where ``file`` (default stderr) is a terminal."""
        file = file or sys.stderr
        shown = bool(configs) and (file.isatty() if enabled is None else enabled)
        if shown:  # model classes imported, and the estimate made, only for a bar one sees
            from freezebench.study.work import expected_work

            work = expected_work(configs)
        else:
            work = [1.0] * len(configs)
        self.work = {run_id(c): w for c, w in zip(configs, work, strict=True)}
        self.desc, self.runs_done = desc, 0
        self.bar = tqdm(
            total=sum(work), desc=self._description(), file=file, smoothing=0, mininterval=0,
            disable=not shown,
            bar_format="{desc}: {percentage:3.0f}% of the expected work |{bar}| {elapsed}, "
                       "about {remaining} left (an estimate from the runs done)")

    def finished(self, record_id: str) -> None:
        """Count the run ``record_id`` as done (its expected work, whatever it took)."""
        self.runs_done += 1
        self.bar.set_description_str(self._description(), refresh=False)
        self.bar.update(self.work.get(record_id, 0.0))

    def _description(self) -> str:
        return f"{self.desc} ({self.runs_done}/{len(self.work)} runs)"

    def __enter__(self) -> WorkBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def plan_sweep(study: StudyConfig, *, output_dir: str | Path | None = None,
               only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """What ``run_sweep`` would do, reading only: every planned run (that ``only`` keeps) with its
    id, strategy label, parameters, learning rate, seed and whether its completed record exists
    (done) or not."""
    if output_dir is not None:
        study = study.model_copy(update={"output_dir": str(output_dir)})
    study = resolve_aliases(study)
    done = results.completed_ids(study.results_dir())
    ids = [(run_id(config), config) for config in select_runs(expand(study), only)]
    return [{"id": rid, "model": config.model, "dataset": config.dataset,
             "dataset_config": config.dataset_config, "strategy": config.strategy,
             "strategy_label": strategy_label(config.strategy, config.strategy_params),
             "strategy_params": config.strategy_params, "learning_rate": config.learning_rate,
             "seed": config.seed, "status": "done" if rid in done else "pending"}
            for rid, config in ids]


def task_words(study: StudyConfig) -> str:
    """``"1 task"`` or ``"6 tasks (2 models x 3 datasets)"``: what the study covers."""
    models, datasets = len(study.model_list()), len(study.dataset_list())
    if models * datasets == 1:
        return "1 task"
    return (f"{models * datasets} tasks ({models} model{'s' * (models > 1)} x {datasets} "
            f"dataset{'s' * (datasets > 1)})")


def quarantine_unreadable(output_dir: str | Path) -> list[Path]:
    """Move record files that cannot be read to ``<name>.corrupt-<time>``; return the new paths."""
    _, bad = results.scan_records(output_dir)
    moved = []
    for item in bad:
        target = _free_name(item.path, f"corrupt-{_stamp()}")
        item.path.replace(target)
        logger.warning("Record %s is unreadable (%s); moved it to %s, its run will be redone.",
                       item.path, item.reason, target.name)
        moved.append(target)
    return moved


def write_study(study: StudyConfig, output_dir: str | Path) -> Path:
    """Save the resolved study as ``study.yaml`` (a different earlier one is moved aside)."""
    path = Path(output_dir) / STUDY_FILE
    values = study.model_dump(mode="json", exclude_none=True)
    for entry, source in zip(values["strategies"], study.strategies, strict=True):
        entry["learning_rates"] = list(source.learning_rates or study.learning_rates)
    text = _STUDY_HEADER + yaml.safe_dump(values, sort_keys=False)
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        previous = _free_name(path, f"previous-{_stamp()}")
        path.replace(previous)
        logger.warning("The study in %s changed; the earlier %s is kept as %s.",
                       output_dir, STUDY_FILE, previous.name)
    results.write_text_atomic(path, text)
    return path


def _free_name(path: Path, suffix: str) -> Path:
    target = path.with_name(f"{path.name}.{suffix}")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.{suffix}-{number}")
    return target


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _say(enabled: bool, line: str) -> None:
    if enabled:
        tqdm.write(line, file=sys.stdout)
