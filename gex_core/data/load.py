"""Load a data set, and make its noisy labels, by their config names."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gex_core.data.datasets import DATASETS, Dataset, check_labels, load_digits
from gex_core.data.noise import (
    NOISE_KINDS,
    NoisyLabels,
    asymmetric_noise,
    human_noise,
    no_noise,
    symmetric_noise,
)

# The reader of each data set read from files, by module name: imported only when
# that data set is loaded, so a stage's code fingerprint holds its reader alone.
READERS = {
    "mnist": "gex_core.data.readers.idx",
    "fashion_mnist": "gex_core.data.readers.idx",
    "cifar10": "gex_core.data.readers.cifar",
    "cifar100": "gex_core.data.readers.cifar",
    "svhn": "gex_core.data.readers.svhn",
    "npz": "gex_core.data.readers.npz",
    "folder": "gex_core.data.readers.folder",
}
IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
HUMAN_LABELS = "gex_core.data.readers.cifar_n"


def reader_module(dataset: str) -> str | None:
    """The module that reads `dataset`'s files (None for the bundled digits)."""
    if dataset == "digits":
        return None
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return READERS[dataset]


def _image_reader(dataset: str):
    if dataset not in IMAGE_DATASETS:
        raise ValueError(
            f"unknown data set {dataset!r}; known: {', '.join(IMAGE_DATASETS)}"
        )
    return importlib.import_module(READERS[dataset])


def required_files(dataset: str, data_dir: str | Path) -> list[Path]:
    """The files loading an image data set (IMAGE_DATASETS) will read, checked for
    existence only (nothing is opened, so a workflow can call it before any job runs).
    Raises DataFileError naming every missing file and where to get it."""
    return _image_reader(dataset).required_files(dataset, data_dir)


def npz_file(data_file: str | Path) -> Path:
    """A user .npz data file, checked to be a readable regular file before any job
    (`readers.npz.required_file`)."""
    return importlib.import_module(READERS["npz"]).required_file(data_file)


def folder_images(data_dir: str | Path) -> list[Path]:
    """Every image file of an image folder data set (train and test), its layout
    checked (`readers.folder.folder_layout`); nothing is decoded."""
    train, test = importlib.import_module(READERS["folder"]).folder_layout(data_dir)
    return [
        f for split in (train, test or {}) for files in split.values() for f in files
    ]


def folder_files(data_dir: str | Path) -> list[Path]:
    """The class folders of an image folder data set, its layout checked (nothing is
    opened; `readers.folder.required_files`)."""
    return importlib.import_module(READERS["folder"]).required_files(data_dir)


def load_dataset(
    name: str,
    data_dir: str | Path = "data",
    data_file: str | Path | None = None,
    test_fraction: float = 0.2,
) -> Dataset:
    """Load a data set by its config name: digits (bundled), an image data set from its
    standard files in data_dir, npz from data_file, or folder from the class folders in
    data_dir (test_fraction held out without a test folder; `gex_core.data.readers`).

    Images: uint8 (N, H, W, C) as in the files (digits and float npz: float32);
    labels int32 (N,); a user's npz labels are checked by `check_labels` (the
    folder reader and the standard data sets' readers check their own)."""
    if name == "digits":
        return load_digits()
    if name == "folder":
        reader = importlib.import_module(READERS["folder"])
        return reader.load_folder(data_dir, test_fraction)
    if name == "npz":
        if data_file is None:
            raise ValueError("dataset npz needs data_file (the .npz to read)")
        data = importlib.import_module(READERS["npz"]).load_npz_dataset(data_file)
        return check_labels(data, str(data_file))
    if name in IMAGE_DATASETS:
        return _image_reader(name).load(name, data_dir)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def read_human_labels(path: str | Path, label_set: str):
    """(clean, noisy) int32 (N,) of a CIFAR-N label file (`readers.cifar_n`)."""
    return importlib.import_module(HUMAN_LABELS).read_human_labels(path, label_set)


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
    if kind == "none":
        return no_noise(labels)
    if kind == "symmetric":
        return symmetric_noise(labels, float(noise["ratio"]), num_classes, seed)
    if kind == "asymmetric":
        return asymmetric_noise(
            labels, float(noise["ratio"]), noise["pairs"], num_classes, seed
        )
    if kind == "human":
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
