"""Atomic file output: write to a temporary name in the target folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# write failures that are about the place, not the data: named with the path
PLACE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


class ArtifactWriteError(OSError):
    """An artifact could not be written where it belongs (disk full, no permission)."""


@functools.cache
def file_mode() -> int:
    """0o666 less the process's umask: what open() gives a new file (mkstemp's
    temporary files are 0o600, which would hide results from a shared group)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success make it readable as a new
    file would be (the umask), flush it to disk, rename it into place and flush the
    folder, so a crash leaves the old file or the new one, never a torn one.

    On any exception the temporary file is removed, so no half-written artifact is left;
    a full disk or a missing permission is an ArtifactWriteError naming the path.
    """
    target = Path(path)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.stem}.", suffix=target.suffix + ".tmp"
        )
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        _fsync(tmp_path)
        os.replace(tmp_path, target)
        _fsync(target.parent)
    except OSError as err:
        if err.errno not in PLACE_ERRORS or isinstance(err, ArtifactWriteError):
            raise
        raise ArtifactWriteError(
            err.errno,
            f"cannot write {target}: {PLACE_ERRORS[err.errno]} (nothing was left "
            "half-written; free space or fix the permissions, then rerun)",
        ) from err
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content; names the file when it is missing or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def read_npz(
    path: str | os.PathLike,
    keys: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """Load named arrays (and those of `optional` the file holds) from an .npz without
    pickle; name the file on any problem."""
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            arrays = {k: data[k] for k in (*keys, *optional) if k in files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}; it holds {sorted(files)}")
    return arrays


def npz_memmap(path: str | os.PathLike, key: str) -> np.ndarray:
    """A read-only memory map of one array of an uncompressed .npz (np.savez, as
    `write_npz`): indexing reads only the rows asked for, so a job that needs a slice
    of a large array never holds all of it."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{key}.npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"array {key!r} is compressed (np.savez_compressed)")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(member)
                header_bytes = member.tell()
        with open(path, "rb") as raw:
            # the local file header: 30 bytes, then the name and an extra field whose
            # lengths it states (they may differ from the central directory's)
            raw.seek(info.header_offset)
            local = raw.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
    except KeyError as err:
        raise ValueError(f"{path}: holds no array {key!r}") from err
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: cannot map array {key!r} ({err})") from err
    if dtype.hasobject:
        raise ValueError(f"{path}: array {key!r} holds Python objects; not loaded")
    offset = info.header_offset + 30 + name_len + extra_len + header_bytes
    if 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(
        path, dtype, "r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


def write_table(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as a tab-separated file without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def save_figure(path: str | os.PathLike, fig, trim: bool = True) -> None:
    """Save a matplotlib figure byte-stably (no software/date metadata) and close it.

    trim: crop to the drawn artists (legends placed outside the axes included), which
    draws the figure twice; False saves the figure as laid out, for figures whose
    layout keeps everything inside (the per-seed figures, made by the hundred)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(
            tmp,
            format=Path(path).suffix.lstrip("."),
            dpi=120,
            bbox_inches="tight" if trim else None,
            metadata={"Software": None},
        )
    plt.close(fig)
