"""Loaders for on-disk data sets, tested on tiny files written in the real formats."""

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from gex_core.data.load import (
    HUMAN_LABELS,
    IMAGE_DATASETS,
    read_human_labels,
    reader_module,
    required_files,
)
from gex_core.data.load import load_dataset as load_images
from gex_core.data.readers.common import DataFileError
from gex_core.data.readers.npz import load_npz_dataset
from gex_core.workflow.fingerprint import module_closure
from tests.formats import (
    CIFAR10_BATCHES,
    IDX_NAMES,
    cifar_bytes,
    idx_bytes,
    random_images,
    write_cifar10_folder,
    write_idx_file,
    write_mnist,
    write_svhn,
    write_tar,
)

ROOT = Path(__file__).resolve().parents[1]
READERS_DIR = "gex_core/data/readers/"


def readers_in_closure(script, extra_modules=()):
    """The reader files (gex_core/data/readers/...) in the real code fingerprint
    closure of a job script."""
    closure = module_closure(ROOT / "workflow_scripts" / script, ROOT, extra_modules)
    names = (path.relative_to(ROOT).as_posix() for path in closure)
    return {name for name in names if name.startswith(READERS_DIR)}


# --- Which reader a stage's fingerprint holds ---------------------------------------


def test_the_dataset_job_holds_only_its_data_sets_reader():
    mnist = readers_in_closure("make_dataset.py", (reader_module("mnist"),))
    assert READERS_DIR + "idx.py" in mnist
    assert READERS_DIR + "svhn.py" not in mnist
    assert mnist == {
        READERS_DIR + name for name in ("__init__.py", "common.py", "idx.py")
    }
    assert reader_module("digits") is None
    assert readers_in_closure("make_dataset.py") == set()


@pytest.mark.parametrize("dataset", [*IMAGE_DATASETS, "npz"])
def test_each_data_set_fingerprints_its_own_reader_only(dataset):
    module = reader_module(dataset)
    own = READERS_DIR + module.rsplit(".", 1)[1] + ".py"
    held = readers_in_closure("make_dataset.py", (module,))
    assert held == {READERS_DIR + "__init__.py", READERS_DIR + "common.py", own}


def test_human_labels_reader_is_held_only_when_named():
    assert readers_in_closure("make_labels.py") == set()
    held = readers_in_closure("make_labels.py", (HUMAN_LABELS,))
    assert READERS_DIR + "cifar_n.py" in held
    assert READERS_DIR + "cifar.py" not in held


def test_unknown_data_set_has_no_reader():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        reader_module("imagenet")


# --- MNIST and Fashion-MNIST --------------------------------------------------------


def test_mnist_round_trips_pixels_labels_and_order(tmp_path):
    x_tr, y_tr, x_te, y_te = write_mnist(tmp_path)
    data = load_images("mnist", tmp_path)
    assert data.x_train.shape == (5, 28, 28, 1) and data.x_test.shape == (3, 28, 28, 1)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int32
    np.testing.assert_array_equal(data.x_train[..., 0], x_tr)
    np.testing.assert_array_equal(data.y_train, y_tr)
    np.testing.assert_array_equal(data.x_test[..., 0], x_te)
    np.testing.assert_array_equal(data.y_test, y_te)
    assert data.num_classes == 10
    assert required_files("mnist", tmp_path) == [
        tmp_path / f"{stem}.gz" for stem in IDX_NAMES
    ]


def test_fashion_mnist_reads_uncompressed_files_and_prefers_gz(tmp_path):
    _, y_raw, _, _ = write_mnist(tmp_path, gz=False, seed=1)
    assert required_files("fashion_mnist", tmp_path)[1].name == IDX_NAMES[1]
    np.testing.assert_array_equal(load_images("fashion_mnist", tmp_path).y_train, y_raw)
    y_gz = (y_raw + 1) % 10
    write_idx_file(tmp_path, IDX_NAMES[1], idx_bytes(y_gz))
    np.testing.assert_array_equal(load_images("fashion_mnist", tmp_path).y_train, y_gz)


def test_unknown_name_lists_known_data_sets(tmp_path):
    with pytest.raises(ValueError, match="known: mnist, fashion_mnist"):
        required_files("imagenet", tmp_path)
    assert "svhn" in IMAGE_DATASETS


