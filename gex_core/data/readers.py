"""Loaders for data sets users already have on disk, in their standard formats.

Nothing is downloaded. Each loader reads the official files from a folder `data_dir`,
checks their structure strictly and raises `DataFileError` with a message that names
the data set, the file, what was wrong and where the official files come from.

Images come back as uint8 (N, H, W, C) in file order (C=1 for MNIST-like, 3 otherwise),
labels as int32 (N,). No pickle is ever loaded: CIFAR is read from its binary version,
`.npz` files with `allow_pickle=False`.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple, NoReturn

import numpy as np

from gex_core.data.datasets import Dataset

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")


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


# --- CIFAR-10 and CIFAR-100: binary version -----------------------------------------

_PIXELS = 3 * 32 * 32


class _CifarLayout(NamedTuple):
    tarball: str
    folder: str  # the folder the tarball extracts to
    files: tuple[str, ...]  # training batches in order, then the test batch
    labels: tuple[tuple[str, int], ...]  # (name, classes) per label byte; last is used
    python: tuple[str, ...]  # names that mean the pickle version is here


_CIFAR = {
    "cifar10": _CifarLayout(
        "cifar-10-binary.tar.gz",
        "cifar-10-batches-bin",
        (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"),
        (("label", 10),),
        ("cifar-10-python.tar.gz", "cifar-10-batches-py", "data_batch_1"),
    ),
    "cifar100": _CifarLayout(
        "cifar-100-binary.tar.gz",
        "cifar-100-binary",
        ("train.bin", "test.bin"),
        (("coarse label", 20), ("fine label", 100)),
        ("cifar-100-python.tar.gz", "cifar-100-python"),
    ),
}


def _cifar_paths(name: str, data_dir: Path) -> list[Path]:
    """The extracted batch files if all are there, else the tarball."""
    layout = _CIFAR[name]
    missing = {
        folder: [f for f in layout.files if not (folder / f).is_file()]
        for folder in (data_dir / layout.folder, data_dir)
    }
    for folder, absent in missing.items():
        if not absent:
            return [folder / f for f in layout.files]
    if (data_dir / layout.tarball).is_file():
        return [data_dir / layout.tarball]
    _refuse_python_cifar(name, data_dir)
    for folder, absent in missing.items():
        if len(absent) < len(layout.files):  # a half-extracted folder
            problem = f"lacks {', '.join(absent)}, and no {layout.tarball} is there"
            _fail(name, folder, problem)
    _fail_missing(
        name,
        data_dir,
        layout.tarball,
        f"or its extracted folder {layout.folder}/ with {', '.join(layout.files)}",
    )


def _refuse_python_cifar(name: str, data_dir: Path) -> None:
    """Explain why the python (pickle) version found in data_dir is not read."""
    layout = _CIFAR[name]
    pickles = [p for p in layout.python if (data_dir / p).exists()]
    pickles += [data_dir.name] if data_dir.name in layout.python else []
    if pickles:
        _fail(
            name,
            data_dir,
            f"holds only the python version ({', '.join(pickles)}); the binary version "
            f"{layout.tarball} is needed because loading a pickle can run arbitrary code",
        )


def _is_unsafe_member(member_name: str) -> bool:
    path = PurePosixPath(member_name)
    return path.is_absolute() or ".." in path.parts


def _read_tar_members(name: str, tar_path: Path, wanted: list[str]) -> dict[str, bytes]:
    """The regular-file members named in `wanted`, read into memory; nothing extracted."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar:
                if _is_unsafe_member(member.name):
                    _fail(name, tar_path, f"has an unsafe member name {member.name!r}")
                member_name = member.name.removeprefix("./")
                if member_name in wanted and member.isreg():
                    found[member_name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        _fail(name, tar_path, f"is not a readable tar archive ({err})")
    missing = [m for m in wanted if m not in found]
    if missing:
        _fail(name, tar_path, f"lacks the member(s) {', '.join(missing)}")
    return found


def _cifar_blobs(name: str, paths: list[Path]) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) of each batch file, training batches first, in file order."""
    layout = _CIFAR[name]
    if paths[0].name != layout.tarball:
        yield from ((str(p), p.read_bytes()) for p in paths)
        return
    members = [f"{layout.folder}/{f}" for f in layout.files]
    blobs = _read_tar_members(name, paths[0], members)
    yield from ((f"{paths[0]} member {m}", blobs[m]) for m in members)


def _parse_cifar(name: str, where: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Records of label bytes + 3072 CHW pixels -> x (N, 32, 32, 3), last label (N,)."""
    labels = _CIFAR[name].labels
    record = len(labels) + _PIXELS
    if not data or len(data) % record:
        _fail(
            name,
            where,
            f"has {len(data)} bytes, not a positive multiple of the record size "
            f"{record} ({len(labels)} label byte(s) + {_PIXELS} pixel bytes); truncated?",
        )
    rows = np.frombuffer(data, np.uint8).reshape(-1, record)
    for column, (what, n) in enumerate(labels):
        _check_labels(name, where, rows[:, column], what, n)
    x = rows[:, len(labels) :].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), rows[:, len(labels) - 1].astype(np.int32)


