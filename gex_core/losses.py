"""Per-sample losses and the training objective: the one definition used everywhere."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gex_core.models import trainable


def per_sample_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy. logits: (B, C); labels: (B,) int, or (B, C) target
    distributions (relabeling's soft targets) -> (B,)."""
    if labels.ndim == logits.ndim:
        return optax.softmax_cross_entropy(logits, labels)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def per_sample_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """1.0 where argmax(logits) equals the label (the target's argmax for soft
    targets). -> (B,) float32."""
    if labels.ndim == logits.ndim:
        labels = jnp.argmax(labels, axis=-1)
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def l2_penalty(params) -> jax.Array:
    """0.5 * ||theta||^2 over every trainable leaf (coupled weight decay, as the
    research code); batch-norm running statistics are no parameters."""
    leaves = jax.tree_util.tree_leaves(trainable(params))
    return 0.5 * sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """(N, C) -> (N, C) row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@functools.cache
def per_sample_grads(apply: Callable) -> Callable:
    """Jitted fn(params, x (B, ...), y (B,)) -> per-sample loss gradients: a pytree like
    params with a leading axis B (no weight decay). Cached per model."""

    @jax.jit
    def grads(params, x, y):
        def sample_loss(p, xi, yi):
            return per_sample_loss(apply(p, xi[None]), yi[None])[0]

        return jax.vmap(jax.grad(sample_loss), in_axes=(None, 0, 0))(params, x, y)

    return grads
