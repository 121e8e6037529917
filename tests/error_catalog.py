"""Every bad input of issue #6 as a real CLI call, and the table of what the user sees.

``tests/test_user_errors.py`` runs each case through ``freezebench.cli.main`` (the console script's
entry point) and checks exit code, message and the absence of a traceback; it also checks that
``docs/errors.md`` shows exactly these messages. After changing a message, regenerate the page::

    HF_HUB_OFFLINE=1 python -m tests.error_catalog > docs/errors.md
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # as cli._quiet_libraries sets it
CWD = "<working directory>"

# ------------------------------------------------------------------------------------- inputs


def csv(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def rows_with(column: str, row: int, value, n: int = 30) -> list[dict]:
    """``n`` good rows (two classes) with ``value`` in ``column`` of row ``row``."""
    rows = [{"text": f"review number {i}", "label": i % 2} for i in range(n)]
    rows[row][column] = value
    return rows


GOOD = [f"review number {i},{i % 2}" for i in range(30)]
LATIN1 = ("text,label\n" + "".join(f"caf\u00e9 cr\u00e8me {i},{i % 2}\n" for i in range(30))
          ).encode("latin-1")


@dataclass
class Case:
    """One bad input: the files in the working directory, the command, and what must show."""

    name: str
    args: list[str]
    expect: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    exit_code: int = 2
    # parts quoted from a library's own message (may change with its version): not compared
    varies: list[str] = field(default_factory=list)
    after_training: bool = False  # the mistake shows only once the run has trained


RUN = ["run", "--model", "model", "--output-dir", "out", "--num-train-epochs", "1"]

CASES: list[Case] = [
    # --- data: texts
    Case("Empty text", [*RUN, "--dataset", "data.jsonl"],
         ["File 'data.jsonl'", "split 'train'", "row 3", "column 'text'", "(value: '')",
          "the text is empty"],
         {"data.jsonl": jsonl(rows_with("text", 3, ""))}),
    Case("Whitespace-only text", [*RUN, "--dataset", "data.csv"],
         ["File 'data.csv'", "split 'train'", "row 4", "column 'text'", "(value: '   ')"],
         {"data.csv": csv("text,label", GOOD[:4] + ["   ,1"] + GOOD[5:])}),
    Case("Missing text (null; an empty CSV cell reads as missing)", [*RUN, "--dataset",
                                                                     "data.jsonl"],
         ["File 'data.jsonl'", "split 'train'", "row 5", "column 'text'", "(value: None)",
          "the text is missing"],
         {"data.jsonl": jsonl(rows_with("text", 5, None))}),
    Case("Empty text pair (sentence1/sentence2 found by name)", [*RUN, "--dataset", "pairs.csv"],
         ["File 'pairs.csv'", "split 'train'", "row 2", "column 'sentence2'", "(value: '  ')",
          "the text pair is empty", "--drop-invalid-rows", "--text-pair-column"],
         {"pairs.csv": csv("sentence1,sentence2,label",
                           [f"review {i},{'  ' if i == 2 else f'reply {i}'},{i % 2}"
                            for i in range(30)])}),
    Case("Nothing left after --drop-invalid-rows", [*RUN, "--dataset", "data.csv",
                                                    "--drop-invalid-rows"],
         ["File 'data.csv'", "split 'train' has no valid rows", "all 30 would be dropped",
          "30 missing label", "--label-column"],
         {"data.csv": csv("text,label", [f"review number {i}," for i in range(30)])}),
    # --- data: labels
    Case("Label out of range (unseen in train)", [*RUN, "--dataset", "splits"],
         ["Folder 'splits'", "split 'test'", "row 2", "column 'label'", "(value: 7)",
          "out of range"],
         {"splits/train.csv": csv("text,label", GOOD),
          "splits/validation.csv": csv("text,label", ["a,0", "b,1"]),
          "splits/test.csv": csv("text,label", ["a,0", "b,1", "c,7"])}),
    Case("Negative label", [*RUN, "--dataset", "data.jsonl"],
         ["File 'data.jsonl'", "split 'train'", "row 7", "column 'label'", "(value: -1)",
          "negative"],
         {"data.jsonl": jsonl(rows_with("label", 7, -1))}),
    Case("Fractional label", [*RUN, "--dataset", "data.jsonl", "--problem-type", "classification"],
         ["File 'data.jsonl'", "split 'train'", "row 7", "column 'label'", "(value: 1.5)",
          "fractional"],
         {"data.jsonl": jsonl(rows_with("label", 7, 1.5))}),
    Case("A stray fractional label among class ids", [*RUN, "--dataset", "data.jsonl"],
         ["File 'data.jsonl'", "label column 'label'", "1 fractional", "1.5", "row 7",
          "--problem-type classification", "--problem-type regression"],
         {"data.jsonl": jsonl(rows_with("label", 7, 1.5))}),
    Case("Missing label", [*RUN, "--dataset", "data.jsonl"],
         ["File 'data.jsonl'", "split 'train'", "row 7", "column 'label'", "(value: None)",
          "missing"],
         {"data.jsonl": jsonl(rows_with("label", 7, None))}),
    Case("Regression scores that never vary", [*RUN, "--dataset", "scores.csv",
                                                "--problem-type", "regression"],
         ["File 'scores.csv'", "every score in split 'train'", "column 'score'", "2.5",
          "scores that vary"],
         {"scores.csv": csv("text,score", [f"review number {i},2.5" for i in range(30)])}),
    Case("Best checkpoint by a classification metric on a regression", [
        *RUN, "--dataset", "scores.csv", "--select-checkpoint", "best"],
         ["metric_for_best_model 'f1_macro'", "regression run", "pearson, spearman, mse, loss",
          "--metric-for-best-model"],
         {"scores.csv": csv("text,score", [f"review number {i},{i / 10}" for i in range(30)])}),
    Case("Single class in train", [*RUN, "--dataset", "data.csv"],
         ["File 'data.csv'", "split 'train'", "only one class ('pos')", "column 'label'"],
         {"data.csv": csv("text,label", [f"review {i},pos" for i in range(30)])}),
    # --- data: columns
    Case("No text column found (misspelled header)", [*RUN, "--dataset", "data.csv"],
         ["File 'data.csv'", "no text column found", "txet, author, label",
          "Did you mean 'txet'?", "--text-column"],
         {"data.csv": csv("txet,author,label", [f"review {i},someone,{i % 2}"
                                                for i in range(30)])}),
    Case("Misspelled --text-column", [*RUN, "--dataset", "data.csv", "--text-column", "txt"],
         ["File 'data.csv'", "no column 'txt'", "Did you mean 'text'?", "Available columns: text,"
          " label"],
         {"data.csv": csv("text,label", GOOD)}),
    Case("Misspelled --label-column", [*RUN, "--dataset", "data.csv", "--label-column", "lable"],
         ["File 'data.csv'", "no column 'lable'", "Did you mean 'label'?"],
         {"data.csv": csv("text,label", GOOD)}),
    Case("A split missing the text column", [*RUN, "--dataset", "splits"],
         ["Folder 'splits'", "do not all have the same columns", "sentence, label"],
         {"splits/train.csv": csv("text,label", GOOD),
          "splits/validation.csv": csv("sentence,label", ["a,0", "b,1"])}),
    # --- data: files
    Case("Empty file", [*RUN, "--dataset", "data.csv"], ["File 'data.csv' is empty"],
         {"data.csv": ""}),
    Case("Empty split (header only)", [*RUN, "--dataset", "splits"],
         ["File 'splits/test.csv' holds no data rows"],
         {"splits/train.csv": csv("text,label", GOOD),
          "splits/validation.csv": csv("text,label", ["a,0", "b,1"]),
          "splits/test.csv": csv("text,label", [])}),
    Case("Undecodable bytes", [*RUN, "--dataset", "data.csv"],
         ["File 'data.csv'", "byte offset 14", "line 2", "--encoding"], {"data.csv": LATIN1}),
    Case("Unknown --encoding", [*RUN, "--dataset", "data.csv", "--encoding", "latin-2x"],
         ["Unknown text encoding 'latin-2x'"], {"data.csv": LATIN1}),
    Case("Unsupported file type", [*RUN, "--dataset", "data.txt"],
         ["File 'data.txt' has an unsupported type '.txt'"], {"data.txt": csv("text,label", GOOD)}),
    Case("Dataset path that does not exist", [*RUN, "--dataset", "reviews.csv"],
         ["Local path 'reviews.csv' does not exist"]),
    Case("Hub dataset that cannot be found (offline)", [*RUN, "--dataset", "no_org/no_dataset"],
         ["Dataset 'no_org/no_dataset' could not be found", "HF_HUB_OFFLINE=1"],
         varies=[r"(?<=from the Hugging Face Hub failed \().*?(?=\)\. Check the name)"]),
    Case("Duplicate texts with conflicting labels (a warning; the run goes on)",
         [*RUN, "--dataset", "data.csv"],
         ["WARNING freezebench.data.validation", "'same words' with '0' (row 10), '1' (row 11)"],
         {"data.csv": csv("text,label", GOOD[:10] + ["same words,0", "same words,1"] + GOOD[12:])},
         exit_code=0),
    # --- strategy and parameters
    Case("Unknown strategy", [*RUN, "--dataset", "sentiment", "--strategy", "bottm"],
         ["Unknown strategy 'bottm'. Did you mean 'bottom'?"]),
    Case("Unknown strategy parameter", [*RUN, "--dataset", "sentiment", "--strategy", "bottom",
                                        "--strategy-param", "kk=2"],
         ["no parameter 'kk'. Did you mean 'k'?"]),
    Case("Parameter out of range (k above the number of blocks)",
         [*RUN, "--dataset", "sentiment", "--strategy", "bottom", "--strategy-param", "k=9"],
         ["k=9 is out of range", "from 0 to 4", "4 encoder blocks"]),
    Case("Malformed --strategy-param", [*RUN, "--dataset", "sentiment", "--strategy-param", "k"],
         ["--strategy-param expects key=value, got 'k'"]),
    Case("--max-length beyond the model's positions", [*RUN, "--dataset", "sentiment",
                                                      "--max-length", "512"],
         ["max_length 512 is more than the 128 token positions", "--max-length 128 or less"]),
    Case("Value out of range", [*RUN, "--dataset", "sentiment", "--learning-rate", "-1"],
         ["'learning_rate' = -1.0: Input should be greater than 0"]),
    Case("Value not among the choices", [*RUN, "--dataset", "sentiment", "--precision", "fp8"],
         ["'precision' = 'fp8': Input should be 'auto', 'fp32', 'bf16' or 'fp16'"]),
    # --- configuration files
    Case("Malformed YAML", ["run", "--config", "run.yaml"],
         ["Config file 'run.yaml' is not valid YAML at line 3, column 1"],
         {"run.yaml": "seed: 1\nstrategy: [full\n"}),
    Case("Unknown key in a run config", ["run", "--config", "run.yaml"],
         ["unknown key 'lerning_rate'. Did you mean 'learning_rate'?"],
         {"run.yaml": "lerning_rate: 0.1\n"}),
    Case("Unknown key in a study", ["sweep", "--config", "study.yaml"],
         ["unknown key 'strategis'. Did you mean 'strategies'?",
          "'strategies' is required but missing"],
         {"study.yaml": "model: model\nstrategis: [full]\n"}),
    Case("Unknown strategy in a study", ["sweep", "--config", "study.yaml"],
         ["strategies[1].name", "Unknown strategy 'topp'. Did you mean 'top'?"],
         {"study.yaml": "model: model\ndataset: sentiment\nstrategies: [full, topp]\n"}),
    Case("Unknown recipe key in a study", ["sweep", "--config", "study.yaml"],
         ["unknown key 'recipe.batch_size'"],
         {"study.yaml": "model: model\nrecipe: {batch_size: 8}\nstrategies: [full]\n"}),
    Case("Unknown key in --set", ["sweep", "--config", "study.yaml", "--dry-run", "--set",
                                  "recipe.num_train_epoch=3"],
         ["Invalid study in 'study.yaml' with --set recipe.num_train_epoch=3",
          "unknown key 'recipe.num_train_epoch'. Did you mean 'num_train_epochs'?"],
         {"study.yaml": "model: model\nstrategies: [full]\n"}),
    Case("--set into a value that holds no keys", ["sweep", "--config", "study.yaml",
                                                  "--dry-run", "--set", "seeds.count=3"],
         ["--set seeds.count=3: 'seeds' is 3, which holds no keys"],
         {"study.yaml": "model: model\nseeds: 3\nstrategies: [full]\n"}),
    Case("--only with a value no planned run has", ["sweep", "--config", "study.yaml",
                                                    "--dry-run", "--only", "strategy=ful"],
         ["--only strategy=ful: no planned run has strategy ful. Did you mean 'full'?",
          "The study's values: full, head"],
         {"study.yaml": "model: model\ndataset: sentiment\nstrategies: [full, head]\n"}),
    Case("--only with an unknown key", ["sweep", "--config", "study.yaml", "--dry-run",
                                        "--only", "strategey=full"],
         ["--only: unknown key 'strategey'. Did you mean 'strategy'?"],
         {"study.yaml": "model: model\ndataset: sentiment\nstrategies: [full, head]\n"}),
    # --- models
    Case("Hub model that cannot be found (offline)",
         [*RUN[:1], "--model", "no-org/no-model", "--dataset", "sentiment", "--output-dir", "out"],
         ["Model 'no-org/no-model' could not be loaded", "HF_HUB_OFFLINE=1"],
         varies=[r"(?<=could not be loaded: ).*?(?=\. Pass a hub id)"]),
    Case("Model with pickle weights only", [*RUN[:1], "--model", "pickle-model", "--dataset",
                                            "sentiment", "--output-dir", "out"],
         ["only in pickle files (pytorch_model.bin)", "safetensors only"]),
    Case("Model that needs its own code, without --trust-remote-code",
         [*RUN[:1], "--model", "remote-code-model", "--dataset", "sentiment", "--output-dir",
          "out"],
         ["ships its own code", "--trust-remote-code with --revision"]),
    Case("--trust-remote-code without --revision",
         [*RUN[:1], "--model", "remote-code-model", "--dataset", "sentiment", "--output-dir",
          "out", "--trust-remote-code"],
         ["needs a pinned --revision"]),
    Case("Architecture without a layer map", [*RUN[:1], "--model", "albert-model", "--dataset",
                                              "sentiment", "--output-dir", "out"],
         ["Architecture 'albert' has no layer map", "ARCHITECTURES"]),
    # --- results folder
    Case("--push-to-hub without the Hub (HF_HUB_OFFLINE=1)",
         [*RUN, "--dataset", "sentiment", "--strategy", "head", "--push-to-hub",
          "--hub-model-id", "someone/tiny"],
         ["Could not push 'out/models/head-", "to the Hub repository 'someone/tiny'",
          "saved locally", "HF_HUB_OFFLINE=1 is set", "hf upload someone/tiny out/models/head-"],
         after_training=True),
    Case("Output folder that cannot be written", [*RUN[:1], "--model", "model", "--dataset",
                                                  "sentiment", "--output-dir", "data.csv"],
         ["Could not write 'data.csv/runs': [Errno 20] Not a directory",
          "Choose a folder you can write to"],
         {"data.csv": csv("text,label", GOOD)}),
]

# -------------------------------------------------------------------------------------- assets


def build_assets(folder: Path, tiny_bert: str, sentiment: Path) -> dict[str, Path]:
    """The models and data the cases refer to by name, built once."""
    import torch
    from transformers import AlbertConfig, AlbertForSequenceClassification

    assets = {"model": Path(tiny_bert), "sentiment": sentiment}
    pickled = folder / "pickle-model"
    shutil.copytree(tiny_bert, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps({"never": "loaded"}))
    remote = folder / "remote-code-model"
    shutil.copytree(tiny_bert, remote)
    config = json.loads((remote / "config.json").read_text())
    config.update(model_type="custombert", auto_map={"AutoConfig": "custom.CustomConfig"})
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "custom.py").write_text("raise SystemExit('this code must never run')\n")
    albert = folder / "albert-model"  # an architecture freezebench does not map
    torch.manual_seed(0)
    AlbertForSequenceClassification(AlbertConfig(
        num_hidden_layers=1, hidden_size=16, embedding_size=8, num_attention_heads=2,
        intermediate_size=32, vocab_size=100)).save_pretrained(albert)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(tiny_bert) / name, albert / name)
    assets.update({"pickle-model": pickled, "remote-code-model": remote, "albert-model": albert})
    return assets


# -------------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    exit_code: int
    stderr: str  # what the user sees on stderr: the error line and freezebench's warnings
    stdout: str


def run_case(case: Case, workdir: Path, assets: dict[str, Path]) -> Outcome:
    """Set up the case's working directory and run the CLI in it."""
    workdir.mkdir(parents=True)
    for name, target in assets.items():
        (workdir / name).symlink_to(target, target_is_directory=True)
    for name, content in case.files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    outcome = run_cli(case.args, workdir)
    return Outcome(outcome.exit_code, outcome.stderr.replace(str(workdir), CWD), outcome.stdout)