def _load_cifar(name: str, data_dir: Path) -> Dataset:
    blobs = _cifar_blobs(name, _cifar_paths(name, data_dir))
    *train, (x_test, y_test) = [_parse_cifar(name, w, b) for w, b in blobs]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    num_classes = _CIFAR[name].labels[-1][1]
    return Dataset(x_train, y_train, x_test, y_test, num_classes=num_classes)


# --- SVHN cropped digits: MATLAB v5 files -------------------------------------------

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


# --- public image API ---------------------------------------------------------------

_FORMATS: dict[str, tuple[Callable, Callable]] = {
    "mnist": (_idx_paths, _load_idx),
    "fashion_mnist": (_idx_paths, _load_idx),
    "cifar10": (_cifar_paths, _load_cifar),
    "cifar100": (_cifar_paths, _load_cifar),
    "svhn": (_svhn_paths, _load_svhn),
}


def _format(name: str) -> tuple[Callable, Callable]:
    if name not in _FORMATS:
        raise ValueError(
            f"unknown data set {name!r}; known: {', '.join(IMAGE_DATASETS)}"
        )
    return _FORMATS[name]


def required_files(name: str, data_dir: str | Path) -> list[Path]:
    """The files `load_images(name, data_dir)` will read, checked for existence only.

    Cheap (nothing is opened), so a workflow can call it before any job runs. Raises
    DataFileError naming every missing file and the accepted alternatives (.gz or not;
    tarball or extracted folder), ValueError for a name not in IMAGE_DATASETS.
    """
    paths, _ = _format(name)
    return paths(name, Path(data_dir))


def load_images(name: str, data_dir: str | Path) -> Dataset:
    """Read one of IMAGE_DATASETS from its official files in `data_dir`.

    x_train, x_test: uint8 (N, H, W, C): (N, 28, 28, 1) for MNIST and Fashion-MNIST,
    (N, 32, 32, 3) for CIFAR-10, CIFAR-100 and SVHN. y_train, y_test: int32 (N,).
    Examples keep the order of the files (CIFAR-10: data_batch_1..5). CIFAR-100 uses
    the fine labels (num_classes 100); SVHN's label 10 becomes digit 0.
    """
    _, load = _format(name)
    return load(name, Path(data_dir))


# --- .npz files (user data sets, converted CIFAR-N labels) --------------------------

_Fail = Callable[[Path, str], NoReturn]


def _read_npz(path: Path, fail: _Fail, keys: Iterable[str] | None = None) -> dict:
    """The arrays of `keys` (default: all) present in the .npz at path; no pickles."""
    if not path.is_file():
        fail(path, "does not exist")
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


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_fail(path: Path, problem: str) -> NoReturn:
    raise DataFileError(
        f"user data set: {path} {problem}. Write the data set with np.savez(path, "
        "x_train=..., y_train=..., x_test=..., y_test=...): images (N, H, W[, C]) "
        "uint8 or float, labels (N,) integers >= 0."
    )


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
    arrays = _read_npz(path, _npz_fail, (*_NPZ_KEYS, "num_classes"))
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


# --- CIFAR-10N / CIFAR-100N human labels --------------------------------------------

_LABEL_SETS = {  # label set -> (column spellings accepted, number of classes)
    "aggre_label": (("aggre_label",), 10),
    "worse_label": (("worse_label",), 10),
    "random_label1": (("random_label1",), 10),
    "random_label2": (("random_label2",), 10),
    "random_label3": (("random_label3",), 10),
    "noisy_label": (("noisy_label", "noise_label"), 100),
    "noise_label": (("noise_label", "noisy_label"), 100),  # the TFDS spelling
}
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".npy")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _human_fail(path: Path, problem: str) -> NoReturn:
    raise DataFileError(
        f"CIFAR-N human labels: {path} {problem}. The official files are "
        "data/CIFAR-10_human.pt and data/CIFAR-100_human.pt of "
        "https://github.com/UCSC-REAL/cifar-10-100n, converted to .npz or .csv."
    )


