"""The workflow's stored arrays: the data set's split, noisy labels and scores.

Each is an uncompressed .npz written atomically (`io.write_npz`) and read without
pickle (`io.read_npz`), naming the file on any problem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from gex_core.data.datasets import Dataset, normalise_images
from gex_core.influence.scores import Scores
from gex_core.workflow.io import npz_memmap, read_npz, write_npz

DATASET_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
VALIDATION_ARRAYS = ("x_val", "y_val")
# Stored where the data set has them, as unicode arrays (read without pickle).
DATASET_NAMES = ("class_names", "train_files")


def save_dataset(path: str, data: Dataset) -> None:
    """Write the split once per workflow, so jobs read one .npz (fast, no scikit-learn)."""

    names = {
        name: np.asarray(getattr(data, name), dtype=str)
        for name in DATASET_NAMES
        if getattr(data, name) is not None
    }
    validation = {
        name: getattr(data, name)
        for name in VALIDATION_ARRAYS
        if getattr(data, name) is not None
    }
    write_npz(
        path,
        **{name: getattr(data, name) for name in DATASET_ARRAYS},
        **validation,
        num_classes=np.array(data.num_classes),
        **names,
    )


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

    return int(npz_memmap(path, "y_train").shape[0])


def stored_rows(path: str, split: str = "train") -> tuple[ImageRows, np.ndarray]:
    """(images, labels) of one split of a file written by `save_dataset`, images as
    on-demand ImageRows (N, H, W, C), labels int32 (N,) in memory."""

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

    arrays = read_npz(
        path, (*DATASET_ARRAYS, "num_classes"), (*DATASET_NAMES, *VALIDATION_ARRAYS)
    )
    num_classes = int(arrays["num_classes"])
    splits = ("train", "test", "val") if "x_val" in arrays else ("train", "test")
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{path}: {split} images {x.shape} and labels {y.shape} do not match "
                "(expected (N, H, W, C) and (N,))"
            )
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{path}: {split} labels outside 0..{num_classes - 1}")
    expected = {"class_names": num_classes, "train_files": arrays["y_train"].shape[0]}
    for name, size in expected.items():
        if name in arrays and arrays[name].shape != (size,):
            raise ValueError(
                f"{path}: {name} has shape {arrays[name].shape}, expected ({size},)"
            )
    return Dataset(
        normalise_images(arrays["x_train"]),
        arrays["y_train"],
        normalise_images(arrays["x_test"]),
        arrays["y_test"],
        num_classes=num_classes,
        **{
            name: tuple(str(v) for v in arrays[name])
            for name in DATASET_NAMES
            if name in arrays
        },
        **(
            {"x_val": normalise_images(arrays["x_val"]), "y_val": arrays["y_val"]}
            if "x_val" in arrays
            else {}
        ),
    )


def read_noisy_dataset(data_path: str, labels_path: str) -> Dataset:
    """The stored split with the noisy training labels of labels_path in y_train."""

    data = read_dataset(data_path)
    noisy = read_npz(labels_path, ("noisy",))["noisy"]
    if noisy.shape != data.y_train.shape:
        raise ValueError(
            f"{labels_path}: {noisy.shape[0]} labels for {data.y_train.shape[0]} "
            f"training samples of {data_path}"
        )
    return data._replace(y_train=noisy)


# scores.npz holds self_influence, and test_influence, kernel and query_indices (int64
# (Q,), the test samples of the kernel's columns) when present; files without the newer
# keys still load (None).


def save_scores(
    path: str | os.PathLike,
    scores: Scores,
    query_indices: Sequence[int] | np.ndarray | None = None,
    members: tuple[int, int] | None = None,
) -> None:
    """Write scores.npz; refuses non-finite values so no broken artifact is written.

    With a kernel (N, Q), query_indices (Q,) names its columns' test samples (default
    arange(Q), the workflow's query set) and is written beside it; without a kernel it
    is not written. members: (kept, total) ensemble members the scores were computed
    from, for methods built on an ensemble (stored as members_kept and members)."""
    arrays = {"self_influence": np.asarray(scores.self_influence, np.float64)}
    if scores.test_influence is not None:
        arrays["test_influence"] = np.asarray(scores.test_influence, np.float64)
    if scores.kernel is not None:
        arrays["kernel"] = np.asarray(scores.kernel, np.float64)
    for name, values in arrays.items():
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise FloatingPointError(f"{name} has {bad} non-finite values; not saving")
    if scores.kernel is not None:
        arrays["query_indices"] = _kernel_columns(
            arrays["kernel"], arrays["self_influence"].shape[0], query_indices
        )
    if members is not None:
        arrays["members_kept"], arrays["members"] = (np.array(int(m)) for m in members)
    write_npz(path, **arrays)


def _kernel_columns(kernel: np.ndarray, num: int, query_indices) -> np.ndarray:
    """Check the kernel's shape (N, Q) and return its query indices as int64 (Q,)."""
    if kernel.ndim != 2 or kernel.shape[0] != num:
        raise ValueError(f"kernel must be (N={num}, Q), got {kernel.shape}")
    q = kernel.shape[1]
    idx = np.arange(q) if query_indices is None else np.asarray(query_indices)
    if idx.shape != (q,) or (q and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(
            f"query_indices must be {q} integers (one per kernel column), got "
            f"{idx.dtype} {idx.shape}"
        )
    return idx.astype(np.int64)


def _names(path: str | os.PathLike) -> set[str]:
    with np.load(path, allow_pickle=False) as data:
        return set(data.files)


def load_scores(path: str | os.PathLike) -> Scores:
    optional = tuple(k for k in ("test_influence", "kernel") if k in _names(path))
    arrays = read_npz(path, ("self_influence", *optional))
    return Scores(
        arrays["self_influence"], arrays.get("test_influence"), arrays.get("kernel")
    )


def load_query_indices(path: str | os.PathLike) -> np.ndarray | None:
    """The test samples of the kernel's columns, int64 (Q,); None without a kernel."""
    if "query_indices" not in _names(path):
        return None
    return read_npz(path, ("query_indices",))["query_indices"]


def load_members(path: str | os.PathLike) -> tuple[int, int] | None:
    """(kept, total) ensemble members of a scores.npz; None for methods without one."""
    if "members" not in _names(path):
        return None
    arrays = read_npz(path, ("members_kept", "members"))
    return int(arrays["members_kept"]), int(arrays["members"])
