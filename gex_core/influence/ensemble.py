"""Geometric-ensemble chains: repeated fine-tuning from the pretrained model (GEX).

A chain runs S stages from theta*. Each stage installs a fresh SGD (momentum, cosine LR
from ft_lr to 0 over ft_steps), optimises the training objective, and snapshots the
parameters as one member; the next stage continues from that snapshot. Chain c draws its
batches from host_rng(seed, "ensemble_order", c) and its augmentation from
jax_key(seed, "augment", c) alone, so a chain's members do not depend on how many chains
exist or how chains are grouped into jobs.

One call may run several chains (`run_chains`): the lanes of one `fit`, in lockstep.
Sequentially (the default) each chain's step is the one-chain compiled step, so a
chain's members are bitwise those of a call running it alone. Batched, one compiled
step vmapped over the chains advances all of them: the same arithmetic up to float
rounding (vmapped convolutions are grouped convolutions, summed in another order), and
faster where one chain's step leaves the device idle (accelerators), slower on a CPU
(benchmarks/chain_batching.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from gex_core.training.batching import batch_index_stream
from gex_core.training.devices import data_mesh, replicate
from gex_core.training.fit import Chunk, FitHooks, FitState, Program, fit, lane_program
from gex_core.training.hooks import NO_CHECKPOINTS, Checkpointer, Log, log_to_stderr
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss
from gex_core.training.models import Model
from gex_core.training.seeds import host_rng, jax_key
from gex_core.training.steps import (
    accuracy,
    bn_refresh,
    evaluate,
    make_eval_fn,
    optimizer_state,
    sgd,
)

Params = Any
# Steps between the points where a run may save its chains' state (`Checkpointer.due`)
CHECKPOINT_CHUNK_STEPS = 10


class FineTuning(NamedTuple):
    """The recipe of a chain's stages: S stages of ft_steps SGD steps (momentum, cosine
    LR from ft_lr to 0, coupled weight decay) on batches of batch_size, augmented as
    `augment`; batch-norm models re-estimate their statistics from bn_batches batches
    after each stage."""

    stages: int
    ft_lr: float
    ft_steps: int
    batch_size: int
    weight_decay: float
    momentum: float
    augment: str = "none"
    bn_batches: int = 50


def _cosine_sgd(
    learning_rate: jax.Array, ft_steps: int, momentum: float
) -> optax.GradientTransformation:
    return sgd(optax.cosine_decay_schedule(learning_rate, ft_steps), momentum)


@functools.cache
def fine_tuning_optimizer(
    ft_steps: int, momentum: float
) -> optax.GradientTransformation:
    """A stage's SGD (momentum, cosine LR from the peak to 0 over ft_steps) whose peak
    rate is a traced hyperparameter in the optimiser state (`fine_tuning_state`), not
    a constant of the compiled step: the calibration's pilots at many rates share one
    compiled step. The arithmetic is optax.sgd's with the peak as a constant."""
    return optax.inject_hyperparams(_cosine_sgd, static_args=("ft_steps", "momentum"))(
        learning_rate=0.0, ft_steps=ft_steps, momentum=momentum
    )


def fine_tuning_state(
    tx: optax.GradientTransformation, params: Params, ft_lr: float
) -> Any:
    """A fresh optimiser state of `fine_tuning_optimizer` with peak rate ft_lr."""
    state = optimizer_state(tx, params)
    rate = jnp.asarray(ft_lr, state.hyperparams["learning_rate"].dtype)
    return state._replace(hyperparams={**state.hyperparams, "learning_rate": rate})


@functools.cache
def _fine_tuning_program(
    apply: Callable,
    tx: optax.GradientTransformation,
    weight_decay: float,
    augment: str,
    mesh: Mesh,
    batched: bool,
    loss: Loss,
) -> Program:
    """`fit.lane_program`, built once per recipe (every rate, every call)."""
    return lane_program(apply, tx, weight_decay, augment, mesh, batched, loss)


class ChainResult(NamedTuple):
    """members: S parameter trees; train_losses: (S, N); test_losses: (S, N_te)."""

    members: list[Params]
    train_losses: np.ndarray
    test_losses: np.ndarray


