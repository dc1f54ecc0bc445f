"""LiSSA (Agarwal et al. 2017; Koh & Liang 2017): inverse-HVPs by a truncated Neumann
series, bounded and deterministic.

For a vector g (a per-sample gradient), with H the Hessian of the mean training loss
over the fixed batch set (hessian.py; the same batches at every step, noisy labels, no
augmentation, no weight decay):

    v_0 = g,   v_{t+1} = g + (1 - damping / scale) v_t - H v_t / scale,   t < iterations
    IHVP = v_T / scale  ->  (H + damping * I)^{-1} g   as T -> infinity.

`damping` here is the Tikhonov term itself, the same knob as exact's: LiSSA and exact
approximate the same (H + damping I)^{-1}. (The research code's dimensionless `damping`
d is our damping / scale; its H included weight decay, i.e. damping = weight_decay, d=0.)
Default damping (None): the recipe's weight_decay, as exact.

Convergence: the iteration matrix I - (H + damping I)/scale has eigenvalues
1 - (lambda_i + damping)/scale, so the recursion converges iff
0 < lambda_i + damping < 2 * scale for every eigenvalue lambda_i of H: `scale` must
exceed half the top eigenvalue (plus damping), and directions with lambda_i + damping
<= 0 (non-convex points, too little damping) grow by (1 + |lambda_i + damping| / scale)
per step instead of converging; with a fixed T they stay finite (checked). The error
after T steps in an eigendirection is (1 - (lambda_i + damping)/scale)^T, so directions
with small curvature converge slowly: after T steps LiSSA is the exact inverse on
curvatures above ~ scale / T and a damped identity (T / scale) below that.

`scale` (None): estimated as 1.5 * (rho + damping) with rho the spectral radius of H from
`power_iterations` power-iteration steps (a lower bound, hence the margin). A given
scale below (rho + damping)/2 raises (certain divergence); below rho + damping it warns
(oscillating convergence).

Scores: self_n = g_n^T IHVP(g_n), test_n = g_te^T IHVP(g_n) = IHVP(g_te)^T g_n (H is
symmetric: one extra IHVP), not divided by N, like exact. Positive test = helpful.
Kernel (queries j): kernel[n, j] = IHVP(g_j)^T g_n, one IHVP per query gradient, run
with the mean test gradient through the same block recursion as the training samples
(ceil((1 + Q) / block_size) extra blocks against the N / block_size of the self
scores); the recursion is linear, so the kernel's mean over every test sample is test_n.

Cost: N * iterations * num_batches * batch_size sample-HVPs (about 4 forward passes
each), done for `block_size` training samples at a time (vmap over their gradients).
Measured on the digits CNN (151k parameters, 2 shared CPU cores): ~2.7 s per iteration
of a 32-sample block against one 128-sample batch (~0.66 ms per sample-HVP), so the
defaults (100 iterations, N = 1437) take ~3 h there; not in the default config.
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
    fixed_batch_hvp,
    fixed_batch_operator,
    mean_gradient,
    per_sample_gradient_tree,
    power_iteration,
)
from gex_core.influence.scores import Scores, as_query_indices
from gex_core.training.batching import padded_batches, sample_batches
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss, per_sample_grads

Params = Any
SCALE_MARGIN = 1.5


@jax.jit
def _update(g: Params, v: Params, hv: Params, keep: float, scale: float) -> Params:
    """One LiSSA step: g + keep * v - H v / scale."""
    return jax.tree.map(lambda gi, vi, hi: gi + keep * vi - hi / scale, g, v, hv)


@jax.jit
def _pairwise_dot(a: Params, b: Params) -> jax.Array:
    """Per-row inner products of two pytrees with leading axis S -> (S,)."""
    leaves = jax.tree.map(
        lambda x, y: jnp.sum((x * y).reshape(x.shape[0], -1), axis=1), a, b
    )
    return sum(jax.tree_util.tree_leaves(leaves))


@jax.jit
def _cross_dot(a: Params, b: Params) -> jax.Array:
    """All inner products of the rows of pytrees with leading axes S and R -> (S, R)."""
    leaves = jax.tree.map(
        lambda x, y: jnp.matmul(
            x.reshape(x.shape[0], -1),
            y.reshape(y.shape[0], -1).T,
            precision=jax.lax.Precision.HIGHEST,
        ),
        a,
        b,
    )
    return sum(jax.tree_util.tree_leaves(leaves))


def lissa_ihvp(
    hvp_many: Callable[[Params], Params],
    g: Params,
    *,
    damping: float,
    scale: float,
    iterations: int,
) -> Params:
    """v_T / scale for each of S right-hand sides g (pytree with a leading axis S);
    hvp_many applies H to such a pytree. Raises FloatingPointError if it blew up."""
    keep = 1.0 - damping / scale
    v = g
    for _ in range(iterations):
        v = _update(g, v, hvp_many(v), keep, scale)
    out = jax.tree.map(lambda x: x / scale, v)
    if not all(bool(jnp.isfinite(x).all()) for x in jax.tree_util.tree_leaves(out)):
        raise FloatingPointError(
            f"lissa: the recursion diverged (scale {scale:g}, damping {damping:g}, "
            f"{iterations} iterations); increase scale or damping"
        )
    return out


def resolve_scale(scale: float | None, radius: float, damping: float) -> float:
    """The LiSSA scale: given, or SCALE_MARGIN * (radius + damping); checks convergence
    against the estimated spectral radius of H."""
    bound = radius + damping
    if scale is None:
        if bound <= 0:
            raise ValueError(
                "lissa: the Hessian is zero on the batch set and damping is 0; "
                "nothing to invert"
            )
        return SCALE_MARGIN * bound
    if scale <= bound / 2:
        raise ValueError(
            f"lissa: scale {scale:g} is too small: the fixed-batch Hessian's spectral "
            f"radius is about {radius:.4g} (power iteration), so the recursion diverges "
            f"unless scale > (radius + damping) / 2 = {bound / 2:.4g}; "
            f"use scale >= {bound:.4g} or leave it unset"
        )
    if scale < bound:
        warnings.warn(
            f"lissa: scale {scale:g} is below the estimated radius + damping "
            f"{bound:.4g}; the recursion oscillates while it converges",
            stacklevel=2,
        )
    return float(scale)


def lissa_scores(
    apply: Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    batches: np.ndarray,
    *,
    key: jax.Array,
    damping: float,
    scale: float | None,
    iterations: int,
    block_size: int,
    eval_batch_size: int,
    power_iterations: int = 20,
    queries: np.ndarray | None = None,
    scored: tuple[np.ndarray, np.ndarray] | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> tuple[Scores, float]:
    """LiSSA self and test influence (n,) and kernel (n, Q) of the query test indices
    (None without queries) of the scored training samples (x, y) (None: all of
    x_train, y_train), and the scale used. batches: (num_batches, B) indices into
    x_train of the fixed batch set; key: the power iteration's start vector."""
    if iterations < 1 or damping < 0:
        raise ValueError(
            f"lissa needs iterations >= 1 and damping >= 0, got {iterations}, {damping}"
        )
    dtype = ravel_pytree(params)[0].dtype
    x_scored, y_scored = (x_train, y_train) if scored is None else scored
    x_scored = np.asarray(x_scored, dtype)
    x_test = np.asarray(x_test, dtype)
    matvec, num_params = fixed_batch_operator(
        apply, params, x_train, y_train, batches, loss
    )
    radius = power_iteration(matvec, num_params, key, power_iterations)
    scale = resolve_scale(scale, radius, damping)

    x_batches = jnp.asarray(x_train[batches], dtype)
    y_batches = jnp.asarray(y_train[batches])

    def hvp_many(v: Params) -> Params:
        return fixed_batch_hvp(
            apply, params, x_batches, y_batches, v, many=True, loss=loss
        )

    def ihvp(g: Params) -> Params:
        return lissa_ihvp(
            hvp_many, g, damping=damping, scale=scale, iterations=iterations
        )

    num = x_scored.shape[0]
    size = min(block_size, num)
    queries = as_query_indices(queries, x_test.shape[0])
    # right-hand sides of the test side: the mean test gradient, then each query's
    rhs = jax.tree.map(
        lambda a: a[None],
        mean_gradient(apply, params, x_test, y_test, eval_batch_size, loss),
    )
    if queries.size:
        query_grads = per_sample_gradient_tree(
            apply, params, x_test[queries], y_test[queries], size, loss
        )
        rhs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), rhs, query_grads)
    # H is symmetric: g_te^T H^-1 g_n = (H^-1 g_te)^T g_n, one IHVP per right-hand
    # side for all n; blocks of at most `size` rows (the cost is per row)
    num_rhs = 1 + queries.size
    parts = [
        ihvp(jax.tree.map(lambda a, i=idx: a[i], rhs))
        for idx in padded_batches(num_rhs, min(size, num_rhs))
    ]
    test_ihvps = jax.tree.map(lambda *a: jnp.concatenate(a)[:num_rhs], *parts)

    grads_fn = per_sample_grads(apply, loss)
    self_parts, test_parts = [], []
    for idx in padded_batches(num, size):
        grads = grads_fn(params, x_scored[idx], y_scored[idx])
        self_parts.append(np.asarray(_pairwise_dot(grads, ihvp(grads)), np.float64))
        test_parts.append(np.asarray(_cross_dot(grads, test_ihvps), np.float64))
    test = np.concatenate(test_parts)[:num]
    scores = Scores(
        self_influence=np.concatenate(self_parts)[:num],
        test_influence=test[:, 0],
        kernel=test[:, 1:] if queries.size else None,
    )
    return scores, scale


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"iterations": 100, "damping": float | None (None: the
    recipe's weight_decay), "scale": float | None (None: estimated), "num_batches": 1,
    "batch_size": 128, "block_size": 32}. Key stream "lissa" starts the power
    iteration; the batch set comes from the "curvature_batches" generator."""
    x_train, y_train = inputs.train_set
    x_test, y_test = inputs.test_set
    damping = hp.get("damping")
    damping = float(inputs.recipe["weight_decay"] if damping is None else damping)
    scale = hp.get("scale")
    batches = sample_batches(
        x_train.shape[0],
        int(hp["num_batches"]),
        int(hp["batch_size"]),
        inputs.rng("curvature_batches"),
    )
    scores, used = lissa_scores(
        inputs.model.apply,
        inputs.params,
        x_train,
        y_train,
        x_test,
        y_test,
        batches,
        key=inputs.key("lissa"),
        damping=damping,
        scale=None if scale is None else float(scale),
        iterations=int(hp["iterations"]),
        block_size=int(hp.get("block_size", 32)),
        eval_batch_size=inputs.eval_batch_size,
        queries=inputs.query_indices,
        scored=inputs.scored,
        loss=inputs.loss,
    )
    print(
        f"lissa: scale {used:.4g}, damping {damping:g}, {hp['iterations']} iterations"
    )
    return scores
