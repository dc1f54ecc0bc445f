"""Data sets, the fixed train/test split and label noise.

Labels are int32 (N,). Images are (N, H, W, C): digits and user float data as float32
as given (digits: pixels / 16, in [0, 1]); 8-bit images (MNIST, CIFAR, SVHN, uint8 npz)
are stored as uint8 and normalised when read, as the research code: (x / 255 - 0.5) /
0.25, in [-2, 2].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "npz")
NOISE_KINDS = ("symmetric", "asymmetric", "human")
DIGIT_PAIRS = ((2, 7), (3, 8), (5, 6), (6, 5), (7, 1))
# The usual class-pair flips: digits as Patrini et al. 2017 / Han et al. 2018 for MNIST;
# CIFAR-10 truck->automobile, bird->airplane, cat<->dog, deer->horse.
DEFAULT_PAIRS = {
    "digits": DIGIT_PAIRS,
    "mnist": DIGIT_PAIRS,
    "svhn": DIGIT_PAIRS,
    "cifar10": ((9, 1), (2, 0), (3, 5), (5, 3), (4, 7)),
}
HUMAN_LABEL_DATASETS = {"cifar10": 10, "cifar100": 100}


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


def load_dataset(
    name: str, data_dir: str | Path = "data", data_file: str | Path | None = None
) -> Dataset:
    """Load a data set by its config name: digits (bundled), an image data set from its
    standard files in data_dir, or npz from data_file (see `gex_core.loaders`)."""
    from gex_core import loaders

    if name == "digits":
        return load_digits()
    if name == "npz":
        if data_file is None:
            raise ValueError("dataset npz needs data_file (the .npz to read)")
        return loaders.load_npz_dataset(data_file)
    if name in loaders.IMAGE_DATASETS:
        return loaders.load_images(name, data_dir)
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


def asymmetric_noise(
    labels: np.ndarray,
    ratio: float,
    pairs: Sequence[Sequence[int]],
    num_classes: int,
    seed: int,
) -> NoisyLabels:
    """Class-pair flips: for each (source, target), in the given order,
    int(n_source * ratio) of the source class's samples (drawn without replacement by
    `default_rng(seed)`) get the target label. Every flip changes the label, so the
    measured rate is exact: sum over sources of int(n_source * ratio) / N.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"noise ratio must lie in [0, 1), got {ratio}")
    pairs = [tuple(int(c) for c in pair) for pair in pairs]
    sources = [source for source, _ in pairs]
    for source, target in pairs:
        if not (0 <= source < num_classes and 0 <= target < num_classes):
            raise ValueError(
                f"noise pair {source}->{target} names a class outside 0..{num_classes - 1}"
            )
        if source == target:
            raise ValueError(f"noise pair {source}->{target} does not change the label")
    if len(set(sources)) != len(sources):
        raise ValueError(f"noise pairs flip a source class twice: {pairs}")
    clean = np.asarray(labels, dtype=np.int32)
    rng = np.random.default_rng(seed)
    noisy = clean.copy()
    for source, target in pairs:
        members = np.flatnonzero(clean == source)
        flipped = rng.choice(members, int(members.size * ratio), replace=False)
        noisy[np.sort(flipped)] = target
    return NoisyLabels(noisy=noisy, clean=clean, mask=noisy != clean)


def human_noise(
    labels: np.ndarray, file_clean: np.ndarray, file_noisy: np.ndarray, source: str
) -> NoisyLabels:
    """CIFAR-N human labels. The mask compares each example's own clean and noisy
    fields of the label file; the file's clean labels must equal the data set's, row by
    row, which proves the file and the data set are in the same order."""
    clean = np.asarray(labels, dtype=np.int32)
    file_clean = np.asarray(file_clean, dtype=np.int32)
    file_noisy = np.asarray(file_noisy, dtype=np.int32)
    if file_clean.shape != clean.shape or file_noisy.shape != clean.shape:
        raise ValueError(
            f"{source}: {file_clean.shape[0]} rows for {clean.shape[0]} training "
            "samples; the human labels must cover the whole training set in order"
        )
    differ = np.flatnonzero(file_clean != clean)
    if differ.size:
        raise ValueError(
            f"{source}: clean_label disagrees with the data set's training labels at "
            f"{differ.size} rows (first: {differ[:5].tolist()}); the file must list "
            "the training set in the order of the CIFAR binary batches"
        )
    return NoisyLabels(noisy=file_noisy, clean=clean, mask=file_noisy != file_clean)


