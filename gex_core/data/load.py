"""Load a data set, and make its noisy labels, by their config names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gex_core.data.datasets import DATASETS, Dataset, load_digits
from gex_core.data.noise import (
    NOISE_KINDS,
    NoisyLabels,
    asymmetric_noise,
    human_noise,
    symmetric_noise,
)


def load_dataset(
    name: str, data_dir: str | Path = "data", data_file: str | Path | None = None
) -> Dataset:
    """Load a data set by its config name: digits (bundled), an image data set from its
    standard files in data_dir, or npz from data_file (see `gex_core.data.readers`)."""
    from gex_core.data import readers as loaders

    if name == "digits":
        return load_digits()
    if name == "npz":
        if data_file is None:
            raise ValueError("dataset npz needs data_file (the .npz to read)")
        return loaders.load_npz_dataset(data_file)
    if name in loaders.IMAGE_DATASETS:
        return loaders.load_images(name, data_dir)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def make_noisy_labels(
    labels: np.ndarray,
    noise: Mapping[str, Any],
    num_classes: int,
    seed: int,
    data_dir: str | Path = "data",
) -> NoisyLabels:
    """Noisy labels for the config's noise section (kind, ratio, pairs, label_file,
    label_set); pairs must already be resolved (`gex_core.workflow.config.resolve_config`)."""
    kind = noise["kind"]
    if kind == "symmetric":
        return symmetric_noise(labels, float(noise["ratio"]), num_classes, seed)
    if kind == "asymmetric":
        return asymmetric_noise(
            labels, float(noise["ratio"]), noise["pairs"], num_classes, seed
        )
    if kind == "human":
        from gex_core.data.readers import read_human_labels

        path = Path(data_dir) / noise["label_file"]
        file_clean, file_noisy = read_human_labels(path, noise["label_set"])
        result = human_noise(labels, file_clean, file_noisy, str(path))
        if result.noisy.max() >= num_classes:
            raise ValueError(
                f"{path}: {noise['label_set']} has labels up to {result.noisy.max()} "
                f"for {num_classes} classes"
            )
        return result
    raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
