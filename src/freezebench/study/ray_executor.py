"""Run a sweep on Ray: each run is one Ray Tune trial (``freezebench sweep --executor ray``).

Ray (the optional extra ``freezebench[ray]``) schedules the runs on a cluster (``--ray-address``)
or on a local instance started here, bound to the loopback address, without a dashboard. Each
trial runs one config through the same pipeline as the local executor and writes the same record
into the same results folder, which must therefore be on storage every node shares. Resources per
run, the concurrency limit and retries (``FailureConfig``) are Ray's.

Resume works both ways. The sweep skips runs whose completed record exists before Ray starts.
Ray's own experiment state lives in ``<output_dir>/ray/sweep-<time>/``; when the newest experiment
there was interrupted (Ctrl-C, a killed driver) and holds no run outside this study, it is restored
with ``Tuner.restore``: its unfinished and errored trials run again, its finished ones do not, and
a restored trial whose run has a completed record returns at once. Runs it does not hold go to a
new experiment.

Trials on one node share a frozen-prefix cache folder (the study's ``cache_dir``, else ``cache_dir``
of these options, else one in the node's temp folder), so the second trial on a node reads what the
first one built instead of rebuilding it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from freezebench import results
from freezebench.config import RunConfig, build_model
from freezebench.errors import ConfigError
from freezebench.record import run_id
from freezebench.study.executors import OnResult

logger = logging.getLogger(__name__)

RAY_FOLDER = "ray"
MANIFEST = "freezebench-sweep.json"
INSTALL_HINT = 'pip install "freezebench[ray]"'


class RayOptions(BaseModel):
    """Where and how the trials run."""

    model_config = ConfigDict(extra="forbid")

    ray_address: str | None = None      # a running cluster ("auto", "host:6379"); None: start one
    num_cpus: int | None = Field(default=None, ge=1)  # CPUs of a local instance (None: all)
    cpus_per_run: float = Field(default=1.0, gt=0)
    gpus_per_run: float = Field(default=0.0, ge=0)
    max_concurrent_runs: int | None = Field(default=None, ge=1)
    max_retries: int = Field(default=1, ge=0)
    cache_dir: str | None = None        # node-shared prefix cache (None: in the temp folder)


class RayExecutor:
    """Runs each config as a Ray Tune trial; see the module docstring."""

    def __init__(self, **options: Any):
        self.options: RayOptions = build_model(RayOptions, options, "the Ray executor's options")
        require_ray(local=self.options.ray_address is None)

    def execute(self, configs: list[RunConfig], on_result: OnResult) -> None:
        if not configs:
            return
        output_dir = _one_output_dir(configs)
        root = Path(output_dir).resolve() / RAY_FOLDER
        pending = {run_id(config): config for config in configs}
        with connected(self.options):
            from freezebench.study import ray_trials

            receiver = ray_trials.Receiver(pending, on_result, _now())
            ray_trials.set_receiver(receiver)
            try:
                allowed = set(pending) | results.completed_ids(output_dir)
                interrupted = interrupted_experiment(root, allowed)
                if interrupted is not None:
                    logger.warning("Restoring the interrupted Ray experiment %s.", interrupted)
                    _fit(self._restored_tuner(interrupted), interrupted)
                rest = [config for run, config in pending.items() if run not in receiver.seen]
                if rest:
                    folder = _new_experiment(root, rest)
                    _fit(self._tuner(rest, folder), folder)
            finally:
                ray_trials.set_receiver(None)

    def _restored_tuner(self, folder: Path) -> Any:
        from ray import tune

        return tune.Tuner.restore(
            str(folder), trainable=_trainable(self.options.cpus_per_run, self.options.gpus_per_run),
            resume_unfinished=True, restart_errored=True)

    def _tuner(self, configs: list[RunConfig], folder: Path) -> Any:
        from ray import tune

        from freezebench.study import ray_trials

        options = self.options
        runs = [{"id": run_id(c), "config": c.model_dump(mode="json")} for c in configs]
        return tune.Tuner(
            _trainable(options.cpus_per_run, options.gpus_per_run),
            param_space={"run": tune.grid_search(runs), "workdir": os.getcwd(),
                         "cache_dir": options.cache_dir},
            # A fresh process per trial: clean memory measurements; the cache is shared on disk.
            tune_config=tune.TuneConfig(max_concurrent_trials=options.max_concurrent_runs,
                                        reuse_actors=False,
                                        trial_name_creator=ray_trials.trial_name,
                                        trial_dirname_creator=ray_trials.trial_name),
            run_config=tune.RunConfig(name=folder.name, storage_path=str(folder.parent),
                                      failure_config=tune.FailureConfig(
                                          max_failures=options.max_retries),
                                      callbacks=[ray_trials.RecordRelay()], verbose=0),
        )


def require_ray(local: bool) -> None:
    """Fail with the install command when Ray is missing.

    A local instance binds to the loopback address: Ray uses its local-only address logic (the
    one it uses on macOS and Windows) when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is 0, which it
    reads when ``ray`` is first imported, so it is set before that import.
    """
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed. Install it with: "
                          f"{INSTALL_HINT}") from None


@contextlib.contextmanager
def connected(options: RayOptions) -> Iterator[None]:
    """Use the Ray this process is connected to, else connect to or start one (and stop it)."""
    import ray

    if ray.is_initialized():
        _check_resources(options, local=False)
        yield
        return
    if options.ray_address:
        try:
            ray.init(address=options.ray_address)
        except ConnectionError as exc:
            raise ConfigError(f"Could not connect to the Ray cluster at '{options.ray_address}': "
                              f"{exc}. Start it with `ray start --head`, or leave out "
                              "--ray-address to run on a local Ray instance.") from None
    else:
        ray.init(address="local", num_cpus=options.num_cpus, include_dashboard=False)
    try:
        _check_resources(options, local=not options.ray_address)
        yield
    finally:
        ray.shutdown()


def _check_resources(options: RayOptions, local: bool) -> None:
    import ray

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if local and (options.cpus_per_run > cpus or options.gpus_per_run > gpus):
        raise ConfigError(
            f"A run asks for {options.cpus_per_run:g} CPU(s) and {options.gpus_per_run:g} GPU(s), "
            f"but the local Ray instance has {cpus:g} CPU(s) and {gpus:g} GPU(s). Lower "
            "--cpus-per-run/--gpus-per-run.")
    if gpus and not options.gpus_per_run:
        logger.warning("The Ray cluster has %g GPU(s) but --gpus-per-run is 0: the runs train "
                       "on CPUs.", gpus)
    if options.gpus_per_run > 1:
        logger.warning("A run trains on one GPU; --gpus-per-run %g reserves GPUs it leaves idle.",
                       options.gpus_per_run)


def interrupted_experiment(root: Path, allowed: set[str]) -> Path | None:
    """The newest experiment under ``root`` if it was interrupted and can resume this sweep.

    It can when Ray can restore it and each of its runs is in ``allowed`` (this sweep's runs or
    completed ones): a restored experiment runs all of its unfinished trials.
    """
    from ray import tune

    folders = sorted(p for p in root.glob("sweep-*") if (p / MANIFEST).is_file())
    if not folders:
        return None
    folder = folders[-1]
    manifest = _read_manifest(folder)
    if manifest is None or manifest.get("finished", True):
        return None
    outside = set(manifest.get("runs", [])) - allowed
    if outside:
        logger.warning("Not restoring the interrupted Ray experiment %s: it holds %d run(s) "
                       "outside this study (e.g. %s). Its runs start afresh.", folder,
                       len(outside), sorted(outside)[0])
        return None
    if not tune.Tuner.can_restore(str(folder)):
        logger.warning("The interrupted Ray experiment %s holds no state Ray can restore; its "
                       "runs start afresh.", folder)
        return None
    return folder


def _trainable(cpus: float, gpus: float) -> Any:
    from ray import tune

    from freezebench.study.ray_trials import run_trial

    return tune.with_resources(run_trial, {"cpu": cpus, "gpu": gpus})


def _fit(tuner: Any, folder: Path) -> None:
    """Run the experiment; a stop before every trial ended (Ctrl-C) stops the sweep."""
    tuner.fit()
    manifest = _read_manifest(folder) or {}
    if not _all_trials_ended(folder, len(manifest.get("runs", []))):
        raise KeyboardInterrupt(f"Ray experiment {folder} interrupted")
    _write_manifest(folder, {**manifest, "finished": True})


def _all_trials_ended(folder: Path, runs: int) -> bool:
    """Whether the experiment state Tune saved shows every run's trial ended.

    Read from the saved state: after a Ctrl-C, Tune saves the stopped trials as pending (to resume
    them) while the result grid ``fit`` returns shows them as terminated; trials it had not yet
    created are in neither.
    """
    from ray import tune

    statuses = [trial.status for trial in tune.ExperimentAnalysis(str(folder)).trials]
    return len(statuses) >= runs and all(s in ("TERMINATED", "ERROR") for s in statuses)


def _new_experiment(root: Path, configs: list[RunConfig]) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder, number = root / f"sweep-{stamp}", 1
    while folder.exists():
        number += 1
        folder = root / f"sweep-{stamp}-{number}"
    _write_manifest(folder, {"runs": [run_id(c) for c in configs], "finished": False})
    return folder


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    results.write_json_atomic(folder / MANIFEST, manifest)


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _one_output_dir(configs: list[RunConfig]) -> str:
    folders = {str(Path(c.output_dir).resolve()) for c in configs}
    if len(folders) > 1:
        raise ConfigError("The Ray executor runs the runs of one results folder at a time; got "
                          f"{len(folders)}: {', '.join(sorted(folders))}.")
    return configs[0].output_dir


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)
