"""K-FAC factors and the la_kfac score against explicit Fishers of tiny flax models.

Explicit Fisher: F = (1/N) sum_n J_n^T (diag p_n - p_n p_n^T) J_n, J_n the Jacobian of the
logits w.r.t. the parameters, which equals E_{y~p}[grad l grad l^T] for softmax CE. The
parameter vector is ordered layer by layer (sorted names), each layer as vec(Wb) with
Wb = [kernel.reshape(-1, d_out); bias] flattened row-major, the order of A (x) G.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gex_core.influence import kfac
from gex_core.influence.kfac import blocks as kfac_blocks
from gex_core.influence.kfac import factors as kfac_factors_module
from gex_core.influence.la_kfac import (
    compute,
    la_kfac_scores,
    linearised_losses,
    loss_deviation_from_logits,
)
from gex_core.influence.problem import Problem
from gex_core.training.batching import sample_batches
from gex_core.training.losses import softmax_cross_entropy as per_sample_loss
from gex_core.training.models import Model, make_model
from tests.helpers import tiny_data, tiny_mlp


@pytest.fixture(autouse=True, scope="module")
def fast_compiles():
    """These models are tiny: XLA's optimisation passes cost far more than they save
    (the file runs ~2x faster)."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


class DenseNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(3)(jnp.tanh(nn.Dense(3)(x)))


class ConvNet(nn.Module):
    """Conv -> tanh -> Dense(3); `conv` holds nn.Conv keyword arguments."""

    conv: tuple = (("features", 3), ("kernel_size", (2, 2)), ("padding", "VALID"))

    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Conv(**dict(self.conv))(x))
        return nn.Dense(3)(x.reshape((x.shape[0], -1)))


class WithLayerNorm(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.LayerNorm()(x.reshape((x.shape[0], -1))))


def flax_model(
    module: nn.Module, input_shape, seed: int = 0, dtype=jnp.float64, std: float = 0.8
):
    """Model with N(0, std^2) params of `dtype` (no flax init: eval_shape is enough, and
    eager init is slow); the default std makes predictions far from uniform."""

    def apply(params, x):
        return module.apply({"params": params}, x)

    shapes = jax.eval_shape(
        module.init, jax.random.key(0), jnp.zeros((1, *input_shape))
    )
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(std * rng.normal(size=s.shape), dtype), shapes["params"]
    )
    return Model("test", lambda key: params, apply), params


def inputs(n: int, shape, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape))


def block_vector(infos, params) -> tuple[jnp.ndarray, callable, list[slice]]:
    """theta in the K-FAC order (layers as vec(Wb), diagonal leaves raveled), its
    inverse map (to params with those leaves replaced; batch_stats kept), and each
    block's slice."""
    names = sorted(infos)
    blocks = [kfac.layer_block(infos[n], params).ravel() for n in names]
    slices, start = [], 0
    for b in blocks:
        slices.append(slice(start, start + b.size))
        start += b.size
    root = ("params",) if "batch_stats" in params else ()

    def unflatten(theta):
        leaves = {}
        for name, sl in zip(names, slices, strict=True):
            info = infos[name]
            path = (*root, *info.path)
            if isinstance(info, kfac.DiagonalInfo):
                leaves[path] = theta[sl].reshape(info.shape)
                continue
            block = theta[sl].reshape((info.d_in, info.d_out))
            for key, value in kfac.block_to_params(info, block).items():
                leaves[(*path, key)] = value
        return jax.tree_util.tree_map_with_path(
            lambda kp, leaf: leaves.get(tuple(k.key for k in kp), leaf), params
        )

    return jnp.concatenate(blocks), unflatten, slices


def exact_fisher(apply, theta, unflatten, x) -> np.ndarray:
    """(P, P) per-sample-mean Fisher, exact expectation over the labels."""
    return np.asarray(_exact_fisher(apply, unflatten, theta, x))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _exact_fisher(apply, unflatten, theta, x):
    def logits_one(t, xi):
        return apply(unflatten(t), xi[None])[0]

    jac = jax.vmap(jax.jacobian(logits_one), in_axes=(None, 0))(theta, x)  # (N, C, P)
    p = jax.nn.softmax(jax.vmap(logits_one, in_axes=(None, 0))(theta, x))
    h = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
    return jnp.einsum("ncp,ncd,ndq->pq", jac, h, jac) / x.shape[0]


def kfac_setup(module, input_shape, n, exact=True, with_fisher=True, std=0.8):
    model, params = flax_model(module, input_shape, std=std)
    x = inputs(n, input_shape)
    infos = kfac.layer_infos(model.apply, params, x)
    factors = kfac.kfac_factors(
        model.apply,
        params,
        x,
        [np.arange(n)],
        jax.random.key(0),
        exact_labels=exact,
    )
    theta, unflatten, slices = block_vector(infos, params)
    fisher = (
        exact_fisher(model.apply, theta, unflatten, jnp.asarray(x))
        if with_fisher
        else None
    )
    return model, params, x, infos, factors, fisher, slices


