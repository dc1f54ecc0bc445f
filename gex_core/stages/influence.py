"""Influence stage: run one registered method and save its scores and its cost."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gex_core.costs import cost_record, timed_forward_pass
from gex_core.influence.inputs import MethodInputs
from gex_core.influence.registry import get_method
from gex_core.influence.scores import save_scores
from gex_core.io import write_json


def run_influence(
    *,
    method: str,
    hp: Mapping[str, Any],
    inputs: MethodInputs,
    outputs: Mapping[str, str],
) -> None:
    """Compute `method` with knobs `hp`; write outputs["scores"] (scores.npz) and
    outputs["timing"] (compute seconds, and a forward pass over the training set timed
    in the same process)."""
    compute = get_method(method).load()
    start = time.perf_counter()
    scores = compute(inputs, dict(hp))
    compute_s = time.perf_counter() - start
    data = inputs.data
    forward_s = timed_forward_pass(
        inputs.model, inputs.params, data.x_train, data.y_train, inputs.eval_batch_size
    )
    timing = cost_record(compute_s, forward_s)
    print(f"{method} {dict(hp)}: {scores.self_influence.shape[0]} scores; {timing}")
    save_scores(outputs["scores"], scores)
    write_json(outputs["timing"], timing)
