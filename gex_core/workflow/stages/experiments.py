"""What the scores are for: relabel flagged samples, prune the training set, retrain.

Every retraining starts from the pretraining's initialisation (jax_key(seed, "init")) and
batch order stream, with the pretraining recipe (epochs, schedule, augmentation, BN
re-estimate), so relabel, oracle and pruning runs of one seed differ only in their
training targets or subset: the paired comparison the research code makes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gex_core.evaluation.prune import kept_indices, num_pruned
from gex_core.evaluation.relabel import (
    flag_quality,
    hard_targets,
    otsu_threshold,
    predicted_targets,
    soft_targets,
)
from gex_core.training.recipes import fit_fresh, training_recipe
from gex_core.training.seeds import host_rng, jax_key
from gex_core.training.steps import evaluate, make_eval_fn
from gex_core.workflow.artifacts import load_scores
from gex_core.workflow.io import read_npz, write_json
from gex_core.workflow.method_inputs import MethodInputs
from gex_core.workflow.stages.predictions import pretrained_probabilities

RELABEL_BASELINES = ("oracle", "predicted")


def retrain_test_accuracy(
    inputs: MethodInputs, targets: np.ndarray, subset: np.ndarray, stage: str
) -> float:
    """Test accuracy of a model trained from the pretraining's initialisation on
    x_train[subset] with `targets` (N,) int or (N, C) distributions."""
    data = inputs.data
    params = fit_fresh(
        inputs.model,
        data.x_train,
        targets,
        subset,
        init_key=jax_key(inputs.seed, "init"),
        order_rng=host_rng(inputs.seed, "pretrain_order"),
        epochs=int(inputs.recipe["epochs"]),
        stage=stage,
        checkpointer=inputs.checkpointer,
        **training_recipe(inputs.recipe),
    )
    eval_fn = make_eval_fn(inputs.model.apply)
    _, logits = evaluate(
        eval_fn, params, data.x_test, data.y_test, inputs.eval_batch_size
    )
    return float((logits.argmax(axis=1) == data.y_test).mean())


def run_relabel(
    *,
    inputs: MethodInputs,
    method: str,
    scores_path: str,
    mode: str,
    graded: bool,
    outputs: Mapping[str, str],
) -> dict:
    """Flag samples above the Otsu threshold of `method`'s self-influence, relabel them
    (`hard` or `soft`), retrain, and write outputs["result"] (JSON): the threshold, the
    number flagged and the test accuracy; when the run injected its noise (graded),
    also the flagged set's precision and recall against the noise mask and how many
    flagged labels the new targets fix or break."""
    scores = load_scores(scores_path).self_influence
    labels = read_npz(inputs.labels_path, ("noisy", "clean", "mask"))
    noisy, clean, mask = labels["noisy"], labels["clean"], labels["mask"].astype(bool)
    probs = pretrained_probabilities(inputs)
    threshold = otsu_threshold(scores)
    flagged = scores > threshold  # flag_above_otsu, keeping the threshold for the JSON
    if mode == "soft":
        targets = soft_targets(probs, noisy, flagged)
        new_labels = np.where(flagged, targets.argmax(axis=1), noisy)
    elif mode == "hard":
        targets = new_labels = hard_targets(probs, noisy, flagged)
    else:
        raise ValueError(f"unknown relabel mode {mode!r}; known: hard, soft")
    everyone = np.arange(noisy.shape[0])
    if graded:
        quality = {
            **flag_quality(flagged, mask),
            "fixed": int((flagged & mask & (new_labels == clean)).sum()),
            "broken": int((flagged & ~mask & (new_labels != clean)).sum()),
        }
    else:
        quality = {
            "num_flagged": int(flagged.sum()),
            "changed": int((flagged & (new_labels != noisy)).sum()),
        }
    result = {
        "method": method,
        "seed": inputs.seed,
        "mode": mode,
        "threshold": float(threshold),
        **quality,
        "test_acc": retrain_test_accuracy(
            inputs, targets, everyone, f"relabel {method}"
        ),
    }
    write_json(outputs["result"], result)
    return result


def run_relabel_baseline(
    *, inputs: MethodInputs, setting: str, outputs: Mapping[str, str]
) -> dict:
    """`oracle`: retrain on the clean labels; `predicted`: retrain with every sample
    relabeled by the pretrained model's predicted distribution (the research code's
    final version). Writes outputs["result"] (JSON)."""
    labels = read_npz(inputs.labels_path, ("clean",))
    if setting == "oracle":
        targets = labels["clean"]
    elif setting == "predicted":
        targets = predicted_targets(pretrained_probabilities(inputs))
    else:
        raise ValueError(
            f"unknown relabel baseline {setting!r}; known: {RELABEL_BASELINES}"
        )
    everyone = np.arange(labels["clean"].shape[0])
    result = {
        "setting": setting,
        "seed": inputs.seed,
        "test_acc": retrain_test_accuracy(inputs, targets, everyone, setting),
    }
    write_json(outputs["result"], result)
    return result


def run_prune(
    *,
    inputs: MethodInputs,
    method: str,
    scores_path: str,
    fraction: float,
    order: str,
    graded: bool,
    outputs: Mapping[str, str],
) -> dict:
    """Remove `fraction` of the training set by `method`'s self-influence (`order`
    lowest or highest first), retrain on the rest with the run's training labels, and
    write outputs["result"] (JSON; with injected noise (graded) also how many of the
    pruned labels were noisy)."""
    scores = load_scores(scores_path).self_influence
    mask = read_npz(inputs.labels_path, ("mask",))["mask"].astype(bool)
    removed = num_pruned(fraction, scores.shape[0])
    kept = kept_indices(scores, removed, order)
    pruned = np.setdiff1d(np.arange(scores.shape[0]), kept)
    result = {
        "method": method,
        "seed": inputs.seed,
        "fraction": fraction,
        "order": order,
        "num_pruned": int(removed),
        **({"noisy_pruned": int(mask[pruned].sum())} if graded else {}),
        "test_acc": retrain_test_accuracy(
            inputs, inputs.data.y_train, kept, f"prune {method} {fraction}"
        ),
    }
    write_json(outputs["result"], result)
    return result
