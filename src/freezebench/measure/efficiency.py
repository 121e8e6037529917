"""The record's efficiency block: time, throughput, memory, FLOPs, cache use and cost."""

from __future__ import annotations

from dataclasses import dataclass

from freezebench.measure.memory import PeakMemory
from freezebench.record import Efficiency, MemoryUse, PrefixBuild

TIMING_METHOD = "measured wall time of the training steps, evaluation excluded"


@dataclass(frozen=True)
class CacheUse:
    """What a run did with the frozen-prefix cache."""

    hit: bool
    build_seconds: float   # the builds this run did, all splits
    bytes: int             # the states read, all splits
    train_builds: tuple[PrefixBuild, ...] = ()  # what the training split's states came from
    train_bytes: int = 0   # the training split's states, which training reads

    @classmethod
    def unused(cls) -> CacheUse:
        return cls(hit=False, build_seconds=0.0, bytes=0)


def efficiency(
    *, train_seconds: float, samples: int, tokens: int, steps: int, memory: PeakMemory,
    tensors: MemoryUse, flops: dict[str, float], cache: CacheUse, eval_samples: int,
    eval_seconds: float, evaluation_seconds: float, precision: str, dropout_masks: str,
    world_size: int, effective_train_batch_size: int, price_per_hour: float,
) -> Efficiency:
    """The record's efficiency block. Cost bills what this run did (training and the cache
    builds it made) on every device; the standalone figures add the whole frozen forward over
    the training split, whoever built it."""
    hours = (train_seconds + cache.build_seconds) * world_size / 3600.0
    return Efficiency(
        train_seconds=train_seconds,
        train_samples_per_second=samples / train_seconds,
        train_tokens_per_second=tokens / train_seconds,
        eval_samples_per_second=eval_samples / max(eval_seconds, 1e-9),
        evaluation_seconds=evaluation_seconds,
        peak_memory_mb=memory.megabytes, memory_kind=memory.kind,
        train_flops=flops["train_flops"], train_flops_naive=flops["train_flops_naive"],
        cache_build_flops=flops["cache_build_flops"],
        cache_hit=cache.hit, cache_build_seconds=cache.build_seconds, cache_bytes=cache.bytes,
        timing_method=TIMING_METHOD, precision=precision, dropout_masks=dropout_masks,
        steps=steps, world_size=world_size,
        effective_train_batch_size=effective_train_batch_size,
        device_hours=hours, price_per_hour=price_per_hour, cost_usd=hours * price_per_hour,
        standalone_train_seconds=train_seconds + sum(b.seconds for b in cache.train_builds),
        standalone_train_flops=flops["train_flops"] + sum(b.flops for b in cache.train_builds),
        prefix_builds=list(cache.train_builds), memory=tensors,
    )
