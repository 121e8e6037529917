"""Adaptive freezing (autofreeze, freezeout): the criteria, freezing for good, the growing cache."""

from __future__ import annotations

import math

import pytest
import torch

from freezebench.config import RunConfig
from freezebench.engine.adaptive import AutoFreeze, FreezeOut, blocks_to_freeze
from freezebench.engine.optimizer import build_optimizer
from freezebench.errors import StrategyError
from freezebench.model.layer_map import build_layer_map
from freezebench.pipeline import run
from freezebench.strategies import AutoFreezeRule, FreezeOutRule, plan_for

from .conftest import build_tiny_model

# gradient norms of four blocks at five checks, and the blocks frozen after each check
NORMS = [[10.0, 10.0, 10.0, 10.0],   # the first check only sets the reference
         [9.9, 9.5, 5.0, 12.0],      # changes .01 .05 .5 .2, median .125: blocks 0-1 freeze
         [0.0, 0.0, 4.0, 12.1],      # changes of 2-3: .2 .008, median .104: none
         [0.0, 0.0, 4.04, 6.0],      # changes .01 .50, median .26: block 2 freezes
         [0.0, 0.0, 0.0, 1.0]]       # one block left, and max_frozen is 3 anyway
FROZEN_AFTER = [0, 2, 2, 3, 3]


def test_the_criterion_freezes_the_lowest_blocks_below_the_percentile():
    frozen, previous = 0, NORMS[0]
    for current, expected in zip(NORMS[1:], FROZEN_AFTER[1:], strict=True):
        frozen = blocks_to_freeze(previous, current, frozen, percentile=50, max_frozen=3)
        assert frozen == expected
        previous = current
    assert blocks_to_freeze(NORMS[0], NORMS[1], 0, percentile=50, max_frozen=1) == 1
    # at the 80th percentile block 2 (change .5) is the first at or above the threshold
    assert blocks_to_freeze(NORMS[0], NORMS[1], 0, percentile=80, max_frozen=3) == 2
    assert blocks_to_freeze(NORMS[0], NORMS[1], 0, percentile=0, max_frozen=3) == 0


def test_autofreeze_sums_gradients_over_each_interval_and_checks_at_its_end():
    blocks = [[torch.nn.Parameter(torch.zeros(2))] for _ in range(4)]
    freezer = AutoFreeze(AutoFreezeRule(interval=2, percentile=50, max_frozen=3), blocks,
                         interval=2)
    step = 0
    for check, norms in enumerate(NORMS):
        for half in range(2):  # each interval's two steps add up to the check's L1 norms
            for block, norm in zip(blocks, norms, strict=True):
                block[0].grad = torch.tensor([norm / 4, -norm / 4])
            step += 1
            freezer.after_backward(step)
            if half == 0:  # no check inside an interval
                assert freezer.frozen_blocks == FROZEN_AFTER[max(check - 1, 0)]
        assert freezer.frozen_blocks == FROZEN_AFTER[check], f"check {check + 1}"
        assert freezer.frozen_units(step) == (FROZEN_AFTER[check] and FROZEN_AFTER[check] + 1)


def test_an_interval_with_non_finite_gradients_decides_nothing():
    blocks = [[torch.nn.Parameter(torch.zeros(1))] for _ in range(4)]
    freezer = AutoFreeze(AutoFreezeRule(interval=1, percentile=50, max_frozen=3), blocks,
                         interval=1)
    for step, norms in enumerate([NORMS[0], [math.inf, 1.0, 1.0, 1.0], NORMS[1]], start=1):
        for block, norm in zip(blocks, norms, strict=True):
            block[0].grad = torch.tensor([norm])
        freezer.after_backward(step)
        assert freezer.frozen_blocks == (2 if step == 3 else 0)  # NORMS[1] against NORMS[0]


def _layer_map():
    return build_layer_map(build_tiny_model("bert", vocab_size=100))


