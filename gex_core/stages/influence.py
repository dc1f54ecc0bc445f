"""Influence stage: run one registered method and save its scores and its cost."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from gex_core.costs import cost_record, timed_forward_pass
from gex_core.influence.inputs import MethodInputs
from gex_core.influence.registry import MethodSpec, get_method
from gex_core.influence.scores import Scores, save_scores
from gex_core.io import write_json


def check_kernel(spec: MethodSpec, scores: Scores, num_queries: int) -> None:
    """The kernel must be what the registry promises: (N, Q) when spec.kernel and
    Q > 0, None otherwise."""
    want = (len(scores.self_influence), num_queries)
    want = want if spec.kernel and num_queries else None
    got = None if scores.kernel is None else np.shape(scores.kernel)
    if got != want:
        raise RuntimeError(
            f"{spec.name}: kernel of shape {got}, expected {want} (registry "
            f"kernel={spec.kernel}, {num_queries} queries)"
        )


def run_influence(
    *,
    method: str,
    hp: Mapping[str, Any],
    inputs: MethodInputs,
    outputs: Mapping[str, str],
) -> None:
    """Compute `method` with knobs `hp`; write outputs["scores"] (scores.npz: the
    scores, and the train x test kernel with its query_indices when the method has one
    and inputs.queries > 0) and outputs["timing"] (compute seconds, kernel included,
    and a forward pass over the training set timed in the same process)."""
    spec = get_method(method)
    compute = spec.load()
    start = time.perf_counter()
    scores = compute(inputs, dict(hp))
    compute_s = time.perf_counter() - start
    queries = inputs.query_indices
    check_kernel(spec, scores, len(queries))
    data = inputs.data
    forward_s = timed_forward_pass(
        inputs.model, inputs.params, data.x_train, data.y_train, inputs.eval_batch_size
    )
    timing = cost_record(compute_s, forward_s)
    print(f"{method} {dict(hp)}: {scores.self_influence.shape[0]} scores; {timing}")
    save_scores(outputs["scores"], scores, query_indices=queries)
    write_json(outputs["timing"], timing)
