"""MNIST and Fashion-MNIST from their four IDX files (.gz or not)."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gex_core.data.datasets import Dataset
from gex_core.data.readers.common import (
    _check_labels,
    _fail,
    _fail_missing,
)

# --- MNIST and Fashion-MNIST: IDX files ---------------------------------------------

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class _IdxKind(NamedTuple):
    what: str
    magic: int
    dims: tuple[int, ...]  # expected sizes after N


_IDX_IMAGES = _IdxKind("IDX images", 0x00000803, (28, 28))
_IDX_LABELS = _IdxKind("IDX labels", 0x00000801, ())


def _first_file(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _idx_paths(name: str, data_dir: Path) -> list[Path]:
    """The four IDX files, each `.gz` if present, else uncompressed."""
    found = {s: _first_file(data_dir / f"{s}.gz", data_dir / s) for s in _IDX_FILES}
    missing = [f"{stem}[.gz]" for stem, path in found.items() if path is None]
    if missing:
        _fail_missing(
            name, data_dir, ", ".join(missing), "each gzipped (.gz) or uncompressed"
        )
    return list(found.values())


def _read_maybe_gzip(name: str, path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        _fail(name, path, f"is not a readable gzip file ({err})")


def _size_problem(found: int, expected: int) -> str:
    kind = "is truncated" if found < expected else "has trailing bytes"
    return f"{kind}: {found} bytes, expected {expected}"


def _parse_idx(name: str, path: Path, data: bytes, kind: _IdxKind) -> np.ndarray:
    """The uint8 array (N, *kind.dims) in the IDX bytes `data` read from `path`."""
    header = 4 * (2 + len(kind.dims))  # magic, N, then one size per item axis
    if len(data) >= 4 and (magic := int.from_bytes(data[:4], "big")) != kind.magic:
        problem = f"has magic number {magic}, expected {kind.magic} ({kind.what})"
        _fail(name, path, problem)
    if len(data) < header:
        _fail(name, path, _size_problem(len(data), header) + " for the header")
    n, *dims = struct.unpack_from(f">{1 + len(kind.dims)}I", data, 4)
    if tuple(dims) != kind.dims:
        _fail(name, path, f"has items of shape {tuple(dims)}, expected {kind.dims}")
    expected = header + n * math.prod(kind.dims)
    if len(data) != expected:
        _fail(name, path, _size_problem(len(data), expected))
    return np.frombuffer(data, np.uint8, offset=header).reshape(n, *kind.dims)


def _load_idx_split(name: str, images: Path, labels: Path) -> tuple[np.ndarray, ...]:
    x = _parse_idx(name, images, _read_maybe_gzip(name, images), _IDX_IMAGES)
    y = _parse_idx(name, labels, _read_maybe_gzip(name, labels), _IDX_LABELS)
    if len(x) != len(y):
        _fail(
            name, labels, f"holds {len(y)} labels for the {len(x)} images of {images}"
        )
    _check_labels(name, labels, y, "label", 10)
    return x[..., None].copy(), y.astype(np.int32)


def _load_idx(name: str, data_dir: Path) -> Dataset:
    x_train_path, y_train_path, x_test_path, y_test_path = _idx_paths(name, data_dir)
    x_train, y_train = _load_idx_split(name, x_train_path, y_train_path)
    x_test, y_test = _load_idx_split(name, x_test_path, y_test_path)
    return Dataset(x_train, y_train, x_test, y_test, num_classes=10)


def required_files(name: str, data_dir: str | Path) -> list[Path]:
    """The files `load` will read, checked for existence only (nothing is opened)."""
    return _idx_paths(name, Path(data_dir))


def load(name: str, data_dir: str | Path) -> Dataset:
    """x uint8 (N, 28, 28, 1), y int32 (N,), in file order."""
    return _load_idx(name, Path(data_dir))
