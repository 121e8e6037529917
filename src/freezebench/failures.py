"""What a failed run means to the user: out of memory and a full disk get advice.

``pipeline.run`` records every failure; these two are turned into the user's errors
(:class:`~freezebench.errors.OutOfMemoryError`, :class:`~freezebench.errors.StorageError`) so that
the CLI prints a message instead of a traceback, a sweep goes on after the first and stops at the
second. GPU out of memory is ``torch.cuda.OutOfMemoryError``; on the CPU torch raises a
``RuntimeError`` from its allocator, Python a ``MemoryError``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from freezebench import results
from freezebench.config import RunConfig
from freezebench.errors import OutOfMemoryError


def explain_failure(exc: Exception, config: RunConfig) -> Exception:
    """Out of memory and a full disk as errors with advice; anything else as it is."""
    if _out_of_memory(exc):
        where = "GPU" if isinstance(exc, torch.cuda.OutOfMemoryError) else "CPU"
        text = str(exc).strip() or "MemoryError"
        detail = text.split("DefaultCPUAllocator: ", 1)[-1].splitlines()[0]
        return OutOfMemoryError(
            f"Out of {where} memory at batch size {config.per_device_train_batch_size} (eval "
            f"{config.per_device_eval_batch_size}), max length {config.max_length or 'auto'}: "
            f"{detail}. Try a smaller --per-device-train-batch-size (and "
            "--per-device-eval-batch-size), a smaller --max-length, --precision bf16, or a "
            "strategy that freezes more.")
    code = _errno(exc)
    if code in results.NO_SPACE:
        where = Path(getattr(exc, "filename", None) or config.output_dir)
        return results.storage_error(where, OSError(code, os.strerror(code)))
    return exc


def _errno(exc: Exception) -> int | None:
    """The errno of a failed system call; tokenizers and safetensors (Rust) raise a plain
    Exception that ends in '(os error N)'."""
    if isinstance(exc, OSError):
        return exc.errno
    found = re.search(r"\(os error (\d+)\)", str(exc))
    return int(found.group(1)) if found else None


def _out_of_memory(exc: BaseException) -> bool:
    """GPU out of memory, or a CPU allocation that failed (torch raises a RuntimeError)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "DefaultCPUAllocator" in str(exc) and \
        "allocate" in str(exc)