@pytest.mark.parametrize("scaling,expected", [
    ("linear", [0.5 + 0.5 * i / 5 for i in range(6)]),
    ("cubic", [(0.5 + 0.5 * i / 5) ** 3 for i in range(6)]),
])
def test_freezeout_learning_rate_follows_its_schedule(scaling, expected):
    layer_map = _layer_map()  # 4 blocks: units 0 (embeddings) .. 5 (pooler and head)
    freezeout = FreezeOut(FreezeOutRule(0.5, scaling, scale_lr=True), layer_map,
                          learning_rate=1e-3, total_steps=200, warmup_steps=0)
    assert [freezeout.t(i) for i in range(6)] == pytest.approx(expected)
    for index, t in enumerate(expected):
        end = t * 200
        assert freezeout.rate(index, 0) == pytest.approx(1e-3 / t)
        assert freezeout.rate(index, int(end / 2)) == pytest.approx(
            1e-3 / t * 0.5 * (1 + math.cos(math.pi * int(end / 2) / end)))
        assert freezeout.rate(index, math.ceil(end)) == 0.0
    # unit i is frozen from the first step at or after t_i T; the top unit never
    frozen = [freezeout.frozen_units(step) for step in range(201)]
    for index, t in enumerate(expected[:-1]):
        assert frozen.index(index + 1) == math.ceil(t * 200)
    assert max(frozen) == 5

    model = build_tiny_model("bert", vocab_size=100)
    optimizer = build_optimizer(model, set(layer_map.all_names()), layer_map,
                                learning_rate=1e-3, weight_decay=0.0,
                                device=torch.device("cpu"), by_unit=True)
    freezeout.set_rates(optimizer, 30)
    rates = {group["unit"]: group["lr"] for group in optimizer.param_groups}
    assert rates["embeddings"] == pytest.approx(freezeout.rate(0, 30))
    assert rates["blocks[3]"] == pytest.approx(freezeout.rate(4, 30))
    assert rates["pooler"] == rates["head"] == pytest.approx(freezeout.rate(5, 30))


def test_freezeout_without_scaling_starts_every_unit_at_the_learning_rate():
    freezeout = FreezeOut(FreezeOutRule(0.5, "linear", scale_lr=False), _layer_map(),
                          learning_rate=1e-3, total_steps=100, warmup_steps=10)
    assert freezeout.rate(0, 5) == pytest.approx(0.5 * 1e-3 * 0.5 * (1 + math.cos(math.pi * 0.1)))
    assert freezeout.rate(3, 10) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 10 / 80)))


def test_adaptive_parameters_are_checked():
    layer_map = _layer_map()
    assert plan_for("autofreeze", {}, layer_map).adaptive == AutoFreezeRule(None, 50.0, 3)
    with pytest.raises(StrategyError, match="max_frozen=5 is out of range"):
        plan_for("autofreeze", {"max_frozen": 5}, layer_map)
    with pytest.raises(StrategyError, match="percentile=150"):
        plan_for("autofreeze", {"percentile": 150}, layer_map)
    with pytest.raises(StrategyError, match="scaling='quartic'"):
        plan_for("freezeout", {"scaling": "quartic"}, layer_map)
    with pytest.raises(StrategyError, match="t0=0"):
        plan_for("freezeout", {"t0": 0}, layer_map)


def _config(model_dir, dataset, tmp_path, **overrides) -> RunConfig:
    values = dict(model=model_dir, dataset=str(dataset), output_dir=str(tmp_path / "out"),
                  learning_rate=5e-3, per_device_train_batch_size=8, per_device_eval_batch_size=5,
                  num_train_epochs=2, disable_tqdm=True, precision="fp32", logging_steps=1)
    values.update(overrides)
    return RunConfig(**values)


ADAPTIVE = [("autofreeze", {"interval": 2}),
            ("freezeout", {"t0": 0.3, "scaling": "linear"})]


