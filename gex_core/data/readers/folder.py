"""A user's labelled images as folders: `<root>/train/<class>/*.png|jpg|jpeg`, and
`<root>/test/<class>/...` or, without a test folder, a fixed stratified fraction of
the training images held out.

Class names are the folder names, sorted; a label is its class's position. Every
problem (an empty class folder, an unreadable or truncated image, a size or channel
count that differs from the first image's, a test class with no training folder, a
single class) raises `DataFileError` naming the file or folder, so a workflow fails
before any training.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import numpy as np

from gex_core.data.datasets import Dataset, heldout_split
from gex_core.data.readers.common import DataFileError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow modes read as they are (1 or 3 channels) or converted without loss.
_GREY, _COLOUR = ("1", "L"), ("RGB", "P", "CMYK", "YCbCr")
_LAYOUT = (
    "Lay the images out as <data_dir>/train/<class>/<image>.png|jpg|jpeg (and "
    "optionally <data_dir>/test/<class>/...)."
)


def _fail(where: object, problem: str) -> NoReturn:
    raise DataFileError(f"image folder: {where} {problem}. {_LAYOUT}")


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def class_folders(split_dir: Path) -> dict[str, list[Path]]:
    """{class name: its image files, sorted} of one split's folder, classes sorted.
    Listing only: no image is opened."""
    classes: dict[str, list[Path]] = {}
    for entry in _visible(split_dir):
        if not entry.is_dir():
            _fail(entry, f"is a file directly in {split_dir}, outside any class folder")
        files = [p for p in _visible(entry) if p.is_file()]
        others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            _fail(others[0], "is not a PNG or JPEG image (.png, .jpg, .jpeg)")
        if not files:
            _fail(entry, "is an empty class folder (no .png, .jpg or .jpeg images)")
        classes[entry.name] = files
    return classes


def folder_layout(root: str | Path) -> tuple[dict[str, list[Path]], dict | None]:
    """(train classes, test classes or None without a test folder), each {class name:
    image files}, checked: a train folder with at least two non-empty class folders,
    and no test class without a training folder."""
    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        _fail(root, "has no train/ folder")
    train = class_folders(train_dir)
    if len(train) < 2:
        found = f"only {next(iter(train))!r}" if train else "none"
        _fail(train_dir, f"needs at least two class folders ({found})")
    test = class_folders(test_dir) if test_dir.is_dir() else None
    unknown = sorted(set(test or {}) - set(train))
    if unknown:
        _fail(
            test_dir / unknown[0],
            f"is a test class with no folder in {train_dir} (test classes: "
            f"{', '.join(unknown)})",
        )
    return train, test


def required_files(root: str | Path) -> list[Path]:
    """The class folders loading reads (adding, removing or moving an image changes
    their modification time), after checking the layout (`folder_layout`)."""
    root = Path(root)
    train, test = folder_layout(root)
    folders = [root / "train" / name for name in train]
    return folders + [root / "test" / name for name in test or {}]


def read_image(path: Path) -> np.ndarray:
    """One image as uint8 (H, W, C), C = 1 (greyscale) or 3 (colour). An alpha channel
    is dropped only when fully opaque."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decodes everything: a truncated file fails here
            mode = image.mode
            if mode in ("RGBA", "LA"):
                alpha = np.asarray(image.getchannel("A"))
                if alpha.min() < 255:
                    _fail(path, f"has a transparent alpha channel ({mode})")
                image = image.convert("L" if mode == "LA" else "RGB")
            elif mode in _GREY:
                image = image.convert("L")
            elif mode in _COLOUR:
                image = image.convert("RGB")
            else:
                _fail(path, f"has Pillow mode {mode}; use 8-bit greyscale or RGB")
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as err:
        if isinstance(err, DataFileError):
            raise
        _fail(path, f"is not a readable image ({err})")
    return pixels[..., None] if pixels.ndim == 2 else pixels


def read_images(
    files: list[Path], reference: tuple[Path, tuple[int, ...]] | None = None
) -> np.ndarray:
    """uint8 (N, H, W, C) of the files; each must have the shape of the reference
    (its file and (H, W, C); default: files[0] and its shape)."""
    images = [read_image(p) for p in files]
    reference, shape = reference or (files[0], images[0].shape)
    for path, image in zip(files, images, strict=True):
        if image.shape != shape:
            _fail(
                path,
                f"is {_describe(image.shape)} but {reference} is {_describe(shape)}; "
                "every image must have the same size and channel count",
            )
    return np.stack(images)


def _describe(shape: tuple[int, ...]) -> str:
    height, width, channels = shape
    return f"{width}x{height} with {channels} channel{'s' if channels > 1 else ''}"


def _flatten(classes: dict[str, list[Path]], names: list[str]):
    label = {name: i for i, name in enumerate(names)}
    files = [f for name in classes for f in classes[name]]
    labels = [label[name] for name in classes for _ in classes[name]]
    return files, np.asarray(labels, dtype=np.int32)


def load_folder(root: str | Path, test_fraction: float = 0.2) -> Dataset:
    """The image folder at root as a Dataset: uint8 (N, H, W, C) images in class then
    file-name order, labels int32 (N,), class_names the sorted training class folders,
    train_files the training images' paths relative to root (posix).

    Without a test folder a stratified `test_fraction` of the images is held out, the
    same split for every run (fixed seed 0, like the bundled digits)."""
    root = Path(root)
    train, test = folder_layout(root)
    names = list(train)
    files, labels = _flatten(train, names)
    x = read_images(files)
    if test is not None:
        test_files, y_test = _flatten(test, names)
        x_test = read_images(test_files, reference=(files[0], x.shape[1:]))
        kept = np.arange(len(files))
    else:
        kept, held = _split(labels, names, test_fraction, root)
        x_test, y_test = x[held], labels[held]
    return Dataset(
        x[kept],
        labels[kept],
        x_test,
        y_test,
        num_classes=len(names),
        class_names=tuple(names),
        train_files=tuple(files[i].relative_to(root).as_posix() for i in kept),
    )


def _split(labels: np.ndarray, names: list[str], fraction: float, root: Path):
    """The fixed stratified held-out split, with the class that prevents it named."""
    counts = np.bincount(labels, minlength=len(names))
    if counts.min() < 2:
        small = names[int(counts.argmin())]
        _fail(
            root / "train" / small,
            f"holds {counts.min()} image; with no test/ folder each class needs at "
            "least two to hold one out",
        )
    held_out = int(np.ceil(fraction * labels.size))
    if held_out < len(names) or labels.size - held_out < len(names):
        _fail(
            root / "train",
            f"holds {labels.size} images in {len(names)} classes: test_fraction "
            f"{fraction} holds out {held_out}, too few to stratify by class; add a "
            "test/ folder or change test_fraction",
        )
    return heldout_split(labels, fraction, seed=0)
