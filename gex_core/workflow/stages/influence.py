"""Influence stage: run one registered method and save its scores and its cost."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gex_core.api.scoring import score
from gex_core.influence.registry import METHODS, get_method
from gex_core.influence.scores import Scores
from gex_core.workflow.artifacts import (
    load_members,
    load_query_indices,
    load_scores,
    save_scores,
    stored_train_size,
)
from gex_core.workflow.costs import cost_record, timed_forward_pass
from gex_core.workflow.io import write_json
from gex_core.workflow.method_inputs import MethodInputs


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
    and a forward pass over the scored samples timed in the same process). With
    inputs.shard, only that shard's rows are scored (shardable methods only)."""
    spec = get_method(method)
    if inputs.shard is not None and not spec.shardable:
        raise ValueError(
            f"{method} cannot be computed in shards (it trains models or compares "
            "samples); shardable methods: "
            + ", ".join(sorted(m for m in METHODS if get_method(m).shardable))
        )
    start = time.perf_counter()
    scores = score(inputs, method, hp)
    compute_s = time.perf_counter() - start
    queries = inputs.query_indices
    x_scored, y_scored = inputs.scored
    forward_s = timed_forward_pass(
        inputs.model, inputs.params, x_scored, y_scored, inputs.eval_batch_size
    )
    timing = cost_record(compute_s, forward_s)
    if inputs.shard is not None:
        timing["rows"] = list(inputs.shard)
    print(f"{method} {dict(hp)}: {scores.self_influence.shape[0]} scores; {timing}")
    members = None
    if "ensemble" in spec.needs:
        kept = inputs.chain_arrays["kept"].astype(bool)
        members = (int(kept.sum()), kept.size)
        print(f"ensemble members kept: {members[0]} of {members[1]}")
    save_scores(outputs["scores"], scores, query_indices=queries, members=members)
    write_json(outputs["timing"], timing)


def merge_shards(
    shard_scores: Sequence[str], shard_rows: Sequence[Sequence[int]], num_train: int
) -> tuple[Scores, np.ndarray | None]:
    """Concatenate shard score files (in shard order) into the scores of all N
    training samples, and their common query indices (None without a kernel).

    shard_rows: each shard's (start, stop); they must tile 0..N in order, so a missing,
    repeated or stale shard (another shard_size, another data set) is refused."""
    expected = 0
    for path, (start, stop) in zip(shard_scores, shard_rows, strict=True):
        if start != expected:
            raise ValueError(
                f"{path}: covers rows {start}:{stop}, but the next shard should start "
                f"at row {expected}"
            )
        expected = stop
    if expected != num_train:
        raise ValueError(
            f"shards cover rows 0:{expected}, but the training set has {num_train}"
        )
    parts = [load_scores(p) for p in shard_scores]
    queries = [load_query_indices(p) for p in shard_scores]
    for path, part, (start, stop) in zip(shard_scores, parts, shard_rows, strict=True):
        if len(part.self_influence) != stop - start:
            raise ValueError(
                f"{path}: {len(part.self_influence)} scores for rows {start}:{stop}"
            )
    for path, q in zip(shard_scores, queries, strict=True):
        if (q is None) != (queries[0] is None) or (
            q is not None and not np.array_equal(q, queries[0])
        ):
            raise ValueError(f"{path}: its kernel's query set differs from the others")

    def joined(field: str) -> np.ndarray | None:
        arrays = [getattr(p, field) for p in parts]
        if any(a is None for a in arrays):
            return None
        return np.concatenate(arrays)

    merged = Scores(
        joined("self_influence"), joined("test_influence"), joined("kernel")
    )
    return merged, queries[0]


def run_gather(
    *,
    shard_scores: Sequence[str],
    shard_timings: Sequence[str],
    data_path: str,
    outputs: Mapping[str, str],
) -> None:
    """Merge a sharded method's scores into outputs["scores"], and its shards' costs
    into outputs["timing"] (summed compute and forward-pass seconds, so the ratio
    stays forward passes over N; "shards" lists the shard score files)."""
    timings = []
    for path in shard_timings:
        with open(path) as f:
            timings.append(json.load(f))
    num_train = stored_train_size(data_path)
    scores, queries = merge_shards(
        shard_scores, [t["rows"] for t in timings], num_train
    )
    timing = cost_record(
        sum(t["compute_seconds"] for t in timings),
        sum(t["forward_pass_seconds"] for t in timings),
    )
    timing["shards"] = list(shard_scores)
    print(f"merged {len(shard_scores)} shards: {num_train} scores; {timing}")
    members = load_members(shard_scores[0]) if shard_scores else None
    save_scores(outputs["scores"], scores, query_indices=queries, members=members)
    write_json(outputs["timing"], timing)