@pytest.mark.parametrize(
    ("module", "input_shape"),
    [(DenseNet(), (4, 1, 1)), (ConvNet(), (2, 2, 2))],
    ids=["dense", "conv-one-position"],
)
def test_kfac_is_exact_for_one_input(module, input_shape):
    """One input and one output position: every layer block of F is exactly A (x) G."""
    with jax.enable_x64(True):
        _, _, _, infos, factors, fisher, slices = kfac_setup(module, input_shape, 1)
    for name, sl in zip(sorted(infos), slices, strict=True):
        block = fisher[sl, sl]
        kron = np.kron(factors[name].A, factors[name].G)
        assert np.abs(block).max() > 1e-3  # not trivially zero
        np.testing.assert_allclose(kron, block, rtol=1e-9, atol=1e-12)


def test_sampled_labels_converge_to_exact_expectation():
    """The Fisher (sampled labels) path estimates the same G as the exact expectation:
    measured errors 0.016 and 0.021, the Monte-Carlo error of 4000 draws; the bound
    leaves little room, so a G biased by a few percent fails."""
    with jax.enable_x64(True):
        model, params = flax_model(DenseNet(), (4, 1, 1))
        x = np.repeat(inputs(1, (4, 1, 1)), 500, axis=0)
        batches = [np.arange(500)] * 8  # 4000 label draws of one input
        exact = kfac.kfac_factors(
            model.apply, params, x, batches[:1], jax.random.key(0), exact_labels=True
        )
        sampled = kfac.kfac_factors(model.apply, params, x, batches, jax.random.key(3))
    for name in exact:
        np.testing.assert_allclose(sampled[name].A, exact[name].A, rtol=1e-12)
        err = np.linalg.norm(sampled[name].G - exact[name].G) / np.linalg.norm(
            exact[name].G
        )
        assert err < 0.03, (name, err)


@pytest.mark.parametrize(
    "conv",
    [
        (("features", 2), ("kernel_size", (2, 2))),  # SAME, 9 positions
        (
            ("features", 2),
            ("kernel_size", (2, 3)),
            ("strides", 2),
            ("padding", "VALID"),
        ),
        (
            ("features", 2),
            ("kernel_size", (2, 2)),
            ("kernel_dilation", 2),
            ("padding", ((1, 0), (0, 1))),
        ),
    ],
    ids=["same", "strided-valid", "dilated-explicit"],
)
def test_conv_patches_reproduce_per_sample_gradient(conv):
    """sum_t abar_t g_t^T equals the autodiff gradient of the kernel and bias (checks
    the im2col feature order against flax's (kh, kw, C_in, C_out) layout)."""
    with jax.enable_x64(True):
        model, params = flax_model(ConvNet(conv), (4, 5, 2))
        x = jnp.asarray(inputs(3, (4, 5, 2)))
        y = jnp.array([0, 2, 1])
        infos = kfac.layer_infos(model.apply, params, x)
        info = infos["Conv_0"]

        def loss_of_taps(taps):
            logits, ins, _ = kfac_blocks.run_with_taps(model.apply, params, x, taps)
            return jnp.sum(per_sample_loss(logits, y)), ins

        def sample_loss(p, xi, yi):
            return per_sample_loss(model.apply(p, xi[None]), yi[None])[0]

        @jax.jit
        def both():
            taps = {n: jnp.zeros((3, *i.out_shape)) for n, i in infos.items()}
            g_taps, ins = jax.grad(loss_of_taps, has_aux=True)(taps)
            rows = kfac_factors_module._layer_rows(
                info, ins["Conv_0"]
            )  # (B, T, d_in + 1)
            g = kfac_factors_module._output_rows(
                info, g_taps["Conv_0"]
            )  # (B, T, d_out)
            grads = jax.vmap(jax.grad(sample_loss), in_axes=(None, 0, 0))(params, x, y)
            autodiff = jax.vmap(lambda gr: kfac.layer_block(info, gr))(grads)
            return jnp.einsum("bti,btj->bij", rows, g), autodiff

        from_factors, autodiff = both()
    assert rows_are_many_positions(infos["Conv_0"])
    np.testing.assert_allclose(from_factors, autodiff, rtol=1e-10, atol=1e-12)


def rows_are_many_positions(info) -> bool:
    return int(np.prod(info.out_shape[:-1])) > 1


