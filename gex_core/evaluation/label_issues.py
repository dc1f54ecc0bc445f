"""The label-issue table: which training labels look wrong, and what they should be.

One row per training sample, most suspicious first: its given label, the label the
model suggests instead (the most probable *other* class under the model's predicted
probabilities), that class's probability, the influence score and its rank, and whether
the score is above the flagging threshold (the Otsu threshold of the scores, as the
relabel experiment uses). A flag says the sample influences the model the way a
mislabeled sample does; it does not prove the label is wrong.

Where the labels' truth is known (injected noise) the table also carries true_label and
noisy; `seed_aggregate` combines the tables of several seeds; `with_names` turns labels
into class names and adds each image's file.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    true: np.ndarray | None = None,
) -> pd.DataFrame:
    """The table of COLUMNS, sorted by score (highest first; ties by index).

    scores: (N,) self-influence (higher = more suspicious); given: (N,) labels; probs:
    (N, C) the model's class probabilities; threshold: flag scores above it (default:
    `otsu_threshold(scores)`); true: (N,) the clean labels where known, adding the
    columns true_label and noisy (given != true). rank 1 is the most suspicious sample.
    """
    scores = np.asarray(scores, np.float64)
    if scores.shape != np.shape(given):
        raise ValueError(f"{scores.shape[0]} scores for {np.shape(given)[0]} labels")
    threshold = otsu_threshold(scores) if threshold is None else float(threshold)
    suggested, probability = suggested_labels(probs, given)
    order = np.lexsort((np.arange(scores.shape[0]), -scores))
    table = pd.DataFrame(
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
    if true is not None:
        true = np.asarray(true)[order]
        table["true_label"] = true
        table["noisy"] = table["given_label"].to_numpy() != true
    return table


def seed_aggregate(
    tables: Sequence[pd.DataFrame],
    probs: Sequence[np.ndarray],
    true: np.ndarray | None = None,
) -> pd.DataFrame:
    """One table over S seeds' `label_issue_table`s (any row order) and their (N, C)
    probabilities, sorted by mean rank (ties by index).

    Columns: index; given_label where every seed gives every sample the same label;
    suggested_label, the class c maximising the mean over seeds of p_s(c) with each
    seed's given class excluded, and suggested_probability that mean; mean_rank; rank
    (1 = lowest mean rank); flagged_seeds (in how many seeds the sample was flagged) and
    seeds (S). With true (N,) labels: true_label, and noisy (shared labels) or
    noisy_seeds (labels drawn per seed: in how many seeds the given label was wrong).
    """
    if not tables or len(tables) != len(probs):
        raise ValueError(f"{len(tables)} tables for {len(probs)} probability arrays")
    by_index = [t.sort_values("index", kind="stable") for t in tables]
    num = by_index[0].shape[0]
    for t in by_index:
        if not np.array_equal(t["index"].to_numpy(), np.arange(num)):
            raise ValueError("every seed's table must have one row per sample 0..N-1")
    given = np.stack([t["given_label"].to_numpy() for t in by_index])
    excluded = []
    for labels, p in zip(given, probs, strict=True):
        others = np.asarray(p, np.float64).copy()
        if others.shape[0] != num:
            raise ValueError(f"probabilities {others.shape} for {num} samples")
        others[np.arange(num), labels] = 0.0
        excluded.append(others)
    mean_others = np.mean(excluded, axis=0)
    suggested = mean_others.argmax(axis=1)
    mean_rank = np.mean([t["rank"].to_numpy() for t in by_index], axis=0)
    order = np.lexsort((np.arange(num), mean_rank))
    shared = bool((given == given[0]).all())
    table = pd.DataFrame({"index": order})
    if shared:
        table["given_label"] = given[0][order]
    table["suggested_label"] = suggested[order]
    table["suggested_probability"] = mean_others[np.arange(num), suggested][order]
    table["mean_rank"] = mean_rank[order]
    table["rank"] = np.arange(1, num + 1)
    flagged = np.sum([t["flagged"].to_numpy() for t in by_index], axis=0)
    table["flagged_seeds"] = flagged[order]
    table["seeds"] = len(tables)
    if true is not None:
        true = np.asarray(true)
        table["true_label"] = true[order]
        noisy = (given != true[None, :]).sum(axis=0)
        if shared:
            table["noisy"] = noisy[order] > 0
        else:
            table["noisy_seeds"] = noisy[order]
    return table


LABEL_COLUMNS = ("given_label", "suggested_label", "true_label")


def with_names(
    table: pd.DataFrame,
    class_names: Sequence[str] | None = None,
    files: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The table with its label columns as class names (class_names: (C,)), and a file
    column after index (files: (N,) each sample's image file) where given."""
    table = table.copy()
    if class_names is not None:
        names = np.asarray(class_names, dtype=object)
        for column in LABEL_COLUMNS:
            if column in table:
                table[column] = names[table[column].to_numpy()]
    if files is not None:
        table.insert(1, "file", np.asarray(files, dtype=object)[table["index"]])
    return table
