"""Wall time of a region, with queued GPU work counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class Stopwatch:
    """Wall time of a region, synchronising the device so queued GPU work is counted."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        _sync(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        _sync(self.device)
        self.seconds += time.perf_counter() - self._start

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Inside a timed region, leave out what runs in this block (evaluation, logging)."""
        self.__exit__()
        try:
            yield
        finally:
            self.__enter__()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
