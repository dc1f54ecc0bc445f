"""The pretrained model's class probabilities on the training images: what the relabel
experiment relabels with and the label-issue tables suggest from."""

from __future__ import annotations

import numpy as np

from gex_core.training.losses import softmax
from gex_core.training.steps import evaluate, make_eval_fn
from gex_core.workflow.io import write_npz
from gex_core.workflow.method_inputs import MethodInputs


def pretrained_probabilities(inputs: MethodInputs) -> np.ndarray:
    """Softmax of the pretrained model on the training images (N, C), evaluation mode."""
    data = inputs.data
    eval_fn = make_eval_fn(inputs.model.apply)
    _, logits = evaluate(
        eval_fn, inputs.params, data.x_train, data.y_train, inputs.eval_batch_size
    )
    return softmax(logits)


def write_predictions(path: str, train_logits: np.ndarray) -> np.ndarray:
    """Write the pretrained model's training-set probabilities, float64 (N, C), as
    `train` of the .npz at path (the pretraining job, from its final evaluation's
    logits (N, C))."""
    probs = np.asarray(softmax(train_logits), np.float64)
    write_npz(path, train=probs)
    return probs
