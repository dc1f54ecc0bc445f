"""Label-issue tables and galleries: per method and seed, and per method over seeds.

Labels are written as class names where the data set has them (image folders), and
each row names its image file (relative to data_dir) where the images came from files.
The suggested label is the pretrained model's most probable other class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gex_core.evaluation.figures import score_gallery
from gex_core.evaluation.label_issues import (
    label_issue_table,
    seed_aggregate,
    with_names,
)
from gex_core.workflow.artifacts import load_scores, read_dataset
from gex_core.workflow.io import read_npz, save_figure, write_table


def seed_issue_table(
    labels_path: str, scores_path: str, predictions_path: str, graded: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """(one seed's label_issue_table with integer labels, its (N, C) probabilities);
    graded (the noise was injected): with the true labels."""
    labels = read_npz(labels_path, ("noisy", "clean"))
    scores = load_scores(scores_path).self_influence
    probs = read_npz(predictions_path, ("train",))["train"]
    if probs.shape[0] != scores.shape[0] or labels["noisy"].shape != scores.shape:
        raise ValueError(
            f"{scores_path}: {scores.shape[0]} scores, but {labels_path} has "
            f"{labels['noisy'].shape[0]} labels and {predictions_path} "
            f"{probs.shape[0]} predictions"
        )
    true = labels["clean"] if graded else None
    return label_issue_table(scores, labels["noisy"], probs, true=true), probs


def gallery_title(method: str, seed: int | str) -> str:
    """The title of a method's and seed's gallery."""
    return (
        f"{method}, seed {seed}: highest self-influence, given \u2192 suggested label"
    )


def run_label_issues(
    *,
    data_path: str,
    labels_path: str,
    scores_path: str,
    predictions_path: str,
    graded: bool,
    count: int,
    title: str,
    table_path: str,
    gallery_path: str,
) -> pd.DataFrame:
    """One method and seed: the label-issue table (TSV, most suspicious first) and a
    gallery of its top `count` images, given -> suggested label."""
    data = read_dataset(data_path)
    table, _ = seed_issue_table(labels_path, scores_path, predictions_path, graded)
    top = table.head(count)
    rows = top["index"].to_numpy()
    figure = score_gallery(
        data.x_train[rows],
        top["given_label"].to_numpy(),
        top["suggested_label"].to_numpy(),
        top["score"].to_numpy(),
        title,
        true=top["true_label"].to_numpy() if graded else None,
        class_names=data.class_names,
    )
    named = with_names(table, data.class_names, data.train_files)
    write_table(table_path, named)
    save_figure(gallery_path, figure, trim=False)
    print(f"{int(table.flagged.sum())} of {len(table)} training samples flagged")
    return named


def run_label_issue_summary(
    *,
    data_path: str,
    labels_paths: Sequence[str],
    scores_paths: Sequence[str],
    predictions_paths: Sequence[str],
    graded: bool,
    top: int,
    table_path: str,
    top_path: str,
) -> pd.DataFrame:
    """One method over seeds (the i-th files of each list belong to one seed): the
    aggregated label-issue table, and its first `top` rows for the report."""
    data = read_dataset(data_path)
    tables, probs = [], []
    for files in zip(labels_paths, scores_paths, predictions_paths, strict=True):
        table, p = seed_issue_table(*files, graded)
        tables.append(table)
        probs.append(p)
    true = read_npz(labels_paths[0], ("clean",))["clean"] if graded else None
    aggregated = with_names(
        seed_aggregate(tables, probs, true), data.class_names, data.train_files
    )
    write_table(table_path, aggregated)
    write_table(top_path, aggregated.head(top))
    return aggregated
