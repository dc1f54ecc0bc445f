"""Influence stage: run one registered method and save its scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gex_core.influence.inputs import MethodInputs
from gex_core.influence.registry import get_method
from gex_core.influence.scores import save_scores


def run_influence(
    *, method: str, hp: Mapping[str, Any], inputs: MethodInputs, output: str
) -> None:
    """Compute `method` with knobs `hp` on `inputs`; write scores.npz atomically."""
    spec = get_method(method)
    scores = spec.load()(inputs, dict(hp))
    n = scores.self_influence.shape[0]
    print(f"{method} {dict(hp)}: {n} self-influence scores")
    save_scores(output, scores)
