"""The command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from freezebench.errors import FreezebenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure what freezing transformer layers costs and saves.")
ls_app = typer.Typer(no_args_is_help=True, help="List strategies or runs.")
app.add_typer(ls_app, name="ls")
console = Console()
err_console = Console(stderr=True)


def main() -> None:
    """Console-script entry point: user mistakes print a message and exit 2, no traceback."""
    _quiet_libraries()
    try:
        app()  # standalone: usage errors print and exit 2 inside
    except FreezebenchError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)  # escaped: messages quote the user's data verbatim
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    # datasets' file builders log a file they cannot read, then raise; data.py explains it
    logging.getLogger("datasets.packaged_modules").setLevel(logging.CRITICAL)
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
        transformers.logging.disable_progress_bar()


def _verbose(flag: bool) -> None:
    if flag:
        logging.getLogger("freezebench").setLevel(logging.INFO)


Opt = typer.Option


@app.command()
def run(
    config: Annotated[Path | None, Opt("--config", help="YAML file with run settings.")] = None,
    model: Annotated[str | None, Opt(help="Hub id or local folder [bert-base-cased].")] = None,
    dataset: Annotated[str | None, Opt(help="Hub id or local folder/file [rotten_tomatoes].")
                       ] = None,
    strategy: Annotated[str | None, Opt(help="Freezing strategy (freezebench ls strategies).")
                        ] = None,
    strategy_param: Annotated[list[str] | None, Opt(
        "--strategy-param", help="Strategy parameter key=value (repeatable).")] = None,
    learning_rate: Annotated[float | None, Opt()] = None,
    per_device_train_batch_size: Annotated[int | None, Opt()] = None,
    per_device_eval_batch_size: Annotated[int | None, Opt()] = None,
    num_train_epochs: Annotated[int | None, Opt()] = None,
    weight_decay: Annotated[float | None, Opt()] = None,
    warmup_ratio: Annotated[float | None, Opt()] = None,
    seed: Annotated[int | None, Opt()] = None,
    precision: Annotated[str | None, Opt(help="auto | fp32 | bf16 | fp16")] = None,
    device: Annotated[str | None, Opt(help="auto | cpu | cuda | cuda:N")] = None,
    max_train_samples: Annotated[int | None, Opt()] = None,
    max_eval_samples: Annotated[int | None, Opt()] = None,
    max_length: Annotated[int | None, Opt()] = None,
    text_column: Annotated[str | None, Opt()] = None,
    label_column: Annotated[str | None, Opt()] = None,
    encoding: Annotated[str | None, Opt(help="Text encoding of csv/json files.")] = None,
    group_by_length: Annotated[bool | None, Opt(
        "--group-by-length/--no-group-by-length",
        help="Batches of similar length (off: random batches, as the Trainer).")] = None,
    packed_batches: Annotated[bool | None, Opt(
        "--packed-batches/--no-packed-batches",
        help="Examples of a training batch share rows, attention kept within each: same "
             "batches, less padding.")] = None,
    cache: Annotated[bool | None, Opt("--cache/--no-cache",
                                         help="Reuse frozen-prefix outputs.")] = None,
    cache_dir: Annotated[str | None, Opt(help="Folder for the frozen-prefix cache.")] = None,
    dropout_masks: Annotated[str | None, Opt(
        help="Who draws dropout masks: auto (numpy on a CPU, torch on a GPU) | torch | numpy.")
        ] = None,
    price_per_hour: Annotated[float | None, Opt(help="Device price, USD per hour.")] = None,
    output_dir: Annotated[str | None, Opt()] = None,
    save_model: Annotated[bool | None, Opt("--save-model/--no-save-model")] = None,
    revision: Annotated[str | None, Opt(help="Model revision (commit) to load.")] = None,
    trust_remote_code: Annotated[bool | None, Opt(
        "--trust-remote-code", help="Run the model's own code (needs --revision).")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Fine-tune one model under one freezing strategy and record quality and efficiency."""
    from freezebench.config import parse_key_values, resolve_run_config
    from freezebench.distributed import is_main_process
    from freezebench.pipeline import run as run_pipeline

    _verbose(verbose)
    overrides = {k: v for k, v in locals().items()
                 if k not in ("config", "strategy_param", "verbose", "cache", "run_pipeline",
                              "parse_key_values", "resolve_run_config", "is_main_process")}
    overrides["use_cache"] = cache
    if strategy_param:
        overrides["strategy_params"] = parse_key_values(strategy_param, "--strategy-param")
    resolved = resolve_run_config(config, overrides)
    try:
        record = run_pipeline(resolved)
    except KeyboardInterrupt:
        from freezebench.pipeline import record_id

        err_console.print(f"interrupted: run {record_id(resolved)} is recorded as cancelled; the "
                          "same command runs it again.", style="yellow", highlight=False)
        raise typer.Exit(130) from None
    if is_main_process():  # under torchrun, rank 0 speaks for the run
        _print_run(record)


