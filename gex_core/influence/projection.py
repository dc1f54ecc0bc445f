"""Per-sample gradients projected on fixed directions: S[n, k] = g_n^T v_k.

g_n is the gradient of sample n's loss at `params` (no weight decay). Two equivalent
strategies: forward-mode JVPs (one per direction, vmapped over directions) or vmapped
per-sample gradients multiplied by the direction matrix. `benchmarks/projection.py`
measures both; the faster one is the default of every method that projects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from gex_core.batching import batched_map
from gex_core.losses import per_sample_grads, per_sample_loss

Params = Any
STRATEGIES = ("jvp", "vjp")


def random_directions(key: jax.Array, params: Params, num: int) -> Params:
    """num directions v_k ~ N(0, I_P), as a pytree whose leaves have a leading (num,).

    One (num, P) draw, then unflattened: a per-leaf draw compiles one random op per
    parameter shape (about 20 s on the digits CNN without a warm cache).
    """
    flat, unravel = ravel_pytree(params)
    draws = jax.random.normal(key, (num, flat.shape[0]), flat.dtype)
    return jax.vmap(unravel)(draws)


@functools.cache
def make_projector(
    apply: Callable, strategy: str
) -> Callable[[Params, Params, jax.Array, jax.Array], jax.Array]:
    """Jitted fn(params, directions, x (B, ...), y (B,)) -> S (B, num directions).

    Cached per (apply, strategy) so repeated projections (checkpoints, test set) reuse
    one compiled function.
    """
    if strategy == "jvp":

        @jax.jit
        def project(params, directions, x, y):
            def batch_losses(p):
                return per_sample_loss(apply(p, x), y)

            def along(v):
                return jax.jvp(batch_losses, (params,), (v,))[1]

            return jax.vmap(along, out_axes=1)(directions)

    elif strategy == "vjp":

        @jax.jit
        def project(params, directions, x, y):
            grads = per_sample_grads(apply)(params, x, y)
            flat_grads = jax.vmap(lambda g: ravel_pytree(g)[0])(grads)
            flat_dirs = jax.vmap(lambda v: ravel_pytree(v)[0])(directions)
            return flat_grads @ flat_dirs.T

    else:
        raise ValueError(
            f"unknown projection strategy {strategy!r}; known: {STRATEGIES}"
        )
    return project


def project_gradients(
    apply: Callable,
    params: Params,
    directions: Params,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    strategy: str = "jvp",
) -> np.ndarray:
    """S (N, K) with S[n, k] = g_n^T v_k for every sample, each seen exactly once."""
    project = make_projector(apply, strategy)
    return batched_map(
        lambda xb, yb: project(params, directions, xb, yb), (x, y), batch_size
    )
