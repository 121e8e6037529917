"""A sweep's progress in expected work: each run's estimate from its config, and the bar."""

from __future__ import annotations

import io

import pytest

from freezebench.record import run_id
from freezebench.study.config import expand, parse_study
from freezebench.study.sweep import WorkBar
from freezebench.study.work import expected_work


@pytest.fixture()
def configs(tiny_model_dirs):
    study = parse_study({"model": tiny_model_dirs["bert"], "dataset": "data", "seeds": [1, 2],
                         "recipe": {"max_train_samples": 64, "max_eval_samples": 16},
                         "strategies": ["full", {"name": "bottom", "params": {"k": 2}},
                                        "head", "lora"]})
    return expand(study)


def test_work_follows_what_trains_and_counts_a_cache_build_once(configs):
    work = dict(zip([run_id(c)[:-13] for c in configs], expected_work(configs), strict=True))
    first, second = ({k[:-3]: w for k, w in work.items() if k.endswith(s)} for s in ("-s1", "-s2"))
    assert first["full-lr2e-05"] > first["lora-lr2e-05"] > first["bottom-k2-lr2e-05"]
    assert first["bottom-k2-lr2e-05"] > first["head-lr2e-05"]
    # seed 2 reads the prefix caches seed 1 built (same model and data): no build counted
    assert second["full-lr2e-05"] == first["full-lr2e-05"]
    assert second["head-lr2e-05"] < first["head-lr2e-05"] / 2
    assert second["bottom-k2-lr2e-05"] < first["bottom-k2-lr2e-05"]


def test_more_epochs_or_examples_mean_more_work(configs):
    full = configs[0]
    longer = full.model_copy(update={"num_train_epochs": 3})
    bigger = full.model_copy(update={"max_train_samples": 128})
    one, three, double = expected_work([full, longer, bigger])
    assert 2 < three / one < 3 and 1.5 < double / one < 2  # evaluations do not grow


def test_a_run_without_an_estimate_counts_as_an_average_run(configs):
    unknown = configs[0].model_copy(update={"model": "no-org/no-such-model"})
    work = expected_work([configs[0], configs[2], unknown])
    assert work[2] == pytest.approx((work[0] + work[1]) / 2)


def test_the_bar_moves_by_work_and_says_its_time_left_is_an_estimate(configs):
    runs = configs[:4]  # full, bottom(k=2), head, lora of seed 1
    share = expected_work(runs)[0] / sum(expected_work(runs))
    out = io.StringIO()
    with WorkBar(runs, desc="sweep tiny", enabled=True, file=out) as bar:
        bar.finished(run_id(runs[0]))
    shown = out.getvalue().replace("\r", "\n").splitlines()[-1]
    assert shown.startswith(f"sweep tiny (1/4 runs): {100 * share:3.0f}% of the expected work")
    assert share > 0.3 and "left (an estimate from the runs done)" in shown
    quiet = io.StringIO()  # not a terminal: nothing shown, nothing estimated
    with WorkBar(runs, desc="sweep tiny", file=quiet) as bar:
        bar.finished(run_id(runs[0]))
    assert quiet.getvalue() == "" and set(bar.work.values()) == {1.0}


def test_mean_pooling_runs_the_last_block_whole_and_costs_more(configs):
    full = configs[0]
    first_token, mean = expected_work([full.model_copy(update={"pooling": "cls"}),
                                       full.model_copy(update={"pooling": "mean"})])
    assert mean > first_token
