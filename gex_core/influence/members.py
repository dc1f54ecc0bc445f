"""Which members of a geometric ensemble GEX may average: a member that collapsed
(predicts about one class for everything) is left out, or fails the run."""

from __future__ import annotations

import numpy as np


def collapsed_members(
    validation_accuracy: np.ndarray, pretrained_accuracy: float, num_classes: int
) -> np.ndarray:
    """(M,) bool: members whose validation accuracy is nearer chance (1/C) than the
    pretrained model's accuracy, i.e. below the midpoint of the two.

    A collapsed member predicts one class for (nearly) everything; its per-sample
    losses then split the training set by class, and averaging it in would flag whole
    classes. validation_accuracy: (M,) of the members on the validation split.
    """
    floor = (1.0 / num_classes + float(pretrained_accuracy)) / 2
    return np.asarray(validation_accuracy, np.float64) < floor


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
