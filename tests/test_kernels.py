"""Train x test influence kernels: K[n, j] = influence of training sample n on the loss
of query test sample j, with test_influence's sign (positive = helpful).

Ground truth in float64 on tiny models: exact against an explicit Hessian solve,
randproj against exact gradient inner products (Monte-Carlo tolerance), arnoldi with
every eigenpair against exact / k, tracin against per-sample loops, gex by hand; the
mean over every test sample against test_influence for the methods linear in the test
loss; the file format; and every registered method on real MethodInputs files.
"""

from __future__ import annotations

import functools
from functools import cached_property

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.flatten_util import ravel_pytree

from gex_core.data.datasets import Dataset
from gex_core.influence import gex, la_kfac, lissa, tracin, tracinrp
from gex_core.influence.arnoldi import arnoldi_scores
from gex_core.influence.exact import exact_scores
from gex_core.influence.problem import Problem
from gex_core.influence.randproj import randproj_scores
from gex_core.influence.registry import METHODS
from gex_core.influence.scores import Scores
from gex_core.training.losses import softmax_cross_entropy as per_sample_loss
from gex_core.training.models import Model
from gex_core.workflow.artifacts import (
    load_query_indices,
    load_scores,
    save_dataset,
    save_scores,
)
from gex_core.workflow.checkpoints import save_params
from gex_core.workflow.io import write_npz
from gex_core.workflow.method_inputs import MethodInputs
from gex_core.workflow.stages.influence import run_influence
from tests.helpers import tiny_data, tiny_mlp
from tests.workflow_util import pretraining_files


@pytest.fixture(autouse=True, scope="module")
def fast_compiles():
    """Tiny models: XLA's optimisation passes cost far more than they save."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


class TinyNet(nn.Module):
    """Dense(4) -> tanh -> Dense(3): a flax model (K-FAC blocks), 27 parameters on
    (2, 1, 1) inputs."""

    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(4)(x.reshape((x.shape[0], -1))))
        return nn.Dense(3)(x)


@functools.cache  # one Model, so its jitted functions compile once in this file
def tiny_flax_model() -> Model:
    module, dummy = TinyNet(), jnp.zeros((1, 2, 1, 1), jnp.float32)
    return Model(
        "tiny_flax",
        lambda key: module.init(key, dummy)["params"],
        lambda params, x: module.apply({"params": params}, x),
    )


def as64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


@functools.cache
def reference_grad(apply):
    """Flat gradient of one sample's loss by jax.grad, jitted once per model."""

    @jax.jit
    def grad(params, xi, yi):
        def loss(p):
            return per_sample_loss(apply(p, xi[None]), yi[None])[0]

        return ravel_pytree(jax.grad(loss)(params))[0]

    return grad


def flat_grads(apply, params, x, y) -> np.ndarray:
    """(N, P) per-sample gradients, one jax.grad per sample (the reference)."""
    grad = reference_grad(apply)
    return np.stack(
        [np.asarray(grad(params, xi, yi)) for xi, yi in zip(x, y, strict=True)]
    )


def explicit_hessian(apply, params, x, y) -> np.ndarray:
    """Hessian of the mean training loss by jax.hessian on the flat parameters."""
    flat, unravel = ravel_pytree(params)

    def mean_loss(f):
        return jnp.mean(per_sample_loss(apply(unravel(f), jnp.asarray(x)), y))

    return np.asarray(jax.jit(jax.hessian(mean_loss))(flat))


def assert_mean_is_test_influence(scores: Scores, rtol: float = 1e-10, name=""):
    """The kernel over every test sample, averaged, is the test influence."""
    scale = np.abs(scores.test_influence).max()
    assert scale > 0, name
    np.testing.assert_allclose(
        scores.kernel.mean(axis=1),
        scores.test_influence,
        rtol=rtol,
        atol=rtol * scale,
        err_msg=name,
    )


@pytest.fixture(scope="module")
def mlp_problem():
    """Untrained tanh MLP (27 parameters), 12 train and 5 test samples, float64."""
    with jax.enable_x64(True):
        model = tiny_mlp()
        params = as64(model.init(jax.random.key(0)))
        x, y = tiny_data(12)
        x_te, y_te = tiny_data(5, seed=1)
        x, x_te = x.astype(np.float64), x_te.astype(np.float64)
        grads = flat_grads(model.apply, params, x, y)
        test_grads = flat_grads(model.apply, params, x_te, y_te)
        return model, params, x, y, x_te, y_te, grads, test_grads


