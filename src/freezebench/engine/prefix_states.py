"""Build or fetch the frozen-prefix states of each split (the store:
:mod:`freezebench.engine.prefix_cache`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from freezebench.engine.batching import SplitInputs, batch_order, iter_batches
from freezebench.engine.precision import autocast
from freezebench.engine.prefix_cache import Build, CachedStates, PrefixCacheStore, cache_key
from freezebench.measure.timing import Stopwatch
from freezebench.model.staged import StagedForward

logger = logging.getLogger(__name__)

_BUILD_BATCH = 64


@dataclass(frozen=True)
class PrefixContext:
    """What, besides the split and the boundary, determines the cached states."""

    unit_digests: tuple[str, ...]   # weights of embeddings, blocks[0], blocks[1], ...
    data_fingerprint: str
    tokenizer: str
    max_length: int
    precision: str
    device_type: str
    pooling: str                    # what the states after the last block hold
    last_boundary: int              # the boundary after the last block

    def key(self, split: str, boundary: int) -> str:
        """Depends only on the units below ``boundary`` (adapters above it do not matter), and
        on the pooling only after the last block (below it every pooling reads the same states)."""
        parts = {**self.__dict__, "unit_digests": self.unit_digests[:boundary]}
        del parts["last_boundary"]
        if boundary < self.last_boundary:
            del parts["pooling"]
        return cache_key(split=split, boundary=boundary, **parts)


@dataclass
class PrefixOutcome:
    """The states of every split, and what this run built of them."""

    entries: dict[str, CachedStates]
    build_seconds: float   # the builds this run did, all splits
    hit: bool              # every split's states were there already
    bytes: int
    built: set[str]        # keys of the entries this run built

    def builds(self, split: str) -> list[tuple[Build, bool]]:
        """The builds ``split``'s states came from, shallow to deep, each with whether this run
        did it."""
        return [(build, build.key in self.built) for build in self.entries[split].builds]


def prefix_states(
    *, staged: StagedForward, splits: dict[str, SplitInputs], boundary: int,
    store: PrefixCacheStore, context: PrefixContext, device: torch.device, precision: str,
) -> PrefixOutcome:
    """The states at ``boundary`` for every split, from the store or computed (and stored)."""
    entries, seconds, built = {}, 0.0, set()
    for split, inputs in splits.items():
        key = context.key(split, boundary)
        entry = store.get(key)
        if entry is None:
            start_boundary, start = _deepest_below(store, context, split, boundary)
            with Stopwatch(device) as watch:
                entry = build_states(staged, inputs, boundary, device, precision,
                                     start=start, start_boundary=start_boundary)
            seconds += watch.seconds
            earlier = start.builds if start is not None else ()
            entry.builds = (*earlier, Build(key, start_boundary, boundary, watch.seconds))
            built.add(key)
            store.put(key, entry)
            logger.info("Cached %s at boundary %d from %d: %.1f MB in %.2fs", split, boundary,
                        start_boundary, entry.nbytes / 2**20, watch.seconds)
        entries[split] = entry
    return PrefixOutcome(entries, seconds, not built, sum(e.nbytes for e in entries.values()),
                         built)


def _deepest_below(store: PrefixCacheStore, context: PrefixContext, split: str, boundary: int
                   ) -> tuple[int, CachedStates | None]:
    for candidate in range(boundary - 1, 0, -1):
        entry = store.get(context.key(split, candidate))
        if entry is not None and not entry.pooled:
            return candidate, entry
    return 0, None


def build_states(
    staged: StagedForward, inputs: SplitInputs, boundary: int, device: torch.device,
    precision: str, *, start: CachedStates | None = None, start_boundary: int = 0,
) -> CachedStates:
    """Run the frozen prefix over a split in inference mode and pack the unpadded states; after
    the last block, what the head reads of each example (one token, or the mean)."""
    pooled = boundary == staged.num_boundaries
    order = batch_order(inputs.lengths, _BUILD_BATCH, shuffle=False, seed=0, epoch=0,
                        group_by_length=True)
    source = SplitInputs(inputs.dataset, inputs.collator, cached=start)
    pieces: dict[int, torch.Tensor] = {}
    modules = [*staged.embedding_modules, *staged.blocks]
    modes = [m.training for m in modules]
    for module in modules:
        module.eval()
    with torch.inference_mode(), autocast(device, precision):
        for indices, batch in zip(order, iter_batches(source, order, device), strict=True):
            read = batch.readout(staged.pooling) if pooled else None
            if batch.hidden is not None:
                block_inputs = staged.block_inputs(batch.hidden, batch.attention_mask)
                hidden = staged.run_blocks(batch.hidden, block_inputs, start_boundary - 1,
                                           boundary - 1, read)
            else:
                hidden = staged.to_boundary(batch.tokens, boundary, read=read)
            hidden = hidden.cpu()
            for row, index in enumerate(indices):
                length = 1 if pooled else int(inputs.lengths[index])
                pieces[index] = hidden[row, :length].clone()
    for module, mode in zip(modules, modes, strict=True):
        module.train(mode)
    ordered = [pieces[i] for i in range(len(inputs.lengths))]
    sizes = torch.tensor([0] + [len(p) for p in ordered])
    return CachedStates(torch.cat(ordered), torch.cumsum(sizes, 0), pooled)
