"""The report: a results folder's records -> Markdown and self-contained HTML, with figures.

The report reads nothing but the run records (``<results>/runs/*.json``). It leads with the
answers to the study's three questions, then shows the numbers behind them, how they were
measured, the runs that did not complete and the caveats.

This module writes the files and lays out the page; the parts come from :mod:`.answers`
(numbers and answers per study), :mod:`.tables`, :mod:`.methodology` (setup, measurement and
caveat sections), :mod:`.markdown` (escaping, tables, HTML) and :mod:`.plots`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from freezebench.answers import Study, analyze
from freezebench.errors import FreezebenchError
from freezebench.formatting import (
    MISSING,
    mean_std_text,
    points_word,
    quantity_text,
    ratio_text,
    share,
)
from freezebench.markdown import FIGURES_FOLDER, markdown_table, md_escape, render_html
from freezebench.methodology import caveat_lines, measurement_lines, setup_lines
from freezebench.results import UnreadableRecord, runs_dir, safe_name, scan_records
from freezebench.tables import error_text, failures_table, lr_table, main_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put its output."""

    markdown: Path
    html: Path
    figures: list[Path]


def load_records(results_dir: str | Path) -> tuple[list[dict[str, Any]], list[UnreadableRecord]]:
    """The records of ``results_dir``; a clear error when it holds none or none completed."""
    records, unreadable = scan_records(results_dir)
    for item in unreadable:
        logger.warning("Skipping unreadable record %s: %s", item.path, item.reason)
    if not records:
        raise FreezebenchError(
            f"No run records in '{runs_dir(results_dir)}'. Run a sweep with this output folder "
            "first, or point to the folder that holds the 'runs/' folder."
        )
    if not any(r.get("status") == "completed" for r in records):
        first = next((r for r in records if r.get("error")), None)
        detail = f" First error ({first['id']}): {error_text(first)}." if first else ""
        raise FreezebenchError(
            f"None of the {len(records)} runs in '{results_dir}' completed, so there is nothing "
            f"to report.{detail}"
        )
    return records, unreadable


def write_report(
    results_dir: str | Path, *, output_dir: str | Path | None = None,
    tolerance_points: float = 1.0, substantial_saving: float = 0.30,
) -> ReportPaths:
    """Write ``report.md`` (figures in ``report_files/``) and a self-contained ``report.html``."""
    records, unreadable = load_records(results_dir)
    studies = analyze(records, tolerance_points=tolerance_points,
                      substantial_saving=substantial_saving)
    out = Path(output_dir) if output_dir is not None else Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures_dir = out / FIGURES_FOLDER
    many = len(studies) > 1
    figures = {id(s): _draw_figures(s, figures_dir, many, tolerance_points) for s in studies}
    markdown = render_markdown(studies, records, unreadable, figures, results_dir)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown, encoding="utf-8")
    html_path.write_text(render_html(markdown, out, _title(studies)), encoding="utf-8")
    return ReportPaths(md_path, html_path, [p for f in figures.values() for p, _ in f])


def summary_table(source: str | Path | list[dict[str, Any]]) -> pd.DataFrame:
    """The headline table (one row per strategy, display-ready text) for a CLI to print."""
    records = source if isinstance(source, list) else load_records(source)[0]
    studies = analyze(records)
    columns = ["Strategy", "Test F1 (%)", "ΔF1 vs full", "Training time", "Speed-up",
               "Peak memory", "Trainable params"]
    frames = []
    for study in studies:
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
        for study in analyze(load_records(folder)[0]):
            name = f"{Path(folder).resolve().name} ({study.model})"
            if f"{name}: test F1 (%)" in columns:
                name = f"{folder} ({study.model}, {study.dataset})"
            s = study.summary.set_index("strategy_label")
            order += [label for label in s.index if label not in order]
            columns[f"{name}: test F1 (%)"] = {
                k: mean_std_text(r.test_f1_mean, r.test_f1_std, r.n) for k, r in s.iterrows()}
            columns[f"{name}: training time"] = {
                k: quantity_text(r.train_seconds_mean, "time") for k, r in s.iterrows()}
            columns[f"{name}: speed-up"] = {
                k: ratio_text(r.speedup) for k, r in s.iterrows()}
    table = pd.DataFrame(columns, index=order).fillna(MISSING)
    table.index.name = "Strategy"
    return table.reset_index()


# --------------------------------------------------------------------------- figures

