"""EL2N (Paul et al. 2021): error L2 norm of briefly trained fresh models.

score_n = mean_r ||softmax(f_r(x_n)) - onehot(y~_n)||_2 over R fresh models, each trained
`epochs` epochs with the pretraining recipe (noisy labels). Two fixes of the research code
(spec 8.9, 14.17): the norm is the *unsquared* L2 norm of the paper (the research code
summed squares), and each run's LR schedule (warm-up + cosine) is built for its own
`epochs`, not for the 200 pretraining epochs (which kept every 10-epoch run in warm-up).
Repeat r starts from key("el2n", r) and visits the data in the order of rng("el2n", r).
No test influence.

`fit_fresh` is also the retraining routine of `cl.py`: pretraining's `train.pretrain`
ties the initialisation and data order to the pretraining streams.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gex_core.batching import batch_index_stream
from gex_core.influence.scores import Scores
from gex_core.models import Model
from gex_core.train import (
    evaluate,
    make_eval_fn,
    make_train_step,
    raise_if_not_finite,
    run_steps,
    sgd,
    warmup_cosine_schedule,
)

Params = Any


def training_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The pretraining knobs `fit_fresh` takes (all but epochs), typed."""
    return dict(
        batch_size=int(recipe["batch_size"]),
        lr=float(recipe["lr"]),
        weight_decay=float(recipe["weight_decay"]),
        warmup_ratio=float(recipe["warmup_ratio"]),
        momentum=float(recipe["momentum"]),
    )


@functools.cache
def _optimizer_and_step(
    apply: Callable,
    lr: float,
    total_steps: int,
    warmup_ratio: float,
    momentum: float,
    weight_decay: float,
):
    """(tx, jitted step) for one schedule, cached so equal-length runs compile once."""
    tx = sgd(warmup_cosine_schedule(lr, total_steps, warmup_ratio), momentum)
    return tx, make_train_step(apply, tx, weight_decay)


def fit_fresh(
    model: Model,
    x_all: np.ndarray,
    y_all: np.ndarray,
    subset: np.ndarray,
    *,
    init_key: jax.Array,
    order_rng: np.random.Generator,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    momentum: float,
    stage: str,
) -> Params:
    """Train a fresh model on x_all[subset] with the pretraining recipe; return params.

    x_all: (N, H, W, C), y_all: (N,) labels, subset: (n,) indices into them. Runs
    epochs * ceil(n / batch_size) steps with the warm-up + cosine schedule built for
    exactly those steps. The step always receives the full arrays (one compilation for
    every subset whose run has the same number of steps).
    """
    subset = np.asarray(subset, np.int64)
    num_steps = epochs * math.ceil(subset.shape[0] / batch_size)
    tx, step_fn = _optimizer_and_step(
        model.apply, lr, num_steps, warmup_ratio, momentum, weight_decay
    )
    params = model.init(init_key)
    opt_state = tx.init(params)
    local = batch_index_stream(subset.shape[0], batch_size, order_rng)
    indices = (subset[i] for i in local)
    params, _, _, losses, _ = run_steps(
        step_fn,
        params,
        opt_state,
        jnp.asarray(x_all),
        jnp.asarray(y_all),
        indices,
        num_steps,
    )
    hparams = dict(epochs=epochs, batch_size=batch_size, lr=lr, n=subset.shape[0])
    raise_if_not_finite(losses, stage, 0, hparams)
    return params


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) -> (N, C) row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def error_l2_norm(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """logits: (N, C), labels: (N,) int -> ||softmax(logits) - onehot(labels)||_2 (N,)."""
    probs = softmax(logits)
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
) -> Scores:
    """Mean EL2N over one repeat per (init key, order rng) pair -> self influence (N,)."""
    if len(init_keys) != len(order_rngs) or not init_keys:
        raise ValueError("el2n needs one or more repeats, one init key and rng each")
    everyone = np.arange(x_train.shape[0])
    eval_fn = make_eval_fn(model.apply)
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
            **training_recipe(recipe),
        )
        _, logits = evaluate(eval_fn, params, x_train, y_train, eval_batch_size)
        norms.append(error_l2_norm(logits, y_train))
    return Scores(self_influence=np.mean(norms, axis=0))


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"repeats": int (5), "epochs": int (10)}."""
    repeats = int(hp.get("repeats", 5))
    data = inputs.data
    return el2n_scores(
        inputs.model,
        data.x_train,
        data.y_train,
        init_keys=[inputs.key("el2n", r) for r in range(repeats)],
        order_rngs=[inputs.rng("el2n", r) for r in range(repeats)],
        epochs=int(hp.get("epochs", 10)),
        recipe=inputs.recipe,
        eval_batch_size=inputs.eval_batch_size,
    )
