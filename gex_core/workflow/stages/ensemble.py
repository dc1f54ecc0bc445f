"""Ensemble stage: a job's GEX chains; member losses and member parameters out."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gex_core.api.ensemble import fit_geometric_ensemble
from gex_core.data.datasets import Dataset
from gex_core.training.devices import data_mesh, describe
from gex_core.training.hooks import log_to_stderr
from gex_core.training.models import Model, make_model, variable_shapes
from gex_core.workflow.artifacts import read_noisy_dataset
from gex_core.workflow.checkpoints import load_params, load_params_list, save_params
from gex_core.workflow.costs import timed_forward_pass
from gex_core.workflow.io import read_json, write_npz
from gex_core.workflow.resume import NO_RESUME, Resume


def chain_ft_lr(recipe: Mapping[str, Any], calibration_path: str | None) -> float:
    """The configured fine-tuning LR, or with ft_lr auto the calibrated one."""
    if recipe["ft_lr"] != "auto":
        return float(recipe["ft_lr"])
    if calibration_path is None:
        raise ValueError("ensemble.ft_lr is auto but no calibration record was given")
    ft_lr = float(read_json(calibration_path)["ft_lr"])
    print(f"ft_lr {ft_lr} (calibrated: {calibration_path})")
    return ft_lr


def read_pilots(
    calibration_path: str | None,
    pilots_path: str | None,
    template: Any,
    model_name: str,
) -> dict[int, Any]:
    """chain -> the calibration's pilot at the chosen rate (that chain's first member),
    from the calibration's record and pilots file; none without a calibration."""
    if calibration_path is None or pilots_path is None:
        return {}
    chains = [int(c) for c in read_json(calibration_path).get("first_members", [])]
    if not chains:
        return {}
    members = load_params_list(pilots_path, template, model_name)
    if len(members) != len(chains):
        raise ValueError(
            f"{pilots_path} holds {len(members)} pilots but {calibration_path} names "
            f"{len(chains)} ({chains}): rerun the calibration"
        )
    return dict(zip(chains, members, strict=True))


def fine_tuning(
    recipe: Mapping[str, Any], pretrain_recipe: Mapping[str, Any]
) -> dict[str, Any]:
    """The knobs of `api.ensemble.fine_tuning_recipe` for the chains and the
    calibration pilots, from the chain recipe and the pretraining config (weight decay,
    momentum and batch-norm batches carry over)."""
    return dict(
        stages=recipe["stages"],
        ft_steps=recipe["ft_steps"],
        batch_size=recipe["batch_size"],
        weight_decay=pretrain_recipe["weight_decay"],
        momentum=pretrain_recipe["momentum"],
        augment=recipe["augment"],
        bn_batches=pretrain_recipe["bn_batches"],
    )


def load_pretrained_run(
    data_path: str, labels_path: str, model_name: str, model_path: str
) -> tuple[Dataset, Model, Any]:
    """The data with the given (noisy) training labels, the model and its pretrained
    parameters, as the ensemble and calibration jobs start."""
    data = read_noisy_dataset(data_path, labels_path)
    model = make_model(model_name, data.num_classes, data.x_train.shape[1:])
    pretrained = load_params(model_path, variable_shapes(model), model_name)
    return data, model, pretrained


def validation_split(data, data_path: str) -> tuple[np.ndarray, np.ndarray]:
    """(x_val, y_val) of a stored split; a file written before validation splits
    existed is named."""
    if data.x_val is None:
        raise ValueError(
            f"{data_path} has no validation split (x_val, y_val); it was written by an "
            "older version: delete it and rerun"
        )
    return data.x_val, data.y_val


def run_ensemble_chains(
    *,
    data_path: str,
    model_name: str,
    labels_path: str,
    model_path: str,
    seed: int,
    chains: Sequence[int],
    recipe: Mapping[str, Any],
    pretrain_recipe: Mapping[str, Any],
    eval_batch_size: int,
    outputs: Mapping[str, str],
    calibration_path: str | None = None,
    pilots_path: str | None = None,
    batched: bool = False,
    resume: Resume = NO_RESUME,
) -> None:
    """Run the given chains in one job (`ensemble.run_chains`).

    recipe: the chain recipe (ft_lr, ft_steps, batch_size, stages, augment);
    pretrain_recipe: the pretraining config (weight decay, momentum and batch-norm
    batches carry over). outputs: losses (.npz: train_losses (G*S, N), test_losses
    (G*S, N_te), val_accuracy (G*S,) on the validation split, kept (G*S,) bool (not
    collapsed), chain-major; pretrained_val_accuracy; chains (G,); the job's
    compute_seconds and forward_pass_seconds, timed in this process), members (G*S
    parameter trees, chain-major). With a calibration, chains whose pilot it kept
    start from that pilot, their first member (`read_pilots`)."""
    data, model, pretrained = load_pretrained_run(
        data_path, labels_path, model_name, model_path
    )
    print(f"local devices: {describe(data_mesh())} (data-parallel)")
    print(
        f"chains {list(chains)}, "
        + ("batched (vmapped)" if batched else "one step each")
    )
    x_val, y_val = validation_split(data, data_path)
    start = time.perf_counter()
    ensemble = fit_geometric_ensemble(
        model,
        pretrained,
        data.x_train,
        data.y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=data.x_test,
        y_test=data.y_test,
        ft_lr=chain_ft_lr(recipe, calibration_path),
        chains=chains,
        member_check=recipe["member_check"],
        seed=seed,
        eval_batch_size=eval_batch_size,
        batched=batched,
        log=log_to_stderr,
        checkpointer=resume,
        pilots=read_pilots(calibration_path, pilots_path, pretrained, model_name),
        **fine_tuning(recipe, pretrain_recipe),
    )
    compute_s = time.perf_counter() - start
    forward_s = timed_forward_pass(
        model, pretrained, data.x_train, data.y_train, eval_batch_size
    )
    save_params(outputs["members"], ensemble.members)
    write_npz(
        outputs["losses"],
        train_losses=ensemble.train_losses.astype(np.float32),
        test_losses=ensemble.heldout_losses.astype(np.float32),
        val_accuracy=ensemble.val_accuracy,
        pretrained_val_accuracy=np.array(ensemble.pretrained_val_accuracy),
        kept=ensemble.kept,
        chains=np.asarray(chains, np.int64),
        compute_seconds=np.array(compute_s),
        forward_pass_seconds=np.array(forward_s),
    )
