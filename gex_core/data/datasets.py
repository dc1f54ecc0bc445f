"""Data sets in memory: the fixed train/test split and the bundled digits.

Labels are int32 (N,). Images are (N, H, W, C): digits and user float data as float32
as given (digits: pixels / 16, in [0, 1]); 8-bit images (MNIST, CIFAR, SVHN, uint8 npz)
are stored as uint8 and normalised when read, as the research code: (x / 255 - 0.5) /
0.25, in [-2, 2].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DATASETS = (
    "digits",
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "svhn",
    "npz",
    "folder",
)


class Dataset(NamedTuple):
    """A fixed-order train/test split. x: (N, H, W, C) float32, y: (N,) int32.

    class_names: (C,) names of the labels where the data set has them (image folders),
    else None; train_files: (N,) each training image's file, relative to the data
    set's folder, where it was read from one file per image, else None; x_val, y_val:
    the validation split carved from the training data (`with_validation`), else
    None."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] | None = None
    train_files: tuple[str, ...] | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


class LabelError(ValueError):
    """A data set's labels cannot be learned or scored as they are."""


def check_labels(data: Dataset, source: str) -> Dataset:
    """data, unchanged, if its labels can be trained on and scored: at least two
    classes in the training labels, every test class among them, and at least half of
    the classes 0..num_classes-1 present in training (a stray label like 2**31 - 1
    would otherwise ask the network for 2**31 outputs). Raises LabelError naming
    `source` (the file) otherwise, before any training."""
    train = np.unique(data.y_train)
    problems = []
    if len(train) < 2:
        problems.append(
            f"the training labels hold {len(train)} class(es) ({train.tolist()}); "
            "telling mislabeled samples apart needs at least two"
        )
    unseen = np.setdiff1d(np.unique(data.y_test), train)
    if unseen.size:
        problems.append(
            f"test labels {unseen[:10].tolist()} never occur in the training labels"
        )
    if 2 * len(train) < data.num_classes:
        problems.append(
            f"the labels go up to {data.num_classes - 1} ({data.num_classes} classes) "
            f"but only {len(train)} of those classes occur in training: number the "
            "classes 0..C-1"
        )
    if problems:
        raise LabelError(f"{source}: " + "; ".join(problems))
    return data


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


def normalise_images(x: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 (x / 255 - 0.5) / 0.25, as the research code; float
    images unchanged."""
    if x.dtype == np.uint8:
        return (x.astype(np.float32) / 255.0 - 0.5) / 0.25
    return x


def heldout_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, held-out rows), int64, each sorted: a stratified random `fraction`
    of the rows held out, the same for the same labels, fraction and seed."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    rows = np.arange(np.shape(labels)[0])
    kept, held = train_test_split(
        rows, test_size=fraction, stratify=labels, random_state=seed
    )
    return np.sort(kept), np.sort(held)


def with_validation(data: Dataset, fraction: float) -> Dataset:
    """The data set with a stratified `fraction` of its training split moved to the
    validation split (x_val, y_val), the same rows for every run (seed 0), kept rows
    and train_files in their order. Where some class is too small to stratify, the
    rows are drawn without regard to class."""
    try:
        kept, held = heldout_split(data.y_train, fraction, seed=0)
    except ValueError:
        # too few samples of some class to stratify (tiny data sets): a plain draw
        kept, held = heldout_split(np.zeros_like(data.y_train), fraction, seed=0)
    files = data.train_files
    return data._replace(
        x_train=data.x_train[kept],
        y_train=data.y_train[kept],
        x_val=data.x_train[held],
        y_val=data.y_train[held],
        train_files=None if files is None else tuple(files[i] for i in kept),
    )
