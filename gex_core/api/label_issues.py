"""Find label issues in a labelled data set: train the bundled model, score every
training sample with an influence method, and suggest a label for each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gex_core.api.ensemble import fit_geometric_ensemble
from gex_core.api.scoring import score
from gex_core.api.training import TrainedModel, train_model
from gex_core.data.datasets import Dataset, heldout_split, normalise_images
from gex_core.evaluation.label_issues import label_issue_table, with_names
from gex_core.influence.problem import Problem
from gex_core.influence.registry import get_method
from gex_core.training.hooks import Log, no_log
from gex_core.training.losses import Loss, get_loss
from gex_core.training.recipes import checkpoint_learning_rates
from gex_core.training.steps import evaluate, make_eval_fn


def trained_problem(
    trained: TrainedModel,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    loss: Loss,
    seed: int,
    eval_batch_size: int,
    member_losses: tuple[np.ndarray, np.ndarray] | None = None,
) -> Problem:
    """The influence problem of a model trained by `train_model`: its trajectory, the
    checkpoints' learning rates and the per-sample record come from the training."""
    result = trained.result
    epochs = np.array([epoch for epoch, _ in result.trajectory])
    history = pd.DataFrame(result.history)
    return Problem(
        trained.model,
        result.params,
        x,
        y,
        x_test,
        y_test,
        loss=loss,
        seed=seed,
        eval_batch_size=eval_batch_size,
        recipe=trained.recipe,
        trajectory=[params for _, params in result.trajectory],
        trajectory_lrs=checkpoint_learning_rates(
            history.epoch.to_numpy(), history.lr.to_numpy(), epochs
        ),
        record={
            "forgetting": result.record.forgetting,
            "learned": result.record.learned,
        },
        member_losses=member_losses,
    )


def scored_and_heldout(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    test_fraction: float,
    seed: int,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(rows of x scored, (x_train, y_train, x_test, y_test)) as float32 and int32:
    all rows and the given held-out data, or without it a stratified test_fraction of
    the rows held out. uint8 images are normalised as the workflow's
    (`normalise_images`)."""
    x = np.asarray(normalise_images(np.asarray(x)), np.float32)
    y = np.asarray(y, np.int32)
    rows = np.arange(y.shape[0])
    if x_test is None:
        rows, held = heldout_split(y, test_fraction, seed)
        x_test, y_test = x[held], y[held]
    x_test = normalise_images(np.asarray(x_test))
    held_out = (np.asarray(x_test, np.float32), np.asarray(y_test, np.int32))
    return rows, (x[rows], y[rows], *held_out)


def find_label_issues(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    test_fraction: float = 0.2,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    validation_fraction: float = 0.1,
    method: str = "gex",
    model: str = "cnn",
    loss: str | Loss = "softmax_cross_entropy",
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
    ensemble: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    eval_batch_size: int = 512,
    class_names: Sequence[str] | None = None,
    files: Sequence[str] | None = None,
    log: Log = no_log,
) -> pd.DataFrame:
    """Which labels of (x, y) look wrong, and what they should be.

    x: images (N, H, W, C) (uint8 ones normalised as the workflow does), y: labels
    (N,) as given; class_names (C,): write the label columns as names; files (N,): add
    each row's file (as `load_image_folder` gives both). Trains the bundled `model` on
    them (training: knobs of `training.recipes.DEFAULT_TRAINING`), scores every training sample with `method`
    (options: its knobs; for gex, ensemble: knobs of `fit_geometric_ensemble`, its
    ft_lr calibrated on the validation data by default) and returns one row per training
    sample, most suspicious first: index (row of x), given_label, suggested_label (the
    most probable other class under the trained model), suggested_probability, score,
    rank and flagged (score above the Otsu threshold, as the workflow's relabel
    experiment). Held-out data: (x_test, y_test), or without them a stratified
    `test_fraction` of (x, y) that is then held out, not scored; validation data (GEX's
    calibration and member check): (x_val, y_val), or without them a stratified
    `validation_fraction` of the rest (the same rows for every seed, as the workflow's
    split), also not scored.
    """
    loss = get_loss(loss)
    rows, (x_train, y_train, x_test, y_test) = scored_and_heldout(
        x, y, x_test, y_test, test_fraction, seed
    )
    if x_val is None:
        kept, held = heldout_split(y_train, validation_fraction, seed=0)
        x_val, y_val = x_train[held], y_train[held]
        rows, x_train, y_train = rows[kept], x_train[kept], y_train[kept]
    x_val = np.asarray(normalise_images(np.asarray(x_val)), np.float32)
    y_val = np.asarray(y_val, np.int32)
    trained = train_model(
        x_train,
        y_train,
        x_test,
        y_test,
        model=model,
        loss=loss,
        seed=seed,
        eval_batch_size=eval_batch_size,
        log=log,
        **(training or {}),
    )
    params = trained.result.params
    losses = None
    if "ensemble" in get_method(method).needs:
        carried = ("weight_decay", "momentum", "augment", "bn_batches")
        fitted = fit_geometric_ensemble(
            trained.model,
            params,
            x_train,
            y_train,
            x_val=x_val,
            y_val=y_val,
            x_test=x_test,
            y_test=y_test,
            loss=loss,
            seed=seed,
            eval_batch_size=eval_batch_size,
            log=log,
            **{**{k: trained.recipe[k] for k in carried}, **(ensemble or {})},
        )
        losses = fitted.kept_losses()
    problem = trained_problem(
        trained,
        x_train,
        y_train,
        x_test,
        y_test,
        loss=loss,
        seed=seed,
        eval_batch_size=eval_batch_size,
        member_losses=losses,
    )
    scores = score(problem, method, options).self_influence
    _, logits = evaluate(
        make_eval_fn(trained.model.apply, loss),
        params,
        x_train,
        y_train,
        eval_batch_size,
    )
    table = label_issue_table(scores, y_train, loss.probabilities(logits))
    table["index"] = rows[table["index"].to_numpy()]
    return with_names(table, class_names, files)


def load_image_folder(root: str | Path, test_fraction: float = 0.2) -> Dataset:
    """Images in class folders, as the workflow's `dataset: folder` reads them:
    root/train/<class>/*.png|jpg|jpeg and root/test/<class>/... (or, without a test
    folder, a fixed stratified test_fraction held out). Returns a Dataset: uint8
    (N, H, W, C) images, int32 labels, class_names and train_files (relative to root);
    a bad folder or image raises a DataFileError naming it."""
    from gex_core.data.load import load_dataset

    return load_dataset("folder", root, test_fraction=test_fraction)
