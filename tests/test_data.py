import numpy as np
import pytest

from gex_core.data.datasets import Dataset, load_digits, normalise_images
from gex_core.data.load import make_noisy_labels
from gex_core.data.noise import (
    DEFAULT_PAIRS,
    asymmetric_noise,
    human_noise,
    symmetric_noise,
)
from gex_core.workflow.artifacts import read_dataset, save_dataset


def reference_noise(labels, ratio, num_classes, seed):
    """The research code's procedure, written out step by step."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    cand = np.sort(rng.choice(n, int(n * ratio), replace=False))
    corrupted = labels.copy()
    corrupted[cand] = rng.choice(num_classes, len(cand))
    return corrupted, cand


def test_digits_split_is_fixed_stratified_and_normalised():
    data = load_digits()
    assert data.x_train.shape == (1437, 8, 8, 1)
    assert data.x_test.shape == (360, 8, 8, 1)
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() >= 0.0 and data.x_train.max() == 1.0
    train_share = np.bincount(data.y_train, minlength=10) / 1437
    test_share = np.bincount(data.y_test, minlength=10) / 360
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    again = load_digits()
    np.testing.assert_array_equal(data.y_train, again.y_train)


def test_symmetric_noise_matches_the_research_procedure():
    labels = np.random.default_rng(7).integers(0, 10, 1437).astype(np.int32)
    noisy = symmetric_noise(labels, 0.1, 10, seed=3)
    expected, candidates = reference_noise(labels, 0.1, 10, 3)
    np.testing.assert_array_equal(noisy.noisy, expected)
    assert len(candidates) == int(1437 * 0.1) == 143
    # only changed labels count as noisy, and every changed label is a candidate
    np.testing.assert_array_equal(noisy.mask, expected != labels)
    assert set(np.flatnonzero(noisy.mask)) <= set(candidates)
    assert noisy.mask.sum() < len(candidates)  # some redraws hit the old class
    np.testing.assert_array_equal(noisy.clean, labels)


def test_symmetric_noise_is_deterministic_per_seed():
    labels = np.arange(500, dtype=np.int32) % 10
    a = symmetric_noise(labels, 0.3, 10, seed=1)
    b = symmetric_noise(labels, 0.3, 10, seed=1)
    c = symmetric_noise(labels, 0.3, 10, seed=2)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert not np.array_equal(a.noisy, c.noisy)


def test_zero_noise_changes_nothing():
    labels = np.arange(50, dtype=np.int32) % 10
    noisy = symmetric_noise(labels, 0.0, 10, seed=0)
    assert not noisy.mask.any()


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_noise_ratio_out_of_range_is_refused(ratio):
    with pytest.raises(ValueError, match=r"noise ratio must lie in \[0, 1\)"):
        symmetric_noise(np.zeros(10, np.int32), ratio, 10, seed=0)


def test_unknown_noise_kind_is_named():
    with pytest.raises(ValueError, match="unknown noise kind 'pairflip'"):
        make_noisy_labels(np.zeros(10, np.int32), {"kind": "pairflip"}, 10, 0)


def test_asymmetric_noise_flips_exactly_the_configured_share_of_each_source():
    labels = np.repeat(
        np.arange(10, dtype=np.int32), [50, 40, 30, 20, 10, 9, 8, 7, 6, 5]
    )
    pairs = DEFAULT_PAIRS["cifar10"]  # 9->1, 2->0, 3->5, 5->3, 4->7
    out = asymmetric_noise(labels, 0.3, pairs, 10, seed=4)
    np.testing.assert_array_equal(out.clean, labels)
    np.testing.assert_array_equal(out.mask, out.noisy != labels)
    for source, target in pairs:
        members = labels == source
        flipped = members & out.mask
        # int(n_c * ratio) of the source class, all to the target, and from the
        # *clean* class even when the target is itself a source (3 <-> 5)
        assert flipped.sum() == int(members.sum() * 0.3)
        assert (out.noisy[flipped] == target).all()
    untouched = ~np.isin(labels, [s for s, _ in pairs])
    assert not out.mask[untouched].any()
    expected = sum(int((labels == s).sum() * 0.3) for s, _ in pairs)
    assert out.mask.sum() == expected
    again = asymmetric_noise(labels, 0.3, pairs, 10, seed=4)
    np.testing.assert_array_equal(out.noisy, again.noisy)
    other = asymmetric_noise(labels, 0.3, pairs, 10, seed=5)
    assert (other.noisy != out.noisy).any()


def test_asymmetric_noise_refuses_bad_pairs():
    labels = np.zeros(10, np.int32)
    with pytest.raises(ValueError, match="outside 0..9"):
        asymmetric_noise(labels, 0.1, [(3, 10)], 10, seed=0)
    with pytest.raises(ValueError, match="does not change the label"):
        asymmetric_noise(labels, 0.1, [(3, 3)], 10, seed=0)
    with pytest.raises(ValueError, match="flip a source class twice"):
        asymmetric_noise(labels, 0.1, [(3, 4), (3, 5)], 10, seed=0)


def test_human_noise_mask_comes_from_each_rows_own_fields():
    clean = np.array([0, 1, 2, 3, 4, 5], np.int32)
    noisy = np.array([0, 7, 2, 3, 9, 5], np.int32)
    out = human_noise(clean, clean.copy(), noisy, "file.csv")
    np.testing.assert_array_equal(out.noisy, noisy)
    np.testing.assert_array_equal(out.mask, [False, True, False, False, True, False])
    # a file in another order than the data set is caught, not silently misaligned
    with pytest.raises(ValueError, match=r"clean_label disagrees .* at 2 rows"):
        human_noise(clean, clean[[1, 0, 2, 3, 4, 5]], noisy, "file.csv")
    with pytest.raises(ValueError, match="5 rows for 6 training samples"):
        human_noise(clean, clean[:5], noisy[:5], "file.csv")


def test_human_noise_through_the_config_reads_the_label_file(tmp_path):
    clean = np.array([3, 1, 4, 1, 5], np.int32)
    (tmp_path / "c10n.csv").write_text(
        "clean_label,worse_label,aggre_label\n"
        + "".join(f"{c},{w},{c}\n" for c, w in zip(clean, [3, 2, 4, 8, 5], strict=True))
    )
    noise = {"kind": "human", "label_file": "c10n.csv", "label_set": "worse_label"}
    out = make_noisy_labels(clean, noise, 10, seed=0, data_dir=tmp_path)
    np.testing.assert_array_equal(out.noisy, [3, 2, 4, 8, 5])
    np.testing.assert_array_equal(out.mask, [False, True, False, True, False])
    aggre = make_noisy_labels(
        clean, {**noise, "label_set": "aggre_label"}, 10, 0, data_dir=tmp_path
    )
    assert not aggre.mask.any()


def test_uint8_images_are_stored_compact_and_normalised_on_read(tmp_path):
    x = np.array([0, 255, 128], np.uint8).reshape(3, 1, 1, 1)
    data = Dataset(x, np.array([0, 1, 1], np.int32), x, np.zeros(3, np.int32), 2)
    save_dataset(str(tmp_path / "d.npz"), data)
    with np.load(tmp_path / "d.npz") as raw:
        assert raw["x_train"].dtype == np.uint8
    back = read_dataset(str(tmp_path / "d.npz"))
    assert back.x_train.dtype == np.float32
    np.testing.assert_allclose(back.x_train.ravel(), [-2.0, 2.0, 0.0078431], atol=1e-6)
    floats = np.full((1, 2, 2, 1), 0.25, np.float32)
    assert normalise_images(floats) is floats


def test_dataset_file_round_trip_and_bad_file(tmp_path):
    data = load_digits()
    path = tmp_path / "data.npz"
    save_dataset(str(path), data)
    back = read_dataset(str(path))
    np.testing.assert_array_equal(back.x_train, data.x_train)
    np.testing.assert_array_equal(back.y_test, data.y_test)
    assert back.num_classes == 10

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.npz"):
        read_dataset(str(truncated))

    bad_labels = tmp_path / "bad.npz"
    np.savez(
        bad_labels,
        x_train=data.x_train,
        y_train=data.y_train + 5,
        x_test=data.x_test,
        y_test=data.y_test,
        num_classes=np.array(10),
    )
    with pytest.raises(ValueError, match=r"train labels outside 0..9"):
        read_dataset(str(bad_labels))


def test_class_names_and_files_round_trip_and_are_checked(tmp_path):
    data = load_digits()
    names = tuple(f"class {c}" for c in range(10))
    files = tuple(f"train/{y}/{i}.png" for i, y in enumerate(data.y_train))
    path = tmp_path / "named.npz"
    save_dataset(str(path), data._replace(class_names=names, train_files=files))
    back = read_dataset(str(path))
    assert back.class_names == names and back.train_files == files
    assert read_dataset(str(tmp_path / "named.npz")).x_train.dtype == np.float32
    save_dataset(str(path), data._replace(class_names=names[:9]))
    with pytest.raises(ValueError, match=r"class_names has shape \(9,\), expected"):
        read_dataset(str(path))
