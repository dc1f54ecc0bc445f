"""The one training loop: pretraining, retraining from scratch and the GEX ensemble
chains all run `fit`.

`fit` advances an explicit `FitState` (params, optimiser state, step, augmentation
key) by a compiled step (`gex_core.training.steps`) over batches it draws from the
caller's stream, in chunks. After each chunk it checks the losses for non-finite values
and hands the chunk to the caller's hooks (bookkeeping, evaluation, snapshots, a new
optimiser at a stage boundary, logging), then asks the checkpointer whether to save.
A run restored from a checkpoint redraws the batches it already took, so its results
are bitwise those of an uninterrupted one.

Several models ("lanes", e.g. ensemble chains) can advance in lockstep: a `Program`
packs the lanes' states into what its step takes, either one compiled single-model step
per lane (bitwise the one-lane numbers) or one step vmapped over the lanes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from gex_core.training.devices import replicated_jit
from gex_core.training.hooks import NO_CHECKPOINTS, Checkpointer
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss
from gex_core.training.steps import train_step_body

Params = Any


class FitState(NamedTuple):
    """params and opt_state of the model (or of the lanes, packed by the `Program`),
    the number of steps taken, and the augmentation key (per lane, packed) that step t
    folds t into."""

    params: Params
    opt_state: Any
    step: int
    key: jax.Array


class Chunk(NamedTuple):
    """Steps first .. first + T - 1 of a fit. idx, losses, correct: (T, B), or
    (T, G, B) for G lanes; losses and correct of each batch before its update."""

    first: int
    idx: np.ndarray
    losses: np.ndarray
    correct: np.ndarray


def identity(value: Any) -> Any:
    return value


class Program(NamedTuple):
    """step(params, opt_state, x_all, y_all, idx, key, step_number) -> StepOutput-like
    (params, opt_state, losses, correct); pack: the unpacked state (a model's, or a
    list of the lanes') -> what step takes; unpack: its inverse."""

    step: Callable[..., tuple]
    pack: Callable[[Any], Any] = identity
    unpack: Callable[[Any], Any] = identity


@dataclass(kw_only=True, eq=False)
class FitHooks:
    """What a caller adds to the loop; every method may be left as it is.

    name: the run in error messages. after_chunk may return a new state (batch-norm
    refresh, snapshot, a fresh optimiser at a stage boundary); progress/arrays/
    template/restore carry the hooks' own state through a checkpoint (progress
    JSON-able, arrays a pytree)."""

    name: str = "training"

    def where(self, lane: int | None, step: int) -> str:
        """Names the run and step in the error at a non-finite loss."""
        return f"{self.name} at step {step}"

    def after_chunk(self, state: FitState, chunk: Chunk) -> FitState:
        return state

    def progress(self) -> dict[str, Any]:
        return {}

    def arrays(self) -> Any:
        return ()

    def template(self, progress: Mapping[str, Any]) -> Any:
        return ()

    def restore(self, progress: Mapping[str, Any], arrays: Any) -> None:
        return None


def first_non_finite(losses: np.ndarray) -> int | None:
    """Row of the first step whose losses are not all finite, or None. losses: (T, B)."""
    bad = ~np.isfinite(losses).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def check_finite(
    chunk: Chunk, hooks: FitHooks, lanes: int | None, hparams: Mapping[str, Any]
) -> None:
    """Fail at the chunk's first non-finite loss (per lane), naming the run and step by
    hooks.where and the hyperparameters."""
    per_lane = [chunk.losses] if lanes is None else chunk.losses.swapaxes(0, 1)
    for lane, losses in enumerate(per_lane):
        row = first_non_finite(losses)
        if row is not None:
            where = hooks.where(None if lanes is None else lane, chunk.first + row)
            raise FloatingPointError(
                f"non-finite training loss in {where}; hyperparameters: "
                f"{dict(hparams)}. Lower the learning rate or check the data."
            )


def fit(
    program: Program,
    state: FitState,
    x_all: jax.Array,
    y_all: jax.Array,
    next_batch: Callable[[], np.ndarray],
    *,
    num_steps: int,
    period_steps: int,
    chunk_steps: int | None = None,
    hparams: Mapping[str, Any],
    hooks: FitHooks | None = None,
    lanes: int | None = None,
    checkpointer: Checkpointer = NO_CHECKPOINTS,
    place: Callable[[Any], Any] = identity,
) -> FitState:
    """Run steps state.step .. num_steps - 1 of program on x_all, y_all; return the
    final state. The steps are taken in chunks that end at every multiple of
    period_steps (an epoch, a stage), at num_steps, and within a period every
    chunk_steps steps (default: the period).

    next_batch() -> the indices of the next step's batch, (B,), or (G, B) for `lanes`
    = G lanes. After each chunk: a non-finite loss raises FloatingPointError (named by
    hooks.where), then hooks.after_chunk, then a save when the checkpointer is due (not
    after the last chunk). A checkpointed state is restored first (placed on the
    devices by `place`), and the batches its steps took are drawn again and dropped.
    """
    hooks = FitHooks() if hooks is None else hooks
    state = _restore(program, state, hooks, checkpointer, place)
    for _ in range(state.step):
        next_batch()
    chunk_steps = period_steps if chunk_steps is None else chunk_steps
    while state.step < num_steps:
        into_period = state.step % period_steps
        count = min(
            chunk_steps - into_period % chunk_steps,
            period_steps - into_period,
            num_steps - state.step,
        )
        state, chunk = _run_chunk(program, state, x_all, y_all, next_batch, count)
        check_finite(chunk, hooks, lanes, hparams)
        state = hooks.after_chunk(state, chunk)
        if state.step < num_steps and checkpointer.due():
            checkpointer.save(
                {"step": state.step, "hooks": hooks.progress()},
                {
                    "params": program.unpack(state.params),
                    "opt_state": program.unpack(state.opt_state),
                    "hooks": hooks.arrays(),
                },
            )
    return state


def _restore(
    program: Program,
    state: FitState,
    hooks: FitHooks,
    checkpointer: Checkpointer,
    place: Callable[[Any], Any],
) -> FitState:
    def template(progress: dict[str, Any]) -> dict[str, Any]:
        return {
            "params": program.unpack(state.params),
            "opt_state": program.unpack(state.opt_state),
            "hooks": hooks.template(progress["hooks"]),
        }

    saved = checkpointer.restore(template)
    if saved is None:
        return state
    progress, arrays = saved
    hooks.restore(progress["hooks"], arrays["hooks"])
    return state._replace(
        params=program.pack(place(arrays["params"])),
        opt_state=program.pack(place(arrays["opt_state"])),
        step=int(progress["step"]),
    )


def _run_chunk(
    program: Program,
    state: FitState,
    x_all: jax.Array,
    y_all: jax.Array,
    next_batch: Callable[[], np.ndarray],
    count: int,
) -> tuple[FitState, Chunk]:
    params, opt_state = state.params, state.opt_state
    idxs, losses, correct = [], [], []
    for step_number in range(state.step, state.step + count):
        idx = next_batch()
        params, opt_state, step_losses, step_correct = program.step(
            params, opt_state, x_all, y_all, idx, state.key, step_number
        )
        idxs.append(idx)
        losses.append(step_losses)
        correct.append(step_correct)
    chunk = Chunk(
        state.step,
        np.stack(idxs),
        np.asarray(jnp.stack(losses)),
        np.asarray(jnp.stack(correct)),
    )
    return FitState(params, opt_state, state.step + count, state.key), chunk


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
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Program:
    """The training step of `steps.make_train_step` for G lanes advanced together: the
    state is a list of the lanes' (unpacked) and the step takes idx (G, B) and the
    lanes' keys. batched False: the one-lane compiled step per lane (each lane's
    numbers are the one-lane run's, bitwise); True: one step vmapped over the lanes
    (stacked state), the same arithmetic up to float rounding."""
    body = train_step_body(apply, tx, weight_decay, augment, mesh, loss)
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
                jnp.stack([out.correct for out in outs]),
            )

        return Program(step_each, list, list)

    vmapped = jax.vmap(body, in_axes=(0, 0, None, None, 0, 0, None))
    compiled = jax.jit(vmapped) if mesh is None else replicated_jit(vmapped, mesh)
    return Program(compiled, stack_trees, unstack_tree)
