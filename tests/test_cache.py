"""The frozen-prefix cache store: memory budget, disk folder, spill of entries too big to hold."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

from freezebench.engine.prefix_cache import CachedStates, PrefixCacheStore, cache_key


def _entry(rows: int, width: int = 8, dtype=torch.float32, seed: int = 0) -> CachedStates:
    """``rows`` examples of 3 positions each."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(rows * 3, width, generator=generator).to(dtype)
    return CachedStates(states, torch.arange(0, rows * 3 + 1, 3), pooled=False)


def test_memory_budget_evicts_the_least_recently_used():
    one = _entry(4)
    store = PrefixCacheStore(memory_budget_bytes=2 * one.nbytes)
    store.put("a", one)
    store.put("b", _entry(4, seed=1))
    assert store.get("a") is one  # a is now the most recently used
    store.put("c", _entry(4, seed=2))
    assert store.get("b") is None and store.get("a") is one and store.get("c") is not None
    assert store.memory_bytes() <= 2 * one.nbytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_folder_keeps_entries_for_a_later_store(tmp_path, dtype):
    entry = _entry(5, dtype=dtype)
    PrefixCacheStore(10**9, tmp_path).put("k", entry)
    again = PrefixCacheStore(10**9, tmp_path).get("k")  # a new process would see the same
    assert again is not None and again.states.dtype == dtype
    assert torch.equal(again.states, entry.states) and torch.equal(again.offsets, entry.offsets)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json", "k.offsets.npy",
                                                          "k.states.npy"]  # no temp files left


def test_an_entry_too_big_for_memory_is_memory_mapped_from_a_temporary_folder():
    small, big = _entry(2), _entry(50, seed=3)
    store = PrefixCacheStore(memory_budget_bytes=big.nbytes - 1)
    store.put("small", small)
    store.put("big", big)
    folder = Path(store._spill.name)
    assert sorted(p.name for p in folder.iterdir()) == ["big.json", "big.offsets.npy",
                                                        "big.states.npy"]  # only what won't fit
    found = store.get("big")
    assert found is not None and found is not big and torch.equal(found.states, big.states)
    assert store.memory_bytes() == small.nbytes  # the big one is not held in memory
    assert store.get("small") is small
    del store, found
    gc.collect()
    assert not folder.exists()  # the temporary folder goes with the store


def test_an_unreadable_entry_is_ignored(tmp_path, caplog):
    PrefixCacheStore(10**9, tmp_path).put("k", _entry(3))
    (tmp_path / "k.states.npy").write_bytes(b"not an array")
    assert PrefixCacheStore(10**9, tmp_path).get("k") is None
    assert "unreadable prefix-cache entry" in caplog.text


def test_cache_keys_change_with_every_part():
    base = dict(split="train", boundary=3, weights="abc", data="d1")
    key = cache_key(**base)
    assert key == cache_key(**dict(reversed(base.items())))  # order does not matter
    for part, other in [("split", "test"), ("boundary", 4), ("weights", "abd"), ("data", "d2")]:
        assert cache_key(**{**base, part: other}) != key
