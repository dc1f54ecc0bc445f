"""One optimisation step, one evaluation pass and the batch-norm re-estimate: the
compiled pieces every training run is made of (`gex_core.training.fit` loops them).

SGD with momentum on the mean per-sample loss plus coupled L2 (weight_decay * 0.5 *
||theta||^2 on every trainable parameter), optional pad-crop(-flip) augmentation inside
the step, and a batch-norm statistics re-estimate after training (`recompute_bn`).

Training and evaluation are data-parallel over a device mesh (`gex_core.training.devices`;
default: every local device): parameters, optimiser state and the data arrays are
replicated, each batch is split over the devices. One device runs exactly the
single-device computation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from gex_core.training.augment import augment_batch
from gex_core.training.batching import batched_map, sample_batches
from gex_core.training.devices import (
    batch_sharding,
    constrain,
    data_mesh,
    replicated_jit,
)
from gex_core.training.losses import (
    SOFTMAX_CROSS_ENTROPY,
    Loss,
    l2_penalty,
    per_sample_correct,
)
from gex_core.training.models import BATCH_STATS, Model

Params = Any


def warmup_cosine_schedule(
    peak_lr: float, total_steps: int, warmup_ratio: float
) -> optax.Schedule:
    """Linear warm-up from 0 over warmup_ratio*T steps, then cosine decay to 0 at T."""
    warmup = int(warmup_ratio * total_steps)
    return optax.warmup_cosine_decay_schedule(0.0, peak_lr, warmup, total_steps, 0.0)


@functools.lru_cache(maxsize=16)
def _jitted_init(tx: optax.GradientTransformation) -> Callable:
    return jax.jit(tx.init)


def optimizer_state(tx: optax.GradientTransformation, params: Any) -> Any:
    """tx.init(params) as one compiled program (optax's eager init compiles one per
    leaf), compiled once per optimiser object."""
    return _jitted_init(tx)(params)


def sgd(schedule: optax.Schedule, momentum: float) -> optax.GradientTransformation:
    """Heavy-ball SGD (not Nesterov), as the research code."""
    return optax.sgd(schedule, momentum=momentum)


class StepOutput(NamedTuple):
    """One optimisation step. losses, correct: (B,) for the batch before the update."""

    params: Params
    opt_state: Any
    losses: jax.Array
    correct: jax.Array


def train_step_body(
    apply: Callable,
    tx: optax.GradientTransformation,
    weight_decay: float,
    augment: str = "none",
    mesh: Mesh | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Callable[..., StepOutput]:
    """The unjitted step of `make_train_step` (to jit, or to vmap over chains first)."""

    def objective(params, x, y):
        logits = apply(params, x)
        losses = loss.per_sample(logits, y)
        value = jnp.mean(losses) + weight_decay * l2_penalty(params)
        return value, (losses, per_sample_correct(logits, y))

    def step(params, opt_state, x_all, y_all, idx, aug_key, step_number):
        x, y = jnp.take(x_all, idx, axis=0), jnp.take(y_all, idx, axis=0)
        if mesh is not None:
            x, y = constrain((x, y), batch_sharding(mesh, idx.shape[0]))
        x = augment_batch(jax.random.fold_in(aug_key, step_number), x, augment)
        grads, (losses, correct) = jax.grad(objective, has_aux=True)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return StepOutput(
            optax.apply_updates(params, updates), opt_state, losses, correct
        )

    return step


def make_train_step(
    apply: Callable,
    tx: optax.GradientTransformation,
    weight_decay: float,
    augment: str = "none",
    mesh: Mesh | None = None,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Callable[..., StepOutput]:
    """Jitted step(params, opt_state, x_all, y_all, idx, aug_key, step_number) on the
    batch x_all[idx] (B rows), augmented with fold_in(aug_key, step_number).

    apply: the training-mode forward pass (`Model.train_forward`). mesh: run
    data-parallel on it, every argument and result replicated over its devices and the
    batch split over them (`devices.batch_sharding`); GSPMD all-reduces the gradient
    and batch-norm statistics, so the step computes the one-device numbers up to float
    summation order. None: plain jit, placed where the arguments are.
    """
    step = train_step_body(apply, tx, weight_decay, augment, mesh, loss)
    return jax.jit(step) if mesh is None else replicated_jit(step, mesh)


@functools.cache
def _batch_norm_statistics(bn_statistics: Callable, augment: str, mesh: Mesh):
    def statistics(params, x_all, idx, key):
        x = constrain(jnp.take(x_all, idx, axis=0), batch_sharding(mesh, idx.shape[0]))
        return bn_statistics(params, augment_batch(key, x, augment))

    return replicated_jit(statistics, mesh)


def recompute_bn(
    model: Model,
    params: Params,
    x_all: jax.Array,
    batches: np.ndarray,
    key: jax.Array,
    augment: str,
    mesh: Mesh | None = None,
) -> Params:
    """Batch-norm running statistics re-estimated on training batches; nothing else
    changes. Models without batch norm are returned unchanged. Each batch is split over
    the mesh's devices (default: every local device).

    batches: (K, B) indices into x_all; batch k is augmented with fold_in(key, k). The
    new statistics are the equal-weight mean over the K batches of each batch's
    training-mode mean and (biased) variance, every layer seeing the batch normalised
    by its own statistics, as in training. The research code's `update_bn` instead
    folds 50 batches into a decay-0.9 EMA that continues from the previous statistics
    (in effect the last ~10 batches); the equal-weight mean uses every batch and does
    not depend on what came before.
    """
    if model.bn_statistics is None:
        return params
    mesh = data_mesh() if mesh is None else mesh
    statistics = _batch_norm_statistics(model.bn_statistics, augment, mesh)
    total = None
    for k, idx in enumerate(batches):
        stats = statistics(params, x_all, idx, jax.random.fold_in(key, k))
        total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    mean = jax.tree.map(lambda t: t / len(batches), total)
    return {**params, BATCH_STATS: mean}


def bn_refresh(
    model: Model,
    params: Params,
    x_all: jax.Array,
    *,
    num_batches: int,
    batch_size: int,
    rng: np.random.Generator,
    key: jax.Array,
    augment: str,
    mesh: Mesh | None = None,
) -> Params:
    """`recompute_bn` on num_batches fresh shuffled batches drawn from rng."""
    if model.bn_statistics is None:
        return params
    batches = sample_batches(x_all.shape[0], num_batches, batch_size, rng)
    return recompute_bn(model, params, x_all, batches, key, augment, mesh)


@functools.cache
def make_eval_fn(
    apply: Callable, loss: Loss = SOFTMAX_CROSS_ENTROPY
) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """Jitted fn(params, x, y) -> (per-sample losses (B,), logits (B, C)).

    Cached per (model, loss), so a job's training, evaluation and cost timing share one
    compiled function."""

    @jax.jit
    def evaluate(params, x, y):
        logits = apply(params, x)
        return loss.per_sample(logits, y), logits

    return evaluate


def evaluate(
    eval_fn: Callable,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    mesh: Mesh | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample losses (N,) and logits (N, C) with every sample seen exactly once,
    batches split over the mesh's devices (`batched_map`; default: every local one)."""
    return batched_map(eval_fn, (x, y), batch_size, mesh, consts=(params,))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose argmax is the label. logits (N, C), labels (N,)."""
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())
