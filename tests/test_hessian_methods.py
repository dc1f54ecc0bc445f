"""Ground truth for the Hessian-based methods (exact, arnoldi, lissa), in float64.

- exact against leave-one-out retraining of an L2-regularised (strictly convex)
  multinomial logistic regression;
- arnoldi's eigenvalues against numpy.linalg.eigh of the explicit Hessian, and its
  scores with every eigenpair kept against exact / k;
- lissa's inverse-HVPs against exact on a convex problem;
- the refusals (model too large, scale too small) and the dropped eigenvalues.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gex_core.influence.arnoldi import arnoldi_eigenpairs, arnoldi_scores
from gex_core.influence.arnoldi import compute as arnoldi_compute
from gex_core.influence.exact import compute as exact_compute
from gex_core.influence.exact import exact_scores
from gex_core.influence.hessian import (
    dataset_hessian,
    dense_hessian,
    fixed_batch_hvp,
    flat_per_sample_grads,
)
from gex_core.influence.lissa import compute as lissa_compute
from gex_core.influence.lissa import lissa_scores
from gex_core.influence.problem import Problem as InfluenceProblem
from gex_core.training.batching import sample_batches
from gex_core.training.losses import softmax_cross_entropy as per_sample_loss
from gex_core.training.models import Model
from tests.helpers import tiny_data, tiny_mlp

N, D, C = 30, 4, 3
L2 = 0.1  # strong regularisation: the first-order influence function is accurate


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def logistic_regression(in_features: int, num_classes: int) -> Model:
    """Multinomial logistic regression on (B, in_features, 1, 1), in its identifiable
    form: the last class's logit is pinned to 0 (C - 1 free weight columns), so the plain
    cross-entropy Hessian is positive definite (no softmax null space)."""

    def init(key):
        del key
        return {
            "w": jnp.zeros((in_features, num_classes - 1)),
            "b": jnp.zeros(num_classes - 1),
        }

    def apply(params, x):
        z = x.reshape((x.shape[0], -1)) @ params["w"] + params["b"]
        return jnp.concatenate([z, jnp.zeros((z.shape[0], 1), z.dtype)], axis=1)

    return Model("logreg", init, apply)


def clustered_data(n: int, seed: int = 0):
    """Gaussian classes with unit noise: overlapping, so no sample is fitted perfectly."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(size=(C, D))
    y = rng.integers(0, C, n).astype(np.int32)
    x = centers[y] + rng.normal(size=(n, D))
    return x.reshape(n, D, 1, 1), y


def fit(model: Model, x, y, l2: float, weights: np.ndarray):
    """Minimise (1/N) sum_n w_n l_n + l2/2 ||theta||^2 by 30 Newton steps (float64,
    converges to machine precision on this strictly convex problem), for each row of
    weights (R, N) -> flat parameters (R, P) and unravel."""
    flat0, unravel = ravel_pytree(
        jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.init(None))
    )
    x, y = jnp.asarray(x), jnp.asarray(y)

    def objective(f, w):
        loss = per_sample_loss(model.apply(unravel(f), x), y)
        return jnp.sum(w * loss) / x.shape[0] + 0.5 * l2 * f @ f

    def solve_one(w):
        def newton(_, f):
            hess = jax.hessian(objective)(f, w)
            return f - jnp.linalg.solve(hess, jax.grad(objective)(f, w))

        return jax.lax.fori_loop(0, 30, newton, flat0)

    return jax.jit(jax.vmap(solve_one))(jnp.asarray(weights)), unravel


def full_hessian(model, params, x, y):
    """Explicit Hessian of the mean loss over all of (x, y), by jax.hessian."""
    xj = jnp.asarray(x)
    return np.asarray(
        dense_hessian(
            lambda p: jnp.mean(per_sample_loss(model.apply(p, xj), y)), params
        )
    )


class Problem(NamedTuple):
    model: Model
    params: dict
    x: np.ndarray
    y: np.ndarray
    x_te: np.ndarray
    y_te: np.ndarray
    hessian: np.ndarray  # of the mean loss over (x, y), no damping
    loo_change: np.ndarray | None = None  # l_n(theta_{-n}) - l_n(theta*)


@pytest.fixture(scope="module")
def convex():
    """Logistic regression at the optimum of its L2 objective (positive-definite loss
    Hessian), and the leave-one-out change of every sample's loss."""
    with jax.enable_x64(True):
        model = logistic_regression(D, C)
        x, y = clustered_data(N)
        x_te, y_te = clustered_data(10, seed=1)
        weights = np.vstack([np.ones(N), 1.0 - np.eye(N)])  # full set, then LOO sets
        flats, unravel = fit(model, x, y, L2, weights)
        losses = jax.vmap(
            lambda f: per_sample_loss(model.apply(unravel(f), jnp.asarray(x)), y)
        )(flats)
        loo_change = np.diag(np.asarray(losses[1:])) - np.asarray(losses[0])
        params = unravel(flats[0])
        hessian = full_hessian(model, params, x, y)
        return Problem(model, params, x, y, x_te, y_te, hessian, loo_change)


