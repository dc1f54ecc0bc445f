"""The label-issue table: which training labels look wrong, and what they should be.

One row per training sample, most suspicious first: its given label, the label the
model suggests instead (the most probable *other* class under the model's predicted
probabilities), that class's probability, the influence score and its rank, and whether
the score is above the flagging threshold (the Otsu threshold of the scores, as the
relabel experiment uses). A flag says the sample influences the model the way a
mislabeled sample does; it does not prove the label is wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gex_core.evaluation.relabel import otsu_threshold

COLUMNS = (
    "index",
    "given_label",
    "suggested_label",
    "suggested_probability",
    "score",
    "rank",
    "flagged",
)


def suggested_labels(
    probs: np.ndarray, given: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The most probable class other than the given one, and its probability.

    probs: (N, C) class probabilities; given: (N,) int labels -> ((N,) int, (N,))."""
    probs = np.asarray(probs, np.float64)
    given = np.asarray(given)
    if probs.ndim != 2 or probs.shape[0] != given.shape[0]:
        raise ValueError(
            f"probabilities {probs.shape} do not match {given.shape[0]} labels"
        )
    others = probs.copy()
    others[np.arange(given.shape[0]), given] = -np.inf
    suggested = others.argmax(axis=1)
    return suggested, probs[np.arange(given.shape[0]), suggested]


def label_issue_table(
    scores: np.ndarray,
    given: np.ndarray,
    probs: np.ndarray,
    threshold: float | None = None,
) -> pd.DataFrame:
    """The table of COLUMNS, sorted by score (highest first; ties by index).

    scores: (N,) self-influence (higher = more suspicious); given: (N,) labels; probs:
    (N, C) the model's class probabilities; threshold: flag scores above it (default:
    `otsu_threshold(scores)`). rank 1 is the most suspicious sample.
    """
    scores = np.asarray(scores, np.float64)
    if scores.shape != np.shape(given):
        raise ValueError(f"{scores.shape[0]} scores for {np.shape(given)[0]} labels")
    threshold = otsu_threshold(scores) if threshold is None else float(threshold)
    suggested, probability = suggested_labels(probs, given)
    order = np.lexsort((np.arange(scores.shape[0]), -scores))
    return pd.DataFrame(
        {
            "index": order,
            "given_label": np.asarray(given)[order],
            "suggested_label": suggested[order],
            "suggested_probability": probability[order],
            "score": scores[order],
            "rank": np.arange(1, scores.shape[0] + 1),
            "flagged": scores[order] > threshold,
        }
    )
