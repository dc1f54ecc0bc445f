import math

import numpy as np
import pytest

from gex_core.evaluation.prune import PRUNE_ORDERS, kept_indices, num_pruned
from gex_core.evaluation.relabel import (
    flag_above_otsu,
    flag_quality,
    hard_targets,
    otsu_threshold,
    predicted_targets,
    soft_targets,
)


def brute_force_otsu(scores: np.ndarray, bins: int) -> float:
    """Otsu by trying every cut between consecutive bin centers, each class's size and
    mean summed directly (exactly rounded fsum, no cumulative sums)."""
    counts, edges = np.histogram(scores, bins=bins, range=(scores.min(), scores.max()))
    centers = (edges[:-1] + edges[1:]) / 2
    variances = []
    for cut in range(1, bins):
        w1, w2 = int(counts[:cut].sum()), int(counts[cut:].sum())
        m1 = math.fsum(counts[:cut] * centers[:cut]) / w1
        m2 = math.fsum(counts[cut:] * centers[cut:]) / w2
        variances.append(w1 * w2 * (m1 - m2) ** 2)
    # Empty bins make several cuts give the same classes; the first of them wins.
    best = max(variances)
    first = next(i for i, v in enumerate(variances) if v >= best * (1 - 1e-12))
    return float(centers[first])