def fvp_errors(infos, factors, fisher, slices) -> tuple[dict, float, float]:
    """Relative errors ||(K - F) V|| / ||F V|| for 32 random v: per layer block, for
    the whole (block-diagonal) K-FAC against the full F, and for the best scalar * I."""
    v = np.random.default_rng(0).normal(size=(fisher.shape[0], 32))
    kfac_fv = np.zeros_like(v)
    blocks = {}
    for name, sl in zip(sorted(infos), slices, strict=True):
        kfac_fv[sl] = np.kron(factors[name].A, factors[name].G) @ v[sl]
        exact_block = fisher[sl, sl] @ v[sl]
        blocks[name] = np.linalg.norm(kfac_fv[sl] - exact_block) / np.linalg.norm(
            exact_block
        )
    exact_fv = fisher @ v
    err = np.linalg.norm(kfac_fv - exact_fv) / np.linalg.norm(exact_fv)
    scalar = np.sum(v * exact_fv) / np.sum(v * v)
    err_identity = np.linalg.norm(scalar * v - exact_fv) / np.linalg.norm(exact_fv)
    print(
        f"K-FAC FVP relative error {err:.3f} (best scaled identity {err_identity:.3f}); "
        + ", ".join(f"{k} block {e:.3f}" for k, e in blocks.items())
    )
    return blocks, err, err_identity


@pytest.mark.parametrize(
    ("module", "input_shape", "bound"),
    [
        (DenseNet(), (4, 1, 1), 0.48),  # measured 0.461
        (ConvNet((("features", 2), ("kernel_size", (2, 2)))), (3, 3, 1), 0.90),  # 0.889
    ],
    ids=["dense", "conv-same"],
)
def test_kfac_fisher_vector_product_error(module, input_shape, bound):
    """64 inputs, sharp predictions: K-FAC is an approximation (within a layer the
    inputs and output gradients are taken as independent, Conv positions as
    uncorrelated and alike; no cross-layer blocks). Measured full-FVP errors: 0.46
    dense, 0.89 conv (SAME padding on 3x3: 8 of 9 positions touch the zero padding and
    the Dense head makes position gradients correlated), against 0.91 and 0.94 for
    the best scaled identity. The set-up is fixed and float64, so the bounds sit just
    above the measured errors: a K-FAC that got worse would fail."""
    with jax.enable_x64(True):
        _, _, _, infos, factors, fisher, slices = kfac_setup(module, input_shape, 64)
    _, err, err_identity = fvp_errors(infos, factors, fisher, slices)
    assert err < bound
    assert err < err_identity


def test_kfac_dense_blocks_are_near_exact_when_gradients_barely_vary():
    """With small weights, output gradients hardly depend on the input, so K-FAC's
    independence assumption holds and Dense blocks match (measured 0.0016, 0.039)."""
    with jax.enable_x64(True):
        _, _, _, infos, factors, fisher, slices = kfac_setup(
            DenseNet(), (4, 1, 1), 64, std=0.1
        )
    blocks, _, _ = fvp_errors(infos, factors, fisher, slices)
    assert max(blocks.values()) < 0.045


def test_kfac_conv_block_has_the_right_scale():
    """The Conv convention (A mean over positions, G sum over positions) gives the
    exact block's scale: the best scalar c in min ||c K - F|| is ~1 (a mean-mean or
    sum-sum convention would be off by the 16 positions). Measured 1.057; the bound
    is tight enough that miscounting the positions by one (x 16/15 or 15/16: 1.127 or
    0.991) fails."""
    conv = (("features", 2), ("kernel_size", (2, 2)), ("padding", "VALID"))
    with jax.enable_x64(True):
        _, _, _, infos, factors, fisher, slices = kfac_setup(
            ConvNet(conv), (5, 5, 1), 64
        )
    sl = slices[sorted(infos).index("Conv_0")]
    kron = np.kron(factors["Conv_0"].A, factors["Conv_0"].G)
    best = np.sum(kron * fisher[sl, sl]) / np.sum(kron * kron)
    print(f"best scale of the Conv block: {best:.3f}")
    assert 1.03 < best < 1.08


def test_posterior_transform_has_the_laplace_covariance():
    rng = np.random.default_rng(0)
    ma, mg = rng.normal(size=(3, 3)), rng.normal(size=(2, 2))
    factors = kfac.KFACFactors(ma @ ma.T, mg @ mg.T)
    n, alpha, sigma = 50, 0.3, 0.7
    with jax.enable_x64(True):
        eye = jnp.eye(6).reshape((6, 3, 2))
        cols = kfac.posterior_transform(
            kfac.eigen_factors(factors), eye, n, alpha, sigma
        )
    root = np.asarray(cols).reshape((6, 6)).T  # delta = root @ eps (vec row-major)
    np.testing.assert_allclose(root, root.T, atol=1e-12)  # the symmetric square root
    precision = n / sigma**2 * np.kron(factors.A, factors.G) + np.eye(6) / alpha**2
    np.testing.assert_allclose(root @ root.T, np.linalg.inv(precision), rtol=1e-10)