ALL_TEST = np.arange(5)


# --- exact -------------------------------------------------------------------------


@pytest.mark.usefixtures("float64")
def test_exact_kernel_is_the_explicit_damped_inverse_hessian_product(mlp_problem):
    model, params, x, y, x_te, y_te, grads, test_grads = mlp_problem
    hessian = explicit_hessian(model.apply, params, x, y)
    # an untrained MLP is indefinite: damp past its lowest eigenvalue
    damping = max(0.0, -np.linalg.eigvalsh(hessian).min()) + 0.1
    scores = exact_scores(
        model.apply, params, x, y, x_te, y_te, damping=damping, queries=ALL_TEST
    )
    damped = hessian + damping * np.eye(hessian.shape[0])
    want = grads @ np.linalg.solve(damped, test_grads.T)
    assert scores.kernel.shape == (12, 5)
    np.testing.assert_allclose(scores.kernel, want, rtol=1e-8, atol=1e-12)
    assert_mean_is_test_influence(scores)
    # no queries, no kernel; the scores themselves do not change
    none = exact_scores(model.apply, params, x, y, x_te, y_te, damping=damping)
    assert none.kernel is None
    np.testing.assert_array_equal(none.test_influence, scores.test_influence)


# --- randproj ----------------------------------------------------------------------


@pytest.mark.usefixtures("float64")
def test_randproj_kernel_is_unbiased_for_gradient_inner_products(mlp_problem):
    model, params, x, y, x_te, y_te, grads, test_grads = mlp_problem
    dim = 4096
    scores = randproj_scores(
        model.apply,
        params,
        x,
        y,
        x_te,
        y_te,
        key=jax.random.key(7),
        dim=dim,
        batch_size=8,
        strategy="vjp",
        queries=ALL_TEST,
    )
    want = grads @ test_grads.T
    # (1/d) sum_k (g^T v_k)(h^T v_k) with v ~ N(0, I) has variance
    # ((g^T h)^2 + |g|^2 |h|^2) / d: relative error sqrt(2/d) = 2.2% when g = h.
    norms = np.sum(grads**2, axis=1)[:, None] * np.sum(test_grads**2, axis=1)[None]
    sigma = np.sqrt((want**2 + norms) / dim)
    z = np.abs(scores.kernel - want) / sigma
    assert z.max() < 5.5, z.max()  # 60 entries: > 5.5 sigma has probability ~2e-6
    assert np.median(z) > 0.05  # an estimate, not the exact product
    assert_mean_is_test_influence(scores, rtol=1e-12)  # same directions


@pytest.mark.usefixtures("float64")
def test_randproj_kernel_columns_follow_the_query_indices(mlp_problem):
    model, params, x, y, x_te, y_te, _, _ = mlp_problem
    args = (model.apply, params, x, y, x_te, y_te)
    kw = dict(key=jax.random.key(2), dim=16, batch_size=8, strategy="jvp")
    full = randproj_scores(*args, **kw, queries=ALL_TEST)
    some = randproj_scores(*args, **kw, queries=np.array([4, 1]))
    np.testing.assert_allclose(some.kernel, full.kernel[:, [4, 1]], rtol=1e-12)
    np.testing.assert_array_equal(some.test_influence, full.test_influence)
    assert randproj_scores(*args, **kw).kernel is None
    with pytest.raises(ValueError, match=r"0\.\.4"):
        randproj_scores(*args, **kw, queries=np.array([5]))


# --- arnoldi -----------------------------------------------------------------------


def logistic_regression(in_features: int, num_classes: int) -> Model:
    """Multinomial logistic regression with the last logit pinned to 0: its loss
    Hessian is positive definite at any parameters (convex, identifiable)."""

    def init(key):
        w = jax.random.normal(key, (in_features, num_classes - 1)) * 0.5
        return {"w": w, "b": jnp.zeros(num_classes - 1)}

    def apply(params, x):
        z = x.reshape((x.shape[0], -1)) @ params["w"] + params["b"]
        return jnp.concatenate([z, jnp.zeros((z.shape[0], 1), z.dtype)], axis=1)

    return Model("logreg", init, apply)


