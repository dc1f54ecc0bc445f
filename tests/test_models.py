"""The research code's networks, batch-norm bookkeeping and augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gex_core.training.augment import PAD, augment_batch
from gex_core.training.losses import l2_penalty
from gex_core.training.models import (
    BATCH_STATS,
    VGG8,
    bn_model,
    make_model,
    max_pool_2x2,
    num_params,
    trainable,
)
from gex_core.training.steps import make_train_step, recompute_bn


@pytest.mark.parametrize(
    ("name", "shape", "classes", "count"),
    [
        ("vgg", (28, 28, 1), 10, 4_691_274),
        ("resnet18", (32, 32, 3), 10, 11_173_962),
        ("resnet18", (32, 32, 3), 100, 11_220_132),
    ],
)
def test_parameter_counts_match_the_research_code(name, shape, classes, count):
    model = make_model(name, classes, shape)
    variables = jax.eval_shape(model.init, jax.random.key(0))
    assert num_params(variables) == count
    assert set(variables) == {"params", BATCH_STATS}


@pytest.mark.parametrize(
    ("shape", "padding"),
    [((6, 8, 8, 5), "VALID"), ((6, 7, 9, 5), "VALID"), ((6, 7, 9, 5), "SAME")],
)
def test_max_pool_2x2_is_nn_max_pool_in_values_and_gradients_behind_a_relu(
    shape, padding
):
    """The pooling the CNN and VGG-8 use: nn.max_pool's values (NaN included) and
    bitwise its gradients, reverse and forward mode, where ties abound: behind a ReLU
    (about half the values exactly zero) and in a flat region (equal positive values,
    as a plain background gives), where the first maximum takes the whole gradient."""
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), shape)
    x = x.at[:, :4, :4].set(x[:, :1, :1])  # a flat 4x4 corner
    w = jax.random.normal(jax.random.key(1), (shape[-1], 4))
    probe = jax.random.normal(jax.random.key(2), (4,))

    def through(pool):
        def f(w):
            pooled = pool(jax.nn.relu(x @ w))
            return jnp.sum(
                pooled * probe * jnp.arange(pooled.size).reshape(pooled.shape)
            )

        return f

    def reference(h):
        return nn.max_pool(h, (2, 2), strides=(2, 2), padding=padding)

    ours = through(lambda h: max_pool_2x2(h, padding))
    theirs = through(reference)
    h = jax.nn.relu(x @ w)
    assert (h == 0).mean() > 0.3
    assert (h[:, :4, :4] == h[:, :1, :1]).all() and (h[:, :1, :1] > 0).any()
    np.testing.assert_array_equal(max_pool_2x2(h, padding), reference(h))
    # jitted, as in training (op by op, each compiles dozens of programs)
    np.testing.assert_array_equal(
        jax.jit(jax.grad(ours))(w), jax.jit(jax.grad(theirs))(w)
    )
    tangent = jax.random.normal(jax.random.key(3), w.shape)

    def jvp(f):
        return jax.jit(lambda w, t: jax.jvp(f, (w,), (t,))[1])(w, tangent)

    np.testing.assert_array_equal(jvp(ours), jvp(theirs))
    diverged = h.at[1, 2, 3, 0].set(jnp.nan)
    np.testing.assert_array_equal(max_pool_2x2(diverged, padding), reference(diverged))
    with pytest.raises(ValueError, match="padding 'FULL' is not VALID or SAME"):
        max_pool_2x2(h, "FULL")


def tiny_bn_model():
    """VGG-8's structure at widths (4, 8) on 6x6x2 inputs."""
    return bn_model(
        "tiny_vgg", VGG8(3, widths=(4, 8)), jnp.zeros((1, 6, 6, 2), jnp.float32)
    )


def tiny_images(n, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(1.0, 2.0, size=(n, 6, 6, 2)).astype(np.float32))


