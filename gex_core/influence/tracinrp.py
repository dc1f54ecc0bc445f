"""TracIn-CP with random projections: RandProj averaged over the trajectory checkpoints.

One set of d directions v_k ~ N(0, I) (stream "tracinrp") is shared by all T checkpoints,
as in the research code (spec 8.5); per checkpoint the RandProj self and test scores
(`projection.projected_scores`, both means over k) are computed, then averaged with
the checkpoint weights of `tracin.py` (ones, or eta_t / mean(eta) with LR weights; the
research code had none). The kernel of the query test samples is averaged the same way
from each checkpoint's projected kernel, so its mean over every test sample is the test
score. Unbiased for exact TracIn; the relative error of the self score is about
sqrt(2/d). Gradients are projected in batches of at most `tracin.GRAD_BATCH_SIZE`
(per-sample gradients hold B x P floats).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from gex_core.influence.projection import (
    project_gradients,
    projected_scores,
    random_directions,
)
from gex_core.influence.scores import Scores
from gex_core.influence.tracin import (
    combine_checkpoints,
    gradient_batch_size,
    trajectory_weights,
)
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss

Params = Any


def tracinrp_from_directions(
    apply: Callable,
    checkpoints: Sequence[Params],
    weights: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    directions: Params,
    batch_size: int,
    strategy: str,
    queries: np.ndarray | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Scores:
    """T checkpoints, weights (T,), directions (leaves with a leading (d,)) -> self and
    test influence (N,) and the kernel (N, Q) of the query test indices (None without
    queries), every checkpoint projected on the same directions."""
    if len(checkpoints) != len(weights):
        raise ValueError(f"{len(checkpoints)} checkpoints but {len(weights)} weights")
    per_ckpt = []
    for params in checkpoints:
        train_proj = project_gradients(
            apply, params, directions, x_train, y_train, batch_size, strategy, loss
        )
        test_proj = project_gradients(
            apply, params, directions, x_test, y_test, batch_size, strategy, loss
        )
        per_ckpt.append(projected_scores(train_proj, test_proj, queries))
    return combine_checkpoints(per_ckpt, weights)


def tracinrp_scores(
    apply: Callable,
    checkpoints: Sequence[Params],
    weights: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    key: jax.Array,
    dim: int,
    batch_size: int,
    strategy: str,
    queries: np.ndarray | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Scores:
    """`tracinrp_from_directions` with `dim` directions drawn once from `key`."""
    # The directions depend only on parameter shapes, shared by every checkpoint.
    directions = random_directions(key, checkpoints[0], dim)
    return tracinrp_from_directions(
        apply,
        checkpoints,
        weights,
        x_train,
        y_train,
        x_test,
        y_test,
        directions=directions,
        batch_size=batch_size,
        strategy=strategy,
        queries=queries,
        loss=loss,
    )


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"dim": int (20), "lr_weights": bool (false), "strategy":
    "jvp" | "vjp" ("vjp")}."""
    x_train, y_train = inputs.scored
    x_test, y_test = inputs.test_set
    return tracinrp_scores(
        inputs.model.apply,
        inputs.trajectory,
        trajectory_weights(inputs, bool(hp.get("lr_weights", False))),
        x_train,
        y_train,
        x_test,
        y_test,
        key=inputs.key("tracinrp"),
        dim=int(hp.get("dim", 20)),
        batch_size=gradient_batch_size(inputs.eval_batch_size),
        strategy=str(hp.get("strategy", "vjp")),
        queries=inputs.query_indices,
        loss=inputs.loss,
    )
