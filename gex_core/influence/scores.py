"""The common result of every influence method, and its file format.

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

scores.npz holds self_influence, and test_influence, kernel and query_indices (int64
(Q,), the test samples of the kernel's columns) when present; files without the newer
keys still load (None).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gex_core.io import read_npz, write_npz


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


def save_scores(
    path: str | os.PathLike,
    scores: Scores,
    query_indices: Sequence[int] | np.ndarray | None = None,
) -> None:
    """Write scores.npz; refuses non-finite values so no broken artifact is written.

    With a kernel (N, Q), query_indices (Q,) names its columns' test samples (default
    arange(Q), the workflow's query set) and is written beside it; without a kernel it
    is not written."""
    arrays = {"self_influence": np.asarray(scores.self_influence, np.float64)}
    if scores.test_influence is not None:
        arrays["test_influence"] = np.asarray(scores.test_influence, np.float64)
    if scores.kernel is not None:
        arrays["kernel"] = np.asarray(scores.kernel, np.float64)
    for name, values in arrays.items():
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise FloatingPointError(f"{name} has {bad} non-finite values; not saving")
    if scores.kernel is not None:
        arrays["query_indices"] = _kernel_columns(
            arrays["kernel"], arrays["self_influence"].shape[0], query_indices
        )
    write_npz(path, **arrays)


def _kernel_columns(kernel: np.ndarray, num: int, query_indices) -> np.ndarray:
    """Check the kernel's shape (N, Q) and return its query indices as int64 (Q,)."""
    if kernel.ndim != 2 or kernel.shape[0] != num:
        raise ValueError(f"kernel must be (N={num}, Q), got {kernel.shape}")
    q = kernel.shape[1]
    idx = np.arange(q) if query_indices is None else np.asarray(query_indices)
    if idx.shape != (q,) or (q and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(
            f"query_indices must be {q} integers (one per kernel column), got "
            f"{idx.dtype} {idx.shape}"
        )
    return idx.astype(np.int64)


def _names(path: str | os.PathLike) -> set[str]:
    with np.load(path, allow_pickle=False) as data:
        return set(data.files)


def load_scores(path: str | os.PathLike) -> Scores:
    optional = tuple(k for k in ("test_influence", "kernel") if k in _names(path))
    arrays = read_npz(path, ("self_influence", *optional))
    return Scores(
        arrays["self_influence"], arrays.get("test_influence"), arrays.get("kernel")
    )


def load_query_indices(path: str | os.PathLike) -> np.ndarray | None:
    """The test samples of the kernel's columns, int64 (Q,); None without a kernel."""
    if "query_indices" not in _names(path):
        return None
    return read_npz(path, ("query_indices",))["query_indices"]
