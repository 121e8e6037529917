"""The command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from freezebench.cli_options import with_config_options
from freezebench.config import RunConfig
from freezebench.errors import FreezebenchError
from freezebench.record import RunRecord, SplitMetrics

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure what freezing transformer layers costs and saves.")
ls_app = typer.Typer(no_args_is_help=True, help="List strategies, architectures or runs.")
app.add_typer(ls_app, name="ls")
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from freezebench import __version__

        console.print(f"freezebench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")
        ] = False) -> None:
    """Measure what freezing transformer layers costs and saves."""


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


def _run(
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with run settings; "
                                                "options given here win.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the run's record as JSON on stdout, and nothing else there (the "
                       "rest goes to stderr). A failed run prints its failed record too, and "
                       "exits non-zero.")] = False,
    **values: Any,
) -> None:
    """Fine-tune one model under one freezing strategy and record quality and efficiency."""
    from freezebench.config import parse_key_values, resolve_run_config
    from freezebench.engine.distributed import is_main_process
    from freezebench.pipeline import run as run_pipeline
    from freezebench.record import now, run_id

    _verbose(verbose)
    if values.get("strategy_params") is not None:
        values["strategy_params"] = parse_key_values(values["strategy_params"],
                                                     "--strategy-param")
    resolved = resolve_run_config(config, values)
    started, stdout = now(), sys.stdout
    # under --json whatever the run prints (PEFT's parameter line, a push) goes to stderr
    with redirect_stdout(sys.stderr) if json_output else nullcontext():
        try:
            record = run_pipeline(resolved)
        except KeyboardInterrupt:
            err_console.print(f"interrupted: run {run_id(resolved)} is recorded as cancelled; "
                              "the same command runs it again.", style="yellow", highlight=False)
            raise typer.Exit(130) from None
        except Exception:
            if json_output and is_main_process():
                _print_saved_record(resolved, since=started, file=stdout)
            raise
    if not is_main_process():  # under torchrun, rank 0 speaks for the run
        return
    if json_output:
        print(json.dumps(record.to_json(), indent=2))
    else:
        _print_run(record)


app.command("run")(with_config_options(_run, RunConfig))


def _print_saved_record(config: RunConfig, *, since: str, file: TextIO) -> None:
    """The record a failed run saved, as JSON on ``file``; nothing when it stopped before saving
    one (an unknown strategy parameter, an unwritable folder) or could not save it."""
    from freezebench.engine.distributed import launched_processes
    from freezebench.record import run_id
    from freezebench.results import load_record, record_path

    path = record_path(config.output_dir, run_id(config, launched_processes()))
    try:
        record = load_record(path)
    except (OSError, ValueError):
        return
    if record.started_at >= since:  # not an earlier run's record
        print(json.dumps(record.to_json(), indent=2), file=file)


def _split_rows(split: str, metrics: SplitMetrics) -> list[tuple[str, str]]:
    """A split's headline metrics: F1 and accuracy, or a regression's Pearson/Spearman and MSE."""
    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    if metrics.mse is not None:
        return [(f"{split} Pearson / Spearman", f"{shown(metrics.pearson)} / "
                                                f"{shown(metrics.spearman)}"),
                (f"{split} MSE", shown(metrics.mse))]
    return [(f"{split} F1 / accuracy", f"{shown(metrics.f1)} / {shown(metrics.accuracy)}")]


def _print_run(record: RunRecord) -> None:
    from freezebench.results import record_path

    table = Table(title=f"run {record.id}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    assert record.metrics and record.efficiency and record.params  # a completed run has them
    test, val = record.metrics.test, record.metrics.validation
    eff, params = record.efficiency, record.params
    rows = [
        ("strategy", record.strategy_label),
        ("trainable params", f"{params.trainable:,} ({params.trainable_percent:.2f}%)"),
        *(_split_rows("validation", val) + _split_rows("test", test)),
        ("test loss", f"{test.loss:.4f}"),
        ("training time", f"{eff.train_seconds:.1f} s"),
        ("prefix cache build", f"{eff.cache_build_seconds:.1f} s"),
        ("train samples/s", f"{eff.train_samples_per_second:.1f}"),
        ("eval samples/s", f"{eff.eval_samples_per_second:.1f}"),
        ("peak memory", f"{eff.peak_memory_mb:.0f} MB ({eff.memory_kind})"),
        ("training FLOPs (naive)", f"{eff.train_flops:.3g} ({eff.train_flops_naive:.3g})"),
        ("cost", f"${eff.cost_usd:.4f} at ${eff.price_per_hour}/h"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"record: {record_path(record.config['output_dir'], record.id)}")


@app.command()
def env() -> None:
    """Show the device, library versions and the offline defaults this machine has."""
    from freezebench.engine.precision import resolve_device
    from freezebench.env import environment
    from freezebench.model.loading import offline_model_path

    info = environment(resolve_device("auto"))
    for key, value in info.items():
        console.print(f"{key:>14}: {value}")
    console.print(f"{'offline model':>14}: {offline_model_path() or 'not installed'}")
    console.print(f"{'hub offline':>14}: {os.environ.get('HF_HUB_OFFLINE', '0')}")


@ls_app.command("strategies")
def ls_strategies(json_output: Annotated[bool, typer.Option(
        "--json", help="As JSON: name, description, parameters with defaults.")] = False) -> None:
    """List the registered freezing strategies and their parameters."""
    from freezebench.strategies import STRATEGIES

    if json_output:
        print(json.dumps([{"name": spec.name, "description": spec.description,
                           "parameters": spec.defaults} for spec in STRATEGIES.values()],
                         indent=2, default=str))
        return
    table = Table(show_header=True)
    for column in ("strategy", "parameters (defaults)", "what trains"):
        table.add_column(column, overflow="fold")
    for spec in STRATEGIES.values():
        table.add_row(spec.name, spec.describe_params(), spec.description)
    console.print(table)


@ls_app.command("architectures")
def ls_architectures(json_output: Annotated[bool, typer.Option(
        "--json", help="As JSON: one object per model_type.")] = False) -> None:
    """List the mapped architectures (config.model_type) and what each supports."""
    from freezebench.model.architectures import describe_architectures

    rows = describe_architectures()
    if json_output:
        print(json.dumps(rows, indent=2))
        return
    table = Table(show_header=True)
    columns = ("model_type", "staged / cache", "cut last block", "packing", "pooling",
               "LoRA targets (qv)", "note")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["model_type"], _yes(row["staged"]), _yes(row["cut_last_block"]),
                      _yes(row["packing"]), row["pooling"], ", ".join(row["lora_targets"]),
                      row["note"])
    console.print(table)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@ls_app.command("runs")
def ls_runs(results_dir: Annotated[Path, typer.Argument(help="A results folder.")],
            json_output: Annotated[bool, typer.Option(
                "--json", help="Every record as stored, in one JSON list.")] = False) -> None:
    """List the runs of a results folder with their status."""
    from freezebench.results import scan_records

    records, bad = scan_records(results_dir)
    if not records and not bad:
        raise FreezebenchError(f"'{results_dir}' holds no run records (looked in runs/).")
    if json_output:
        print(json.dumps([record.to_json() for record in records], indent=2))
    else:
        for record in records:
            console.print(record.summary_line(), markup=False, highlight=False, soft_wrap=True)
    for item in bad:
        err_console.print(f"[yellow]unreadable record[/] {item.path}: {item.reason}")


@app.command()
def sweep(
    config: Annotated[Path, typer.Option("--config", help="Study YAML file (see configs/).")],
    output_dir: Annotated[str | None, typer.Option(
        help="Results folder (default: the study's output_dir).")] = None,
    executor: Annotated[str, typer.Option(
        help="Where runs execute: local (one after another here) | ray (each run a Ray Tune "
             "trial, on a cluster or a local Ray instance; needs freezebench[ray]).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="Ray only: a running cluster (auto, or head-host:6379) (default: start a local "
             "instance on the loopback address).")] = None,
    cpus_per_run: Annotated[float | None, typer.Option(
        help="Ray only: CPUs per run (default: 1).")] = None,
    gpus_per_run: Annotated[float | None, typer.Option(
        help="Ray only: GPUs per run, may be a fraction (default: 0).")] = None,
    max_concurrent_runs: Annotated[int | None, typer.Option(
        help="Ray only: at most this many runs at once (default: as many as resources allow).")
                                   ] = None,
    max_retries: Annotated[int | None, typer.Option(
        help="Ray only: retries of a run that crashes, not of one failing on bad input "
             "(default: 1).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Only the runs with KEY=VALUE: a run's field (strategy, seed, "
                       "learning_rate, model, ...) or a strategy parameter (k=2). Repeat it or "
                       "give a comma list for alternatives (strategy=full,lora); different keys "
                       "must all match.")] = None,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="Set PATH=VALUE in the study before it runs, as the YAML would: dotted "
                      "keys, list positions as numbers, VALUE read as YAML "
                      "(recipe.num_train_epochs=3, strategies.0.learning_rates=[1e-4]).")
                                  ] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the planned runs (done or pending) and run nothing.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="With --dry-run: the plan as JSON.")
                           ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a study (strategies x parameters x seeds x learning rates); finished runs are skipped."""
    from freezebench.study.config import load_study
    from freezebench.study.executors import get_executor
    from freezebench.study.sweep import plan_sweep, run_sweep

    _verbose(verbose)
    study = load_study(config, output_dir=output_dir, settings=settings or ())
    if dry_run:
        _print_plan(plan_sweep(study, only=only or ()), json_output)
        return
    if json_output:
        raise FreezebenchError("--json goes with --dry-run (a sweep prints one line per run).")
    options = {"ray_address": ray_address, "cpus_per_run": cpus_per_run,
               "gpus_per_run": gpus_per_run, "max_concurrent_runs": max_concurrent_runs,
               "max_retries": max_retries}
    chosen = get_executor(executor, **{k: v for k, v in options.items() if v is not None})
    summary = run_sweep(study, executor=chosen, only=only or ())
    console.print(str(summary), markup=False, highlight=False, soft_wrap=True)
    if summary.failed:
        err_console.print(f"{summary.failed} run(s) failed: {', '.join(summary.failed_ids)} (their "
                          "records hold the error; the same command retries them)", style="red",
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _print_plan(plan: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(plan, indent=2))
        return
    tasks = [_task_name(r) for r in plan]
    many = len(set(tasks)) > 1
    table = Table(title=f"{len(plan)} runs planned over {len(set(tasks))} task"
                        f"{'s' * many}, {sum(r['status'] == 'pending' for r in plan)} pending",
                  show_header=True)
    for column in ("id", *("task",) * many, "strategy", "lr", "seed", "status"):
        table.add_column(column)
    for r, task in zip(plan, tasks, strict=True):
        table.add_row(r["id"], *(task,) * many, r["strategy_label"], f"{r['learning_rate']:g}",
                      str(r["seed"]), r["status"])
    console.print(table)


def _task_name(run: dict) -> str:
    """A planned run's (model, dataset) as the report names them (no machine paths)."""
    from freezebench.report.frame import display_name

    config = f" ({run['dataset_config']})" if run["dataset_config"] else ""
    return f"{display_name(run['model'])} on {display_name(run['dataset'])}{config}"


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="A results folder written by run or sweep.")],
    output_dir: Annotated[Path | None, typer.Option(
        help="Where report.md/html go (default: results_dir).")] = None,
    metric: Annotated[str | None, typer.Option(
        help="Decision metric: accuracy | f1 | f1_macro | precision | recall | pearson | "
             "spearman (default: the study's, else f1_macro, or pearson for "
             "regressions).")] = None,
    cost_view: Annotated[str, typer.Option(
        help="Cost the answers use: standalone (one run from scratch) | study (cache builds "
             "shared).")] = "standalone",
    tolerance_points: Annotated[float, typer.Option(
        help="Acceptable: the 95 % interval of the difference from full fine-tuning lies above "
             "minus this many points of the metric.")] = 1.0,
    substantial_saving: Annotated[float, typer.Option(
        help="Substantial: at least this share of training time saved (0-1).")] = 0.30,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print summary.json instead of the headline table.")] = False,
) -> None:
    """Write report.md, a self-contained report.html and summary.json from the records alone."""
    from freezebench.report.document import summary_table, write_report

    if not 0 < substantial_saving < 1:
        raise FreezebenchError(
            f"--substantial-saving {substantial_saving} must be between 0 and 1.")
    paths = write_report(results_dir, output_dir=output_dir, metric=metric, cost_view=cost_view,
                         tolerance_points=tolerance_points, substantial_saving=substantial_saving)
    if json_output:
        print(paths.summary.read_text(encoding="utf-8"), end="")
        return
    _print_frame(summary_table(paths.findings), "headline")
    console.print(f"report: {paths.markdown}\n        {paths.html}\n        {paths.summary}")


