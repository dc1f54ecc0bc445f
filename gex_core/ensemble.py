"""Geometric-ensemble chains: repeated fine-tuning from the pretrained model (GEX).

A chain runs S stages from theta*. Each stage installs a fresh SGD (momentum, cosine LR
from ft_lr to 0 over ft_steps), optimises the training objective, and snapshots the
parameters as one member; the next stage continues from that snapshot. Chain c draws its
batches from host_rng(seed, "ensemble_order", c) and its augmentation from
jax_key(seed, "augment", c) alone, so a chain's members do not depend on how many chains
exist or how chains are grouped into jobs.

One job may run several chains (`run_chains`), in lockstep: step t of every chain, then
step t + 1. Sequentially (the default) each chain's step is the one-chain compiled step,
so a chain's members are bitwise those of a job running it alone. Batched, one compiled
step vmapped over the chains advances all of them: the same arithmetic up to float
rounding (vmapped convolutions are grouped convolutions, summed in another order), and
faster where one chain's step leaves the device idle (accelerators), slower on a CPU
(benchmarks/chain_batching.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from gex_core.batching import batch_index_stream
from gex_core.devices import data_mesh, replicate, replicated_jit
from gex_core.models import Model
from gex_core.resume import NO_RESUME, Resume
from gex_core.seeds import host_rng, jax_key
from gex_core.train import (
    Log,
    bn_refresh,
    evaluate,
    log_to_stderr,
    make_eval_fn,
    raise_if_not_finite,
    sgd,
    skip_batches,
    train_step_body,
)

Params = Any
# Steps between the points where a job may save its chains' state (`Resume.due`)
RESUME_CHUNK_STEPS = 10


class ChainResult(NamedTuple):
    """members: S parameter trees; train_losses: (S, N); test_losses: (S, N_te)."""

    members: list[Params]
    train_losses: np.ndarray
    test_losses: np.ndarray


class LaneProgram(NamedTuple):
    """How a job advances G chains ("lanes") together.

    pack: G per-chain pytrees -> the lanes' state; unpack: the inverse. step(params,
    opt_state, x_all, y_all, idx (G, B), keys (packed), step_number) -> (params,
    opt_state, per-sample losses (G, B)), every chain one training step on its own
    batch x_all[idx[g]].
    """

    pack: Callable[[list], Any]
    unpack: Callable[[Any], list]
    step: Callable[..., tuple[Any, Any, jax.Array]]


def stack_trees(trees: Sequence[Any]) -> Any:
    """G pytrees of one structure -> one pytree of (G, ...) arrays."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack_tree(tree: Any) -> list[Any]:
    """One pytree of (G, ...) arrays -> G pytrees."""
    count = jax.tree.leaves(tree)[0].shape[0]
    return [jax.tree.map(lambda leaf, g=g: leaf[g], tree) for g in range(count)]


def lane_program(
    apply: Callable,
    tx: optax.GradientTransformation,
    weight_decay: float,
    augment: str,
    mesh: Mesh | None,
    batched: bool,
) -> LaneProgram:
    """The training step of `train.make_train_step`, for G chains at once: called per
    chain (batched False: each chain's numbers are the one-chain job's, bitwise) or
    vmapped over the chains in one compiled step (batched True)."""
    body = train_step_body(apply, tx, weight_decay, augment, mesh)
    if not batched:
        single = jax.jit(body) if mesh is None else replicated_jit(body, mesh)

        def step_each(params, opt_state, x_all, y_all, idx, keys, step_number):
            outs = [
                single(p, o, x_all, y_all, i, k, step_number)
                for p, o, i, k in zip(params, opt_state, idx, keys, strict=True)
            ]
            return (
                [out.params for out in outs],
                [out.opt_state for out in outs],
                jnp.stack([out.losses for out in outs]),
            )

        return LaneProgram(list, list, step_each)

    vmapped = jax.vmap(body, in_axes=(0, 0, None, None, 0, 0, None))
    compiled = jax.jit(vmapped) if mesh is None else replicated_jit(vmapped, mesh)

    def step_all(params, opt_state, x_all, y_all, idx, keys, step_number):
        out = compiled(params, opt_state, x_all, y_all, idx, keys, step_number)
        return out.params, out.opt_state, out.losses

    return LaneProgram(stack_trees, unstack_tree, step_all)


