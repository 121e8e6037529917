"""What a run measures beyond time: collapse, trivial baselines, tensor memory, cache builds."""

from __future__ import annotations

import numpy as np
import pytest

from freezebench.config import RunConfig
from freezebench.measure.quality import chance_scores, classification_metrics, trivial_scores
from freezebench.pipeline import run


def _logits(predicted: list[int], classes: int = 2) -> np.ndarray:
    return np.eye(classes)[predicted]


def test_one_class_for_everything_is_collapsed_and_scores_like_the_trivial_predictor():
    labels = np.array([0, 1] * 50)
    always_positive = classification_metrics(_logits([1] * 100), labels, ["neg", "pos"], 0.7)
    assert always_positive.collapsed and always_positive.predicted == {"neg": 0, "pos": 100}
    assert always_positive.f1 == pytest.approx(2 / 3)  # what rewards collapse
    assert always_positive.f1_macro == pytest.approx(1 / 3)  # what does not
    assert trivial_scores({"neg": 50, "pos": 50})["pos"]["f1"] == pytest.approx(2 / 3)
    mostly = classification_metrics(_logits([1] * 97 + [0] * 3), labels, ["neg", "pos"], 0.7)
    assert mostly.collapsed  # 97 % in one class where the labels hold 50 %
    fair = classification_metrics(_logits([0, 1] * 45 + [1] * 10), labels, ["neg", "pos"], 0.5)
    assert not fair.collapsed
    skewed = np.array([0] * 97 + [1] * 3)  # labels 97 % one class: predicting it is no collapse
    assert not classification_metrics(_logits([0] * 96 + [1] * 4), skewed, ["a", "b"],
                                       0.2).collapsed


def test_chance_level_by_hand():
    assert chance_scores({"a": 50, "b": 50}) == pytest.approx(
        {"accuracy": 0.5, "f1": 0.5, "f1_macro": 0.5})
    three = chance_scores({"a": 20, "b": 30, "c": 50})  # F1_c = 2 p_c (1/3) / (p_c + 1/3)
    expected = np.mean([2 * p / 3 / (p + 1 / 3) for p in (0.2, 0.3, 0.5)])
    assert three["f1_macro"] == pytest.approx(expected) and three["accuracy"] == 1 / 3


def _config(model, dataset, out, **overrides) -> RunConfig:
    values = dict(model=model, dataset=str(dataset), output_dir=str(out), learning_rate=5e-3,
                  per_device_train_batch_size=8, num_train_epochs=1, disable_tqdm=True,
                  precision="fp32", use_cache=True)
    return RunConfig(**(values | overrides))


def test_peak_memory_counts_what_the_run_holds_and_not_what_ran_before(
        tiny_model_dirs, sentiment_folder, tmp_path):
    bert = tiny_model_dirs["bert"]
    full = run(_config(bert, sentiment_folder, tmp_path / "a", strategy="full"))
    memory = full.efficiency.memory
    weights = full.params.total * 4
    assert memory.weights_bytes == weights and memory.gradients_bytes == weights
    assert memory.optimizer_state_bytes == full.params.optimizer_state_bytes > 0
    assert memory.activations_bytes > 0 and memory.cached_features_bytes == 0
    assert memory.total_bytes == sum(
        getattr(memory, f"{kind}_bytes")
        for kind in ("weights", "gradients", "optimizer_state", "activations", "cached_features"))
    head = run(_config(bert, sentiment_folder, tmp_path / "b", strategy="head"))
    assert head.efficiency.memory.total_bytes > weights  # the model is held: never 0 MB
    assert head.efficiency.memory.cached_features_bytes > 0
    # after a full run in this process, the same head run holds exactly the same
    again = run(_config(bert, sentiment_folder, tmp_path / "c", strategy="head"))
    assert again.efficiency.memory == head.efficiency.memory
    seeds = [run(_config(bert, sentiment_folder, tmp_path / f"s{seed}", strategy="full",
                         seed=seed)).efficiency.memory.total_bytes for seed in (1, 2)]
    assert abs(seeds[0] - seeds[1]) <= 0.1 * max(seeds)


def test_a_cached_run_records_the_builds_its_states_came_from(
        tiny_model_dirs, sentiment_folder, tmp_path):
    bert, cache = tiny_model_dirs["bert"], str(tmp_path / "cache")
    shallow = run(_config(bert, sentiment_folder, tmp_path / "a", strategy="bottom",
                          strategy_params={"k": 1}, cache_dir=cache))
    deep = run(_config(bert, sentiment_folder, tmp_path / "b", strategy="bottom",
                       strategy_params={"k": 3}, cache_dir=cache))
    [first] = shallow.efficiency.prefix_builds
    assert (first.from_boundary, first.to_boundary, first.built_by_this_run) == (0, 2, True)
    base, top = deep.efficiency.prefix_builds
    assert base == first.model_copy(update={"built_by_this_run": False})
    assert (top.from_boundary, top.to_boundary, top.built_by_this_run) == (2, 4, True)
    for record in (shallow, deep):
        eff = record.efficiency
        assert eff.standalone_train_seconds == pytest.approx(
            eff.train_seconds + sum(b.seconds for b in eff.prefix_builds))
        assert eff.standalone_train_flops == pytest.approx(
            eff.train_flops + sum(b.flops for b in eff.prefix_builds))
    # the standalone FLOPs of the deep run are those of its whole prefix, however it was built
    alone = run(_config(bert, sentiment_folder, tmp_path / "c", strategy="bottom",
                        strategy_params={"k": 3}, cache_dir=str(tmp_path / "other")))
    assert alone.efficiency.standalone_train_flops == pytest.approx(
        deep.efficiency.standalone_train_flops)
    assert alone.efficiency.prefix_builds[0].flops == pytest.approx(first.flops + top.flops)


def test_records_hold_the_class_counts_and_predictions(tiny_model_dirs, sentiment_folder,
                                                       tmp_path):
    record = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path, strategy="head"))
    counts = record.data.label_counts
    assert {split: sum(c.values()) for split, c in counts.items()} == record.data.sizes
    for split in ("validation", "test"):
        metrics = getattr(record.metrics, split)
        assert sum(metrics.predicted.values()) == metrics.samples
        assert isinstance(metrics.collapsed, bool)
