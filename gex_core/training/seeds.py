"""Every random stream of the workflow, derived from the config seed and fixed stream ids.

Keys and generators depend only on (seed, stream, ids), never on job order or time, so a
chain or a method gives the same numbers however jobs are scheduled.
"""

from __future__ import annotations

import jax
import numpy as np

# Stream ids are part of the results' identity: never renumber them.
STREAMS = {
    "init": 1,
    "pretrain_order": 2,
    "ensemble_order": 3,
    "randproj": 4,
    "tracinrp": 5,
    "arnoldi": 6,
    "la_kfac": 7,
    "el2n": 8,
    "cl": 9,
    "random": 10,
    "lissa": 11,
    "curvature_batches": 12,
    "augment": 13,
    "bn_batches": 14,
}


def jax_key(seed: int, stream: str, *ids: int) -> jax.Array:
    """jax.random.key(seed) folded with the stream id and any further ids."""
    key = jax.random.fold_in(jax.random.key(seed), STREAMS[stream])
    for i in ids:
        key = jax.random.fold_in(key, i)
    return key


def host_rng(seed: int, stream: str, *ids: int) -> np.random.Generator:
    """np.random.default_rng over the entropy (seed, stream id, len(ids), *ids).

    The count keeps (s, stream) and (s, stream, 0) apart: SeedSequence pads short
    entropy with zeros, so without it they would be the same generator.
    """
    return np.random.default_rng([seed, STREAMS[stream], len(ids), *ids])
