"""The common result of every influence method, and its file format.

Sign conventions (used by every method):
- self_influence (N,): higher means the sample is more self-influential, read as more
  likely mislabeled.
- test_influence (N,): influence of each training sample on the mean test loss, positive
  when training on the sample *lowers* the test loss (helpful, TracIn's convention),
  negative when it is harmful. NaN-free; absent (None) where a method defines none.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from gex_core.io import read_npz, write_npz


class Scores(NamedTuple):
    self_influence: np.ndarray
    test_influence: np.ndarray | None = None


def save_scores(path: str | os.PathLike, scores: Scores) -> None:
    """Write scores.npz; refuses non-finite values so no broken artifact is written."""
    arrays = {"self_influence": np.asarray(scores.self_influence, np.float64)}
    if scores.test_influence is not None:
        arrays["test_influence"] = np.asarray(scores.test_influence, np.float64)
    for name, values in arrays.items():
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise FloatingPointError(f"{name} has {bad} non-finite values; not saving")
    write_npz(path, **arrays)


def load_scores(path: str | os.PathLike) -> Scores:
    with np.load(path, allow_pickle=False) as data:
        names = data.files
    keys = (
        ("self_influence", "test_influence")
        if "test_influence" in names
        else ("self_influence",)
    )
    arrays = read_npz(path, keys)
    return Scores(arrays["self_influence"], arrays.get("test_influence"))
