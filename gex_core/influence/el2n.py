"""EL2N (Paul et al. 2021): error L2 norm of briefly trained fresh models.

score_n = mean_r ||softmax(f_r(x_n)) - onehot(y~_n)||_2 over R fresh models, each trained
`epochs` epochs with the pretraining recipe (noisy labels). Two fixes of the research code
(spec 8.9, 14.17): the norm is the *unsquared* L2 norm of the paper (the research code
summed squares), and each run's LR schedule (warm-up + cosine) is built for its own
`epochs`, not for the 200 pretraining epochs (which kept every 10-epoch run in warm-up).
Repeat r starts from key("el2n", r) and visits the data in the order of rng("el2n", r).
No test influence.

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from gex_core.influence.scores import Scores
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss
from gex_core.training.models import Model
from gex_core.training.recipes import fit_fresh, training_recipe
from gex_core.training.steps import evaluate, make_eval_fn

Params = Any


def error_l2_norm(
    logits: np.ndarray, labels: np.ndarray, loss: Loss = SOFTMAX_CROSS_ENTROPY
) -> np.ndarray:
    """logits: (N, C), labels: (N,) int -> ||p(logits) - onehot(labels)||_2 (N,), p the
    loss's class probabilities (softmax for cross-entropy)."""
    probs = loss.probabilities(logits)
    probs[np.arange(labels.shape[0]), labels] -= 1.0
    return np.linalg.norm(probs, axis=1)


def el2n_scores(
    model: Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    init_keys: list[jax.Array],
    order_rngs: list[np.random.Generator],
    epochs: int,
    recipe: Mapping[str, Any],
    eval_batch_size: int,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Scores:
    """Mean EL2N over one repeat per (init key, order rng) pair -> self influence (N,)."""
    if len(init_keys) != len(order_rngs) or not init_keys:
        raise ValueError("el2n needs one or more repeats, one init key and rng each")
    everyone = np.arange(x_train.shape[0])
    eval_fn = make_eval_fn(model.apply, loss)
    norms = []
    for key, rng in zip(init_keys, order_rngs, strict=True):
        params = fit_fresh(
            model,
            x_train,
            y_train,
            everyone,
            init_key=key,
            order_rng=rng,
            epochs=epochs,
            stage="el2n",
            loss=loss,
            **training_recipe(recipe),
        )
        _, logits = evaluate(eval_fn, params, x_train, y_train, eval_batch_size)
        norms.append(error_l2_norm(logits, y_train, loss))
    return Scores(self_influence=np.mean(norms, axis=0))


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"repeats": int (5), "epochs": int (10)}."""
    repeats = int(hp.get("repeats", 5))
    x_train, y_train = inputs.train_set
    return el2n_scores(
        inputs.model,
        x_train,
        y_train,
        init_keys=[inputs.key("el2n", r) for r in range(repeats)],
        order_rngs=[inputs.rng("el2n", r) for r in range(repeats)],
        epochs=int(hp.get("epochs", 10)),
        recipe=inputs.recipe,
        eval_batch_size=inputs.eval_batch_size,
        loss=inputs.loss,
    )