def bimodal(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """800 scores around 0 and 200 around 8 (spread 0.5) and the upper-mode mask."""
    upper = np.arange(1000) % 5 == 0
    return rng.normal(scale=0.5, size=1000) + 8.0 * upper, upper


@pytest.mark.parametrize(
    "case, bins",
    [("bimodal", 256), ("normal", 256), ("exponential", 64), ("few", 256), ("f32", 7)],
)
def test_otsu_matches_brute_force(case, bins):
    rng = np.random.default_rng(1)
    scores = {
        "bimodal": bimodal(rng)[0],
        "normal": rng.normal(size=500),
        "exponential": rng.exponential(size=300),
        "few": rng.uniform(size=6),  # mostly empty bins: many tied cuts
        "f32": rng.normal(size=200).astype(np.float32),
    }[case]
    assert otsu_threshold(scores, bins) == brute_force_otsu(scores, bins)


def test_otsu_separates_two_modes():
    scores, upper = bimodal(np.random.default_rng(2))
    flagged = flag_above_otsu(scores)
    assert flagged[upper].all()
    # Every cut inside the empty gap splits the samples alike, so the first wins: the
    # threshold is the center of the lower mode's last bin, and only lower samples in
    # that bin's upper half are flagged (as with scikit-image and `>`).
    half_bin = (scores.max() - scores.min()) / 256 / 2
    assert abs(otsu_threshold(scores) - scores[~upper].max()) <= half_bin
    assert 0 < flagged[~upper].sum() <= 3


def test_otsu_of_constant_scores_flags_nothing():
    for scores in (np.full(5, 0.3), np.array([2.0])):
        assert otsu_threshold(scores) == scores[0]
        assert not flag_above_otsu(scores).any()


def test_otsu_refuses_non_finite_scores():
    with pytest.raises(ValueError, match=r"2 of 4 scores are not finite .*index 1"):
        otsu_threshold(np.array([0.1, np.nan, 0.3, np.inf]))


def random_probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    logits = rng.normal(size=(n, c))
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def test_soft_target_cross_entropy_is_loss_of_not_the_label():
    rng = np.random.default_rng(3)
    probs = random_probs(rng, 40, 10)
    assert probs.min() > 1e-4  # clipping must not touch these rows
    labels = rng.integers(10, size=40)
    targets = soft_targets(probs, labels, np.ones(40, bool), normalise=False)
    cross_entropy = np.sum(targets * -np.log(probs), axis=1)
    p_label = probs[np.arange(40), labels]
    np.testing.assert_allclose(cross_entropy, -np.log(1 - p_label), rtol=1e-5)


def test_normalised_soft_targets_are_distributions_off_the_label():
    rng = np.random.default_rng(4)
    probs = random_probs(rng, 40, 10)
    labels = rng.integers(10, size=40)
    targets = soft_targets(probs, labels, np.ones(40, bool))
    assert targets.dtype == np.float32
    assert (targets >= 0).all()
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(targets[np.arange(40), labels], 0.0)
    others = probs.copy()
    others[np.arange(40), labels] = -np.inf
    np.testing.assert_array_equal(targets.argmax(axis=1), others.argmax(axis=1))


def test_soft_targets_stay_finite_on_extreme_rows():
    tiny = 1e-9
    probs = np.array(
        [
            [1 - tiny, tiny / 3, tiny / 3, tiny / 3],  # confident in the given label
            [tiny / 3, tiny / 3, 1 - tiny, tiny / 3],  # confident in another class
            [0.5, 0.5, 0.0, 0.0],  # exact zeros
        ]
    )
    labels = np.array([0, 0, 0])
    for normalise in (False, True):
        targets = soft_targets(probs, labels, np.ones(3, bool), normalise=normalise)
        assert np.isfinite(targets).all() and (targets >= 0).all()
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    assert targets[1].argmax() == 2 and targets[2].argmax() == 1


def test_unflagged_samples_keep_one_hot_labels():
    rng = np.random.default_rng(5)
    probs = random_probs(rng, 6, 3)
    labels = np.array([0, 1, 2, 0, 1, 2])
    flagged = np.array([1, 0, 1, 0, 0, 1], bool)
    targets = soft_targets(probs, labels, flagged)
    np.testing.assert_array_equal(targets[~flagged], np.eye(3)[labels[~flagged]])
    assert (targets[flagged].max(axis=1) < 1).all()


def test_hard_targets_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    labels = np.array([1, 1, 0])
    targets = hard_targets(probs, labels, np.array([True, False, True]))
    assert targets.dtype == np.int32
    np.testing.assert_array_equal(targets, [0, 1, 1])


def test_predicted_targets_renormalise_rows():
    probs = np.array([[0.2, 0.2, 0.4], [0.0, 0.5, 0.5]])
    targets = predicted_targets(probs)
    assert targets.dtype == np.float32
    np.testing.assert_allclose(targets, [[0.25, 0.25, 0.5], [0.0, 0.5, 0.5]])


def test_flag_quality_by_hand():
    flagged = np.array([1, 1, 0, 0, 1], bool)
    noisy = np.array([1, 0, 1, 0, 0], bool)
    assert flag_quality(flagged, noisy) == {
        "num_flagged": 3,
        "num_noisy": 2,
        "precision": pytest.approx(1 / 3),
        "recall": 0.5,
    }
    nothing = np.zeros(5, bool)
    none_flagged = flag_quality(nothing, noisy)
    assert math.isnan(none_flagged["precision"]) and none_flagged["recall"] == 0.0
    none_noisy = flag_quality(flagged, nothing)
    assert none_noisy["precision"] == 0.0 and math.isnan(none_noisy["recall"])


def test_kept_indices_by_hand():
    scores = np.array([0.5, 0.1, 0.9, 0.3, 0.7])
    np.testing.assert_array_equal(kept_indices(scores, 2, "lowest"), [0, 2, 4])
    np.testing.assert_array_equal(kept_indices(scores, 2, "highest"), [0, 1, 3])
    np.testing.assert_array_equal(kept_indices(scores, 0), np.arange(5))


def test_kept_indices_remove_the_smaller_index_first_on_ties():
    scores = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(kept_indices(scores, 1, "lowest"), [0, 2, 3, 4])
    np.testing.assert_array_equal(kept_indices(scores, 1, "highest"), [1, 2, 3, 4])
    for order in PRUNE_ORDERS:
        np.testing.assert_array_equal(kept_indices(np.zeros(6), 3, order), [3, 4, 5])


@pytest.mark.parametrize("order", PRUNE_ORDERS)
def test_kept_indices_match_a_sort_on_score_then_index(order):
    rng = np.random.default_rng(6)
    scores = rng.integers(5, size=50).astype(float)  # many ties
    sign = 1 if order == "lowest" else -1
    removal = sorted(range(50), key=lambda i: (sign * scores[i], i))
    kept = kept_indices(scores, 20, order)
    assert kept.dtype == np.int64
    np.testing.assert_array_equal(kept, sorted(removal[20:]))


@pytest.mark.parametrize(
    "scores, k, order, match",
    [
        (np.zeros(3), -1, "lowest", "cannot prune -1 of 3"),
        (np.zeros(3), 3, "lowest", "cannot prune 3 of 3"),
        (np.zeros(3), 1, "middle", "unknown prune order 'middle'"),
        (np.array([0.0, np.nan, 1.0]), 1, "lowest", "1 of 3 scores are not finite"),
    ],
)
def test_kept_indices_refuse_bad_input(scores, k, order, match):
    with pytest.raises(ValueError, match=match):
        kept_indices(scores, k, order)


def test_num_pruned_floors_and_refuses_bad_fractions():
    assert num_pruned(0.25, 10) == 2
    assert num_pruned(0.0, 10) == 0
    assert num_pruned(0.999, 10) == 9
    assert num_pruned(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996
    assert num_pruned(0.1, 1437) == 143
    for fraction in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="prune fraction"):
            num_pruned(fraction, 10)
