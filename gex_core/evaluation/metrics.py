"""Mislabel-detection metrics of a score against the noise mask."""

from __future__ import annotations

import numpy as np

# The ranking metrics below are scikit-learn's (roc_curve with drop_intermediate,
# precision_recall_curve, roc_auc_score, average_precision_score), written in numpy
# because importing sklearn.metrics costs every detection job over a second;
# tests/test_metrics.py checks them against scikit-learn.


def _ranked_counts(mask: np.ndarray, scores: np.ndarray):
    """(false positives, true positives) at each distinct score, highest first: (T,)
    each, T = the number of distinct scores."""
    scores = np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    thresholds = np.r_[np.nonzero(np.diff(ranked))[0], ranked.size - 1]
    tps = np.cumsum(np.asarray(mask, bool)[order], dtype=np.float64)[thresholds]
    return 1 + thresholds - tps, tps


def roc_curve_points(
    mask: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of the ROC curve from (0, 0),
    collinear points dropped, as sklearn.metrics.roc_curve. mask: (N,) bool."""
    fps, tps = _ranked_counts(mask, scores)
    if fps.size > 2:
        corner = np.logical_or(np.diff(fps, 2), np.diff(tps, 2))
        keep = np.r_[True, corner, True]
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1]


def precision_recall_points(
    mask: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) by decreasing recall, ending at (1, 0), as
    sklearn.metrics.precision_recall_curve. mask: (N,) bool."""
    fps, tps = _ranked_counts(mask, scores)
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
    recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]


def roc_auc(mask: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids), as sklearn.metrics.roc_auc_score."""
    fpr, tpr = roc_curve_points(mask, scores)
    return float(np.trapezoid(tpr, fpr))


def average_precision(mask: np.ndarray, scores: np.ndarray) -> float:
    """Step-function area under the precision-recall curve, as
    sklearn.metrics.average_precision_score."""
    precision, recall = precision_recall_points(mask, scores)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


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
        "auc": roc_auc(mask, scores),
        "ap": average_precision(mask, scores),
        "recall_at_noise_rate": recall_at_top(scores, mask, noise_rate),
        "noise_rate": noise_rate,
        "num_noisy": int(mask.sum()),
        "num_samples": int(mask.size),
    }
