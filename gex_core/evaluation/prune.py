"""Pruning from self-influence: drop the K lowest- (or highest-) scoring samples."""

from __future__ import annotations

import operator

import numpy as np

# "lowest" is the paper's choice: low self-influence samples are the redundant ones.
PRUNE_ORDERS = ("lowest", "highest")


def kept_indices(
    scores: np.ndarray, num_pruned: int, order: str = "lowest"
) -> np.ndarray:
    """Indices kept after removing the `num_pruned` (K) samples with the lowest or
    highest score.

    scores: (N,) finite -> (N - K,) int64, sorted ascending. Ties are broken by index
    for both orders: among equal scores the smaller index is removed first (a stable
    sort on the score, or on its negation for "highest"), so all-equal scores remove
    indices 0..K-1. At least one sample must be kept: 0 <= K < N.
    """
    scores = np.asarray(scores, np.float64)
    num_pruned = operator.index(num_pruned)  # a float K would slice wrongly
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    if order not in PRUNE_ORDERS:
        raise ValueError(
            f"unknown prune order {order!r}; expected one of {PRUNE_ORDERS}"
        )
    if not 0 <= num_pruned < scores.size:
        raise ValueError(
            f"cannot prune {num_pruned} of {scores.size} samples; need "
            f"0 <= K < N to keep at least one"
        )
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {scores.size} scores are not finite (first at index "
            f"{int(np.argmax(bad))}); the pruning order would be arbitrary"
        )
    # Negation keeps equal scores equal, so the stable sort still orders them by index.
    key = scores if order == "lowest" else -scores
    removal_order = np.argsort(key, kind="stable")
    return np.sort(removal_order[num_pruned:]).astype(np.int64)


def num_pruned(fraction: float, num_samples: int) -> int:
    """K = floor(fraction * N), as the research code's integer grid of K; fraction in
    [0, 1). A relative tolerance of 1e-9 absorbs the float product's rounding (0.29 *
    100 = 28.999999999999996 must give 29)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"prune fraction must lie in [0, 1), got {fraction}")
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return int(fraction * num_samples * (1 + 1e-9))
