"""Evaluation stages: detection per run, then tables and plots over seeds."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from gex_core.evaluation.figures import (
    detection_bars,
    detection_curves,
    score_histograms,
)
from gex_core.evaluation.metrics import detection_metrics
from gex_core.workflow.artifacts import load_members, load_scores
from gex_core.workflow.io import read_npz, save_figure, write_json, write_table


def run_detection(
    *, scores_path: str, labels_path: str, title: str, outputs: Mapping[str, str]
) -> dict[str, float]:
    """outputs: metrics (JSON), histogram (PNG), curves (PNG)."""
    scores = load_scores(scores_path).self_influence
    mask = read_npz(labels_path, ("mask",))["mask"].astype(bool)
    metrics = detection_metrics(scores, mask)
    members = load_members(scores_path)
    if members is not None:
        metrics["members_kept"], metrics["members"] = members
    heading = f"{title}\nAUC {metrics['auc']:.3f}  AP {metrics['ap']:.3f}"
    save_figure(
        outputs["histogram"], score_histograms(scores, mask, heading), trim=False
    )
    save_figure(outputs["curves"], detection_curves(scores, mask, heading), trim=False)
    write_json(outputs["metrics"], metrics)
    return metrics


def summarize_detection(
    metric_files: Sequence[str], methods: Sequence[str], seeds: Sequence[int]
) -> pd.DataFrame:
    """One row per method: mean and sample std (ddof=1; 0 for one seed) over seeds."""
    rows = []
    for path, method, seed in zip(metric_files, methods, seeds, strict=True):
        with open(path) as f:
            rows.append({"method": method, "seed": seed, **json.load(f)})
    frame = pd.DataFrame(rows)
    columns = ["auc", "ap", "recall_at_noise_rate"]
    grouped = frame.groupby("method", sort=False)[columns]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).fillna(0.0).add_suffix("_std")
    summary = pd.concat([mean, std], axis=1)
    summary = summary[[f"{c}_{s}" for c in columns for s in ("mean", "std")]]
    summary["seeds"] = grouped.size()
    summary["noise_rate"] = frame.groupby("method", sort=False)["noise_rate"].mean()
    if "members_kept" in frame:
        # per seed, in seed order: "8,8,6 of 8"
        kept = frame.dropna(subset=["members_kept"]).groupby("method", sort=False)
        summary["members_kept"] = kept.apply(
            lambda g: (
                ",".join(str(int(k)) for k in g.members_kept)
                + f" of {int(g.members.max())}"
            ),
            include_groups=False,
        )
    return summary.reset_index()


def run_summarize_detection(
    *, metric_files, methods, seeds, title: str, table: str, plot: str
) -> pd.DataFrame:
    summary = summarize_detection(metric_files, methods, seeds)
    write_table(table, summary)
    save_figure(plot, detection_bars(summary, title))
    return summary


SHARED_RULES = ("dataset", "labels", "pretrain")
# the rules whose jobs compute one method's scores (its own cost)
SCORING_RULES = ("influence", "influence_shard", "influence_gather")
# A method's own jobs before scoring: GEX's learning-rate calibration and chains
UPSTREAM_RULES = ("calibrate", "ensemble_chains")


def read_benchmark(path: str) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one Snakemake benchmark file (NaN if absent)."""
    if not os.path.exists(path):
        return {"s": math.nan, "max_rss": math.nan}
    frame = pd.read_csv(path, sep="\t")
    rss = pd.to_numeric(frame["max_rss"], errors="coerce")
    return {"s": float(frame["s"].mean()), "max_rss": float(rss.max())}


def _forward_passes(timing_files: Sequence[str], chain_files: Sequence[str]) -> float:
    """Compute seconds / forward-pass seconds, each ratio taken within one job, summed
    over a method's jobs (scoring, plus ensemble chains for gex) and averaged over seeds."""
    total = 0.0
    for path in timing_files:
        with open(path) as f:
            total += json.load(f)["forward_passes"]
    for path in chain_files:
        chain = read_npz(path, ("compute_seconds", "forward_pass_seconds"))
        total += float(chain["compute_seconds"] / chain["forward_pass_seconds"])
    return total / len(timing_files)


