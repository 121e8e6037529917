"""Dropout with masks drawn by numpy, for training on a CPU.

torch draws a CPU dropout mask (``bernoulli_``) one element at a time from its mt19937 generator,
on one thread (its vectorised MKL path is taken on Intel CPUs only), a visible share of a CPU
training step; numpy's PCG64 fills the same mask faster. How much that saves is measured by
``benchmarks/dropout_masks.py --profile`` (results in ``benchmarks/README.md``).

The masks follow the same distribution: each element is kept with probability ``1 - p`` and
scaled by ``1 / (1 - p)``. They come from another random stream, seeded per run, so a run stays
reproducible, but its masks differ from the ones torch would draw.

:func:`use_numpy_dropout` swaps every ``nn.Dropout`` of a model for :class:`NumpyDropout`
(LoRA's dropout included) and points its attention at :func:`attention`: that runs torch's
``scaled_dot_product_attention`` whenever no attention weight is dropped (evaluation, frozen
blocks), and otherwise computes what its math kernel computes on the CPU (in fp32, as that kernel
computes bf16 inputs) with a numpy mask on the weights. On a GPU none of this applies: torch
draws masks there in parallel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "freezebench_numpy_dropout"


class NumpyDropout(nn.Module):
    """``nn.Dropout`` whose masks come from a numpy generator."""

    def __init__(self, p: float, generator: np.random.Generator):
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return hidden
        return drop(hidden, self.p, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop(values: torch.Tensor, p: float, generator: np.random.Generator) -> torch.Tensor:
    """``values`` with each element zeroed with probability ``p``, the rest scaled to keep the
    mean (differentiable; the gradient is masked and scaled alike)."""
    draws = generator.random(values.shape, dtype=np.float32)
    # one mask in the values' dtype, scale included: the backward is a single product too
    mask = torch.from_numpy(draws >= p).to(device=values.device, dtype=values.dtype)
    return values * mask.mul_(1.0 / (1.0 - p))


def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float = 0.0,
              scaling: float | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """A ``transformers`` attention function: SDPA, with numpy masks when weights are dropped.

    Causal attention (a decoder) and groups of shared key/value heads go to SDPA unchanged.
    """
    masks = getattr(module, "dropout", None)
    causal = kwargs.get("is_causal", getattr(module, "is_causal", False))
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    if dropout == 0.0 or not isinstance(masks, NumpyDropout) or causal or grouped:
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    with torch.autocast(query.device.type, enabled=False):
        scores = torch.matmul(query.float(), key.float().transpose(-2, -1)) * scale
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores + attention_mask
        weights = drop(scores.softmax(dim=-1), dropout, masks.generator)
        output = torch.matmul(weights, value.float()).to(query.dtype)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def resolve_dropout_masks(choice: str, device: torch.device) -> str:
    """``auto``: numpy on a CPU, torch elsewhere."""
    if choice != "auto":
        return choice
    return "numpy" if device.type == "cpu" else "torch"


def use_numpy_dropout(model: PreTrainedModel, seed: Sequence[int]) -> int:
    """Give every dropout of ``model`` numpy masks from one generator seeded with ``seed`` (the
    run's seed and the process's rank); return how many dropout modules were swapped."""
    generator = np.random.default_rng([*seed, 0xD20])
    swapped = [(name, module) for name, module in model.named_modules()
               if type(module) is nn.Dropout]
    for name, module in swapped:
        parent, _, attribute = name.rpartition(".")
        replacement = NumpyDropout(module.p, generator)
        replacement.train(module.training)
        setattr(model.get_submodule(parent), attribute, replacement)
    if model.config._attn_implementation == "sdpa":
        model.set_attn_implementation(ATTENTION)
    return len(swapped)


@contextlib.contextmanager
def numpy_masks_kept(model: nn.Module) -> Iterator[None]:
    """Put every numpy dropout stream of ``model`` back as it was on entry: what runs inside
    leaves the run's masks unchanged."""
    generators = {id(m.generator): m.generator for m in model.modules()
                  if isinstance(m, NumpyDropout)}
    states = {key: generator.bit_generator.state for key, generator in generators.items()}
    try:
        yield
    finally:
        for key, generator in generators.items():
            generator.bit_generator.state = states[key]
