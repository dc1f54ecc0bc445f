"""The two training runs built on `fit`: pretraining (with its per-sample record,
history and trajectory checkpoints) and retraining a fresh model on a subset or on new
targets (relabel, prune, el2n, cl).

Both use the pretraining recipe: SGD with momentum, linear warm-up then cosine decay
over exactly the run's steps, full shuffled batches (`batch_index_stream`), optional
augmentation, and a batch-norm re-estimate (`steps.bn_refresh`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from gex_core.training.batching import batch_index_stream, sample_batches
from gex_core.training.devices import data_mesh, replicate
from gex_core.training.fit import Chunk, FitHooks, FitState, Program, fit
from gex_core.training.hooks import NO_CHECKPOINTS, Checkpointer, Log, log_to_stderr
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss
from gex_core.training.models import Model
from gex_core.training.seeds import host_rng, jax_key
from gex_core.training.steps import (
    accuracy,
    bn_refresh,
    evaluate,
    make_eval_fn,
    make_train_step,
    optimizer_state,
    recompute_bn,
    sgd,
    warmup_cosine_schedule,
)

Params = Any
# The workflow's default pretraining recipe (config.yaml), the library's defaults too
DEFAULT_TRAINING = {
    "epochs": 60,
    "batch_size": 64,
    "lr": 0.05,
    "weight_decay": 5.0e-4,
    "warmup_ratio": 0.1,
    "momentum": 0.9,
    "num_checkpoints": 5,
    "augment": "none",
    "bn_batches": 50,
}


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


def checkpoint_learning_rates(
    history_epochs: np.ndarray, history_lrs: np.ndarray, epochs: np.ndarray
) -> np.ndarray:
    """Learning rate of each trajectory checkpoint's epoch, (T,): the mean of the LR at
    the epoch's start and end (the end alone is 0 for the final checkpoint).

    history_epochs, history_lrs: the history's epoch and lr columns (the LR after each
    epoch, so epoch 1 starts at 0, the warm-up's start); epochs: (T,) checkpoint epochs.
    """
    end = dict(zip(np.asarray(history_epochs).tolist(), history_lrs, strict=True))
    start = {epoch + 1: lr for epoch, lr in end.items()}
    return np.array([(start.get(int(e), 0.0) + end[int(e)]) / 2 for e in epochs])


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


@dataclass(kw_only=True, eq=False)
class _PretrainHooks(FitHooks):
    """Per epoch: the per-sample record, the history row, the evaluation (after a
    batch-norm refresh) when due, the trajectory checkpoints and the log."""

    name: str = "pretrain"
    model: Model
    eval_fn: Callable
    x_all: jax.Array
    x_test: np.ndarray
    y_test: np.ndarray
    params_template: Params
    schedule: optax.Schedule
    seed: int
    epochs: int
    steps_per_epoch: int
    num_checkpoints: int
    batch_size: int
    eval_batch_size: int
    augment: str
    bn_batches: int
    log: Log
    mesh: Mesh

    def __post_init__(self) -> None:
        self.save_at = set(trajectory_epochs(self.epochs, self.num_checkpoints))
        n = self.x_all.shape[0]
        self.record = (
            np.zeros(n, np.float32),  # last loss
            np.zeros(n, np.int32),  # forgetting events
            np.zeros(n, np.float32),  # correct at the last visit
            np.zeros(n, bool),  # ever correct
        )
        self.trajectory: list[tuple[int, Params]] = []
        self.history: list[dict[str, float]] = []
        # one compilation for the logged rate (eagerly, each of its ops compiles)
        self.rate = jax.jit(self.schedule)

    def evaluation_due(self, epoch: int) -> bool:
        """Batch-norm models are re-estimated and evaluated every 10 epochs, at
        trajectory checkpoints and at the end; others every epoch."""
        has_bn = self.model.bn_statistics is not None
        return (
            not has_bn
            or epoch % 10 == 0
            or epoch in self.save_at
            or epoch == self.epochs
        )

    def after_chunk(self, state: FitState, chunk: Chunk) -> FitState:
        epoch = state.step // self.steps_per_epoch
        last_loss, forgetting, prev_correct, ever_correct = self.record
        update_record(
            last_loss, forgetting, prev_correct, chunk.idx, chunk.losses, chunk.correct
        )
        ever_correct[chunk.idx[chunk.correct > 0]] = True
        row = dict(
            epoch=epoch,
            lr=float(self.rate(state.step)),
            train_loss=float(chunk.losses.mean()),
            train_acc=float(chunk.correct.mean()),
            test_loss=np.nan,
            test_acc=np.nan,
        )
        if self.evaluation_due(epoch):
            params = bn_refresh(
                self.model,
                state.params,
                self.x_all,
                num_batches=self.bn_batches,
                batch_size=self.batch_size,
                rng=host_rng(self.seed, "bn_batches", epoch),
                key=jax_key(self.seed, "bn_batches", epoch),
                augment=self.augment,
                mesh=self.mesh,
            )
            state = state._replace(params=params)
            test_loss, test_logits = evaluate(
                self.eval_fn,
                params,
                self.x_test,
                self.y_test,
                self.eval_batch_size,
                self.mesh,
            )
            row["test_loss"] = float(test_loss.mean())
            row["test_acc"] = accuracy(test_logits, self.y_test)
        self.history.append(row)
        if epoch in self.save_at:
            self.trajectory.append((epoch, state.params))
        if epoch == 1 or epoch % 10 == 0 or epoch == self.epochs:
            self.log(
                f"epoch {epoch}/{self.epochs} train_loss {row['train_loss']:.4f} "
                f"train_acc {row['train_acc']:.4f} test_acc {row['test_acc']:.4f}"
            )
        return state

    def progress(self) -> dict[str, Any]:
        return dict(
            history=self.history, trajectory_epochs=[e for e, _ in self.trajectory]
        )

    def arrays(self) -> Any:
        return dict(record=self.record, trajectory=[p for _, p in self.trajectory])

    def template(self, progress: Mapping[str, Any]) -> Any:
        count = len(progress["trajectory_epochs"])
        return dict(record=self.record, trajectory=[self.params_template] * count)

    def restore(self, progress: Mapping[str, Any], arrays: Any) -> None:
        self.record = tuple(arrays["record"])
        self.trajectory = list(
            zip(progress["trajectory_epochs"], arrays["trajectory"], strict=True)
        )
        # JSON sorted the keys; the table keeps the order the rows are made in
        self.history = [
            {k: row[k] for k in HISTORY_COLUMNS} for row in progress["history"]
        ]


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
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
    log: Log = log_to_stderr,
    mesh: Mesh | None = None,
    checkpointer: Checkpointer = NO_CHECKPOINTS,
) -> PretrainResult:
    """Train from the seed's initialisation with the pretraining recipe, data-parallel
    over the mesh (default: every local device; `steps.make_train_step`).

    x_train: (N, H, W, C), y_train: (N,) possibly noisy labels; test arrays likewise.
    Batch-norm models re-estimate their running statistics (`bn_refresh`, bn_batches
    augmented batches) before every evaluation and checkpoint, which is every 10 epochs,
    at trajectory checkpoints and at the end; other epochs leave the test columns of
    the history empty. Models without batch norm are evaluated every epoch.
    checkpointer: the whole state is saved after an epoch when due, and a run with
    saved state continues after its last saved epoch (results bitwise unchanged).
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
    step = make_train_step(model.train_forward, tx, weight_decay, augment, mesh, loss)
    params = replicate(model.init(jax_key(seed, "init")), mesh)
    indices = batch_index_stream(n, batch_size, host_rng(seed, "pretrain_order"))
    x_all, y_all = replicate((jnp.asarray(x_train), jnp.asarray(y_train)), mesh)
    hooks = _PretrainHooks(
        model=model,
        eval_fn=make_eval_fn(model.apply, loss),
        x_all=x_all,
        x_test=x_test,
        y_test=y_test,
        params_template=params,
        schedule=schedule,
        seed=seed,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        num_checkpoints=num_checkpoints,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        augment=augment,
        bn_batches=bn_batches,
        log=log,
        mesh=mesh,
    )
    state = fit(
        Program(step),
        FitState(
            params,
            replicate(optimizer_state(tx, params), mesh),
            0,
            jax_key(seed, "augment"),
        ),
        x_all,
        y_all,
        lambda: next(indices),
        num_steps=epochs * steps_per_epoch,
        period_steps=steps_per_epoch,
        hparams=hparams,
        hooks=hooks,
        checkpointer=checkpointer,
        place=lambda tree: replicate(tree, mesh),
    )
    last_loss, forgetting, _, learned = hooks.record
    record = TrainingRecord(last_loss, forgetting, learned=learned)
    return PretrainResult(state.params, hooks.trajectory, hooks.history, record)


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
    loss: Loss,
):
    """(tx, jitted step) for one schedule, cached so equal-length runs compile once."""
    tx = sgd(warmup_cosine_schedule(lr, total_steps, warmup_ratio), momentum)
    return tx, make_train_step(apply, tx, weight_decay, augment, mesh, loss)


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
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
    mesh: Mesh | None = None,
    checkpointer: Checkpointer = NO_CHECKPOINTS,
) -> Params:
    """Train a fresh model on x_all[subset] with the pretraining recipe; return params.

    x_all: (N, H, W, C), y_all: (N,) labels or (N, C) targets, subset: (n,) indices
    into them. Runs epochs * ceil(n / batch_size) steps with the warm-up + cosine
    schedule built for exactly those steps. The step always receives the full arrays
    (one compilation for every subset whose run has the same number of steps). The init
    key also seeds the augmentation (fold_in 1) and the batch-norm re-estimate
    (fold_in 2), whose batches of the subset continue order_rng. Data-parallel over the
    mesh (default: every local device). checkpointer: state saved after an epoch when
    due; a run with saved state continues from it (results bitwise unchanged).
    """
    subset = np.asarray(subset, np.int64)
    mesh = data_mesh() if mesh is None else mesh
    steps_per_epoch = math.ceil(subset.shape[0] / batch_size)
    num_steps = epochs * steps_per_epoch
    tx, step = _optimizer_and_step(
        model.train_forward,
        lr,
        num_steps,
        warmup_ratio,
        momentum,
        weight_decay,
        augment,
        mesh,
        loss,
    )
    params = replicate(model.init(init_key), mesh)
    local = batch_index_stream(subset.shape[0], batch_size, order_rng)
    x_dev, y_dev = replicate((jnp.asarray(x_all), jnp.asarray(y_all)), mesh)
    state = fit(
        Program(step),
        FitState(
            params,
            replicate(optimizer_state(tx, params), mesh),
            0,
            jax.random.fold_in(init_key, 1),
        ),
        x_dev,
        y_dev,
        lambda: subset[next(local)],
        num_steps=num_steps,
        period_steps=steps_per_epoch,
        hparams=dict(epochs=epochs, batch_size=batch_size, lr=lr, n=subset.shape[0]),
        hooks=FitHooks(name=stage),
        checkpointer=checkpointer,
        place=lambda tree: replicate(tree, mesh),
    )
    if model.bn_statistics is None:
        return state.params
    local_batches = sample_batches(subset.shape[0], bn_batches, batch_size, order_rng)
    return recompute_bn(
        model,
        state.params,
        x_dev,
        subset[local_batches],
        jax.random.fold_in(init_key, 2),
        augment,
        mesh,
    )