@pytest.mark.parametrize("strategy,params", ADAPTIVE)
def test_a_frozen_block_never_changes_and_holds_no_optimizer_state(
        tiny_model_dirs, sentiment_folder, tmp_path, strategy, params, monkeypatch):
    from freezebench.engine import training

    snapshots, loops = {}, []
    original = training._Loop.record

    def record(loop, inputs, evaluate):  # the weights at every history point
        loops.append(loop)
        snapshots[loop.step] = {n: p.detach().clone() for n, p in loop.model.named_parameters()}
        original(loop, inputs, evaluate)

    monkeypatch.setattr(training._Loop, "record", record)
    result = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path,
                         strategy=strategy, strategy_params=params))
    assert result.freezing, "the run froze something"
    loop = loops[-1]
    layer_map = loop.layer_map
    owned = {id(p) for group in loop.optimizer.param_groups for p in group["params"]}
    names = dict(layer_map.units())
    for event in result.freezing:
        frozen = [p for n, p in loop.model.named_parameters() if n in names[event.unit]]
        assert all(not p.requires_grad for p in frozen)
        assert all(id(p) not in owned and p not in loop.optimizer.state for p in frozen)
        for step, weights in snapshots.items():
            if step >= event.step:
                assert all(torch.equal(weights[n], snapshots[event.step][n])
                           for n in names[event.unit]), f"{event.unit} moved after step {step}"
    units = [event.unit for event in result.freezing]
    assert units == [unit for unit, _ in layer_map.units()[:len(units)]], "bottom up"
    assert "head" not in units and "pooler" not in units
    steps = [event.step for event in result.freezing]
    assert steps == sorted(steps) and all(e.seconds >= 0 for e in result.freezing)
    # a point at step s is made before what froze at s: the next one shows it
    after = [p.trainable_params for p in result.history if p.step > steps[0]]
    assert after and max(after) < result.history[0].trainable_params


@pytest.mark.parametrize("strategy,params", ADAPTIVE)
def test_the_growing_cache_gives_the_metrics_of_no_cache(tiny_model_dirs, sentiment_folder,
                                                         tmp_path, strategy, params):
    common = dict(strategy=strategy, strategy_params=params)
    cached = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / "a", **common))
    plain = run(_config(tiny_model_dirs["bert"], sentiment_folder, tmp_path / "b",
                        use_cache=False, **common))
    assert cached.freezing and [(e.unit, e.step) for e in cached.freezing] == \
        [(e.unit, e.step) for e in plain.freezing]
    for split in ("validation", "test"):
        a, b = getattr(cached.metrics, split), getattr(plain.metrics, split)
        assert a.accuracy == b.accuracy and a.f1 == b.f1
        assert a.loss == pytest.approx(b.loss, rel=1e-4)
    for a, b in zip(cached.history, plain.history, strict=True):
        assert a.trainable_params == b.trainable_params
        if a.train_loss is not None:
            assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
    # with the cache a frozen unit runs forward once over the split (counted when it freezes)
    # instead of on every later batch
    first, last = cached.freezing[0].step, cached.freezing[-1].step
    for a, b, a_next, b_next in zip(cached.history, plain.history, cached.history[1:],
                                    plain.history[1:], strict=False):
        cached_step, plain_step = a_next.flops - a.flops, b_next.flops - b.flops
        if a_next.step <= first:
            assert cached_step == plain_step
        elif a.step > last:
            assert cached_step < plain_step
    assert cached.efficiency.standalone_train_flops == cached.efficiency.train_flops
    # what the run ends with: the frozen prefix, and the states it holds (none without cache)
    assert cached.params.frozen_prefix == plain.params.frozen_prefix != "none"
    assert cached.efficiency.memory.cached_features_bytes > 0 < cached.efficiency.cache_bytes
    assert plain.efficiency.memory.cached_features_bytes == 0
    assert cached.efficiency.cache_build_seconds == 0  # timed inside training instead