@pytest.fixture(scope="module")
def indefinite():
    """An untrained tanh MLP (67 parameters, indefinite Hessian) on 40 samples."""
    with jax.enable_x64(True):
        model = tiny_mlp(hidden=8)
        rng = np.random.default_rng(0)
        params = {
            "w1": jnp.asarray(rng.normal(size=(D, 8)) * 0.8),
            "b1": jnp.zeros(8),
            "w2": jnp.asarray(rng.normal(size=(8, C)) * 0.8),
            "b2": jnp.zeros(C),
        }
        x, y = tiny_data(40)
        x = x.astype(np.float64)
        hessian = full_hessian(model, params, x, y)
        return Problem(model, params, x, y, x[:10], y[:10], hessian)


def pearson(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a, b):
    def rank(v):
        return np.argsort(np.argsort(v))

    return pearson(rank(a), rank(b))


def test_exact_self_influence_predicts_leave_one_out_retraining(convex):
    p = convex
    # damping = the L2 of the objective: H is the Hessian of what was minimised
    scores = exact_scores(p.model.apply, p.params, p.x, p.y, p.x_te, p.y_te, damping=L2)
    predicted = scores.self_influence / N  # removing one sample of a mean objective
    assert pearson(predicted, p.loo_change) >= 0.9
    assert spearman(predicted, p.loo_change) >= 0.9
    # and the size is right, not only the ranking (first order underestimates a bit)
    assert 0.7 < np.median(p.loo_change / predicted) < 1.6


def test_dataset_and_fixed_batch_hessians_match_the_dense_hessian(convex):
    model, params, x, y, _, _, dense, _ = convex
    # batches of 7 over 30 samples: the padded last batch must count once
    np.testing.assert_allclose(
        dataset_hessian(model.apply, params, x, y, 7, chunk=5), dense, atol=1e-12
    )
    # (arnoldi's eigenvalue test checks the average over several fixed batches)
    batches = sample_batches(N, 1, 64, np.random.default_rng(0))
    assert sorted(batches.ravel().tolist()) == list(range(N))  # a permutation
    flat, unravel = ravel_pytree(params)
    v = np.random.default_rng(1).normal(size=flat.shape[0])
    hv = fixed_batch_hvp(model.apply, params, x[batches], y[batches], unravel(v))
    np.testing.assert_allclose(ravel_pytree(hv)[0], dense @ v, atol=1e-12)


def test_fixed_batches_are_deterministic_from_the_generator():
    first = sample_batches(100, 4, 16, np.random.default_rng([0, 12]))
    again = sample_batches(100, 4, 16, np.random.default_rng([0, 12]))
    np.testing.assert_array_equal(first, again)
    assert first.shape == (4, 16) and len(np.unique(first)) == 64


def test_exact_refuses_a_model_above_the_parameter_limit(convex):
    # refused before any data is touched (None would fail any computation)
    with pytest.raises(ValueError, match=r"10 parameters.*max_params=9"):
        exact_scores(
            convex.model.apply, convex.params, *[None] * 4, damping=0.0, max_params=9
        )


def test_arnoldi_top_eigenvalues_match_eigh_with_fewer_steps_than_parameters(
    indefinite,
):
    model, params, x, y, _, _, dense, _ = indefinite
    expected = np.linalg.eigh(dense)[0][::-1][:4]
    assert expected.min() > 0
    eig = arnoldi_eigenpairs(
        model.apply,
        params,
        x,
        y,
        np.arange(40).reshape(2, 20),  # two batches, averaged
        key=jax.random.key(6),
        iterations=40,  # of 67 parameters
        top_k=4,
    )
    np.testing.assert_allclose(eig.values, expected, rtol=1e-4)
    # Ritz vectors are unit eigenvectors: ||H u - lambda u|| small
    residual = eig.vectors @ dense - eig.values[:, None] * eig.vectors
    assert np.abs(np.linalg.norm(eig.vectors, axis=1) - 1).max() < 1e-8
    assert np.linalg.norm(residual, axis=1).max() < 1e-4 * expected[0]


def test_arnoldi_with_every_eigenpair_equals_exact_divided_by_k(convex):
    model, params, x, y, x_te, y_te, dense, _ = convex
    num_params = ravel_pytree(params)[0].shape[0]
    eigenvalues = np.linalg.eigh(dense)[0]
    assert eigenvalues.min() > 0  # positive definite without damping
    # more steps than parameters: the iteration must stop early on its own
    scores, eig = arnoldi_scores(
        model.apply,
        params,
        x,
        y,
        x_te,
        y_te,
        np.arange(N)[None],
        key=jax.random.key(6),
        iterations=num_params + 5,
        top_k=num_params,
        eval_batch_size=16,
    )
    assert eig.values.shape == (num_params,) and eig.dropped == 0
    np.testing.assert_allclose(eig.values, eigenvalues[::-1], rtol=1e-8)
    exact = exact_scores(model.apply, params, x, y, x_te, y_te, damping=0.0)
    ratio = scores.self_influence / exact.self_influence
    np.testing.assert_allclose(ratio, 1.0 / num_params, rtol=1e-6)
    np.testing.assert_allclose(
        scores.test_influence * num_params, exact.test_influence, rtol=1e-6, atol=1e-12
    )


