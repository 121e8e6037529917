"""The optimizer: AdamW over the trainable parameters only, so frozen ones hold no state."""

from __future__ import annotations

import torch
from torch import nn

from freezebench.model.layer_map import LayerMap

_NO_DECAY_SUFFIXES = ("bias",)


def build_optimizer(
    model: nn.Module, names: set[str], layer_map: LayerMap, *, learning_rate: float,
    weight_decay: float, device: torch.device, by_unit: bool = False,
) -> torch.optim.AdamW:
    """AdamW over ``names``; biases and LayerNorm parameters get no weight decay.

    ``by_unit``: two groups per unit of the layer map (bottom to top, each tagged with its
    ``unit``) instead of two in all, so each unit can have its own learning rate (FreezeOut).
    """
    no_decay = set(layer_map.layernorm)
    params = dict(model.named_parameters())
    units = layer_map.units() if by_unit else [("all", list(params))]
    groups = []
    for unit, unit_names in units:
        decay, plain = [], []
        for name in unit_names:
            if name not in names:
                continue
            target = plain if name in no_decay or name.endswith(_NO_DECAY_SUFFIXES) else decay
            target.append(params[name])
        groups += [{"params": decay, "weight_decay": weight_decay, "unit": unit},
                   {"params": plain, "weight_decay": 0.0, "unit": unit}]
    groups = [g for g in groups if g["params"]]
    fused = device.type in ("cuda", "cpu")  # one kernel for all tensors, on either device
    return torch.optim.AdamW(groups, lr=learning_rate, fused=fused)


def drop_parameters(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
    """Take ``params`` out of ``optimizer`` for good: out of their groups and their state with
    them, so a frozen parameter neither moves nor holds memory. A group left empty stays (the
    learning-rate scheduler keeps one rate per group)."""
    gone = {id(p) for p in params}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in gone]
    for param in params:
        optimizer.state.pop(param, None)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total
