"""Freezing strategies: a registry of small functions over the layer map.

A strategy maps a :class:`~freezebench.model.layer_map.LayerMap` and its parameters to a
:class:`FreezePlan`: the parameter names that train from the first step, and for schedules such as
gradual unfreezing the names that join later. The new classification head always trains.

Adding a strategy is one decorated function::

    @register("top2", "Train the top two blocks and the head.")
    def top2(layer_map: LayerMap) -> FreezePlan:
        return FreezePlan(set(layer_map.blocks[-1]) | set(layer_map.blocks[-2]))
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from freezebench.errors import StrategyError, did_you_mean

if TYPE_CHECKING:  # strategies only read a layer map; importing it would load torch
    from freezebench.model.layer_map import LayerMap


@dataclass(frozen=True)
class AutoFreezeRule:
    """AutoFreeze (Liu et al., 2021): every ``interval`` steps, freeze the lowest trainable blocks
    whose gradient norm changed less than the ``percentile`` of the trainable blocks' changes
    (see :mod:`freezebench.engine.adaptive`). ``interval`` None: a twentieth of the run."""

    interval: int | None
    percentile: float
    max_frozen: int


@dataclass(frozen=True)
class FreezeOutRule:
    """FreezeOut (Brock et al., 2017): unit ``i`` of ``L`` anneals its learning rate to 0 by a
    cosine over the first ``t_i`` of training, ``t_i = scaling(t0 + (1 - t0) i / L)``, starting
    from ``learning_rate / t_i`` when ``scale_lr``, then freezes."""

    t0: float
    scaling: str
    scale_lr: bool


@dataclass
class FreezePlan:
    """What trains: ``trainable`` from the start; ``schedule`` adds names later in training;
    ``adaptive`` freezes bottom units during training (the engine decides when)."""

    trainable: set[str]
    schedule: list[tuple[float, set[str]]] = field(default_factory=list)
    lora: dict[str, Any] | None = None
    adaptive: AutoFreezeRule | FreezeOutRule | None = None

    def trainable_at(self, progress: float) -> set[str]:
        """Names trainable once ``progress`` (0..1) of the training steps are done."""
        names = set(self.trainable)
        for start, added in self.schedule:
            if progress >= start:
                names |= added
        return names

    def ever_trainable(self) -> set[str]:
        return self.trainable_at(1.0)


@dataclass(frozen=True)
class StrategySpec:
    name: str
    description: str
    fn: Callable[..., FreezePlan]
    defaults: dict[str, Any]

    def describe_params(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "-"


STRATEGIES: dict[str, StrategySpec] = {}


def register(name: str, description: str):
    """Register ``fn(layer_map, **params) -> FreezePlan`` under ``name``; params need defaults."""

    def decorate(fn: Callable[..., FreezePlan]) -> Callable[..., FreezePlan]:
        params = list(inspect.signature(fn).parameters.values())[1:]
        defaults = {p.name: p.default for p in params}
        STRATEGIES[name] = StrategySpec(name, description, fn, defaults)
        return fn

    return decorate


def get_strategy(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise StrategyError(
            f"Unknown strategy '{name}'.{did_you_mean(name, STRATEGIES)} "
            f"Available: {', '.join(STRATEGIES)} (see `freezebench ls strategies`)."
        )
    return STRATEGIES[name]


def check_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Known parameters with their defaults filled in; unknown ones are errors."""
    spec = get_strategy(name)
    for key in params:
        if key not in spec.defaults:
            known = ", ".join(spec.defaults) or "none"
            raise StrategyError(
                f"Strategy '{name}' has no parameter '{key}'.{did_you_mean(key, spec.defaults)} "
                f"Its parameters: {known}."
            )
    return {**spec.defaults, **params}


def strategy_label(name: str, params: dict[str, Any]) -> str:
    """``bottom(k=4)``: the name plus the parameters that differ from the defaults."""
    resolved = check_params(name, params)
    spec = STRATEGIES[name]
    changed = {k: v for k, v in resolved.items() if v != spec.defaults[k]}
    if not changed:
        return name
    return f"{name}({','.join(f'{k}={_short(v)}' for k, v in changed.items())})"


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "|".join(str(v) for v in value)
    return str(value)


