"""Experiment trackers (``report_to``): TensorBoard, MLflow and Weights & Biases, through their
own libraries.

One tracker run per freezebench run, named by the record's id and grouped by ``run_group`` (the
study). Every history point logs ``train_loss``, ``learning_rate``, ``trainable_params``,
``epoch``, ``examples``, ``seconds`` and ``flops`` at its step, and an evaluation point the
``validation_*`` and ``test_*`` metrics; the end logs the record's headline numbers as
``final_*`` with the config as parameters, and the run's status (a failed run ends failed).
Only rank 0 of a multi-process run logs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from freezebench.config import RunConfig
from freezebench.errors import ConfigError
from freezebench.record import HistoryEntry, RunRecord, Status

METRICS = ("accuracy", "f1", "f1_macro", "loss", "pearson", "spearman", "mse")  # None: not logged
# tracker -> (module it needs, the freezebench extra that installs it)
LIBRARIES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
             "wandb": ("wandb", "wandb")}


class Tracker(Protocol):
    """One tracker's side of a run."""

    def start(self, run_id: str, group: str, config: dict[str, Any]) -> None: ...

    def log_point(self, point: HistoryEntry) -> None: ...

    def finish(self, record: RunRecord) -> None: ...


# --------------------------------------------------------------------------- what is logged


def point_scalars(point: HistoryEntry) -> dict[str, float]:
    """The numbers of one history point, by name (metrics only at an evaluation)."""
    values: dict[str, float | int | None] = {
        "train_loss": point.train_loss, "learning_rate": point.learning_rate,
        "trainable_params": point.trainable_params, "epoch": point.epoch,
        "examples": point.examples, "seconds": point.seconds, "flops": point.flops}
    for split in ("validation", "test"):
        metrics = getattr(point, split)
        if metrics is not None:
            values.update({f"{split}_{name}": getattr(metrics, name) for name in METRICS})
    return {name: float(value) for name, value in values.items() if value is not None}


def headline(record: RunRecord) -> dict[str, float]:
    """The record's headline numbers as ``final_*`` (what a stopped run has of them)."""
    values: dict[str, float | int | None] = {}
    if record.metrics is not None:
        for split in ("validation", "test"):
            metrics = getattr(record.metrics, split)
            values.update({f"{split}_{name}": getattr(metrics, name) for name in METRICS})
    if record.efficiency is not None:
        run = record.efficiency
        values.update(train_seconds=run.train_seconds,
                      standalone_train_seconds=run.standalone_train_seconds,
                      train_flops=run.train_flops, peak_memory_mb=run.peak_memory_mb,
                      cost_usd=run.cost_usd)
    if record.params is not None:
        values.update(trainable_params=record.params.trainable, total_params=record.params.total)
    return {f"final_{name}": float(value) for name, value in values.items() if value is not None}


