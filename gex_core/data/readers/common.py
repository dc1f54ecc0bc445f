"""What every reader shares: the error type, where the official files come from, and
the checks and messages of a missing or malformed file.

Nothing is downloaded. Readers check their files strictly and raise `DataFileError`
with a message that names the data set, the file, what was wrong and where the official
files come from. Images come back as uint8 (N, H, W, C) in file order, labels as int32
(N,). No pickle is ever loaded.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple, NoReturn

import numpy as np


class DataFileError(ValueError):
    """A data file is missing, unreadable or not in the expected format."""


# --- where the official files come from ---------------------------------------------


class _Source(NamedTuple):
    what: str  # the files to get, as a user would look for them
    url: str
    md5: dict[str, str]  # official download name -> md5


_SOURCES = {
    "mnist": _Source(
        "the four MNIST IDX files",
        "https://yann.lecun.com/exdb/mnist/ "
        "(mirror https://ossci-datasets.s3.amazonaws.com/mnist/)",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion_mnist": _Source(
        "the four Fashion-MNIST IDX files",
        "https://github.com/zalandoresearch/fashion-mnist",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": _Source(
        "the CIFAR-10 binary version",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
    ),
    "cifar100": _Source(
        "the CIFAR-100 binary version",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        {"cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8"},
    ),
    "svhn": _Source(
        "the SVHN cropped digits (format 2)",
        "http://ufldl.stanford.edu/housenumbers/",
        {
            "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
            "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
        },
    ),
}


def _where_to_get(name: str, where: object) -> str:
    """'Get ... from URL (md5 ...).': the md5 of the file `where` names, else all."""
    source = _SOURCES[name]
    own = Path(str(where)).name
    files = [f for f in (own, f"{own}.gz") if f in source.md5] or list(source.md5)
    md5 = ", ".join(f"{f} {source.md5[f]}" for f in files)
    return f"Get {source.what} from {source.url} (md5 {md5})."


def _fail(name: str, where: object, problem: str) -> NoReturn:
    """Raise the DataFileError every image loader uses: '<name>: <where> <problem>.'"""
    problem = " ".join(problem.split())  # library errors may span lines
    raise DataFileError(f"{name}: {where} {problem}. {_where_to_get(name, where)}")


def _fail_missing(
    name: str, data_dir: Path, wanted: str, alternatives: str
) -> NoReturn:
    if not data_dir.is_dir():
        _fail(name, data_dir, f"is not a directory; it should hold {wanted}")
    _fail(name, data_dir, f"lacks {wanted} ({alternatives})")


def _check_labels(
    name: str, where: object, labels: np.ndarray, what: str, n: int
) -> None:
    """Labels (unsigned) must lie below n; name the first bad record otherwise."""
    bad = np.flatnonzero(labels >= n)
    if bad.size:
        i = int(bad[0])
        _fail(name, where, f"has {what} {labels[i]} at record {i}, expected 0..{n - 1}")


# --- .npz files (user data sets, converted CIFAR-N labels) --------------------------

_Fail = Callable[[Path, str], NoReturn]


def check_file(path: Path, fail: _Fail) -> None:
    """fail(path, why) unless path is a regular file this process can read."""
    if path.is_dir():
        fail(path, "is a directory, not a file")
    if not path.exists():
        fail(path, "does not exist")
    if not path.is_file():
        fail(path, "is not a regular file")
    if not os.access(path, os.R_OK):
        fail(path, "is not readable (permission denied)")


def read_npz_arrays(path: Path, fail: _Fail, keys: Iterable[str] | None = None) -> dict:
    """The arrays of `keys` (default: all) present in the .npz at path; no pickles."""
    check_file(path, fail)
    try:
        data = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as err:
        _npz_unreadable(path, fail, "", err)
    if not isinstance(data, np.lib.npyio.NpzFile):
        fail(path, "is a single .npy array, not an .npz archive of named arrays")
    with data:
        wanted = data.files if keys is None else [k for k in keys if k in data.files]
        return {k: _npz_member(path, fail, data, k) for k in wanted}


def _npz_member(path: Path, fail: _Fail, data, key: str) -> np.ndarray:
    try:
        return data[key]
    except _NPZ_ERRORS as err:
        _npz_unreadable(path, fail, f"array {key!r} ", err)


_NPZ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _npz_unreadable(path: Path, fail: _Fail, what: str, err: Exception) -> NoReturn:
    """Report a numpy load error; `allow_pickle` in it means an object array."""
    if isinstance(err, ValueError) and "allow_pickle" in str(err):
        fail(
            path,
            f"{what}holds Python objects; pickled objects are not loaded (they can "
            "run code), store plain numeric arrays",
        )
    fail(path, f"{what}is not readable as .npz ({err})")
