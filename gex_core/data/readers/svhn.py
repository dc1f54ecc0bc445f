"""SVHN cropped digits from their MATLAB v5 files (label 10 means digit 0)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from gex_core.data.datasets import Dataset
from gex_core.data.readers.common import (
    _fail,
    _fail_missing,
)

_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def _svhn_paths(name: str, data_dir: Path) -> list[Path]:
    missing = [f for f in _SVHN_FILES if not (data_dir / f).is_file()]
    if missing:
        _fail_missing(name, data_dir, ", ".join(missing), "extra_32x32.mat is not used")
    return [data_dir / f for f in _SVHN_FILES]


def _read_mat(name: str, path: Path) -> dict[str, np.ndarray]:
    import scipy.io
    from scipy.io.matlab import MatReadError

    unreadable = (MatReadError, ValueError, TypeError, IndexError, KeyError, OSError)
    try:
        return scipy.io.loadmat(path, variable_names=("X", "y"))
    except NotImplementedError:
        problem = (
            "is a MATLAB v7.3 (HDF5) file, which scipy cannot read; need MATLAB v5"
        )
    except (*unreadable, EOFError, zlib.error, struct.error) as err:
        problem = f"is not a readable MATLAB v5 .mat file; truncated? ({err})"
    _fail(name, path, problem)


def _svhn_split(name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """X uint8 (32, 32, 3, N) -> (N, 32, 32, 3); y (N, 1) of 1..10, 10 meaning 0."""
    arrays = _read_mat(name, path)
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        _fail(name, path, f"has no variable {' or '.join(missing)}")
    x, y = arrays["X"], arrays["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        _fail(name, path, f"has X {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N)")
    n = x.shape[3]
    if y.shape != (n, 1) or y.dtype.kind not in "iuf":
        _fail(name, path, f"has y {y.dtype} {y.shape}, expected numbers ({n}, 1)")
    labels = y[:, 0]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 1) | (labels > 10))
    if bad.size:
        i = int(bad[0])
        _fail(name, path, f"has label {labels[i]} at record {i}, expected 1..10")
    return x.transpose(3, 0, 1, 2).copy(), labels.astype(np.int32) % 10


def _load_svhn(name: str, data_dir: Path) -> Dataset:
    train_path, test_path = _svhn_paths(name, data_dir)
    x_train, y_train = _svhn_split(name, train_path)
    x_test, y_test = _svhn_split(name, test_path)
    return Dataset(x_train, y_train, x_test, y_test, num_classes=10)


def required_files(name: str, data_dir: str | Path) -> list[Path]:
    """The files `load` will read, checked for existence only (nothing is opened)."""
    return _svhn_paths(name, Path(data_dir))


def load(name: str, data_dir: str | Path) -> Dataset:
    """x uint8 (N, 32, 32, 3), y int32 (N,) with label 10 as digit 0."""
    return _load_svhn(name, Path(data_dir))
