"""One run on several processes (``torchrun``, ``accelerate launch``): data-parallel training.

A launcher that starts ``N > 1`` processes sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; the
run then joins the default process group (gloo for CPU tensors, NCCL for GPU ones) and trains with
``torch.nn.parallel.DistributedDataParallel``:

* Every global batch is the one a single process would draw at ``N x`` the per-device batch size
  (same ``batch_order``); rank ``r`` takes the ``r``-th of ``N`` near-equal slices of it. Each rank
  weights its summed loss by ``N / global batch``, so DDP's gradient average equals the gradient of
  the global batch mean even when slices differ in size; a rank whose slice is empty (a last batch
  smaller than ``N``) runs one example at weight 0, so every rank joins every gradient all-reduce.
* The engine trains through a staged forward, not ``model.forward``, so DDP wraps a small module
  whose forward is that staged forward (frozen prefix without autograd or from the cache, then the
  trainable units). DDP hooks the parameters that train when it is built; it is rebuilt when a
  schedule (gradual unfreezing) changes them.
* Evaluation splits each split into ``N`` contiguous shards and gathers the logits (back in row
  order) and the summed loss, so every rank scores the whole split.
* Only rank 0 writes the record and the saved model.

With dropout, ranks draw their masks from their own generators, so a run on ``N`` processes
follows a single process at ``N x`` the batch in distribution, not bit for bit; without dropout it
is the same computation up to the order of floating-point sums.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from freezebench.engine.batching import Batch, batch_order, forward_logits
from freezebench.engine.loss import task_loss
from freezebench.model.staged import StagedForward

logger = logging.getLogger(__name__)

Forward = Callable[[Batch, int], torch.Tensor]


@dataclass(frozen=True)
class Share:
    """This rank's part of one global batch."""

    indices: list[int]
    weights: torch.Tensor | None   # per example (0 for a filler); None: one process, plain mean
    global_size: int


@dataclass(frozen=True)
class DataParallel:
    """Where this process stands in the run: rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """The device of this rank: its local GPU under a launcher, else ``device``."""
        if not self.active or device.type != "cuda":
            return device
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def global_batch(self, per_device: int) -> int:
        return per_device * self.world_size

    def shares(self, order: list[list[int]]) -> list[Share]:
        """This rank's slice of each global batch of ``order``."""
        if not self.active:
            return [Share(indices, None, len(indices)) for indices in order]
        shares = []
        for indices in order:
            mine = np.array_split(np.asarray(indices), self.world_size)[self.rank].tolist()
            weights = torch.ones(len(mine))
            if not mine:  # the last global batch has fewer examples than ranks
                mine, weights = indices[:1], torch.zeros(1)
            shares.append(Share(mine, weights, len(indices)))
        return shares

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, share: Share) -> torch.Tensor:
        """The loss whose gradient, averaged by DDP over ranks, is that of the global mean."""
        if share.weights is None:
            return task_loss(logits, labels)
        losses = task_loss(logits, labels, reduction="none")
        weights = share.weights.to(losses.device)
        return (losses * weights).sum() * (self.world_size / share.global_size)

    def forward(self, staged: StagedForward) -> Forward:
        """The training forward: plain, or through DDP over the parameters that train now.

        Call again after the trainable set changes (the old wrapper's hooks go with it).
        """
        if not self.active:
            return lambda batch, boundary: forward_logits(staged, batch, boundary)
        module = StagedModule(staged)
        device = next(staged.model.parameters()).device
        return DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)

    def eval_order(self, lengths: np.ndarray, batch_size: int) -> list[list[int]]:
        """The batches this rank scores: its contiguous shard of the split, grouped by length
        (batches of similar length pad least)."""
        rows = np.arange(len(lengths))
        if self.active:
            rows = np.array_split(rows, self.world_size)[self.rank]
        order = batch_order(lengths[rows], batch_size, shuffle=False, seed=0, epoch=0,
                            group_by_length=True)
        return [rows[batch].tolist() for batch in order]

    def in_row_order(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The values every rank computed for its ``rows``, put back in row order."""
        if self.active:
            parts: list[tuple[np.ndarray, np.ndarray] | None] = [None] * self.world_size
            dist.all_gather_object(parts, (rows, values))
            rows = np.concatenate([part[0] for part in parts])
            values = np.concatenate([part[1] for part in parts])
        ordered = np.empty_like(values)
        ordered[rows] = values
        return ordered

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over ranks."""
        if self.active:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def all_finite(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is finite on every rank (so all ranks stop together)."""
        return bool(torch.isfinite(self.sum(value)))


class StagedModule(nn.Module):
    """The staged forward as one module, so DDP can hook the parameters that train."""

    def __init__(self, staged: StagedForward):
        super().__init__()
        self.model = staged.model
        self.staged = staged

    def forward(self, batch: Batch, boundary: int) -> torch.Tensor:
        return forward_logits(self.staged, batch, boundary)


SINGLE = DataParallel()


def from_environment() -> DataParallel:
    """This process's place in the run, joining the process group when a launcher started it."""
    world_size = launched_processes()
    if world_size <= 1:
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group()  # gloo, and NCCL too when CUDA is there
        atexit.register(_leave)
        logger.info("Rank %d of %d joined the process group (%s).", dist.get_rank(),
                    world_size, dist.get_backend())
    return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size(),
                        local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def launched_processes() -> int:
    """How many processes a launcher (torchrun, accelerate launch) started for this run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """False on the ranks other than 0 of a multi-process run (they write nothing)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
