"""The Ray executor on a local Ray instance (2 CPUs): the local executor's records, the node-shared
prefix cache, retries of crashed trials, and resume of an interrupted sweep.

Ray is imported only inside the fixtures: ``require_ray`` must run first (it decides which address
a local instance binds to).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from freezebench.cli import app
from freezebench.errors import ConfigError
from freezebench.record import RunRecord, run_id
from freezebench.results import runs_dir, scan_records
from freezebench.study.config import expand, parse_study
from freezebench.study.executors import get_executor
from freezebench.study.sweep import run_sweep

# fp32: where the CPU has native bf16, "auto" picks bf16, whose sums differ between a trial's one
# thread and this process's two by more than the comparison below allows.
RECIPE = {"max_train_samples": 16, "max_eval_samples": 12, "per_device_train_batch_size": 8,
          "per_device_eval_batch_size": 8, "max_length": 32, "precision": "fp32"}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for this module, started the way the executor starts one."""
    from freezebench.study.ray_executor import RayOptions, connected, require_ray

    require_ray(local=True)
    with connected(RayOptions(num_cpus=2)):
        yield


@pytest.fixture()
def values(tiny_model_dirs, sentiment_folder, tmp_path) -> dict:
    return {"name": "tiny", "model": tiny_model_dirs["bert"], "dataset": str(sentiment_folder),
            "recipe": RECIPE, "seeds": [1], "learning_rates": [1e-3]}


def by_id(output_dir) -> dict[str, dict]:
    records, bad = scan_records(output_dir)
    assert bad == []
    return {r.id: r.to_json() for r in records}


def test_a_local_ray_instance_listens_on_loopback_only_without_dashboard(local_ray):
    import ray

    assert ray.util.get_node_ip_address() == "127.0.0.1"
    ray_pids = {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in ray_pids]
    assert listening  # the raylet and GCS of this instance listen...
    assert {c.laddr.ip.removeprefix("::ffff:") for c in listening} == {"127.0.0.1"}  # ...here only
    assert 8265 not in {c.laddr.port for c in listening}  # no dashboard web UI
    dashboards = [p.cmdline() for p in psutil.Process().children(recursive=True)
                  if any(part.endswith("dashboard.py") for part in p.cmdline())]
    assert all("--disable-frontend" in command for command in dashboards)  # its head, UI off


def test_ray_sweep_writes_the_records_of_the_local_sweep(local_ray, values, tmp_path, capsys):
    study = parse_study({**values, "strategies": [
        "full", "head", {"name": "bottom", "params": {"k": [2, 99]}}]})
    local = run_sweep(study, output_dir=tmp_path / "local")
    capsys.readouterr()
    ray_summary = run_sweep(study, output_dir=tmp_path / "ray",
                            executor=get_executor("ray", max_concurrent_runs=2))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]

    ids = [run_id(c) for c in expand(study.model_copy(update={"output_dir": "x"}))]
    assert (ray_summary.completed, ray_summary.failed) == (local.completed, local.failed) == (3, 1)
    assert sorted(line.split()[1] for line in lines) == sorted(ids)  # on_result once per run
    on_local, on_ray = by_id(tmp_path / "local"), by_id(tmp_path / "ray")
    assert sorted(on_local) == sorted(on_ray) == sorted(ids)
    for rid, mine in on_ray.items():
        theirs = on_local[rid]
        assert mine["status"] == theirs["status"]
        assert ({k: v for k, v in mine["config"].items() if k not in ("output_dir", "cache_dir")}
                == {k: v for k, v in theirs["config"].items()
                    if k not in ("output_dir", "cache_dir")})
        if mine["status"] == "completed":  # same data, seed and order: same numbers (float
            # sums in a trial's 1 thread and this process's 2 may differ in the last bits)
            for key in ("accuracy", "f1", "loss"):
                assert mine["metrics"]["test"][key] == pytest.approx(
                    theirs["metrics"]["test"][key], rel=1e-5, abs=1e-6)
            # what Tune saw of the trial: validation, never test
            trial_dir = next((tmp_path / "ray" / "ray").glob(f"sweep-*/{rid}"))
            reported = [json.loads(line) for line in
                        (trial_dir / "result.json").read_text().splitlines() if line]
            evaluated = [p for p in mine["history"] if p["validation"]]
            # each evaluation as it happened, then the run's end
            assert [r["step"] for r in reported] == [p["step"] for p in evaluated] + [
                mine["efficiency"]["steps"]]
            assert [r["validation_f1_macro"] for r in reported[:-1]] == [
                p["validation"]["f1_macro"] for p in evaluated]
            assert reported[-1]["status"] == "completed"
            assert reported[-1]["validation_f1_macro"] == (
                mine["metrics"]["validation"]["f1_macro"])
            assert not [key for r in reported for key in r if "test" in key]
        else:  # a user mistake fails the same way every time: recorded once, not retried
            assert mine["error"]["type"] == theirs["error"]["type"] == "StrategyError"
            trial_dir = next((tmp_path / "ray" / "ray").glob(f"sweep-*/{rid}"))
            assert not (trial_dir / "error.txt").exists()


def test_second_trial_on_a_node_reads_the_prefix_cache_the_first_built(local_ray, values,
                                                                         tmp_path):
    study = parse_study({**values, "learning_rates": [1e-3, 1e-2], "strategies": ["head"]})
    cache = tmp_path / "node-cache"
    executor = get_executor("ray", max_concurrent_runs=1, cache_dir=str(cache))
    run_sweep(study, output_dir=tmp_path / "out", executor=executor, progress=False)
    first, second = (by_id(tmp_path / "out")[run_id(c)]["efficiency"] for c in expand(
        study.model_copy(update={"output_dir": str(tmp_path / "out")})))
    assert first["cache_hit"] is False and first["cache_build_seconds"] > 0
    assert second["cache_hit"] is True and second["cache_build_seconds"] == 0.0
    assert len(list(cache.glob("*.json"))) == 3  # one entry per split, written by the first