@pytest.fixture(scope="module")
def convex():
    """Logistic regression (10 parameters, positive-definite loss Hessian) on 30 train
    and 17 test samples, float64; one model, so its compilations are shared."""
    with jax.enable_x64(True):
        model = logistic_regression(4, 3)
        params = as64(model.init(jax.random.key(1)))
        x, y = tiny_data(30)
        x_te, y_te = tiny_data(17, seed=1)
        return model, params, x.astype(np.float64), y, x_te.astype(np.float64), y_te


ALL_17 = np.arange(17)


@pytest.mark.usefixtures("float64")
def test_arnoldi_with_every_eigenpair_is_the_exact_kernel_over_k(convex):
    model, params, x, y, x_te, y_te = convex
    num_params = ravel_pytree(params)[0].shape[0]  # 10
    scores, eig = arnoldi_scores(
        model.apply,
        params,
        x,
        y,
        x_te,
        y_te,
        np.arange(30)[None],  # one batch of the whole set: the exact H
        key=jax.random.key(6),
        iterations=num_params + 5,
        top_k=num_params,
        eval_batch_size=16,
        queries=ALL_17,
    )
    assert eig.values.shape == (num_params,) and eig.dropped == 0
    exact = exact_scores(
        model.apply, params, x, y, x_te, y_te, damping=0.0, queries=ALL_17
    )
    # arnoldi's scores are means over the k eigenpairs: exact / k
    scale = np.abs(exact.kernel).max()
    np.testing.assert_allclose(
        scores.kernel * num_params, exact.kernel, rtol=1e-6, atol=1e-9 * scale
    )
    assert_mean_is_test_influence(scores)


# --- lissa -------------------------------------------------------------------------


@pytest.mark.usefixtures("float64")
def test_lissa_kernel_converges_to_the_exact_kernel(convex):
    model, params, x, y, x_te, y_te = convex
    damping = 0.05
    exact = exact_scores(
        model.apply, params, x, y, x_te, y_te, damping=damping, queries=ALL_17
    )
    scores, _ = lissa.lissa_scores(
        model.apply,
        params,
        x,
        y,
        x_te,
        y_te,
        np.arange(30)[None],  # the whole set: the same H as exact
        key=jax.random.key(11),
        damping=damping,
        scale=None,
        iterations=200,
        block_size=16,  # 1 + 17 right-hand sides: two blocks, the second padded
        eval_batch_size=16,
        queries=ALL_17,
    )
    assert scores.kernel.shape == (30, 17)
    # as lissa's own test: 200 steps reach the exact inverse to 1e-3 on this problem
    error = np.linalg.norm(scores.kernel - exact.kernel)
    assert error <= 1e-3 * np.linalg.norm(exact.kernel)
    assert_mean_is_test_influence(scores, rtol=1e-8)  # the recursion is linear


# --- tracin / tracinrp -------------------------------------------------------------


def trajectory_problem(queries: int = 5) -> Problem:
    """What tracin and tracinrp read, float64: three checkpoints, batches of 4 (the
    padding must not count)."""
    model = tiny_mlp()
    x, y = tiny_data(10)
    x_te, y_te = tiny_data(5, seed=1)
    trajectory = [as64(model.init(jax.random.key(i))) for i in range(3)]
    return Problem(
        model,
        trajectory[-1],
        x.astype(np.float64),
        y,
        x_te.astype(np.float64),
        y_te,
        eval_batch_size=4,
        num_classes=3,
        queries=np.arange(queries),
        trajectory=trajectory,
        trajectory_lrs=np.array([0.3, 0.1, 0.0]),
    )


@pytest.mark.usefixtures("float64")
def test_tracin_kernel_is_the_weighted_per_checkpoint_gradient_product():
    inputs = trajectory_problem()
    apply = inputs.model.apply
    products = [  # (T, N, N_te): g_n(theta_t)^T g_j(theta_t)
        flat_grads(apply, p, *inputs.train_set)
        @ flat_grads(apply, p, *inputs.test_set).T
        for p in inputs.trajectory
    ]
    # eta = (0.3, 0.1, 0.0): LR weights eta_t / mean(eta)
    for lr_weights, w in [(False, np.ones(3)), (True, np.array([2.25, 0.75, 0.0]))]:
        scores = tracin.compute(inputs, {"lr_weights": lr_weights})
        want = np.mean(w[:, None, None] * np.array(products), axis=0)
        np.testing.assert_allclose(scores.kernel, want, rtol=1e-10, atol=1e-14)
        assert_mean_is_test_influence(scores)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("lr_weights", [False, True])
