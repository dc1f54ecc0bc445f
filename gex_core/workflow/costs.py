"""Cost measurement inside a job: compute seconds in units of one forward pass.

Wall seconds depend on the machine and its load; the ratio to a forward pass over the
training set, timed in the same process, is the portable number the cost table reports.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from gex_core.training.models import Model
from gex_core.training.steps import evaluate, make_eval_fn


def timed_forward_pass(
    model: Model,
    params: Any,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    repeats: int = 3,
) -> float:
    """Median seconds of one compiled forward pass (per-sample losses) over (x, y)."""
    eval_fn = make_eval_fn(model.apply)
    evaluate(eval_fn, params, x, y, batch_size)  # compile
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(eval_fn, params, x, y, batch_size)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def cost_record(
    compute_seconds: float, forward_pass_seconds: float
) -> dict[str, float]:
    """The timing artifact of one job."""
    return {
        "compute_seconds": compute_seconds,
        "forward_pass_seconds": forward_pass_seconds,
        "forward_passes": compute_seconds / forward_pass_seconds,
    }
