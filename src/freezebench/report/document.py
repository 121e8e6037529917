"""The report: a results folder's records -> Markdown and self-contained HTML, with figures.

The report reads nothing but the run records (``<results>/runs/*.json``). It leads with the
answers to the study's three questions, then shows the numbers behind them, how they were
measured, the runs that did not complete and the caveats.

This module writes the files and lays out the page; the parts come from :mod:`.findings`
(numbers and answers per study), :mod:`.tables`, :mod:`.sections` (setup, method and caveat
sections), :mod:`.markdown` (escaping, tables, HTML), :mod:`.figures` and :mod:`.summary` (the
numbers as ``summary.json``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from freezebench.record import safe_name
from freezebench.report.cross_task import CrossTask, cross_task, cross_task_table
from freezebench.report.findings import Findings, analyze, default_metric
from freezebench.report.formatting import (
    MISSING,
    mean_std_text,
    metric_label,
    metric_name,
    quantity_text,
    ratio_text,
    share,
)
from freezebench.report.markdown import FIGURES_FOLDER, markdown_table, md_escape, render_html
from freezebench.report.records import load_records
from freezebench.report.sections import caveat_lines, method_lines, setup_lines
from freezebench.report.summary import study_metric, write_summary
from freezebench.report.tables import (
    baselines_table,
    budgets_table,
    failures_table,
    lr_table,
    main_table,
)
from freezebench.results import UnreadableRecord


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put its output."""

    markdown: Path
    html: Path
    summary: Path
    figures: list[Path]
    findings: list[Findings]


def write_report(
    results_dir: str | Path, *, output_dir: str | Path | None = None, metric: str | None = None,
    cost_view: str = "standalone", tolerance_points: float = 1.0,
    substantial_saving: float = 0.30,
) -> ReportPaths:
    """Write ``report.md`` (figures in ``report_files/``), a self-contained ``report.html`` and
    ``summary.json``. ``metric``: the decision metric (default: the study's, else macro-F1, or
    Pearson's r for regressions)."""
    records, unreadable = load_records(results_dir)
    studies = analyze(records,
                      metric=metric or study_metric(results_dir) or default_metric(records),
                      cost_view=cost_view, tolerance_points=tolerance_points,
                      substantial_saving=substantial_saving)
    out = Path(output_dir) if output_dir is not None else Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures_dir = out / FIGURES_FOLDER
    many = len(studies) > 1
    figures = {id(s): _draw_figures(s, figures_dir, many, tolerance_points, records)
               for s in studies}
    across = cross_task(studies)
    markdown = render_markdown(studies, records, unreadable, figures, results_dir, across)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown, encoding="utf-8")
    html_path.write_text(render_html(markdown, out, _title(studies)), encoding="utf-8")
    summary_path = write_summary(studies, out / "summary.json", across)
    return ReportPaths(md_path, html_path, summary_path,
                       [p for f in figures.values() for p, _ in f], studies)


