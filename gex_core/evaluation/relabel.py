"""Relabeling from self-influence: flag likely-mislabeled samples, give them new targets.

Flagging uses Otsu's threshold of the self-influence scores (higher = more likely
mislabeled); the flagged samples get hard (argmax) or soft (RDIA-style) targets, or
every sample gets the model's predicted distribution, and the model is retrained.
"""

from __future__ import annotations

import numpy as np


def otsu_threshold(scores: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of (N,) scores: scikit-image's `threshold_otsu`, re-implemented.

    Histogram of `bins` equal bins over [min, max]; each cut after bin i splits the
    samples into bins <= i and bins > i (every sample represented by its bin center),
    and the threshold is the center of the bin i maximising the between-class
    variance w1 * w2 * (m1 - m2)**2 (first maximum on ties). All-equal scores return
    that value, so `scores > threshold` flags nothing. Float32 scores stay float32,
    as in scikit-image, so both give the same bin edges.

    The threshold is a bin center, so `scores > threshold` also flags the samples in
    the upper half of its own bin: across an empty gap between two modes every cut
    ties, the first wins, and a few samples at the top of the lower mode are flagged.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(
            f"need a non-empty 1-D array of scores, got shape {scores.shape}"
        )
    if bins < 2:
        raise ValueError(f"need at least 2 bins for a cut, got {bins}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {scores.size} scores are not finite (first at index "
            f"{int(np.argmax(bad))}); Otsu's threshold would be meaningless"
        )
    if np.all(scores == scores[0]):
        return float(scores[0])
    counts, edges = np.histogram(scores, bins=bins, range=(scores.min(), scores.max()))
    centers = (edges[:-1] + edges[1:]) / 2
    # scikit-image holds the counts in float32; keeping that makes w1 * w2 (and, for
    # float32 scores, the class means) round alike, so near-tied cuts resolve alike.
    counts = counts.astype(np.float32)
    # Class sizes and means for every cut; the first bin holds the minimum and the
    # last the maximum, so no class is ever empty and the divisions are safe.
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(counts * centers) / weight1
    mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    # Cut i pairs class 1 = bins [0, i] with class 2 = bins [i + 1, bins).
    variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centers[np.argmax(variance12)])


def flag_above_otsu(scores: np.ndarray, bins: int = 256) -> np.ndarray:
    """(N,) scores -> (N,) bool, True where the score is above Otsu's threshold."""
    scores = np.asarray(scores)
    return scores > otsu_threshold(scores, bins)


def check_target_inputs(probs: np.ndarray, labels: np.ndarray, flagged: np.ndarray):
    """Refuse mismatched shapes, labels outside [0, C), non-finite probabilities and
    fewer than 2 classes. probs: (N, C); labels: (N,) int; flagged: (N,) bool."""
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be (N, C) with C >= 2, got shape {probs.shape}")
    num_samples, num_classes = probs.shape
    if labels.shape != (num_samples,) or flagged.shape != (num_samples,):
        raise ValueError(
            f"probs {probs.shape}, labels {labels.shape} and flagged {flagged.shape} "
            f"must all have N = {num_samples} rows"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if not np.isfinite(probs).all():
        raise ValueError(f"{int((~np.isfinite(probs)).sum())} probabilities not finite")


def hard_targets(
    probs: np.ndarray, labels: np.ndarray, flagged: np.ndarray
) -> np.ndarray:
    """Flagged samples take the predicted class argmax(probs), the others keep their
    label. probs: (N, C); labels: (N,) int; flagged: (N,) bool -> (N,) int32."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    flagged = np.asarray(flagged, bool)
    check_target_inputs(probs, labels, flagged)
    return np.where(flagged, np.argmax(probs, axis=1), labels).astype(np.int32)


def soft_targets(
    probs: np.ndarray,
    labels: np.ndarray,
    flagged: np.ndarray,
    *,
    normalise: bool = True,
    eps: float = 1e-6,
) -> np.ndarray:
    """RDIA-style soft targets (Kong et al. 2021, as the research release) for the
    flagged samples, one-hot of the given label for the others.

    probs: (N, C) model probabilities; labels: (N,) int; flagged: (N,) bool
    -> (N, C) float32.

    For a flagged row with given label y and p_y = probs[y], every other class c gets
    w_c = (log(1 - p_y) / (C - 1)) / log(p_c) and y gets 0. Both logs are negative, so
    w_c > 0, and sum_c w_c * (-log p_c) = -log(1 - p_y): the cross-entropy of the
    unnormalised target under the model's own probabilities is the loss of "not y".
    For numerical safety the probabilities are clipped to [eps, 1 - eps] before the
    logs (the research code added 1e-12 inside the logs and divided by
    log(p_c) + 1e-12, which blows up when some p_c -> 1 and gives -inf at p_y = 1).
    With `normalise` each flagged row is divided by its sum, so it is a distribution
    (nonnegative, sums to 1) with weights proportional to 1 / (-log p_c): more mass
    on the classes the model already finds likely, none on the given label.
    """
    probs, labels = np.asarray(probs), np.asarray(labels)
    flagged = np.asarray(flagged, bool)
    check_target_inputs(probs, labels, flagged)
    num_samples, num_classes = probs.shape
    rows = np.arange(num_samples)
    p = np.clip(probs.astype(np.float64), eps, 1 - eps)
    # log1p keeps log(1 - p_y) accurate when p_y is small.
    log_not_y = np.log1p(-p[rows, labels]) / (num_classes - 1)
    weights = log_not_y[:, None] / np.log(p)
    weights[rows, labels] = 0.0
    if normalise:
        weights /= weights.sum(axis=1, keepdims=True)
    one_hot = np.eye(num_classes)[labels]
    return np.where(flagged[:, None], weights, one_hot).astype(np.float32)


def predicted_targets(probs: np.ndarray) -> np.ndarray:
    """Every sample relabeled by the model's predicted distribution (soft
    self-distillation, the research code's final behaviour). (N, C) -> (N, C) float32,
    rows renormalised to sum to 1 (in float64, before the cast)."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("probabilities must be finite and nonnegative")
    sums = probs.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise ValueError(f"{int((sums <= 0).sum())} rows of probs sum to zero")
    return (probs / sums).astype(np.float32)


def flag_quality(flagged: np.ndarray, noise_mask: np.ndarray) -> dict:
    """How well the flags find the mislabeled samples.

    flagged, noise_mask: (N,) bool (True = flagged / label was changed) -> dict with
    num_flagged, num_noisy (int), precision = share of flagged that are noisy (NaN
    when nothing is flagged) and recall = share of noisy that are flagged (NaN when
    nothing is noisy), as Python floats.
    """
    flagged = np.asarray(flagged, bool)
    noise_mask = np.asarray(noise_mask, bool)
    if flagged.shape != noise_mask.shape or flagged.ndim != 1:
        raise ValueError(
            f"flagged {flagged.shape} and noise_mask {noise_mask.shape} must be the "
            "same 1-D shape"
        )
    num_flagged, num_noisy = int(flagged.sum()), int(noise_mask.sum())
    hits = int((flagged & noise_mask).sum())
    return {
        "num_flagged": num_flagged,
        "num_noisy": num_noisy,
        "precision": hits / num_flagged if num_flagged else float("nan"),
        "recall": hits / num_noisy if num_noisy else float("nan"),
    }
