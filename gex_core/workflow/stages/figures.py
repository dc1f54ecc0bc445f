"""Per-method figures a user looks at: which training images drive a test prediction
(the gallery of what a method flags is drawn with its label-issue table)."""

from __future__ import annotations

import numpy as np

from gex_core.evaluation.figures import influence_examples
from gex_core.workflow.artifacts import load_query_indices, load_scores, read_dataset
from gex_core.workflow.io import read_npz, save_figure


def top_indices(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` largest values, largest first (ties: smaller index)."""
    order = np.lexsort((np.arange(values.shape[0]), -values))
    return order[: min(count, values.shape[0])]


def run_examples(
    *,
    data_path: str,
    labels_path: str,
    scores_path: str,
    queries: int,
    per_side: int,
    title: str,
    output: str,
) -> None:
    """For the first `queries` test samples of the kernel's query set: the `per_side`
    most helpful (largest kernel value) and most harmful (smallest) training images."""
    data = read_dataset(data_path)
    labels = read_npz(labels_path, ("noisy", "clean"))
    kernel = load_scores(scores_path).kernel
    if kernel is None:
        raise ValueError(f"{scores_path} holds no train x test kernel")
    query_idx = load_query_indices(scores_path)
    shown = np.arange(min(queries, kernel.shape[1]))
    helpful = np.stack([top_indices(kernel[:, j], per_side) for j in shown])
    harmful = np.stack([top_indices(-kernel[:, j], per_side) for j in shown])
    value = np.take_along_axis(kernel[:, shown].T, helpful, axis=1)
    harm_value = np.take_along_axis(kernel[:, shown].T, harmful, axis=1)
    tests = query_idx[shown]
    figure = influence_examples(
        data.x_test[tests],
        data.y_test[tests],
        data.y_test[tests],
        data.x_train[helpful],
        labels["noisy"][helpful],
        labels["clean"][helpful],
        value,
        data.x_train[harmful],
        labels["noisy"][harmful],
        labels["clean"][harmful],
        harm_value,
        title,
        class_names=data.class_names,
    )
    save_figure(output, figure, trim=False)
