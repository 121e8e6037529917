"""The written report: its files, figures, tables, answers and errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from freezebench.errors import FreezebenchError
from freezebench.report.document import compare_table, summary_table, write_report
from freezebench.report.formatting import quantity_text, saving_words

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
    assert "Decision metric: test macro-F1." in answers
    assert ("- **bottom(k=4)**: \u22120.5 points, 95 % CI [\u22121.2, +0.2] over 3 paired seeds "
            "(acceptable not established; about 4 seeds would establish it if its mean and "
            "spread stayed as observed), 1.5\u00d7 faster"
            in answers.replace("\\[", "[").replace("\\]", "]"))
    assert "Recommended: bottom(k=2)." in answers  # the only established one: CI [-0.6, +0.4]
    assert "bootstrap resamples of the seeds" in answers
    assert re.search(r"\n\nNot established \(macro-F1 established within 1 point of full "
                     r"fine-tuning by its 95 % interval, and training time \(standalone\) cut "
                     r"by at least 30 %\)\. bottom\(k=4\) cuts training time by 34 %", answers)
    # the answers come first, as a decision maker reads top-down
    assert markdown.index("## The answers") < markdown.index("## Results per strategy")


def test_main_table_holds_every_measure(report):
    _, markdown, _ = report
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| Strategy | Trainable"))
    for column in ["Trainable params", "Test macro-F1 (%)", "Test accuracy (%)", "Test F1 (%)",
                   "Δmacro-F1 vs full, 95 % CI", "Training time (standalone)",
                   "Speed-up standalone", "Speed-up in study", "Peak memory",
                   "Training FLOPs (standalone)", "Cost (USD, standalone)", "Collapsed runs"]:
        assert column in header
    k4 = next(line for line in lines if line.startswith("| bottom(k=4) | 57.3 M"))
    for cell in ["85.2 ± 0.2 (n=3)", "\u22120.5 \\[\u22121.2, +0.2\\] pts", "121 s", "1.52× ± 0.01",
                 "3,650 MB (30 % less)", "493 TFLOP (28 % fewer)", "0 of 3"]:
        assert cell in k4


def test_setup_measurement_and_caveats_come_from_the_records(report):
    _, markdown, _ = report
    assert "examples per split: train 8,530, validation 1,066, test 1,066" in markdown
    assert "3 epoch(s), batch size 16" in markdown
    assert "NVIDIA T4 (cuda), precision fp32, dropout masks drawn by torch" in markdown
    cached = [r for r in build.study_records() if r["status"] == "completed"
              and r["efficiency"]["prefix_builds"]]
    completed = [r for r in build.study_records() if r["status"] == "completed"]
    assert 0 < len(cached) < len(completed)
    assert (f"{len(cached)} of the {len(completed)} runs trained on cached frozen-layer "
            "states") in markdown
    assert "| full | 2e-05, 5e-05 | 2 | 2e-05 | 1, 2, 3 |" in markdown
    for topic in ["Decision metric", "Learning rate", "Uncertainty", "Cost view", "Memory",
                  "FLOPs", "Frozen layers", "Batches"]:
        assert f"**{topic}**" in markdown.split("## How it was measured")[1]
    caveats = markdown.split("## Caveats")[1]
    for topic in ["Fixed recipe", "Hardware", "Seeds", "Learning-rate grid", "Scope"]:
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
    paths = write_report(results, output_dir=tmp_path / "out", tolerance_points=2.0,
                         metric="accuracy", cost_view="study")
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert paths.markdown.parent == tmp_path / "out"
    assert (tmp_path / "out" / "report_files" / "pareto-time.png").is_file()
    assert "Decision metric: test accuracy." in markdown
    assert "Recommended: bottom(k=4)." in markdown  # CI [-1.2, +0.2] now within 2 points
    summary = json.loads(paths.summary.read_text())
    assert (summary["metric"], summary["cost_view"], summary["tolerance_points"]) == (
        "accuracy", "study", 2.0)


def test_summary_table_for_the_cli(report):
    table = summary_table(report[0].findings).set_index("Strategy")
    assert list(table.index) == ["full", "bottom(k=2)", "bottom(k=4)", "lora", "bitfit", "head"]
    assert table.loc["full", "Test macro-F1 (%)"] == "85.7 ± 0.5 (n=3)"
    assert table.loc["full", "Δmacro-F1 vs full, 95 % CI"] == "baseline"
    assert table.loc["bottom(k=4)", "Speed-up standalone"] == "1.52× ± 0.01"
    assert table.loc["head", "Speed-up standalone"] == "2.79× ± 0.07"  # its cache build counted


def test_summary_json_holds_the_numbers_the_answers_come_from(report):
    summary = json.loads(report[0].summary.read_text())
    assert (summary["metric"], summary["tolerance_points"], summary["substantial_saving"]) == (
        "f1_macro", 1.0, 0.3)
    assert summary["baselines"]["f1"]["per_class"]["pos"] == pytest.approx(2 / 3)
    assert summary["baselines"]["accuracy"]["majority"] == 0.5
    by_label = {s["label"]: s for s in summary["strategies"]}
    k4 = by_label["bottom(k=4)"]
    assert k4["n_seeds"] == 3 and k4["learning_rate"] == 2e-5
    assert k4["test"]["mean"] == pytest.approx((0.848 + 0.850 + 0.852) / 3 + 0.002)
    low, high = k4["delta_vs_full"]["ci95"]
    assert low < k4["delta_vs_full"]["mean"] < high
    assert k4["delta_vs_full"]["mean"] == pytest.approx(-0.005, abs=1e-9)  # 0-1 scale: -0.5 pts
    assert k4["speedup"]["standalone"] == pytest.approx(1.52, abs=0.01)
    assert set(k4["train_flops"]) == {"standalone", "study"}
    assert k4["peak_memory_bytes"] == pytest.approx(3650 * 2**20, rel=1e-6)
    assert k4["collapsed_runs"] == 0
    assert summary["recommendation"]["label"] == "bottom(k=2)"
    assert 0 < summary["recommendation"]["stability"] <= 1
    budgets = summary["budgets"]
    assert [b["fraction"] for b in budgets] == [0.1, 0.25, 0.5, 1.0]
    assert budgets[-1]["seconds"] == pytest.approx(184.0)  # full's mean standalone time
    for budget in budgets:  # every fixture strategy evaluates at its end within full's time
        assert budget["label"] in by_label
        low, high = budget["test"]["ci95"]
        assert low <= budget["test"]["mean"] <= high


def test_the_report_shows_quality_at_equal_training_time(report):
    markdown = report[0].markdown.read_text(encoding="utf-8")
    assert "Quality at equal training time" in markdown and "| 10 % (18 s) |" in markdown
    assert "At equal training time" in markdown
    assert "time-to-quality.png" in {p.name for p in report[0].figures}


def test_compare_table_puts_folders_side_by_side(results, tmp_path):
    other = build.write_records(tmp_path / "distil", [
        build.make_record("full", model="distilbert-base-uncased", test_f1=0.84, seconds=90.0),
        build.make_record("head", model="distilbert-base-uncased", test_f1=0.70, seconds=30.0),
        build.make_record("top(k=2)", model="distilbert-base-uncased", test_f1=0.83,
                          seconds=60.0),
    ])
    table = compare_table([results, other]).set_index("Strategy")
    left, right = f"{results.name} (bert-base-cased)", "distil (distilbert-base-uncased)"
    what = ("test macro-F1 (%)", "training time (standalone)", "speed-up (standalone)")
    assert list(table.columns) == [f"{name}: {w}" for name in (left, right) for w in what]
    assert table.loc["head", f"{right}: test macro-F1 (%)"] == "70.2 (n=1)"
    assert table.loc["head", f"{right}: speed-up (standalone)"] == "3.00×"
    assert table.loc["top(k=2)", f"{left}: test macro-F1 (%)"] == "–"
    assert table.loc["bottom(k=4)", f"{left}: training time (standalone)"] == "121 s"


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
    assert "vs full" not in markdown and "Speed-up standalone" not in markdown
    assert "Cannot be answered without completed 'full' runs" in markdown
    # no bottom(k) strategy: that figure is left out; a single epoch still has a curve from
    # its evaluation at step 0 to its end
    names = {p.name for p in paths.figures}
    assert "frozen-blocks.png" not in names and "time-to-quality.png" in names
    assert len(images_in(markdown)) == len(paths.figures) == 5
    assert "Quality at equal training time" not in markdown  # no full fine-tuning to budget


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
    sparse = build.make_record("full")  # blocks a record may lack (null, or no history)
    for key in ("history", "env", "params"):
        sparse.pop(key)
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
    table = summary_table(paths.findings)
    assert list(table.columns[:3]) == ["Model", "Dataset", "Strategy"]
    assert len(table) == 4


def test_quality_definition_and_mixed_recipes_are_stated(tmp_path):
    shorter = build.make_record("full", seed=2)
    shorter["config"]["max_length"] = 64
    build.write_records(tmp_path / "mixed", [build.make_record("full", seed=1), shorter])
    markdown = write_report(tmp_path / "mixed").markdown.read_text(encoding="utf-8")
    assert "Decision metric: test macro-F1" in markdown
    assert "**Mixed settings**: the runs differ in max_length (128, 64)" in markdown
    # a strategy given its own recipe is a strategy of its own, and the setup says so
    build.write_records(tmp_path / "recipes", [
        build.make_record("full", seed=1, loss=(0.4,)),
        build.make_record("head", seed=1, loss=(0.6, 0.5, 0.4)),
        build.make_record("head", seed=2, loss=(0.6,))])  # another id
    markdown = write_report(tmp_path / "recipes").markdown.read_text(encoding="utf-8")
    assert "Mixed settings" not in markdown
    assert ("**Recipe by strategy** (where strategies differ): full: epochs 1; "
            "head(epochs=1): epochs 1; head(epochs=3): epochs 3") in markdown


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


def test_adaptive_runs_get_a_freezing_timeline(tmp_path):
    records = [build.make_record("full", seed=seed) for seed in (1, 2)]
    for seed, steps in ((1, (300, 700)), (2, (500, 900))):
        record = build.make_record("autofreeze", seed=seed, seconds=70.0)
        record["freezing"] = [{"unit": "embeddings", "step": steps[0], "seconds": 20.0},
                              {"unit": "blocks[0]", "step": steps[0], "seconds": 20.0},
                              {"unit": "blocks[1]", "step": steps[1], "seconds": 40.0}]
        records.append(record)
    build.write_records(tmp_path, records)
    paths = write_report(tmp_path)
    names = {p.name for p in paths.figures}
    assert "freezing-timeline.png" in names
    assert "freezing-timeline.png" in paths.markdown.read_text(encoding="utf-8")
    assert (tmp_path / "report_files" / "freezing-timeline.png").read_bytes()[:8] == PNG_MAGIC
    # without adaptive runs there is no timeline
    static = tmp_path / "static"
    build.write_records(static, records[:2])
    assert "freezing-timeline.png" not in {p.name for p in write_report(static).figures}
