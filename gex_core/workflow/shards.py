"""Deterministic training-set shards for scoring: shard i holds rows
[i * size, min(N, (i + 1) * size)). Pure Python: the Snakefile uses it at parse time."""

from __future__ import annotations


def num_shards(num_samples: int, shard_size: int) -> int:
    """ceil(N / size) shards (at least one)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return max(1, -(-num_samples // shard_size))


def shard_rows(index: int, shard_size: int, num_samples: int) -> tuple[int, int]:
    """(start, stop) training rows of shard `index`."""
    count = num_shards(num_samples, shard_size)
    if not 0 <= index < count:
        raise ValueError(
            f"shard {index} does not exist: {num_samples} samples in shards of "
            f"{shard_size} make shards 0..{count - 1}"
        )
    start = index * shard_size
    return start, min(num_samples, start + shard_size)
