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

from gex_core.batching import batch_index_stream, padded_batches
from gex_core.losses import per_sample_loss

Params = Any


def hvp(loss_fn: Callable[[Params], jax.Array], params: Params, v: Params) -> Params:
    """H v with H = d^2 loss_fn / d params^2, as the JVP of the gradient (forward over
    reverse: one extra forward-mode pass, no P x P matrix). v: pytree like params."""
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def batch_loss(apply: Callable, params: Params, x: jax.Array, y: jax.Array):
    """Mean per-sample loss of one batch. x: (B, ...), y: (B,) -> scalar."""
    return jnp.mean(per_sample_loss(apply(params, x), y))


def draw_fixed_batches(
    num_samples: int, num_batches: int, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices (num_batches, min(batch_size, N)) drawn once: consecutive permutations,
    so no sample repeats until every sample has been used once."""
    if num_batches < 1 or batch_size < 1:
        raise ValueError(
            f"need num_batches >= 1 and batch_size >= 1, got {num_batches}, {batch_size}"
        )
    stream = batch_index_stream(num_samples, min(batch_size, num_samples), rng)
    return np.stack([next(stream) for _ in range(num_batches)])


@functools.cache
def _batch_hvp(apply: Callable) -> Callable:
    """Jitted fn(params, v, x, y) -> H_batch v (mean loss of the batch). Cached per
    apply so every method and every call reuses one compilation per shape."""

    @jax.jit
    def fn(params, v, x, y):
        return hvp(lambda p: batch_loss(apply, p, x, y), params, v)

    return fn


@functools.cache
def _batch_hvp_many(apply: Callable) -> Callable:
    """Jitted fn(params, V, x, y) -> H_batch V for a pytree V with a leading axis S
    (vmapped over the S vectors; one linearisation of the gradient shared by all)."""

    @jax.jit
    def fn(params, vs, x, y):
        grad_fn = jax.grad(lambda p: batch_loss(apply, p, x, y))
        _, lin = jax.linearize(grad_fn, params)
        return jax.vmap(lin)(vs)

    return fn


def fixed_batch_hvp(
    apply: Callable,
    params: Params,
    x_batches: np.ndarray,
    y_batches: np.ndarray,
    v: Params,
    *,
    many: bool = False,
) -> Params:
    """H v with H the Hessian of the mean loss over the fixed batch set.

    x_batches: (num_batches, B, ...), y_batches: (num_batches, B). All batches have
    the same size, so the mean of batch means is the mean over the set. A Python loop
    over batches (not lax.scan) because a conv inside scan is ~30x slower on CPU
    (DESIGN.md section 8). many=True: v has a leading axis S and H is applied to each.
    """
    fn = (_batch_hvp_many if many else _batch_hvp)(apply)
    total = None
    for xb, yb in zip(x_batches, y_batches, strict=True):
        out = fn(params, v, xb, yb)
        total = out if total is None else jax.tree.map(jnp.add, total, out)
    return jax.tree.map(lambda t: t / len(x_batches), total)


def fixed_batch_operator(
    apply: Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    batches: np.ndarray,
) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """The fixed-batch Hessian as a map on flat host vectors: (P,) float64 -> (P,)
    float64, and P. The Krylov bookkeeping runs in float64 on the host whatever the
    model's dtype."""
    flat, unravel = ravel_pytree(params)
    dtype = flat.dtype
    x_batches = jnp.asarray(x_train[batches], dtype=_float_dtype(x_train, dtype))
    y_batches = jnp.asarray(y_train[batches])

    def matvec(v: np.ndarray) -> np.ndarray:
        hv = fixed_batch_hvp(
            apply, params, x_batches, y_batches, unravel(jnp.asarray(v, dtype))
        )
        return np.asarray(ravel_pytree(hv)[0], np.float64)

    return matvec, int(flat.shape[0])


def _float_dtype(x: np.ndarray, param_dtype) -> Any:
    """Inputs follow the parameters' float precision (float64 ground-truth checks)."""
    return param_dtype if np.issubdtype(x.dtype, np.floating) else x.dtype


def power_iteration(
    matvec: Callable[[np.ndarray], np.ndarray],
    size: int,
    key: jax.Array,
    iterations: int = 20,
) -> float:
    """Estimate of the spectral radius max |lambda| of a symmetric operator, by
    ||H q|| at the last normalised iterate (a lower bound that converges from below)."""
    q = np.asarray(jax.random.normal(key, (size,)), np.float64)
    q /= np.linalg.norm(q)
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
    return jax.hessian(lambda f: loss_fn(unravel(f)))(flat)


def dataset_hessian(
    apply: Callable, params: Params, x: np.ndarray, y: np.ndarray, batch_size: int
) -> np.ndarray:
    """(P, P) Hessian of the mean loss over every sample of (x, y), as a float64 host
    array, accumulated over padded batches (padding rows get weight 0) so memory is
    O(P^2 + P * batch activations) whatever N is."""
    flat, unravel = ravel_pytree(params)
    num = x.shape[0]
    size = min(batch_size, num)

    @jax.jit
    def fn(f, xb, yb, w):
        # Hessian of sum_i w_i l_i on the raveled parameters
        return jax.hessian(
            lambda f: jnp.sum(w * per_sample_loss(apply(unravel(f), xb), yb))
        )(f)

    x = np.asarray(x, _float_dtype(x, flat.dtype))
    total = np.zeros((flat.shape[0], flat.shape[0]), np.float64)
    for idx in padded_batches(num, size):
        # repeated (padding) indices count once: weight 1/N on first occurrences only
        w = np.zeros(size, flat.dtype)
        _, first = np.unique(idx, return_index=True)
        w[first] = 1.0 / num
        total += np.asarray(fn(flat, x[idx], y[idx], w), np.float64)
    return total


@functools.cache
def _per_sample_grads(apply: Callable) -> Callable:
    """Jitted fn(params, x (B, ...), y (B,)) -> flat per-sample gradients (B, P)."""

    @jax.jit
    def fn(params, x, y):
        def sample_loss(p, xi, yi):
            return per_sample_loss(apply(p, xi[None]), yi[None])[0]

        grads = jax.vmap(jax.grad(sample_loss), in_axes=(None, 0, 0))(params, x, y)
        return jax.vmap(lambda g: ravel_pytree(g)[0])(grads)

    return fn


def flat_per_sample_grads(
    apply: Callable, params: Params, x: np.ndarray, y: np.ndarray, batch_size: int
) -> np.ndarray:
    """(N, P) float64 host array of g_n = grad l_n(params), every sample exactly once.
    Memory N * P: for the small models of `exact` only."""
    flat = ravel_pytree(params)[0]
    x = np.asarray(x, _float_dtype(x, flat.dtype))
    fn = _per_sample_grads(apply)
    num = x.shape[0]
    size = min(batch_size, num)
    out = [np.asarray(fn(params, x[i], y[i]), np.float64) for i in padded_batches(num, size)]
    return np.concatenate(out)[:num]


def mean_gradient(
    apply: Callable, params: Params, x: np.ndarray, y: np.ndarray, batch_size: int
) -> Params:
    """Gradient of the mean loss over every sample of (x, y), a pytree like params
    (used for the mean test gradient g_te of test influence)."""
    flat, unravel = ravel_pytree(params)
    x = np.asarray(x, _float_dtype(x, flat.dtype))
    num = x.shape[0]
    size = min(batch_size, num)
    fn = _weighted_grad(apply)
    total = None
    for idx in padded_batches(num, size):
        w = np.zeros(size, flat.dtype)
        _, first = np.unique(idx, return_index=True)
        w[first] = 1.0 / num
        g = fn(params, x[idx], y[idx], w)
        total = g if total is None else jax.tree.map(jnp.add, total, g)
    return total


@functools.cache
def _weighted_grad(apply: Callable) -> Callable:
    @jax.jit
    def fn(params, x, y, w):
        return jax.grad(lambda p: jnp.sum(w * per_sample_loss(apply(p, x), y)))(params)

    return fn