def test_sample_posterior_covariance_and_shapes():
    """40000 draws on a tiny flax model: the sample covariance of each layer matches
    (N A (x) G / sigma^2 + I / alpha^2)^-1 and there is no cross-layer covariance."""
    with jax.enable_x64(True):
        model, params, x, infos, factors, _, slices = kfac_setup(
            DenseNet(), (4, 1, 1), 16, with_fisher=False
        )
        eigens = {k: kfac.eigen_factors(f) for k, f in factors.items()}
        n, alpha, sigma, m = 16, 0.5, 0.2, 40000
        deltas = kfac.sample_posterior(
            eigens, infos, params, jax.random.key(1), m, n, alpha, sigma
        )
        assert jax.tree_util.tree_structure(deltas) == jax.tree_util.tree_structure(
            params
        )
        for d, p in zip(
            jax.tree_util.tree_leaves(deltas),
            jax.tree_util.tree_leaves(params),
            strict=True,
        ):
            assert d.shape == (m, *p.shape)
    flat = np.concatenate(
        [
            np.concatenate(
                [
                    np.asarray(deltas[k]["kernel"]).reshape((m, -1, infos[k].d_out)),
                    np.asarray(deltas[k]["bias"])[:, None, :],
                ],
                axis=1,
            ).reshape((m, -1))
            for k in sorted(infos)
        ],
        axis=1,
    )
    cov = flat.T @ flat / m
    for name, sl in zip(sorted(infos), slices, strict=True):
        f = factors[name]
        size = sl.stop - sl.start
        expected = np.linalg.inv(
            n / sigma**2 * np.kron(f.A, f.G) + np.eye(size) / alpha**2
        )
        err = np.linalg.norm(cov[sl, sl] - expected) / np.linalg.norm(expected)
        assert err < 0.025, (name, err)  # measured 0.015, 0.020 (40000 draws)
    # Independent layers: cross-covariances are Monte-Carlo noise, ~sqrt(c_ii c_jj / m);
    # measured at most 3.07 noise units over the 180 pairs (|N(0, 1)| max ~2.9).
    sd = np.sqrt(np.diag(cov))
    noise = np.outer(sd[slices[0]], sd[slices[1]]) / np.sqrt(m)
    assert (np.abs(cov[slices[0], slices[1]]) < 3.5 * noise).all()


def test_linearised_loss_deviation_matches_influence_identity():
    """For delta ~ N(0, Sigma), Sigma from the exact Fisher and small, the mean squared
    linearised loss deviation is g_n^T Sigma g_n (the identity behind the GEX score)."""
    with jax.enable_x64(True):
        model = tiny_mlp()
        params = jax.tree_util.tree_map(
            lambda p: jnp.asarray(p, jnp.float64), model.init(jax.random.key(0))
        )
        x, y = tiny_data(16)
        x = x.astype(np.float64)
        theta, unravel = ravel_pytree(params)
        fisher = exact_fisher(model.apply, theta, unravel, jnp.asarray(x))
        n, alpha, sigma, m = 16, 1e-3, 1e-3, 40000
        cov = np.linalg.inv(n / sigma**2 * fisher + np.eye(theta.size) / alpha**2)
        chol = np.linalg.cholesky(cov)
        eps = np.random.default_rng(0).normal(size=(m, theta.size))
        deltas = jax.jit(jax.vmap(unravel))(jnp.asarray(eps @ chol.T))
        loss, member = linearised_losses(model.apply, params, deltas, x, y, 16)
        grads = jax.jit(
            jax.vmap(
                lambda xi, yi: ravel_pytree(
                    jax.grad(
                        lambda p: per_sample_loss(model.apply(p, xi[None]), yi[None])[0]
                    )(params)
                )[0]
            )
        )(jnp.asarray(x), jnp.asarray(y))
        direct = jax.jit(lambda p, xb, yb: per_sample_loss(model.apply(p, xb), yb))(
            params, x, y
        )
    np.testing.assert_allclose(loss, direct, rtol=1e-12)
    expected = np.einsum("np,pq,nq->n", grads, cov, grads)
    observed = np.mean((member - loss[None]) ** 2, axis=0)
    print(f"max relative error {np.max(np.abs(observed / expected - 1)):.4f}")
    np.testing.assert_allclose(observed, expected, rtol=0.02)  # measured 0.0125


def test_loss_deviation_is_precise_for_small_and_large_perturbations():
    """float32 deviations keep their relative precision for tiny u (where subtracting
    two float32 losses would not) and stay finite for large u."""
    logits = np.array([[3.0, -1.0, 0.5], [0.0, 8.0, -2.0]])
    labels = np.array([0, 2])
    direction = np.array([[0.3, -1.0, 2.0], [-0.5, 0.7, 1.1]])

    def ce(z):  # float64 reference
        top = z.max(axis=-1)
        lse = top + np.log(np.exp(z - top[:, None]).sum(axis=-1))
        return lse - z[np.arange(2), labels]

    scales = np.array([1e-6, 1e-2, 30.0])
    u = scales[:, None, None] * direction  # (3, B, C)
    got = jax.jit(loss_deviation_from_logits)(
        jnp.asarray(logits, jnp.float32),
        jnp.asarray(u, jnp.float32),
        jnp.asarray(labels),
    )
    want = np.stack([ce(logits + ui) - ce(logits) for ui in u])
    np.testing.assert_allclose(got, want, rtol=1e-5)


