"""Every strategy, on a tiny random model of every architecture mapped beyond BERT, RoBERTa and
DistilBERT, trains what it names and nothing else: frozen weights unchanged after training, the
head and most trainable tensors moved, no optimizer state for frozen ones."""

from __future__ import annotations

import pytest
import torch

from freezebench.config import RunConfig
from freezebench.engine.freezing import apply_trainable
from freezebench.engine.training import EvalPoint, Recipe, train
from freezebench.measure.flops import FlopRate
from freezebench.model.layer_map import build_layer_map
from freezebench.model.loading import with_lora
from freezebench.model.staged import StagedForward
from freezebench.record import SplitMetrics
from freezebench.strategies import STRATEGIES, plan_for

from .architectures import NEW_ARCHITECTURES, build_new_model
from .conftest import assert_trained_only_what_it_names
from .test_architectures import _examples, _split

NOT_EVALUATED = SplitMetrics(accuracy=0.0, f1=0.0, f1_macro=0.0, precision=0.0, recall=0.0,
                             loss=0.0, per_class_f1={}, samples=0)
PARAMS = {"custom": {"patterns": "*.1.*"}, "bottom": {"k": 1}, "top": {"n": 1}}


def _trained(architecture: str, strategy: str, tokenizer):
    model = build_new_model(architecture, vocab_size=100).train()
    layer_map = build_layer_map(model)
    plan = plan_for(strategy, PARAMS.get(strategy, {}), layer_map)
    if plan.lora is not None:
        model = with_lora(model, plan.lora)
        layer_map = build_layer_map(model)
        plan = plan_for(strategy, PARAMS.get(strategy, {}), layer_map)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    boundary = apply_trainable(model, layer_map, plan.trainable_at(0.0))
    recipe = Recipe.from_config(RunConfig(
        learning_rate=1e-2, weight_decay=0.0, max_grad_norm=1.0,
        # one step, except for a schedule, which needs steps to unfreeze
        num_train_epochs=2 if plan.schedule else 1, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, seed=0, group_by_length=True, packed_batches=True))
    outcome = train(model=model, staged=StagedForward(model, layer_map), layer_map=layer_map,
                    plan=plan, inputs=_split(_examples(16 if plan.schedule else 8), tokenizer),
                    recipe=recipe,
                    device=torch.device("cpu"), precision="fp32", boundary=boundary,
                    evaluate=lambda boundary: EvalPoint(NOT_EVALUATED, NOT_EVALUATED, 0.0),
                    rate_of=lambda trainable, prefix: FlopRate(0.0, 0.0, 0.0))
    return model, layer_map, plan, before, outcome


@pytest.mark.parametrize("architecture", NEW_ARCHITECTURES)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_trains_what_it_names_and_nothing_else(tokenizer, architecture, strategy):
    model, layer_map, plan, before, outcome = _trained(architecture, strategy, tokenizer)
    ever = plan.ever_trainable()
    assert set(layer_map.head) <= plan.trainable and ever <= set(layer_map.all_names())
    after = dict(model.named_parameters())
    assert_trained_only_what_it_names(strategy, before, after, ever, layer_map.head,
                                      outcome.optimizer)
    if strategy == "bottom":  # k=1: embeddings and the first block frozen, the rest trains
        assert not (set(layer_map.embeddings) | set(layer_map.blocks[0])) & ever
        assert set(layer_map.blocks[1]) | set(layer_map.pooler) <= ever
    if strategy == "lora":
        assert layer_map.adapters and ever == set(layer_map.adapters) | set(layer_map.head)
    if strategy == "layernorm":
        assert ever - set(layer_map.head), "the architecture's norms are found"