def run_chains(
    model: Model,
    pretrained: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    chains: Sequence[int],
    stages: int,
    ft_lr: float,
    ft_steps: int,
    batch_size: int,
    weight_decay: float,
    momentum: float,
    eval_batch_size: int,
    augment: str = "none",
    bn_batches: int = 50,
    batched: bool = False,
    log: Log = log_to_stderr,
    mesh: Mesh | None = None,
    resume: Resume = NO_RESUME,
) -> list[ChainResult]:
    """Run the given chains in lockstep and evaluate every member's per-sample losses
    (noisy train labels); one result per chain, in the order given.

    Chain c's steps augment with jax_key(seed, "augment", c); batch-norm models
    re-estimate their statistics after every stage (bn_batches augmented batches of the
    chain's batch size from host_rng(seed, "bn_batches", c, stage)), before the
    snapshot. batched: advance the chains with one vmapped step (`lane_program`).
    Steps and evaluations are data-parallel over the mesh (default: every local
    device); the members do not depend on the number of devices beyond float rounding.
    resume: the chains' state (members so far, parameters and optimiser states) is
    saved every RESUME_CHUNK_STEPS steps when due; a run with saved state continues
    from it, with bitwise the same members and losses.
    """
    chains = [int(c) for c in chains]
    if not chains or len(set(chains)) != len(chains):
        raise ValueError(f"chains must be distinct chain numbers, got {chains}")
    hparams = dict(
        seed=seed,
        chains=chains,
        stages=stages,
        ft_lr=ft_lr,
        ft_steps=ft_steps,
        batch_size=batch_size,
        weight_decay=weight_decay,
    )
    tx = sgd(optax.cosine_decay_schedule(ft_lr, ft_steps), momentum)
    mesh = data_mesh() if mesh is None else mesh
    program = lane_program(
        model.train_forward, tx, weight_decay, augment, mesh, batched
    )
    eval_fn = make_eval_fn(model.apply)
    n_train, n_test = x_train.shape[0], x_test.shape[0]
    streams = [
        batch_index_stream(n_train, batch_size, host_rng(seed, "ensemble_order", c))
        for c in chains
    ]
    x_all, y_all = replicate((jnp.asarray(x_train), jnp.asarray(y_train)), mesh)
    keys = program.pack([jax_key(seed, "augment", c) for c in chains])
    start = replicate(pretrained, mesh)
    params = [start] * len(chains)
    opt_state = [replicate(tx.init(start), mesh)] * len(chains)
    members = [[] for _ in chains]
    train_losses = [[] for _ in chains]
    test_losses = [[] for _ in chains]
    first_stage, first_step = 0, 0

    def state_template(progress: dict) -> dict:
        done = progress["stage"]
        return dict(
            params=params,
            opt_state=opt_state,
            members=[[start] * done for _ in chains],
            train_losses=np.zeros((len(chains), done, n_train), np.float32),
            test_losses=np.zeros((len(chains), done, n_test), np.float32),
        )

    saved = resume.restore(state_template)
    if saved is not None:
        progress, state = saved
        first_stage, first_step = progress["stage"], progress["step"]
        params, opt_state = replicate((state["params"], state["opt_state"]), mesh)
        members = [list(m) for m in state["members"]]
        train_losses = [list(t) for t in state["train_losses"]]
        test_losses = [list(t) for t in state["test_losses"]]
        for stream in streams:
            skip_batches(stream, first_stage * ft_steps + first_step)

    def save(stage: int, step: int) -> None:
        done = len(members[0])
        resume.save(
            dict(stage=stage, step=step),
            dict(
                params=params,
                opt_state=opt_state,
                members=members,
                train_losses=np.asarray(train_losses, np.float32).reshape(
                    len(chains), done, n_train
                ),
                test_losses=np.asarray(test_losses, np.float32).reshape(
                    len(chains), done, n_test
                ),
            ),
        )

    for stage in range(first_stage, stages):
        step = first_step if stage == first_stage else 0
        if step == 0:
            opt_state = [replicate(tx.init(p), mesh) for p in params]
        lane_params, lane_opt = program.pack(params), program.pack(opt_state)
        while step < ft_steps:
            chunk = min(RESUME_CHUNK_STEPS, ft_steps - step)
            losses = []
            for step_number in range(
                stage * ft_steps + step, stage * ft_steps + step + chunk
            ):
                idx = np.stack([next(stream) for stream in streams])
                lane_params, lane_opt, step_losses = program.step(
                    lane_params, lane_opt, x_all, y_all, idx, keys, step_number
                )
                losses.append(step_losses)
            losses = np.asarray(jnp.stack(losses, axis=1))  # (G, chunk, B)
            for chain, chain_losses in zip(chains, losses, strict=True):
                raise_if_not_finite(
                    chain_losses, f"ensemble chain {chain} stage {stage}", step, hparams
                )
            step += chunk
            if step < ft_steps and resume.due():
                params, opt_state = (
                    program.unpack(lane_params),
                    program.unpack(lane_opt),
                )
                save(stage, step)
        params, opt_state = program.unpack(lane_params), program.unpack(lane_opt)
        for lane, chain in enumerate(chains):
            params[lane] = bn_refresh(
                model,
                params[lane],
                x_all,
                num_batches=bn_batches,
                batch_size=batch_size,
                rng=host_rng(seed, "bn_batches", chain, stage),
                key=jax_key(seed, "bn_batches", chain, stage),
                augment=augment,
                mesh=mesh,
            )
            tr_loss, _ = evaluate(
                eval_fn, params[lane], x_train, y_train, eval_batch_size, mesh
            )
            te_loss, te_logits = evaluate(
                eval_fn, params[lane], x_test, y_test, eval_batch_size, mesh
            )
            log(
                f"chain {chain} stage {stage + 1}/{stages}: train loss "
                f"{tr_loss.mean():.4f} test loss {te_loss.mean():.4f} "
                f"test acc {(te_logits.argmax(1) == y_test).mean():.4f}"
            )
            members[lane].append(params[lane])
            train_losses[lane].append(tr_loss)
            test_losses[lane].append(te_loss)
        if stage + 1 < stages and resume.due():
            save(stage + 1, 0)
    return [
        ChainResult(
            members[lane], np.stack(train_losses[lane]), np.stack(test_losses[lane])
        )
        for lane in range(len(chains))
    ]


def run_chain(
    model: Model,
    pretrained: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    chain: int,
    **recipe: Any,
) -> ChainResult:
    """One chain: `run_chains` with chains=[chain] (same keyword arguments)."""
    return run_chains(
        model, pretrained, x_train, y_train, x_test, y_test, chains=[chain], **recipe
    )[0]