def tiny_problem():
    model, params = flax_model(
        ConvNet((("features", 2), ("kernel_size", (2, 2)))),
        (3, 3, 1),
        dtype=jnp.float32,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3, 3, 1)).astype(np.float32)
    y = rng.integers(0, 3, 48).astype(np.int32)
    return model, params, x, y


def reference_scores(model, params, x, y, x_test, y_test, batches, key, hp):
    """la_kfac's (self, test) influence from its definition: the posterior draws from the
    K-FAC pieces (each checked against explicit Fishers above) with the key split into
    (Fisher labels, posterior) and N = len(x); the linearised member logits f + J delta_m
    by one jax.jvp per member; float64 cross-entropies; the GEX means written out, the
    pretrained losses clamped at tau."""
    fisher_key, posterior_key = jax.random.split(key)
    factors = kfac.kfac_factors(model.apply, params, x, batches, fisher_key)
    infos = kfac.layer_infos(model.apply, params, x[batches[0]])
    deltas = kfac.sample_posterior(
        kfac.eigen_blocks(factors),
        infos,
        params,
        posterior_key,
        hp["members"],
        x.shape[0],
        hp["alpha"],
        hp["sigma"],
    )

    def ce(z, labels):  # (..., B, C), (B,) -> (..., B)
        top = z.max(axis=-1, keepdims=True)
        lse = top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))
        picked = np.broadcast_to(labels, z.shape[:-1])[..., None]
        return lse - np.take_along_axis(z, picked, -1)[..., 0]

    def losses(xs, ys):
        def tangent(d):
            return jax.jvp(lambda p: model.apply(p, xs), (params,), (d,))[1]

        logits = np.asarray(model.apply(params, xs), np.float64)
        u = np.asarray(jax.jit(jax.vmap(tangent))(deltas), np.float64)
        return ce(logits, ys), ce(logits[None] + u, ys)

    loss, member = losses(x, y)
    loss_test, member_test = losses(x_test, y_test)
    dev = member - np.maximum(loss, hp["tau"])[None]
    dev_test = member_test.mean(axis=1) - max(loss_test.mean(), hp["tau"])
    return np.mean(dev**2, axis=0), np.mean(dev_test[:, None] * dev, axis=0)


def assert_matches_reference(scores, reference):
    """float32 scores against the float64 reference: measured at most 3e-5 relative per
    sample and 1e-6 of the largest |score| (float32 rounding); a wrong key, N or member
    draw changes the scores by far more, and so does ignoring tau (by 66% of the
    largest self-influence in the tau = 0.3 test)."""
    for got, want in zip(
        (scores.self_influence, scores.test_influence), reference, strict=True
    ):
        scale = np.abs(want).max()
        assert scale > 1e-5  # not trivially zero
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


def test_la_kfac_scores_match_reference_and_are_deterministic():
    """tau = 0.3 clamps 3 of the 32 pretrained losses (the smallest is 0.065)."""
    model, params, x, y = tiny_problem()
    inputs = Problem(
        model, params, x[:32], y[:32], x[32:], y[32:], seed=3, eval_batch_size=16
    )
    hp = {"members": 4, "alpha": 0.1, "sigma": 0.1, "tau": 0.3}
    hp |= {"num_batches": 3, "batch_size": 16}
    batches = sample_batches(32, 3, 16, inputs.rng("curvature_batches"))
    assert batches.shape == (3, 16)

    def run(key):
        return la_kfac_scores(
            model.apply,
            params,
            x[:32],
            y[:32],
            x[32:],
            y[32:],
            fisher_batches=batches,
            key=key,
            members=4,
            alpha=0.1,
            sigma=0.1,
            tau=0.3,
            eval_batch_size=16,
        )

    first, other = run(inputs.key("la_kfac")), run(jax.random.key(1))
    again = compute(inputs, hp)  # the registry adapter draws the same batches and key
    assert first.self_influence.shape == (32,) and first.test_influence.shape == (32,)
    reference = reference_scores(
        model,
        params,
        x[:32],
        y[:32],
        x[32:],
        y[32:],
        batches,
        inputs.key("la_kfac"),
        hp,
    )
    assert_matches_reference(first, reference)
    np.testing.assert_array_equal(first.self_influence, again.self_influence)
    np.testing.assert_array_equal(first.test_influence, again.test_influence)
    assert not np.allclose(first.self_influence, other.self_influence)