@dataclass(kw_only=True, eq=False)
class _StageEnds(FitHooks):
    """At the end of every stage: each chain's batch-norm refresh, its member's
    per-sample losses (train and held-out), the log line, the snapshot, and a fresh
    optimiser for the next stage."""

    model: Model
    program: Program
    tx: optax.GradientTransformation
    chains: list[int]
    start: Params
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    x_all: jax.Array
    seed: int
    recipe: FineTuning
    eval_fn: Callable
    eval_batch_size: int
    log: Log
    mesh: Mesh

    def __post_init__(self) -> None:
        self.members: list[list[Params]] = [[] for _ in self.chains]
        self.train_losses: list[list[np.ndarray]] = [[] for _ in self.chains]
        self.test_losses: list[list[np.ndarray]] = [[] for _ in self.chains]

    def where(self, lane: int | None, step: int) -> str:
        stage, within = divmod(step, self.recipe.ft_steps)
        return f"ensemble chain {self.chains[lane]} stage {stage} at step {within}"

    def after_chunk(self, state: FitState, chunk: Chunk) -> FitState:
        if state.step % self.recipe.ft_steps:
            return state
        stage = state.step // self.recipe.ft_steps - 1
        params = self.program.unpack(state.params)
        for lane, chain in enumerate(self.chains):
            params[lane] = bn_refresh(
                self.model,
                params[lane],
                self.x_all,
                num_batches=self.recipe.bn_batches,
                batch_size=self.recipe.batch_size,
                rng=host_rng(self.seed, "bn_batches", chain, stage),
                key=jax_key(self.seed, "bn_batches", chain, stage),
                augment=self.recipe.augment,
                mesh=self.mesh,
            )
            self.record(lane, params[lane])
        return state._replace(
            params=self.program.pack(params),
            opt_state=self.fresh_states(params),
        )

    def fresh_states(self, params: list[Params]) -> Any:
        """Every lane's fresh optimiser state for its params, packed: a stage's start."""
        return self.program.pack(
            [
                replicate(fine_tuning_state(self.tx, p, self.recipe.ft_lr), self.mesh)
                for p in params
            ]
        )

    def record(self, lane: int, member: Params) -> None:
        """Take `member` as lane's next member: its per-sample losses and log line."""
        x_train, y_train, x_test, y_test = self.data
        train, _ = evaluate(
            self.eval_fn, member, x_train, y_train, self.eval_batch_size, self.mesh
        )
        test, test_logits = evaluate(
            self.eval_fn, member, x_test, y_test, self.eval_batch_size, self.mesh
        )
        self.log(
            f"chain {self.chains[lane]} stage {len(self.members[lane]) + 1}/"
            f"{self.recipe.stages}: train loss {train.mean():.4f} test loss "
            f"{test.mean():.4f} test acc {accuracy(test_logits, y_test):.4f}"
        )
        self.members[lane].append(member)
        self.train_losses[lane].append(train)
        self.test_losses[lane].append(test)

    def progress(self) -> dict[str, Any]:
        return {"stages_done": len(self.members[0])}

    def _losses(self, losses: list[list[np.ndarray]], done: int, size: int):
        return np.asarray(losses, np.float32).reshape(len(self.chains), done, size)

    def arrays(self) -> Any:
        done = len(self.members[0])
        x_train, _, x_test, _ = self.data
        return dict(
            members=self.members,
            train_losses=self._losses(self.train_losses, done, x_train.shape[0]),
            test_losses=self._losses(self.test_losses, done, x_test.shape[0]),
        )

    def template(self, progress: Mapping[str, Any]) -> Any:
        done = int(progress["stages_done"])
        x_train, _, x_test, _ = self.data
        count = len(self.chains)
        return dict(
            members=[[self.start] * done for _ in self.chains],
            train_losses=np.zeros((count, done, x_train.shape[0]), np.float32),
            test_losses=np.zeros((count, done, x_test.shape[0]), np.float32),
        )

    def restore(self, progress: Mapping[str, Any], arrays: Any) -> None:
        self.members = [list(m) for m in arrays["members"]]
        self.train_losses = [list(t) for t in arrays["train_losses"]]
        self.test_losses = [list(t) for t in arrays["test_losses"]]

    def results(self) -> list[ChainResult]:
        return [
            ChainResult(
                self.members[lane],
                np.stack(self.train_losses[lane]),
                np.stack(self.test_losses[lane]),
            )
            for lane in range(len(self.chains))
        ]


