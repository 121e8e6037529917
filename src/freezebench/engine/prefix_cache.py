"""The frozen-prefix cache: compute frozen layers once, reuse their outputs everywhere.

Frozen bottom units run in inference mode (no dropout, no autograd), so their output is a pure
function of the input tokens. The cache stores, per split, the hidden states at a unit boundary
for every example, unpadded and packed (``states[offsets[i]:offsets[i+1]]`` is example ``i``).
At the top boundary (all blocks frozen) one vector per example is kept, what the head reads of it
(its first or last token, or the mean over its tokens: the run's pooling, part of the key).

Entries are keyed by everything that determines them: the backbone's weights, the data's
fingerprint, the tokenizer and maximum length, the split, the boundary, the dtype, the device type
and the pooling. A deeper boundary is built from the deepest shallower one already cached, so a
sweep over ``bottom`` depths makes one pass over the data. Entries live in memory up to a byte
budget and, with a cache folder, in ``.npy`` files that are memory-mapped back (plain arrays, never
pickles); without one, an entry too big for the budget goes to a temporary folder the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Build:
    """One pass that computed cached states: from one boundary's states (0: the tokens) to
    another's, and how long it took."""

    key: str
    from_boundary: int
    to_boundary: int
    seconds: float


@dataclass
class CachedStates:
    """Hidden states of one split at one boundary, packed without padding, and the builds they
    came from, shallow to deep (a deeper boundary is built from a shallower one's states)."""

    states: torch.Tensor    # [total_positions, hidden]
    offsets: torch.Tensor   # [examples + 1], int64
    pooled: bool            # one vector per example (after the last block)
    builds: tuple[Build, ...] = ()

    @property
    def nbytes(self) -> int:
        return self.states.numel() * self.states.element_size() + self.offsets.numel() * 8

    def pieces(self, indices: list[int]) -> list[torch.Tensor]:
        """The states of each example of ``indices``, ``[length, hidden]`` each."""
        return [self.states[self.offsets[i]: self.offsets[i + 1]] for i in indices]

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded states ``[batch, width, hidden]`` and their attention mask for ``indices``."""
        pieces = self.pieces(indices)
        hidden = pad_sequence(pieces, batch_first=True)
        lengths = torch.tensor([len(p) for p in pieces])
        mask = (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).long()
        return hidden, mask


def weights_digest(modules: list[torch.nn.Module]) -> str:
    """A digest of the parameters and buffers of ``modules`` (what the prefix computes with)."""
    digest = hashlib.blake2b(digest_size=16)
    for module in modules:
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            digest.update(name.encode())
            data = tensor.detach().cpu().contiguous()
            # the array itself (a buffer): .tobytes() copied each tensor first, a large
            # model's embedding matrix (0.5 GiB for Qwen2-0.5B) held twice while hashing
            digest.update(data.view(torch.uint8).numpy() if data.numel() else b"")
    return digest.hexdigest()


def cache_key(**parts: object) -> str:
    canonical = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


class PrefixCacheStore:
    """In-memory LRU of cached states under a byte budget, backed by a folder.

    With ``folder`` every entry is also written there (and found again by later processes). An
    entry larger than the memory budget is kept memory-mapped from disk: from ``folder``, or else
    from a temporary folder that lives as long as the store.
    """

    def __init__(self, memory_budget_bytes: int, folder: str | Path | None = None):
        self.memory_budget = memory_budget_bytes
        self.folder = Path(folder) if folder else None
        self._spill: tempfile.TemporaryDirectory | None = None
        self._entries: OrderedDict[str, CachedStates] = OrderedDict()

    def get(self, key: str) -> CachedStates | None:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        for folder in self._folders():
            entry = load_entry(folder, key)
            if entry is not None:
                self._remember(key, entry)
                return entry
        return None

    def put(self, key: str, entry: CachedStates) -> None:
        if self.folder is not None:
            save_entry(self.folder, key, entry)
        elif entry.nbytes > self.memory_budget:
            if self._spill is None:
                self._spill = tempfile.TemporaryDirectory(prefix="freezebench-prefix-cache-")
            save_entry(Path(self._spill.name), key, entry)
        self._remember(key, entry)

    def memory_bytes(self) -> int:
        """Bytes of the entries held in memory (memory-mapped ones are not counted)."""
        return sum(e.nbytes for e in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()

    def _folders(self) -> list[Path]:
        return [f for f in (self.folder, self._spill and Path(self._spill.name)) if f is not None]

    def _remember(self, key: str, entry: CachedStates) -> None:
        if entry.nbytes <= self.memory_budget:
            self._entries[key] = entry
            while self.memory_bytes() > self.memory_budget and len(self._entries) > 1:
                self._entries.popitem(last=False)


def _entry_paths(folder: Path, key: str) -> tuple[Path, Path, Path]:
    return (folder / f"{key}.states.npy", folder / f"{key}.offsets.npy", folder / f"{key}.json")


def save_entry(folder: Path, key: str, entry: CachedStates) -> None:
    """Write ``entry`` as two ``.npy`` arrays and a JSON file, each atomically, the JSON last."""
    states_path, offsets_path, meta_path = _entry_paths(folder, key)
    folder.mkdir(parents=True, exist_ok=True)
    raw = entry.states.cpu()
    if raw.dtype == torch.bfloat16:  # numpy has no bfloat16: store the bits
        raw = raw.view(torch.int16)
    # Temp names are per process: trials on one node may write the same entry at once.
    for path, array in ((states_path, raw.numpy()), (offsets_path, entry.offsets.numpy())):
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, array, allow_pickle=False)
        os.replace(tmp, path)
    meta = {"dtype": str(entry.states.dtype).removeprefix("torch."), "pooled": entry.pooled,
            "builds": [dataclasses.asdict(build) for build in entry.builds]}
    tmp = meta_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)  # written last: its presence marks a complete entry


def load_entry(folder: Path, key: str) -> CachedStates | None:
    """The entry saved under ``key`` with its states memory-mapped, or ``None``."""
    states_path, offsets_path, meta_path = _entry_paths(folder, key)
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        states = torch.from_numpy(np.load(states_path, mmap_mode="c", allow_pickle=False))
        offsets = torch.from_numpy(np.load(offsets_path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring unreadable prefix-cache entry %s: %s", key, exc)
        return None
    if meta["dtype"] == "bfloat16":
        states = states.view(torch.bfloat16)
    builds = tuple(Build(**build) for build in meta.get("builds", []))
    pooled = meta["pooled"] if "pooled" in meta else meta["cls_only"]  # older entries
    return CachedStates(states, offsets, bool(pooled), builds)


def default_memory_budget() -> int:
    """A quarter of the memory available now (the rest stays for the model and the data)."""
    import psutil

    return int(psutil.virtual_memory().available * 0.25)


_STORES: dict[str, PrefixCacheStore] = {}


def shared_store(folder: str | None) -> PrefixCacheStore:
    """The process-wide store for ``folder`` (so runs of a sweep in one process share entries)."""
    name = str(Path(folder).resolve()) if folder else ""
    if name not in _STORES:
        _STORES[name] = PrefixCacheStore(default_memory_budget(), folder)
    return _STORES[name]
