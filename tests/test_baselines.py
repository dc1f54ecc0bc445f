"""Ground truth for the baselines: tracin, tracinrp, el2n, forgetting, cl, knn, random."""

import functools

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gex_core.influence import (
    cl,
    el2n,
    forgetting,
    knn,
    random_scores,
    tracin,
    tracinrp,
)
from gex_core.influence.problem import Problem
from gex_core.influence.projection import random_directions
from gex_core.training.losses import softmax_cross_entropy as per_sample_loss
from gex_core.training.seeds import jax_key
from tests.helpers import tiny_data, tiny_mlp

RECIPE = dict(
    epochs=30,
    batch_size=16,
    lr=0.1,
    weight_decay=0.0,
    warmup_ratio=0.1,
    momentum=0.9,
    num_checkpoints=3,
)


def make_problem(
    *, seed=0, n=10, n_test=5, data=None, record=None, eval_batch_size=4
) -> Problem:
    """A tiny MLP problem with a three-checkpoint trajectory (the last one is theta*)."""
    model = tiny_mlp()
    if data is None:
        data = (*tiny_data(n), *tiny_data(n_test, seed=1))
    trajectory = [model.init(jax.random.key(i)) for i in range(3)]
    return Problem(
        model,
        trajectory[-1],
        *data,
        seed=seed,
        eval_batch_size=eval_batch_size,
        recipe=RECIPE,
        num_classes=3,
        trajectory=trajectory,
        trajectory_lrs=np.array([0.3, 0.1, 0.0]),
        record=record,
    )


@functools.cache
def reference_grad(apply):
    """jax.grad of one sample's loss, jitted only so the per-sample loop is fast."""

    @jax.jit
    def grad(params, xi, yi):
        return jax.grad(lambda p: per_sample_loss(apply(p, xi[None]), yi[None])[0])(
            params
        )

    return grad


def flat_grads(model, params, x, y):
    """(N, P) per-sample gradients, one jax.grad call per sample (the reference)."""
    grad = reference_grad(model.apply)
    return np.stack(
        [
            np.asarray(ravel_pytree(grad(params, xi, yi))[0], np.float64)
            for xi, yi in zip(x, y, strict=True)
        ]
    )


def explicit_tracin_terms(inputs):
    """(T, N) squared gradient norms and (T, N) inner products with the mean test
    gradient, by per-sample loops."""
    self_t, test_t = [], []
    for params in inputs.trajectory:
        g = flat_grads(inputs.model, params, *inputs.train_set)
        g_te = flat_grads(inputs.model, params, *inputs.test_set).mean(0)
        self_t.append((g**2).sum(1))
        test_t.append(g @ g_te)
    return np.array(self_t), np.array(test_t)


@pytest.fixture(scope="module")
def fake():
    # N = 10 with batch size 4: the last batch is padded, which must not count
    return make_problem()


@pytest.fixture(scope="module")
def fake_terms(fake):
    return explicit_tracin_terms(fake)


# --- tracin ------------------------------------------------------------------------


@pytest.mark.parametrize("lr_weights", [False, True])
def test_tracin_equals_a_per_sample_loop_over_checkpoints(fake, fake_terms, lr_weights):
    self_t, test_t = fake_terms
    # eta = (0.3, 0.1, 0.0): w_t = eta_t / mean(eta)
    w = np.array([0.3, 0.1, 0.0]) / (0.4 / 3) if lr_weights else np.ones(3)
    expected_self = (w[:, None] * self_t).mean(0)
    expected_test = (w[:, None] * test_t).mean(0)
    got = tracin.compute(fake, {"lr_weights": lr_weights})
    np.testing.assert_allclose(got.self_influence, expected_self, rtol=1e-4)
    scale = np.abs(expected_test).max()
    np.testing.assert_allclose(got.test_influence, expected_test, atol=1e-4 * scale)
    if lr_weights:  # the final checkpoint (eta = 0) no longer counts
        assert not np.allclose(got.self_influence, self_t.mean(0), rtol=1e-2)


def test_lr_weights_need_a_positive_learning_rate():
    with pytest.raises(ValueError, match="positive sum"):
        tracin.lr_checkpoint_weights(np.zeros(3))
    np.testing.assert_allclose(tracin.lr_checkpoint_weights([1.0, 3.0]), [0.5, 1.5])