def cost_tables(
    benchmarks: Mapping[str, Mapping[str, Sequence[str]]],
    timing: Mapping[str, Sequence[str]],
    chains: Mapping[str, Sequence[str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-method and per-rule cost.

    benchmarks: {rule: {method ("" = shared by all methods): [Snakemake benchmark tsv
    per job]}} (rules without jobs are left out of the per-rule table); timing: {method: [timing.json per seed]}; chains: {method: [chain .npz
    files of all seeds]} for methods built on the ensemble. Per method: wall seconds per
    seed of its own jobs (calibration and ensemble chains, scoring) and of the shared jobs (data,
    labels, pretraining), peak RSS, and its compute in forward passes over the training
    set (each job's compute time over a forward pass timed in the same job).
    """
    per_rule = []
    for rule, by_method in benchmarks.items():
        records = [read_benchmark(p) for files in by_method.values() for p in files]
        if not records:
            continue
        per_rule.append(
            {
                "rule": rule,
                "jobs": len(records),
                "total_s": float(np.nansum([r["s"] for r in records])),
                "mean_s": float(np.nanmean([r["s"] for r in records])),
                "peak_rss_mb": float(np.nanmax([r["max_rss"] for r in records])),
            }
        )
    num_seeds = len(next(iter(timing.values())))
    shared = sum(
        float(np.nansum([read_benchmark(p)["s"] for p in benchmarks[rule].get("", [])]))
        for rule in SHARED_RULES
    )
    per_method = []
    for method, timing_files in timing.items():
        own = {
            rule: [read_benchmark(p) for p in by_method.get(method, [])]
            for rule, by_method in benchmarks.items()
        }
        upstream = sum(r["s"] for rule in UPSTREAM_RULES for r in own.get(rule, []))
        upstream /= num_seeds
        scoring = sum(r["s"] for rule in SCORING_RULES for r in own.get(rule, []))
        scoring /= num_seeds
        rss = [
            r["max_rss"]
            for rule in (*UPSTREAM_RULES, *SCORING_RULES)
            for r in own.get(rule, [])
        ]
        per_method.append(
            {
                "method": method,
                "upstream_s": upstream,
                "scoring_s": scoring,
                "method_total_s": upstream + scoring,
                "forward_passes": _forward_passes(timing_files, chains.get(method, [])),
                "shared_pretrain_s": shared / num_seeds,
                "peak_rss_mb": float(np.nanmax(rss)),
            }
        )
    return pd.DataFrame(per_method), pd.DataFrame(per_rule)


def with_shard_benchmarks(
    benchmarks: Mapping[str, Mapping[str, Sequence[str]]],
    timing: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, list[str]]]:
    """benchmarks plus rule "influence_shard": {method: [benchmark file of each shard
    job]}, read from the "shards" list of each merged timing.json."""
    from gex_core.workflow.paths import benchmark_file

    shards: dict[str, list[str]] = {}
    for method, files in timing.items():
        for path in files:
            with open(path) as f:
                shard_scores = json.load(f).get("shards", [])
            shards.setdefault(method, []).extend(
                benchmark_file(s) for s in shard_scores
            )
    merged = {rule: dict(by_method) for rule, by_method in benchmarks.items()}
    merged["influence_shard"] = {m: files for m, files in shards.items() if files}
    return merged


def run_cost_tables(*, benchmarks, timing, chains, method_table: str, rule_table: str):
    benchmarks = with_shard_benchmarks(benchmarks, timing)
    per_method, per_rule = cost_tables(benchmarks, timing, chains)
    write_table(method_table, per_method)
    write_table(rule_table, per_rule)
