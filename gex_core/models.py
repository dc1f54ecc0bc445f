"""Flax models, exposed as a pure `apply(params, x) -> logits` for influence code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any
MODELS = ("cnn", "mlp")


class MLP(nn.Module):
    """Flatten -> Dense(hidden) -> ReLU -> Dense(C)."""

    num_classes: int
    hidden: int = 256

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


class SmallCNN(nn.Module):
    """conv3x3(32) -> ReLU -> conv3x3(64) -> ReLU -> maxpool 2 -> Dense(128) -> Dense(C).

    Big enough to memorise noisy digits labels, which is the case GEX is for.
    """

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.relu(nn.Conv(64, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128)(x))
        return nn.Dense(self.num_classes)(x)


class Model(NamedTuple):
    """init(key) -> params; apply(params, x: (B, H, W, C)) -> logits (B, num_classes)."""

    name: str
    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]


def make_model(name: str, num_classes: int, input_shape: tuple[int, ...]) -> Model:
    """Build a named model for inputs of shape (H, W, C)."""
    if name == "cnn":
        module = SmallCNN(num_classes)
    elif name == "mlp":
        module = MLP(num_classes)
    else:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    dummy = jnp.zeros((1, *input_shape), jnp.float32)

    def init(key: jax.Array) -> Params:
        return module.init(key, dummy)["params"]

    def apply(params: Params, x: jax.Array) -> jax.Array:
        return module.apply({"params": params}, x)

    return Model(name, init, apply)


def num_params(params: Params) -> int:
    """Total number of scalars in a parameter pytree."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