def test_missing_idx_file_names_file_folder_url_and_md5(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataFileError) as err:
        required_files("mnist", tmp_path)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte[.gz]" in message and str(tmp_path) in message
    assert "https://yann.lecun.com/exdb/mnist/" in message
    assert "ec29112dd5afa0611ce80d1b7f02629c" in message
    with pytest.raises(DataFileError, match="not a directory"):
        required_files("fashion_mnist", tmp_path / "nowhere")


def corrupt_mnist(tmp_path, index, data: bytes, gz=True):
    write_mnist(tmp_path)
    write_idx_file(tmp_path, IDX_NAMES[index], data, gz)
    return lambda: load_images("mnist", tmp_path)


@pytest.mark.parametrize(
    ("index", "data", "message"),
    [
        (0, idx_bytes(np.zeros(5, np.uint8)), "magic number 2049, expected 2051"),
        (1, idx_bytes(np.zeros((5, 28, 28))), "magic number 2051, expected 2049"),
        (0, idx_bytes(np.zeros((5, 28, 28)))[:-10], "truncated: 3926 bytes, expected 3936"),
        (0, idx_bytes(np.zeros((5, 28, 28))) + b"\0", "trailing bytes: 3937 bytes, expected 3936"),
        (1, b"\0\0\x08", "truncated: 3 bytes, expected 8 for the header"),
        (2, idx_bytes(np.zeros((3, 27, 28))), r"items of shape \(27, 28\), expected \(28, 28\)"),
        (3, idx_bytes(np.zeros(4, np.uint8)), "holds 4 labels for the 3 images"),
        (3, idx_bytes(np.array([1, 10, 2], np.uint8)), "label 10 at record 1, expected 0..9"),
    ],
)  # fmt: skip
def test_bad_idx_files_are_reported(tmp_path, index, data, message):
    load = corrupt_mnist(tmp_path, index, data)
    with pytest.raises(DataFileError, match=message) as err:
        load()
    assert IDX_NAMES[index] in str(err.value) and "md5" in str(err.value)


def test_corrupt_gzip_is_reported(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataFileError, match="not a readable gzip file"):
        load_images("mnist", tmp_path)
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataFileError, match="not a readable gzip file"):
        load_images("mnist", tmp_path)


# --- CIFAR-10 and CIFAR-100 ---------------------------------------------------------


def test_cifar10_record_layout_becomes_hwc(tmp_path):
    """Byte 1 + c*1024 + h*32 + w of a record is pixel (h, w) of channel c."""
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10_folder(folder)
    record = np.zeros(3073, np.uint8)
    record[0] = 7
    record[1 + 2 * 1024 + 5 * 32 + 9] = 200  # blue, row 5, column 9
    record[1 + 0 * 1024 + 31 * 32 + 0] = 100  # red, row 31, column 0
    (folder / "test_batch.bin").write_bytes(record.tobytes() * 2)
    data = load_images("cifar10", tmp_path)
    assert data.x_test.shape == (2, 32, 32, 3) and data.x_test.dtype == np.uint8
    assert data.x_test[1, 5, 9, 2] == 200 and data.x_test[1, 31, 0, 0] == 100
    assert data.x_test.sum() == 2 * 300
    np.testing.assert_array_equal(data.y_test, [7, 7])


def test_cifar10_folder_keeps_batch_order(tmp_path):
    written = write_cifar10_folder(tmp_path / "cifar-10-batches-bin")
    data = load_images("cifar10", tmp_path)
    assert data.x_train.shape == (10, 32, 32, 3) and data.y_train.dtype == np.int32
    np.testing.assert_array_equal(data.y_train, np.repeat(np.arange(5), 2))
    x_expected = np.concatenate([written[n][0] for n in CIFAR10_BATCHES[:5]])
    np.testing.assert_array_equal(data.x_train, x_expected)
    np.testing.assert_array_equal(data.x_test, written["test_batch.bin"][0])
    assert data.num_classes == 10
    # data_dir may also be the extracted folder itself
    again = load_images("cifar10", tmp_path / "cifar-10-batches-bin")
    np.testing.assert_array_equal(again.x_train, data.x_train)


