"""Train a bundled model as the workflow's pretraining does."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from gex_core.training.hooks import NO_CHECKPOINTS, Checkpointer, Log, no_log
from gex_core.training.losses import Loss, get_loss
from gex_core.training.models import Model, make_model
from gex_core.training.recipes import DEFAULT_TRAINING, PretrainResult, pretrain


class TrainedModel(NamedTuple):
    """model: the network; result: its training (final params, trajectory, history,
    per-sample record); recipe: the training recipe used."""

    model: Model
    result: PretrainResult
    recipe: dict[str, Any]


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    model: str = "cnn",
    num_classes: int | None = None,
    loss: str | Loss = "softmax_cross_entropy",
    seed: int = 0,
    eval_batch_size: int = 512,
    log: Log = no_log,
    checkpointer: Checkpointer = NO_CHECKPOINTS,
    **recipe: Any,
) -> TrainedModel:
    """Train a bundled model (cnn, mlp, vgg, resnet18) on images x (N, H, W, C) and
    labels y (N,) from the seed's initialisation, as the workflow's pretraining
    (recipe: the knobs of DEFAULT_TRAINING); (x_test, y_test) is what its history reports."""
    unknown = sorted(set(recipe) - set(DEFAULT_TRAINING))
    if unknown:
        raise ValueError(
            f"unknown training option {', '.join(unknown)}; known: "
            f"{', '.join(DEFAULT_TRAINING)}"
        )
    recipe = {
        key: type(DEFAULT_TRAINING[key])(value)
        for key, value in {**DEFAULT_TRAINING, **recipe}.items()
    }
    classes = (
        int(max(y.max(), y_test.max())) + 1 if num_classes is None else num_classes
    )
    network = make_model(model, classes, tuple(x.shape[1:]))
    result = pretrain(
        network,
        x,
        y,
        x_test,
        y_test,
        seed=seed,
        eval_batch_size=eval_batch_size,
        loss=get_loss(loss),
        log=log,
        checkpointer=checkpointer,
        **recipe,
    )
    return TrainedModel(network, result, recipe)
