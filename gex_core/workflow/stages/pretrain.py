"""Pretraining stage: noisy labels in; model, trajectory, record, losses, the training
set's predicted probabilities, history out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from gex_core.api.training import train_model
from gex_core.evaluation.figures import learning_curve
from gex_core.training.devices import data_mesh, describe
from gex_core.training.hooks import log_to_stderr
from gex_core.training.models import num_params
from gex_core.training.recipes import DEFAULT_TRAINING
from gex_core.training.steps import evaluate, make_eval_fn
from gex_core.workflow.artifacts import read_noisy_dataset
from gex_core.workflow.checkpoints import save_params
from gex_core.workflow.costs import timed_forward_pass
from gex_core.workflow.io import save_figure, write_npz, write_table
from gex_core.workflow.resume import NO_RESUME, Resume
from gex_core.workflow.stages.predictions import write_predictions


def run_pretraining(
    *,
    data_path: str,
    model_name: str,
    labels_path: str,
    seed: int,
    recipe: Mapping[str, Any],
    eval_batch_size: int,
    outputs: Mapping[str, str],
    resume: Resume = NO_RESUME,
) -> None:
    """outputs: model, trajectory, record, losses, predictions, history, curve (file
    paths)."""
    data = read_noisy_dataset(data_path, labels_path)
    noisy = data.y_train
    print(f"local devices: {describe(data_mesh())} (data-parallel)")
    trained = train_model(
        data.x_train,
        noisy,
        data.x_test,
        data.y_test,
        model=model_name,
        num_classes=data.num_classes,
        seed=seed,
        eval_batch_size=eval_batch_size,
        log=log_to_stderr,
        checkpointer=resume,
        **{key: recipe[key] for key in DEFAULT_TRAINING},
    )
    model, result = trained.model, trained.result
    print(f"{model_name}: {num_params(result.params)} parameters")
    eval_fn = make_eval_fn(model.apply)
    train_loss, train_logits = evaluate(
        eval_fn, result.params, data.x_train, noisy, eval_batch_size
    )
    test_loss, _ = evaluate(
        eval_fn, result.params, data.x_test, data.y_test, eval_batch_size
    )
    forward_s = timed_forward_pass(
        model, result.params, data.x_train, noisy, eval_batch_size
    )

    save_params(outputs["model"], result.params)
    save_params(outputs["trajectory"], [params for _, params in result.trajectory])
    write_npz(
        outputs["record"],
        last_loss=result.record.last_loss,
        forgetting=result.record.forgetting,
        learned=result.record.learned,
        trajectory_epochs=np.array([epoch for epoch, _ in result.trajectory]),
    )
    write_npz(
        outputs["losses"],
        train=train_loss,
        test=test_loss,
        forward_pass_seconds=np.array(forward_s),
    )
    # the label-issue tables' suggestions and the relabel experiment's targets
    write_predictions(outputs["predictions"], train_logits)
    history = pd.DataFrame(result.history)
    write_table(outputs["history"], history)
    title = f"{model_name}, seed {seed}"
    save_figure(outputs["curve"], learning_curve(history, title))