def test_cifar10_tarball_matches_the_folder(tmp_path):
    folder = tmp_path / "extracted" / "cifar-10-batches-bin"
    write_cifar10_folder(folder)
    members = {  # tar -C . writes names with a leading ./
        f"./cifar-10-batches-bin/{n}": (folder / n).read_bytes()
        for n in CIFAR10_BATCHES
    }
    members["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\n"
    write_tar(tmp_path / "cifar-10-binary.tar.gz", members)
    assert required_files("cifar10", tmp_path) == [tmp_path / "cifar-10-binary.tar.gz"]
    from_tar = load_images("cifar10", tmp_path)
    from_folder = load_images("cifar10", tmp_path / "extracted")
    for a, b in zip(from_tar, from_folder, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not (tmp_path / "cifar-10-batches-bin").exists()  # nothing extracted


def test_bad_cifar10_tarballs_are_reported(tmp_path):
    tar = tmp_path / "cifar-10-binary.tar.gz"
    write_tar(tar, {"cifar-10-batches-bin/data_batch_1.bin": b"\0" * 3073})
    with pytest.raises(DataFileError, match="lacks the member.*data_batch_2.bin"):
        load_images("cifar10", tmp_path)
    write_tar(tar, {"../evil.bin": b"x"})
    with pytest.raises(DataFileError, match="unsafe member name '../evil.bin'"):
        load_images("cifar10", tmp_path)
    tar.write_bytes(b"\x1f\x8b" + b"\0" * 50)
    with pytest.raises(DataFileError, match="not a readable tar archive.*c32a1d4ab5d0"):
        load_images("cifar10", tmp_path)


def test_truncated_cifar_batch_and_bad_label_are_reported(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10_folder(folder)
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        DataFileError,
        match="6046 bytes, not a positive multiple of the record size 3073",
    ):
        load_images("cifar10", tmp_path)
    record = np.zeros(3073, np.uint8)
    record[0] = 10
    path.write_bytes(record.tobytes())
    with pytest.raises(DataFileError, match="label 10 at record 0, expected 0..9"):
        load_images("cifar10", tmp_path)


def test_python_only_cifar_is_refused(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04")
    with pytest.raises(DataFileError, match="only the python version.*pickle") as err:
        required_files("cifar10", tmp_path)
    assert "cifar-10-binary.tar.gz" in str(err.value)
    with pytest.raises(DataFileError, match="only the python version"):
        required_files("cifar10", tmp_path / "cifar-10-batches-py")


def test_missing_cifar_names_tarball_folder_url_and_md5(tmp_path):
    with pytest.raises(DataFileError) as err:
        required_files("cifar100", tmp_path)
    message = str(err.value)
    for part in (
        "cifar-100-binary.tar.gz",
        "cifar-100-binary/",
        "train.bin",
        str(tmp_path),
    ):
        assert part in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "03b5dce01913d631647c71ecec9e9cb8" in message
    write_cifar10_folder(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin").unlink()
    with pytest.raises(DataFileError, match="lacks data_batch_4.bin"):
        required_files("cifar10", tmp_path)


def test_cifar100_uses_fine_labels_and_checks_coarse_ones(tmp_path):
    rng = np.random.default_rng(3)
    x_tr, x_te = random_images(rng, 3), random_images(rng, 2)
    train = cifar_bytes(x_tr, [19, 0, 5], [99, 42, 0])
    test = cifar_bytes(x_te, [1, 2], [3, 4])
    write_tar(
        tmp_path / "cifar-100-binary.tar.gz",
        {"cifar-100-binary/train.bin": train, "cifar-100-binary/test.bin": test},
    )
    data = load_images("cifar100", tmp_path)
    np.testing.assert_array_equal(data.y_train, [99, 42, 0])
    np.testing.assert_array_equal(data.y_test, [3, 4])
    np.testing.assert_array_equal(data.x_train, x_tr)
    assert data.num_classes == 100
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(cifar_bytes(x_tr, [0, 20, 0], [1, 1, 1]))
    (folder / "test.bin").write_bytes(test)
    with pytest.raises(
        DataFileError, match="coarse label 20 at record 1, expected 0..19"
    ):
        load_images("cifar100", tmp_path)
    (folder / "train.bin").write_bytes(cifar_bytes(x_tr, [0, 0, 0], [1, 100, 1]))
    with pytest.raises(
        DataFileError, match="fine label 100 at record 1, expected 0..99"
    ):
        load_images("cifar100", tmp_path)


# --- SVHN ---------------------------------------------------------------------------


def test_svhn_transposes_images_and_maps_10_to_0(tmp_path):
    written = write_svhn(tmp_path)
    data = load_images("svhn", tmp_path)
    x_tr, digits_tr = written["train_32x32.mat"]
    assert data.x_train.shape == (4, 32, 32, 3) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train, x_tr)
    np.testing.assert_array_equal(data.y_train, [0, 1, 2, 3])
    np.testing.assert_array_equal(data.y_test, written["test_32x32.mat"][1])
    assert data.y_train.dtype == np.int32 and data.num_classes == 10


def test_unreadable_or_wrong_svhn_files_are_reported(tmp_path):
    write_svhn(tmp_path)
    path = tmp_path / "train_32x32.mat"
    good = path.read_bytes()
    for broken in (good[:300], b"not a mat file " * 20):
        path.write_bytes(broken)
        with pytest.raises(
            DataFileError, match="not a readable MATLAB v5 .mat.*e26dedcc"
        ):
            load_images("svhn", tmp_path)
    x = np.zeros((32, 32, 3, 2), np.uint8)
    scipy.io.savemat(path, {"X": x, "y": np.array([[0.0], [3.0]])})
    with pytest.raises(DataFileError, match="label 0.0 at record 0, expected 1..10"):
        load_images("svhn", tmp_path)
    scipy.io.savemat(path, {"X": x, "y": np.array([[1.0], [2.0], [3.0]])})
    with pytest.raises(DataFileError, match=r"expected numbers \(2, 1\)"):
        load_images("svhn", tmp_path)
    scipy.io.savemat(path, {"X": x.astype(np.float64), "y": np.array([[1.0], [2.0]])})
    with pytest.raises(DataFileError, match=r"has X float64.*expected uint8"):
        load_images("svhn", tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataFileError, match="lacks test_32x32.mat.*ufldl"):
        required_files("svhn", tmp_path)


# --- user .npz data sets ------------------------------------------------------------


def test_npz_dataset_adds_channel_and_infers_classes(tmp_path):
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, (6, 4, 5), dtype=np.uint8)
    y_tr = np.array([0, 1, 2, 0, 1, 2], np.int64)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_tr[:2], y_test=np.uint8([4, 0]))
    data = load_npz_dataset(path)
    assert data.x_train.shape == (6, 4, 5, 1) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train[..., 0], x_tr)
    assert data.y_train.dtype == np.int32 and data.y_test.dtype == np.int32
    assert data.num_classes == 5
    x = rng.random((3, 4, 5, 2))
    np.savez(
        path, x_train=x, y_train=[0, 1, 0], x_test=x, y_test=[1, 1, 0], num_classes=7
    )
    data = load_npz_dataset(str(path))
    assert data.x_train.dtype == np.float32 and data.num_classes == 7
    np.testing.assert_allclose(data.x_test, x.astype(np.float32))


