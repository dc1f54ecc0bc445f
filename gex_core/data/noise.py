"""Label noise: none (the labels as given), symmetric (the research code's procedure),
class-pair flips, and human labels (CIFAR-N). Each returns the noisy labels, the clean
ones and the mask of changed labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

NOISE_KINDS = ("none", "symmetric", "asymmetric", "human")
DIGIT_PAIRS = ((2, 7), (3, 8), (5, 6), (6, 5), (7, 1))
# The usual class-pair flips: digits as Patrini et al. 2017 / Han et al. 2018 for MNIST;
# CIFAR-10 truck->automobile, bird->airplane, cat<->dog, deer->horse.
DEFAULT_PAIRS = {
    "digits": DIGIT_PAIRS,
    "mnist": DIGIT_PAIRS,
    "svhn": DIGIT_PAIRS,
    "cifar10": ((9, 1), (2, 0), (3, 5), (5, 3), (4, 7)),
}
HUMAN_LABEL_DATASETS = {"cifar10": 10, "cifar100": 100}


class NoisyLabels(NamedTuple):
    """Training labels after corruption. noisy, clean: (N,) int32; mask: (N,) bool."""

    noisy: np.ndarray
    clean: np.ndarray
    mask: np.ndarray


def no_noise(labels: np.ndarray) -> NoisyLabels:
    """The labels as given: nothing injected, so nothing is known to be wrong (the mask
    is all False and `clean` is only the given labels, not a ground truth)."""
    given = np.asarray(labels, dtype=np.int32)
    return NoisyLabels(
        noisy=given.copy(), clean=given, mask=np.zeros(given.shape, bool)
    )


def symmetric_noise(
    labels: np.ndarray, ratio: float, num_classes: int, seed: int
) -> NoisyLabels:
    """The research code's symmetric label noise.

    `default_rng(seed)` picks int(N*ratio) indices without replacement, then draws each
    new label uniformly over all C classes (possibly the old one). Only labels that
    changed count as noisy, so the measured rate is about ratio*(1-1/C).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"noise ratio must lie in [0, 1), got {ratio}")
    clean = np.asarray(labels, dtype=np.int32)
    rng = np.random.default_rng(seed)
    n = clean.shape[0]
    candidates = np.sort(rng.choice(n, int(n * ratio), replace=False))
    noisy = clean.copy()
    noisy[candidates] = rng.choice(num_classes, len(candidates))
    return NoisyLabels(noisy=noisy, clean=clean, mask=noisy != clean)


def asymmetric_noise(
    labels: np.ndarray,
    ratio: float,
    pairs: Sequence[Sequence[int]],
    num_classes: int,
    seed: int,
) -> NoisyLabels:
    """Class-pair flips: for each (source, target), in the given order,
    int(n_source * ratio) of the source class's samples (drawn without replacement by
    `default_rng(seed)`) get the target label. Every flip changes the label, so the
    measured rate is exact: sum over sources of int(n_source * ratio) / N.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"noise ratio must lie in [0, 1), got {ratio}")
    pairs = [tuple(int(c) for c in pair) for pair in pairs]
    sources = [source for source, _ in pairs]
    for source, target in pairs:
        if not (0 <= source < num_classes and 0 <= target < num_classes):
            raise ValueError(
                f"noise pair {source}->{target} names a class outside 0..{num_classes - 1}"
            )
        if source == target:
            raise ValueError(f"noise pair {source}->{target} does not change the label")
    if len(set(sources)) != len(sources):
        raise ValueError(f"noise pairs flip a source class twice: {pairs}")
    clean = np.asarray(labels, dtype=np.int32)
    rng = np.random.default_rng(seed)
    noisy = clean.copy()
    for source, target in pairs:
        members = np.flatnonzero(clean == source)
        flipped = rng.choice(members, int(members.size * ratio), replace=False)
        noisy[np.sort(flipped)] = target
    return NoisyLabels(noisy=noisy, clean=clean, mask=noisy != clean)


def human_noise(
    labels: np.ndarray, file_clean: np.ndarray, file_noisy: np.ndarray, source: str
) -> NoisyLabels:
    """CIFAR-N human labels. The mask compares each example's own clean and noisy
    fields of the label file; the file's clean labels must equal the data set's, row by
    row, which proves the file and the data set are in the same order."""
    clean = np.asarray(labels, dtype=np.int32)
    file_clean = np.asarray(file_clean, dtype=np.int32)
    file_noisy = np.asarray(file_noisy, dtype=np.int32)
    if file_clean.shape != clean.shape or file_noisy.shape != clean.shape:
        raise ValueError(
            f"{source}: {file_clean.shape[0]} rows for {clean.shape[0]} training "
            "samples; the human labels must cover the whole training set in order"
        )
    differ = np.flatnonzero(file_clean != clean)
    if differ.size:
        raise ValueError(
            f"{source}: clean_label disagrees with the data set's training labels at "
            f"{differ.size} rows (first: {differ[:5].tolist()}); the file must list "
            "the training set in the order of the CIFAR binary batches"
        )
    return NoisyLabels(noisy=file_noisy, clean=clean, mask=file_noisy != file_clean)
