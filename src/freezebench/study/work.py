"""How much work each planned run of a sweep is expected to be, from its config alone.

A sweep's runs differ by orders of magnitude (full fine-tuning against a head over a cached
prefix), so its progress is counted in expected work, not in runs. A run's work is its expected
FLOPs, counted by :mod:`freezebench.measure.flops` as the run itself counts them: training with
freezing and the frozen-prefix cache taken into account, every evaluation's forward pass over
validation and test, and the prefix-cache builds the run is the first to need (later runs of the
same model and data read them). The model is built on PyTorch's meta device from its config, so
no weights are read and nothing is computed.

It is an estimate, and says what it assumes: every example is ``ASSUMED_TOKENS`` tokens long (or
``max_length`` when shorter); a split the config does not cap (``max_train_samples``,
``max_eval_samples``) has ``UNCAPPED_TRAIN`` or ``UNCAPPED_EVAL`` examples, sizes typical of a
sentiment benchmark (rotten_tomatoes: 8,530 / 1,066 / 1,066). Where every run shares the same
data these cancel out of the shares; loading, tokenization and start-up are not counted. A run
whose model cannot be built here (not available locally, an unknown architecture, code of its
own) is given the mean of the others.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from freezebench.config import RunConfig
from freezebench.engine.freezing import apply_trainable, planned
from freezebench.engine.training import Plan, Recipe
from freezebench.errors import FreezebenchError
from freezebench.measure.flops import UnitCost, forward_flops, train_flops, unit_costs
from freezebench.model.pooling import apply_pooling, resolve_pooling
from freezebench.model.staged import computes_first_token_only

logger = logging.getLogger(__name__)

ASSUMED_TOKENS = 128
UNCAPPED_TRAIN = 10_000
UNCAPPED_EVAL = 1_000


@dataclass(frozen=True)
class Shape:
    """What the FLOP count needs of a model under a strategy."""

    units: list[UnitCost]
    hidden_size: int
    boundary: int      # the frozen prefix at the start of training
    scheduled: bool    # the trainable set changes during training (never cached)


def expected_work(configs: list[RunConfig]) -> list[float]:
    """Each run's expected FLOPs, in the order of ``configs`` (their order matters: a prefix-cache
    build is counted for the first run that needs it)."""
    shapes: dict[str, Shape | None] = {}
    built: dict[tuple, set[int]] = {}
    work: list[float | None] = []
    for config in configs:
        key = json.dumps([config.model, config.revision, config.strategy,
                          config.strategy_params, config.pooling], sort_keys=True, default=str)
        if key not in shapes:
            shapes[key] = _shape(config)
        shape = shapes[key]
        work.append(None if shape is None else _run_work(config, shape, built))
    known = [w for w in work if w is not None]
    fallback = sum(known) / len(known) if known else 1.0
    return [fallback if w is None else w for w in work]


def _run_work(config: RunConfig, shape: Shape, built: dict[tuple, set[int]]) -> float:
    train_examples = config.max_train_samples or UNCAPPED_TRAIN
    eval_examples = 2 * (config.max_eval_samples or UNCAPPED_EVAL)  # validation and test
    length = np.array([min(config.max_length or ASSUMED_TOKENS, ASSUMED_TOKENS)])
    plan = Plan.of(Recipe.from_config(config), train_examples,
                   config.per_device_train_batch_size)
    epochs = plan.total_steps / plan.steps_per_epoch  # max_steps may stop within an epoch
    evaluations = plan.total_steps // plan.eval_steps + 1 + bool(plan.total_steps % plan.eval_steps)
    cached = config.use_cache and not shape.scheduled and shape.boundary > 0
    prefix = shape.boundary if cached else 0
    units, hidden = shape.units, shape.hidden_size
    training = train_flops(units, length, hidden, epochs, prefix_units=prefix, cached=cached)
    evaluation = forward_flops(units, length, hidden, prefix, len(units))
    work = (train_examples * training["train_flops"]
            + evaluations * eval_examples * evaluation)
    if cached:  # the cache holds every split; a deeper prefix is built from the deepest held
        data = (config.model, config.revision, config.dataset, config.dataset_config,
                config.data_seed, config.max_train_samples, config.max_eval_samples,
                config.max_length, config.precision)
        held = built.setdefault(data, set())
        if prefix not in held:
            start = max((b for b in held if b < prefix), default=0)
            work += ((train_examples + eval_examples)
                     * forward_flops(units, length, hidden, start, prefix))
            held.add(prefix)
    return work


def _shape(config: RunConfig) -> Shape | None:
    """The model under the run's strategy, built without weights; ``None`` where it cannot be."""
    if config.trust_remote_code:  # its code runs only inside the run, after its checks
        return None
    try:
        model_config = AutoConfig.from_pretrained(config.model, revision=config.revision,
                                                  num_labels=2)
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(model_config)
        # the pooling decides whether the last block is cut (and BERT's pooler under mean)
        pooling = resolve_pooling(config.pooling, config.model, model, revision=config.revision)
        apply_pooling(model, pooling.mode)
        model, layer_map, plan = planned(model, config.strategy, config.strategy_params)
    except (OSError, ValueError, KeyError, FreezebenchError) as exc:
        logger.info("No work estimate for %s with %s (%s); it counts as an average run.",
                    config.model, config.strategy, exc)
        return None
    boundary = apply_trainable(model, layer_map, plan.trainable_at(0.0))
    units = unit_costs(model, layer_map, plan.ever_trainable(), computes_first_token_only(model))
    return Shape(units, model_config.hidden_size, boundary, bool(plan.schedule))