def run_chains(
    model: Model,
    pretrained: Params,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    recipe: FineTuning,
    *,
    seed: int,
    chains: Sequence[int],
    eval_batch_size: int,
    batched: bool = False,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
    log: Log = log_to_stderr,
    mesh: Mesh | None = None,
    checkpointer: Checkpointer = NO_CHECKPOINTS,
    first_members: Sequence[Params] | None = None,
) -> list[ChainResult]:
    """Run the given chains in lockstep and evaluate every member's per-sample losses;
    one result per chain, in the order given.

    data: (x_train (N, ...), y_train (N,) the labels trained on, x_test, y_test) the
    held-out set each member is also evaluated on. Chain c's steps augment with
    jax_key(seed, "augment", c); batch-norm models re-estimate their statistics after
    every stage (bn_batches augmented batches of the chain's batch size from
    host_rng(seed, "bn_batches", c, stage)), before the snapshot. batched: advance the
    chains with one vmapped step (`fit.lane_program`). Steps and evaluations are
    data-parallel over the mesh (default: every local device); the members do not
    depend on the number of devices beyond float rounding. checkpointer: the chains'
    state (members so far, parameters and optimiser states) is saved every
    CHECKPOINT_CHUNK_STEPS steps when due; a run with saved state continues from it,
    with bitwise the same members and losses. first_members: one per chain, each
    chain's first member computed before (a calibration pilot of this recipe, seed and
    chain: `first_members_for`); the chains then run from stage 2 on, with bitwise the
    members and losses of a run from the start.
    """
    chains = [int(c) for c in chains]
    if not chains or len(set(chains)) != len(chains):
        raise ValueError(f"chains must be distinct chain numbers, got {chains}")
    if first_members is not None and len(first_members) != len(chains):
        raise ValueError(
            f"{len(first_members)} first members given for {len(chains)} chains"
        )
    x_train, y_train = data[0], data[1]
    tx = fine_tuning_optimizer(recipe.ft_steps, recipe.momentum)
    mesh = data_mesh() if mesh is None else mesh
    program = _fine_tuning_program(
        model.train_forward,
        tx,
        recipe.weight_decay,
        recipe.augment,
        mesh,
        batched,
        loss,
    )
    streams = [
        batch_index_stream(
            x_train.shape[0], recipe.batch_size, host_rng(seed, "ensemble_order", c)
        )
        for c in chains
    ]
    x_all, y_all = replicate((jnp.asarray(x_train), jnp.asarray(y_train)), mesh)
    start = replicate(pretrained, mesh)
    hooks = _StageEnds(
        model=model,
        program=program,
        tx=tx,
        chains=chains,
        start=start,
        data=data,
        x_all=x_all,
        seed=seed,
        recipe=recipe,
        eval_fn=make_eval_fn(model.apply, loss),
        eval_batch_size=eval_batch_size,
        log=log,
        mesh=mesh,
    )
    lane_params, start_step = [start] * len(chains), 0
    if first_members is not None:
        lane_params = [replicate(member, mesh) for member in first_members]
        for lane, member in enumerate(lane_params):
            hooks.record(lane, member)
        start_step = recipe.ft_steps
    fit(
        program,
        FitState(
            program.pack(lane_params),
            hooks.fresh_states(lane_params),
            start_step,
            program.pack([jax_key(seed, "augment", c) for c in chains]),
        ),
        x_all,
        y_all,
        lambda: np.stack([next(stream) for stream in streams]),
        num_steps=recipe.stages * recipe.ft_steps,
        period_steps=recipe.ft_steps,
        chunk_steps=CHECKPOINT_CHUNK_STEPS,
        hparams=dict(seed=seed, chains=chains, **recipe._asdict()),
        hooks=hooks,
        lanes=len(chains),
        checkpointer=checkpointer,
        place=lambda tree: replicate(tree, mesh),
    )
    return hooks.results()


def first_members_for(
    chains: Sequence[int], pilots: Mapping[int, Params]
) -> list[Params] | None:
    """The first members of `chains` from calibration pilots at the chains' rate
    (chain -> member), or None unless every chain has one (chains run in lockstep, so
    a job starts all of them from stage 1 or all from stage 2)."""
    if not all(int(c) in pilots for c in chains):
        return None
    return [pilots[int(c)] for c in chains]


def run_chain(
    model: Model,
    pretrained: Params,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    recipe: FineTuning,
    *,
    chain: int,
    **options: Any,
) -> ChainResult:
    """One chain: `run_chains` with chains=[chain] (same keyword arguments)."""
    return run_chains(model, pretrained, data, recipe, chains=[chain], **options)[0]
