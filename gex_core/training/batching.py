"""Batching: endless shuffled training batches and exact single passes for evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from gex_core.training.devices import batch_sharding, data_mesh, per_device, replicate


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
    fn: Callable[..., Any],
    arrays: tuple[np.ndarray, ...],
    batch_size: int,
    mesh: Mesh | None = None,
    consts: tuple[Any, ...] = (),
):
    """Apply a per-batch `fn(*consts, *batch_arrays)` over every sample exactly once,
    data-parallel over the mesh's devices (default: every local device).

    arrays: each of leading size N; consts: arrays or pytrees every batch shares
    (parameters, directions), placed on the devices once. `fn` returns an array
    (B, ...) or a tuple of them, row b depending on row b of the batch alone; the
    result is the matching (N, ...) host array or tuple. `fn` should be jitted. Batches
    have B = batch_size rows rounded up to a multiple of the device count, even when
    N is smaller (padding rows are dropped): one shape whatever N, so a shard of rows
    whose start is a multiple of B is computed in exactly the batches of the whole; with several devices each runs fn on its B / n rows
    (`devices.per_device`: give a long-lived fn with consts rather than a fresh
    closure, or each call compiles anew). On one device fn gets the host batches
    directly, exactly as without a mesh.
    """
    mesh = data_mesh() if mesh is None else mesh
    num_samples = arrays[0].shape[0]
    size = -(-batch_size // mesh.size) * mesh.size
    sharding = batch_sharding(mesh, size)
    if sharding is None:
        run, consts = fn, jax.device_put(consts)
    else:
        run = per_device(fn, mesh, len(consts), len(arrays))
        consts = replicate(consts, mesh)

    def batch(idx: np.ndarray) -> tuple:
        start = int(idx[0])
        # a full batch is a contiguous slice: a view, not a host copy of the rows
        rows = slice(start, start + size) if idx[-1] == start + size - 1 else idx
        parts = tuple(a[rows] for a in arrays)
        return parts if sharding is None else jax.device_put(parts, sharding)

    # Dispatch every batch before reading any result back, then fetch them together,
    # so device work, transfers and the host loop overlap (jit calls are async).
    outputs = jax.device_get(
        [run(*consts, *batch(idx)) for idx in padded_batches(num_samples, size)]
    )
    if isinstance(outputs[0], tuple):
        return tuple(
            np.concatenate([o[i] for o in outputs])[:num_samples]
            for i in range(len(outputs[0]))
        )
    return np.concatenate(outputs)[:num_samples]


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
