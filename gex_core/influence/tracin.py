"""TracIn-CP with exact per-sample gradients (Pruthi et al. 2020).

self_n = mean_t w_t ||g_n(theta_t)||^2 and test_n = mean_t w_t gbar_te(theta_t)^T g_n(theta_t)
over the T trajectory checkpoints, with g_n the gradient of sample n's loss (noisy label,
no weight decay) and gbar_te the gradient of the mean test loss. Positive test influence =
a gradient step on sample n lowers the test loss (helpful), as `scores.py` states.

Checkpoint weights: w_t = 1 (the research code, spec 8.6) or, with LR weights, w_t =
eta_t / mean(eta), so the score is TracIn's sum_t eta_t g^T g' up to one constant. eta_t is
the learning rate at the end of checkpoint t's epoch (`MethodInputs.trajectory_lrs`); with
a cosine schedule the final checkpoint's eta is 0, so LR weights drop it.

Memory: per-sample gradients exist one batch at a time (B x P); only the (N,) squared
norms and inner products are kept, never an N x P matrix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gex_core.batching import batched_map
from gex_core.influence.hessian import mean_gradient
from gex_core.influence.scores import Scores
from gex_core.losses import per_sample_grads

Params = Any

# Per-sample gradients hold B x P floats per batch; eval_batch_size is sized for forward
# passes. On the digits CNN (P = 151k, 2 CPU cores) 128 is twice as fast as 512.
GRAD_BATCH_SIZE = 128


def gradient_batch_size(eval_batch_size: int) -> int:
    """Batch size for per-sample gradients: eval_batch_size, capped at GRAD_BATCH_SIZE."""
    return min(int(eval_batch_size), GRAD_BATCH_SIZE)


def lr_checkpoint_weights(lrs: np.ndarray) -> np.ndarray:
    """(T,) learning rates -> (T,) weights eta_t / mean(eta)."""
    lrs = np.asarray(lrs, np.float64)
    if lrs.ndim != 1 or np.any(lrs < 0) or lrs.sum() <= 0:
        raise ValueError(
            f"LR weights need non-negative learning rates with a positive sum, got {lrs}"
        )
    return lrs / lrs.mean()


def trajectory_weights(inputs, lr_weights: bool) -> np.ndarray:
    """(T,) checkpoint weights of a run: ones, or LR weights (reads history.tsv only
    when asked)."""
    if lr_weights:
        return lr_checkpoint_weights(inputs.trajectory_lrs)
    return np.ones(len(inputs.trajectory))


def weighted_checkpoint_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """values: (T, N), weights: (T,) -> mean_t w_t values[t] (N,)."""
    values = np.asarray(values, np.float64)
    return np.mean(np.asarray(weights, np.float64)[:, None] * values, axis=0)


@functools.cache
def _make_grad_stats(apply: Callable) -> Callable:
    """Jitted fn(params, direction, x (B, ...), y (B,)) -> (||g_b||^2 (B,), g_b^T direction
    (B,)), summed leaf by leaf so no flattened B x P copy is made."""

    @jax.jit
    def grad_stats(params, direction, x, y):
        grads = per_sample_grads(apply)(params, x, y)
        g_leaves = jax.tree_util.tree_leaves(grads)
        d_leaves = jax.tree_util.tree_leaves(direction)
        batch = x.shape[0]
        sq = sum(jnp.sum(jnp.square(g).reshape(batch, -1), axis=1) for g in g_leaves)
        dot = sum(
            jnp.sum((g * d[None]).reshape(batch, -1), axis=1)
            for g, d in zip(g_leaves, d_leaves, strict=True)
        )
        return sq, dot

    return grad_stats


def checkpoint_scores(
    apply: Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """At one checkpoint: ||g_n||^2 (N,) and gbar_te^T g_n (N,)."""
    test_grad = mean_gradient(apply, params, x_test, y_test, batch_size)
    stats = _make_grad_stats(apply)
    return batched_map(
        lambda xb, yb: stats(params, test_grad, xb, yb), (x_train, y_train), batch_size
    )


def tracin_scores(
    apply: Callable,
    checkpoints: Sequence[Params],
    weights: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    batch_size: int,
) -> Scores:
    """Exact TracIn over T checkpoints with weights (T,) -> self and test influence (N,)."""
    if len(checkpoints) != len(weights):
        raise ValueError(f"{len(checkpoints)} checkpoints but {len(weights)} weights")
    per_ckpt = [
        checkpoint_scores(apply, p, x_train, y_train, x_test, y_test, batch_size)
        for p in checkpoints
    ]
    return Scores(
        self_influence=weighted_checkpoint_mean([s for s, _ in per_ckpt], weights),
        test_influence=weighted_checkpoint_mean([t for _, t in per_ckpt], weights),
    )


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"lr_weights": bool} (default false)."""
    data = inputs.data
    weights = trajectory_weights(inputs, bool(hp.get("lr_weights", False)))
    return tracin_scores(
        inputs.model.apply,
        inputs.trajectory,
        weights,
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        gradient_batch_size(inputs.eval_batch_size),
    )
