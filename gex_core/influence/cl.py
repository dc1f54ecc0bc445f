"""Confident learning's label-quality score on cross-fitted predictions (Northcutt et al.).

The training set is split into `folds` folds stratified by the noisy label (rng("cl")).
For each fold f a fresh model (init key("cl", f), data order rng("cl", 1, f)) is trained
on the other folds with the pretraining recipe: recipe epochs over that smaller set, the
LR schedule built for its own number of steps. It predicts fold f, so every sample is
scored by a model that never trained on it: score_n = 1 - p_hat_{y~_n}(x_n) (cleanlab's
"self_confidence" quality, negated so that higher = more likely mislabeled).

Fixes of the research code (spec 8.11, 14.9): it scored only the last fold's samples
(the others got the constant 1 - 1/C), and trained each fold for twice its epochs with a
schedule built for the full set. No test influence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from gex_core.influence.scores import Scores
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss
from gex_core.training.models import Model
from gex_core.training.recipes import fit_fresh, training_recipe
from gex_core.training.steps import evaluate, make_eval_fn


def stratified_folds(
    labels: np.ndarray, folds: int, rng: np.random.Generator
) -> np.ndarray:
    """(N,) fold id in 0..folds-1 per sample; each label's samples are dealt round-robin
    in random order, so per-label and total fold sizes differ by at most one."""
    labels = np.asarray(labels)
    if not 2 <= folds <= labels.shape[0]:
        raise ValueError(f"cl needs 2 <= folds <= N = {labels.shape[0]}, got {folds}")
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    )
    fold = np.empty(labels.shape[0], np.int64)
    fold[order] = np.arange(labels.shape[0]) % folds
    return fold


def self_confidence_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """probs: (N, C) out-of-fold probabilities, labels: (N,) noisy -> 1 - p[n, y~_n]."""
    return 1.0 - probs[np.arange(labels.shape[0]), labels]


def out_of_fold_probs(
    model: Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    fold: np.ndarray,
    *,
    init_keys: list[jax.Array],
    order_rngs: list[np.random.Generator],
    epochs: int,
    recipe: Mapping[str, Any],
    eval_batch_size: int,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> np.ndarray:
    """(N, C) predicted probabilities, sample n's from the model trained without fold[n].

    fold: (N,) ids 0..F-1; init_keys, order_rngs: one per fold.
    """
    num_folds = int(fold.max()) + 1
    if len(init_keys) != num_folds or len(order_rngs) != num_folds:
        raise ValueError(f"{num_folds} folds need one init key and one rng each")
    eval_fn = make_eval_fn(model.apply, loss)
    probs = None
    for f in range(num_folds):
        held_out = np.flatnonzero(fold == f)
        params = fit_fresh(
            model,
            x_train,
            y_train,
            np.flatnonzero(fold != f),
            init_key=init_keys[f],
            order_rng=order_rngs[f],
            epochs=epochs,
            stage=f"cl fold {f}",
            loss=loss,
            **training_recipe(recipe),
        )
        # Predicting the whole set keeps one compiled shape for every fold; only the
        # held-out rows are kept.
        _, logits = evaluate(eval_fn, params, x_train, y_train, eval_batch_size)
        if probs is None:
            probs = np.full(logits.shape, np.nan)
        probs[held_out] = loss.probabilities(logits[held_out])
    return probs


def cl_scores(
    model: Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    split_rng: np.random.Generator,
    init_keys: list[jax.Array],
    order_rngs: list[np.random.Generator],
    recipe: Mapping[str, Any],
    eval_batch_size: int,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Scores:
    """Self-confidence score (N,) from len(init_keys)-fold cross-fitting."""
    fold = stratified_folds(y_train, len(init_keys), split_rng)
    probs = out_of_fold_probs(
        model,
        x_train,
        y_train,
        fold,
        init_keys=init_keys,
        order_rngs=order_rngs,
        epochs=int(recipe["epochs"]),
        recipe=recipe,
        eval_batch_size=eval_batch_size,
        loss=loss,
    )
    return Scores(self_influence=self_confidence_scores(probs, y_train))


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"folds": int (2)}."""
    folds = int(hp.get("folds", 2))
    x_train, y_train = inputs.train_set
    return cl_scores(
        inputs.model,
        x_train,
        y_train,
        split_rng=inputs.rng("cl"),
        # ids (1, f) for the orders: rng("cl", 0) would equal rng("cl") (NumPy's
        # SeedSequence pads short entropy with zeros).
        init_keys=[inputs.key("cl", f) for f in range(folds)],
        order_rngs=[inputs.rng("cl", 1, f) for f in range(folds)],
        recipe=inputs.recipe,
        eval_batch_size=inputs.eval_batch_size,
        loss=inputs.loss,
    )
