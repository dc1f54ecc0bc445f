"""Tables and figures over seeds for the relabel and pruning experiments, and the
methods' agreement on which samples matter."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gex_core.evaluation.figures import pruning_curves, rank_agreement, relabel_bars
from gex_core.workflow.artifacts import load_scores
from gex_core.workflow.io import save_figure, write_table


def read_results(paths: Sequence[str]) -> pd.DataFrame:
    """One row per experiment JSON file."""
    rows = []
    for path in paths:
        with open(path) as f:
            rows.append(json.load(f))
    return pd.DataFrame(rows)


def pretrained_test_accuracy(history_path: str) -> float:
    """Test accuracy of the pretrained model: the last evaluated epoch of its history."""
    history = pd.read_csv(history_path, sep="\t").dropna(subset=["test_acc"])
    return float(history.test_acc.iloc[-1])


def _mean_std(frame: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    grouped = frame.groupby(by, sort=False)[value]
    return pd.DataFrame(
        {
            "mean": grouped.mean(),
            "std": grouped.std(ddof=1).fillna(0.0),
            "seeds": grouped.size(),
        }
    )


def relabel_table(
    method_files: Sequence[str],
    baseline_files: Sequence[str],
    history_files: Sequence[str],
) -> pd.DataFrame:
    """Test accuracy after relabeling, mean and sample std over seeds, one row per
    setting: none (the pretrained model), every method (with its flagged set's mean
    precision and recall where the noise was injected), all samples predicted, and
    oracle (clean labels) where there is one."""
    none = pd.DataFrame(
        {
            "setting": "none",
            "test_acc": [pretrained_test_accuracy(h) for h in history_files],
        }
    )
    methods = read_results(method_files)
    methods["setting"] = methods.method + " (" + methods["mode"] + ")"
    baselines = read_results(baseline_files)
    baselines["setting"] = baselines.setting.replace(
        {"predicted": "all predicted", "oracle": "oracle (clean labels)"}
    )
    predicted = baselines[baselines.setting == "all predicted"]
    oracle = baselines[baselines.setting != "all predicted"]
    frame = pd.concat([none, predicted, methods, oracle], ignore_index=True)
    table = _mean_std(frame, "setting", "test_acc")
    # graded runs (injected noise) say how right the flags were; the others only what
    # was flagged and changed
    known = ["precision", "recall", "num_flagged", "fixed", "broken", "changed"]
    quality = methods.groupby("setting", sort=False)[
        [c for c in known if c in methods.columns]
    ].mean()
    return table.join(quality).reset_index()


def prune_table(
    result_files: Sequence[str], history_files: Sequence[str]
) -> pd.DataFrame:
    """Long table (method, seed, fraction, test_acc); fraction 0 is the pretrained model
    of the seed, for every method (history_files in seed order of the seeds present)."""
    frame = read_results(result_files)
    seeds = sorted(frame.seed.unique())
    if len(seeds) != len(history_files):
        raise ValueError(f"{len(history_files)} histories for seeds {seeds}")
    unpruned = [
        {
            "method": m,
            "seed": s,
            "fraction": 0.0,
            "test_acc": pretrained_test_accuracy(h),
        }
        for s, h in zip(seeds, history_files, strict=True)
        for m in frame.method.unique()
    ]
    columns = ["method", "seed", "fraction", "test_acc"]
    table = pd.concat([pd.DataFrame(unpruned), frame[columns]], ignore_index=True)
    return table.sort_values(["method", "fraction", "seed"], kind="stable")


def spearman_matrix(scores: Sequence[np.ndarray]) -> np.ndarray:
    """(M, M) Spearman rank correlations of M score vectors (N,), ties averaged."""
    ranks = np.stack([pd.Series(s).rank(method="average").to_numpy() for s in scores])
    return np.corrcoef(ranks)


def rank_agreement_table(
    score_files: Sequence[str], methods: Sequence[str], seeds: Sequence[int]
) -> pd.DataFrame:
    """Spearman correlation of self-influence between every pair of methods, computed
    per seed and averaged over seeds. score_files[i] belongs to (methods[i], seeds[i])."""
    names = list(dict.fromkeys(methods))
    per_seed = []
    for seed in dict.fromkeys(seeds):
        by_method = {
            m: load_scores(p).self_influence
            for p, m, s in zip(score_files, methods, seeds, strict=True)
            if s == seed
        }
        per_seed.append(spearman_matrix([by_method[m] for m in names]))
    return pd.DataFrame(np.mean(per_seed, axis=0), index=names, columns=names)


def run_relabel_summary(
    *, method_files, baseline_files, history_files, title: str, table: str, plot: str
) -> pd.DataFrame:
    summary = relabel_table(method_files, baseline_files, history_files)
    write_table(table, summary)
    save_figure(plot, relabel_bars(summary, title))
    return summary


def run_prune_summary(
    *, result_files, history_files, title: str, table: str, plot: str
) -> pd.DataFrame:
    frame = prune_table(result_files, history_files)
    write_table(table, frame)
    save_figure(plot, pruning_curves(frame, title))
    return frame


def run_rank_agreement(
    *, score_files, methods, seeds, title: str, table: str, plot: str
) -> pd.DataFrame:
    matrix = rank_agreement_table(score_files, methods, seeds)
    write_table(table, matrix.reset_index(names="method"))
    save_figure(plot, rank_agreement(matrix.to_numpy(), list(matrix.index), title))
    return matrix
