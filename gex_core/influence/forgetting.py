"""Forgetting events (Toneva et al. 2019) counted during pretraining.

score_n = number of correct -> incorrect transitions of sample n between consecutive
visits in the pretraining epochs (noisy labels, training forward pass; see
`train.update_record`). Samples never classified correctly (learned == False) rank above
every learned sample, score max(forgetting) + 1: Toneva et al. count them as forgotten
infinitely often, while the research code (spec 8.10) gave them 0, the score of the
"unforgettable" samples. Ties are kept (detection metrics rank ties evenly). No test
influence.
"""

from __future__ import annotations

import numpy as np

from gex_core.influence.scores import Scores


def forgetting_scores(forgetting: np.ndarray, learned: np.ndarray) -> np.ndarray:
    """forgetting: (N,) int counts, learned: (N,) bool -> scores (N,) float64."""
    forgetting = np.asarray(forgetting, np.float64)
    learned = np.asarray(learned, bool)
    if forgetting.shape != learned.shape:
        raise ValueError(f"shapes differ: {forgetting.shape} vs {learned.shape}")
    top = forgetting[learned].max(initial=0.0)
    return np.where(learned, forgetting, top + 1.0)


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: no knobs."""
    record = inputs.record
    return Scores(forgetting_scores(record["forgetting"], record["learned"]))
