"""The written report: its files, figures, tables, answers and errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from freezebench.errors import FreezebenchError
from freezebench.formatting import quantity_text, saving_words
from freezebench.report import compare_table, summary_table, write_report

from .fixtures.records import build

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"



@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return build.write_records(tmp_path_factory.mktemp("study"), build.study_records())


@pytest.fixture(scope="module")
def report(results):
    paths = write_report(results)
    return paths, paths.markdown.read_text(encoding="utf-8"), paths.html.read_text(encoding="utf-8")


def images_in(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_markdown_references_existing_png_files(report):
    paths, markdown, _ = report
    referenced = images_in(markdown)
    assert len(referenced) == 6  # 3 frontiers, frozen blocks, memory, training curves
    for name in referenced:
        assert name.startswith("report_files/")
        assert (paths.markdown.parent / name).read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in paths.figures) == sorted(Path(n).name for n in referenced)


def test_html_is_self_contained(report):
    paths, _, html = report
    assert html.count('src="data:image/png;base64,') == len(paths.figures)
    assert 'src="report_files' not in html
    assert "<link" not in html and "<script" not in html
    assert not re.search(r'(src|href)="https?:', html)
    assert "<style>" in html and "<table>" in html


def test_report_answers_the_three_questions_with_numbers(report):
    _, markdown, _ = report
    answers = markdown.split("## The answers")[1].split("## Results per strategy")[0]
    assert ("- **bottom(k=4)**: \u22120.5 F1 points (\u22120.6 %), 1.5\u00d7 faster training"
            in answers)
    assert "Recommended: bottom(k=4)." in answers
    assert "Runners-up: bottom(k=2)" in answers
    assert re.search(r"\n\nYes \(F1 within 1 F1 point of full fine-tuning and training time cut "
                     r"by at least 30 %\): bottom\(k=4\) cuts training time by 34 %", answers)
    # the answers come first, as a decision maker reads top-down
    assert markdown.index("## The answers") < markdown.index("## Results per strategy")


def test_main_table_holds_every_measure(report):
    _, markdown, _ = report
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| Strategy | Trainable"))
    for column in ["Trainable params", "Test F1 (%)", "Test accuracy (%)", "ΔF1 vs full",
                   "Training time", "Speed-up", "Train samples/s", "Peak memory",
                   "Training FLOPs", "Cost (USD)"]:
        assert column in header
    k4 = next(line for line in lines if line.startswith("| bottom(k=4) | 57.3 M"))
    for cell in ["85.0 ± 0.2 (n=3)", "\u22120.5 ± 0.3 pts (\u22120.6 %)", "121 s", "1.52×",
                 "3,650 MB (30 % less)", "493 TFLOP (28 % fewer)"]:
        assert cell in k4


def test_setup_measurement_and_caveats_come_from_the_records(report):
    _, markdown, _ = report
    assert "examples per split: train 8,530, validation 1,066, test 1,066" in markdown
    assert "3 epoch(s), batch size 16" in markdown
    assert "NVIDIA T4 (cuda), precision fp32, dropout masks drawn by torch" in markdown
    assert "measured wall time, training steps only" in markdown
    assert re.search(r"the builds took head \d+ s in total", markdown)  # cache build stated
    cached = [r for r in build.study_records() if r["status"] == "completed"
              and r["efficiency"]["cache_build_seconds"] > 0]
    completed = [r for r in build.study_records() if r["status"] == "completed"]
    assert 0 < len(cached) < len(completed)
    assert (f"{len(cached)} of the {len(completed)} runs read their frozen layers' outputs from "
            "the frozen-prefix cache") in markdown
    assert "| full | 2e-05, 5e-05, 0.0001 (no completed run) | s1: 2e-05, s2: 2e-05, s3: 2e-05 |" \
        in markdown
    caveats = markdown.split("## Caveats")[1]
    for topic in ["Fixed recipe", "Hardware", "Seeds", "Dataset size", "Scope"]:
        assert f"**{topic}**" in caveats


def test_failed_and_cancelled_runs_are_listed_not_counted(report):
    _, markdown, _ = report
    failed = markdown.split("## Runs that did not complete")[1]
    stopped = [r for r in build.study_records() if r["status"] != "completed"]
    for record in stopped:
        assert f"| {record['id']} | {record['status']} |" in failed
    assert "TrainingError: Loss became NaN at step 212. (step 212)" in failed
    # their partial F1 of 99.0 appears nowhere among the numbers
    assert "99.0" not in markdown.split("## Runs that did not complete")[0]


def test_every_figure_is_a_png(report):
    paths, _, _ = report
    for figure in paths.figures:
        assert figure.read_bytes()[:8] == PNG_MAGIC


def test_output_dir_and_thresholds_are_honoured(results, tmp_path):
    paths = write_report(results, output_dir=tmp_path / "out", tolerance_points=0.3)
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert paths.markdown.parent == tmp_path / "out"
    assert (tmp_path / "out" / "report_files" / "pareto-time.png").is_file()
    assert "Recommended: bottom(k=2)." in markdown
    assert "\n\nNo, not with the thresholds used" in markdown


def test_summary_table_for_the_cli(results):
    table = summary_table(results).set_index("Strategy")
    assert list(table.index) == ["full", "bottom(k=2)", "bottom(k=4)", "lora", "bitfit", "head"]
    assert table.loc["full", "Test F1 (%)"] == "85.5 ± 0.5 (n=3)"
    assert table.loc["full", "ΔF1 vs full"] == "baseline"
    assert table.loc["bottom(k=4)", "Speed-up"] == "1.52×"
    assert table.loc["head", "Trainable params"] == "1,538 (0.0014 %)"
    assert summary_table(build.study_records()).equals(summary_table(results))


def test_compare_table_puts_folders_side_by_side(results, tmp_path):
    other = build.write_records(tmp_path / "distil", [
        build.make_record("full", model="distilbert-base-uncased", test_f1=0.84, seconds=90.0),
        build.make_record("head", model="distilbert-base-uncased", test_f1=0.70, seconds=30.0),
        build.make_record("top(k=2)", model="distilbert-base-uncased", test_f1=0.83,
                          seconds=60.0),
    ])
    table = compare_table([results, other]).set_index("Strategy")
    left, right = f"{results.name} (bert-base-cased)", "distil (distilbert-base-uncased)"
    assert list(table.columns) == [f"{name}: {what}" for name in (left, right)
                                   for what in ("test F1 (%)", "training time", "speed-up")]
    assert table.loc["head", f"{right}: test F1 (%)"] == "70.0 (n=1)"
    assert table.loc["head", f"{right}: speed-up"] == "3.00×"
    assert table.loc["top(k=2)", f"{left}: test F1 (%)"] == "–"
    assert table.loc["bottom(k=4)", f"{left}: training time"] == "121 s"


def test_a_folder_without_records_is_a_clear_error(tmp_path):
    with pytest.raises(FreezebenchError, match="No run records in"):
        write_report(tmp_path)


def test_a_folder_without_completed_runs_is_a_clear_error(tmp_path):
    build.write_records(tmp_path, [build.make_record(
        "full", status="failed", error={"type": "TrainingError", "message": "out of memory"})])
    with pytest.raises(FreezebenchError, match="None of the 1 runs .* out of memory"):
        write_report(tmp_path)


def test_without_full_the_report_gives_absolute_numbers(tmp_path):
    build.write_records(tmp_path, [
        build.make_record("head", test_f1=0.70, seconds=30.0, loss=(0.6,)),
        build.make_record("lora", test_f1=0.84, seconds=60.0, loss=(0.4,)),
    ])
    paths = write_report(tmp_path)
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "There are no completed `full` runs" in markdown
    assert "ΔF1 vs full" not in markdown and "Speed-up" not in markdown
    assert "Cannot be answered without completed 'full' runs" in markdown
    # no bottom(k) strategy and a single epoch: those two figures are left out
    names = {p.name for p in paths.figures}
    assert "frozen-blocks.png" not in names and "training-curves.png" not in names
    assert len(images_in(markdown)) == len(paths.figures) == 4


def test_unreadable_files_and_odd_labels_are_shown_safely(tmp_path):
    label = "<script>x</script>|$a$"
    build.write_records(tmp_path, [build.make_record("full"), build.make_record(label)])
    (tmp_path / "runs" / "broken.json").write_text("{not json", encoding="utf-8")
    paths = write_report(tmp_path)
    markdown = paths.markdown.read_text(encoding="utf-8")
    html = paths.html.read_text(encoding="utf-8")
    assert "`broken.json`: not valid JSON" in markdown
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\\|" in markdown  # a pipe in a label does not break the table


def test_record_with_missing_sections_still_reports(tmp_path):
    sparse = build.make_record("full")
    for key in ("history", "env"):
        sparse.pop(key)
    sparse["efficiency"] = {"train_seconds": 50.0}
    build.write_records(tmp_path, [sparse])
    markdown = write_report(tmp_path).markdown.read_text(encoding="utf-8")
    assert "not recorded" in markdown
    assert json.loads((tmp_path / "runs" / f"{sparse['id']}.json").read_text())["id"]


def test_two_datasets_get_a_section_each(tmp_path):
    build.write_records(tmp_path, [
        build.make_record("full", test_f1=0.86, seconds=100.0),
        build.make_record("head", test_f1=0.70, seconds=30.0),
        build.make_record("full", dataset="imdb", test_f1=0.93, seconds=300.0),
        build.make_record("head", dataset="imdb", test_f1=0.80, seconds=90.0),
    ])
    paths = write_report(tmp_path)
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert markdown.startswith("# Layer-freezing study\n")
    assert "## bert-base-cased on imdb" in markdown
    assert "## bert-base-cased on rotten_tomatoes" in markdown
    assert markdown.count("### The answers") == 2
    names = {p.name for p in paths.figures}
    assert {"bert-base-cased-imdb-pareto-time.png",
            "bert-base-cased-rotten_tomatoes-pareto-time.png"} <= names
    table = summary_table(tmp_path)
    assert list(table.columns[:3]) == ["Model", "Dataset", "Strategy"]
    assert len(table) == 4


def test_quality_definition_and_mixed_recipes_are_stated(tmp_path):
    build.write_records(tmp_path, [
        build.make_record("full", seed=1, loss=(0.4, 0.3, 0.2)),
        build.make_record("full", seed=2, loss=(0.4,)),
    ])
    markdown = write_report(tmp_path).markdown.read_text(encoding="utf-8")
    assert "F1 of the positive class ('pos')" in markdown
    assert "**Mixed settings**: the runs differ in num_train_epochs (3, 1)" in markdown


@pytest.mark.parametrize(("value", "family", "cell"), [
    (59.5, "time", "59.5 s"), (600.0, "time", "10 min"), (9000.0, "time", "2.5 h"),
    (2048.4, "memory", "2,048 MB"), (12800.0, "memory", "12.5 GB"),
    (4.2e9, "flops", "4.2 GFLOP"), (float("nan"), "time", "–"), (None, "memory", "–"),
])
def test_table_cells_switch_units_where_the_fixture_does_not_reach(value, family, cell):
    assert quantity_text(value, family) == cell


def test_savings_and_losses_use_each_measures_words():
    assert saving_words(30.0, "memory") == "30 % less"
    assert saving_words(-12.0, "flops") == "12 % more"
    assert saving_words(-25.0, "cost") == "25 % higher"
    assert saving_words(99.9986, "trainable") == "99.999 % fewer"
