"""Device and numeric precision: which device a run uses, and bf16/fp16 autocast on it."""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from freezebench.errors import TrainingError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"Unknown device '{name}'. Use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"Device '{name}' was asked for, but no CUDA GPU is available.")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast where the hardware multiplies bf16 natively, fp32 otherwise.

    That is a GPU with bf16 support, or a CPU with AVX512-BF16 or AMX instructions (there bf16
    matrix products run faster than fp32; elsewhere they are emulated and slower). Under
    ``accelerate launch --mixed_precision X``, ``auto`` follows X.
    """
    if precision == "auto":
        precision = _ACCELERATE.get(os.environ.get("ACCELERATE_MIXED_PRECISION", ""), "auto")
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise TrainingError("fp16 needs a CUDA GPU; use fp32 or bf16 on the CPU.")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


# accelerate launch --mixed_precision sets this variable for the processes it starts
_ACCELERATE = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def store_frozen_weights_for_autocast(model: nn.Module, ever_trainable: set[str],
                                      precision: str) -> int:
    """Keep the weights of linear layers that never train in the autocast dtype; return how many.

    Under autocast every matrix product casts its fp32 weight to bf16/fp16, on every call: the
    cast is cached only for weights that require grad. A weight that never trains holds the same
    bf16 values when cast once, in half the memory, and the products stay exactly the same.
    """
    if precision == "fp32":
        return 0
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    count = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or f"{name}.weight" in ever_trainable:
            continue
        if module.weight.dtype != dtype:
            module.weight = nn.Parameter(module.weight.detach().to(dtype), requires_grad=False)
            count += 1
    return count
