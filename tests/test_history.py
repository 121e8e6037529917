"""Step-level history, the recipe's schedule settings and the reported checkpoint."""

from __future__ import annotations

import math

import pytest

from freezebench.config import RunConfig
from freezebench.engine.training import Checkpoint, Recipe
from freezebench.pipeline import run
from freezebench.record import HistoryEntry, SplitMetrics


def _config(model_dir, dataset, tmp_path, **overrides) -> RunConfig:
    values = dict(model=model_dir, dataset=str(dataset), output_dir=str(tmp_path / "out"),
                  learning_rate=5e-3, per_device_train_batch_size=4, per_device_eval_batch_size=6,
                  num_train_epochs=1, disable_tqdm=True, precision="fp32")
    values.update(overrides)
    return RunConfig(**values)


@pytest.mark.parametrize("strategy,params", [("full", {}), ("bottom", {"k": 2})])
def test_a_one_epoch_run_logs_cumulative_points_that_end_at_the_totals(
        tiny_model_dirs, sentiment_folder, tmp_path, strategy, params):
    record = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path,
                         strategy=strategy, strategy_params=params))
    history, eff = record.history, record.efficiency
    assert len(history) >= 10  # 48 examples, batches of 4: 12 steps
    assert history[0].step == 0 and history[0].seconds < 0.01 and history[0].flops == 0
    assert history[0].train_loss is None and history[0].validation and history[0].test
    for field in ("step", "examples", "seconds", "flops", "standalone_seconds",
                  "standalone_flops", "epoch"):
        values = [getattr(point, field) for point in history]
        assert values == sorted(values), f"{field} is cumulative"
    last = history[-1]
    assert last.step == eff.steps and last.examples == 48 and last.epoch == 1.0
    assert last.seconds == eff.train_seconds
    assert last.flops == pytest.approx(eff.train_flops, rel=1e-12)
    assert last.standalone_seconds == pytest.approx(eff.standalone_train_seconds, rel=1e-12)
    assert last.standalone_flops == pytest.approx(eff.standalone_train_flops, rel=1e-12)
    if strategy == "bottom":  # the cache's build is paid before step 0, standalone
        assert history[0].standalone_flops == pytest.approx(eff.standalone_train_flops
                                                            - eff.train_flops)
        assert history[0].standalone_flops > 0
    evaluated = [point for point in history if point.validation is not None]
    assert evaluated[0].step == 0 and evaluated[-1].step == last.step and len(evaluated) >= 5
    assert all(point.test is not None for point in evaluated)
    assert record.metrics.selected_step == last.step
    assert record.metrics.test == last.test and record.metrics.validation == last.validation
    assert all(math.isfinite(p.train_loss) for p in history[1:])


def test_max_steps_accumulation_and_schedule_follow_the_trainer_meanings(
        tiny_model_dirs, sentiment_folder, tmp_path):
    record = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path, strategy="head",
                         max_steps=5, gradient_accumulation_steps=2, num_train_epochs=3,
                         lr_scheduler_type="constant", logging_steps=1, eval_steps=2))
    history = record.history
    assert record.efficiency.steps == 5
    assert history[-1].examples == 5 * 2 * 4  # steps x accumulated batches x batch size
    assert history[-1].epoch == pytest.approx(40 / 48)
    assert [p.step for p in history] == [0, 1, 2, 3, 4, 5]
    assert [p.step for p in history if p.validation] == [0, 2, 4, 5]
    assert {p.learning_rate for p in history} == {5e-3}

    linear = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path, strategy="head",
                         max_steps=4, warmup_steps=2, logging_steps=1))
    assert [p.learning_rate for p in linear.history] == pytest.approx(
        [0.0, 2.5e-3, 5e-3, 2.5e-3, 0.0])


def _point(step: int, validation: float, test: float) -> HistoryEntry:
    def metrics(f1: float) -> SplitMetrics:
        return SplitMetrics(accuracy=f1, f1=f1, f1_macro=f1, precision=f1, recall=f1,
                            loss=1 - f1, per_class_f1={}, samples=10)

    return HistoryEntry(step=step, epoch=step / 10, seconds=float(step), learning_rate=0.1,
                        trainable_params=1, validation=metrics(validation), test=metrics(test))


def _recipe(**overrides) -> Recipe:
    return Recipe.from_config(RunConfig(**overrides))


def test_the_best_checkpoint_is_chosen_on_validation_alone():
    import torch

    weight = torch.nn.Parameter(torch.zeros(2))
    best = Checkpoint(_recipe(select_checkpoint="best"), {"w": weight})
    # test is best at step 3, validation at step 2: validation decides
    for step, (val, test) in enumerate([(0.5, 0.5), (0.6, 0.7), (0.8, 0.6), (0.7, 0.95)]):
        with torch.no_grad():
            weight.fill_(step)
        best.consider(_point(step, val, test))
    chosen = best.restore()
    assert chosen.step == 2 and torch.equal(weight, torch.full((2,), 2.0))

    by_loss = Checkpoint(_recipe(select_checkpoint="best", metric_for_best_model="loss"), {})
    for step, (val, test) in enumerate([(0.5, 0.9), (0.9, 0.1), (0.7, 0.9)]):
        by_loss.consider(_point(step, val, test))
    assert by_loss.restore().step == 1  # lowest validation loss (1 - 0.9)

    last = Checkpoint(_recipe(), {"w": weight})
    for step in range(3):
        last.consider(_point(step, 0.9 - step / 10, 0.5))
    assert last.restore().step == 2


def test_a_run_selecting_the_best_checkpoint_reports_that_evaluation(
        tiny_model_dirs, sentiment_folder, tmp_path):
    record = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path, strategy="head",
                         num_train_epochs=2, select_checkpoint="best", eval_steps=2,
                         learning_rate=5e-2))
    evaluated = [p for p in record.history if p.validation is not None]
    best = max(evaluated, key=lambda p: p.validation.f1_macro)  # the first of equals wins
    assert record.metrics.selected_step == best.step
    assert record.metrics.test == best.test and record.metrics.validation == best.validation


def test_on_point_is_told_of_every_history_point_as_it_is_made(
        tiny_model_dirs, sentiment_folder, tmp_path):
    seen: list[HistoryEntry] = []
    record = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path, strategy="head"),
                 on_point=seen.append)
    # the record adds the standalone view afterwards; everything else is what was told
    assert [p.model_dump(exclude={"standalone_seconds", "standalone_flops"}) for p in seen] == [
        p.model_dump(exclude={"standalone_seconds", "standalone_flops"}) for p in record.history]
