"""RandProj: identity-Hessian influence with Gaussian random projections.

self_n = (1/d) sum_k (g_n^T v_k)^2, an unbiased estimate of ||g_n||^2 since E[v v^T] = I.
test_n = (1/d) sum_k t_k (g_n^T v_k) with t_k = mean_j g'_j^T v_k, an unbiased estimate of
g_te^T g_n (a mean over k for both, unlike the research code's sum for the test score).
kernel[n, j] = (1/d) sum_k (g'_j^T v_k)(g_n^T v_k) for the query test samples j, an
unbiased estimate of g'_j^T g_n (relative error about sqrt(2/d) when g'_j ~ g_n): the same
projections, so its mean over every test sample is test_n exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gex_core.influence.projection import (
    project_gradients,
    projected_scores,
    random_directions,
)
from gex_core.influence.scores import Scores
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss

Params = Any


def randproj_scores(
    apply: Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    key,
    dim: int,
    batch_size: int,
    strategy: str,
    queries: np.ndarray | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Scores:
    """Project train and test gradients at `params` on `dim` directions drawn from key;
    queries: test indices of the kernel's columns (None: no kernel)."""
    directions = random_directions(key, params, dim)
    train_proj = project_gradients(
        apply, params, directions, x_train, y_train, batch_size, strategy, loss
    )
    test_proj = project_gradients(
        apply, params, directions, x_test, y_test, batch_size, strategy, loss
    )
    return projected_scores(train_proj, test_proj, queries)


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"dim": int, "strategy": "jvp" | "vjp"}."""
    x_train, y_train = inputs.scored
    x_test, y_test = inputs.test_set
    return randproj_scores(
        inputs.model.apply,
        inputs.params,
        x_train,
        y_train,
        x_test,
        y_test,
        key=inputs.key("randproj"),
        dim=int(hp["dim"]),
        batch_size=inputs.eval_batch_size,
        strategy=str(hp["strategy"]),
        queries=inputs.query_indices,
        loss=inputs.loss,
    )