def test_parameters_outside_dense_and_conv_are_rejected():
    model, params = flax_model(WithLayerNorm(), (4, 1, 1), dtype=jnp.float32)
    with pytest.raises(ValueError, match="LayerNorm_0/scale"):
        kfac.layer_infos(model.apply, params, inputs(2, (4, 1, 1)))
    plain = tiny_mlp()
    with pytest.raises(ValueError, match="no flax"):
        kfac.layer_infos(
            plain.apply, plain.init(jax.random.key(0)), inputs(2, (4, 1, 1))
        )


# --- batch-norm models: {"params", "batch_stats"} variables, diagonal BN blocks ---


class ConvBNNet(nn.Module):
    """Conv -> BatchNorm (running statistics) -> relu -> mean over positions ->
    Dense(3), the variables convention of gex_core.training.models' BN models. `extra` adds a
    LayerNorm after the pooling (parameters K-FAC has no block for)."""

    conv: tuple = (("features", 3), ("kernel_size", (2, 2)), ("padding", "VALID"))
    extra: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(**dict(self.conv))(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5)(x))
        x = jnp.mean(x, axis=(1, 2))
        if self.extra:
            x = nn.LayerNorm()(x)
        return nn.Dense(3)(x)


def bn_flax_model(module, input_shape, seed=0, dtype=jnp.float64, std=0.8):
    """As flax_model, with variables {"params", "batch_stats"}: N(0, std^2) params
    (BN scale too), running means N(0, 0.5^2) and variances U(0.5, 2), and apply in
    evaluation mode with the statistics under stop_gradient (as gex_core.training.models)."""

    def apply(variables, x):
        stats = jax.lax.stop_gradient(variables["batch_stats"])
        return module.apply({**variables, "batch_stats": stats}, x)

    shapes = jax.eval_shape(
        module.init, jax.random.key(0), jnp.zeros((1, *input_shape))
    )
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(std * rng.normal(size=s.shape), dtype), shapes["params"]
    )

    def stat(kp, s):
        if kp[-1].key == "var":
            return jnp.asarray(rng.uniform(0.5, 2.0, size=s.shape), dtype)
        return jnp.asarray(0.5 * rng.normal(size=s.shape), dtype)

    stats = jax.tree_util.tree_map_with_path(stat, shapes["batch_stats"])
    variables = {"params": params, "batch_stats": stats}
    return Model("test_bn", lambda key: variables, apply), variables


BN_LEAVES = ("Conv_0", "BatchNorm_0/bias", "BatchNorm_0/scale", "Dense_0")


def test_bn_model_blocks_are_exact_for_one_input():
    """Conv at one position, one input, exact labels: the Conv and Dense blocks of the
    explicit Fisher (over all trainable parameters, BN scale/bias included) are A (x) G,
    and the BN blocks' diagonals are the diagonal factors; with 6 inputs the diagonal
    factors still equal diag(F) exactly (they are no approximation of the diagonal)."""
    with jax.enable_x64(True):
        model, variables = bn_flax_model(ConvBNNet(), (2, 2, 2))
        infos = kfac.layer_infos(model.apply, variables, inputs(1, (2, 2, 2)))
        assert sorted(infos) == sorted(BN_LEAVES)
        assert {n: i.kind for n, i in infos.items()} == {
            "Conv_0": "conv",
            "Dense_0": "dense",
            "BatchNorm_0/bias": "diagonal",
            "BatchNorm_0/scale": "diagonal",
        }
        theta, unflatten, slices = block_vector(infos, variables)
        assert theta.size == sum(
            p.size for p in jax.tree_util.tree_leaves(variables["params"])
        )
        for n in (1, 6):
            x = inputs(n, (2, 2, 2))
            factors = kfac.kfac_factors(
                model.apply,
                variables,
                x,
                [np.arange(n)],
                jax.random.key(0),
                exact_labels=True,
            )
            fisher = exact_fisher(model.apply, theta, unflatten, jnp.asarray(x))
            for name, sl in zip(sorted(infos), slices, strict=True):
                block = fisher[sl, sl]
                assert np.abs(np.diag(block)).max() > 1e-3, name  # not trivially zero
                if isinstance(infos[name], kfac.DiagonalInfo):
                    f = factors[name]
                    assert isinstance(f, kfac.DiagonalFactor)
                    assert f.F.shape == infos[name].shape
                    np.testing.assert_allclose(
                        f.F.ravel(), np.diag(block), rtol=1e-10, atol=1e-14
                    )
                elif n == 1:
                    kron = np.kron(factors[name].A, factors[name].G)
                    np.testing.assert_allclose(kron, block, rtol=1e-9, atol=1e-12)