def make_noisy_labels(
    labels: np.ndarray,
    noise: Mapping[str, Any],
    num_classes: int,
    seed: int,
    data_dir: str | Path = "data",
) -> NoisyLabels:
    """Noisy labels for the config's noise section (kind, ratio, pairs, label_file,
    label_set); pairs must already be resolved (`gex_core.config.resolve_config`)."""
    kind = noise["kind"]
    if kind == "symmetric":
        return symmetric_noise(labels, float(noise["ratio"]), num_classes, seed)
    if kind == "asymmetric":
        return asymmetric_noise(
            labels, float(noise["ratio"]), noise["pairs"], num_classes, seed
        )
    if kind == "human":
        from gex_core.loaders import read_human_labels

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


DATASET_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def save_dataset(path: str, data: Dataset) -> None:
    """Write the split once per workflow, so jobs read one .npz (fast, no scikit-learn)."""
    from gex_core.io import write_npz

    write_npz(
        path,
        **{name: getattr(data, name) for name in DATASET_ARRAYS},
        num_classes=np.array(data.num_classes),
    )


def normalise_images(x: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 (x / 255 - 0.5) / 0.25, as the research code; float
    images unchanged."""
    if x.dtype == np.uint8:
        return (x.astype(np.float32) / 255.0 - 0.5) / 0.25
    return x


class ImageRows:
    """Images of a stored split, read from disk and normalised only when indexed.

    Behaves like the float32 (N, H, W, C) array `read_dataset` returns for what the
    methods do with training images (shape, len, dtype, row and fancy indexing), so a
    job that scores one shard or draws curvature batches holds only those rows. Every
    indexing returns a fresh float32 array equal to the same rows of the full array.
    """

    def __init__(self, raw: np.ndarray):
        if raw.ndim != 4:
            raise ValueError(f"images must be (N, H, W, C), got {raw.shape}")
        self._raw = raw
        self.shape = raw.shape
        self.ndim = raw.ndim
        self.dtype = np.dtype(np.float32) if raw.dtype == np.uint8 else raw.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        return normalise_images(np.asarray(self._raw[index]))


def stored_train_size(path: str) -> int:
    """N of a file written by `save_dataset`, from its header (no data read)."""
    from gex_core.io import npz_memmap

    return int(npz_memmap(path, "y_train").shape[0])


def stored_rows(path: str, split: str = "train") -> tuple[ImageRows, np.ndarray]:
    """(images, labels) of one split of a file written by `save_dataset`, images as
    on-demand ImageRows (N, H, W, C), labels int32 (N,) in memory."""
    from gex_core.io import npz_memmap

    images = ImageRows(npz_memmap(path, f"x_{split}"))
    labels = np.asarray(npz_memmap(path, f"y_{split}"))
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"{path}: {split} images {images.shape} and labels {labels.shape} do not "
            "match (expected (N, H, W, C) and (N,))"
        )
    return images, labels


def read_dataset(path: str) -> Dataset:
    """Read a split written by `save_dataset`, checking shapes and label ranges.
    Images come back as float32 (`normalise_images`)."""
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
    return Dataset(
        normalise_images(arrays["x_train"]),
        arrays["y_train"],
        normalise_images(arrays["x_test"]),
        arrays["y_test"],
        num_classes=num_classes,
    )


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
