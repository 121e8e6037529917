"""Safety: no file escapes the output folder, no network beyond the hub the user asked for, no
remote code without the flag and a pinned revision, no unpickling of files freezebench did not
write."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from freezebench.config import RunConfig
from freezebench.engine.prefix_cache import CachedStates, PrefixCacheStore
from freezebench.errors import FreezebenchError, ModelError
from freezebench.model.loading import load_model, load_tokenizer
from freezebench.record import run_id
from freezebench.report.document import write_report
from freezebench.results import record_path
from freezebench.study.config import parse_study
from freezebench.study.sweep import run_sweep


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
            "HF_MODULES_CACHE": str(tmp_path / "hf-modules"), **extra}


# --------------------------------------------------------------------------------- file paths


def test_run_ids_and_record_paths_cannot_name_a_folder():
    config = RunConfig(strategy="custom", learning_rate=1e-3, seed=1,
                       strategy_params={"patterns": ["../../../etc/*", "/abs/x"]})
    rid = run_id(config)
    assert "/" not in rid and "\\" not in rid and not rid.startswith(".")
    assert record_path("out", rid).parent == Path("out", "runs")
    for bad in ("../escape", "a/b", "/abs", ".hidden", "x\\y"):
        with pytest.raises(FreezebenchError, match="not a safe file name"):
            record_path("out", bad)


def test_names_from_configs_and_data_cannot_leave_the_output_folder(
        tiny_model_dirs, tmp_path, monkeypatch):
    """A study name, a strategy parameter, class names and saved models all full of path
    separators: every file the sweep and the report write lands in the study's folder."""
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    labels = ["../../../escaped", "/tmp/absolute", "..\\..\\windows", "~/home"]
    rows = [f"text number {i},{labels[i % 4]}" for i in range(80)]
    (work / "data.csv").write_text("\n".join(["text,label", *rows]) + "\n")
    study = parse_study({
        "name": "../../../../escape-study", "model": tiny_model_dirs["bert"],
        "dataset": "data.csv", "seeds": [1], "learning_rates": [1e-3],
        "recipe": {"max_length": 16, "per_device_train_batch_size": 16, "save_model": True},
        "strategies": ["full", {"name": "custom", "params": {"patterns": "*[/.]dense.*"}}],
    })
    before = {p for p in tmp_path.rglob("*")}
    summary = run_sweep(study, progress=False)
    assert summary.completed == 2
    out = work / "freezebench-results" / "escape-study"
    records = sorted(out.joinpath("runs").glob("*.json"))
    assert len(records) == 2
    assert {json.loads(p.read_text())["data"]["label_names"][0] for p in records} == {labels[0]}
    write_report(out)
    created = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    outside = sorted(str(p.relative_to(tmp_path)) for p in created if out not in p.parents)
    assert outside == []
    assert len(list((out / "models").iterdir())) == 2  # --save-model folders inside too
    assert (out / "report.md").is_file()


# ------------------------------------------------------------------------------------ network

_GUARD = textwrap.dedent("""
    # Installed as sitecustomize: log and refuse any connection that leaves this machine.
    import os, socket
    _LOG = os.environ["NETWORK_LOG"]
    _LOCAL = {None, "localhost", "127.0.0.1", "::1", b"localhost"}

    def _refuse(what):
        with open(_LOG, "a") as log:
            log.write(what + "\\n")
        raise OSError("network access blocked by the test")

    def _remote(address):
        return isinstance(address, tuple) and address[0] not in _LOCAL

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if _remote(address):
            _refuse(f"connect {address!r}")
        return _connect(self, address)

    def connect_ex(self, address):
        if _remote(address):
            _refuse(f"connect_ex {address!r}")
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL:
            _refuse(f"getaddrinfo {host!r}")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo
""")


def test_a_local_run_opens_no_network_connection(tiny_model_dirs, sentiment_folder, tmp_path):
    """With the hub *not* switched offline, a run on a local model and local data makes no
    connection attempt at all (the guard logs attempts even when a library swallows the error)."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_GUARD)
    log = tmp_path / "network.log"
    env = child_env(tmp_path, NETWORK_LOG=str(log),
                    PYTHONPATH=os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")]))
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(key, None)

    # the guard works: a plain request is logged and refused
    probe = subprocess.run([sys.executable, "-c", "import urllib.request; "
                            "urllib.request.urlopen('https://huggingface.co', timeout=5)"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "network access blocked" in probe.stderr
    assert "huggingface.co" in log.read_text()
    log.unlink()

    result = subprocess.run(
        [sys.executable, "-m", "freezebench", "run", "--model", tiny_model_dirs["bert"],
         "--dataset", str(sentiment_folder), "--strategy", "bottom", "--strategy-param", "k=2",
         "--num-train-epochs", "1", "--output-dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not log.exists(), log.read_text()
    assert len(list((tmp_path / "out" / "runs").glob("*.json"))) == 1


# ------------------------------------------------------------------------------- remote code

_REMOTE_CODE = textwrap.dedent("""
    import pathlib
    pathlib.Path({marker!r}).write_text("the model's own code ran")
    from transformers import BertConfig, BertForSequenceClassification

    class EvilConfig(BertConfig):
        model_type = "evilbert"

    class EvilModel(BertForSequenceClassification):
        config_class = EvilConfig