def bn_sampled_setup():
    """SAME conv (9 positions), 2 Fisher batches of 5 of 8 inputs, sampled labels."""
    model, variables = bn_flax_model(
        ConvBNNet((("features", 3), ("kernel_size", (2, 2)))), (3, 3, 2)
    )
    x = inputs(8, (3, 3, 2))
    batches = [np.array([0, 1, 2, 3, 4]), np.array([5, 6, 7, 0, 2])]
    key = jax.random.key(5)
    factors = kfac.kfac_factors(model.apply, variables, x, batches, key)
    return model, variables, x, batches, key, factors


def test_bn_diagonal_fisher_matches_per_sample_gradients():
    """Sampled labels: F_diag = mean over the 10 samples of the squared gradient at the
    label drawn for it (the same draws as the Kronecker factors: categorical with
    fold_in(key, batch)), from jax.grad one sample at a time. The gradient is exactly
    zero on batch_stats, and the Kronecker factors are those computed without the
    diagonal blocks."""
    with jax.enable_x64(True):
        model, variables, x, batches, key, factors = bn_sampled_setup()

        @jax.jit
        def sample_grad(v, xi, yi):
            return jax.grad(
                lambda p: per_sample_loss(model.apply(p, xi[None]), yi[None])[0]
            )(v)

        logits_fn = jax.jit(model.apply)
        squares = {"scale": 0.0, "bias": 0.0}
        count = 0
        for i, idx in enumerate(batches):
            labels = jax.random.categorical(
                jax.random.fold_in(key, i), logits_fn(variables, jnp.asarray(x[idx]))
            )
            for j, label in zip(idx, np.asarray(labels), strict=True):
                grad = sample_grad(variables, jnp.asarray(x[j]), jnp.asarray(label))
                for leaf in jax.tree_util.tree_leaves(grad["batch_stats"]):
                    assert not np.any(np.asarray(leaf))
                for k in squares:
                    g = np.asarray(grad["params"]["BatchNorm_0"][k], np.float64)
                    squares[k] = squares[k] + g**2
                count += 1

        blocks = kfac.discover_blocks(model.apply, variables, x[batches[0]])
        plain = kfac_factors_module._make_batch_factors(
            model.apply, blocks.layers, False
        )
        assert blocks.diagonal  # the full path used diagonal blocks
        without = [
            plain(variables, jnp.asarray(x[idx]), jax.random.fold_in(key, i))
            for i, idx in enumerate(batches)
        ]
    for k, sq in squares.items():
        f = factors[f"BatchNorm_0/{k}"]
        assert isinstance(f, kfac.DiagonalFactor) and f.F.shape == (3,)
        assert np.all(sq > 0)
        np.testing.assert_allclose(f.F, sq / count, rtol=1e-10, atol=1e-15)
    for info in blocks.layers:
        a = sum(np.asarray(w[info.name][0]) for w in without) / count
        g = sum(np.asarray(w[info.name][1]) for w in without) / count
        np.testing.assert_allclose(factors[info.name].A, a, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(factors[info.name].G, g, rtol=1e-12, atol=1e-15)
    assert set(factors) == set(BN_LEAVES)


def test_bn_posterior_draw_closed_form():
    """One normal draw split in sorted block-name order: each diagonal leaf is
    eps / sqrt(N F_diag / sigma^2 + 1 / alpha^2), each layer the Kronecker posterior
    transform of its slice, batch_stats exactly zero; the deltas have the variables'
    structure, shapes (M, ...) and dtypes."""
    m, n, alpha, sigma = 3, 40, 0.3, 0.05
    with jax.enable_x64(True):
        model, variables, x, batches, _, factors = bn_sampled_setup()
        infos = kfac.layer_infos(model.apply, variables, x[batches[0]])
        eigens = kfac.eigen_blocks(factors)
        key = jax.random.key(9)
        deltas = kfac.sample_posterior(
            eigens, infos, variables, key, m, n, alpha, sigma
        )
        names = sorted(infos)
        sizes = [
            int(np.prod(kfac.layer_block(infos[k], variables).shape)) for k in names
        ]
        eps_all = np.asarray(jax.random.normal(key, (m, sum(sizes)), jnp.float64))
        expected = {}
        start = 0
        for name, size in zip(names, sizes, strict=True):
            info, eps = infos[name], eps_all[:, start : start + size]
            start += size
            if isinstance(info, kfac.DiagonalInfo):
                f = factors[name].F
                expected[name] = eps.reshape((m, *info.shape)) / np.sqrt(
                    n * f / sigma**2 + 1 / alpha**2
                )
            else:
                block = kfac.posterior_transform(
                    eigens[name],
                    jnp.asarray(eps.reshape((m, info.d_in, info.d_out))),
                    n,
                    alpha,
                    sigma,
                )
                expected[name] = kfac.block_to_params(info, block)
    assert jax.tree_util.tree_structure(deltas) == jax.tree_util.tree_structure(
        variables
    )
    for d, v in zip(
        jax.tree_util.tree_leaves(deltas),
        jax.tree_util.tree_leaves(variables),
        strict=True,
    ):
        assert d.shape == (m, *v.shape) and d.dtype == v.dtype
    for leaf in jax.tree_util.tree_leaves(deltas["batch_stats"]):
        assert not np.any(np.asarray(leaf))
    bn = deltas["params"]["BatchNorm_0"]
    for k in ("scale", "bias"):
        np.testing.assert_allclose(bn[k], expected[f"BatchNorm_0/{k}"], rtol=1e-12)
        assert np.all(np.asarray(bn[k]) != 0)
    for name in ("Conv_0", "Dense_0"):
        for k, value in expected[name].items():
            np.testing.assert_allclose(
                deltas["params"][name][k], value, rtol=1e-10, atol=1e-14
            )


def test_la_kfac_scores_on_bn_model():
    """End to end on the float32 BN model: the reference scores, deterministic."""
    model, variables = bn_flax_model(
        ConvBNNet((("features", 3), ("kernel_size", (2, 2)))),
        (3, 3, 1),
        dtype=jnp.float32,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3, 3, 1)).astype(np.float32)
    y = rng.integers(0, 3, 48).astype(np.int32)
    batches = sample_batches(32, 2, 16, np.random.default_rng(1))

    def run():
        return la_kfac_scores(
            model.apply,
            variables,
            x[:32],
            y[:32],
            x[32:],
            y[32:],
            fisher_batches=batches,
            key=jax.random.key(4),
            members=4,
            alpha=0.1,
            sigma=0.1,
            tau=0.0,
            eval_batch_size=16,
        )

    first, again = run(), run()
    assert first.self_influence.shape == (32,) and first.test_influence.shape == (32,)
    hp = {"members": 4, "alpha": 0.1, "sigma": 0.1, "tau": 0.0}
    reference = reference_scores(
        model, variables, x[:32], y[:32], x[32:], y[32:], batches, jax.random.key(4), hp
    )
    assert_matches_reference(first, reference)
    np.testing.assert_array_equal(first.self_influence, again.self_influence)
    np.testing.assert_array_equal(first.test_influence, again.test_influence)