def summary_table(studies: list[Findings]) -> pd.DataFrame:
    """The headline table (one row per strategy, display-ready text) for a CLI to print."""
    frames = []
    for study in studies:
        name = metric_name(study.metric)
        view = "standalone" if study.cost_view == "standalone" else "in study"
        columns = ["Strategy", f"Test {metric_label(study.metric)}",
                   f"Δ{name} vs full, 95 % CI",
                   f"Training time ({view})", "Speed-up standalone", "Speed-up in study",
                   "Peak memory", "Collapsed runs"]
        table = main_table(study)
        table = table[[c for c in columns if c in table]]
        if len(studies) > 1:
            table.insert(0, "Dataset", study.dataset)
            table.insert(0, "Model", study.model)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def compare_table(results_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Several results folders side by side: rows are strategies, three columns per folder."""
    columns: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for folder in results_dirs:
        records = load_records(folder)[0]
        for study in analyze(records, metric=study_metric(folder) or default_metric(records)):
            name = f"{Path(folder).resolve().name} ({study.model})"
            if any(c.startswith(f"{name}: test ") for c in columns):
                name = f"{folder} ({study.model}, {study.dataset})"
            s = study.summary.set_index("strategy_label")
            order += [label for label in s.index if label not in order]
            columns[f"{name}: test {metric_label(study.metric)}"] = {
                k: mean_std_text(r.quality_mean, r.quality_std, r.n) for k, r in s.iterrows()}
            columns[f"{name}: training time (standalone)"] = {
                k: quantity_text(r.standalone_seconds_mean, "time") for k, r in s.iterrows()}
            columns[f"{name}: speed-up (standalone)"] = {
                k: ratio_text(r.speedup_standalone) for k, r in s.iterrows()}
    table = pd.DataFrame(columns, index=order).fillna(MISSING)
    table.index.name = "Strategy"
    return table.reset_index()


# --------------------------------------------------------------------------- figures

def _draw_figures(study: Findings, folder: Path, many: bool, tolerance: float,
                  records: list[dict[str, Any]]) -> list[tuple[Path, str]]:
    """Draw every figure of ``study`` as PNG; returns (path, caption) for those that apply."""
    # matplotlib loads here, not at import, so printing a summary table stays quick.
    from freezebench.report.figures import study_figures
    from freezebench.report.plots import plot_freezing_timeline, save_figure

    prefix = safe_name(f"{study.model}-{study.dataset}") + "-" if many else ""
    drawn = [(save_figure(figure.figure, folder / f"{prefix}{figure.name}.png"), figure.caption)
             for figure in study_figures(study, tolerance_points=tolerance)]
    chosen = set(study.selected["id"])  # the runs at each strategy's chosen learning rate
    timeline = plot_freezing_timeline([r for r in records if r["id"] in chosen])
    if timeline is not None:
        drawn.append((save_figure(timeline, folder / f"{prefix}freezing-timeline.png"),
                      "Adaptive strategies: encoder blocks frozen against the training step (the "
                      "embeddings freeze with the first block or before it), each seed and their "
                      "mean."))
    return drawn


# --------------------------------------------------------------------------- markdown

def _title(studies: list[Findings]) -> str:
    if len(studies) == 1:  # display names: no machine paths
        return f"Layer-freezing study: {studies[0].model} on {studies[0].dataset}"
    return "Layer-freezing study"


def render_markdown(studies: list[Findings], records: list[dict[str, Any]],
                    unreadable: list[UnreadableRecord], figures: dict[int, list],
                    results_dir: str | Path, across: CrossTask | None = None) -> str:
    """The whole report as Markdown; figures are referenced as ``report_files/<name>.png``;
    ``across``: the cross-task summary, first, where the folder holds several tasks."""
    counts = pd.Series([r.get("status") for r in records]).value_counts()
    status = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = [f"# {md_escape(_title(studies))}", "",
             f"*{len(records)} run records in `{results_dir}` ({status}); generated "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.*", ""]
    level = "###" if len(studies) > 1 else "##"
    if across is not None:
        lines += _cross_task_markdown(across)
    for study in studies:
        mine = [r for r in records if r["id"] in study.record_ids]
        if len(studies) > 1:
            lines += [f"## {md_escape(study.model)} on {md_escape(study.dataset)}", ""]
        lines += _study_markdown(study, mine, figures[id(study)], level)
    lines += ["## Runs that did not complete", ""]
    failed = failures_table(records)
    lines += [markdown_table(failed, numeric=False) if len(failed) else "All runs completed.", ""]
    if unreadable:
        lines += ["Record files that could not be read (left out):", ""]
        lines += [f"- `{item.path.name}`: {md_escape(item.reason)}" for item in unreadable]
        lines.append("")
    return "\n".join(lines)


def _study_markdown(study: Findings, records: list[dict[str, Any]], figures: list,
                    h: str) -> list[str]:
    lines = _answers_markdown(study, h)
    lines += [f"{h} Results per strategy", "", markdown_table(main_table(study)), "",
              _table_legend(study), ""]
    trivial = baselines_table(study)
    if len(trivial):
        lines += [f"{h} Trivial baselines", "",
                  "What a classifier scores on the test split without learning anything:", "",
                  markdown_table(trivial, numeric=False), ""]
    if len(study.budgets):
        lines += [f"{h} Quality at equal training time", "",
                  markdown_table(budgets_table(study), numeric=False), "",
                  f"*{_budgets_legend(study)}*", ""]
    lines += [f"{h} Figures", ""]
    for path, caption in figures:
        lines += [f"![{caption}]({FIGURES_FOLDER}/{path.name})", "", f"*{caption}*", ""]
    lines += [f"{h} Setup", "", *setup_lines(study, records), ""]
    lines += [f"{h} How it was measured", "", *method_lines(study, records), "",
              markdown_table(lr_table(study), numeric=False), ""]
    lines += [f"{h} Caveats", "", *caveat_lines(study, records), ""]
    return lines


def _cross_task_markdown(across: CrossTask) -> list[str]:
    name = metric_name(across.metric) if across.metric else "metric"
    mixed = ("" if across.metric else
             " The tasks are not all of one kind: each is ranked and compared in its own "
             "decision metric (a classifier's in the study's metric, a regression's in Pearson's r "
             "×100), so a mean Δ mixes their points.")
    return [f"## Across the {len(across.tasks)} tasks", "",
            f"**Recommendation across tasks.** {md_escape(across.text)}", "",
            markdown_table(cross_task_table(across), numeric=False), "",
            f"*Each task (a model on a dataset, its own section below) is analysed on its own; "
            f"this table only combines the results. Rank: by mean test {name} within a task, "
            "1 = best, ties share their mean rank, averaged over the tasks the strategy ran in. "
            f"Δ{name}: the paired difference from full fine-tuning in points (mean over seeds, "
            "95 % t-interval), averaged over the tasks with full fine-tuning runs; the counts "
            "say in how many tasks the interval lies below 0, above 0, or above "
            f"−{across.tolerance_points:g} points (acceptable, as each task answers). "
            f"Speed-up: full fine-tuning's training time over the strategy's "
            f"({across.cost_view}), geometric mean over "
            "tasks; training time: the strategy's mean time as a share of full's, averaged "
            f"over tasks.{mixed}*", ""]


def _answers_markdown(study: Findings, h: str) -> list[str]:
    a, name = study.answers, metric_name(study.metric)
    lines = [f"{h} The answers", "",
             f"Decision metric: test {name}. *Acceptable* means the 95 % interval of the paired "
             f"difference from full fine-tuning lies above −{a.tolerance_points:g} points "
             f"(established, not just the mean); *substantial* means at least "
             f"{share(a.substantial_saving)} less training time, {a.cost_view} (see How it was "
             "measured). Numbers are means over seeds on the test split, each strategy at its "
             "learning rate chosen on validation.", "",
             "**1. How much performance is sacrificed when layers are frozen, and what efficiency "
             "is gained?**", ""]
    if study.baseline:
        lines += [f"- **{md_escape(k)}**: {v}." for k, v in a.performance_vs_efficiency.items()]
    else:
        lines.append("There are no completed `full` runs, so no loss or gain can be stated "
                     "against full fine-tuning; the table gives absolute numbers.")
    lines += ["", "**2. Which freezing strategy gives the best trade-off between performance and "
                  "compute?**", "", md_escape(a.recommendation.text), "",
              "**3. Can acceptable performance be kept while training time and resources drop "
              "substantially?**", "", md_escape(a.keep_performance_text), "",
              md_escape(a.equal_budget_text), ""]
    return lines


def _budgets_legend(study: Findings) -> str:
    name = metric_name(study.metric)
    return (f"Each budget is a share of {study.baseline or 'full'} fine-tuning's mean standalone "
            "training time. Every run is read at its last evaluation within the budget (step 0, "
            "the untrained head, counts; a strategy whose frozen layers' forward alone exceeds "
            f"the budget does not compete); the strategy with the best mean validation {name} is "
            f"shown with its test {name} (mean and 95 % t-interval over seeds) and its paired "
            f"difference from full fine-tuning's test {name} at the end of its training. Test "
            "plays no part in the choice.")


def _table_legend(study: Findings) -> str:
    name = metric_name(study.metric)
    text = (f"{name}, accuracy and F1 (of class 1 with two classes, macro otherwise) in percent: "
            "mean ± standard deviation over the n seeds. ")
    if study.regression:
        text = ("Pearson r and Spearman ρ × 100, and the mean squared error on the scores' "
                "scale: mean ± standard deviation over the n seeds. ")
    if study.baseline:
        text += (f"Δ{name} vs full: the mean paired difference from full fine-tuning in points "
                 "with its 95 % t-interval. Speed-up: full fine-tuning's training time divided by "
                 "the strategy's, per seed, mean ± std; standalone counts one run from scratch "
                 "(its frozen layers' forward over the training data included), in study "
                 "shares each cache build among the runs that used it. Peak memory: an upper "
                 "bound (activations and gradients added). Memory, FLOPs and cost: "
                 "change relative to full fine-tuning in brackets.")
    else:
        text += "No completed full fine-tuning runs: no comparison columns."
    return f"*{text}*"
