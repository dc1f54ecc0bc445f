"""Writers of tiny data-set files in the real formats (IDX, CIFAR binary, SVHN .mat)."""

import gzip
import io
import struct
import tarfile

import numpy as np
import scipy.io

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_BATCHES = (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """IDX: big-endian magic (0x801 labels, 0x803 images), the sizes, then the bytes."""
    magic = magic if magic is not None else (0x801 if array.ndim == 1 else 0x803)
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=5, n_test=3, gz=True, seed=0):
    """The four IDX files in `folder`; returns (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx_file(folder, stem, idx_bytes(array), gz)
    return arrays


def write_idx_file(folder, stem, data: bytes, gz=True):
    if gz:
        (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
    else:
        (folder / stem).write_bytes(data)


def cifar_bytes(images_hwc: np.ndarray, *label_columns) -> bytes:
    """CIFAR binary records: label byte(s), then the R, G and B planes, each row-major."""
    planes = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)
    labels = np.stack(label_columns, axis=1).astype(np.uint8)
    return np.concatenate([labels, planes], axis=1).tobytes()


def random_images(rng, n):
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def write_cifar10_folder(folder, per_batch=2, seed=0):
    """Six batch files; training batch b holds labels b-1 so that order shows."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for b, name in enumerate(CIFAR10_BATCHES):
        x = random_images(rng, per_batch)
        y = np.full(per_batch, b if b < 5 else 9, np.uint8)
        (folder / name).write_bytes(cifar_bytes(x, y))
        written[name] = (x, y)
    return written


def write_tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_svhn(folder, n_train=4, n_test=3, seed=0):
    """train/test_32x32.mat as distributed: X uint8 (32, 32, 3, N), y (N, 1), 10 = 0."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x = random_images(rng, n)
        digits = np.arange(n) % 10
        y = np.where(digits == 0, 10, digits).astype(np.float64)[:, None]
        scipy.io.savemat(folder / name, {"X": x.transpose(1, 2, 3, 0), "y": y})
        out[name] = (x, digits)
    return out


def write_cifar10_binary(folder, n_train=10, n_test=5, seed=0):
    """A tiny CIFAR-10 binary set: train split over the five batch files, labels
    cycling through all ten classes, each class a different mean colour (learnable)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [len(part) for part in np.array_split(np.arange(n_train), 5)] + [n_test]
    for b, (name, n) in enumerate(zip(CIFAR10_BATCHES, sizes, strict=True)):
        y = (np.arange(n) + b) % 10
        x = rng.integers(0, 128, (n, 32, 32, 3)) + 12 * y[:, None, None, None]
        (folder / name).write_bytes(cifar_bytes(x.astype(np.uint8), y))


def as_uint8(x):
    """Images in [0, 1] (the bundled digits) as the 8-bit pixels of an image file."""
    return np.round(x * 255).astype(np.uint8)


def write_image_folder(root, images, labels, class_names, split="train", suffix="png"):
    """Images (N, H, W, C) uint8, C = 1 or 3, as root/split/<class>/<i>.<suffix>;
    returns the files in the reader's order (class, then file name)."""
    from PIL import Image

    files = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / split / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:05d}.{suffix}"
        pixels = image[..., 0] if image.shape[-1] == 1 else image
        Image.fromarray(pixels).save(path)
        files.append(path)
    return sorted(files, key=lambda p: (p.parent.name, p.name))