def good_npz():
    x = np.zeros((3, 4, 4, 1), np.uint8)
    return {"x_train": x, "y_train": np.arange(3), "x_test": x, "y_test": np.arange(3)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y_test": None}, "lacks the array.*y_test"),
        ({"y_train": np.arange(4)}, r"y_train has shape \(4,\), expected \(3,\)"),
        ({"y_train": np.array([0.0, 1.0, 2.0])}, "y_train has dtype float64, expected an integer"),
        ({"y_test": np.array([0, -1, 2])}, "y_test holds labels outside"),
        ({"x_train": np.zeros((3, 16))}, r"x_train has shape \(3, 16\)"),
        ({"x_train": np.full((3, 4, 4), np.nan)}, "x_train holds values that are not finite"),
        ({"x_train": np.zeros((3, 4, 4, 1), np.int16)}, "x_train has dtype int16"),
        ({"x_test": np.zeros((3, 5, 4, 1), np.uint8)}, r"differ in \(H, W, C\) or dtype"),
        ({"num_classes": np.array(2)}, "num_classes is 2 but a label is 2"),
        ({"x_test": np.full((3, 4, 4, 1), 1e300)}, "x_test holds values that are not finite in float32"),
        ({"x_test": np.array([None, 1, 2], dtype=object)}, "'x_test' holds Python objects; pickled objects are not loaded"),
    ],
)  # fmt: skip
def test_bad_npz_datasets_are_reported(tmp_path, change, message):
    arrays = good_npz() | change
    path = tmp_path / "mine.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(DataFileError, match=message) as err:
        load_npz_dataset(path)
    assert str(path) in str(err.value) and "np.savez" in str(err.value)


def test_npz_that_is_not_an_archive_is_reported(tmp_path):
    path = tmp_path / "mine.npy"
    np.save(path, {"x_train": 1}, allow_pickle=True)
    with pytest.raises(DataFileError, match="pickled objects are not loaded"):
        load_npz_dataset(path)
    np.save(path, np.zeros(3))
    with pytest.raises(DataFileError, match="single .npy array"):
        load_npz_dataset(path)
    with pytest.raises(DataFileError, match="does not exist"):
        load_npz_dataset(tmp_path / "absent.npz")


