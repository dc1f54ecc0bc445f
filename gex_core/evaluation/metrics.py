"""Mislabel-detection metrics of a score against the noise mask."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def check_detection_inputs(scores: np.ndarray, mask: np.ndarray) -> None:
    """Refuse what would make AUC/AP meaningless: shape mismatch, NaN/inf, one class."""
    if scores.shape != mask.shape:
        raise ValueError(f"{scores.shape[0]} scores for {mask.shape[0]} samples")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {scores.size} scores are not finite (first at index "
            f"{int(np.argmax(bad))}); detection metrics would be meaningless"
        )
    if mask.all() or not mask.any():
        raise ValueError(
            "the noise mask has a single class (no noisy or no clean samples); "
            "detection needs noise ratio > 0"
        )


def recall_at_top(scores: np.ndarray, mask: np.ndarray, fraction: float) -> float:
    """Share of noisy samples among the top round(fraction*N) scores (ties by index)."""
    k = max(1, round(fraction * scores.size))
    top = np.argsort(-scores, kind="stable")[:k]
    return float(mask[top].sum() / mask.sum())


def detection_metrics(scores: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """ROC-AUC, AP and recall of noisy labels in the top q% (q = the measured noise rate).

    scores: (N,) higher = more likely mislabeled; mask: (N,) bool, True = label changed.
    """
    scores = np.asarray(scores, np.float64)
    mask = np.asarray(mask, bool)
    check_detection_inputs(scores, mask)
    noise_rate = float(mask.mean())
    return {
        "auc": float(roc_auc_score(mask, scores)),
        "ap": float(average_precision_score(mask, scores)),
        "recall_at_noise_rate": recall_at_top(scores, mask, noise_rate),
        "noise_rate": noise_rate,
        "num_noisy": int(mask.sum()),
        "num_samples": int(mask.size),
    }
