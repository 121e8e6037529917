"""The figures one by one: plot functions return Figures, and ``freezebench plot`` writes one."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

from freezebench.cli import app
from freezebench.report import plots
from freezebench.report.figures import KINDS, study_figures
from freezebench.report.findings import analyze
from freezebench.report.records import load_records

from .error_catalog import run_cli
from .fixtures.records import build

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF-"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return build.write_records(tmp_path_factory.mktemp("study"), build.study_records())


@pytest.fixture(scope="module")
def study(results):
    [study] = analyze(load_records(results)[0])
    return study


def test_plot_functions_return_figures_and_none_without_data(study):
    s = study.summary
    for drawn in (plots.plot_pareto(s, cost="flops"), plots.plot_frozen_blocks(s),
                  plots.plot_memory(s), plots.plot_time_to_quality(study.curves)):
        assert isinstance(drawn, Figure) and drawn.axes
    assert plots.plot_frozen_blocks(s[s["strategy"] != "bottom"]) is None
    assert plots.plot_time_to_quality(study.curves[study.curves["step"] == 0]) is None
    assert [f.name for f in study_figures(study)] == [
        "pareto-time", "pareto-flops", "pareto-memory", "frozen-blocks", "memory",
        "time-to-quality"]


def test_each_axis_names_its_own_unit(study):
    """The metric's unit on the quality axes, the cost's on the cost axes (a cost unit once
    overwrote the metric's: 'Test macro-F1 (s)')."""
    s = study.summary
    pareto = plots.plot_pareto(s, cost="time", metric="macro-F1").axes[0]
    assert pareto.get_ylabel().startswith("Test macro-F1 (%)")
    assert pareto.get_xlabel().startswith("Training time (s)")
    quality, seconds = plots.plot_frozen_blocks(s, metric="macro-F1").axes
    assert quality.get_ylabel().startswith("Test macro-F1 (%)")
    assert seconds.get_ylabel().startswith("Training time (s)")
    curves = plots.plot_time_to_quality(study.curves, metric="macro-F1").axes
    assert [ax.get_ylabel() for ax in curves] == [
        "Validation macro-F1 (%)", "Validation macro-F1 (%)", "Test macro-F1 (%)",
        "Test macro-F1 (%)"]
    assert curves[0].get_xlabel() == "Training time, standalone (s)"
    assert curves[1].get_xlabel().startswith("Training compute, standalone (")


def test_nothing_drawn_falls_off_the_figure(study, tmp_path):
    build.write_records(tmp_path, [  # three strategies: one frontier panel, legend stacked
        build.make_record("full"), build.make_record("head", test_f1=0.70, seconds=20.0),
        build.make_record("bitfit", test_f1=0.80, seconds=60.0)])
    [small] = analyze(load_records(tmp_path)[0])
    drawn = study_figures(study) + study_figures(small)
    assert len(drawn[-3].figure.axes) == 1  # the small study's time frontier: one panel
    for figure in (d.figure for d in drawn):
        inside = figure.get_tightbbox(figure.canvas.get_renderer())  # inches, every artist
        assert inside.x0 >= 0 and inside.y0 >= 0, inside
        assert inside.x1 <= figure.get_figwidth() and inside.y1 <= figure.get_figheight(), inside


@pytest.mark.parametrize(("kind", "fmt", "name"), [
    ("pareto", "png", "pareto-time"), ("depth", "svg", "frozen-blocks"),
    ("memory", "pdf", "memory"), ("curves", "png", "time-to-quality")])
def test_plot_writes_each_kind_in_the_format_asked(results, kind, fmt, name):
    result = CliRunner().invoke(app, ["plot", str(results), "--kind", kind, "--format", fmt])
    assert result.exit_code == 0, result.output
    path = results / f"{name}.{fmt}"
    assert path.read_bytes().startswith(MAGIC[fmt])
    assert str(path) in result.output.replace("\n", "")


def test_plot_format_follows_output_and_cost_picks_the_axis(results, tmp_path):
    out = tmp_path / "figs" / "flops.svg"
    result = CliRunner().invoke(app, ["plot", str(results), "--kind", "pareto", "--cost", "flops",
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    svg = out.read_text(encoding="utf-8")
    assert "Training compute" in svg and "Training time" not in svg  # the x axis's title
    assert not (results / "pareto-flops.png").exists()


def test_records_without_evaluations_during_training_have_no_curves_a_clear_error(tmp_path):
    records = [build.make_record("full", loss=(0.4,)), build.make_record("head", loss=(0.6,))]
    for record in records:  # as a record of schema 1-2 with one epoch: one point, no test
        record["history"] = record["history"][-1:]
        record["history"][0]["test"] = None
    build.write_records(tmp_path / "one", records)
    outcome = run_cli(["plot", "one", "--kind", "curves"], tmp_path)
    assert outcome.exit_code == 2 and "Traceback" not in outcome.stderr
    assert outcome.stderr.startswith("error: No curves figure for bert-base-cased on "
                                     "rotten_tomatoes in 'one': no strategy has two or more "
                                     "evaluations during training")
    assert list((tmp_path / "one").iterdir()) == [tmp_path / "one" / "runs"]


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "paretto"], "Unknown figure kind 'paretto'. Did you mean 'pareto'? Choose one "
                            f"of: {', '.join(KINDS)}."),
    (["--kind", "memory", "--format", "jpg"], "Unknown figure format 'jpg'."),
    (["--kind", "memory", "--format", "png", "--output", "memory.pdf"],
     "ends in '.pdf' but the format is png"),
    (["--kind", "pareto", "--cost", "euros"], "Unknown cost 'euros'. Choose one of: time, flops, "
                                              "memory."),
])
def test_bad_choices_are_named(results, args, message):
    outcome = run_cli(["plot", str(results), *args], results)
    assert outcome.exit_code == 2 and "Traceback" not in outcome.stderr
    assert message in outcome.stderr.replace("\n", "")


def test_a_folder_of_several_studies_needs_one_chosen(tmp_path):
    build.write_records(tmp_path, [build.make_record("full"), build.make_record("head"),
                                   build.make_record("full", dataset="imdb")])
    outcome = run_cli(["plot", ".", "--kind", "memory"], tmp_path)
    assert outcome.exit_code == 2
    assert ("holds 2 studies (bert-base-cased on imdb; bert-base-cased on rotten_tomatoes); "
            "choose one with --model and/or --dataset.") in outcome.stderr.replace("\n", "")
    result = CliRunner().invoke(app, ["plot", str(tmp_path), "--kind", "memory",
                                      "--dataset", "imdb"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bert-base-cased-imdb-memory.png").is_file()