def test_tracinrp_kernel_mean_is_its_test_influence(lr_weights):
    inputs = trajectory_problem()
    hp = {"dim": 8, "lr_weights": lr_weights, "strategy": "vjp"}
    scores = tracinrp.compute(inputs, hp)
    assert scores.kernel.shape == (10, 5)
    assert_mean_is_test_influence(scores, rtol=1e-12)
    # a query subset is a subset of the columns; no queries, no kernel
    inputs.query_indices = np.array([2])
    some = tracinrp.compute(inputs, hp)
    np.testing.assert_allclose(some.kernel, scores.kernel[:, [2]], rtol=1e-12)
    inputs.query_indices = np.zeros(0, np.int64)
    assert tracinrp.compute(inputs, hp).kernel is None


# --- gex / la_kfac -----------------------------------------------------------------


def test_gex_kernel_matches_a_hand_computation_and_clamps_each_query():
    # M = 2 members, N = 3 training samples, N_te = 2 test samples
    members = np.array([[0.30, 0.02, 1.00], [0.10, 0.06, 0.50]])
    pretrained = np.array([0.20, 0.01, 0.40])
    members_test = np.array([[0.5, 0.07], [0.2, 0.02]])
    pretrained_test = np.array([0.3, 0.01])  # query 1 is below tau = 0.05
    scores = gex.gex_scores(
        members,
        pretrained,
        members_test,
        pretrained_test,
        0.05,
        queries=[1, 0],
        reference="clamped",
    )
    # Delta = [[0.10, -0.03, 0.60], [-0.10, 0.01, 0.10]]
    # Delta_q = [[0.5 - 0.3, 0.07 - 0.05], [0.2 - 0.3, 0.02 - 0.05]]
    #         = [[0.2, 0.02], [-0.1, -0.03]]  (the 0.01 is clamped to 0.05)
    want = np.array(
        [
            [(0.10 * 0.02 + 0.10 * 0.03) / 2, (0.10 * 0.2 + 0.10 * 0.1) / 2],
            [(-0.03 * 0.02 - 0.01 * 0.03) / 2, (-0.03 * 0.2 - 0.01 * 0.1) / 2],
            [(0.60 * 0.02 - 0.10 * 0.03) / 2, (0.60 * 0.2 - 0.10 * 0.1) / 2],
        ]
    )
    np.testing.assert_allclose(scores.kernel, want, rtol=1e-12)
    np.testing.assert_allclose(want[:, 0], [0.0025, -0.00045, 0.0045])
    # unclamped (tau = 0) query 1 deviations are 0.06 and 0.01: a different column
    unclamped = gex.gex_scores(
        members, pretrained, members_test, pretrained_test, 0.0, queries=[1]
    )
    delta0 = members - pretrained
    np.testing.assert_allclose(
        unclamped.kernel[:, 0], (delta0 * np.array([[0.06], [0.01]])).mean(0)
    )
    plain = gex.gex_scores(members, pretrained, members_test, pretrained_test, 0.0)
    assert plain.kernel is None


def test_gex_kernel_mean_is_test_influence_without_the_clamp():
    rng = np.random.default_rng(0)
    args = (rng.random((6, 9)), rng.random(9), rng.random((6, 7)), rng.random(7))
    assert_mean_is_test_influence(gex.gex_scores(*args, 0.0, queries=np.arange(7)))
    # with the clamp the means differ (the clamp is per query, not of the mean)
    clamped = gex.gex_scores(*args, 0.5, queries=np.arange(7), reference="clamped")
    assert not np.allclose(clamped.kernel.mean(1), clamped.test_influence)


