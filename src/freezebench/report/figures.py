"""A study's figures by kind: each drawn from its findings, with its file name and caption.

The report embeds every figure that applies to a study (:func:`study_figures`);
``freezebench plot`` draws one of them to a file (:func:`write_figure`). The drawing itself is
in :mod:`freezebench.report.plots`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from freezebench.errors import FreezebenchError, did_you_mean
from freezebench.record import safe_name
from freezebench.report import plots
from freezebench.report.findings import Findings, default_metric
from freezebench.report.formatting import metric_name, metric_unit

FORMATS = ("png", "svg", "pdf")
COSTS = tuple(plots.COSTS)
# kind -> why a study may have no such figure
KINDS = {
    "pareto": "no strategy has both a test score and this cost",
    "depth": "it has no runs of the 'bottom' strategy that differ in k alone",
    "memory": "no strategy has a peak memory",
    "curves": "no strategy has two or more evaluations during training (records written "
              "before schema 3 hold one per epoch)",
}


@dataclass(frozen=True)
class StudyFigure:
    """One drawn figure: its file name without suffix (``pareto-time``), caption and Figure."""

    name: str
    caption: str
    figure: Figure


def draw(study: Findings, kind: str, *, cost: str = "time",
         tolerance_points: float = 1.0) -> StudyFigure | None:
    """The figure of ``kind`` (one of :data:`KINDS`) for ``study``; ``None`` when it has no data.
    ``cost`` (time, flops or memory) is the x axis of ``pareto``."""
    check_choices(kind, cost)
    s, base, name = study.summary, study.baseline or "full", metric_name(study.metric)
    unit = metric_unit(study.metric)
    view = f"{study.cost_view} " if study.cost_view == "standalone" else "in-study "
    if kind == "pareto":
        what = {"time": f"{view}training time", "flops": f"{view}training FLOPs",
                "memory": "peak memory"}[cost]
        return _named(f"pareto-{cost}", plots.plot_pareto(
            s, cost=cost, tolerance_points=tolerance_points, baseline=base, metric=name,
            unit=unit),
            f"Test {name} against {what}. Strategies on the dashed frontier are beaten on both "
            "quality and cost by no other strategy; error bars are ±1 std over seeds.")
    if kind == "depth":
        same = s[s["strategy_label"].isin(_with_baseline_recipe(study, base))]
        return _named("frozen-blocks", plots.plot_frozen_blocks(same, baseline=base, metric=name,
                                                                unit=unit),
                      f"Freezing more bottom encoder blocks: test {name} and {view}training "
                      "time (the strategies trained with full fine-tuning's recipe).")
    if kind == "memory":
        return _named("memory", plots.plot_memory(s, baseline=base),
                      "Peak tensor memory per strategy.")
    return _named("time-to-quality", plots.plot_time_to_quality(
        study.curves, order=list(s["strategy_label"]), metric=name, unit=unit),
        f"Time to quality: validation and test {name} at each evaluation during training "
        "against standalone training time and FLOPs so far (step 0 starts after the frozen "
        "layers' forward), mean over seeds with the 95 % interval as a band.")


def _with_baseline_recipe(study: Findings, baseline: str) -> set[str]:
    """The strategies whose runs share the baseline's recipe (all of them without a baseline):
    a depth line must not mix 1-epoch and 2-epoch points."""
    runs = study.selected
    base = set(runs.loc[runs["strategy_label"] == baseline, "recipe"])
    if not base:
        return set(runs["strategy_label"])
    return set(runs.loc[runs["recipe"].isin(base), "strategy_label"])


def _named(name: str, figure: Figure | None, caption: str) -> StudyFigure | None:
    return None if figure is None else StudyFigure(name, caption, figure)


def study_figures(study: Findings, *, tolerance_points: float = 1.0) -> list[StudyFigure]:
    """Every figure that applies to ``study``, in the report's order (a frontier per cost)."""
    wanted = [("pareto", cost) for cost in COSTS] + [(kind, "time") for kind in KINDS
                                                     if kind != "pareto"]
    drawn = [draw(study, kind, cost=cost, tolerance_points=tolerance_points)
             for kind, cost in wanted]
    return [figure for figure in drawn if figure is not None]


def check_choices(kind: str, cost: str) -> None:
    """A known figure kind and cost, or a clear error listing them."""
    if kind not in KINDS:
        raise FreezebenchError(f"Unknown figure kind '{kind}'.{did_you_mean(kind, KINDS)} "
                               f"Choose one of: {', '.join(KINDS)}.")
    if cost not in COSTS:
        raise FreezebenchError(f"Unknown cost '{cost}'.{did_you_mean(cost, COSTS)} Choose one "
                               f"of: {', '.join(COSTS)}.")


def write_figure(
    results_dir: str | Path, kind: str, *, output: str | Path | None = None,
    fmt: str | None = None, cost: str = "time", metric: str | None = None,
    cost_view: str = "standalone", tolerance_points: float = 1.0, model: str | None = None,
    dataset: str | None = None,
) -> Path:
    """Draw one figure of the results in ``results_dir`` and write it; returns its path.

    ``fmt`` defaults to ``output``'s suffix, else png; ``output`` to ``<kind name>.<fmt>`` in
    ``results_dir``. A folder with several studies needs ``model`` and/or ``dataset`` to pick one.
    """
    from freezebench.report.findings import analyze
    from freezebench.report.records import load_records
    from freezebench.report.summary import study_metric

    check_choices(kind, cost)
    fmt = _format(output, fmt)
    records = load_records(results_dir)[0]
    studies = analyze(records,
                      metric=metric or study_metric(results_dir) or default_metric(records),
                      cost_view=cost_view, tolerance_points=tolerance_points)
    study = _one_study(studies, model, dataset, results_dir)
    figure = draw(study, kind, cost=cost, tolerance_points=tolerance_points)
    if figure is None:
        raise FreezebenchError(
            f"No {kind} figure for {study.model} on {study.dataset} in '{results_dir}': "
            f"{KINDS[kind]}.")
    if output is None:
        prefix = safe_name(f"{study.model}-{study.dataset}") + "-" if len(studies) > 1 else ""
        output = Path(results_dir) / f"{prefix}{figure.name}.{fmt}"
    return plots.save_figure(figure.figure, output, fmt)


def _format(output: str | Path | None, fmt: str | None) -> str:
    suffix = Path(output).suffix.lower().lstrip(".") if output is not None else ""
    chosen = (fmt or suffix or "png").lower()
    if chosen not in FORMATS:
        raise FreezebenchError(f"Unknown figure format '{chosen}'.{did_you_mean(chosen, FORMATS)}"
                               f" Choose one of: {', '.join(FORMATS)}.")
    if suffix and suffix != chosen:
        raise FreezebenchError(f"--output '{output}' ends in '.{suffix}' but the format is "
                               f"{chosen}: give a file ending in '.{chosen}' or drop --format.")
    return chosen


def _one_study(studies: list[Findings], model: str | None, dataset: str | None,
               results_dir: str | Path) -> Findings:
    matching = [s for s in studies if model in (None, s.model) and dataset in (None, s.dataset)]
    if len(matching) == 1:
        return matching[0]
    available = "; ".join(f"{s.model} on {s.dataset}" for s in studies)
    if not matching:
        given = " ".join(f"--{flag} {value}" for flag, value in [("model", model),
                                                                 ("dataset", dataset)] if value)
        raise FreezebenchError(f"No study in '{results_dir}' matches {given}. It holds: "
                               f"{available}.")
    raise FreezebenchError(f"'{results_dir}' holds {len(matching)} studies ({available}); "
                           "choose one with --model and/or --dataset.")
