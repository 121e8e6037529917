"""Freezing: which parameters train, which modules run in inference mode, and the frozen prefix.

A unit with no trainable parameter runs in inference mode (no dropout). The frozen prefix is the
run of such units from the bottom; it runs without autograd, or is read from the frozen-prefix
cache (:mod:`freezebench.engine.prefix_states`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from freezebench.model.layer_map import LayerMap, build_layer_map, unit_modules
from freezebench.model.loading import with_lora
from freezebench.strategies import FreezePlan, plan_for


def planned(model: nn.Module, strategy: str,
            params: dict[str, Any]) -> tuple[nn.Module, LayerMap, FreezePlan]:
    """``model`` under ``strategy``: the model (LoRA's adapters injected where the plan asks for
    them), its layer map and the plan. Adapters are new parameters, so the model is mapped and
    planned again after they go in."""
    layer_map = build_layer_map(model)
    plan = plan_for(strategy, params, layer_map)
    if plan.lora is not None:
        model = with_lora(model, plan.lora)
        layer_map = build_layer_map(model)
        plan = plan_for(strategy, params, layer_map)
    return model, layer_map, plan


def apply_trainable(model: nn.Module, layer_map: LayerMap, trainable: set[str]) -> int:
    """Set ``requires_grad`` and module modes; return the frozen-prefix boundary.

    Units without a trainable parameter run in eval mode (no dropout). The frozen prefix is the
    run of such units from the bottom (embeddings, then blocks); its boundary is the number of
    units it spans.
    """
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    boundary = 0
    still_prefix = True
    units = zip(layer_map.units(), unit_modules(model, layer_map), strict=True)
    for (unit, names), (_, modules) in units:
        frozen = not any(n in trainable for n in names)
        for module in modules:
            module.train(not frozen)
        if still_prefix and frozen and unit not in ("pooler", "head"):
            boundary += 1
        else:
            still_prefix = False
    return boundary


def describe_prefix(boundary: int) -> str:
    if boundary == 0:
        return "none"
    if boundary == 1:
        return "embeddings"
    return f"embeddings+blocks[0:{boundary - 1}]"


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
