"""What a failure means to the user: out of memory and a full disk become errors with advice."""

from __future__ import annotations

import errno

import pytest
import torch

from freezebench.config import RunConfig
from freezebench.errors import DataError, OutOfMemoryError, StorageError
from freezebench.failures import explain_failure

CONFIG = RunConfig(per_device_train_batch_size=32, per_device_eval_batch_size=64, max_length=256,
                   output_dir="results")


def test_a_real_cpu_allocation_failure_reads_as_out_of_memory():
    with pytest.raises(RuntimeError) as info:
        torch.empty(2**61, dtype=torch.uint8)  # 2 EiB: no machine has it, the allocator says so
    error = explain_failure(info.value, CONFIG)
    assert isinstance(error, OutOfMemoryError)
    assert str(error).startswith("Out of CPU memory at batch size 32 (eval 64), max length 256: ")
    assert "you tried to allocate 2305843009213693952 bytes" in str(error)
    assert "--per-device-train-batch-size" in str(error) and "--precision bf16" in str(error)


def test_gpu_out_of_memory_gets_the_same_advice():
    """The CUDA exception class itself (a real GPU out of memory needs a GPU: not here)."""
    error = explain_failure(torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79 GiB"),
        CONFIG)
    assert isinstance(error, OutOfMemoryError)
    assert str(error).startswith("Out of GPU memory at batch size 32 (eval 64), max length 256: "
                                 "CUDA out of memory. Tried to allocate 2.00 GiB.")
    assert "--precision bf16" in str(error)
    assert isinstance(explain_failure(MemoryError(), CONFIG), OutOfMemoryError)


@pytest.mark.parametrize("exc,path", [
    (OSError(errno.ENOSPC, "No space left on device", "results/models/x/model.safetensors"),
     "results/models/x/model.safetensors"),
    (Exception("File too large (os error 27)"), "results"),  # what tokenizers (Rust) raise
])
def test_a_full_disk_reads_as_a_storage_error(exc, path):
    error = explain_failure(exc, CONFIG)
    assert isinstance(error, StorageError)
    assert str(error).startswith(f"Could not write '{path}': [Errno ")
    assert "Free disk space" in str(error)


@pytest.mark.parametrize("exc", [DataError("bad row"), RuntimeError("a bug"),
                                 OSError(errno.ENOENT, "No such file"), KeyError("x")])
def test_anything_else_is_left_as_it_is(exc):
    assert explain_failure(exc, CONFIG) is exc
