"""Memory: what a run holds in tensors (comparable on any device), and the process's peak.

:func:`memory_use` adds up what a run holds: its weights, one gradient per trainable parameter,
the optimizer's state, the tensors autograd saves for the backward pass at the largest step
(:class:`SavedTensors`), and the cached frozen-prefix states it reads. Each is counted from the
tensors themselves, so the figure is the same on a CPU and a GPU and does not depend on what ran
before in the process. The sum bounds the peak from above: gradients grow while the backward pass
frees the saved activations, so not all of both are held at once. :class:`PeakMemory` is the
process's own figure (GPU allocator peak, or resident-memory growth on a CPU), kept beside it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import psutil
import torch
from torch import nn

from freezebench.record import MemoryUse


class SavedTensors:
    """Bytes of the tensors autograd saves for the backward pass, per step; the largest step is
    kept. Use as a context manager around each step's forward, then call :meth:`step_done`.

    The weights are left out: parameters, and tensors that share a storage with one of
    ``weights`` (a linear layer saves its weight as a transposed view, frozen or not; counting it
    would put every layer's weight among the activations once more). A tensor saved twice, or
    views of one storage, count once.
    """

    def __init__(self, weights: Iterable[torch.Tensor] = ()) -> None:
        self.peak_bytes = 0
        self._weights = {w.untyped_storage().data_ptr() for w in weights}
        self._storages: dict[int, int] = {}
        self._hooks: torch.autograd.graph.saved_tensors_hooks | None = None

    def __enter__(self) -> SavedTensors:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        assert self._hooks is not None
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if isinstance(tensor, nn.Parameter):
            return tensor
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._weights:
            self._storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def step_done(self) -> None:
        self.peak_bytes = max(self.peak_bytes, sum(self._storages.values()))
        self._storages.clear()


def memory_use(model: nn.Module, trainable: set[str], *, optimizer_state_bytes: int,
               activations_bytes: int, cached_features_bytes: int) -> MemoryUse:
    """The run's peak tensor memory, by kind (see the module docstring)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    gradients = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                    if n in trainable)
    parts = {"weights_bytes": weights, "gradients_bytes": gradients,
             "optimizer_state_bytes": optimizer_state_bytes,
             "activations_bytes": activations_bytes,
             "cached_features_bytes": cached_features_bytes}
    return MemoryUse(**parts, total_bytes=sum(parts.values()))


class PeakMemory:
    """Peak memory of a region: GPU allocator peak, or peak growth of this process's RSS on CPU.

    The CPU figure is sampled by a background thread every few milliseconds, so it reflects this
    region alone even when earlier runs in the same process already raised the lifetime peak.
    """

    def __init__(self, device: torch.device, interval: float = 0.005):
        self.device = device
        self.interval = interval
        self.kind = "cuda_allocated" if device.type == "cuda" else "cpu_rss_growth"
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._baseline = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        process = psutil.Process()
        self._baseline = self._peak = process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, args=(process,), daemon=True)
        self._thread.start()
        return self

    def _sample(self, process: psutil.Process) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._peak = torch.cuda.max_memory_allocated(self.device)
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, psutil.Process().memory_info().rss)

    @property
    def megabytes(self) -> float:
        peak = self._peak if self.device.type == "cuda" else self._peak - self._baseline
        return max(peak, 0) / 2**20
