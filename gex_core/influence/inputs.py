"""What an influence method may read, loaded only when the method asks for it."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from gex_core.data import Dataset, read_noisy_dataset
from gex_core.io import read_npz

Params = Any


class MethodInputs:
    """Lazily loaded artifacts of one (data, noise, model, pretraining, seed) run.

    data_path: the split (data.npz); labels_path: labels.npz (noisy, clean, mask); model_path: pretrained msgpack;
    losses_path: the pretrained model's per-sample losses; chain_paths: ensemble chain
    .npz files (member losses), in chain order.
    """

    def __init__(
        self,
        *,
        data_path: str,
        model_name: str,
        seed: int,
        eval_batch_size: int,
        labels_path: str,
        model_path: str,
        losses_path: str,
        chain_paths: tuple[str, ...] = (),
    ):
        self.data_path = data_path
        self.model_name = model_name
        self.seed = seed
        self.eval_batch_size = eval_batch_size
        self.labels_path = labels_path
        self.model_path = model_path
        self.losses_path = losses_path
        self.chain_paths = tuple(chain_paths)

    @cached_property
    def data(self) -> Dataset:
        """The split with the noisy training labels in y_train."""
        return read_noisy_dataset(self.data_path, self.labels_path)

    @cached_property
    def model(self):
        from gex_core.models import make_model

        return make_model(
            self.model_name, self.data.num_classes, self.data.x_train.shape[1:]
        )

    @cached_property
    def params(self) -> Params:
        import jax

        from gex_core.checkpoint import load_params

        template = self.model.init(jax.random.key(0))
        return load_params(self.model_path, template)

    @cached_property
    def pretrained_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample losses of the pretrained model: train (N,), test (N_te,)."""
        arrays = read_npz(self.losses_path, ("train", "test"))
        return arrays["train"], arrays["test"]

    @cached_property
    def member_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble member losses stacked over chains: train (M, N), test (M, N_te)."""
        if not self.chain_paths:
            raise ValueError("this method needs ensemble chains, but none were given")
        chains = [
            read_npz(p, ("train_losses", "test_losses")) for p in self.chain_paths
        ]
        return (
            np.concatenate([c["train_losses"] for c in chains]),
            np.concatenate([c["test_losses"] for c in chains]),
        )
