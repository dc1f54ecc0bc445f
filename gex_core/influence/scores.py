"""The common result of every influence method.

Sign conventions (used by every method):
- self_influence (N,): higher means the sample is more self-influential, read as more
  likely mislabeled.
- test_influence (N,): influence of each training sample on the mean test loss, positive
  when training on the sample *lowers* the test loss (helpful, TracIn's convention),
  negative when it is harmful. NaN-free; absent (None) where a method defines none.
- kernel (N, Q): kernel[n, j] = influence of training sample n on the loss of query j
  (test sample query_indices[j]), with test_influence's sign (positive = helpful).
  Absent (None) where a method defines none or no query was asked for. For the methods
  linear in the test loss, the mean of the kernel over *all* test samples is
  test_influence.

The workflow stores them as scores.npz (`gex_core.workflow.artifacts.save_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Scores(NamedTuple):
    self_influence: np.ndarray
    test_influence: np.ndarray | None = None
    kernel: np.ndarray | None = None


def as_query_indices(queries: Sequence[int] | np.ndarray | None, num_test: int):
    """Validated query set: int64 (Q,) indices into the N_te test samples (Q may be 0;
    None = no queries)."""
    idx = np.asarray([] if queries is None else queries)
    if idx.size == 0:
        return np.zeros(0, np.int64)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"query indices must be a 1-D integer array, got {idx!r}")
    if idx.min() < 0 or idx.max() >= num_test:
        raise ValueError(
            f"query indices must lie in 0..{num_test - 1}, got {idx.min()}..{idx.max()}"
        )
    return idx.astype(np.int64)
