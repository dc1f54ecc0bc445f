"""Which members of a geometric ensemble GEX may average: a member that collapsed
(predicts about one class for everything) is left out, or fails the run."""

from __future__ import annotations

import numpy as np


def accuracy_tolerance(accuracy: float, size: int) -> tuple[float, float]:
    """(standard error, tolerance) of an accuracy measured on `size` held-out samples:
    the Agresti-Coull standard error sqrt(p(1 - p) / (n + 4)), p = (k + 2) / (n + 4),
    which stays positive at accuracy 1, and a tolerance of two of them (a smaller
    difference cannot be told from chance variation on this split)."""
    if size < 1:
        raise ValueError("the held-out set is empty: no accuracy to compare")
    p = (accuracy * size + 2) / (size + 4)
    standard_error = float(np.sqrt(p * (1 - p) / (size + 4)))
    return standard_error, 2 * standard_error


def checkable(pretrained_accuracy: float, num_classes: int, size: int) -> bool:
    """Whether a collapse can be seen at all: the pretrained model beats chance (1/C)
    on the `size` validation samples by more than `accuracy_tolerance`. A model at
    chance (random labels, a few epochs on tiny data) leaves nothing to fall from."""
    _, tolerance = accuracy_tolerance(pretrained_accuracy, size)
    return pretrained_accuracy - 1.0 / num_classes > tolerance


def collapsed_members(
    validation_accuracy: np.ndarray,
    pretrained_accuracy: float,
    num_classes: int,
    size: int,
) -> np.ndarray:
    """(M,) bool: members whose validation accuracy is nearer chance (1/C) than the
    pretrained model's accuracy: below the midpoint of the two by more than
    `accuracy_tolerance` at that midpoint on the `size` validation samples (so chance
    variation on a small split does not count as a collapse).

    A collapsed member predicts one class for (nearly) everything; its per-sample
    losses then split the training set by class, and averaging it in would flag whole
    classes. validation_accuracy: (M,) of the members on the validation split.
    """
    floor = (1.0 / num_classes + float(pretrained_accuracy)) / 2
    _, tolerance = accuracy_tolerance(floor, size)
    return np.asarray(validation_accuracy, np.float64) < floor - tolerance


def check_kept(kept: np.ndarray) -> None:
    """Refuse an ensemble of which fewer than half the members were kept: the
    fine-tuning rate destroys most members, and the survivors are too few to trust."""
    kept = np.asarray(kept, bool)
    if 2 * int(kept.sum()) < kept.size:
        raise ValueError(
            f"gex: only {int(kept.sum())} of {kept.size} ensemble members were kept "
            f"(collapsed: {np.flatnonzero(~kept).tolist()}); fewer than half is too "
            "few. Lower ensemble.ft_lr or the calibration grid"
        )
