"""Flax models, exposed as pure functions of a variables pytree for influence code.

Models without batch norm (`mlp`, `cnn`) use the bare parameter tree as their variables.
Models with batch norm (`vgg`, `resnet18`) use {"params": ..., "batch_stats": ...}: the
running statistics travel with the parameters in every checkpoint and every function,
but nothing differentiates or decays them. `apply` (evaluation: running statistics)
stops their gradient, so every gradient over the variables is exactly zero there;
`l2_penalty` skips them; optimisation steps use `train_apply` (batch statistics) and
never change them. Only `gex_core.training.fit.recompute_bn` writes them, as the research
code's `update_bn` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gex_core.data.catalog import MODELS

Params = Any
BATCH_STATS = "batch_stats"

# Haiku's defaults, which the research code's models use: fan-in truncated-normal
# variance scaling for convolutions, truncated normal of std 1/sqrt(fan_in) for Linear.
_conv_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def _dense(features: int, fan_in: int) -> nn.Dense:
    return nn.Dense(
        features, kernel_init=nn.initializers.truncated_normal(fan_in**-0.5)
    )


def max_pool_2x2(x: jax.Array, padding: str = "VALID") -> jax.Array:
    """2x2 max pooling with stride 2 over NHWC x (B, H, W, C): nn.max_pool's values
    and gradients, without its slow gradient on a CPU.

    Returns (B, H // 2, W // 2, C) with "VALID" (an odd last row or column dropped),
    (B, ceil(H / 2), ceil(W / 2), C) with "SAME" (padded with -inf).
    """
    _, h, w, _ = x.shape
    if padding == "SAME":
        x = jnp.pad(
            x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf
        )
    elif padding == "VALID":
        x = x[:, : h - h % 2, : w - w % 2]
    else:
        raise ValueError(f"max_pool_2x2: padding {padding!r} is not VALID or SAME")
    return _pool_even(x)


@jax.custom_jvp
def _pool_even(x: jax.Array) -> jax.Array:
    """max_pool_2x2 of x (B, 2H, 2W, C) -> (B, H, W, C): XLA's reduce-window."""
    return nn.max_pool(x, (2, 2), strides=(2, 2))


@_pool_even.defjvp
def _pool_even_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    """Each window's tangent is that of its first maximum in row-major order, as in
    reduce-window's own rule, but picked with elementwise selects: the gradient is
    then their transpose, where reduce-window's is a select-and-scatter that XLA's CPU
    backend runs slowly (the digits CNN's training step: 3.4 against 4.0 ms at batch
    64, 14 against 31 ms at 256; benchmarks/cnn_step_variants.py).
    Ties are common (a flat background gives equal activations side by side), and a
    plain max would share the gradient among them; this keeps training bitwise that of
    nn.max_pool."""
    (x,), (dx,) = primals, tangents
    pooled = _pool_even(x)
    b, h, w, c = x.shape

    def corners(a: jax.Array) -> list[jax.Array]:
        """The windows' four values in row-major order, each (B, H, W, C)."""
        windows = a.reshape(b, h // 2, 2, w // 2, 2, c)
        return [windows[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]

    values, steps = corners(x), corners(dx)
    tangent = steps[3]
    for value, step in zip(values[2::-1], steps[2::-1], strict=True):
        tangent = jnp.where(value == pooled, step, tangent)
    return pooled, tangent


class MLP(nn.Module):
    """Flatten -> Dense(hidden) -> ReLU -> Dense(C)."""

    num_classes: int
    hidden: int = 256

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


class SmallCNN(nn.Module):
    """conv3x3(32) -> ReLU -> conv3x3(64) -> ReLU -> maxpool 2 -> Dense(128) -> Dense(C).

    Big enough to memorise noisy digits labels, which is the case GEX is for.
    """

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.relu(nn.Conv(64, (3, 3))(x))
        x = max_pool_2x2(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128)(x))
        return nn.Dense(self.num_classes)(x)


class ConvBN(nn.Module):
    """conv (no bias, SAME) -> batch norm (scale and offset, eps 1e-5)."""

    features: int
    kernel: int = 3
    stride: int = 1
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            strides=self.stride,
            padding="SAME",
            use_bias=False,
            kernel_init=_conv_init,
        )(x)
        return nn.BatchNorm(
            use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5
        )(x)


class VGG8(nn.Module):
    """The research code's `vgg` for 28x28 inputs: 4 stages of [conv3x3-BN-ReLU] x 2
    and a 2x2/2 SAME max-pool (28 -> 14 -> 7 -> 4 -> 2), global average pool, Linear(C).
    4,691,274 parameters for C = 10."""

    num_classes: int
    widths: Sequence[int] = (64, 128, 256, 512)
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for width in self.widths:
            for _ in range(2):
                x = nn.relu(ConvBN(width, bn_momentum=self.bn_momentum)(x, train))
            x = max_pool_2x2(x, padding="SAME")
        x = jnp.mean(x, axis=(1, 2))
        return _dense(self.num_classes, x.shape[-1])(x)


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 (stride s on the *second* conv) -> BN, plus a
    conv1x1(stride s)-BN shortcut when the shape changes, then ReLU(x + y)."""

    features: int
    stride: int
    bn_momentum: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nn.relu(ConvBN(self.features, bn_momentum=self.bn_momentum)(x, train))
        y = ConvBN(self.features, stride=self.stride, bn_momentum=self.bn_momentum)(
            y, train
        )
        if self.stride != 1 or x.shape[-1] != self.features:
            x = ConvBN(self.features, 1, self.stride, bn_momentum=self.bn_momentum)(
                x, train
            )
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """The research code's CIFAR ResNet-18: conv3x3(64)-BN-ReLU stem without max-pool,
    4 stages of 2 BasicBlocks (widths 64..512, first-block strides 1, 2, 2, 2), global
    average pool, Linear(C). 11,173,962 parameters for C = 10."""

    num_classes: int
    widths: Sequence[int] = (64, 128, 256, 512)
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(ConvBN(self.widths[0], bn_momentum=self.bn_momentum)(x, train))
        for stage, width in enumerate(self.widths):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(width, stride, self.bn_momentum)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return _dense(self.num_classes, x.shape[-1])(x)


class Model(NamedTuple):
    """A network as pure functions of its variables (see the module docstring).

    init(key) -> variables; apply(variables, x: (B, H, W, C)) -> logits (B, C) in
    evaluation mode; train_apply: the same in training mode (batch statistics), None
    where it equals apply; bn_statistics(variables, x) -> the batch-norm statistics of
    one training-mode batch (a tree like variables["batch_stats"]), None without BN.
    """

    name: str
    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    train_apply: Callable[[Params, jax.Array], jax.Array] | None = None
    bn_statistics: Callable[[Params, jax.Array], Params] | None = None

    @property
    def train_forward(self) -> Callable[[Params, jax.Array], jax.Array]:
        """The forward pass of optimisation steps."""
        return self.train_apply or self.apply


# A model's init runs once per job, so its compilation is what it costs: at XLA's
# optimisation level 1 it compiles about 3x faster (the digits CNN 0.36 against 1.04 s,
# ResNet-18 1.35 against 3.59) to bitwise the same parameters (tests/test_models.py).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def compiled_init(init: Callable[[jax.Array], Params]) -> Callable[[jax.Array], Params]:
    """init (key -> variables) as one jitted function: flax's eager init compiles
    every initializer op on its own (37 compilations for the digits CNN)."""
    return jax.jit(init, compiler_options=INIT_COMPILER_OPTIONS)


def _plain_model(name: str, module: nn.Module, dummy: jax.Array) -> Model:
    def init(key: jax.Array) -> Params:
        return module.init(key, dummy)["params"]

    def apply(params: Params, x: jax.Array) -> jax.Array:
        return module.apply({"params": params}, x)

    return Model(name, compiled_init(init), apply)


def bn_model(name: str, module: nn.Module, dummy: jax.Array) -> Model:
    """A Model of a flax module with batch norm: __call__(x, train) and a
    `bn_momentum` field; dummy: (1, H, W, C) input for init."""
    # momentum 0 makes the "updated" running statistics the batch's own statistics
    measuring = module.clone(bn_momentum=0.0)

    def init(key: jax.Array) -> Params:
        return dict(module.init(key, dummy))

    def apply(variables: Params, x: jax.Array) -> jax.Array:
        stats = jax.lax.stop_gradient(variables[BATCH_STATS])
        return module.apply({**variables, BATCH_STATS: stats}, x, train=False)

    def train_apply(variables: Params, x: jax.Array) -> jax.Array:
        logits, _ = module.apply(variables, x, train=True, mutable=[BATCH_STATS])
        return logits

    def bn_statistics(variables: Params, x: jax.Array) -> Params:
        _, state = measuring.apply(variables, x, train=True, mutable=[BATCH_STATS])
        return state[BATCH_STATS]

    return Model(name, compiled_init(init), apply, train_apply, bn_statistics)


def make_model(name: str, num_classes: int, input_shape: tuple[int, ...]) -> Model:
    """Build a named model for inputs of shape (H, W, C)."""
    dummy = jnp.zeros((1, *input_shape), jnp.float32)
    if name == "cnn":
        return _plain_model(name, SmallCNN(num_classes), dummy)
    if name == "mlp":
        return _plain_model(name, MLP(num_classes), dummy)
    if name == "vgg":
        return bn_model(name, VGG8(num_classes), dummy)
    if name == "resnet18":
        return bn_model(name, ResNet18(num_classes), dummy)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def variable_shapes(model: Model) -> Params:
    """model.init's variables as jax.ShapeDtypeStruct leaves (the tree, shapes and
    dtypes), traced but neither compiled nor computed: the template a checkpoint is
    read into."""
    return jax.eval_shape(model.init, jax.random.key(0))


def trainable(variables: Params) -> Params:
    """The parameters gradient steps train: all of variables but batch-norm statistics."""
    if isinstance(variables, dict) and BATCH_STATS in variables:
        return {k: v for k, v in variables.items() if k != BATCH_STATS}
    return variables


def num_params(variables: Params) -> int:
    """Number of trainable scalars (batch-norm running statistics excluded)."""
    return sum(
        int(leaf.size) for leaf in jax.tree_util.tree_leaves(trainable(variables))
    )