def test_la_kfac_kernel_mean_is_test_influence_without_the_clamp(run_files):
    # the real inputs of a tiny run (below), every test sample a query
    hp = {**HPARAMS["la_kfac"], "tau": 0.0}
    scores = la_kfac.compute(method_inputs(run_files, N_TE), hp)
    assert scores.kernel.shape == (N, N_TE)
    assert_mean_is_test_influence(scores, rtol=1e-8)
    # the same posterior draws: the first queries are the first columns
    some = la_kfac.compute(method_inputs(run_files, 3), hp)
    np.testing.assert_allclose(some.kernel, scores.kernel[:, :3], rtol=1e-12)
    np.testing.assert_array_equal(some.test_influence, scores.test_influence)


# --- file format -------------------------------------------------------------------


def test_scores_round_trip_with_and_without_kernel(tmp_path):
    rng = np.random.default_rng(0)
    self_inf, test_inf = rng.normal(size=4), rng.normal(size=4)
    kernel = rng.normal(size=(4, 3))
    path = tmp_path / "with.npz"
    save_scores(path, Scores(self_inf, test_inf, kernel), query_indices=[0, 1, 2])
    back = load_scores(path)
    np.testing.assert_array_equal(back.kernel, kernel)
    np.testing.assert_array_equal(back.test_influence, test_inf)
    np.testing.assert_array_equal(load_query_indices(path), [0, 1, 2])
    assert load_query_indices(path).dtype == np.int64

    path = tmp_path / "without.npz"
    save_scores(path, Scores(self_inf, test_inf), query_indices=[0, 1, 2])
    back = load_scores(path)
    assert back.kernel is None and load_query_indices(path) is None
    with np.load(path) as data:
        assert sorted(data.files) == ["self_influence", "test_influence"]

    # a file of the old format (self influence only) still loads
    path = tmp_path / "old.npz"
    write_npz(path, self_influence=self_inf)
    back = load_scores(path)
    assert back.test_influence is None and back.kernel is None

    # refusals: non-finite kernel, wrong shape, query indices that do not match
    bad = kernel.copy()
    bad[1, 2] = np.nan
    with pytest.raises(FloatingPointError, match="kernel has 1 non-finite"):
        save_scores(tmp_path / "bad.npz", Scores(self_inf, test_inf, bad))
    with pytest.raises(ValueError, match=r"kernel must be \(N=4, Q\)"):
        save_scores(tmp_path / "bad.npz", Scores(self_inf, test_inf, kernel.T))
    with pytest.raises(ValueError, match="3 integers"):
        save_scores(tmp_path / "bad.npz", Scores(self_inf, None, kernel), [0, 1])
    assert not (tmp_path / "bad.npz").exists()


# --- every registered method on real MethodInputs ----------------------------------

N, N_TE, SHAPE = 24, 8, (2, 1, 1)
RECIPE = dict(
    epochs=2,
    batch_size=8,
    lr=0.05,
    weight_decay=5e-4,
    warmup_ratio=0.1,
    momentum=0.9,
    num_checkpoints=2,
)
HPARAMS = {
    "gex": {"tau": 0.0},
    "la_kfac": {
        "members": 2,
        "alpha": 1e-2,
        "sigma": 1e-2,
        "tau": 0.0,
        "num_batches": 1,
        "batch_size": 16,
    },
    "randproj": {"dim": 4, "strategy": "vjp"},
    "tracinrp": {"dim": 4, "lr_weights": True, "strategy": "vjp"},
    "tracin": {"lr_weights": False},
    "arnoldi": {
        "iterations": 5,
        "top_k": 3,
        "num_batches": 1,
        "batch_size": 16,
        "strategy": "vjp",
    },
    "exact": {"damping": 0.5, "max_params": 5000},
    "lissa": {
        "iterations": 2,
        "damping": 0.1,
        "scale": None,
        "num_batches": 1,
        "batch_size": 16,
        "block_size": 8,
    },
    "el2n": {"repeats": 1, "epochs": 1},
    "forgetting": {},
    "member_loss": {},
    "cl": {"folds": 2},
    "knn": {"k": 0},
    "random": {},
}


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """The artifacts of a tiny run in their real formats (float32, as the workflow
    writes them), for the 27-parameter TinyNet."""
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N + N_TE, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, N + N_TE).astype(np.int64)
    save_dataset(
        str(root / "data.npz"), Dataset(x[:N], y[:N], x[N:], y[N:], num_classes=3)
    )
    write_npz(root / "labels.npz", noisy=y[:N], clean=y[:N], mask=np.zeros(N, bool))
    model = tiny_flax_model()
    pretrain = root / "pretrain"
    pretrain.mkdir()
    save_params(pretrain / "model.msgpack", model.init(jax.random.key(0)))
    save_params(
        pretrain / "trajectory.msgpack",
        [model.init(jax.random.key(i)) for i in (1, 2)],
    )
    write_npz(
        pretrain / "record.npz",
        last_loss=rng.random(N),
        forgetting=rng.integers(0, 3, N),
        learned=rng.random(N) > 0.2,
        trajectory_epochs=np.array([1, 2]),
    )
    write_npz(pretrain / "losses.npz", train=rng.random(N), test=rng.random(N_TE))
    pd.DataFrame({"epoch": [1, 2], "lr": [0.05, 0.0]}).to_csv(
        pretrain / "history.tsv", sep="\t", index=False
    )
    write_npz(
        root / "chain0.npz",
        train_losses=rng.random((3, N)).astype(np.float32),
        test_losses=rng.random((3, N_TE)).astype(np.float32),
        val_accuracy=np.array([0.9, 0.8, 0.85]),
        pretrained_val_accuracy=np.array(0.9),
        kept=np.ones(3, bool),
    )
    return root


