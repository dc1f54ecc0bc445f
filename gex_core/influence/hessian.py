"""Curvature of the training loss: the one Hessian-vector product of the project.

Every Hessian-based method (arnoldi, lissa, exact) differentiates the same objective,
the mean softmax cross-entropy under the noisy labels at theta*, without augmentation
and without weight decay; a Tikhonov `damping * I` is added explicitly by the method
that wants it, never hidden inside the loss.

Two curvature operators:
- the *fixed batch set*: `num_batches` batches of `batch_size` samples drawn once from a
  seeded generator, the same at every HVP, so Arnoldi and LiSSA see one deterministic
  symmetric operator (the research code drew a fresh augmented batch per HVP, which
  makes the operator stochastic and the Krylov recursion meaningless);
- the *whole training set* (exact), accumulated over padded batches with weights.

All functions follow the dtype of `params`: pass float64 params and inputs under
`jax.enable_x64(True)` for ground-truth checks, float32 for real models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gex_core.training.batching import padded_batches
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss, per_sample_grads

Params = Any


def hvp(loss_fn: Callable[[Params], jax.Array], params: Params, v: Params) -> Params:
    """H v with H = d^2 loss_fn / d params^2, as the JVP of the gradient (forward over
    reverse: one extra forward-mode pass, no P x P matrix). v: pytree like params."""
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def weighted_loss(
    apply: Callable, params: Params, x, y, w, loss: Loss = SOFTMAX_CROSS_ENTROPY
) -> jax.Array:
    """sum_i w_i l_i over one batch. x: (B, ...), y: (B,), w: (B,) -> scalar. Weights
    1/B give the batch mean; 1/N on the real rows and 0 on padding give one batch's share
    of a data-set mean, so every operator below compiles once per batch shape."""
    return jnp.sum(w * loss.per_sample(apply(params, x), y))


@functools.cache
def _batch_hvp(apply: Callable, loss: Loss) -> Callable:
    """Jitted fn(params, v, x, y, w) -> H v, H the Hessian of the weighted batch loss.
    Cached per apply so every method and call reuses one compilation per shape."""

    @jax.jit
    def fn(params, v, x, y, w):
        return hvp(lambda p: weighted_loss(apply, p, x, y, w, loss), params, v)

    return fn


@functools.cache
def _batch_hvp_many(apply: Callable, loss: Loss) -> Callable:
    """Jitted fn(params, V, x, y, w) -> H V for a pytree V with a leading axis S
    (the HVP vmapped over the S tangents)."""

    @jax.jit
    def fn(params, vs, x, y, w):
        def batch_loss(p):
            return weighted_loss(apply, p, x, y, w, loss)

        # params are not batched, so XLA evaluates the primal gradient pass once
        return jax.vmap(lambda v: hvp(batch_loss, params, v))(vs)

    return fn


def fixed_batch_hvp(
    apply: Callable,
    params: Params,
    x_batches: np.ndarray,
    y_batches: np.ndarray,
    v: Params,
    *,
    many: bool = False,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Params:
    """H v with H the Hessian of the mean loss over the fixed batch set.

    x_batches: (num_batches, B, ...), y_batches: (num_batches, B). All batches have
    the same size, so the mean of batch means is the mean over the set. A Python loop
    over batches (not lax.scan) because a conv inside scan is ~30x slower on CPU
    (DESIGN.md section 8). many=True: v has a leading axis S and H is applied to each.
    """
    fn = (_batch_hvp_many if many else _batch_hvp)(apply, loss)
    num_batches, size = y_batches.shape[:2]
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    w = jnp.full((size,), 1.0 / (num_batches * size), dtype)
    total = None
    for xb, yb in zip(x_batches, y_batches, strict=True):
        out = fn(params, v, xb, yb, w)
        total = out if total is None else jax.tree.map(jnp.add, total, out)
    return total


@functools.cache
def _flat_batch_hvp(apply: Callable, loss: Loss) -> Callable:
    """Jitted fn(params, v (P,), x, y, w) -> H v (P,): ravel and unravel inside the jit,
    so a matvec on flat vectors dispatches one compiled call per batch."""

    @jax.jit
    def fn(params, v, x, y, w):
        flat, unravel = ravel_pytree(params)
        out = hvp(
            lambda p: weighted_loss(apply, p, x, y, w, loss),
            params,
            unravel(v.astype(flat.dtype)),
        )
        return ravel_pytree(out)[0]

    return fn


def fixed_batch_operator(
    apply: Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    batches: np.ndarray,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """The fixed-batch Hessian as a map on flat host vectors, (P,) -> (P,) float64, and
    P. batches: (num_batches, B) indices. The Krylov bookkeeping runs in float64 on the
    host whatever the model's dtype; batch results are summed in float64."""
    flat = ravel_pytree(params)[0]
    dtype = flat.dtype
    num_batches, size = batches.shape
    x_batches = [
        jnp.asarray(x_train[b], dtype=_float_dtype(x_train, dtype)) for b in batches
    ]
    y_batches = [jnp.asarray(y_train[b]) for b in batches]
    w = jnp.full((size,), 1.0 / (num_batches * size), dtype)
    fn = _flat_batch_hvp(apply, loss)

    def matvec(v: np.ndarray) -> np.ndarray:
        vj = jnp.asarray(v, dtype)
        # dispatch every batch before reading any result (JAX runs them asynchronously)
        outs = [
            fn(params, vj, xb, yb, w)
            for xb, yb in zip(x_batches, y_batches, strict=True)
        ]
        return np.sum([np.asarray(o, np.float64) for o in outs], axis=0)

    return matvec, int(flat.shape[0])