def flat_params(config: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """The config as tracker parameters: scalars as they are, the rest (None, mappings) as JSON."""
    return {key: value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
            for key, value in config.items()}


def last_step(record: RunRecord) -> int:
    return record.history[-1].step if record.history else 0


# --------------------------------------------------------------------------- the trackers


class TensorBoardTracker:
    """Event files in ``<root>/<run id>``: scalars per step, the config as hparams at the end."""

    def __init__(self, root: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class, self._root = SummaryWriter, root

    def start(self, run_id: str, group: str, config: dict[str, Any]) -> None:
        log_dir = self._root / run_id
        shutil.rmtree(log_dir, ignore_errors=True)  # a retry replaces its events, as its record
        self._writer, self._config = self._writer_class(log_dir=str(log_dir)), config
        self._writer.add_text("group", group)

    def log_point(self, point: HistoryEntry) -> None:
        for name, value in point_scalars(point).items():
            self._writer.add_scalar(name, value, point.step)

    def finish(self, record: RunRecord) -> None:
        self._writer.add_text("status", record.status.value, last_step(record))
        if record.error is not None:
            self._writer.add_text("error", record.error.message, last_step(record))
        # run_name ".": the hparams and final_* scalars go in the run's own folder
        self._writer.add_hparams(flat_params(self._config), headline(record), run_name=".",
                                 global_step=last_step(record))
        self._writer.close()


class MLflowTracker:
    """An MLflow run named by the run id in the experiment named by the group."""

    _STATUS = {Status.COMPLETED: "FINISHED", Status.FAILED: "FAILED",
               Status.CANCELLED: "KILLED"}

    def __init__(self, tracking_uri: str):
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._client, self._metric, self._param = MlflowClient(tracking_uri), Metric, Param

    def start(self, run_id: str, group: str, config: dict[str, Any]) -> None:
        experiment = self._client.get_experiment_by_name(group)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self._client.create_experiment(group))
        self._run = self._client.create_run(experiment_id, run_name=run_id).info.run_id
        params = [self._param(key, str(value)) for key, value in flat_params(config).items()]
        for first in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self._client.log_batch(self._run, params=params[first:first + 100])

    def log_point(self, point: HistoryEntry) -> None:
        self._log(point_scalars(point), point.step)

    def finish(self, record: RunRecord) -> None:
        self._log(headline(record), last_step(record))
        self._client.set_terminated(self._run, status=self._STATUS.get(record.status, "FAILED"))

    def _log(self, scalars: dict[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        self._client.log_batch(self._run, metrics=[self._metric(name, value, stamp, step)
                                                   for name, value in scalars.items()])


class WandbTracker:
    """A W&B run named by the run id: project ``WANDB_PROJECT`` (default ``freezebench``), group
    ``WANDB_RUN_GROUP`` or the run's group, files in ``WANDB_DIR`` or the output folder;
    ``WANDB_MODE=offline`` and the other ``WANDB_*`` settings apply as wandb reads them."""

    def __init__(self, directory: Path):
        import wandb

        self._wandb, self._directory = wandb, directory

    def start(self, run_id: str, group: str, config: dict[str, Any]) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        self._run = self._wandb.init(
            project=os.environ.get("WANDB_PROJECT", "freezebench"),
            group=os.environ.get("WANDB_RUN_GROUP", group), name=run_id, config=config,
            dir=os.environ.get("WANDB_DIR", str(self._directory)))

    def log_point(self, point: HistoryEntry) -> None:
        self._run.log(point_scalars(point), step=point.step)

    def finish(self, record: RunRecord) -> None:
        self._run.summary.update({**headline(record), "status": record.status.value})
        self._run.finish(exit_code=0 if record.completed else 1)


# --------------------------------------------------------------------------- choosing them


def require(tracker: str, module: str, extra: str) -> None:
    """Import ``module``, or raise a :class:`ConfigError` that names the extra to install."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"report_to '{tracker}' needs the '{module}' package, which could not be imported "
            f"({exc}). Install it with: pip install 'freezebench[{extra}]'.") from None


def chosen(report_to: str) -> list[str]:
    """The trackers ``report_to`` names (``all``: those installed); a missing library is a
    :class:`ConfigError`, raised before anything runs."""
    if report_to == "none":
        return []
    if report_to != "all":
        require(report_to, *LIBRARIES[report_to])
        return [report_to]
    installed = [name for name, (module, _) in LIBRARIES.items()
                 if importlib.util.find_spec(module) is not None]
    if not installed:
        raise ConfigError("report_to 'all' found none of tensorboard, mlflow and wandb "
                          "installed. Install them with: pip install 'freezebench[trackers]'.")
    return installed


def default_group(config: RunConfig) -> str:
    """``run_group``, or the name of the output folder (so one folder's runs group together)."""
    return config.run_group or Path(config.output_dir).resolve().name


def mlflow_uri(output_dir: str | Path) -> str:
    """``MLFLOW_TRACKING_URI``, else a SQLite store in the output folder: MLflow's own default
    backend since its file store went into maintenance (3.x refuses it unless told)."""
    return (os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{(Path(output_dir) / 'mlflow.db').resolve()}")


def build(name: str, output_dir: Path) -> Tracker:
    if name == "tensorboard":
        return TensorBoardTracker(output_dir / "tensorboard")
    if name == "mlflow":
        return MLflowTracker(mlflow_uri(output_dir))
    return WandbTracker(output_dir)


class Tracking:
    """The run's trackers together (none when ``report_to`` is none or off rank 0)."""

    def __init__(self, config: RunConfig, trackers: Iterable[Tracker]):
        self._config, self._trackers = config, list(trackers)

    @classmethod
    def of(cls, config: RunConfig, *, main_process: bool = True) -> Tracking:
        """The trackers of ``config``; every rank checks the libraries, rank 0 alone logs."""
        names = chosen(config.report_to)
        output_dir = Path(config.output_dir)
        return cls(config, [build(name, output_dir) for name in names] if main_process else [])

    def start(self, record: RunRecord) -> None:
        for tracker in self._trackers:
            tracker.start(record.id, default_group(self._config), record.config)

    def log_point(self, point: HistoryEntry) -> None:
        for tracker in self._trackers:
            tracker.log_point(point)

    def finish(self, record: RunRecord) -> None:
        for tracker in self._trackers:
            tracker.finish(record)

    def also(self, on_point: Callable[[HistoryEntry], None] | None
             ) -> Callable[[HistoryEntry], None]:
        """A callback that tells the trackers and then ``on_point`` (a caller's) of each point."""

        def both(point: HistoryEntry) -> None:
            self.log_point(point)
            if on_point is not None:
                on_point(point)

        return both