class TinyRunInputs(MethodInputs):
    """MethodInputs reading the run's files, with TinyNet for the model: the registry's
    smallest (`mlp`, 1,539 parameters here) makes exact and lissa take ~15 s."""

    @cached_property
    def model(self):
        return tiny_flax_model()


def method_inputs(root, queries: int) -> MethodInputs:
    return TinyRunInputs(
        data_path=str(root / "data.npz"),
        labels_path=str(root / "labels.npz"),
        pretraining=pretraining_files(root / "pretrain"),
        model_name="mlp",
        seed=0,
        eval_batch_size=16,
        recipe=RECIPE,
        chain_paths=(str(root / "chain0.npz"),),
        queries=queries,
    )


def test_query_indices_are_the_first_test_samples(run_files):
    np.testing.assert_array_equal(method_inputs(run_files, 3).query_indices, [0, 1, 2])
    assert method_inputs(run_files, 3).query_indices.dtype == np.int64
    np.testing.assert_array_equal(
        method_inputs(run_files, 100).query_indices, np.arange(N_TE)
    )
    # Q = 0: empty, without reading the data
    none = method_inputs(run_files, 0)
    none.data_path = str(run_files / "missing.npz")
    assert none.query_indices.shape == (0,) and none.query_indices.dtype == np.int64
    with pytest.raises(ValueError, match="queries must be >= 0"):
        method_inputs(run_files, -1)


def test_every_method_returns_the_kernel_its_registry_entry_promises(run_files):
    """Kernel methods return (N, Q) whose mean over every test sample is their test
    influence (float32 models: to float32 rounding; gex and la_kfac with tau = 0)."""
    assert set(HPARAMS) == set(METHODS)
    inputs = method_inputs(run_files, N_TE)
    for name, spec in METHODS.items():
        scores = spec.load()(inputs, HPARAMS[name])
        if spec.kernel:
            assert scores.kernel.shape == (N, N_TE), name
            assert np.isfinite(scores.kernel).all(), name
            assert_mean_is_test_influence(scores, rtol=1e-5, name=name)
        else:
            assert scores.kernel is None, name
    assert {n for n, s in METHODS.items() if s.kernel} == {
        "gex",
        "la_kfac",
        "randproj",
        "tracinrp",
        "tracin",
        "arnoldi",
        "exact",
        "lissa",
    }


def test_the_stage_saves_the_kernel_and_its_query_indices(run_files, tmp_path):
    def run(method, queries):
        out = {"scores": str(tmp_path / f"{method}{queries}.npz")}
        out["timing"] = str(tmp_path / f"{method}{queries}.json")
        run_influence(
            method=method,
            hp=HPARAMS[method],
            inputs=method_inputs(run_files, queries),
            outputs=out,
        )
        return out["scores"]

    path = run("gex", 5)
    assert load_scores(path).kernel.shape == (N, 5)
    np.testing.assert_array_equal(load_query_indices(path), np.arange(5))
    for path in (run("gex", 0), run("random", 5)):
        assert load_scores(path).kernel is None
        assert load_query_indices(path) is None