def plan_for(name: str, params: dict[str, Any], layer_map: LayerMap) -> FreezePlan:
    """Resolve a strategy into a plan for one model; the head is always added."""
    spec = get_strategy(name)
    plan = spec.fn(layer_map, **check_params(name, params))
    plan.trainable |= set(layer_map.head)
    unknown = plan.ever_trainable() - set(layer_map.all_names())
    if unknown:
        missing = sorted(unknown)[:3]
        raise StrategyError(f"Strategy '{name}' names parameters the model lacks: {missing}")
    return plan


def _int_param(name: str, key: str, value: Any, low: int, high: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StrategyError(
            f"Strategy '{name}': {key}={value!r} is out of range; it must be a whole number from "
            f"{low} to {high}{why}."
        )
    return value


def _has_blocks(layer_map: LayerMap) -> str:
    return f" (this model has {layer_map.num_blocks} encoder blocks)"


def _blocks(layer_map: LayerMap, start: int, stop: int) -> set[str]:
    return {n for block in layer_map.blocks[start:stop] for n in block}


@register("full", "Full fine-tuning: every parameter trains.")
def full(layer_map: LayerMap) -> FreezePlan:
    return FreezePlan(set(layer_map.all_names()))


@register("head", "Only the new classification head trains (pooler and encoder frozen).")
def head(layer_map: LayerMap) -> FreezePlan:
    return FreezePlan(set(layer_map.head))


@register(
    "bottom",
    "Freeze the embeddings and the bottom k encoder blocks; the blocks above, the pooler and the "
    "head train. k = number of blocks, freeze_pooler=true equals 'head'.",
)
def bottom(
    layer_map: LayerMap, k: int = 0, freeze_embeddings: bool = True, freeze_pooler: bool = False
) -> FreezePlan:
    k = _int_param("bottom", "k", k, 0, layer_map.num_blocks, _has_blocks(layer_map))
    names = _blocks(layer_map, k, layer_map.num_blocks)
    if not freeze_pooler:
        names |= set(layer_map.pooler)
    if not freeze_embeddings:
        names |= set(layer_map.embeddings)
    return FreezePlan(names)


@register("top", "Train only the top n encoder blocks, the pooler and the head.")
def top(layer_map: LayerMap, n: int = 1) -> FreezePlan:
    n = _int_param("top", "n", n, 0, layer_map.num_blocks, _has_blocks(layer_map))
    start = layer_map.num_blocks - n
    return FreezePlan(_blocks(layer_map, start, layer_map.num_blocks) | set(layer_map.pooler))


@register("embeddings", "Freeze only the embeddings; every encoder block trains.")
def embeddings(layer_map: LayerMap) -> FreezePlan:
    return FreezePlan(set(layer_map.all_names()) - set(layer_map.embeddings))


@register("bitfit", "BitFit: only bias terms and the head train (Ben Zaken et al., 2022).")
def bitfit(layer_map: LayerMap) -> FreezePlan:
    return FreezePlan({n for n in layer_map.all_names() if n.rsplit(".", 1)[-1] == "bias"})


@register("layernorm", "Only LayerNorm scales and shifts and the head train.")
def layernorm(layer_map: LayerMap) -> FreezePlan:
    return FreezePlan(set(layer_map.layernorm))


@register(
    "lora",
    "LoRA adapters (PEFT) on the attention projections; the head trains, the backbone is frozen. "
    "targets: 'qv' (query, value) or 'all' (query, key, value, attention output).",
)
def lora(
    layer_map: LayerMap, r: int = 8, alpha: int = 16, dropout: float = 0.1, targets: str = "qv"
) -> FreezePlan:
    r = _int_param("lora", "r", r, 1, 1024)
    if targets not in ("qv", "all"):
        raise StrategyError(f"Strategy 'lora': targets={targets!r} must be 'qv' or 'all'.")
    if not 0 <= float(dropout) < 1:
        raise StrategyError(f"Strategy 'lora': dropout={dropout!r} must be in [0, 1).")
    spec = layer_map.spec
    modules = spec.attention_projections if targets == "qv" else spec.all_projections
    lora_config = {"r": r, "lora_alpha": alpha, "lora_dropout": float(dropout),
                   "target_modules": list(modules)}
    # After the adapters are injected the layer map lists them in ``adapters``.
    return FreezePlan(set(layer_map.adapters), lora=lora_config)


@register(
    "gradual",
    "ULMFiT gradual unfreezing: the head (and pooler) train first, then one more encoder block is "
    "unfrozen from the top down at evenly spaced points of training; embeddings last if "
    "unfreeze_embeddings. max_blocks caps how many blocks are ever unfrozen.",
)
def gradual(
    layer_map: LayerMap, max_blocks: int | None = None, unfreeze_embeddings: bool = True
) -> FreezePlan:
    total = layer_map.num_blocks
    if max_blocks is None:
        max_blocks = total
    max_blocks = _int_param("gradual", "max_blocks", max_blocks, 0, total, _has_blocks(layer_map))
    stages = [layer_map.blocks[total - 1 - i] for i in range(max_blocks)]
    if unfreeze_embeddings and max_blocks == total:
        stages.append(layer_map.embeddings)
    schedule = [((i + 1) / (len(stages) + 1), set(names)) for i, names in enumerate(stages)]
    return FreezePlan(set(layer_map.pooler), schedule=schedule)


@register(
    "custom",
    "Train the parameters whose names match any of the glob patterns (list, or a comma-separated "
    "string), plus the head. Example: patterns='*.encoder.layer.11.*,*LayerNorm*'.",
)
def custom(layer_map: LayerMap, patterns: list[str] | str = "") -> FreezePlan:
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    if not patterns:
        raise StrategyError("Strategy 'custom' needs patterns, e.g. patterns='*.layer.11.*'.")
    names: set[str] = set()
    for pattern in patterns:
        matched = fnmatch.filter(layer_map.all_names(), pattern)
        if not matched:
            example = layer_map.all_names()[len(layer_map.embeddings)]
            raise StrategyError(
                f"Strategy 'custom': pattern '{pattern}' matches no parameter. Names look like "
                f"'{example}'."
            )
        names |= set(matched)
    return FreezePlan(names)


@register(
    "autofreeze",
    "AutoFreeze (Liu et al., 2021): everything trains at first; every `interval` steps (default: "
    "a twentieth of the run) each trainable block's gradient norm (L1, summed over the interval) "
    "is compared with the previous interval's, and the lowest blocks whose relative change is "
    "below the `percentile` of the trainable blocks' changes freeze, the embeddings with the "
    "first; bottom-up, never the pooler or head, at most max_frozen blocks (default: all but "
    "the top one).",
)
def autofreeze(
    layer_map: LayerMap, interval: int | None = None, percentile: float = 50.0,
    max_frozen: int | None = None,
) -> FreezePlan:
    total = layer_map.num_blocks
    if interval is not None:
        interval = _int_param("autofreeze", "interval", interval, 1, 10**9, " steps")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
            or not 0 <= percentile <= 100:
        raise StrategyError(f"Strategy 'autofreeze': percentile={percentile!r} must be a number "
                            "from 0 to 100.")
    max_frozen = total - 1 if max_frozen is None else max_frozen
    max_frozen = _int_param("autofreeze", "max_frozen", max_frozen, 0, total,
                            _has_blocks(layer_map))
    return FreezePlan(set(layer_map.all_names()),
                      adaptive=AutoFreezeRule(interval, float(percentile), max_frozen))


FREEZEOUT_SCALINGS = ("linear", "squared", "cubic")


@register(
    "freezeout",
    "FreezeOut (Brock et al., 2017): unit i of L (embeddings 0, blocks 1..L-1, pooler and head L) "
    "anneals its learning rate to 0 by a cosine over the first t_i of training, "
    "t_i = scaling(t0 + (1 - t0) i / L) (scaling: linear | squared | cubic), then freezes; with "
    "scale_lr its rate starts at learning_rate / t_i. Replaces lr_scheduler_type (warm-up still "
    "applies).",
)
def freezeout(
    layer_map: LayerMap, t0: float = 0.8, scaling: str = "cubic", scale_lr: bool = True
) -> FreezePlan:
    if isinstance(t0, bool) or not isinstance(t0, (int, float)) or not 0 < t0 <= 1:
        raise StrategyError(f"Strategy 'freezeout': t0={t0!r} must be a number in (0, 1].")
    if scaling not in FREEZEOUT_SCALINGS:
        raise StrategyError(f"Strategy 'freezeout': scaling={scaling!r} must be one of "
                            f"{', '.join(FREEZEOUT_SCALINGS)}.")
    if not isinstance(scale_lr, bool):
        raise StrategyError(f"Strategy 'freezeout': scale_lr={scale_lr!r} must be true or false.")
    return FreezePlan(set(layer_map.all_names()),
                      adaptive=FreezeOutRule(float(t0), scaling, scale_lr))