# --- CIFAR-N human labels -----------------------------------------------------------


def test_human_labels_from_csv_and_npz(tmp_path):
    csv_path = tmp_path / "cifar10n.csv"
    csv_path.write_text(
        "clean_label,aggre_label,worse_label\n3,3,5\n1,2,2\n9,9,0\n", encoding="utf-8"
    )
    clean, noisy = read_human_labels(csv_path, "worse_label")
    np.testing.assert_array_equal(clean, [3, 1, 9])
    np.testing.assert_array_equal(noisy, [5, 2, 0])
    assert clean.dtype == np.int32 and noisy.dtype == np.int32
    npz_path = tmp_path / "CIFAR-100_human.npz"
    np.savez(npz_path, clean_label=np.array([50, 99]), noisy_label=np.array([51, 0]))
    for label_set in ("noisy_label", "noise_label"):
        clean, noisy = read_human_labels(npz_path, label_set)
        np.testing.assert_array_equal(clean, [50, 99])
        np.testing.assert_array_equal(noisy, [51, 0])
        assert noisy.dtype == np.int32


def test_bad_human_label_files_are_reported(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("clean_label,aggre_label\n1,2\n3,x\n", encoding="utf-8")
    with pytest.raises(
        DataFileError, match="row 3 has 'x' as aggre_label, not an integer"
    ):
        read_human_labels(path, "aggre_label")
    with pytest.raises(
        DataFileError,
        match="no random_label1 column; columns present: clean_label, aggre_label",
    ):
        read_human_labels(path, "random_label1")
    with pytest.raises(
        DataFileError, match="unknown label set 'worst'.*columns present"
    ):
        read_human_labels(path, "worst")
    path.write_text("clean_label,aggre_label\n1,2\n3\n", encoding="utf-8")
    with pytest.raises(
        DataFileError, match="row 3 has 1 field.s. but the header has 2"
    ):
        read_human_labels(path, "aggre_label")
    path.write_text("clean_label,aggre_label\n1,2\n3,10\n", encoding="utf-8")
    with pytest.raises(
        DataFileError, match="aggre_label 10 at example 1, expected 0..9"
    ):
        read_human_labels(path, "aggre_label")
    npz = tmp_path / "labels.npz"
    np.savez(npz, clean_label=np.array([1.0, 2.0]), aggre_label=np.array([1, 2]))
    with pytest.raises(DataFileError, match="clean_label float64"):
        read_human_labels(npz, "aggre_label")


def test_pickled_human_labels_are_refused_with_a_conversion_recipe(tmp_path):
    path = tmp_path / "CIFAR-10_human.pt"
    path.write_bytes(b"\x80\x04 pretend this is a torch pickle")
    with pytest.raises(DataFileError) as err:
        read_human_labels(path, "aggre_label")
    message = str(err.value)
    assert "never loaded" in message
    assert re.search(
        r"torch\.load\('CIFAR-10_human\.pt'.*np\.savez\('CIFAR-10_human\.npz'", message
    )
    with pytest.raises(DataFileError, match="pickle-based"):
        read_human_labels(tmp_path / "labels.npy", "aggre_label")


def test_a_folder_given_as_data_file_is_named_as_a_folder(tmp_path):
    from gex_core.data.load import npz_file

    with pytest.raises(DataFileError, match=f"{tmp_path} is a directory, not a file"):
        npz_file(tmp_path)
    with pytest.raises(DataFileError, match="absent.npz does not exist"):
        npz_file(tmp_path / "absent.npz")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y_train": np.zeros(3, int)}, r"training labels hold 1 class\(es\) \(\[0\]\)"),
        ({"y_test": np.array([0, 1, 7])}, r"test labels \[7\] never occur in the training"),
        ({"y_train": np.array([0, 1, 2**31 - 1])}, "labels go up to 2147483647 .* only 3 of those classes occur"),
    ],
)  # fmt: skip
def test_labels_that_cannot_be_learned_are_named_before_training(
    tmp_path, change, message
):
    from gex_core.data.datasets import LabelError
    from gex_core.data.load import load_dataset

    path = tmp_path / "mine.npz"
    np.savez(path, **(good_npz() | change))
    with pytest.raises(LabelError, match=message) as err:
        load_dataset("npz", data_file=path)
    assert str(err.value).startswith(str(path))
