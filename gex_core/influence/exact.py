"""Exact influence: the explicit damped Hessian inverse, the test suite's ground truth.

H = Hessian of the mean training loss over ALL N training samples at theta* (noisy
labels, no augmentation, no weight decay) + damping * I, in float64;
self_n = g_n^T H^{-1} g_n and test_n = g_te^T H^{-1} g_n with g_te the gradient of the
mean test loss (positive = helpful, scores.py), and for the query test samples j the
kernel[n, j] = g_j^T H^{-1} g_n with explicit per-sample query gradients (its mean over
every test sample is test_n). None is divided by N: the first-order change of l_n when
sample n is removed from a mean-loss objective is self_n / N.

Damping plays the role of weight decay. Pretraining minimises
mean_n l_n + weight_decay * 0.5 * ||theta||^2, whose Hessian is exactly H_loss +
weight_decay * I, so the default damping (None) is the recipe's weight_decay: the
influence function of the objective that was actually trained. A larger damping
regularises a non-convex H; damping 0 gives the plain loss Hessian.

Cost: O(N P^2) for the Hessian (forward-over-reverse per batch), O(P^3) for the
eigendecomposition, O(N P) memory for per-sample gradients. Refused above `max_params`
parameters (default 5,000: a 5,000^2 float64 Hessian is 200 MB and its
eigendecomposition takes seconds) before any gradient is computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gex_core.influence.hessian import (
    dataset_hessian,
    flat_per_sample_grads,
    mean_gradient,
)
from gex_core.influence.scores import Scores, as_query_indices
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss

Params = Any
DEFAULT_MAX_PARAMS = 5_000
# Samples per batch of the dense Hessian accumulation: it pushes 512 basis tangents at
# a time through the batch's activations (memory ~ 512 * batch * activations).
HESSIAN_BATCH = 32


def check_size(num_params: int, max_params: int) -> None:
    """Refuse a model whose explicit P x P Hessian is above the limit."""
    if num_params > max_params:
        raise ValueError(
            f"exact: the model has {num_params:,} parameters, above the limit "
            f"max_params={max_params:,} (the explicit Hessian would hold "
            f"{num_params**2:,} float64 entries); use arnoldi or lissa, or raise "
            "influence.exact.max_params"
        )


def inverse_scores(
    grads: np.ndarray,
    test_grad: np.ndarray,
    hessian: np.ndarray,
    damping: float,
    query_grads: np.ndarray | None = None,
) -> Scores:
    """grads (N, P), test_grad (P,), hessian (P, P) -> self g^T (H + dI)^{-1} g and test
    g_te^T (H + dI)^{-1} g_n, through the eigendecomposition (float64); with
    query_grads (Q, P) also the kernel g_j^T (H + dI)^{-1} g_n (N, Q).

    Raises on a (numerically) singular matrix; warns, but keeps going, when it has
    negative eigenvalues (a non-convex point with too little damping), where the
    influence is still defined but self-influence can be negative.
    """
    damped = np.asarray(hessian, np.float64) + damping * np.eye(hessian.shape[0])
    values, vectors = np.linalg.eigh((damped + damped.T) / 2)
    spread = np.abs(values).max()
    if np.abs(values).min() <= 1e-12 * spread:
        raise np.linalg.LinAlgError(
            f"exact: the damped Hessian is singular (eigenvalues in "
            f"[{values.min():.3g}, {values.max():.3g}], damping {damping:g}); "
            "increase damping"
        )
    negative = int((values < 0).sum())
    if negative:
        warnings.warn(
            f"exact: the damped Hessian has {negative} negative eigenvalues (smallest "
            f"{values.min():.3g}, damping {damping:g}); self-influence can be negative",
            stacklevel=2,
        )
    proj = np.asarray(grads, np.float64) @ vectors
    test_proj = np.asarray(test_grad, np.float64) @ vectors
    scaled = proj / values
    kernel = None
    if query_grads is not None and len(query_grads):
        kernel = scaled @ (np.asarray(query_grads, np.float64) @ vectors).T
    return Scores(
        self_influence=np.sum(proj * scaled, axis=1),
        test_influence=scaled @ test_proj,
        kernel=kernel,
    )


def exact_scores(
    apply: Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    damping: float,
    max_params: int = DEFAULT_MAX_PARAMS,
    batch_size: int = 256,
    queries: np.ndarray | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Scores:
    """Exact self and test influence (N,) of every training sample, and the kernel
    (N, Q) of the query test indices (None without queries), computed in float64
    whatever the dtype of params. batch_size: per-sample gradient batches (memory)."""
    num_params = int(ravel_pytree(params)[0].shape[0])
    check_size(num_params, max_params)
    if damping < 0:
        raise ValueError(f"exact: damping must be >= 0, got {damping}")
    queries = as_query_indices(queries, x_test.shape[0])
    query_grads = None
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x_train = np.asarray(x_train, np.float64)
        x_test = np.asarray(x_test, np.float64)
        hessian = dataset_hessian(
            apply, params64, x_train, y_train, HESSIAN_BATCH, loss=loss
        )
        grads = flat_per_sample_grads(
            apply, params64, x_train, y_train, batch_size, loss
        )
        mean_test = mean_gradient(apply, params64, x_test, y_test, batch_size, loss)
        test_grad = np.asarray(ravel_pytree(mean_test)[0], np.float64)
        if queries.size:
            query_grads = flat_per_sample_grads(
                apply, params64, x_test[queries], y_test[queries], batch_size, loss
            )
    return inverse_scores(grads, test_grad, hessian, damping, query_grads)


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"damping": float | None (None: the recipe's weight_decay),
    "max_params": int}. The size check runs on the parameter shapes, before the
    checkpoint or any gradient is touched."""
    max_params = int(hp.get("max_params", DEFAULT_MAX_PARAMS))
    # counted from the shapes: no checkpoint or gradient is touched before refusing
    check_size(inputs.num_params, max_params)
    damping = hp.get("damping")
    damping = float(inputs.recipe["weight_decay"] if damping is None else damping)
    x_train, y_train = inputs.train_set
    x_test, y_test = inputs.test_set
    return exact_scores(
        inputs.model.apply,
        inputs.params,
        x_train,
        y_train,
        x_test,
        y_test,
        damping=damping,
        max_params=max_params,
        batch_size=inputs.eval_batch_size,
        queries=inputs.query_indices,
        loss=inputs.loss,
    )