def _float_dtype(x: np.ndarray, param_dtype) -> Any:
    """Inputs follow the parameters' float precision (float64 ground-truth checks)."""
    return param_dtype if np.issubdtype(x.dtype, np.floating) else x.dtype


def start_vector(key: jax.Array, size: int) -> np.ndarray:
    """A unit vector (size,) float64, Gaussian direction, determined by the JAX key.
    Drawn by NumPy from the key's data: jax.random.normal would compile once per size."""
    seed = np.asarray(jax.random.key_data(key), np.uint32).ravel()
    q = np.random.default_rng(seed).normal(size=size)
    return q / np.linalg.norm(q)


def power_iteration(
    matvec: Callable[[np.ndarray], np.ndarray],
    size: int,
    key: jax.Array,
    iterations: int = 20,
) -> float:
    """Estimate of the spectral radius max |lambda| of a symmetric operator, by
    ||H q|| at the last normalised iterate (a lower bound that converges from below)."""
    q = start_vector(key, size)
    radius = 0.0
    for _ in range(iterations):
        w = matvec(q)
        radius = float(np.linalg.norm(w))
        if radius == 0.0:
            break
        q = w / radius
    return radius


def dense_hessian(loss_fn: Callable[[Params], jax.Array], params: Params) -> jax.Array:
    """The explicit (P, P) Hessian of loss_fn at params (ravel_pytree + jax.hessian).
    Memory O(P^2 + P * activations): tiny models only."""
    flat, unravel = ravel_pytree(params)
    # jitted: eager jacfwd(jacrev) dispatches thousands of tiny ops (~100x slower)
    return jax.jit(jax.hessian(lambda f: loss_fn(unravel(f))))(flat)


def _padding_weights(idx: np.ndarray, num: int, dtype) -> np.ndarray:
    """1/num on the first occurrence of each index of a padded batch, 0 on the padding
    (padded_batches repeats index N-1), so padded batches sum to the data-set mean."""
    w = np.zeros(idx.shape[0], dtype)
    _, first = np.unique(idx, return_index=True)
    w[first] = 1.0 / num
    return w


def dataset_hessian(
    apply: Callable,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    chunk: int = 512,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> np.ndarray:
    """(P, P) Hessian of the mean loss over every sample of (x, y), float64 on the host.

    Built column block by column block as H E for `chunk` basis vectors at a time, over
    padded batches of `batch_size` samples: memory O(P^2 + chunk * batch activations)
    whatever N is, and the same compiled HVP as the iterative methods.
    """
    flat, unravel = ravel_pytree(params)
    size_p = flat.shape[0]
    num = x.shape[0]
    size = min(batch_size, num)
    x = np.asarray(x, _float_dtype(x, flat.dtype))
    fn = _batch_hvp_many(apply, loss)
    to_flat = jax.vmap(lambda t: ravel_pytree(t)[0])
    total = np.zeros((size_p, size_p), np.float64)
    for start in range(0, size_p, chunk):
        cols = np.arange(start, min(start + chunk, size_p))
        basis = jax.vmap(unravel)(jnp.eye(size_p, dtype=flat.dtype)[cols])
        for idx in padded_batches(num, size):
            w = _padding_weights(idx, num, flat.dtype)
            block = to_flat(fn(params, basis, x[idx], y[idx], w))
            total[cols] += np.asarray(block, np.float64)
    return total


@functools.cache
def _flat_per_sample_grads(apply: Callable, loss: Loss) -> Callable:
    """Jitted fn(params, x, y) -> flat per-sample gradients (B, P)."""
    grads = per_sample_grads(apply, loss)

    @jax.jit
    def fn(params, x, y):
        return jax.vmap(lambda g: ravel_pytree(g)[0])(grads(params, x, y))

    return fn


def flat_per_sample_grads(
    apply: Callable,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> np.ndarray:
    """(N, P) float64 host array of g_n = grad l_n(params), every sample exactly once.
    Memory N * P: for the small models of `exact` only."""
    flat = ravel_pytree(params)[0]
    x = np.asarray(x, _float_dtype(x, flat.dtype))
    fn = _flat_per_sample_grads(apply, loss)
    num = x.shape[0]
    size = min(batch_size, num)
    out = [
        np.asarray(fn(params, x[i], y[i]), np.float64)
        for i in padded_batches(num, size)
    ]
    return np.concatenate(out)[:num]


def per_sample_gradient_tree(
    apply: Callable,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Params:
    """g_n for every sample of (x, y) as a pytree like params with a leading axis N, on
    the device (N * P floats: for a few samples, such as a kernel's queries)."""
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    x = np.asarray(x, _float_dtype(x, dtype))
    num = x.shape[0]
    fn = per_sample_grads(apply, loss)
    parts = [fn(params, x[i], y[i]) for i in padded_batches(num, min(batch_size, num))]
    return jax.tree.map(lambda *a: jnp.concatenate(a)[:num], *parts)


def mean_gradient(
    apply: Callable,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Params:
    """Gradient of the mean loss over every sample of (x, y), a pytree like params
    (used for the mean test gradient g_te of test influence)."""
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    x = np.asarray(x, _float_dtype(x, dtype))
    num = x.shape[0]
    size = min(batch_size, num)
    fn = _weighted_grad(apply, loss)
    total = None
    for idx in padded_batches(num, size):
        w = _padding_weights(idx, num, dtype)
        g = fn(params, x[idx], y[idx], w)
        total = g if total is None else jax.tree.map(jnp.add, total, g)
    return total


@functools.cache
def _weighted_grad(apply: Callable, loss: Loss) -> Callable:
    """Jitted fn(params, x, y, w) -> gradient of the weighted batch loss (pytree)."""

    @jax.jit
    def fn(params, x, y, w):
        return jax.grad(lambda p: weighted_loss(apply, p, x, y, w, loss))(params)

    return fn