class TrialKiller(threading.Thread):
    """Kills (SIGKILL) the process of the n-th Ray trial attempt it sees, for n in ``attempts``.

    A trial attempt is a Ray worker process of this test that has loaded torch (idle workers and
    Ray's agents never do; a trial does as it unpickles its function). Its title does not tell:
    Ray shows a worker as IDLE while the trial runs in a thread of it.
    """

    def __init__(self, attempts: set[int]):
        super().__init__(daemon=True)
        self.attempts, self.seen, self.killed = attempts, [], []
        self.done = threading.Event()
        # workers of earlier trials may still be exiting
        self.earlier = {p.pid for p in psutil.Process().children(recursive=True)}

    def run(self) -> None:
        while not self.done.wait(0.05):
            for process in psutil.Process().children(recursive=True):
                if process.pid in self.earlier or process.pid in self.seen:
                    continue
                if _runs_torch(process):
                    self.seen.append(process.pid)
                    if len(self.seen) in self.attempts:
                        process.kill()
                        self.killed.append(process.pid)


def _runs_torch(process: psutil.Process) -> bool:
    try:
        return any("libtorch" in m.path for m in process.memory_maps())
    except psutil.Error:
        return False


def sweep_with_killer(study, output_dir, attempts: set[int]) -> tuple[dict, TrialKiller]:
    killer = TrialKiller(attempts)
    killer.start()
    seen: list[RunRecord] = []
    executor = get_executor("ray", max_retries=1)
    try:
        executor.execute(expand(study.model_copy(update={"output_dir": str(output_dir)})),
                         seen.append)
    finally:
        killer.done.set()
        killer.join()
    assert len(seen) == 1  # one on_result per run, however many attempts
    return seen[0].to_json(), killer


def test_a_crashed_trial_is_retried_and_one_that_keeps_crashing_is_recorded(local_ray, values,
                                                                           tmp_path, caplog):
    study = parse_study({**values, "strategies": ["head"]})
    with caplog.at_level(logging.WARNING, logger="freezebench"):
        record, killer = sweep_with_killer(study, tmp_path / "once", attempts={1})
    assert len(killer.killed) == 1 and len(killer.seen) == 2  # killed once, then a new attempt
    assert record["status"] == "completed" and record["metrics"]["test"]["samples"] == 12
    assert by_id(tmp_path / "once")[record["id"]]["status"] == "completed"
    assert f"Run {record['id']} failed (attempt 1" in caplog.text
    assert "Ray retries it" in caplog.text
    [error_file] = (tmp_path / "once" / "ray").glob(f"sweep-*/{record['id']}/error.txt")
    assert "Failure # 1" in error_file.read_text()  # Ray's own account of the crash

    record, killer = sweep_with_killer(study, tmp_path / "always", attempts={1, 2})
    assert len(killer.killed) == 2  # the first attempt and its one retry
    assert record["status"] == "failed" and record["error"]["type"] == "RayTrialError"
    assert "failed 2 time(s)" in record["error"]["message"]
    assert by_id(tmp_path / "always")[record["id"]] == record  # the failed record is on disk


def test_an_interrupted_ray_sweep_resumes_its_experiment_without_rerunning(values, tmp_path):
    out = tmp_path / "results"
    study_values = {**values, "strategies": ["full", "head"], "output_dir": str(out)}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_values))
    ids = [run_id(c) for c in expand(parse_study(study_values))]
    command = [sys.executable, "-m", "freezebench", "sweep", "--config", str(path),
               "--executor", "ray", "--max-concurrent-runs", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log)
        deadline = time.monotonic() + 180
        while not list(runs_dir(out).glob("*.json")) and first.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)  # Ctrl-C
        first.wait(timeout=120)
    log_text = (tmp_path / "first.log").read_text()
    assert first.returncode == 130, log_text
    before = {p.name: p.stat().st_mtime_ns for p in runs_dir(out).glob("*.json")}
    assert 1 <= len(before) < len(ids), log_text

    second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr
    assert "Restoring the interrupted Ray experiment" in second.stderr
    assert f"{len(ids)} runs planned: {len(before)} already completed" in second.stdout
    records = by_id(out)
    assert sorted(records) == sorted(ids) and {r["status"] for r in records.values()} == {
        "completed"}
    for name, mtime in before.items():  # runs finished before Ctrl-C were not run again
        assert (runs_dir(out) / name).stat().st_mtime_ns == mtime
    [experiment] = (out / "ray").glob("sweep-*")  # restored, not a second experiment
    assert json.loads((experiment / "freezebench-sweep.json").read_text())["finished"] is True


def test_ray_options_are_checked_and_a_missing_ray_says_how_to_install_it(values, tmp_path,
                                                                          monkeypatch):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**values, "strategies": ["head"],
                                    "output_dir": str(tmp_path / "results")}))
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", "--config", str(path), "--gpus-per-run", "1"])
    assert isinstance(result.exception, ConfigError)
    assert "--gpus-per-run apply only to --executor ray" in str(result.exception)
    with pytest.raises(ConfigError, match="max_concurrent_runs' = 0"):
        get_executor("ray", max_concurrent_runs=0)

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    result = runner.invoke(app, ["sweep", "--config", str(path), "--executor", "ray"])
    assert isinstance(result.exception, ConfigError)
    assert 'pip install "freezebench[ray]"' in str(result.exception)
    assert not Path(tmp_path / "results").exists()  # stopped before the sweep began