def test_bn_recompute_changes_the_running_statistics_and_nothing_else():
    model = tiny_bn_model()
    variables = model.init(jax.random.key(0))
    x = tiny_images(24)
    batches = np.array([np.arange(0, 8), np.arange(8, 16), np.arange(16, 24)])
    out = recompute_bn(model, variables, x, batches, jax.random.key(1), "none")

    same = jax.tree.map(np.array_equal, out["params"], variables["params"])
    assert all(jax.tree.leaves(same))
    assert set(out) == set(variables)
    # ground truth for the first BN layer: the equal-weight mean over batches of each
    # batch's per-channel mean and biased variance of the first convolution's output
    kernel = variables["params"]["ConvBN_0"]["Conv_0"]["kernel"]
    conv = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    per_batch = [conv[idx] for idx in batches]
    mean = np.mean([np.mean(c, axis=(0, 1, 2)) for c in per_batch], axis=0)
    var = np.mean([np.var(c, axis=(0, 1, 2)) for c in per_batch], axis=0)
    stats = out[BATCH_STATS]["ConvBN_0"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var"], var, rtol=1e-4, atol=1e-5)
    before = variables[BATCH_STATS]["ConvBN_0"]["BatchNorm_0"]
    assert not np.allclose(before["mean"], stats["mean"])


def test_statistics_of_one_batch_make_evaluation_equal_training_mode():
    model = tiny_bn_model()
    variables = model.init(jax.random.key(0))
    x = tiny_images(10, seed=3)
    refreshed = recompute_bn(
        model, variables, x, np.arange(10)[None], jax.random.key(0), "none"
    )
    np.testing.assert_allclose(
        model.apply(refreshed, x), model.train_forward(refreshed, x), atol=1e-4
    )
    assert not np.allclose(model.apply(variables, x), model.train_forward(variables, x))


def test_running_statistics_are_never_trained_decayed_or_differentiated():
    model = tiny_bn_model()
    variables = recompute_bn(
        model,
        model.init(jax.random.key(0)),
        tiny_images(8),
        np.arange(8)[None],
        jax.random.key(0),
        "none",
    )
    x, y = tiny_images(8, seed=1), jnp.arange(8) % 3

    def loss(v):
        logits = model.apply(v, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    # jitted: op by op, the gradient alone compiles ~200 programs (~6 s on a CPU)
    grads = jax.jit(jax.grad(loss))(variables)
    assert all(not np.any(g) for g in jax.tree.leaves(grads[BATCH_STATS]))
    assert any(np.any(g) for g in jax.tree.leaves(grads["params"]))
    only_params = sum(
        float(np.sum(np.asarray(p, np.float64) ** 2))
        for p in jax.tree.leaves(trainable(variables))
    )
    penalty = jax.jit(l2_penalty)(variables)
    np.testing.assert_allclose(penalty, 0.5 * only_params, rtol=1e-6)

    tx = optax.sgd(0.1, momentum=0.9)
    step = make_train_step(model.train_forward, tx, 5.0e-4, "crop_flip")
    params, opt_state = variables, tx.init(variables)
    for i in range(3):
        params, opt_state, *_ = step(
            params, opt_state, x, y, jnp.arange(8), jax.random.key(0), i
        )
    for new, old in zip(
        jax.tree.leaves(params[BATCH_STATS]),
        jax.tree.leaves(variables[BATCH_STATS]),
        strict=True,
    ):
        np.testing.assert_array_equal(new, old)
    assert not np.allclose(
        params["params"]["Dense_0"]["kernel"], variables["params"]["Dense_0"]["kernel"]
    )


def windows(image):
    """Every (H, W) window of the reflect-padded image, keyed by its corner."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="reflect")
    return {
        (dy, dx): padded[dy : dy + h, dx : dx + w]
        for dy in range(2 * PAD + 1)
        for dx in range(2 * PAD + 1)
    }


@pytest.mark.parametrize("mode", ["crop", "crop_flip"])
def test_augmentation_is_a_padded_crop_and_flips_only_when_asked(mode):
    rng = np.random.default_rng(0)
    x = rng.permutation(64 * 8 * 8 * 2).reshape(64, 8, 8, 2).astype(np.float32)
    out = np.asarray(augment_batch(jax.random.key(5), jnp.asarray(x), mode))
    flips = []
    for image, augmented in zip(x, out, strict=True):
        crops = windows(image)
        plain = any(np.array_equal(augmented, c) for c in crops.values())
        mirrored = any(np.array_equal(augmented[:, ::-1], c) for c in crops.values())
        assert plain or mirrored
        flips.append(not plain)
    corners_used = {
        next(k for k, c in windows(image).items() if np.array_equal(a, c))
        for image, a in zip(x, out, strict=True)
        if any(np.array_equal(a, c) for c in windows(image).values())
    }
    assert len(corners_used) > 10  # crops really vary
    if mode == "crop":
        assert not any(flips)
    else:
        assert 10 < sum(flips) < 54
    again = augment_batch(jax.random.key(5), jnp.asarray(x), mode)
    np.testing.assert_array_equal(out, again)
    assert not np.array_equal(
        out, augment_batch(jax.random.key(6), jnp.asarray(x), mode)
    )
    np.testing.assert_array_equal(augment_batch(jax.random.key(5), x, "none"), x)


@pytest.mark.parametrize("name", ["mlp", "cnn", "tiny_vgg"])
def test_the_quickly_compiled_init_gives_bitwise_the_default_compiled_parameters(name):
    """make_model's init compiles at XLA's optimisation level 1 (INIT_COMPILER_OPTIONS):
    the parameters must be bitwise those of the default level."""
    model = tiny_bn_model() if name == "tiny_vgg" else make_model(name, 10, (8, 8, 1))
    default = jax.jit(model.init.__wrapped__)
    for seed in range(3):
        key = jax.random.key(seed)
        ours, theirs = model.init(key), default(key)
        assert jax.tree.structure(ours) == jax.tree.structure(theirs)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            np.testing.assert_array_equal(a, b)
