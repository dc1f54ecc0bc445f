"""CIFAR-10 and CIFAR-100 from their binary version (tarball or extracted folder),
read in memory; the Python (pickle) version is refused."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from gex_core.data.datasets import Dataset
from gex_core.data.readers.common import (
    _check_labels,
    _fail,
    _fail_missing,
)

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


def required_files(name: str, data_dir: str | Path) -> list[Path]:
    """The files `load` will read, checked for existence only (nothing is opened)."""
    return _cifar_paths(name, Path(data_dir))


def load(name: str, data_dir: str | Path) -> Dataset:
    """x uint8 (N, 32, 32, 3), y int32 (N,): data_batch_1..5 in order for CIFAR-10,
    the fine labels (100 classes) for CIFAR-100."""
    return _load_cifar(name, Path(data_dir))
