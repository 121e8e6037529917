"""The report: a results folder's records -> Markdown and self-contained HTML, with figures.

The report reads nothing but the run records (``<results>/runs/*.json``). It leads with the
answers to the study's three questions, then shows the numbers behind them, how they were
measured, the runs that did not complete and the caveats.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from freezebench.answers import Study, analyze
from freezebench.errors import FreezebenchError
from freezebench.formatting import (
    integer_text,
    mean_std_text,
    points_text,
    points_word,
    quantity_text,
    ratio_text,
    share,
)
from freezebench.markdown import FIGURES_FOLDER, markdown_table, md_escape, render_html
from freezebench.results import UnreadableRecord, runs_dir, safe_name, scan_records
from freezebench.tables import error_text, failures_table, learning_rate_grid, lr_table, main_table

logger = logging.getLogger(__name__)

_MEMORY_KIND = {"cuda_allocated": "peak GPU memory allocated by PyTorch "
                                  "(`torch.cuda.max_memory_allocated` after a reset)",
                "cpu_rss_growth": "growth of the process's peak resident memory (CPU run)"}


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
    table = pd.DataFrame(columns, index=order).fillna("–")
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
    a = study.answers
    base = study.baseline
    lines = [f"{h} The answers", "",
             f"*Acceptable* means a mean test F1 at most {points_word(a.tolerance_points)} below "
             f"full fine-tuning; *substantial* means at least {share(a.substantial_saving)} less "
             "training time. All numbers are means over seeds on the test split, each strategy at "
             "its learning rate chosen on validation.", "",
             "**1. How much performance is sacrificed when layers are frozen, and what efficiency "
             "is gained?**", ""]
    if base:
        lines += [f"- **{md_escape(k)}**: {v}." for k, v in a.performance_vs_efficiency.items()]
    else:
        lines.append("There are no completed `full` runs, so no loss or gain can be stated "
                     "against full fine-tuning; the table gives absolute numbers.")
    lines += ["", "**2. Which freezing strategy gives the best trade-off between performance and "
                  "compute?**", "", md_escape(a.recommendation.text), "",
              "**3. Can acceptable performance be kept while training time and resources drop "
              "substantially?**", "", md_escape(a.keep_performance_text), ""]
    lines += [f"{h} Results per strategy", "", markdown_table(main_table(study)), "",
              _table_legend(base), ""]
    lines += [f"{h} Figures", ""]
    for path, caption in figures:
        lines += [f"![{caption}]({FIGURES_FOLDER}/{path.name})", "", f"*{caption}*", ""]
    lines += [f"{h} Setup", "", *_setup(study, records), ""]
    lines += [f"{h} How it was measured", "", *_measurement(study, records), "",
              markdown_table(lr_table(study, records), numeric=False), ""]
    lines += [f"{h} Caveats", "", *_caveats(study, records), ""]
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


def _values(records: list[dict[str, Any]], *path: str, none: str = "not recorded") -> str:
    """The distinct values of a record field, joined (several values mean a mixed folder)."""
    found = []
    for record in records:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        value = none if value is None else value
        if value not in found:
            found.append(value)
    return ", ".join(md_escape(str(v)) for v in found) or none


def _setup(study: Study, records: list[dict[str, Any]]) -> list[str]:
    done = [r for r in records if r.get("status") == "completed"]
    sizes = (done[0].get("data") or {}).get("sizes") or {}
    split = ", ".join(f"{k} {integer_text(v)}" for k, v in sizes.items()) or "not recorded"
    seeds = sorted({s for seeds in study.summary["seeds"] for s in seeds})
    return [
        f"- **Model**: {md_escape(study.model)}",
        f"- **Dataset**: {md_escape(study.dataset)} (examples per split: {split}; "
        f"training examples used: {_values(done, 'config', 'max_train_samples', none='all')})",
        f"- **Recipe**: {_values(done, 'config', 'num_train_epochs')} epoch(s), batch size "
        f"{_values(done, 'config', 'per_device_train_batch_size')}, weight decay "
        f"{_values(done, 'config', 'weight_decay')}, warmup ratio "
        f"{_values(done, 'config', 'warmup_ratio')}, max length "
        f"{_values(done, 'config', 'max_length', none='model maximum')}; learning-rate grid "
        "in the table below",
        f"- **Seeds**: {', '.join(str(int(s)) for s in seeds)}",
        f"- **Device**: {_values(done, 'env', 'device_name')} "
        f"({_values(done, 'env', 'device')}), precision {_values(done, 'efficiency', 'precision')}",
        f"- **Versions**: freezebench {_values(done, 'env', 'freezebench')}, torch "
        f"{_values(done, 'env', 'torch')}, transformers {_values(done, 'env', 'transformers')}, "
        f"datasets {_values(done, 'env', 'datasets')}, Python {_values(done, 'env', 'python')}; "
        f"commit {_values(done, 'env', 'git_commit')}",
    ]


def _measurement(study: Study, records: list[dict[str, Any]]) -> list[str]:
    done = [r for r in records if r.get("status") == "completed"]
    kinds = {(r.get("efficiency") or {}).get("memory_kind") for r in done} - {None}
    memory = "; ".join(_MEMORY_KIND.get(k, k) for k in sorted(kinds)) or "not recorded"
    builds: dict[str, float] = {}
    for r in done:
        seconds = (r.get("efficiency") or {}).get("cache_build_seconds") or 0.0
        if seconds > 0:
            label = r.get("strategy_label", "?")
            builds[label] = builds.get(label, 0.0) + seconds
    cache = ("No frozen-prefix cache was built." if not builds else
             "Building the frozen-prefix cache is a one-off cost, shared by every run with the "
             "same frozen layers (all seeds and learning rates), and not part of training time; "
             "the builds took " + ", ".join(f"{md_escape(k)} {quantity_text(v, 'time')}"
                                            for k, v in builds.items())
             + f" in total ({quantity_text(sum(builds.values()), 'time')} for the whole study).")
    labels = (done[0].get("data") or {}).get("label_names") or []
    f1 = (f"F1 of the positive class ('{md_escape(str(labels[1]))}')" if len(labels) == 2
          else "macro-averaged F1 over the classes")
    return [
        f"- **Quality**: {f1}, and accuracy, on the test split; the validation split only "
        "chooses the learning rate.",
        "- **Learning rate**: for every strategy and seed, the learning rate with the best "
        "validation F1 was kept (ties: lower validation loss, then the smaller rate). Test "
        "numbers come from that run only, so the test split played no part in the choice.",
        f"- **Training time**: {_values(done, 'efficiency', 'timing_method')}. {cache}",
        "- **Throughput**: training examples processed per second of training time.",
        f"- **Memory**: {memory}.",
        "- **FLOPs**: training FLOPs counted by freezebench with freezing (and the cache, where "
        "used) taken into account, not the Trainer's `total_flos`, which ignores freezing.",
        "- **Cost**: (training time + cache build time) / 3600 × the configured price per "
        f"device hour ({_values(done, 'efficiency', 'price_per_hour')} USD); device time only.",
    ]


def _caveats(study: Study, records: list[dict[str, Any]]) -> list[str]:
    done = [r for r in records if r.get("status") == "completed"]
    s = study.summary
    test_n = ((done[0].get("data") or {}).get("sizes") or {}).get("test")
    out = [
        "- **Fixed recipe**: apart from the learning rate, every strategy used the same "
        f"hyperparameters ({_values(done, 'config', 'num_train_epochs')} epoch(s), batch size "
        f"{_values(done, 'config', 'per_device_train_batch_size')}, ...). Strategies that train "
        "fewer parameters may do better with more epochs or other settings.",
        f"- **Hardware**: times and memory were measured on "
        f"{_values(done, 'env', 'device_name')}; on other hardware the seconds change, the "
        "ratios (speed-up, savings) transfer better.",
        f"- **Seeds**: {_n_range(s['n'])} seed(s) per strategy; " + (
            f"the standard deviation of test F1 between seeds is up to "
            f"{points_text(s['test_f1_std'].max())} points. Differences smaller than that are not "
            "reliable." if s["test_f1_std"].notna().any() else
            "with one seed the run-to-run spread is unknown, so small differences may be noise."),
    ]
    if isinstance(test_n, int) and test_n > 0:
        f1 = float(s["test_f1_mean"].max())
        noise = 100 * math.sqrt(max(f1 * (1 - f1), 1e-12) / test_n)
        out.append(f"- **Dataset size**: one dataset, scored on {test_n:,} test examples; at "
                   f"this size a single score carries a sampling error of about ±{noise:.1f} "
                   "points (differences between strategies scored on the same examples vary "
                   "less).")
    grid = learning_rate_grid(study, records)
    if max(len(g) for g in grid.values()) <= 2:
        out.append("- **Learning-rate grid**: at most two rates per strategy; a wider grid "
                   "might move the results.")
    edge = [label for label, rates in grid.items() if len(rates) > 2 and any(
        lr in (rates[0], rates[-1]) for lr in s.set_index("strategy_label").at[label, "chosen_lr"])]
    if edge:
        out.append(f"- **Edge of the grid**: the best learning rate of {', '.join(edge)} lies at "
                   "the edge of the rates tried; a wider grid might improve it.")
    mixed = _mixed_settings(done)
    if mixed:
        out.append(f"- **Mixed settings**: the runs differ in {md_escape(mixed)}; they were "
                   "pooled as if they were the same recipe.")
    out.append(f"- **Scope**: {md_escape(study.model)} on {md_escape(study.dataset)} only; "
               "other models and tasks may differ.")
    return out


# Config fields that may differ between the runs of one study without mixing recipes.
_VARIED_BY_DESIGN = {"strategy", "strategy_params", "learning_rate", "seed", "output_dir",
                     "save_model", "disable_tqdm", "cache_dir", "device", "use_cache"}


def _mixed_settings(records: list[dict[str, Any]]) -> str:
    """Config fields other than the swept ones that take several values, with the values."""
    values: dict[str, list[str]] = {}
    for record in records:
        for key, value in (record.get("config") or {}).items():
            seen = values.setdefault(key, [])
            if key not in _VARIED_BY_DESIGN and str(value) not in seen:
                seen.append(str(value))
    return "; ".join(f"{key} ({', '.join(v)})" for key, v in values.items() if len(v) > 1)


# --------------------------------------------------------------------------- numbers

def _n_range(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"