def run_cli(args: list[str], cwd: Path) -> Outcome:
    """``freezebench ARGS`` through the console script's ``main``, in this process."""
    from freezebench import cli

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("freezebench")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    argv, previous = sys.argv, os.getcwd()
    code: int = 0
    try:
        os.chdir(cwd)
        sys.argv = ["freezebench", *args]
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.chdir(previous)
        sys.argv = argv
        logger.removeHandler(handler)
        logger.propagate = propagate
    return Outcome(code, err.getvalue(), out.getvalue())


def shown(outcome: Outcome) -> str:
    """The lines a user reads: warnings and the error (progress bars and blank lines dropped)."""
    return "\n".join(line for line in outcome.stderr.splitlines()
                     if line.startswith(("error:", "WARNING", "ERROR", "  ")))


def comparable(case: Case, text: str) -> str:
    """``text`` with the parts quoted from libraries replaced by an ellipsis."""
    for pattern in case.varies:
        text = re.sub(pattern, "…", text)
    return text


# ------------------------------------------------------------------------------------ the page

HEADER = """# What the user sees for each bad input

Every row is a real call of the `freezebench` command line on a bad input, with the message it
printed. Bad input is checked before training; the command exits with code 2 and prints one
message, no traceback. Messages name the file, split, row (0-based), column and value where they
apply, and end with what to do. `{cwd}` stands for the folder the command ran in;
`model` is a small local BERT with 4 blocks and 128 positions, `sentiment` a folder of good
parquet splits. String labels (mapped to class ids in sorted order) and texts longer than the
model's limit (truncated) are not errors.

Faults during a sweep are recorded in the run's record ([results-format.md](results-format.md))
and tested in `tests/test_faults.py`: a diverging run fails with the step its loss became NaN or
infinite; running out of GPU or CPU memory fails the run with what to make smaller, and the sweep
goes on; Ctrl-C records the current run as cancelled (exit 130); a killed sweep leaves no partial
record and resumes; a full disk stops the sweep with `Could not write '<path>': [Errno 28] No
space left on device. Free disk space ...` (exit 2).

This page is generated: `HF_HUB_OFFLINE=1 python -m tests.error_catalog > docs/errors.md`, and
`tests/test_user_errors.py` fails when it no longer matches what the commands print.

| Bad input | Command | Exit | What the user sees |
|---|---|---|---|
""".replace("{cwd}", CWD)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def render(outcomes: dict[str, Outcome]) -> str:
    """The page: one table row per case, in catalog order."""
    rows = []
    for case in CASES:
        outcome = outcomes[case.name]
        command = "freezebench " + " ".join(case.args).replace(
            " --output-dir out", "").replace(" --num-train-epochs 1", "")
        rows.append(f"| {_cell(case.name)} | `{_cell(command)}` | {outcome.exit_code} | "
                    f"{_cell(shown(outcome))} |")
    return HEADER + "\n".join(rows) + "\n"


def run_all(tiny_bert: str, sentiment: Path, folder: Path) -> dict[str, Outcome]:
    assets = build_assets(folder / "assets", tiny_bert, sentiment)
    return {case.name: run_case(case, folder / f"case-{i}", assets)
            for i, case in enumerate(CASES)}


def main(out: Callable[[str], object] = sys.stdout.write) -> None:
    """Build a tiny model and data as the tests do, run every case, print the page."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from transformers import AutoTokenizer

    from tests.conftest import build_tiny_model, minilm_path, write_sentiment_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        tokenizer.model_max_length = 128
        tiny = folder / "tiny-bert"
        build_tiny_model("bert", vocab_size=tokenizer.vocab_size).save_pretrained(tiny)
        tokenizer.save_pretrained(tiny)
        sentiment = write_sentiment_folder(folder / "sentiment")
        out(render(run_all(str(tiny), sentiment, folder)))


if __name__ == "__main__":
    main()
