"""Evaluation stages: detection per run, then tables and plots over seeds."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from gex_core.influence.scores import load_scores
from gex_core.io import read_npz, save_figure, write_json, write_table
from gex_core.metrics import detection_metrics
from gex_core.plots import detection_bars, detection_curves, score_histograms


def run_detection(
    *, scores_path: str, labels_path: str, title: str, outputs: Mapping[str, str]
) -> dict[str, float]:
    """outputs: metrics (JSON), histogram (PNG), curves (PNG)."""
    scores = load_scores(scores_path).self_influence
    mask = read_npz(labels_path, ("mask",))["mask"].astype(bool)
    metrics = detection_metrics(scores, mask)
    heading = f"{title}\nAUC {metrics['auc']:.3f}  AP {metrics['ap']:.3f}"
    save_figure(outputs["histogram"], score_histograms(scores, mask, heading))
    save_figure(outputs["curves"], detection_curves(scores, mask, heading))
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
    return summary.reset_index()


def run_summarize_detection(
    *, metric_files, methods, seeds, title: str, table: str, plot: str
) -> pd.DataFrame:
    summary = summarize_detection(metric_files, methods, seeds)
    write_table(table, summary)
    save_figure(plot, detection_bars(summary, title))
    return summary


def read_benchmark(path: str) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one Snakemake benchmark file (NaN if absent)."""
    if not os.path.exists(path):
        return {"s": math.nan, "max_rss": math.nan}
    frame = pd.read_csv(path, sep="\t")
    rss = pd.to_numeric(frame["max_rss"], errors="coerce")
    return {"s": float(frame["s"].mean()), "max_rss": float(rss.max())}


def cost_tables(
    benchmarks: Mapping[str, Mapping[str, Sequence[str]]],
    forward_seconds: float,
    num_seeds: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-method and per-rule cost from benchmark files.

    benchmarks: {rule: {method ("" = shared by all methods): [tsv per job]}}.
    Per method and seed: its own jobs' seconds (ensemble chains, scoring), the shared
    jobs (labels, pretraining) apart, and the method's seconds in units of one forward
    pass over the training set (measured in the pretraining job of the same run).
    """
    per_rule = []
    for rule, by_method in benchmarks.items():
        records = [read_benchmark(p) for files in by_method.values() for p in files]
        seconds = np.array([r["s"] for r in records])
        per_rule.append(
            {
                "rule": rule,
                "jobs": len(records),
                "total_s": float(np.nansum(seconds)),
                "mean_s": float(np.nanmean(seconds)) if records else math.nan,
                "peak_rss_mb": float(np.nanmax([r["max_rss"] for r in records]))
                if records
                else math.nan,
            }
        )
    shared = (
        sum(
            float(np.nansum([read_benchmark(p)["s"] for p in by_method.get("", [])]))
            for by_method in benchmarks.values()
        )
        / num_seeds
    )
    methods = sorted(
        {m for by_method in benchmarks.values() for m in by_method if m},
        key=lambda m: list(benchmarks["influence"]).index(m),
    )
    per_method = []
    for method in methods:
        own = {
            rule: [read_benchmark(p) for p in by_method.get(method, [])]
            for rule, by_method in benchmarks.items()
        }
        upstream = sum(r["s"] for r in own.get("ensemble_chain", [])) / num_seeds
        scoring = sum(r["s"] for r in own.get("influence", [])) / num_seeds
        rss = [r["max_rss"] for rs in own.values() for r in rs]
        per_method.append(
            {
                "method": method,
                "upstream_s": upstream,
                "scoring_s": scoring,
                "method_total_s": upstream + scoring,
                "forward_passes": (upstream + scoring) / forward_seconds,
                "shared_pretrain_s": shared,
                "peak_rss_mb": float(np.nanmax(rss)) if rss else math.nan,
            }
        )
    return pd.DataFrame(per_method), pd.DataFrame(per_rule)


def run_cost_tables(
    *, benchmarks, forward_files: Sequence[str], method_table: str, rule_table: str
) -> None:
    forward = float(
        np.mean(
            [
                read_npz(p, ("forward_pass_seconds",))["forward_pass_seconds"]
                for p in forward_files
            ]
        )
    )
    per_method, per_rule = cost_tables(benchmarks, forward, len(forward_files))
    write_table(method_table, per_method)
    write_table(rule_table, per_rule)
