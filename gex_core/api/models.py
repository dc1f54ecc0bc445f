"""A model as the library takes it, from a Flax apply function or a bundled name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gex_core.training.models import Model

Params = Any


def as_model(
    model: Model | Callable[[Params, jax.Array], jax.Array],
    *,
    init: Callable[[jax.Array], Params] | None = None,
    train_apply: Callable[[Params, jax.Array], jax.Array] | None = None,
) -> Model:
    """A `Model` as it is, or one made of a Flax apply function.

    apply(params, x (B, ...)) -> logits (B, C), e.g. a linen module's `module.apply`
    with params its variables dict. init(key) -> params is needed only by methods that
    train fresh models (el2n, cl); train_apply, the training-mode forward pass, where
    it differs (dropout). A bare apply function is treated as having no batch norm: wrap
    batch-norm models with `gex_core.training.models.bn_model`.
    """
    if isinstance(model, Model):
        return model
    if not callable(model):
        raise TypeError(
            f"model must be a Flax apply function or a gex_core Model, got {model!r}"
        )
    return Model("custom", init, model, train_apply)
