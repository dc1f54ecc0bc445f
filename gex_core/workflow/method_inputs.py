"""An influence `Problem` whose attributes are the run's files, each loaded only when
a method asks for it."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import jax
import numpy as np

from gex_core.data.datasets import Dataset
from gex_core.influence.members import check_kept
from gex_core.influence.problem import Problem
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY
from gex_core.training.models import make_model, trainable, variable_shapes
from gex_core.training.recipes import checkpoint_learning_rates
from gex_core.workflow.artifacts import (
    ImageRows,
    read_noisy_dataset,
    stored_rows,
    stored_train_size,
)
from gex_core.workflow.checkpoints import load_params, load_params_list
from gex_core.workflow.io import npz_memmap, read_npz
from gex_core.workflow.resume import NO_RESUME, Resume

Params = Any


class MethodInputs(Problem):
    """Lazily loaded artifacts of one (data, noise, model, pretraining, seed) run.

    data_path: the split (data.npz); labels_path: labels.npz (noisy, clean, mask);
    pretraining: the pretraining stage's files by name (model, trajectory, record,
    losses, history; a method reading a file not given fails naming it); chain_paths: ensemble chain .npz files (member
    losses), in chain order; recipe: the pretraining config (epochs, batch_size, lr,
    weight_decay, warmup_ratio, momentum, num_checkpoints), for methods that retrain;
    resume: the job's in-progress store (`gex_core.workflow.resume`) for a method's long loop.
    Methods never see the clean labels or the noise mask. The loss is softmax
    cross-entropy, the workflow's.
    """

    def __init__(
        self,
        *,
        data_path: str,
        labels_path: str,
        pretraining: Mapping[str, str],
        model_name: str,
        seed: int,
        eval_batch_size: int,
        recipe: Mapping[str, Any],
        chain_paths: tuple[str, ...] = (),
        queries: int = 0,
        shard: tuple[int, int] | None = None,
        resume: Resume = NO_RESUME,
    ):
        if int(queries) < 0:
            raise ValueError(f"queries must be >= 0, got {queries}")
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(
                f"a shard is rows (start, stop), 0 <= start < stop; got {shard}"
            )
        self.data_path = data_path
        self.labels_path = labels_path
        self.pretraining = dict(pretraining)
        self.model_name = model_name
        self.seed = seed
        self.eval_batch_size = eval_batch_size
        self.recipe = dict(recipe)
        self.chain_paths = tuple(chain_paths)
        self.queries = int(queries)
        self.shard = None if shard is None else (int(shard[0]), int(shard[1]))
        self.checkpointer = resume
        self.loss = SOFTMAX_CROSS_ENTROPY

    def pretrain_file(self, name: str) -> str:
        """One of the pretraining stage's files (model, trajectory, record, losses,
        history)."""
        if name not in self.pretraining:
            raise ValueError(
                f"this job was not given the pretraining's {name} file; it has "
                f"{', '.join(sorted(self.pretraining)) or 'none'}"
            )
        return self.pretraining[name]

    @cached_property
    def data(self) -> Dataset:
        """The split with the noisy training labels in y_train."""
        return read_noisy_dataset(self.data_path, self.labels_path)

    @cached_property
    def num_train(self) -> int:
        """N, from the file's header (no images read)."""
        return stored_train_size(self.data_path)

    @cached_property
    def train_labels(self) -> np.ndarray:
        """The noisy training labels, int32 (N,)."""
        noisy = read_npz(self.labels_path, ("noisy",))["noisy"]
        if noisy.shape != (self.num_train,):
            raise ValueError(
                f"{self.labels_path}: {noisy.shape[0]} labels for {self.num_train} "
                f"training samples of {self.data_path}"
            )
        return noisy

    @property
    def scored_rows(self) -> slice:
        """The training rows this job scores: all, or its shard (checked against N)."""
        if self.shard is None:
            return slice(None)
        start, stop = self.shard
        if stop > self.num_train:
            raise ValueError(
                f"shard rows {start}:{stop} lie beyond the {self.num_train} training "
                f"samples of {self.data_path}"
            )
        return slice(start, stop)

    @cached_property
    def train_set(self) -> tuple[np.ndarray | ImageRows, np.ndarray]:
        """Every training sample (images (N, H, W, C), noisy labels (N,)): the loaded
        arrays, or on-demand ImageRows in a shard job."""
        if self.shard is None:
            return self.data.x_train, self.data.y_train
        return stored_rows(self.data_path, "train")[0], self.train_labels

    @cached_property
    def scored(self) -> tuple[np.ndarray, np.ndarray]:
        """(images, noisy labels) of the training samples this job scores."""
        rows = self.scored_rows
        if self.shard is None:
            return self.data.x_train, self.data.y_train
        return self.train_set[0][rows], self.train_labels[rows]

    @cached_property
    def test_set(self) -> tuple[np.ndarray, np.ndarray]:
        """(images (N_te, H, W, C) float32, labels (N_te,))."""
        if self.shard is None:
            return self.data.x_test, self.data.y_test
        images, labels = stored_rows(self.data_path, "test")
        return images[:], labels

    @cached_property
    def query_indices(self) -> np.ndarray:
        """The kernel's query set: test indices arange(min(Q, N_te)), int64 (possibly
        empty; the data are not read when Q = 0)."""
        if self.queries == 0:
            return np.zeros(0, np.int64)
        num_test = npz_memmap(self.data_path, "y_test").shape[0]
        return np.arange(min(self.queries, num_test), dtype=np.int64)

    @cached_property
    def num_classes(self) -> int:
        return int(read_npz(self.data_path, ("num_classes",))["num_classes"])

    @cached_property
    def num_params(self) -> int:
        """From the parameter shapes: no checkpoint is read."""
        shapes = jax.eval_shape(self.model.init, jax.random.key(0))
        return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(trainable(shapes)))

    @cached_property
    def model(self):
        image_shape = npz_memmap(self.data_path, "x_train").shape[1:]
        return make_model(self.model_name, self.num_classes, image_shape)

    @cached_property
    def template(self) -> Params:
        """The model's variable shapes: the structure checkpoints are read into."""
        return variable_shapes(self.model)

    @cached_property
    def params(self) -> Params:
        """The pretrained parameters theta*."""
        return load_params(self.pretrain_file("model"), self.template, self.model_name)

    @cached_property
    def trajectory(self) -> list[Params]:
        """The T trajectory checkpoints, in training order."""
        return load_params_list(
            self.pretrain_file("trajectory"), self.template, self.model_name
        )

    @cached_property
    def record(self) -> dict[str, np.ndarray]:
        """Pretraining bookkeeping: last_loss (N,), forgetting (N,) int, learned (N,)
        bool, trajectory_epochs (T,)."""
        return read_npz(
            self.pretrain_file("record"),
            ("last_loss", "forgetting", "learned", "trajectory_epochs"),
        )

    @cached_property
    def trajectory_lrs(self) -> np.ndarray:
        """Learning rate of each trajectory checkpoint's epoch, (T,)."""
        import pandas as pd  # here: the other methods' jobs need not load it

        history = pd.read_csv(self.pretrain_file("history"), sep="\t")
        return checkpoint_learning_rates(
            history.epoch.to_numpy(),
            history.lr.to_numpy(),
            self.record["trajectory_epochs"],
        )

    @cached_property
    def pretrained_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample losses of the pretrained model: train (N,), test (N_te,)."""
        arrays = read_npz(self.pretrain_file("losses"), ("train", "test"))
        return arrays["train"], arrays["test"]

    @cached_property
    def chain_arrays(self) -> dict[str, np.ndarray]:
        """The chain files' member arrays stacked over chains: train_losses (M, N),
        test_losses (M, N_te), val_accuracy (M,) and kept (M,) bool."""
        if not self.chain_paths:
            raise ValueError("this method needs ensemble chains, but none were given")
        keys = ("train_losses", "test_losses", "val_accuracy", "kept")
        chains = [read_npz(p, keys) for p in self.chain_paths]
        return {k: np.concatenate([c[k] for c in chains]) for k in keys}

    @cached_property
    def member_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept ensemble members' losses, stacked over chains: train (M', N), test
        (M', N_te); fewer than half kept is an error (`check_kept`)."""
        arrays = self.chain_arrays
        kept = arrays["kept"].astype(bool)
        check_kept(kept)
        return arrays["train_losses"][kept], arrays["test_losses"][kept]


def job_method_inputs(smk, **extra) -> MethodInputs:
    """MethodInputs of the run a job belongs to, from the Snakemake object of a rule
    with inputs data, labels and model (and the pretraining's trajectory, record,
    losses and history where the rule reads them), params model, recipe and
    eval_batch_size, and wildcard seed; extra: further MethodInputs arguments."""
    pretraining = ("model", "trajectory", "record", "losses", "history")
    given = set(smk.input.keys())  # `in` on a Namedlist looks at its values
    return MethodInputs(
        data_path=smk.input.data,
        labels_path=smk.input.labels,
        pretraining={name: smk.input[name] for name in pretraining if name in given},
        model_name=smk.params.model,
        seed=int(smk.wildcards.seed),
        eval_batch_size=smk.params.eval_batch_size,
        recipe=smk.params.recipe,
        **extra,
    )
