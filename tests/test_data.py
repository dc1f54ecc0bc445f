import numpy as np
import pytest

from gex_core.data import (
    load_digits,
    make_noisy_labels,
    read_dataset,
    save_dataset,
    symmetric_noise,
)


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
        make_noisy_labels(np.zeros(10, np.int32), "pairflip", 0.1, 10, 0)


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
