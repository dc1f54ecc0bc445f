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

from gex_core.influence.scores import Scores, as_query_indices
from gex_core.training.batching import batched_map
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss, per_sample_grads

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
    apply: Callable, strategy: str, loss: Loss = SOFTMAX_CROSS_ENTROPY
) -> Callable[[Params, Params, jax.Array, jax.Array], jax.Array]:
    """Jitted fn(params, directions, x (B, ...), y (B,)) -> S (B, num directions).

    Cached per (apply, strategy, loss) so repeated projections (checkpoints, test set) reuse
    one compiled function.
    """
    if strategy == "jvp":

        @jax.jit
        def project(params, directions, x, y):
            def batch_losses(p):
                return loss.per_sample(apply(p, x), y)

            def along(v):
                return jax.jvp(batch_losses, (params,), (v,))[1]

            return jax.vmap(along, out_axes=1)(directions)

    elif strategy == "vjp":

        @jax.jit
        def project(params, directions, x, y):
            grads = per_sample_grads(apply, loss)(params, x, y)
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
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> np.ndarray:
    """S (N, K) with S[n, k] = g_n^T v_k for every sample, each seen exactly once."""
    project = make_projector(apply, strategy, loss)
    return batched_map(project, (x, y), batch_size, consts=(params, directions))


def projected_scores(
    train_proj: np.ndarray,
    test_proj: np.ndarray,
    queries: np.ndarray | None = None,
    curvature: np.ndarray | None = None,
) -> Scores:
    """Influence from projected gradients, shared by randproj, tracinrp and arnoldi.

    train_proj (N, k) = g_n^T v_i, test_proj (N_te, k) = g'_j^T v_i, curvature (k,) > 0
    (arnoldi's eigenvalues lambda_i; None = ones) -> with s_n = S_n / lambda (per i):
      self_n      = (1/k) sum_i S[n, i]^2 / lambda_i
      test_n      = (1/k) sum_i S[n, i] tbar_i / lambda_i,  tbar = mean_j S'[j]
      kernel[n, q] = (1/k) sum_i S[n, i] S'[queries[q], i] / lambda_i
    all means over the k directions, so the kernel's mean over every test sample is
    test_n. queries: test indices (None or empty = no kernel).
    """
    train_proj = np.asarray(train_proj, np.float64)
    test_proj = np.asarray(test_proj, np.float64)
    num = train_proj.shape[1]
    scaled = train_proj if curvature is None else train_proj / curvature
    queries = as_query_indices(queries, test_proj.shape[0])
    return Scores(
        self_influence=np.sum(train_proj * scaled, axis=1) / num,
        test_influence=scaled @ test_proj.mean(axis=0) / num,
        kernel=scaled @ test_proj[queries].T / num if queries.size else None,
    )
