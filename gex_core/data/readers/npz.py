"""A user's own data set as one .npz (x_train, y_train, x_test, y_test), read
without pickle."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import numpy as np

from gex_core.data.datasets import Dataset
from gex_core.data.readers.common import DataFileError, check_file, read_npz_arrays

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_fail(path: Path, problem: str) -> NoReturn:
    raise DataFileError(
        f"user data set: {path} {problem}. Write the data set with np.savez(path, "
        "x_train=..., y_train=..., x_test=..., y_test=...): images (N, H, W[, C]) "
        "uint8 or float, labels (N,) integers >= 0."
    )


def required_file(path: str | Path) -> Path:
    """The data file, checked to be a readable regular file (nothing is decoded, so
    the workflow calls it before any job runs); DataFileError otherwise."""
    check_file(Path(path), _npz_fail)
    return Path(path)


def _npz_images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim not in (3, 4) or not len(x):
        _npz_fail(
            path,
            f"{key} has shape {x.shape}, expected (N, H, W, C) or (N, H, W), N >= 1",
        )
    x = x[..., None] if x.ndim == 3 else x
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        _npz_fail(path, f"{key} has dtype {x.dtype}, expected uint8 or a float dtype")
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        _npz_fail(path, f"{key} holds values that are not finite in float32")
    return x


def _npz_labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer):
        _npz_fail(path, f"{key} has dtype {y.dtype}, expected an integer dtype")
    if y.shape != (n,):
        _npz_fail(path, f"{key} has shape {y.shape}, expected ({n},) like the images")
    if y.min() < 0 or y.max() > np.iinfo(np.int32).max:
        _npz_fail(path, f"{key} holds labels outside 0..2**31-1 ({y.min()}..{y.max()})")
    return y.astype(np.int32)


def _npz_num_classes(path: Path, arrays: dict, top_label: int) -> int:
    """The stored scalar `num_classes` (labels must lie below it), else max label + 1."""
    if "num_classes" not in arrays:
        return top_label + 1
    stored = arrays["num_classes"]
    if stored.ndim != 0 or not np.issubdtype(stored.dtype, np.integer):
        _npz_fail(
            path, f"num_classes is {stored.dtype} {stored.shape}, expected an int"
        )
    if int(stored) <= top_label:
        _npz_fail(path, f"num_classes is {int(stored)} but a label is {top_label}")
    return int(stored)


def load_npz_dataset(path: str | Path) -> Dataset:
    """A user's data set from one `.npz` holding x_train, y_train, x_test, y_test.

    Images (N, H, W, C) or (N, H, W) (a channel axis is added), uint8 (kept) or any
    float dtype (cast to float32, must be finite); train and test share H, W, C and
    dtype. Labels: integer dtype, (N,), >= 0, returned as int32. num_classes is the
    optional scalar `num_classes` of the file, else the largest label + 1.
    """
    path = Path(path)
    arrays = read_npz_arrays(path, _npz_fail, (*_NPZ_KEYS, "num_classes"))
    missing = [k for k in _NPZ_KEYS if k not in arrays]
    if missing:
        _npz_fail(path, f"lacks the array(s) {', '.join(missing)}")
    x_train = _npz_images(path, "x_train", arrays["x_train"])
    x_test = _npz_images(path, "x_test", arrays["x_test"])
    y_train = _npz_labels(path, "y_train", arrays["y_train"], len(x_train))
    y_test = _npz_labels(path, "y_test", arrays["y_test"], len(x_test))
    if (x_train.shape[1:], x_train.dtype) != (x_test.shape[1:], x_test.dtype):
        _npz_fail(
            path,
            f"x_train {x_train.dtype} {x_train.shape[1:]} and x_test {x_test.dtype} "
            f"{x_test.shape[1:]} differ in (H, W, C) or dtype",
        )
    top_label = int(max(y_train.max(), y_test.max()))
    num_classes = _npz_num_classes(path, arrays, top_label)
    return Dataset(x_train, y_train, x_test, y_test, num_classes=num_classes)
