"""CIFAR-10N / CIFAR-100N human labels from a CSV or .npz (never a pickle)."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NoReturn

import numpy as np

from gex_core.data.readers.common import (
    DataFileError,
    read_npz_arrays,
)

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
        return read_npz_arrays(path, _human_fail)
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