# --- tracinrp ----------------------------------------------------------------------


def test_tracinrp_is_unbiased_and_its_error_shrinks_like_one_over_sqrt_d():
    # n_test = batch size = 8: one compiled projection shape per d
    inputs = make_problem(n=16, n_test=8)
    checkpoints = inputs.trajectory[:2]
    args = (*inputs.train_set, *inputs.test_set)
    weights = tracin.lr_checkpoint_weights([0.2, 0.1])
    exact = tracin.tracin_scores(inputs.model.apply, checkpoints, weights, *args, 8)
    template = checkpoints[0]
    # 1600 i.i.d. directions per draw; their first 100 are a draw with d = 100
    pools = [random_directions(jax.random.key(s), template, 1600) for s in range(8)]
    rms, mean_rel = {}, {}
    for dim in (100, 1600):
        draws = [
            tracinrp.tracinrp_from_directions(
                inputs.model.apply,
                checkpoints,
                weights,
                *args,
                directions=jax.tree.map(lambda v, dim=dim: v[:dim], pool),
                batch_size=8,
                strategy="vjp",
            )
            for pool in pools
        ]
        rel = np.array([s.self_influence / exact.self_influence - 1 for s in draws])
        rms[dim] = np.sqrt(np.mean(rel**2))
        mean_rel[dim] = rel.mean(0)
        mean_test = np.mean([s.test_influence for s in draws], axis=0)
    # rel. std of one draw ~ sqrt(2/d) = 0.035 at d = 1600, 0.14 at d = 100; the mean of
    # 8 draws has std ~0.012, so 0.06 is > 4 sigma.
    assert np.abs(mean_rel[1600]).max() < 0.06
    scale = np.abs(exact.test_influence).max()
    np.testing.assert_allclose(mean_test, exact.test_influence, atol=0.1 * scale)
    ratio = rms[100] / rms[1600]
    print(f"tracinrp rel. RMS error d=100 {rms[100]:.4f} d=1600 {rms[1600]:.4f}")
    assert 3.0 < ratio < 5.5, (rms, ratio)  # sqrt(1600 / 100) = 4


def test_tracinrp_compute_reads_its_stream_and_lr_weights():
    # the shapes of the test above (N 16, batch 8, d 1600): nothing new to compile
    inputs = make_problem(n=16, n_test=8, eval_batch_size=8)
    got = tracinrp.compute(inputs, {"dim": 1600, "strategy": "vjp", "lr_weights": True})
    expected = tracinrp.tracinrp_scores(
        inputs.model.apply,
        inputs.trajectory,
        np.array([0.3, 0.1, 0.0]) / (0.4 / 3),
        *inputs.train_set,
        *inputs.test_set,
        key=jax_key(0, "tracinrp"),
        dim=1600,
        batch_size=8,
        strategy="vjp",
    )
    np.testing.assert_allclose(got.self_influence, expected.self_influence, rtol=1e-5)
    np.testing.assert_allclose(got.test_influence, expected.test_influence, rtol=1e-5)


# --- el2n --------------------------------------------------------------------------


def test_el2n_is_the_unsquared_error_norm():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    labels = np.array([0, 1])
    # p = (1/2, 1/2) vs e_0: sqrt(1/4 + 1/4); p = (3/4, 1/4) vs e_1: sqrt(2) * 3/4
    np.testing.assert_allclose(
        el2n.error_l2_norm(logits, labels), [np.sqrt(0.5), 0.75 * np.sqrt(2)]
    )


def test_el2n_is_finite_and_deterministic():
    inputs = make_problem(n=24)
    hp = {"repeats": 2, "epochs": 3}
    a = el2n.compute(inputs, hp).self_influence
    b = el2n.compute(inputs, hp).self_influence
    np.testing.assert_array_equal(a, b)
    assert a.shape == (24,) and np.isfinite(a).all()
    assert (a >= 0).all() and (a <= np.sqrt(2)).all()
    other = el2n.compute(make_problem(n=24, seed=1), hp).self_influence
    assert not np.allclose(a, other)


# --- forgetting --------------------------------------------------------------------