def _draw_figures(study: Study, folder: Path, many: bool,
                  tolerance: float) -> list[tuple[Path, str]]:
    """Draw every figure of ``study``; returns (path, caption) for those that apply."""
    # matplotlib loads here, not at import, so printing a summary table stays quick.
    from freezebench import plots

    prefix = safe_name(f"{study.model}-{study.dataset}") + "-" if many else ""
    s, base = study.summary, study.baseline or "full"
    drawn = [
        (plots.plot_pareto(s, folder / f"{prefix}pareto-{cost}.png", cost=cost,
                           tolerance_points=tolerance, baseline=base),
         f"Test F1 against {name}. Strategies on the dashed frontier are beaten on both quality "
         "and cost by no other strategy; error bars are ±1 std over seeds.")
        for cost, name in [("time", "training time"), ("flops", "training FLOPs"),
                           ("memory", "peak memory")]
    ]
    drawn += [
        (plots.plot_frozen_blocks(s, folder / f"{prefix}frozen-blocks.png", baseline=base),
         "Freezing more bottom encoder blocks: test F1 and training time."),
        (plots.plot_memory(s, folder / f"{prefix}memory.png", baseline=base),
         "Peak memory per strategy."),
        (plots.plot_training_curves(study.curves, folder / f"{prefix}training-curves.png",
                                    order=list(s["strategy_label"])),
         "Validation F1 and training loss per epoch at the chosen learning rate, averaged over "
         "seeds."),
    ]
    return [(path, caption) for path, caption in drawn if path is not None]


# --------------------------------------------------------------------------- markdown

def _title(studies: list[Study]) -> str:
    if len(studies) == 1:
        return (f"Layer-freezing study: {_short_name(studies[0].model)} on "
                f"{_short_name(studies[0].dataset)}")
    return "Layer-freezing study"


def _short_name(source: str) -> str:
    """A hub id as it is; a local path by its last folder name (no machine paths in titles)."""
    path = Path(source)
    if path.is_absolute() or source.startswith("."):
        return "/".join(path.parts[-2:])
    return source


def render_markdown(studies: list[Study], records: list[dict[str, Any]],
                    unreadable: list[UnreadableRecord], figures: dict[int, list],
                    results_dir: str | Path) -> str:
    """The whole report as Markdown; figures are referenced as ``report_files/<name>.png``."""
    counts = pd.Series([r.get("status") for r in records]).value_counts()
    status = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = [f"# {md_escape(_title(studies))}", "",
             f"*{len(records)} run records in `{results_dir}` ({status}); generated "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.*", ""]
    level = "###" if len(studies) > 1 else "##"
    for study in studies:
        mine = [r for r in records if (r.get("config") or {}).get("model") == study.model
                and (r.get("config") or {}).get("dataset") == study.dataset]
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


def _study_markdown(study: Study, records: list[dict[str, Any]], figures: list,
                    h: str) -> list[str]:
    lines = _answers_markdown(study, h)
    lines += [f"{h} Results per strategy", "", markdown_table(main_table(study)), "",
              _table_legend(study.baseline), ""]
    lines += [f"{h} Figures", ""]
    for path, caption in figures:
        lines += [f"![{caption}]({FIGURES_FOLDER}/{path.name})", "", f"*{caption}*", ""]
    lines += [f"{h} Setup", "", *setup_lines(study, records), ""]
    lines += [f"{h} How it was measured", "", *measurement_lines(study, records), "",
              markdown_table(lr_table(study, records), numeric=False), ""]
    lines += [f"{h} Caveats", "", *caveat_lines(study, records), ""]
    return lines


def _answers_markdown(study: Study, h: str) -> list[str]:
    a = study.answers
    lines = [f"{h} The answers", "",
             f"*Acceptable* means a mean test F1 at most {points_word(a.tolerance_points)} below "
             f"full fine-tuning; *substantial* means at least {share(a.substantial_saving)} less "
             "training time. All numbers are means over seeds on the test split, each strategy at "
             "its learning rate chosen on validation.", "",
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
              "substantially?**", "", md_escape(a.keep_performance_text), ""]
    return lines


def _table_legend(base: str | None) -> str:
    text = ("F1 and accuracy in percent: mean ± standard deviation over the n seeds. ")
    if base:
        text += ("ΔF1 vs full: difference from full fine-tuning in F1 points ± its standard "
                 "error, and relative change. Speed-up: full fine-tuning's training time divided "
                 "by the strategy's. Memory, FLOPs and cost: change relative to full "
                 "fine-tuning in brackets.")
    else:
        text += "No completed full fine-tuning runs: no comparison columns."
    return f"*{text}*"
