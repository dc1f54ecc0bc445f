"""Batching: endless shuffled training batches and exact single passes for evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def batch_index_stream(
    num_samples: int, batch_size: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Endless full batches of indices from consecutive random permutations.

    As in the research code (shuffle, repeat, then batch), a batch may straddle an epoch
    boundary, so every batch has the same shape and the step compiles once.
    """
    buffer = np.empty(0, dtype=np.int64)
    while True:
        while buffer.shape[0] < batch_size:
            buffer = np.concatenate([buffer, rng.permutation(num_samples)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def padded_batches(num_samples: int, batch_size: int) -> Iterator[np.ndarray]:
    """Indices covering 0..N-1 exactly once, in order, in batches of one fixed size.

    The last batch is padded by repeating index N-1; callers keep the first
    `num_samples` results. One shape means one compilation.
    """
    for start in range(0, num_samples, batch_size):
        idx = np.arange(start, start + batch_size)
        yield np.minimum(idx, num_samples - 1)


def batched_map(
    fn: Callable[..., Any], arrays: tuple[np.ndarray, ...], batch_size: int
):
    """Apply a per-batch `fn(*batch_arrays)` over every sample exactly once.

    arrays: each of leading size N. `fn` returns an array (B, ...) or a tuple of them;
    the result is the matching (N, ...) host array or tuple. `fn` should be jitted; it
    sees batches of exactly min(batch_size, N) rows.
    """
    num_samples = arrays[0].shape[0]
    size = min(batch_size, num_samples)
    outputs = [
        fn(*(a[idx] for a in arrays)) for idx in padded_batches(num_samples, size)
    ]
    if isinstance(outputs[0], tuple):
        return tuple(
            np.concatenate([np.asarray(o[i]) for o in outputs])[:num_samples]
            for i in range(len(outputs[0]))
        )
    return np.concatenate([np.asarray(o) for o in outputs])[:num_samples]


def sample_batches(
    num_samples: int, num_batches: int, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """(num_batches, min(batch_size, N)) shuffled training indices, consecutive batches
    of `batch_index_stream` (curvature estimates, batch-norm statistics): no sample
    repeats until every sample has been used once."""
    if num_batches < 1 or batch_size < 1:
        raise ValueError(
            f"need num_batches >= 1 and batch_size >= 1, got {num_batches}, {batch_size}"
        )
    stream = batch_index_stream(num_samples, min(batch_size, num_samples), rng)
    return np.stack([next(stream) for _ in range(num_batches)])
