"""TracIn-CP with exact per-sample gradients (Pruthi et al. 2020).

self_n = mean_t w_t ||g_n(theta_t)||^2 and test_n = mean_t w_t gbar_te(theta_t)^T g_n(theta_t)
over the T trajectory checkpoints, with g_n the gradient of sample n's loss (noisy label,
no weight decay) and gbar_te the gradient of the mean test loss. Positive test influence =
a gradient step on sample n lowers the test loss (helpful), as `scores.py` states.

Checkpoint weights: w_t = 1 (the research code, spec 8.6) or, with LR weights, w_t =
eta_t / mean(eta), so the score is TracIn's sum_t eta_t g^T g' up to one constant. eta_t is
the learning rate at the end of checkpoint t's epoch (`Problem.trajectory_lrs`); with
a cosine schedule the final checkpoint's eta is 0, so LR weights drop it.

Kernel (queries j): kernel[n, j] = mean_t w_t g_j(theta_t)^T g_n(theta_t), g_j the
gradient of query test sample j's loss; its mean over every test sample is test_n. The
Q query gradients of a checkpoint are computed once and dotted with each training
gradient in the same pass as the mean test gradient (Q * P more floats held).

Memory: per-sample gradients exist one batch at a time (B x P); only the (N,) squared
norms and the (N, 1 + Q) inner products are kept, never an N x P matrix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gex_core.influence.hessian import mean_gradient, per_sample_gradient_tree
from gex_core.influence.scores import Scores, as_query_indices
from gex_core.training.batching import batched_map
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss, per_sample_grads

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
    """values: (T, ...) (scores (T, N) or kernels (T, N, Q)), weights: (T,) ->
    mean_t w_t values[t] (...)."""
    values = np.asarray(values, np.float64)
    weights = np.asarray(weights, np.float64).reshape((-1,) + (1,) * (values.ndim - 1))
    return np.mean(weights * values, axis=0)


def combine_checkpoints(per_ckpt: Sequence[Scores], weights: np.ndarray) -> Scores:
    """Per-checkpoint scores (T of them) -> their weighted mean, field by field (self,
    test and kernel alike; a field absent at the checkpoints stays None)."""
    if len(per_ckpt) != len(weights):
        raise ValueError(f"{len(per_ckpt)} checkpoints but {len(weights)} weights")
    return Scores(
        *(
            None
            if getattr(per_ckpt[0], field) is None
            else weighted_checkpoint_mean(
                [getattr(s, field) for s in per_ckpt], weights
            )
            for field in Scores._fields
        )
    )


@functools.cache
def _make_grad_stats(apply: Callable, loss: Loss) -> Callable:
    """Jitted fn(params, directions (D, ...), x (B, ...), y (B,)) -> (||g_b||^2 (B,),
    g_b^T directions (B, D)), leaf by leaf so no flattened B x P copy is made."""

    @jax.jit
    def grad_stats(params, directions, x, y):
        grads = per_sample_grads(apply, loss)(params, x, y)
        g_leaves = jax.tree_util.tree_leaves(grads)
        d_leaves = jax.tree_util.tree_leaves(directions)
        batch, num = x.shape[0], d_leaves[0].shape[0]
        sq = sum(jnp.sum(jnp.square(g).reshape(batch, -1), axis=1) for g in g_leaves)
        # full float32 products (no TF32/bf16 passes on accelerators)
        dot = sum(
            jnp.matmul(
                g.reshape(batch, -1),
                d.reshape(num, -1).T,
                precision=jax.lax.Precision.HIGHEST,
            )
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
    queries: np.ndarray | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Scores:
    """At one checkpoint: ||g_n||^2 (N,), gbar_te^T g_n (N,) and g_j^T g_n (N, Q) for
    the query test indices (None without queries)."""
    queries = as_query_indices(queries, x_test.shape[0])
    directions = jax.tree.map(
        lambda a: a[None],
        mean_gradient(apply, params, x_test, y_test, batch_size, loss),
    )
    if queries.size:
        query_grads = per_sample_gradient_tree(
            apply, params, x_test[queries], y_test[queries], batch_size, loss
        )
        directions = jax.tree.map(
            lambda a, b: jnp.concatenate([a, b]), directions, query_grads
        )
    stats = _make_grad_stats(apply, loss)
    sq, dots = batched_map(
        stats, (x_train, y_train), batch_size, consts=(params, directions)
    )
    dots = np.asarray(dots, np.float64)
    return Scores(sq, dots[:, 0], dots[:, 1:] if queries.size else None)


def tracin_scores(
    apply: Callable,
    checkpoints: Sequence[Params],
    weights: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    batch_size: int,
    queries: np.ndarray | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Scores:
    """Exact TracIn over T checkpoints with weights (T,) -> self and test influence (N,),
    and the kernel (N, Q) of the query test indices (None without queries)."""
    if len(checkpoints) != len(weights):
        raise ValueError(f"{len(checkpoints)} checkpoints but {len(weights)} weights")
    per_ckpt = [
        checkpoint_scores(
            apply, p, x_train, y_train, x_test, y_test, batch_size, queries, loss
        )
        for p in checkpoints
    ]
    return combine_checkpoints(per_ckpt, weights)


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"lr_weights": bool} (default false)."""
    x_train, y_train = inputs.scored
    x_test, y_test = inputs.test_set
    weights = trajectory_weights(inputs, bool(hp.get("lr_weights", False)))
    return tracin_scores(
        inputs.model.apply,
        inputs.trajectory,
        weights,
        x_train,
        y_train,
        x_test,
        y_test,
        gradient_batch_size(inputs.eval_batch_size),
        queries=inputs.query_indices,
        loss=inputs.loss,
    )