def test_never_learned_samples_rank_above_every_learned_one():
    scores = forgetting.forgetting_scores(
        np.array([0, 3, 1, 0]), np.array([True, True, True, False])
    )
    np.testing.assert_array_equal(scores, [0, 3, 1, 4])
    fake = make_problem(
        record={"forgetting": np.zeros(2, int), "learned": np.zeros(2, bool)}
    )
    np.testing.assert_array_equal(forgetting.compute(fake, {}).self_influence, [1, 1])


# --- cl ----------------------------------------------------------------------------


def test_stratified_folds_balance_every_label():
    labels = np.array([0] * 7 + [1] * 4 + [2] * 5)
    fold = cl.stratified_folds(labels, 2, np.random.default_rng(0))
    for c in range(3):
        counts = np.bincount(fold[labels == c], minlength=2)
        assert abs(counts[0] - counts[1]) <= 1
    assert abs(np.sum(fold == 0) - np.sum(fold == 1)) <= 1
    again = cl.stratified_folds(labels, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(fold, again)
    with pytest.raises(ValueError, match="folds"):
        cl.stratified_folds(labels, 1, np.random.default_rng(0))


def test_cl_ranks_flipped_labels_first_on_separable_data():
    # Two well-separated Gaussian blobs per class, 3 classes, 4 flipped labels.
    rng = np.random.default_rng(0)
    signs = np.array([1, 1, 1, 1, -1, -1])[:, None]
    centers = 3.0 * np.eye(4)[[0, 1, 2, 3, 0, 1]] * signs
    blob_class = np.array([0, 0, 1, 1, 2, 2])
    blob = np.repeat(np.arange(6), 12)
    x = (centers[blob] + 0.3 * rng.normal(size=(72, 4)))[:, :, None, None]
    clean = blob_class[blob].astype(np.int32)
    noisy = clean.copy()
    flipped = np.array([3, 20, 40, 61])
    noisy[flipped] = (clean[flipped] + 1) % 3
    fake = make_problem(data=(x.astype(np.float32), noisy, x[:4], noisy[:4]))
    scores = cl.compute(fake, {"folds": 2}).self_influence
    assert np.isfinite(scores).all()
    assert set(np.argsort(-scores)[:4]) == set(flipped)


# --- knn ---------------------------------------------------------------------------


def test_knn_by_hand_excluding_self():
    feats = np.array([[0.0], [1.0], [3.0], [10.0]])
    labels = np.array([0, 0, 1, 1])
    # k = 2 nearest *other* samples: {1, 2}, {0, 2}, {1, 0}, {2, 1}
    got = knn.knn_disagreement(feats, labels, num_classes=2, k=2)
    np.testing.assert_allclose(got, [0.5, 0.5, 2.0, 0.5])
    # k = 1: the sample itself would always be its own neighbour (score 0)
    got = knn.knn_disagreement(feats, labels, num_classes=2, k=1)
    np.testing.assert_allclose(got, [0.0, 0.0, 2.0, 0.0])


def test_knn_chunks_need_not_divide_n():
    feats = np.random.default_rng(0).normal(size=(103, 3))
    labels = np.random.default_rng(1).integers(0, 3, 103)
    whole = knn.knn_disagreement(feats, labels, 3, k=7, chunk=1000)
    chunked = knn.knn_disagreement(feats, labels, 3, k=7, chunk=10)
    np.testing.assert_allclose(chunked, whole)
    assert knn.resolve_k(0, 103, 3) == 34 and knn.resolve_k(500, 103, 3) == 102


def test_knn_averages_over_the_trajectory(fake):
    scores = knn.compute(fake, {"k": 3}).self_influence
    x_train, y_train = fake.train_set
    per_ckpt = [
        knn.knn_disagreement(np.asarray(fake.model.apply(p, x_train)), y_train, 3, k=3)
        for p in fake.trajectory
    ]
    np.testing.assert_allclose(scores, np.mean(per_ckpt, axis=0), rtol=1e-6)


# --- random ------------------------------------------------------------------------


def test_random_is_deterministic_per_seed():
    a = random_scores.compute(make_problem(seed=0), {}).self_influence
    b = random_scores.compute(make_problem(seed=0), {}).self_influence
    c = random_scores.compute(make_problem(seed=1), {}).self_influence
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10,) and not np.allclose(a, c)
