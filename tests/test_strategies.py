"""Contract tests over every registered strategy, on tiny BERT, RoBERTa and DistilBERT models."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from freezebench.config import RunConfig
from freezebench.engine.evaluation import evaluate
from freezebench.engine.freezing import apply_trainable
from freezebench.engine.training import EvalPoint, Recipe, train
from freezebench.errors import StrategyError
from freezebench.measure.flops import FlopRate, unit_costs
from freezebench.measure.quality import classification_metrics
from freezebench.model.layer_map import build_layer_map
from freezebench.model.staged import StagedForward
from freezebench.pipeline import prepare
from freezebench.strategies import STRATEGIES, plan_for, strategy_label

from .conftest import assert_trained_only_what_it_names

ARCHITECTURES = ("bert", "roberta", "distilbert")
PARAMS = {"custom": {"patterns": "*.3.*"}, "bottom": {"k": 2}, "top": {"n": 1}}


def _bert_base_cased() -> BertForSequenceClassification:
    """bert-base-cased's published architecture, built on the meta device (no memory)."""
    config = BertConfig(vocab_size=28996, hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072, num_labels=2)
    with torch.device("meta"):
        return BertForSequenceClassification(config)


def _trainable_count(model, names: set[str]) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n in names)


def test_bert_base_cased_parameter_counts():
    model = _bert_base_cased()
    layer_map = build_layer_map(model)
    assert sum(p.numel() for p in model.parameters()) == 108_311_810
    assert _trainable_count(model, plan_for("head", {}, layer_map).trainable) == 1_538
    bottom10 = plan_for("bottom", {"k": 10}, layer_map).trainable
    assert _trainable_count(model, bottom10) == 14_767_874
    # k = L with the pooler frozen is exactly 'head'
    assert plan_for("bottom", {"k": 12, "freeze_pooler": True}, layer_map).trainable == \
        plan_for("head", {}, layer_map).trainable
    assert _trainable_count(model, plan_for("embeddings", {}, layer_map).trainable) == \
        108_311_810 - 22_665_216


def test_bitfit_and_layernorm_select_by_kind():
    layer_map = build_layer_map(_bert_base_cased())
    bitfit = plan_for("bitfit", {}, layer_map).trainable
    assert all(n.endswith(".bias") or n.startswith("classifier.") for n in bitfit)
    assert "bert.encoder.layer.0.attention.self.query.bias" in bitfit
    layernorm = plan_for("layernorm", {}, layer_map).trainable
    assert "bert.encoder.layer.5.output.LayerNorm.weight" in layernorm
    assert "bert.encoder.layer.5.output.dense.weight" not in layernorm


def test_unknown_strategy_and_parameters_are_explained():
    layer_map = build_layer_map(_bert_base_cased())
    with pytest.raises(StrategyError, match="Did you mean 'bottom'"):
        plan_for("bottm", {}, layer_map)
    with pytest.raises(StrategyError, match="has no parameter 'kk'.*Did you mean 'k'"):
        plan_for("bottom", {"kk": 3}, layer_map)
    with pytest.raises(StrategyError, match="k=13 is out of range.*0 to 12"):
        plan_for("bottom", {"k": 13}, layer_map)
    with pytest.raises(StrategyError, match="matches no parameter"):
        plan_for("custom", {"patterns": "nothing.*"}, layer_map)


def test_labels_name_non_default_parameters():
    assert strategy_label("bottom", {"k": 4}) == "bottom(k=4)"
    assert strategy_label("bottom", {"k": 0}) == "bottom"
    assert strategy_label("full", {}) == "full"


def _prepared(tiny_model_dirs, sentiment_folder, architecture: str, strategy: str, seed=0):
    config = RunConfig(model=tiny_model_dirs[architecture], dataset=str(sentiment_folder),
                       strategy=strategy, strategy_params=PARAMS.get(strategy, {}),
                       learning_rate=1e-2, per_device_train_batch_size=8, seed=seed,
                       use_cache=False)
    return config, prepare(config)


def _train(prepared, config):
    model, layer_map, plan = prepared.model, prepared.layer_map, prepared.plan
    boundary = apply_trainable(model, layer_map, plan.trainable_at(0.0))
    staged = StagedForward(model, layer_map)

    def metrics(split: str):
        result = evaluate(model, staged, prepared.inputs[split], boundary=0,
                          batch_size=64, device=torch.device("cpu"), precision="fp32")
        return classification_metrics(result.logits, result.labels, prepared.task.label_names,
                                      result.loss), result.seconds

    def both(boundary: int) -> EvalPoint:
        test, seconds = metrics("test")
        return EvalPoint(validation=metrics("validation")[0], test=test, test_seconds=seconds)

    def rate_of(trainable: set[str], prefix: int) -> FlopRate:
        units = unit_costs(model, layer_map, trainable, first_token_only=False)
        return FlopRate.of(units, model.config.hidden_size, prefix_units=prefix, cached=False)

    return train(model=model, staged=staged, layer_map=layer_map,
                 plan=plan, inputs=prepared.inputs["train"], recipe=Recipe.from_config(config),
                 device=torch.device("cpu"), precision="fp32", boundary=boundary,
                 evaluate=both, rate_of=rate_of)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_strategy_contract(tiny_model_dirs, sentiment_folder, architecture, strategy):
    config, prepared = _prepared(tiny_model_dirs, sentiment_folder, architecture, strategy)
    model, layer_map, plan = prepared.model, prepared.layer_map, prepared.plan
    ever = plan.ever_trainable()
    assert set(layer_map.head) <= plan.trainable, "the new head always trains"
    assert ever <= set(layer_map.all_names())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    outcome = _train(prepared, config)

    after = dict(model.named_parameters())
    assert_trained_only_what_it_names(strategy, before, after, ever, layer_map.head,
                                      outcome.optimizer)
    assert outcome.optimizer_state_bytes > 0


@pytest.mark.parametrize("strategy", ["bottom", "lora", "gradual"])
def test_same_seed_same_weights(tiny_model_dirs, sentiment_folder, strategy):
    runs = []
    for _ in range(2):
        config, prepared = _prepared(tiny_model_dirs, sentiment_folder, "bert", strategy, seed=7)
        _train(prepared, config)
        runs.append({n: p.detach() for n, p in prepared.model.named_parameters()})
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])


def test_gradual_unfreezes_top_block_first(tiny_model_dirs, sentiment_folder):
    _, prepared = _prepared(tiny_model_dirs, sentiment_folder, "bert", "gradual")
    plan, layer_map = prepared.plan, prepared.layer_map
    first_stage = plan.schedule[0][1]
    assert first_stage == set(layer_map.blocks[-1])
    assert plan.trainable_at(0.0).isdisjoint(set(layer_map.blocks[0]))
    assert plan.trainable_at(1.0) == set(layer_map.all_names())
