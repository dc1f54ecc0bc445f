"""The training recipe shared by pretraining, ensemble fine-tuning and retraining.

SGD with momentum, the mean softmax cross-entropy plus coupled L2 (weight_decay * 0.5 *
||theta||^2 on every trainable parameter), full shuffled batches (see
`batch_index_stream`), optional pad-crop(-flip) augmentation inside the step, and a
batch-norm statistics re-estimate after training (`recompute_bn`).

Training and evaluation are data-parallel over a device mesh (`gex_core.devices`;
default: every local device): parameters, optimiser state and the data arrays are
replicated, each batch is split over the devices. One device runs exactly the
single-device computation.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from gex_core.augment import augment_batch
from gex_core.batching import batch_index_stream, batched_map, sample_batches
from gex_core.devices import (
    batch_sharding,
    constrain,
    data_mesh,
    replicate,
    replicated_jit,
)
from gex_core.losses import l2_penalty, per_sample_correct, per_sample_loss
from gex_core.models import BATCH_STATS, Model
from gex_core.resume import NO_RESUME, Resume
from gex_core.seeds import host_rng, jax_key

Params = Any
Log = Callable[[str], None]


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def warmup_cosine_schedule(
    peak_lr: float, total_steps: int, warmup_ratio: float
) -> optax.Schedule:
    """Linear warm-up from 0 over warmup_ratio*T steps, then cosine decay to 0 at T."""
    warmup = int(warmup_ratio * total_steps)
    return optax.warmup_cosine_decay_schedule(0.0, peak_lr, warmup, total_steps, 0.0)


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
) -> Callable[..., StepOutput]:
    """The unjitted step of `make_train_step` (to jit, or to vmap over chains first)."""

    def objective(params, x, y):
        logits = apply(params, x)
        losses = per_sample_loss(logits, y)
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
) -> Callable[..., StepOutput]:
    """Jitted step(params, opt_state, x_all, y_all, idx, aug_key, step_number) on the
    batch x_all[idx] (B rows), augmented with fold_in(aug_key, step_number).

    apply: the training-mode forward pass (`Model.train_forward`). mesh: run
    data-parallel on it, every argument and result replicated over its devices and the
    batch split over them (`devices.batch_sharding`); GSPMD all-reduces the gradient
    and batch-norm statistics, so the step computes the one-device numbers up to float
    summation order. None: plain jit, placed where the arguments are.
    """
    step = train_step_body(apply, tx, weight_decay, augment, mesh)
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


@functools.cache
def make_eval_fn(apply: Callable) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """Jitted fn(params, x, y) -> (per-sample losses (B,), logits (B, C)).

    Cached per model, so a job's training, evaluation and cost timing share one
    compiled function."""

    @jax.jit
    def evaluate(params, x, y):
        logits = apply(params, x)
        return per_sample_loss(logits, y), logits

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


def raise_if_not_finite(losses: np.ndarray, stage: str, first_step: int, hparams: dict):
    """Fail with the stage, step and hyperparameters at the first non-finite loss.

    losses: (steps, B) per-sample losses of consecutive steps starting at first_step.
    """
    bad = ~np.isfinite(losses).all(axis=1)
    if bad.any():
        step = first_step + int(np.argmax(bad))
        raise FloatingPointError(
            f"non-finite training loss in {stage} at step {step}; "
            f"hyperparameters: {hparams}. Lower the learning rate or check the data."
        )


def run_steps(
    step_fn: Callable,
    params: Params,
    opt_state: Any,
    x_all: jax.Array,
    y_all: jax.Array,
    indices: Iterator[np.ndarray],
    num_steps: int,
    aug_key: jax.Array,
    first_step: int = 0,
) -> tuple[Params, Any, np.ndarray, np.ndarray, np.ndarray]:
    """Run steps first_step .. first_step + num_steps - 1. Returns params, opt_state and
    per-step (idx, losses, correct), each of shape (num_steps, B)."""
    idxs, losses, correct = [], [], []
    for step_number in range(first_step, first_step + num_steps):
        idx = next(indices)
        params, opt_state, step_losses, step_correct = step_fn(
            params, opt_state, x_all, y_all, idx, aug_key, step_number
        )
        idxs.append(idx)
        losses.append(step_losses)
        correct.append(step_correct)
    return (
        params,
        opt_state,
        np.stack(idxs),
        np.asarray(jnp.stack(losses)),
        np.asarray(jnp.stack(correct)),
    )


def skip_batches(indices: Iterator[np.ndarray], count: int) -> None:
    """Advance a batch stream past `count` batches, as the steps a resumed run already
    took drew them (the stream's random state ends where it was)."""
    for _ in range(count):
        next(indices)


def trajectory_epochs(num_epochs: int, num_checkpoints: int) -> list[int]:
    """Epochs of the T trajectory checkpoints, evenly spaced over the second half.

    As the research code: start = floor(E/2), spacing (E - start) // T, so the last one is
    the final epoch when T divides the second half (60 epochs, T=5: 36, 42, 48, 54, 60).
    """
    start = num_epochs // 2
    spacing = (num_epochs - start) // num_checkpoints
    if spacing < 1:
        raise ValueError(
            f"{num_checkpoints} trajectory checkpoints do not fit in the second half of "
            f"{num_epochs} epochs"
        )
    return [start + spacing * (i + 1) for i in range(num_checkpoints)]


class TrainingRecord(NamedTuple):
    """Per-sample bookkeeping of a training run (noisy labels, training forward pass).

    last_loss: (N,) loss at the sample's most recent step; forgetting: (N,) number of
    correct->incorrect transitions between consecutive visits; learned: (N,) bool, the
    sample was classified correctly at least once (a never-learned sample has 0
    forgetting events but is no "unforgettable" one).
    """

    last_loss: np.ndarray
    forgetting: np.ndarray
    learned: np.ndarray


def update_record(
    last_loss: np.ndarray,
    forgetting: np.ndarray,
    prev_correct: np.ndarray,
    idx: np.ndarray,
    losses: np.ndarray,
    correct: np.ndarray,
) -> None:
    """Fold per-step (steps, B) results into the per-sample arrays, in visiting order."""
    for step_idx, step_loss, step_correct in zip(idx, losses, correct, strict=True):
        if len(np.unique(step_idx)) < len(step_idx):  # a batch straddling two epochs
            for i, loss, ok in zip(step_idx, step_loss, step_correct, strict=True):
                update_record(
                    last_loss,
                    forgetting,
                    prev_correct,
                    i[None, None],
                    loss[None, None],
                    ok[None, None],
                )
            continue
        forgetting[step_idx] += prev_correct[step_idx] > step_correct
        prev_correct[step_idx] = step_correct
        last_loss[step_idx] = step_loss


HISTORY_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc")


class PretrainResult(NamedTuple):
    """params: final model; trajectory: [(epoch, params)]; history: per-epoch rows."""

    params: Params
    trajectory: list[tuple[int, Params]]
    history: list[dict[str, float]]
    record: TrainingRecord


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


def pretrain(
    model: Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    momentum: float,
    num_checkpoints: int,
    eval_batch_size: int,
    augment: str = "none",
    bn_batches: int = 50,
    log: Log = log_to_stderr,
    mesh: Mesh | None = None,
    resume: Resume = NO_RESUME,
) -> PretrainResult:
    """Train from the seed's initialisation with the pretraining recipe, data-parallel
    over the mesh (default: every local device; `make_train_step`).

    x_train: (N, H, W, C), y_train: (N,) possibly noisy labels; test arrays likewise.
    Batch-norm models re-estimate their running statistics (`bn_refresh`, bn_batches
    augmented batches) before every evaluation and checkpoint, which is every 10 epochs,
    at trajectory checkpoints and at the end; other epochs leave the test columns of
    the history empty. Models without batch norm are evaluated every epoch.
    resume: the whole state is saved after an epoch when due, and a run with saved
    state continues after its last saved epoch (results bitwise unchanged).
    """
    hparams = dict(
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        augment=augment,
    )
    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    schedule = warmup_cosine_schedule(lr, epochs * steps_per_epoch, warmup_ratio)
    tx = sgd(schedule, momentum)
    mesh = data_mesh() if mesh is None else mesh
    step_fn = make_train_step(model.train_forward, tx, weight_decay, augment, mesh)
    eval_fn = make_eval_fn(model.apply)
    params = replicate(model.init(jax_key(seed, "init")), mesh)
    opt_state = replicate(tx.init(params), mesh)
    indices = batch_index_stream(n, batch_size, host_rng(seed, "pretrain_order"))
    aug_key = jax_key(seed, "augment")
    x_all, y_all = replicate((jnp.asarray(x_train), jnp.asarray(y_train)), mesh)
    save_at = set(trajectory_epochs(epochs, num_checkpoints))
    has_bn = model.bn_statistics is not None

    last_loss = np.zeros(n, np.float32)
    forgetting = np.zeros(n, np.int32)
    prev_correct = np.zeros(n, np.float32)
    ever_correct = np.zeros(n, bool)
    trajectory, history = [], []
    first_epoch = 1

    def state_template(progress: dict) -> dict:
        return dict(
            params=params,
            opt_state=opt_state,
            record=(last_loss, forgetting, prev_correct, ever_correct),
            trajectory=[params] * len(progress["trajectory_epochs"]),
        )

    saved = resume.restore(state_template)
    if saved is not None:
        progress, state = saved
        params, opt_state = replicate((state["params"], state["opt_state"]), mesh)
        last_loss, forgetting, prev_correct, ever_correct = state["record"]
        epochs_saved = progress["trajectory_epochs"]
        trajectory = list(zip(epochs_saved, state["trajectory"], strict=True))
        # JSON sorted the keys; the table keeps the order the rows are made in
        history = [{k: r[k] for k in HISTORY_COLUMNS} for r in progress["history"]]
        first_epoch = progress["epoch"] + 1
        skip_batches(indices, progress["epoch"] * steps_per_epoch)
    for epoch in range(first_epoch, epochs + 1):
        params, opt_state, idx, losses, correct = run_steps(
            step_fn,
            params,
            opt_state,
            x_all,
            y_all,
            indices,
            steps_per_epoch,
            aug_key,
            (epoch - 1) * steps_per_epoch,
        )
        raise_if_not_finite(losses, "pretrain", (epoch - 1) * steps_per_epoch, hparams)
        update_record(last_loss, forgetting, prev_correct, idx, losses, correct)
        ever_correct[idx[correct > 0]] = True
        row = dict(
            epoch=epoch,
            lr=float(schedule(epoch * steps_per_epoch)),
            train_loss=float(losses.mean()),
            train_acc=float(correct.mean()),
            test_loss=np.nan,
            test_acc=np.nan,
        )
        if not has_bn or epoch % 10 == 0 or epoch in save_at or epoch == epochs:
            params = bn_refresh(
                model,
                params,
                x_all,
                num_batches=bn_batches,
                batch_size=batch_size,
                rng=host_rng(seed, "bn_batches", epoch),
                key=jax_key(seed, "bn_batches", epoch),
                augment=augment,
                mesh=mesh,
            )
            test_loss, test_logits = evaluate(
                eval_fn, params, x_test, y_test, eval_batch_size, mesh
            )
            row["test_loss"] = float(test_loss.mean())
            row["test_acc"] = float((test_logits.argmax(1) == y_test).mean())
        history.append(row)
        if epoch in save_at:
            trajectory.append((epoch, params))
        if epoch == 1 or epoch % 10 == 0 or epoch == epochs:
            log(
                f"epoch {epoch}/{epochs} train_loss {row['train_loss']:.4f} "
                f"train_acc {row['train_acc']:.4f} test_acc {row['test_acc']:.4f}"
            )
        if epoch < epochs and resume.due():
            resume.save(
                dict(
                    epoch=epoch,
                    history=history,
                    trajectory_epochs=[e for e, _ in trajectory],
                ),
                dict(
                    params=params,
                    opt_state=opt_state,
                    record=(last_loss, forgetting, prev_correct, ever_correct),
                    trajectory=[p for _, p in trajectory],
                ),
            )
    record = TrainingRecord(last_loss, forgetting, learned=ever_correct)
    return PretrainResult(params, trajectory, history, record)


def training_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The pretraining knobs `fit_fresh` takes (all but epochs), typed."""
    return dict(
        batch_size=int(recipe["batch_size"]),
        lr=float(recipe["lr"]),
        weight_decay=float(recipe["weight_decay"]),
        warmup_ratio=float(recipe["warmup_ratio"]),
        momentum=float(recipe["momentum"]),
        augment=str(recipe.get("augment", "none")),
        bn_batches=int(recipe.get("bn_batches", 50)),
    )


@functools.cache
def _optimizer_and_step(
    apply: Callable,
    lr: float,
    total_steps: int,
    warmup_ratio: float,
    momentum: float,
    weight_decay: float,
    augment: str,
    mesh: Mesh,
):
    """(tx, jitted step) for one schedule, cached so equal-length runs compile once."""
    tx = sgd(warmup_cosine_schedule(lr, total_steps, warmup_ratio), momentum)
    return tx, make_train_step(apply, tx, weight_decay, augment, mesh)


def fit_fresh(
    model: Model,
    x_all: np.ndarray,
    y_all: np.ndarray,
    subset: np.ndarray,
    *,
    init_key: jax.Array,
    order_rng: np.random.Generator,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    momentum: float,
    stage: str,
    augment: str = "none",
    bn_batches: int = 50,
    mesh: Mesh | None = None,
    resume: Resume = NO_RESUME,
) -> Params:
    """Train a fresh model on x_all[subset] with the pretraining recipe; return params.

    x_all: (N, H, W, C), y_all: (N,) labels, subset: (n,) indices into them. Runs
    epochs * ceil(n / batch_size) steps with the warm-up + cosine schedule built for
    exactly those steps. The step always receives the full arrays (one compilation for
    every subset whose run has the same number of steps). The init key also seeds the
    augmentation (fold_in 1) and the batch-norm re-estimate (fold_in 2), whose batches
    of the subset continue order_rng. Data-parallel over the mesh (default: every local
    device). resume: state saved after an epoch when due; a run with saved state
    continues from it (results bitwise unchanged).
    """
    subset = np.asarray(subset, np.int64)
    mesh = data_mesh() if mesh is None else mesh
    steps_per_epoch = math.ceil(subset.shape[0] / batch_size)
    num_steps = epochs * steps_per_epoch
    tx, step_fn = _optimizer_and_step(
        model.train_forward,
        lr,
        num_steps,
        warmup_ratio,
        momentum,
        weight_decay,
        augment,
        mesh,
    )
    params = replicate(model.init(init_key), mesh)
    opt_state = replicate(tx.init(params), mesh)
    local = batch_index_stream(subset.shape[0], batch_size, order_rng)
    indices = (subset[i] for i in local)
    x_dev, y_dev = replicate((jnp.asarray(x_all), jnp.asarray(y_all)), mesh)
    hparams = dict(epochs=epochs, batch_size=batch_size, lr=lr, n=subset.shape[0])
    first_epoch = 0
    saved = resume.restore(lambda _: dict(params=params, opt_state=opt_state))
    if saved is not None:
        progress, state = saved
        params, opt_state = replicate((state["params"], state["opt_state"]), mesh)
        first_epoch = progress["epochs_done"]
        skip_batches(local, first_epoch * steps_per_epoch)
    for epoch in range(first_epoch, epochs):
        params, opt_state, _, losses, _ = run_steps(
            step_fn,
            params,
            opt_state,
            x_dev,
            y_dev,
            indices,
            steps_per_epoch,
            jax.random.fold_in(init_key, 1),
            epoch * steps_per_epoch,
        )
        raise_if_not_finite(losses, stage, epoch * steps_per_epoch, hparams)
        if epoch + 1 < epochs and resume.due():
            resume.save(
                dict(epochs_done=epoch + 1), dict(params=params, opt_state=opt_state)
            )
    if model.bn_statistics is None:
        return params
    local_batches = sample_batches(subset.shape[0], bn_batches, batch_size, order_rng)
    return recompute_bn(
        model,
        params,
        x_dev,
        subset[local_batches],
        jax.random.fold_in(init_key, 2),
        augment,
        mesh,
    )