def _print_run(record: dict) -> None:
    from freezebench.results import record_path

    table = Table(title=f"run {record['id']}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    test, val = record["metrics"]["test"], record["metrics"]["validation"]
    eff, params = record["efficiency"], record["params"]
    rows = [
        ("strategy", record["strategy_label"]),
        ("trainable params", f"{params['trainable']:,} ({params['trainable_percent']:.2f}%)"),
        ("validation F1 / accuracy", f"{val['f1']:.4f} / {val['accuracy']:.4f}"),
        ("test F1 / accuracy", f"{test['f1']:.4f} / {test['accuracy']:.4f}"),
        ("test loss", f"{test['loss']:.4f}"),
        ("training time", f"{eff['train_seconds']:.1f} s"),
        ("prefix cache build", f"{eff['cache_build_seconds']:.1f} s"),
        ("train samples/s", f"{eff['train_samples_per_second']:.1f}"),
        ("eval samples/s", f"{eff['eval_samples_per_second']:.1f}"),
        ("peak memory", f"{eff['peak_memory_mb']:.0f} MB ({eff['memory_kind']})"),
        ("training FLOPs (naive)", f"{eff['train_flops']:.3g} ({eff['train_flops_naive']:.3g})"),
        ("cost", f"${eff['cost_usd']:.4f} at ${eff['price_per_hour']}/h"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"record: {record_path(record['config']['output_dir'], record['id'])}")


@app.command()
def env() -> None:
    """Show the device, library versions and the offline defaults this machine has."""
    from freezebench.engine import resolve_device
    from freezebench.env import environment
    from freezebench.model import offline_model_path

    info = environment(resolve_device("auto"))
    for key, value in info.items():
        console.print(f"{key:>14}: {value}")
    console.print(f"{'offline model':>14}: {offline_model_path() or 'not installed'}")
    console.print(f"{'hub offline':>14}: {os.environ.get('HF_HUB_OFFLINE', '0')}")


@ls_app.command("strategies")
def ls_strategies() -> None:
    """List the registered freezing strategies and their parameters."""
    from freezebench.strategies import STRATEGIES

    table = Table(show_header=True)
    for column in ("strategy", "parameters (defaults)", "what trains"):
        table.add_column(column, overflow="fold")
    for spec in STRATEGIES.values():
        table.add_row(spec.name, spec.describe_params(), spec.description)
    console.print(table)


@ls_app.command("runs")
def ls_runs(results_dir: Annotated[Path, typer.Argument(help="A results folder.")]) -> None:
    """List the runs of a results folder with their status."""
    from freezebench.results import scan_records

    records, bad = scan_records(results_dir)
    if not records and not bad:
        raise FreezebenchError(f"'{results_dir}' holds no run records (looked in runs/).")
    table = Table(show_header=True)
    for column in ("id", "status", "strategy", "lr", "seed", "test F1", "train s"):
        table.add_column(column)
    for r in records:
        test = r.get("metrics", {}).get("test", {})
        eff = r.get("efficiency", {})
        table.add_row(r["id"], r["status"], r.get("strategy_label", "?"),
                      f"{r['config'].get('learning_rate', 0):g}", str(r["config"].get("seed")),
                      f"{test['f1']:.4f}" if "f1" in test else "-",
                      f"{eff['train_seconds']:.1f}" if "train_seconds" in eff else "-")
    console.print(table)
    for item in bad:
        err_console.print(f"[yellow]unreadable record[/] {item.path}: {item.reason}")


@app.command()
def sweep(
    config: Annotated[Path, Opt("--config", help="Study YAML file (see configs/).")],
    output_dir: Annotated[str | None, Opt(help="Results folder [the study's output_dir].")] = None,
    executor: Annotated[str, Opt(
        help="Where runs execute: local (one after another here) | ray (each run a Ray Tune "
             "trial, on a cluster or a local Ray instance; needs freezebench[ray]).")] = "local",
    ray_address: Annotated[str | None, Opt(
        help="Ray only: a running cluster (auto, or head-host:6379) [start a local instance on "
             "the loopback address].")] = None,
    cpus_per_run: Annotated[float | None, Opt(help="Ray only: CPUs per run [1].")] = None,
    gpus_per_run: Annotated[float | None, Opt(help="Ray only: GPUs per run, may be a fraction "
                                                   "[0].")] = None,
    max_concurrent_runs: Annotated[int | None, Opt(
        help="Ray only: at most this many runs at once [as many as resources allow].")] = None,
    max_retries: Annotated[int | None, Opt(
        help="Ray only: retries of a run that crashes (not of one failing on bad input) [1].")
                           ] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v")] = False,
) -> None:
    """Run a study (strategies x parameters x seeds x learning rates); finished runs are skipped."""
    from freezebench.study import load_study
    from freezebench.sweep import get_executor, run_sweep

    _verbose(verbose)
    options = {"ray_address": ray_address, "cpus_per_run": cpus_per_run,
               "gpus_per_run": gpus_per_run, "max_concurrent_runs": max_concurrent_runs,
               "max_retries": max_retries}
    chosen = get_executor(executor, **{k: v for k, v in options.items() if v is not None})
    summary = run_sweep(load_study(config, output_dir=output_dir), executor=chosen)
    console.print(str(summary), markup=False, highlight=False, soft_wrap=True)
    if summary.failed:
        err_console.print(f"{summary.failed} run(s) failed: {', '.join(summary.failed_ids)} (their "
                          "records hold the error; the same command retries them)", style="red",
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="A results folder written by run or sweep.")],
    output_dir: Annotated[Path | None, Opt(help="Where report.md/html go [results_dir].")
                          ] = None,
    tolerance_points: Annotated[float, Opt(
        help="Acceptable: within this many F1 points of full fine-tuning.")] = 1.0,
    substantial_saving: Annotated[float, Opt(
        help="Substantial: at least this share of training time saved (0-1).")] = 0.30,
) -> None:
    """Write report.md and a self-contained report.html from the records alone."""
    from freezebench.report import summary_table, write_report

    if not 0 < substantial_saving < 1:
        raise FreezebenchError(
            f"--substantial-saving {substantial_saving} must be between 0 and 1.")
    paths = write_report(results_dir, output_dir=output_dir, tolerance_points=tolerance_points,
                         substantial_saving=substantial_saving)
    _print_frame(summary_table(results_dir), "headline")
    console.print(f"report: {paths.markdown}\n        {paths.html}")


@app.command()
def compare(
    results_dirs: Annotated[list[Path], typer.Argument(help="Two or more results folders.")],
) -> None:
    """Side-by-side table of several results folders (two models, two machines, ...)."""
    from freezebench.report import compare_table

    _print_frame(compare_table(results_dirs), "comparison")


@app.command()
def export(
    results_dir: Annotated[Path, typer.Argument(help="A results folder.")],
    to: Annotated[Path, Opt("--to", help="Output file: .csv or .parquet.")],
) -> None:
    """Export every record of a results folder as one row each (CSV or Parquet)."""
    from freezebench.analysis import export_records
    from freezebench.results import read_records

    records = read_records(results_dir)
    if not records:
        raise FreezebenchError(f"'{results_dir}' holds no run records (looked in runs/).")
    console.print(f"wrote {len(records)} rows to {export_records(records, to)}")


def _print_frame(frame, title: str) -> None:
    """A table of ``frame``; its index is a column only when it is named (a plain row number is
    noise to a reader)."""
    if frame.index.name:
        frame = frame.reset_index()
    table = Table(title=title, show_header=True)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    console.print(table)
