"""la_kfac: K-FAC Laplace posterior samples scored with linearised losses, as GEX.

Posterior: delta_m ~ N(0, (N F / sigma^2 + I / alpha^2)^-1) with F the K-FAC Fisher
(model-sampled labels, per-sample mean over `num_batches` training batches), N the train
size, alpha the prior std and sigma the observation-noise std (a likelihood temperature:
the CE likelihood enters as exp(-N * mean loss / sigma^2)). F has a Kronecker block per
Dense/Conv layer and a diagonal block per BatchNorm scale/bias (kfac_jax's
scale-and-shift blocks, without the research code's x100 on them); batch-norm models
pass their whole variables dict, and the draws are zero on its "batch_stats".

Member losses use the network linearised at theta*: loss(f(x; theta*) + J delta_m). The
deviation loss_lin - loss(theta*) is computed directly as
-u_y + log(sum_c p_c exp(u_c)), u = J delta_m, via log1p/expm1, so it keeps its relative
precision in float32 however small delta is; loss(theta*) comes from the same forward pass
(the stored pretrained losses of another pass would differ by float rounding, which can
be as large as the deviations themselves). The score is then `gex_scores` (same tau
clamp, same sign conventions), kernel included: the linearised member losses of the
query test samples are already there (the test pass covers every test sample).

For small Sigma, E[(loss_lin - loss*)^2] ~= g_n^T Sigma g_n (tests/test_kfac.py checks
it), so the self-influence is an influence score with the Laplace covariance as the
inverse Hessian.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gex_core.influence.gex import gex_scores
from gex_core.influence.kfac import (
    eigen_blocks,
    kfac_factors,
    layer_infos,
    sample_posterior,
)
from gex_core.influence.scores import Scores
from gex_core.training.batching import batched_map, sample_batches

Params = Any


def loss_deviation_from_logits(
    logits: jax.Array, u: jax.Array, labels: jax.Array
) -> jax.Array:
    """loss(logits + u) - loss(logits) for softmax CE, precise for small u.

    logits: (B, C), u: (..., B, C), labels: (B,) -> (..., B).
    """
    log_p = jax.nn.log_softmax(logits)
    p = jnp.exp(log_p)
    u_label = jnp.take_along_axis(
        u, jnp.broadcast_to(labels[:, None], u.shape[:-1] + (1,)), -1
    )[..., 0]
    # log sum_c p_c exp(u_c): log1p/expm1 keep small values exact; logsumexp is the
    # overflow-safe form for large u (both are evaluated; where() picks one).
    small = jnp.log1p(jnp.sum(p * jnp.expm1(u), axis=-1))
    large = jax.nn.logsumexp(log_p + u, axis=-1)
    use_small = jnp.max(jnp.abs(u), axis=-1) < 1.0
    return jnp.where(use_small, small, large) - u_label


@functools.cache
def make_linearised_deviations(apply: Callable) -> Callable:
    """Jitted fn(params, deltas (M, ...), x (B, ...), y (B,)) -> (loss* (B,), dev (B, M)).

    dev[b, m] = loss(f(x_b) + J delta_m, y_b) - loss(f(x_b), y_b); one linearisation per
    batch, M forward-mode products.
    """

    @jax.jit
    def deviations(params, deltas, x, y):
        logits, jvp_fn = jax.linearize(lambda p: apply(p, x), params)
        u = jax.vmap(jvp_fn)(deltas)  # (M, B, C)
        loss = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], -1)[:, 0]
        return loss, loss_deviation_from_logits(logits, u, y).T

    return deviations


def linearised_losses(
    apply: Callable,
    params: Params,
    deltas: Params,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pretrained losses (N,) and linearised member losses (M, N), float64."""
    fn = make_linearised_deviations(apply)
    loss, dev = batched_map(fn, (x, y), batch_size, consts=(params, deltas))
    loss = np.asarray(loss, np.float64)
    return loss, loss[None, :] + np.asarray(dev, np.float64).T


def la_kfac_scores(
    apply: Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    fisher_batches: np.ndarray,
    key: jax.Array,
    members: int,
    alpha: float,
    sigma: float,
    tau: float,
    eval_batch_size: int,
    queries: np.ndarray | None = None,
    scored: tuple[np.ndarray, np.ndarray] | None = None,
) -> Scores:
    """K-FAC Laplace + linearised GEX scores.

    fisher_batches: (K, B) indices into x_train for the Fisher; key: split into the
    Fisher's label key and the posterior key; scored: (x, y) of the training samples
    to score (None: all of x_train, y_train). Returns self- and test-influence (n,) of
    the scored samples and the kernel (n, Q) of the query test indices (None without
    queries).
    """
    fisher_key, posterior_key = jax.random.split(key)
    factors = kfac_factors(apply, params, x_train, fisher_batches, fisher_key)
    infos = layer_infos(apply, params, x_train[fisher_batches[0]])
    eigens = eigen_blocks(factors)
    deltas = sample_posterior(
        eigens, infos, params, posterior_key, members, x_train.shape[0], alpha, sigma
    )
    x_scored, y_scored = (x_train, y_train) if scored is None else scored
    train, member_train = linearised_losses(
        apply, params, deltas, x_scored, y_scored, eval_batch_size
    )
    test, member_test = linearised_losses(
        apply, params, deltas, x_test, y_test, eval_batch_size
    )
    return gex_scores(
        member_train, train, member_test, test, tau, queries, reference="clamped"
    )


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {members, alpha, sigma, tau, num_batches, batch_size}.

    Defaults (schema): alpha = sigma = 1e-4, as the research code. With alpha = sigma the
    covariance is sigma^2 (N F + I)^-1: the prior weighs like a weight decay of 1/N per
    sample (the digits recipe's 5e-4 * N = 0.72 is close), and sigma only scales the
    draws. 1e-4 keeps |J delta| small, where the linearised deviation is g^T delta and
    the ranking does not depend on sigma (digits CNN, tau = 0: AUC 0.960 at 1e-4, 0.959
    at 1e-2). The Fisher batches come from the "curvature_batches" stream, the label
    draws and the posterior draws from "la_kfac".
    """
    x_train, y_train = inputs.train_set
    x_test, y_test = inputs.test_set
    batches = sample_batches(
        x_train.shape[0],
        int(hp["num_batches"]),
        int(hp["batch_size"]),
        inputs.rng("curvature_batches"),
    )
    return la_kfac_scores(
        inputs.model.apply,
        inputs.params,
        x_train,
        y_train,
        x_test,
        y_test,
        fisher_batches=batches,
        key=inputs.key("la_kfac"),
        members=int(hp["members"]),
        alpha=float(hp["alpha"]),
        sigma=float(hp["sigma"]),
        tau=float(hp["tau"]),
        eval_batch_size=inputs.eval_batch_size,
        queries=inputs.query_indices,
        scored=inputs.scored,
    )