def _refuse_pickle(path: Path) -> NoReturn:
    command = (
        'python -c "import torch, numpy as np; '
        f"d = torch.load('{path.name}', weights_only=False); "
        f"np.savez('{path.stem}.npz', **{{k: np.asarray(v) for k, v in d.items()}})\""
    )
    raise DataFileError(
        f"CIFAR-N human labels: {path} is a pickle-based file, which is never loaded "
        f"(unpickling can run code); convert the official file once to .npz with "
        f"{command} and pass the .npz."
    )


def _read_csv(path: Path) -> dict[str, list[str]]:
    """Column name -> its values as strings, from a CSV with a header row."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        _human_fail(path, "is empty; expected a header row of column names")
    header, body = [c.strip() for c in rows[0]], rows[1:]
    ragged = [i for i, row in enumerate(body, start=2) if len(row) != len(header)]
    if ragged:
        row = ragged[0]
        problem = f"row {row} has {len(body[row - 2])} field(s) but the header has {len(header)}"
        _human_fail(path, problem)
    return {c: [row[i] for row in body] for i, c in enumerate(header)}


def _read_human_table(path: Path) -> dict:
    """Column name -> values (strings for a CSV, an array per key for a .npz)."""
    if path.suffix in _PICKLE_SUFFIXES:
        _refuse_pickle(path)
    if path.suffix == ".npz":
        return _read_npz(path, _human_fail)
    if path.suffix != ".csv":
        _human_fail(path, "has an unsupported type; expected .csv or .npz")
    if not path.is_file():
        _human_fail(path, "does not exist")
    return _read_csv(path)


def _human_column(path: Path, column: str, values, n_classes: int) -> np.ndarray:
    """Labels 0..n_classes-1 as int32 from CSV strings or a 1-D integer array."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            _human_fail(
                path, f"has {column} {values.dtype} {values.shape}, expected 1-D int"
            )
        labels = values.astype(np.int64)
    else:
        bad = [i for i, v in enumerate(values) if not _INTEGER.fullmatch(v)]
        if bad:
            row = bad[0]
            _human_fail(
                path, f"row {row + 2} has {values[row]!r} as {column}, not an integer"
            )
        labels = np.array([int(v) for v in values], dtype=np.int64)
    wrong = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if wrong.size:
        i = int(wrong[0])
        _human_fail(
            path,
            f"has {column} {labels[i]} at example {i}, expected 0..{n_classes - 1}",
        )
    return labels.astype(np.int32)


def _label_column(path: Path, table: dict, label_set: str) -> str:
    """The file's column for label_set, after checking the set is a published one."""
    present = ", ".join(table) or "none"
    if label_set not in _LABEL_SETS:
        _human_fail(
            path,
            f"was asked for unknown label set {label_set!r} (known: "
            f"{', '.join(_LABEL_SETS)}); columns present: {present}",
        )
    spellings, _ = _LABEL_SETS[label_set]
    column = next((c for c in spellings if c in table), None)
    if column is None:
        _human_fail(path, f"has no {label_set} column; columns present: {present}")
    if "clean_label" not in table:
        _human_fail(path, f"has no clean_label column; columns present: {present}")
    return column


def read_human_labels(
    path: str | Path, label_set: str
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10N / CIFAR-100N human annotations: (clean, noisy), both int32 (N,).

    `path` is a CSV with a header row of column names or a `.npz` with one array per
    column; pickle-based files (.pt, .pkl, .npy) are refused. `clean` is the file's
    `clean_label` column, `noisy` its `label_set` column: CIFAR-10N aggre_label,
    worse_label, random_label1, random_label2, random_label3; CIFAR-100N noisy_label
    (alias noise_label). Labels must lie in 0..9 (CIFAR-10N) or 0..99 (CIFAR-100N).
    """
    path = Path(path)
    table = _read_human_table(path)
    column = _label_column(path, table, label_set)
    _, n_classes = _LABEL_SETS[label_set]
    clean = _human_column(path, "clean_label", table["clean_label"], n_classes)
    noisy = _human_column(path, column, table[column], n_classes)
    if clean.shape != noisy.shape:
        _human_fail(path, f"has {len(clean)} clean_label but {len(noisy)} {column}")
    return clean, noisy
