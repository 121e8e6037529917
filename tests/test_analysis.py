"""Learning-rate selection, seed statistics, comparisons, Pareto frontier (``analysis``) and
the answers (``answers``).

Expected numbers are computed by hand from the fixture tables in
``tests/fixtures/records/build.py``, never by re-running the code under test.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from freezebench.analysis import export_records, pareto_front, records_to_frame, select_best_lr
from freezebench.answers import analyze, tradeoff_sentence
from freezebench.errors import FreezebenchError

from .fixtures.records import build


@pytest.fixture(scope="module")
def study():
    (only,) = analyze(build.study_records())
    return only


def row(study, label: str):
    return study.summary.set_index("strategy_label").loc[label]


# --------------------------------------------------------------------------- selection

def test_learning_rate_is_chosen_on_validation_not_on_test(study):
    chosen = study.selected.groupby("strategy_label")["learning_rate"].agg(set)
    # In every strategy the other rate has the better *test* F1 but the worse validation F1.
    assert chosen.to_dict() == {
        "full": {2e-5}, "bottom(k=2)": {2e-5}, "bottom(k=4)": {2e-5},
        "lora": {5e-4}, "bitfit": {1e-3}, "head": {5e-3},
    }
    full = row(study, "full")
    assert full["test_f1_mean"] == pytest.approx((0.850 + 0.856 + 0.859) / 3)
    picked_on_test = (0.862 + 0.865 + 0.861) / 3
    assert full["test_f1_mean"] != pytest.approx(picked_on_test)


def test_ties_on_validation_f1_go_to_lower_loss_then_smaller_rate():
    a = build.make_record("full", lr=1e-5, val_f1=0.9, test_f1=0.70)
    b = build.make_record("full", lr=3e-5, val_f1=0.9, test_f1=0.80)
    c = build.make_record("full", lr=5e-5, val_f1=0.9, test_f1=0.90)
    c["metrics"]["validation"]["loss"] = 0.1  # lowest loss wins the tie
    assert select_best_lr(records_to_frame([a, b, c]))["learning_rate"].tolist() == [5e-5]
    assert select_best_lr(records_to_frame([b, a]))["learning_rate"].tolist() == [1e-5]


def test_failed_and_cancelled_runs_take_no_part_in_the_numbers(study):
    # Their partial metrics say F1 0.99: had they counted, they would have been chosen.
    assert row(study, "full")["n"] == 3
    assert row(study, "lora")["n"] == 3
    assert study.summary["test_f1_mean"].max() == pytest.approx(0.855)
    stopped = {r["id"] for r in build.study_records() if r["status"] != "completed"}
    assert len(stopped) == 2
    assert not stopped & set(study.selected["id"])


# --------------------------------------------------------------------------- statistics

def test_mean_and_std_over_seeds_match_hand_computation(study):
    full, k4 = row(study, "full"), row(study, "bottom(k=4)")
    # full at lr 2e-5: test F1 0.850, 0.856, 0.859 -> mean 0.855, deviations -5, +1, +4 (1e-3)
    assert full["test_f1_mean"] == pytest.approx(0.855)
    assert full["test_f1_std"] == pytest.approx(math.sqrt((0.005**2 + 0.001**2 + 0.004**2) / 2))
    # bottom(k=4): 0.848, 0.850, 0.852 -> mean 0.850, std sqrt((0.002^2 + 0 + 0.002^2) / 2)
    assert k4["test_f1_mean"] == pytest.approx(0.850)
    assert k4["test_f1_std"] == pytest.approx(0.002)
    # training time 184, 186, 182 s -> mean 184, std 2
    assert full["train_seconds_mean"] == pytest.approx(184.0)
    assert full["train_seconds_std"] == pytest.approx(2.0)
    assert full["n"] == 3 and full["seeds"] == [1, 2, 3]
    assert full["chosen_lr"] == [2e-5, 2e-5, 2e-5]


def test_one_seed_gives_n_1_and_no_std():
    (one,) = analyze([build.make_record("full", test_f1=0.8), build.make_record("head")])
    full = one.summary.set_index("strategy_label").loc["full"]
    assert full["n"] == 1
    assert math.isnan(full["test_f1_std"])


def test_speedup_and_savings_against_full_match_hand_computation(study):
    k4, head = row(study, "bottom(k=4)"), row(study, "head")
    assert k4["delta_f1_points"] == pytest.approx(-0.5)
    assert k4["delta_f1_percent"] == pytest.approx(-0.5 / 85.5 * 100)
    assert k4["delta_f1_points_se"] == pytest.approx(100 * math.sqrt(0.002**2 / 3 + 21e-6 / 3))
    assert k4["speedup"] == pytest.approx(184 / 121)
    assert k4["time_saving"] == pytest.approx(1 - 121 / 184)
    assert k4["memory_saving_percent"] == pytest.approx((1 - 3650 / 5210) * 100)
    assert k4["flops_saving_percent"] == pytest.approx((1 - 4.93 / 6.84) * 100)
    assert k4["trainable_saving_percent"] == pytest.approx((1 - 57_295_106 / 108_311_810) * 100)
    assert k4["cost_saving_percent"] == pytest.approx((1 - 121 / 184) * 100)
    # head-only builds a 20 s cache: it is out of training time but inside cost
    assert head["speedup"] == pytest.approx(184 / 46)
    assert head["cost_saving_percent"] == pytest.approx((1 - (46 + 20) / 184) * 100)
    assert head["cache_build_seconds_mean"] == pytest.approx(20.0)


# --------------------------------------------------------------------------- frontier

def test_pareto_front_on_a_crafted_set():
    frame = pd.DataFrame({
        "strategy_label": ["a", "b", "c", "d", "f", "g"],
        "q": [0.90, 0.88, 0.85, 0.70, 0.90, None],
        "cost": [100.0, 50.0, 60.0, 10.0, 120.0, 1.0],
    })
    # c loses to b on both; f has a's quality at a higher cost; g has no quality.
    assert pareto_front(frame, "q", "cost") == ["d", "b", "a"]


def test_study_frontier_and_fixture_ranking(study):
    assert study.answers.recommendation.pareto == [
        "head", "bitfit", "bottom(k=4)", "bottom(k=2)", "full"]


# --------------------------------------------------------------------------- the answers

def crafted(*specs, with_full=True):
    """Records with one seed each: (label, test F1, seconds); validation F1 = test F1."""
    records = [build.make_record(label, val_f1=f1, test_f1=f1, seconds=seconds)
               for label, f1, seconds in specs]
    if with_full:
        records.append(build.make_record("full", val_f1=0.900, test_f1=0.900, seconds=100.0))
    return records


CRAFTED = [("a", 0.895, 60.0), ("b", 0.893, 50.0), ("c", 0.850, 20.0), ("d", 0.892, 70.0)]


def answers(records, **thresholds):
    (only,) = analyze(records, **thresholds)
    return only.answers


def test_recommends_the_largest_saving_within_tolerance():
    a = answers(crafted(*CRAFTED))
    rec = a.recommendation
    assert rec.kind == "cheaper_within_tolerance"
    assert rec.strategy == "b"  # -0.7 points, 50 % less time
    assert rec.runners_up == ["a"]  # d is within tolerance but dominated by a
    assert "Recommended: b" in rec.text


def test_tighter_tolerance_moves_the_recommendation():
    assert answers(crafted(*CRAFTED), tolerance_points=0.6).recommendation.strategy == "a"


def test_nothing_within_tolerance_recommends_full_and_names_the_alternative():
    rec = answers(crafted(*CRAFTED), tolerance_points=0.4).recommendation
    assert rec.kind == "baseline" and rec.strategy == "full"
    assert rec.alternative == "a"
    assert rec.text.startswith("No strategy that trains faster than full fine-tuning stays")
    assert "0.5 F1 points" in rec.text


def test_question_3_flips_with_the_thresholds():
    default = answers(crafted(*CRAFTED))
    assert default.acceptable_with_savings is True
    assert default.qualifying == ["b", "a", "d"]  # -0.7/50 %, -0.5/40 %, -0.8/30 %
    assert default.keep_performance_text.startswith("Yes")
    assert "b cuts training time by 50 %" in default.keep_performance_text

    stricter = answers(crafted(*CRAFTED), substantial_saving=0.60)
    assert stricter.acceptable_with_savings is False
    assert stricter.keep_performance_text.startswith("No")
    assert "save at most 50 %" in stricter.keep_performance_text
    assert "lose at least 5.0 F1 points (c)" in stricter.keep_performance_text

    assert answers(crafted(*CRAFTED), tolerance_points=0.4).acceptable_with_savings is False


def test_a_drop_of_exactly_the_tolerance_is_acceptable():
    records = crafted(("x", 0.890, 50.0))  # full 0.900: exactly 1.0 point lower
    assert answers(records).recommendation.strategy == "x"


def test_without_full_runs_the_answers_say_so():
    a = answers(crafted(*CRAFTED, with_full=False))
    assert a.recommendation.kind == "no_baseline"
    assert a.recommendation.strategy == "a"  # best F1
    assert a.acceptable_with_savings is None
    assert a.performance_vs_efficiency == {}
    assert "Cannot be answered" in a.keep_performance_text


def test_question_1_sentence_per_strategy(study):
    sentences = study.answers.performance_vs_efficiency
    assert "full" not in sentences
    assert sentences["bottom(k=4)"] == (
        "\u22120.5 F1 points (\u22120.6 %), 1.5\u00d7 faster training, 30 % less peak memory, "
        "28 % fewer training FLOPs, 47 % fewer trainable parameters, 34 % lower cost")
    assert "99.999 % fewer trainable parameters" in sentences["head"]


def test_question_1_sentence_says_slower_and_more():
    worse = SimpleNamespace(delta_f1_points=0.24, delta_f1_percent=0.3, speedup=0.8,
                            memory_saving_percent=-12.0, flops_saving_percent=float("nan"),
                            trainable_saving_percent=0.0, cost_saving_percent=-25.0)
    assert tradeoff_sentence(worse) == (
        "+0.2 F1 points (+0.3 %), 1.2\u00d7 slower training, 12 % more peak memory, "
        "0 % fewer trainable parameters, 25 % higher cost")


def test_each_model_and_dataset_is_its_own_study():
    records = crafted(("a", 0.895, 60.0)) + [
        build.make_record("full", dataset="imdb", test_f1=0.93, seconds=300.0),
        build.make_record("a", dataset="imdb", test_f1=0.92, seconds=150.0)]
    studies = analyze(records)
    assert [(s.model, s.dataset) for s in studies] == [
        ("bert-base-cased", "imdb"), ("bert-base-cased", "rotten_tomatoes")]
    imdb = studies[0].summary.set_index("strategy_label").loc["a"]
    assert imdb["speedup"] == pytest.approx(2.0)
    assert imdb["delta_f1_points"] == pytest.approx(-1.0)


def test_no_completed_runs_is_an_error():
    failed = build.make_record("full", status="failed", error={"type": "X", "message": "boom"})
    with pytest.raises(FreezebenchError, match="None of the runs completed"):
        analyze([failed])


# --------------------------------------------------------------------------- frame and export

def test_records_to_frame_flattens_the_record():
    frame = records_to_frame(build.study_records()).set_index("id")
    record = next(r for r in build.study_records() if r["strategy_label"] == "bottom(k=4)")
    flat = frame.loc[record["id"]]
    assert (flat["strategy"], flat["k"], flat["model"], flat["dataset"]) == (
        "bottom", 4, "bert-base-cased", "rotten_tomatoes")
    assert flat["train_seconds"] == record["efficiency"]["train_seconds"]
    assert flat["test_f1"] == record["metrics"]["test"]["f1"]
    assert flat["trainable"] == 57_295_106
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert failed["error_message"] == "Loss became NaN at step 212."


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips(tmp_path, suffix):
    records = build.study_records()
    path = export_records(records, tmp_path / f"runs{suffix}")
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    expected = records_to_frame(records)
    assert list(back.columns) == list(expected.columns)
    for col in ["id", "status", "strategy_label", "learning_rate", "seed", "test_f1",
                "train_seconds", "peak_memory_mb", "train_flops", "trainable", "k"]:
        pd.testing.assert_series_equal(back[col], expected[col], check_dtype=False)
    if suffix == ".parquet":
        pd.testing.assert_frame_equal(back, expected)


def test_export_refuses_unknown_formats(tmp_path):
    with pytest.raises(FreezebenchError, match=r"\.csv or \.parquet"):
        export_records(build.study_records(), tmp_path / "runs.xlsx")
