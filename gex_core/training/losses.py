"""Per-sample losses and the training objective: the one definition used everywhere.

A `Loss` is what training, evaluation and every gradient- or loss-based influence method
differentiate. Three are provided, the research code's three problem types:

- `SOFTMAX_CROSS_ENTROPY` (the default; `cls`),
- `SIGMOID_BINARY_CROSS_ENTROPY` (`multitask`, the research code's default at HEAD: one
  sigmoid per class against the one-hot target, summed over classes),
- `SQUARED_ERROR` (`reg`: half the squared distance of the logits to the one-hot target).

A user's own loss is a `Loss` too: any jax function (logits (B, C), labels (B,) int or
(B, C) targets) -> (B,), with the probabilities the prediction-based methods read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gex_core.training.models import trainable


def _targets(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """(B, C) target distributions: labels as given when they are (B, C), else one-hot."""
    if labels.ndim == logits.ndim:
        return labels.astype(logits.dtype)
    return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """logits: (B, C); labels: (B,) int, or (B, C) target distributions (relabeling's
    soft targets) -> (B,)."""
    if labels.ndim == logits.ndim:
        return optax.softmax_cross_entropy(logits, labels)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def sigmoid_binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """sum_c BCE(sigmoid(logits_c), target_c) -> (B,); labels as `softmax_cross_entropy`."""
    return jnp.sum(
        optax.sigmoid_binary_cross_entropy(logits, _targets(logits, labels)), axis=-1
    )


def squared_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """0.5 * ||logits - target||^2 -> (B,); labels as `softmax_cross_entropy`."""
    return 0.5 * jnp.sum(jnp.square(logits - _targets(logits, labels)), axis=-1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) -> (N, C) row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def normalised_sigmoid(logits: np.ndarray) -> np.ndarray:
    """(N, C) -> (N, C): per-class sigmoids scaled to sum to one, in float64."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return p / p.sum(axis=1, keepdims=True)


class Loss(NamedTuple):
    """name: how configs and results name it; per_sample(logits (B, C), labels (B,) or
    (B, C)) -> (B,), a jax function; probabilities(logits (N, C)) -> (N, C) host
    float64 class probabilities (relabel targets, el2n, cl)."""

    name: str
    per_sample: Callable[[jax.Array, jax.Array], jax.Array]
    probabilities: Callable[[np.ndarray], np.ndarray]


SOFTMAX_CROSS_ENTROPY = Loss("softmax_cross_entropy", softmax_cross_entropy, softmax)
SIGMOID_BINARY_CROSS_ENTROPY = Loss(
    "sigmoid_binary_cross_entropy", sigmoid_binary_cross_entropy, normalised_sigmoid
)
SQUARED_ERROR = Loss("squared_error", squared_error, softmax)
LOSSES = {
    loss.name: loss
    for loss in (SOFTMAX_CROSS_ENTROPY, SIGMOID_BINARY_CROSS_ENTROPY, SQUARED_ERROR)
}


def get_loss(loss: str | Loss) -> Loss:
    """A `Loss` by name (or the given one)."""
    if isinstance(loss, Loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    return LOSSES[loss]


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


@functools.cache
def per_sample_grads(apply: Callable, loss: Loss = SOFTMAX_CROSS_ENTROPY) -> Callable:
    """Jitted fn(params, x (B, ...), y (B,)) -> per-sample loss gradients: a pytree like
    params with a leading axis B (no weight decay). Cached per (model, loss)."""

    @jax.jit
    def grads(params, x, y):
        def sample_loss(p, xi, yi):
            return loss.per_sample(apply(p, xi[None]), yi[None])[0]

        return jax.vmap(jax.grad(sample_loss), in_axes=(None, 0, 0))(params, x, y)

    return grads
