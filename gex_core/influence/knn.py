"""Logit-space k-nearest-neighbour label disagreement, averaged over the trajectory.

At each trajectory checkpoint t: F = train logits (N, C); for each n, the k training
samples nearest to F[n] in squared Euclidean distance, *excluding n itself*, give
ybar_n = the mean one-hot noisy label of the neighbours, and score_t[n] =
||ybar_n - onehot(y~_n)||^2. The score is the mean over checkpoints.

Differences from the research code (spec 8.12, 14.13): the sample is excluded from its
own neighbours (including it adds the sample's own label to the vote, 1/k of it, and
every sample is its own nearest neighbour); any N works (chunks need not divide N); the
checkpoints are the run's trajectory, not five hard-coded ones. k = 0 means N / C
rounded, the research code's choice; k is capped at N - 1. Memory O(chunk * N). Ties in
distance at the k-th neighbour are broken by `np.argpartition` (deterministic). No test
influence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gex_core.influence.scores import Scores
from gex_core.training.models import Model
from gex_core.training.steps import evaluate, make_eval_fn

Params = Any


def resolve_k(k: int, num_samples: int, num_classes: int) -> int:
    """k, or round(N / C) for k = 0, capped at N - 1 neighbours."""
    if k < 0:
        raise ValueError(f"knn k must be >= 0 (0 = N/C), got {k}")
    if num_samples < 2:
        raise ValueError("knn needs at least two training samples")
    k = k or max(1, round(num_samples / num_classes))
    return min(k, num_samples - 1)


def knn_disagreement(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    k: int,
    chunk: int = 256,
) -> np.ndarray:
    """features: (N, D), labels: (N,) int -> ||ybar_n - onehot(y_n)||^2 (N,), with ybar_n
    the mean one-hot label of n's k nearest other samples."""
    feats = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    n = feats.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in 1..N-1 = {n - 1}, got {k}")
    onehot = np.eye(num_classes)[labels]
    sq_norms = np.sum(feats**2, axis=1)
    scores = np.empty(n)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        dist = sq_norms[rows, None] + sq_norms[None, :] - 2.0 * feats[rows] @ feats.T
        dist[np.arange(rows.shape[0]), rows] = np.inf  # never one's own neighbour
        nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
        ybar = onehot[nearest].mean(axis=1)
        scores[rows] = np.sum((ybar - onehot[rows]) ** 2, axis=1)
    return scores


def knn_scores(
    model: Model,
    checkpoints: Sequence[Params],
    x_train: np.ndarray,
    y_train: np.ndarray,
    num_classes: int,
    *,
    k: int,
    batch_size: int,
) -> Scores:
    """Mean over checkpoints of the logit-space kNN disagreement -> self influence (N,)."""
    k = resolve_k(k, x_train.shape[0], num_classes)
    eval_fn = make_eval_fn(model.apply)
    per_ckpt = []
    for params in checkpoints:
        _, logits = evaluate(eval_fn, params, x_train, y_train, batch_size)
        per_ckpt.append(knn_disagreement(logits, y_train, num_classes, k))
    return Scores(self_influence=np.mean(per_ckpt, axis=0))


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"k": int (0 = N / C)}."""
    x_train, y_train = inputs.train_set
    return knn_scores(
        inputs.model,
        inputs.trajectory,
        x_train,
        y_train,
        inputs.num_classes,
        k=int(hp.get("k", 0)),
        batch_size=inputs.eval_batch_size,
    )
