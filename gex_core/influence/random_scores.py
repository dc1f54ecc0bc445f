"""The random baseline: i.i.d. standard normal scores from the run's "random" stream.

(Named random_scores, not random, so it cannot shadow the standard library module.)
"""

from __future__ import annotations

import numpy as np

from gex_core.influence.scores import Scores


def random_scores(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """(num_samples,) draws of N(0, 1)."""
    return rng.normal(size=num_samples)


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: no knobs; s = rng("random").normal(size=N)."""
    return Scores(random_scores(inputs.rng("random"), inputs.num_train))