def test_arnoldi_drops_nonpositive_eigenvalues_with_a_warning(indefinite):
    model, params, x, y, x_te, y_te, dense, _ = indefinite
    assert np.linalg.eigvalsh(dense).min() < 0
    with pytest.warns(UserWarning, match=r"dropped \d+ of the top 40"):
        scores, eig = arnoldi_scores(
            model.apply,
            params,
            x,
            y,
            x_te,
            y_te,
            np.arange(40).reshape(2, 20),
            key=jax.random.key(6),
            iterations=40,
            top_k=40,
            eval_batch_size=16,
        )
    assert eig.dropped > 0 and (eig.values > 0).all()
    assert eig.values.shape == (40 - eig.dropped,)
    # the scores use exactly the kept eigenpairs: (1/k) sum_i (g_n . u_i)^2 / lambda_i
    grads = flat_per_sample_grads(model.apply, params, x, y, 16)
    proj = grads @ eig.vectors.T
    kept = eig.values.shape[0]
    np.testing.assert_allclose(
        scores.self_influence, (proj**2 / eig.values).sum(1) / kept, rtol=1e-5
    )
    test_grad = flat_per_sample_grads(model.apply, params, x_te, y_te, 16).mean(0)
    np.testing.assert_allclose(
        scores.test_influence,
        (proj / eig.values) @ (eig.vectors @ test_grad) / kept,
        rtol=1e-4,
        atol=1e-9,
    )


LISSA = dict(key=jax.random.key(11), block_size=16, eval_batch_size=16)


def test_lissa_converges_to_the_exact_inverse_hessian_products(convex):
    model, params, x, y, x_te, y_te, dense, _ = convex
    damping = 0.05
    exact = exact_scores(model.apply, params, x, y, x_te, y_te, damping=damping)
    scores, scale = lissa_scores(
        model.apply,
        params,
        x,
        y,
        x_te,
        y_te,
        np.arange(N)[None],  # the whole set: the same H as exact
        damping=damping,
        scale=None,
        iterations=200,
        **LISSA,  # two blocks of 16, the second padded
    )
    top = np.linalg.eigvalsh(dense).max()
    assert top + damping < scale < 2 * (top + damping)  # estimated, with its margin
    for got, want in [
        (scores.self_influence, exact.self_influence),
        (scores.test_influence, exact.test_influence),
    ]:
        assert np.linalg.norm(got - want) <= 1e-3 * np.linalg.norm(want)


def test_lissa_catches_a_too_small_scale(convex):
    model, params, x, y, x_te, y_te, dense, _ = convex
    top = np.linalg.eigvalsh(dense).max()
    args = (model.apply, params, x, y, x_te, y_te, np.arange(N)[None])
    with pytest.raises(ValueError, match="scale .* too small"):
        lissa_scores(*args, damping=0.05, scale=top / 4, iterations=3, **LISSA)
    with pytest.warns(UserWarning, match="oscillates"):
        lissa_scores(*args, damping=0.05, scale=0.8 * top, iterations=3, **LISSA)


def test_registry_adapters_on_the_convex_problem(convex):
    """compute(inputs, hp) wiring: fixed batches from the seed, damping None = the
    recipe's weight decay, arnoldi's 1/k, and lissa's finite output."""
    p = convex
    inputs = InfluenceProblem(
        p.model,
        p.params,
        p.x,
        p.y,
        p.x_te,
        p.y_te,
        eval_batch_size=16,
        recipe={"weight_decay": L2},
    )
    exact = exact_compute(inputs, {"damping": None, "max_params": 5000})
    want = exact_scores(p.model.apply, p.params, p.x, p.y, p.x_te, p.y_te, damping=L2)
    np.testing.assert_allclose(exact.self_influence, want.self_influence, rtol=1e-10)
    with pytest.raises(ValueError, match="10 parameters"):
        exact_compute(inputs, {"damping": 0.0, "max_params": 9})
    # one batch larger than N: the whole (permuted) set, so arnoldi = exact(0) / k
    hp = {"iterations": 15, "top_k": 10, "num_batches": 1, "batch_size": 64}
    arnoldi = arnoldi_compute(inputs, hp)
    plain = exact_compute(inputs, {"damping": 0.0, "max_params": 5000})
    np.testing.assert_allclose(
        arnoldi.self_influence * 10, plain.self_influence, rtol=1e-6
    )
    hp = {"iterations": 3, "num_batches": 2, "batch_size": 15, "block_size": 16}
    lissa = lissa_compute(inputs, {**hp, "damping": None, "scale": None})
    assert lissa.self_influence.shape == (N,) and lissa.test_influence.shape == (N,)
    assert np.isfinite(lissa.self_influence).all() and (lissa.self_influence > 0).all()
