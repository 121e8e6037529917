"""The optimizer: AdamW over the trainable parameters only, so frozen ones hold no state."""

from __future__ import annotations

import torch
from torch import nn

from freezebench.model.layer_map import LayerMap

_NO_DECAY_SUFFIXES = ("bias",)


def build_optimizer(
    model: nn.Module, names: set[str], layer_map: LayerMap, *, learning_rate: float,
    weight_decay: float, device: torch.device,
) -> torch.optim.AdamW:
    """AdamW over ``names``; biases and LayerNorm parameters get no weight decay."""
    no_decay = set(layer_map.layernorm)
    decay, plain = [], []
    for name, param in model.named_parameters():
        if name not in names:
            continue
        if name in no_decay or name.endswith(_NO_DECAY_SUFFIXES):
            plain.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": plain, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    fused = device.type in ("cuda", "cpu")  # one kernel for all tensors, on either device
    return torch.optim.AdamW(groups, lr=learning_rate, fused=fused)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total
