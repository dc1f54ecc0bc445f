"""Geometric-ensemble chains: repeated fine-tuning from the pretrained model (GEX).

A chain runs S stages from theta*. Each stage installs a fresh SGD (momentum, cosine LR
from ft_lr to 0 over ft_steps), optimises the training objective, and snapshots the
parameters as one member; the next stage continues from that snapshot. Chain c draws its
batches from host_rng(seed, "ensemble_order", c) alone, so a chain's members do not depend
on how many chains exist or how chains are grouped into jobs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from gex_core.batching import batch_index_stream
from gex_core.devices import data_mesh, replicate
from gex_core.models import Model
from gex_core.resume import NO_RESUME, Resume
from gex_core.seeds import host_rng, jax_key
from gex_core.train import (
    Log,
    bn_refresh,
    evaluate,
    log_to_stderr,
    make_eval_fn,
    make_train_step,
    raise_if_not_finite,
    run_steps,
    sgd,
    skip_batches,
)

Params = Any
# Steps between the points where a chain may save its state (`Resume.due`)
RESUME_CHUNK_STEPS = 10


class ChainResult(NamedTuple):
    """members: S parameter trees; train_losses: (S, N); test_losses: (S, N_te)."""

    members: list[Params]
    train_losses: np.ndarray
    test_losses: np.ndarray


def run_chain(
    model: Model,
    pretrained: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    chain: int,
    stages: int,
    ft_lr: float,
    ft_steps: int,
    batch_size: int,
    weight_decay: float,
    momentum: float,
    eval_batch_size: int,
    augment: str = "none",
    bn_batches: int = 50,
    log: Log = log_to_stderr,
    mesh: Mesh | None = None,
    resume: Resume = NO_RESUME,
) -> ChainResult:
    """Run one chain and evaluate every member's per-sample losses (noisy train labels).

    Steps augment with jax_key(seed, "augment", chain); batch-norm models re-estimate
    their statistics after every stage (bn_batches augmented batches of the chain's
    batch size from host_rng(seed, "bn_batches", chain, stage)), before the snapshot.
    Steps and evaluations are data-parallel over the mesh (default: every local
    device); the members do not depend on the number of devices beyond float rounding.
    resume: the chain's state (members so far, parameters and optimiser state) is saved
    every RESUME_CHUNK_STEPS steps when due; a run with saved state continues from it,
    with bitwise the same members and losses.
    """
    hparams = dict(
        seed=seed,
        chain=chain,
        stages=stages,
        ft_lr=ft_lr,
        ft_steps=ft_steps,
        batch_size=batch_size,
        weight_decay=weight_decay,
    )
    tx = sgd(optax.cosine_decay_schedule(ft_lr, ft_steps), momentum)
    mesh = data_mesh() if mesh is None else mesh
    step_fn = make_train_step(model.train_forward, tx, weight_decay, augment, mesh)
    eval_fn = make_eval_fn(model.apply)
    indices = batch_index_stream(
        x_train.shape[0], batch_size, host_rng(seed, "ensemble_order", chain)
    )
    x_all, y_all = replicate((jnp.asarray(x_train), jnp.asarray(y_train)), mesh)
    aug_key = jax_key(seed, "augment", chain)
    params = replicate(pretrained, mesh)
    opt_state = replicate(tx.init(params), mesh)
    members, train_losses, test_losses = [], [], []
    first_stage, first_step = 0, 0

    def state_template(progress: dict) -> dict:
        done = progress["stage"]
        return dict(
            params=params,
            opt_state=opt_state,
            members=[params] * done,
            train_losses=np.zeros((done, x_train.shape[0]), np.float32),
            test_losses=np.zeros((done, x_test.shape[0]), np.float32),
        )

    saved = resume.restore(state_template)
    if saved is not None:
        progress, state = saved
        first_stage, first_step = progress["stage"], progress["step"]
        params, opt_state = replicate((state["params"], state["opt_state"]), mesh)
        members = list(state["members"])
        train_losses = list(state["train_losses"])
        test_losses = list(state["test_losses"])
        skip_batches(indices, first_stage * ft_steps + first_step)

    def save(stage: int, step: int) -> None:
        resume.save(
            dict(stage=stage, step=step),
            dict(
                params=params,
                opt_state=opt_state,
                members=members,
                train_losses=np.asarray(train_losses, np.float32).reshape(
                    len(members), x_train.shape[0]
                ),
                test_losses=np.asarray(test_losses, np.float32).reshape(
                    len(members), x_test.shape[0]
                ),
            ),
        )

    for stage in range(first_stage, stages):
        step = first_step if stage == first_stage else 0
        if step == 0:
            opt_state = replicate(tx.init(params), mesh)
        while step < ft_steps:
            chunk = min(RESUME_CHUNK_STEPS, ft_steps - step)
            params, opt_state, _, losses, _ = run_steps(
                step_fn,
                params,
                opt_state,
                x_all,
                y_all,
                indices,
                chunk,
                aug_key,
                stage * ft_steps + step,
            )
            raise_if_not_finite(
                losses, f"ensemble chain {chain} stage {stage}", step, hparams
            )
            step += chunk
            if step < ft_steps and resume.due():
                save(stage, step)
        params = bn_refresh(
            model,
            params,
            x_all,
            num_batches=bn_batches,
            batch_size=batch_size,
            rng=host_rng(seed, "bn_batches", chain, stage),
            key=jax_key(seed, "bn_batches", chain, stage),
            augment=augment,
            mesh=mesh,
        )
        tr_loss, _ = evaluate(eval_fn, params, x_train, y_train, eval_batch_size, mesh)
        te_loss, te_logits = evaluate(
            eval_fn, params, x_test, y_test, eval_batch_size, mesh
        )
        log(
            f"chain {chain} stage {stage + 1}/{stages}: train loss {tr_loss.mean():.4f} "
            f"test loss {te_loss.mean():.4f} "
            f"test acc {(te_logits.argmax(1) == y_test).mean():.4f}"
        )
        members.append(params)
        train_losses.append(tr_loss)
        test_losses.append(te_loss)
        if stage + 1 < stages and resume.due():
            save(stage + 1, 0)
    return ChainResult(members, np.stack(train_losses), np.stack(test_losses))
