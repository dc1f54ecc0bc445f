"""What an influence method reads: one trained model, its data and what it was
trained through, behind one interface.

Every method's `compute(problem, options)` reads only the attributes of `Problem`.
This class holds them in memory (the public API builds one from arrays); the workflow
subclasses it to load each attribute from the run's files only when a method asks
(`gex_core.workflow.method_inputs.MethodInputs`). Methods never see clean labels or a
noise mask: y_train is the labels the model was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import jax
import numpy as np

from gex_core.influence.scores import as_query_indices
from gex_core.training.hooks import NO_CHECKPOINTS, Checkpointer
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss
from gex_core.training.models import Model, trainable
from gex_core.training.recipes import DEFAULT_TRAINING
from gex_core.training.seeds import host_rng, jax_key
from gex_core.training.steps import evaluate, make_eval_fn

Params = Any


def _needs(what: str, method_hint: str) -> ValueError:
    return ValueError(f"{method_hint} needs {what}, which this problem was not given")


class Problem:
    """One trained model and its data, for influence methods.

    model: the network (`gex_core.training.models.Model`; `from_apply` wraps a bare
    flax apply function); params: its trained parameters theta*; x_train (N, ...),
    y_train (N,) the labels it was trained on; x_test, y_test (N_te, ...) the samples
    test influence and kernels are about (default: the training set). loss: the
    per-sample loss it was trained with. seed: every random draw of a method comes from
    it (`key`, `rng`). recipe: the training recipe (epochs, batch_size, lr,
    weight_decay, warmup_ratio, momentum, augment, bn_batches) that retraining methods
    reuse and damping defaults read. queries: test indices of the kernel's columns.
    trajectory: checkpoints along training (tracin, tracinrp, knn), with the learning
    rate of each (trajectory_lrs); record: pretraining's per-sample "forgetting" and
    "learned" (forgetting); member_losses: an ensemble's per-sample losses (train
    (M, N), test (M, N_te)) (gex).
    """

    def __init__(
        self,
        model: Model,
        params: Params,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        *,
        loss: Loss = SOFTMAX_CROSS_ENTROPY,
        seed: int = 0,
        eval_batch_size: int = 512,
        recipe: Mapping[str, Any] | None = None,
        queries: Sequence[int] | np.ndarray | None = None,
        num_classes: int | None = None,
        trajectory: Sequence[Params] | None = None,
        trajectory_lrs: np.ndarray | None = None,
        record: Mapping[str, np.ndarray] | None = None,
        member_losses: tuple[np.ndarray, np.ndarray] | None = None,
        checkpointer: Checkpointer = NO_CHECKPOINTS,
    ) -> None:
        x_train, y_train = np.asarray(x_train), np.asarray(y_train)
        if x_train.shape[0] != y_train.shape[0]:
            raise ValueError(
                f"x_train has {x_train.shape[0]} rows but y_train {y_train.shape[0]}"
            )
        if (x_test is None) != (y_test is None):
            raise ValueError("give both x_test and y_test, or neither")
        self.model = model
        self.loss = loss
        self.seed = int(seed)
        self.eval_batch_size = int(eval_batch_size)
        self.recipe = {**DEFAULT_TRAINING, **(recipe or {})}
        self.checkpointer = checkpointer
        self._params = params
        self._train = (x_train, y_train)
        self._test = (
            (x_train, y_train)
            if x_test is None
            else (np.asarray(x_test), np.asarray(y_test))
        )
        self._queries = queries
        self._num_classes = num_classes
        self._trajectory = None if trajectory is None else list(trajectory)
        self._trajectory_lrs = trajectory_lrs
        self._record = record
        self._member_losses = member_losses

    # random streams of the problem's seed (`gex_core.training.seeds.STREAMS`)
    def key(self, stream: str, *ids: int) -> jax.Array:
        return jax_key(self.seed, stream, *ids)

    def rng(self, stream: str, *ids: int) -> np.random.Generator:
        return host_rng(self.seed, stream, *ids)

    @cached_property
    def params(self) -> Params:
        return self._params

    @cached_property
    def num_params(self) -> int:
        """Trainable scalars of the model (batch-norm statistics excluded)."""
        return sum(int(leaf.size) for leaf in jax.tree.leaves(trainable(self.params)))

    @cached_property
    def train_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Every training sample: images (N, ...) and labels (N,)."""
        return self._train

    @cached_property
    def num_train(self) -> int:
        return int(self.train_set[1].shape[0])

    @cached_property
    def num_classes(self) -> int:
        if self._num_classes is not None:
            return int(self._num_classes)
        labels = np.concatenate([self.train_set[1], self.test_set[1]])
        return int(labels.max()) + 1

    @property
    def scored_rows(self) -> slice:
        """The training rows scored: all (the workflow's shard jobs score a range)."""
        return slice(None)

    @cached_property
    def scored(self) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of the training samples scored."""
        x, y = self.train_set
        rows = self.scored_rows
        return x[rows], y[rows]

    @cached_property
    def test_set(self) -> tuple[np.ndarray, np.ndarray]:
        return self._test

    @cached_property
    def query_indices(self) -> np.ndarray:
        """The kernel's query set: test indices, int64 (Q,), possibly empty."""
        return as_query_indices(self._queries, self.test_set[1].shape[0])

    @cached_property
    def pretrained_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample losses of theta*: train (N,), test (N_te,)."""
        eval_fn = make_eval_fn(self.model.apply, self.loss)
        return tuple(
            evaluate(eval_fn, self.params, x, y, self.eval_batch_size)[0]
            for x, y in (self.train_set, self.test_set)
        )

    @cached_property
    def member_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """An ensemble's per-sample losses: train (M, N), test (M, N_te)."""
        if self._member_losses is None:
            raise _needs("ensemble members' losses (member_losses)", "gex")
        return self._member_losses

    @cached_property
    def trajectory(self) -> list[Params]:
        """Parameter checkpoints along training, in training order."""
        if self._trajectory is None:
            raise _needs("the training trajectory (trajectory)", "this method")
        return self._trajectory

    @cached_property
    def trajectory_lrs(self) -> np.ndarray:
        """(T,) learning rate of each trajectory checkpoint (LR weights)."""
        if self._trajectory_lrs is None:
            raise _needs(
                "the trajectory's learning rates (trajectory_lrs)", "lr_weights"
            )
        return np.asarray(self._trajectory_lrs, np.float64)

    @cached_property
    def record(self) -> Mapping[str, np.ndarray]:
        """Pretraining's per-sample bookkeeping: forgetting (N,), learned (N,)."""
        if self._record is None:
            raise _needs("pretraining's per-sample record (record)", "forgetting")
        return self._record
