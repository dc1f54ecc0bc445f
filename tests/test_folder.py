"""dataset: folder, images in class folders: what it reads, and every bad input it
names (the file or folder) before any training."""

import numpy as np
import pytest
from PIL import Image

from gex_core.data.load import folder_files, load_dataset
from gex_core.data.readers.common import DataFileError
from tests.formats import write_image_folder

NAMES = ("cat", "dog", "emu")


def grey(n, seed=0, size=(6, 5)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *size, 1), dtype=np.uint8)


def balanced(n, classes=3):
    return np.arange(n) % classes


def test_train_and_test_folders_round_trip(tmp_path):
    x, y = grey(9), balanced(9)
    x_te, y_te = grey(3, seed=1), np.array([2, 0, 1])
    files = write_image_folder(tmp_path, x, y, NAMES)
    write_image_folder(tmp_path, x_te, y_te, NAMES, split="test")
    data = load_dataset("folder", tmp_path)
    assert data.class_names == NAMES and data.num_classes == 3
    # class then file-name order: the rows follow the sorted files
    order = np.lexsort((np.arange(9), y))
    np.testing.assert_array_equal(data.x_train, x[order])
    np.testing.assert_array_equal(data.y_train, y[order])
    assert data.train_files == tuple(f.relative_to(tmp_path).as_posix() for f in files)
    assert data.train_files[0] == "train/cat/00000.png"
    test_order = np.lexsort((np.arange(3), y_te))
    np.testing.assert_array_equal(data.x_test, x_te[test_order])
    assert data.x_train.dtype == np.uint8 and data.x_train.shape[1:] == (6, 5, 1)


def test_rgb_jpeg_and_a_fixed_stratified_split_without_test_folder(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    write_image_folder(tmp_path, x, balanced(20, 2), NAMES[:2], suffix="jpg")
    first = load_dataset("folder", tmp_path, test_fraction=0.2)
    again = load_dataset("folder", tmp_path, test_fraction=0.2)
    assert first.x_train.shape == (16, 4, 4, 3) and first.x_test.shape == (4, 4, 4, 3)
    assert np.bincount(first.y_test).tolist() == [2, 2]
    np.testing.assert_array_equal(first.x_train, again.x_train)
    assert len(first.train_files) == 16
    assert not set(first.train_files) & {f"train/{n}" for n in NAMES}


def bad(tmp_path, message):
    with pytest.raises(DataFileError, match=message) as err:
        load_dataset("folder", tmp_path)
    assert "train/<class>" in str(err.value)  # says how to lay the folder out
    return str(err.value)


def test_an_empty_class_folder_is_named(tmp_path):
    write_image_folder(tmp_path, grey(4), balanced(4, 2), NAMES)
    (tmp_path / "train" / "emu").mkdir()
    assert f"{tmp_path / 'train' / 'emu'} is an empty class folder" in bad(
        tmp_path, "empty class folder"
    )
    with pytest.raises(DataFileError, match="empty class folder"):
        folder_files(tmp_path)  # the layout alone fails, nothing opened


def test_a_truncated_image_is_named(tmp_path):
    files = write_image_folder(tmp_path, grey(4, size=(32, 32)), balanced(4, 2), NAMES)
    files[1].write_bytes(files[1].read_bytes()[:-40])
    assert f"{files[1]} is not a readable image" in bad(tmp_path, "readable")


def test_a_file_that_is_not_an_image_is_named(tmp_path):
    files = write_image_folder(tmp_path, grey(4), balanced(4, 2), NAMES)
    files[2].write_bytes(b"not a png at all")
    assert f"{files[2]} is not a readable image" in bad(tmp_path, "readable")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("hello")
    assert "notes.txt is not a PNG or JPEG" in bad(tmp_path, "not a PNG")


def test_mixed_sizes_and_channel_counts_name_the_odd_file(tmp_path):
    files = write_image_folder(tmp_path, grey(4), balanced(4, 2), NAMES)
    Image.fromarray(np.zeros((7, 5), np.uint8)).save(files[3])
    message = bad(tmp_path, "same size")
    assert f"{files[3]} is 5x7 with 1 channel but {files[0]} is 5x6" in message
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(files[3])
    assert f"{files[3]} is 5x6 with 3 channels" in bad(tmp_path, "channel count")


def test_a_test_image_of_another_size_is_named(tmp_path):
    files = write_image_folder(tmp_path, grey(4), balanced(4, 2), NAMES)
    test_files = write_image_folder(
        tmp_path, grey(2, size=(3, 3)), [0, 1], NAMES, split="test"
    )
    assert f"{test_files[0]} is 3x3 with 1 channel but {files[0]}" in bad(
        tmp_path, "same size"
    )


def test_a_test_class_missing_from_train_is_named(tmp_path):
    write_image_folder(tmp_path, grey(4), balanced(4, 2), NAMES)
    write_image_folder(tmp_path, grey(3), [0, 1, 2], NAMES, split="test")
    assert f"{tmp_path / 'test' / 'emu'} is a test class with no folder" in bad(
        tmp_path, "test class"
    )


def test_a_single_class_is_refused(tmp_path):
    write_image_folder(tmp_path, grey(3), [0, 0, 0], NAMES)
    assert "needs at least two class folders (only 'cat')" in bad(tmp_path, "two")


def test_missing_train_folder_and_loose_files_are_named(tmp_path):
    assert f"{tmp_path} has no train/ folder" in bad(tmp_path, "no train")
    write_image_folder(tmp_path, grey(4), balanced(4, 2), NAMES)
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / "train" / "loose.png")
    assert "loose.png is a file directly in" in bad(tmp_path, "outside any class")


def test_transparency_is_refused_but_an_opaque_alpha_is_dropped(tmp_path):
    files = write_image_folder(tmp_path, grey(4), balanced(4, 2), NAMES)
    rgba = np.full((6, 5, 2), 255, np.uint8)
    rgba[..., 0] = 7
    Image.fromarray(rgba, mode="LA").save(files[0])
    data = load_dataset("folder", tmp_path, test_fraction=0.5)
    assert 7 in data.x_train[:, 0, 0, 0].tolist() + data.x_test[:, 0, 0, 0].tolist()
    rgba[0, 0, 1] = 0
    Image.fromarray(rgba, mode="LA").save(files[0])
    assert f"{files[0]} has a transparent alpha channel" in bad(tmp_path, "alpha")


def test_a_class_too_small_to_hold_one_out_is_named(tmp_path):
    write_image_folder(tmp_path, grey(5), [0, 0, 1, 1, 2], NAMES)
    assert f"{tmp_path / 'train' / 'emu'} holds 1 image" in bad(tmp_path, "two")
