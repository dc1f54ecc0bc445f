"""Tiny models and data shared by the ground-truth tests."""

import jax
import jax.numpy as jnp
import numpy as np

from gex_core.training.models import Model


def tiny_mlp(in_features: int = 4, hidden: int = 3, num_classes: int = 3) -> Model:
    """A two-layer tanh MLP on inputs (B, in_features, 1, 1), 27 parameters by default."""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (in_features, hidden)) * 0.8,
            "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, num_classes)) * 0.8,
            "b2": jnp.zeros(num_classes),
        }

    def apply(params, x):
        h = jnp.tanh(x.reshape((x.shape[0], -1)) @ params["w1"] + params["b1"])
        return h @ params["w2"] + params["b2"]

    return Model("tiny_mlp", init, apply)


def tiny_data(n: int, in_features: int = 4, num_classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, in_features, 1, 1)).astype(np.float32)
    y = rng.integers(0, num_classes, n).astype(np.int32)
    return x, y
