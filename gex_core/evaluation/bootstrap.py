"""Paired bootstrap confidence intervals of the difference in detection quality
(ROC-AUC or AP) between two methods scored on the same samples.

Each resample draws the training samples of every seed with replacement, the same draw
for both methods (paired), and computes the mean over seeds of metric(a) - metric(b).
The interval is the percentile interval of those means. A resample in which some seed
holds only one class (no AUC) is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from gex_core.evaluation.metrics import average_precision, roc_auc

METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auc": roc_auc,
    "ap": average_precision,
}


class Interval(NamedTuple):
    """delta: the difference on the samples as they are (mean over seeds); low, high:
    the percentile interval; resamples: how many were used; skipped: resamples with a
    single class in some seed."""

    delta: float
    low: float
    high: float
    resamples: int
    skipped: int


def seed_deltas(
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    rows: Sequence[np.ndarray],
    metric: str,
) -> float | None:
    """Mean over seeds of metric(mask, a) - metric(mask, b) on the given rows of each
    seed (rows[s]: indices into seed s's samples); None when some seed's rows hold a
    single class."""
    score = METRICS[metric]
    deltas = []
    for a, b, mask, idx in zip(scores_a, scores_b, masks, rows, strict=True):
        truth = np.asarray(mask, bool)[idx]
        if truth.all() or not truth.any():
            return None
        deltas.append(
            score(truth, np.asarray(a)[idx]) - score(truth, np.asarray(b)[idx])
        )
    return float(np.mean(deltas))


def paired_bootstrap(
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    metric: str = "auc",
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The `level` percentile interval of the mean-over-seeds difference of `metric`
    between methods a and b: scores_a[s], scores_b[s] and masks[s] are (N_s,) arrays of
    seed s (higher score = more likely noisy; mask True = noisy)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if not len(scores_a) == len(scores_b) == len(masks) > 0:
        raise ValueError("need the same number (>= 1) of seeds for a, b and the masks")
    rng = np.random.default_rng(seed)
    everything = [np.arange(np.shape(m)[0]) for m in masks]
    observed = seed_deltas(scores_a, scores_b, masks, everything, metric)
    if observed is None:
        raise ValueError("some seed has only one class: the metric is undefined")
    draws, skipped = [], 0
    for _ in range(resamples):
        rows = [rng.integers(0, n.size, n.size) for n in everything]
        delta = seed_deltas(scores_a, scores_b, masks, rows, metric)
        if delta is None:
            skipped += 1
        else:
            draws.append(delta)
    if not draws:
        raise ValueError("every resample held a single class")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(observed, float(low), float(high), len(draws), skipped)
