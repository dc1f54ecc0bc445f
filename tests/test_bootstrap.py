"""The paired bootstrap of detection differences, against hand computations."""

import numpy as np
import pytest

from gex_core.evaluation.bootstrap import paired_bootstrap, seed_deltas


def test_seed_deltas_by_hand():
    # one seed, 4 samples, noisy = 0 and 1. a ranks both noisy first (AUC 1); b ranks
    # sample 1 last (pairs (0,2) (0,3) right, (1,2) (1,3) wrong: AUC 0.5)
    mask = np.array([True, True, False, False])
    a = np.array([4.0, 3.0, 2.0, 1.0])
    b = np.array([4.0, 0.0, 2.0, 1.0])
    assert seed_deltas([a], [b], [mask], [np.arange(4)], "auc") == 0.5
    # the resample [0, 0, 1, 2]: noisy 0, 0, 1; clean 2. a: AUC 1; b: sample 1 (0.0)
    # loses to 2 (2.0), samples 0 win: 2 of 3 pairs, AUC 2/3
    rows = [np.array([0, 0, 1, 2])]
    assert seed_deltas([a], [b], [mask], rows, "auc") == pytest.approx(1 - 2 / 3)
    # AP of b on all four: ranks 0 (noisy), 2, 3, 1 (noisy): (1/1 + 2/4) / 2 = 0.75
    assert seed_deltas([a], [b], [mask], [np.arange(4)], "ap") == pytest.approx(0.25)
    # two seeds: the mean of their differences
    two = seed_deltas([a, a], [b, a], [mask, mask], [np.arange(4)] * 2, "auc")
    assert two == 0.25
    # a resample with one class has no AUC
    assert seed_deltas([a], [b], [mask], [np.array([2, 3, 3, 2])], "auc") is None


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(1)
    mask = rng.random(300) < 0.2
    better = mask + rng.normal(0, 0.5, 300)
    worse = mask + rng.normal(0, 1.5, 300)
    interval = paired_bootstrap([better], [worse], [mask], "auc", resamples=400)
    assert interval.low < interval.delta < interval.high
    assert interval.low > 0 and interval.resamples + interval.skipped == 400
    # a method against itself: every paired difference is exactly 0
    same = paired_bootstrap([better], [better], [mask], "ap", resamples=50)
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0)
    # reproducible from its seed
    again = paired_bootstrap([better], [worse], [mask], "auc", resamples=400)
    assert again == interval
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap([better], [worse], [mask], "f1")
