import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gex_core.influence.projection import project_gradients, random_directions
from gex_core.influence.randproj import randproj_scores
from gex_core.training.losses import softmax_cross_entropy as per_sample_loss
from tests.helpers import tiny_data, tiny_mlp


def exact_gradients(model, params, x, y):
    def loss(p, xi, yi):
        return per_sample_loss(model.apply(p, xi[None]), yi[None])[0]

    grads = [
        ravel_pytree(jax.grad(loss)(params, xi, yi))[0]
        for xi, yi in zip(x, y, strict=True)
    ]
    return np.stack([np.asarray(g, np.float64) for g in grads])


@pytest.fixture(scope="module")
def setup():
    model = tiny_mlp()
    params = model.init(jax.random.key(0))
    x, y = tiny_data(12)
    x_te, y_te = tiny_data(5, seed=1)
    return model, params, x, y, x_te, y_te


def test_projection_equals_explicit_gradient_products(setup):
    model, params, x, y, _, _ = setup
    directions = random_directions(jax.random.key(3), params, 6)
    flat_dirs = np.stack(
        [
            np.asarray(ravel_pytree(jax.tree.map(lambda d, i=i: d[i], directions))[0])
            for i in range(6)
        ]
    )
    expected = exact_gradients(model, params, x, y) @ flat_dirs.T
    for strategy in ("jvp", "vjp"):
        got = project_gradients(model.apply, params, directions, x, y, 5, strategy)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_self_influence_is_unbiased_for_the_squared_gradient_norm(setup):
    model, params, x, y, x_te, y_te = setup
    grads = exact_gradients(model, params, x, y)
    scores = randproj_scores(
        model.apply,
        params,
        x,
        y,
        x_te,
        y_te,
        key=jax.random.key(11),
        dim=6000,
        batch_size=12,
        strategy="vjp",
    )
    norms = (grads**2).sum(1)
    # relative std of the estimate is sqrt(2/d) = 0.018; 0.1 is > 5 sigma
    np.testing.assert_allclose(scores.self_influence, norms, rtol=0.1)
    # and a single small draw is not that accurate: the test can tell the difference
    few = randproj_scores(
        model.apply,
        params,
        x,
        y,
        x_te,
        y_te,
        key=jax.random.key(11),
        dim=2,
        batch_size=12,
        strategy="vjp",
    )
    assert np.max(np.abs(few.self_influence / norms - 1)) > 0.1


def test_test_influence_estimates_the_gradient_inner_product(setup):
    model, params, x, y, x_te, y_te = setup
    grads = exact_gradients(model, params, x, y)
    mean_test_grad = exact_gradients(model, params, x_te, y_te).mean(0)
    scores = randproj_scores(
        model.apply,
        params,
        x,
        y,
        x_te,
        y_te,
        key=jax.random.key(5),
        dim=6000,
        batch_size=12,
        strategy="jvp",
    )
    expected = grads @ mean_test_grad
    scale = np.abs(expected).max()
    np.testing.assert_allclose(scores.test_influence, expected, atol=0.1 * scale)


def test_unknown_strategy_is_named(setup):
    model, params, x, y, _, _ = setup
    directions = random_directions(jax.random.key(0), params, 2)
    with pytest.raises(ValueError, match="unknown projection strategy 'fwd'"):
        project_gradients(model.apply, params, directions, x, y, 4, "fwd")
