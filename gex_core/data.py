"""Data sets, the fixed train/test split, label noise and batching.

Images are float32 arrays of shape (N, H, W, C) scaled to [0, 1]; labels are int32 (N,).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DATASETS = ("digits",)


class Dataset(NamedTuple):
    """A fixed-order train/test split. x: (N, H, W, C) float32, y: (N,) int32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


class NoisyLabels(NamedTuple):
    """Training labels after corruption. noisy, clean: (N,) int32; mask: (N,) bool."""

    noisy: np.ndarray
    clean: np.ndarray
    mask: np.ndarray


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1,437 train / 360 test, stratified, fixed.

    Pixels (0..16) are divided by 16. The split is `train_test_split(test_size=0.2,
    stratify=y, random_state=0)` for every seed: seeds change noise, initialisation and
    data order, never the split.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    y = bunch.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    return Dataset(x_tr, y_tr, x_te, y_te, num_classes=10)


def load_dataset(name: str) -> Dataset:
    """Load a data set by its config name."""
    if name == "digits":
        return load_digits()
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def symmetric_noise(
    labels: np.ndarray, ratio: float, num_classes: int, seed: int
) -> NoisyLabels:
    """The research code's symmetric label noise.

    `default_rng(seed)` picks int(N*ratio) indices without replacement, then draws each
    new label uniformly over all C classes (possibly the old one). Only labels that
    changed count as noisy, so the measured rate is about ratio*(1-1/C).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"noise ratio must lie in [0, 1), got {ratio}")
    clean = np.asarray(labels, dtype=np.int32)
    rng = np.random.default_rng(seed)
    n = clean.shape[0]
    candidates = np.sort(rng.choice(n, int(n * ratio), replace=False))
    noisy = clean.copy()
    noisy[candidates] = rng.choice(num_classes, len(candidates))
    return NoisyLabels(noisy=noisy, clean=clean, mask=noisy != clean)


def make_noisy_labels(
    labels: np.ndarray, kind: str, ratio: float, num_classes: int, seed: int
) -> NoisyLabels:
    """Dispatch on the noise kind named in the config."""
    if kind == "symmetric":
        return symmetric_noise(labels, ratio, num_classes, seed)
    raise ValueError(f"unknown noise kind {kind!r}; known: symmetric")


DATASET_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def save_dataset(path: str, data: Dataset) -> None:
    """Write the split once per workflow, so jobs read one .npz (fast, no scikit-learn)."""
    from gex_core.io import write_npz

    write_npz(
        path,
        **{name: getattr(data, name) for name in DATASET_ARRAYS},
        num_classes=np.array(data.num_classes),
    )


def read_dataset(path: str) -> Dataset:
    """Read a split written by `save_dataset`, checking shapes and label ranges."""
    from gex_core.io import read_npz

    arrays = read_npz(path, (*DATASET_ARRAYS, "num_classes"))
    num_classes = int(arrays["num_classes"])
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{path}: {split} images {x.shape} and labels {y.shape} do not match "
                "(expected (N, H, W, C) and (N,))"
            )
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{path}: {split} labels outside 0..{num_classes - 1}")
    return Dataset(*(arrays[name] for name in DATASET_ARRAYS), num_classes=num_classes)


def read_noisy_dataset(data_path: str, labels_path: str) -> Dataset:
    """The stored split with the noisy training labels of labels_path in y_train."""
    from gex_core.io import read_npz

    data = read_dataset(data_path)
    noisy = read_npz(labels_path, ("noisy",))["noisy"]
    if noisy.shape != data.y_train.shape:
        raise ValueError(
            f"{labels_path}: {noisy.shape[0]} labels for {data.y_train.shape[0]} "
            f"training samples of {data_path}"
        )
    return data._replace(y_train=noisy)