@app.command()
def plot(
    results_dir: Annotated[Path, typer.Argument(help="A results folder written by run or sweep.")],
    kind: Annotated[str, typer.Option(
        help="Which figure: pareto (test score against a cost) | depth (score and time against "
             "the number of frozen blocks) | memory (peak memory per strategy) | curves "
             "(validation score and loss per epoch).")],
    fmt: Annotated[str | None, typer.Option(
        "--format", help="png | svg | pdf (default: --output's suffix, else png).")] = None,
    output: Annotated[Path | None, typer.Option(
        help="File to write (default: <figure name>.<format> in results_dir).")] = None,
    cost: Annotated[str, typer.Option(
        help="pareto only: the cost on the x axis: time | flops | memory.")] = "time",
    metric: Annotated[str | None, typer.Option(
        help="Decision metric: accuracy | f1 | f1_macro | precision | recall | pearson | "
             "spearman (default: the study's, else f1_macro, or pearson for "
             "regressions).")] = None,
    cost_view: Annotated[str, typer.Option(
        help="standalone (one run from scratch) | study (cache builds shared).")] = "standalone",
    tolerance_points: Annotated[float, typer.Option(
        help="pareto only: the acceptable line, this many points below full fine-tuning.")
                                ] = 1.0,
    model: Annotated[str | None, typer.Option(
        help="The study's model, where the folder holds several.")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="The study's dataset, where the folder holds several.")] = None,
) -> None:
    """Draw one of the report's figures from the records alone, as PNG, SVG or PDF."""
    from freezebench.report.figures import write_figure

    path = write_figure(results_dir, kind, output=output, fmt=fmt, cost=cost, metric=metric,
                        cost_view=cost_view, tolerance_points=tolerance_points, model=model,
                        dataset=dataset)
    console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def compare(
    results_dirs: Annotated[list[Path], typer.Argument(help="Two or more results folders.")],
    json_output: Annotated[bool, typer.Option(
        "--json", help="The table as JSON, one object per strategy.")] = False,
) -> None:
    """Side-by-side table of several results folders (two models, two machines, ...)."""
    from freezebench.report.document import compare_table

    table = compare_table(results_dirs)
    if json_output:
        print(table.to_json(orient="records", force_ascii=False, indent=2))
        return
    _print_frame(table, "comparison")


@app.command()
def export(
    results_dir: Annotated[Path, typer.Argument(help="A results folder.")],
    to: Annotated[Path, typer.Option("--to", help="Output file: .csv or .parquet.")],
) -> None:
    """Export every record of a results folder as one row each (CSV or Parquet)."""
    from freezebench.report.export import export_records, load_records

    frame = load_records(results_dir)
    if frame.empty:
        raise FreezebenchError(f"'{results_dir}' holds no run records (looked in runs/).")
    console.print(f"wrote {len(frame)} rows to {export_records(frame, to)}")


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