@pytest.mark.parametrize(
    ("name", "input_shape", "convs_3x3", "convs_1x1"),
    [("vgg", (28, 28, 1), 8, 0), ("resnet18", (32, 32, 3), 17, 3)],
)
def test_block_discovery_on_bn_models(name, input_shape, convs_3x3, convs_1x1):
    """Shapes only (jax.eval_shape): every Conv/Dense is a Kronecker layer, every
    BatchNorm scale/bias a diagonal block, batch_stats no block, nothing orphaned."""
    model = make_model(name, 10, input_shape)
    variables = jax.eval_shape(model.init, jax.random.key(0))
    infos = kfac.layer_infos(model.apply, variables, np.zeros((2, *input_shape)))
    convs = [i for i in infos.values() if i.kind == "conv"]
    dense = [i for i in infos.values() if i.kind == "dense"]
    diagonal = [i for i in infos.values() if i.kind == "diagonal"]
    assert sum(i.kernel_shape[:2] == (3, 3) for i in convs) == convs_3x3
    assert sum(i.kernel_shape[:2] == (1, 1) for i in convs) == convs_1x1
    assert len(convs) == convs_3x3 + convs_1x1
    assert len(dense) == 1 and dense[0].d_out == 10
    norms = {
        path[:-1]
        for path, _ in kfac_blocks.leaf_paths(variables["params"])
        if "BatchNorm" in path[-2]
    }
    assert len(norms) == len(convs)  # one BN after every conv
    assert sorted(i.path for i in diagonal) == sorted(
        (*p, k) for p in norms for k in ("bias", "scale")
    )
    for info in diagonal:
        assert info.path[-2].startswith("BatchNorm")
        assert info.shape == tuple(kfac.layer_block(info, variables).shape)
    # every trainable leaf has exactly one block
    covered = sum(1 + i.use_bias for i in (*convs, *dense)) + len(diagonal)
    assert covered == len(jax.tree_util.tree_leaves(variables["params"]))


def test_other_parameters_of_bn_models_are_rejected():
    """A LayerNorm in a {"params", "batch_stats"} model, or a collection other than
    batch_stats, still raises the orphan error."""
    with jax.enable_x64(True):
        model, variables = bn_flax_model(ConvBNNet(extra=True), (2, 2, 2))
        x = inputs(2, (2, 2, 2))
        with pytest.raises(ValueError, match="params/LayerNorm_0/scale"):
            kfac.layer_infos(model.apply, variables, x)
        model, variables = bn_flax_model(ConvBNNet(), (2, 2, 2))
        extra = {**variables, "cache": {"x": jnp.zeros(2)}}
        with pytest.raises(ValueError, match="cache/x"):
            kfac.layer_infos(model.apply, extra, x)