""")


def test_remote_code_runs_only_with_the_flag_and_a_pinned_revision(tiny_model_dirs, tmp_path):
    folder = tmp_path / "evil"
    shutil.copytree(tiny_model_dirs["bert"], folder)
    marker = tmp_path / "remote-code-ran"
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evilbert", auto_map={
        "AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(_REMOTE_CODE.format(marker=str(marker)))
    script = textwrap.dedent(f"""
        import sys
        from freezebench.errors import ModelError
        from freezebench.model.loading import load_model, load_tokenizer
        for name, flags in [("model, no flag", {{}}),
                            ("tokenizer, flag without revision", {{"trust_remote_code": True}}),
                            ("model, flag without revision", {{"trust_remote_code": True}})]:
            load = load_tokenizer if name.startswith("tokenizer") else (
                lambda path, **kw: load_model(path, num_labels=2, label_names=["a", "b"],
                                              seed=0, **kw))
            try:
                load({str(folder)!r}, **flags)
                print(name, "-> loaded")
            except ModelError as exc:
                print(name, "->", exc)
        print("ran:", __import__("os").path.exists({str(marker)!r}))
        try:  # the control: with the flag and a revision the code does run
            load_model({str(folder)!r}, num_labels=2, label_names=["a", "b"], seed=0,
                       trust_remote_code=True, revision="0123abc")
        except ModelError as exc:
            print("control ->", exc)
        print("ran:", __import__("os").path.exists({str(marker)!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], env=child_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model, no flag -> Model ") and "ships its own code" in lines[0]
    assert "--trust-remote-code with --revision" in lines[0]
    for line in lines[1:3]:
        assert line.endswith("it needs a pinned --revision (a commit hash) so the code cannot "
                             "change under you.")
    assert lines[3] == "ran: False"
    assert lines[-1] == "ran: True"  # the marker does detect code that runs


# ------------------------------------------------------------------------------------ pickles


class _Trap:
    """Unpickling this creates the marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_weights_are_never_loaded(tiny_model_dirs, tmp_path):
    marker = tmp_path / "unpickled"
    only_pickle = tmp_path / "only-pickle"
    shutil.copytree(tiny_model_dirs["bert"], only_pickle)
    (only_pickle / "model.safetensors").unlink()
    (only_pickle / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ModelError) as info:
        load_model(str(only_pickle), num_labels=2, label_names=["a", "b"], seed=0)
    assert str(info.value).startswith(
        f"Model '{only_pickle}' has its weights only in pickle files (pytorch_model.bin). "
        "freezebench loads weights from safetensors only")
    both = tmp_path / "both"
    shutil.copytree(tiny_model_dirs["bert"], both)
    (both / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    (both / "training_args.bin").write_bytes(pickle.dumps(_Trap(marker)))
    model = load_model(str(both), num_labels=2, label_names=["a", "b"], seed=0)
    load_tokenizer(str(both))
    assert model.num_labels == 2
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Trap(marker)))  # the trap itself works
    assert marker.exists()


def test_the_prefix_cache_refuses_pickled_arrays(tmp_path, caplog):
    marker = tmp_path / "unpickled"
    store = PrefixCacheStore(10**8, tmp_path / "cache")
    entry = CachedStates(torch.ones(5, 4), torch.tensor([0, 2, 5]), pooled=False)
    store.put("key", entry)
    assert torch.equal(PrefixCacheStore(10**8, tmp_path / "cache").get("key").states,
                       entry.states)
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(marker)
    with open(tmp_path / "cache" / "key.states.npy", "wb") as handle:
        np.save(handle, trap, allow_pickle=True)  # someone swaps a pickle in
    assert PrefixCacheStore(10**8, tmp_path / "cache").get("key") is None
    assert "Ignoring unreadable prefix-cache entry key" in caplog.text
    assert not marker.exists()
