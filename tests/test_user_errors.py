"""Every bad input of issue #6 through the real command line: exit code, a message that names
what is wrong and where, no traceback; and docs/errors.md shows exactly these messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from . import error_catalog
from .conftest import REPO_ROOT, write_sentiment_folder
from .error_catalog import CASES, comparable, csv, render, run_all, run_cli, shown

DOC = REPO_ROOT / "docs" / "errors.md"


@pytest.fixture(scope="module")
def outcomes(tiny_model_dirs, tmp_path_factory):
    """Every case of the catalog, run once through ``freezebench.cli.main``."""
    folder = tmp_path_factory.mktemp("catalog")
    sentiment = write_sentiment_folder(folder / "sentiment")
    return run_all(tiny_model_dirs["bert"], sentiment, folder)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_input_gets_its_message(outcomes, case):
    outcome = outcomes[case.name]
    message = shown(outcome)
    assert outcome.exit_code == case.exit_code, outcome.stderr
    assert "Traceback" not in outcome.stderr + outcome.stdout
    for part in case.expect:
        assert part in message, f"{part!r} not in {message!r}"
    if case.exit_code == 2:
        assert message.startswith("error: ")
        # stopped before training, unless the mistake can only show after it
        assert ("trainable params" in outcome.stdout) == case.after_training


def test_docs_errors_page_shows_what_the_commands_print(outcomes):
    expected = render(outcomes)
    documented = DOC.read_text(encoding="utf-8")
    rows = zip(CASES, expected.splitlines()[-len(CASES):], strict=True)
    for case, row in rows:
        line = next((d for d in documented.splitlines() if d.startswith(f"| {case.name} |")), "")
        assert comparable(case, line) == comparable(case, row), (
            f"docs/errors.md is out of date for '{case.name}'; regenerate it with "
            "`HF_HUB_OFFLINE=1 python -m tests.error_catalog > docs/errors.md`")
    assert documented.startswith(error_catalog.HEADER)


def test_string_labels_and_over_long_texts_just_work(tiny_model_dirs, tmp_path):
    texts = [f"{'a remarkably long review ' * 200} number {i}" for i in range(30)]
    labels = ["good" if i % 2 else "bad" for i in range(30)]
    (tmp_path / "data.csv").write_text(
        csv("review,sentiment", [f"{t},{x}" for t, x in zip(texts, labels, strict=True)]))
    outcome = run_cli(["run", "--model", tiny_model_dirs["bert"], "--dataset", "data.csv",
                       "--output-dir", "out", "--num-train-epochs", "1"], tmp_path)
    assert outcome.exit_code == 0, outcome.stderr
    [path] = (tmp_path / "out" / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "completed"
    assert record["data"]["label_names"] == ["bad", "good"]
    assert record["data"]["max_length"] == 128  # truncated to the model's limit


def test_messages_print_the_users_data_verbatim(tiny_model_dirs, tmp_path):
    """A value that looks like console markup is shown as it is, not swallowed as a style."""
    (tmp_path / "data.csv").write_text(csv("text,label", [f"review {i},[red]" for i in range(30)]))
    outcome = run_cli(["run", "--model", tiny_model_dirs["bert"], "--dataset", "data.csv"],
                      tmp_path)
    assert outcome.exit_code == 2
    assert "has only one class ('[red]') in label column 'label'" in outcome.stderr


def test_a_bad_input_in_a_real_process_prints_one_line_and_exits_2(tmp_path):
    """As the user's shell runs it: the one message, no traceback, no library noise."""
    (tmp_path / "data.csv").write_bytes(error_catalog.LATIN1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "freezebench", "run", "--dataset",
                             "data.csv"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: File 'data.csv' is not valid utf-8 text: undecodable byte at byte offset 14 "
        "(line 2). Pass the file's encoding with --encoding (for example --encoding latin-1 or "
        "cp1252), or re-save the file as UTF-8.")
