"""The mean-member-loss control for GEX: how much of GEX's ranking the members' losses
alone give.

GEX squares each member's loss deviation from a reference (`gex.gex_scores`). When
the members leave the memorised solution, a mislabeled sample's loss rises far above
its pretrained loss, so its deviation and its loss are nearly the same number, and
the square of one ranks as the other. This control scores each training sample by
mean_m loss_n(theta_m), the same members with no reference and no square: where it
ranks as well as GEX, GEX's gain comes from its members, not from the deviation.
"""

from __future__ import annotations

import numpy as np

from gex_core.influence.scores import Scores


def member_loss_scores(member_train_losses: np.ndarray) -> Scores:
    """member_train_losses (M, N) -> self-influence mean_m loss_n(theta_m) (N,); no
    test influence (a loss is not a covariance with the test loss)."""
    return Scores(np.mean(np.asarray(member_train_losses, np.float64), axis=0))


def compute(inputs, hp: dict) -> Scores:
    """Registry entry (no knobs): the kept members' training losses (as gex's)."""
    member_train, _ = inputs.member_losses
    return member_loss_scores(member_train[:, inputs.scored_rows])
