"""The training and evaluation loop (our own; no ``transformers.Trainer`` inside the product).

The model is split at unit boundaries (:class:`~freezebench.model.StagedForward`). The frozen
prefix, the bottom units with no trainable parameter, runs in inference mode without autograd, or
is read from the frozen-prefix cache; everything above it trains as usual. AdamW sees the
trainable parameters only, so frozen ones get neither gradients nor optimizer state.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from freezebench.batching import SplitInputs, batch_order, forward_logits, iter_batches
from freezebench.distributed import SINGLE, DataParallel
from freezebench.errors import TrainingError
from freezebench.measure import Stopwatch
from freezebench.model import LayerMap, StagedForward, unit_modules
from freezebench.strategies import FreezePlan

logger = logging.getLogger(__name__)

_NO_DECAY_SUFFIXES = ("bias",)


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
    matrix products run about twice as fast as fp32; elsewhere they are emulated and slower).
    """
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise TrainingError("fp16 needs a CUDA GPU; use fp32 or bf16 on the CPU.")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- freezing


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


def describe_prefix(boundary: int) -> str:
    if boundary == 0:
        return "none"
    if boundary == 1:
        return "embeddings"
    return f"embeddings+blocks[0:{boundary - 1}]"


# --------------------------------------------------------------------------- training


@dataclass
class TrainOutcome:
    history: list[dict]
    train_seconds: float
    steps: int
    samples: int
    tokens: int
    optimizer_state_bytes: int
    optimizer: torch.optim.Optimizer


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
    fused = device.type in ("cuda", "cpu")  # fused kernels exist for both; 6x faster on CPU
    return torch.optim.AdamW(groups, lr=learning_rate, fused=fused)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total


def show_progress(disable_tqdm: bool | None) -> bool:
    """Progress bars only on a terminal unless asked otherwise."""
    return sys.stderr.isatty() if disable_tqdm is None else not disable_tqdm


@dataclass
class Recipe:
    """The optimisation settings of a run (a slice of RunConfig)."""

    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float | None
    num_train_epochs: int
    per_device_train_batch_size: int
    per_device_eval_batch_size: int
    seed: int
    group_by_length: bool
    packed_batches: bool


@dataclass
class Evaluation:
    logits: np.ndarray
    labels: np.ndarray
    loss: float
    seconds: float


def evaluate(
    model: nn.Module, staged: StagedForward, inputs: SplitInputs, *, boundary: int,
    batch_size: int, device: torch.device, precision: str, parallel: DataParallel = SINGLE,
) -> Evaluation:
    """Logits and mean loss over a split, whole model in inference mode (ranks score a shard
    each and share the results)."""
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    # Batches of similar length pad least; the logits go back to row order afterwards.
    order = parallel.eval_order(inputs.lengths, batch_size)
    logits, loss_sum = [], torch.zeros((), device=device)
    with Stopwatch(device) as watch, torch.inference_mode(), autocast(device, precision):
        for batch in iter_batches(inputs, order, device):
            out = forward_logits(staged, batch, boundary).float()
            loss_sum += nn.functional.cross_entropy(out, batch.labels, reduction="sum")
            logits.append(out)
    for module, mode in was_training.items():
        module.training = mode
    batched = torch.cat(logits).cpu().numpy()
    return Evaluation(
        logits=parallel.in_row_order(np.concatenate(order), batched),
        labels=inputs.labels.numpy(),
        loss=float(parallel.sum(loss_sum)) / max(len(inputs.labels), 1), seconds=watch.seconds,
    )


EpochCallback = Callable[[int], dict]


def train(
    *, model: nn.Module, staged: StagedForward, layer_map: LayerMap, plan: FreezePlan,
    inputs: SplitInputs, recipe: Recipe, device: torch.device, precision: str,
    boundary: int, on_epoch_end: EpochCallback, progress: bool = False,
    parallel: DataParallel = SINGLE,
) -> TrainOutcome:
    """Train the plan's parameters; ``on_epoch_end(epoch)`` evaluates and returns its metrics.

    ``boundary`` is the frozen prefix the inputs were prepared for (cached states start there).
    Plans with a schedule (gradual unfreezing) change the trainable set as training progresses.
    Under ``parallel``, each step is one global batch shared by the ranks (see distributed.py).
    """
    ever = plan.ever_trainable()
    optimizer = build_optimizer(model, ever, layer_map, learning_rate=recipe.learning_rate,
                                weight_decay=recipe.weight_decay, device=device)
    batch_size = parallel.global_batch(recipe.per_device_train_batch_size)
    steps_per_epoch = math.ceil(len(inputs.lengths) / batch_size)
    total_steps = steps_per_epoch * recipe.num_train_epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(recipe.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    trainable = plan.trainable_at(0.0)
    boundary = min(boundary, apply_trainable(model, layer_map, trainable))
    params = [p for n, p in model.named_parameters() if n in ever]
    forward = parallel.forward(staged)
    check_every = 50 if device.type == "cuda" else 1
    history, step, seconds = [], 0, 0.0
    bar = tqdm(total=total_steps, desc="train", disable=not progress, leave=False)
    for epoch in range(recipe.num_train_epochs):
        order = batch_order(inputs.lengths, batch_size, shuffle=True,
                            seed=recipe.seed, epoch=epoch, group_by_length=recipe.group_by_length)
        shares = parallel.shares(order)
        loss_sum = torch.zeros((), device=device)
        with Stopwatch(device) as watch:
            batches = iter_batches(inputs, [share.indices for share in shares], device,
                                   packed=recipe.packed_batches)
            for share, batch in zip(shares, batches, strict=True):
                if plan.schedule and plan.trainable_at(step / total_steps) != trainable:
                    trainable = plan.trainable_at(step / total_steps)
                    boundary = apply_trainable(model, layer_map, trainable)
                    forward = parallel.forward(staged)
                    logger.info("Step %d: %d parameter tensors train, frozen prefix %s", step,
                                len(trainable), describe_prefix(boundary))
                with autocast(device, precision):
                    logits = forward(batch, boundary)
                    loss = parallel.loss(logits.float(), batch.labels, share)
                scaler.scale(loss).backward()
                if recipe.max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(
                        [p for p in params if p.grad is not None], recipe.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach()
                step += 1
                bar.update(1)
                if step % check_every == 0 and not parallel.all_finite(loss_sum):
                    bar.close()
                    raise TrainingError(
                        f"Training diverged: the loss became {float(loss_sum)} at step {step} "
                        f"(epoch {epoch + 1}). Lower the learning rate "
                        f"({recipe.learning_rate:g}) or use fp32.", step=step)
        seconds += watch.seconds
        train_loss = float(parallel.sum(loss_sum)) / parallel.world_size / len(order)
        if not math.isfinite(train_loss):
            bar.close()
            raise TrainingError(f"Training diverged: the loss became {train_loss} in epoch "
                                f"{epoch + 1} (step {step}). Lower the learning rate.", step=step)
        metrics = on_epoch_end(epoch)
        history.append({"epoch": epoch + 1, "step": step, "train_loss": train_loss,
                        "learning_rate": scheduler.get_last_lr()[0], "seconds": watch.seconds,
                        "trainable_params": trainable_count(model), **metrics})
    bar.close()
    samples = len(inputs.lengths) * recipe.num_train_epochs
    return TrainOutcome(history=history, train_seconds=seconds, steps=step, samples=samples,
                        tokens=int(inputs.lengths.sum()) * recipe.num_train_epochs,
                        optimizer_state_bytes=optimizer_state_bytes(optimizer),
                        optimizer=optimizer)


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
