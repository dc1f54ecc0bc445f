"""Fit GEX's geometric ensemble from a trained model: calibrate the fine-tuning rate,
run the chains, return the members and their per-sample losses."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from gex_core.api.models import as_model
from gex_core.influence.calibration import Calibration
from gex_core.influence.calibration import calibrate_with_pilots as calibrate
from gex_core.influence.ensemble import FineTuning, first_members_for, run_chains
from gex_core.influence.members import check_kept, checkable, collapsed_members
from gex_core.training.hooks import NO_CHECKPOINTS, Checkpointer, Log, no_log
from gex_core.training.losses import Loss, get_loss
from gex_core.training.models import Model
from gex_core.training.steps import evaluate, make_eval_fn

Params = Any
# The candidate fine-tuning rates of ft_lr="auto" (the workflow's default grid)
DEFAULT_GRID = (0.025, 0.05, 0.1, 0.2, 0.4)


class GeometricEnsemble(NamedTuple):
    """members: M = len(chains) * stages parameter trees, chain-major; chains: the
    chain numbers; ft_lr: the fine-tuning rate used; train_losses (M, N) and
    heldout_losses (M, N_h): every member's per-sample losses on the training data (the
    labels it was fine-tuned on) and on the held-out data (x_test where given, else the
    validation data); calibration: the record of ft_lr="auto" (None for a given rate);
    val_accuracy (M,): each member's accuracy on the validation data, and
    pretrained_val_accuracy the trained model's; kept (M,): the members not collapsed
    (`gex_core.influence.gex.collapsed_members`), the ones GEX scores with."""

    members: list[Params]
    chains: tuple[int, ...]
    stages: int
    ft_lr: float
    train_losses: np.ndarray
    heldout_losses: np.ndarray
    calibration: dict[str, Any] | None = None
    val_accuracy: np.ndarray | None = None
    pretrained_val_accuracy: float | None = None
    kept: np.ndarray | None = None

    def kept_mask(self) -> np.ndarray:
        """(M,) bool of the members GEX scores with (all where no check ran); fewer
        than half kept is an error (`check_kept`)."""
        kept = np.ones(len(self.members), bool)
        if self.kept is not None:
            kept = np.asarray(self.kept, bool)
        check_kept(kept)
        return kept

    def kept_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """(train (M', N), held-out (M', N_h)) losses of the kept members."""
        kept = self.kept_mask()
        return self.train_losses[kept], self.heldout_losses[kept]


def fine_tuning_recipe(
    *,
    stages: int = 2,
    ft_lr: float = float("nan"),
    ft_steps: int = 100,
    batch_size: int = 64,
    weight_decay: float = 5.0e-4,
    momentum: float = 0.9,
    augment: str = "none",
    bn_batches: int = 50,
) -> FineTuning:
    """The chains' recipe with the workflow's defaults (weight decay and momentum are
    the pretraining's; ft_lr is set by the caller or by calibration)."""
    return FineTuning(
        stages=int(stages),
        ft_lr=float(ft_lr),
        ft_steps=int(ft_steps),
        batch_size=int(batch_size),
        weight_decay=float(weight_decay),
        momentum=float(momentum),
        augment=str(augment),
        bn_batches=int(bn_batches),
    )


def calibrate_with_pilots(
    model: Model | Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    tolerance: float | str = "auto",
    refine: int = 2,
    chains: int | Sequence[int] = 1,
    loss: str | Loss = "softmax_cross_entropy",
    seed: int = 0,
    eval_batch_size: int = 512,
    **recipe: Any,
) -> Calibration:
    """The fine-tuning rate of ft_lr="auto": pilot stages from the trained model at the
    grid's rates, from the largest down; the largest rate whose pilot keeps held-out
    accuracy within `tolerance` of the trained model's ("auto": two standard errors of
    that accuracy on (x_val, y_val); `gex_core.influence.calibration`), checked on the
    first stage of every chain of `chains` (a count K: chains 0..K-1;
    fit_geometric_ensemble passes its own). recipe: the knobs of `fine_tuning_recipe`.
    Returns the calibration record (JSON-able), its chosen rate under "ft_lr", and
    the pilots at that rate, which are the chains' first members (`Calibration`).
    Reads the given training labels and the held-out set, nothing else."""
    return calibrate(
        as_model(model),
        params,
        x_train,
        y_train,
        x_val,
        y_val,
        grid=[float(v) for v in grid],
        tolerance=tolerance if tolerance == "auto" else float(tolerance),
        refine=int(refine),
        chains=range(chains) if isinstance(chains, int) else chains,
        seed=int(seed),
        recipe=fine_tuning_recipe(**recipe),
        eval_batch_size=int(eval_batch_size),
        loss=get_loss(loss),
    )


def calibrate_ft_lr(
    model: Model | Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    **options: Any,
) -> dict[str, Any]:
    """`calibrate_with_pilots`' record alone: the chosen rate under "ft_lr" (options:
    calibrate_with_pilots' keywords)."""
    return calibrate_with_pilots(
        model, params, x_train, y_train, x_val, y_val, **options
    ).record


def piloted(chains: Sequence[int], pilot_chains: int | str) -> tuple[int, ...]:
    """The chains calibration pilots: all of them ("all") or the first pilot_chains."""
    if pilot_chains == "all":
        return tuple(chains)
    if isinstance(pilot_chains, str) or int(pilot_chains) < 1:
        raise ValueError(f'pilot_chains must be "all" or >= 1, got {pilot_chains!r}')
    return tuple(chains)[: int(pilot_chains)]


def fit_geometric_ensemble(
    model: Model | Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    ft_lr: float | str = "auto",
    chains: int | Sequence[int] = 4,
    member_check: str = "drop",
    grid: Sequence[float] = DEFAULT_GRID,
    tolerance: float | str = "auto",
    refine: int = 2,
    pilot_chains: int | str = "all",
    loss: str | Loss = "softmax_cross_entropy",
    seed: int = 0,
    eval_batch_size: int = 512,
    batched: bool = False,
    log: Log = no_log,
    checkpointer: Checkpointer = NO_CHECKPOINTS,
    pilots: Mapping[int, Params] | None = None,
    **recipe: Any,
) -> GeometricEnsemble:
    """GEX's geometric ensemble of a trained model (params) on (x_train, y_train).

    model: a Flax apply function (params, x) -> logits, or a `Model`. Each of the
    chains (K, or the chain numbers to run) fine-tunes from params for `stages` stages
    of `ft_steps` SGD steps (recipe: the knobs of `fine_tuning_recipe`), snapshotting a
    member after each. ft_lr: the peak rate of each stage's cosine schedule, or "auto":
    calibrated on the validation data (x_val, y_val) first (`calibrate_with_pilots`; the
    chosen rate keeps the first stage of each of the first `pilot_chains` chains,
    "all" by default). Chain
    c's draws depend only on (seed, c), so an ensemble of chains 0..3 holds the members
    of an ensemble of chains 0..1. Every member's validation accuracy is measured, and
    a member nearer chance than the trained model (`collapsed_members`) is marked not
    kept (member_check="drop") or fails the call ("fail"). Held-out losses are
    measured on (x_test, y_test), default the validation data (itself defaulting to the
    training data). pilots: with a given ft_lr, the calibration's pilots at that rate
    (`calibrate_with_pilots`' first_members, chain -> member): the chains' first
    members, so chains start from them (the same members, 1/stages less fine-tuning).
    """
    if member_check not in ("drop", "fail"):
        raise ValueError(f'member_check must be "drop" or "fail", got {member_check!r}')
    if ft_lr == "auto" and x_val is None:
        raise ValueError(
            'ft_lr="auto" calibrates on held-out data: give x_val and y_val, or a '
            "fine-tuning rate"
        )
    if (x_val is None) != (y_val is None) or (x_test is None) != (y_test is None):
        raise ValueError("give both x_val and y_val (x_test and y_test), or neither")
    model, loss = as_model(model), get_loss(loss)
    if x_val is None:
        x_val, y_val = x_train, y_train
    if x_test is None:
        x_test, y_test = x_val, y_val
    chain_ids = tuple(range(chains) if isinstance(chains, int) else chains)
    record, pilots = None, dict(pilots or {})
    if ft_lr == "auto":
        record, pilots = calibrate_with_pilots(
            model,
            params,
            x_train,
            y_train,
            x_val,
            y_val,
            grid=grid,
            tolerance=tolerance,
            refine=refine,
            chains=piloted(chain_ids, pilot_chains),
            loss=loss,
            seed=seed,
            eval_batch_size=eval_batch_size,
            **recipe,
        )
        ft_lr = record["ft_lr"]
        log(f"ft_lr {ft_lr} (calibrated; valid: {record['valid']})")
    fine_tuning = fine_tuning_recipe(ft_lr=float(ft_lr), **recipe)
    results = run_chains(
        model,
        params,
        (x_train, y_train, x_test, y_test),
        fine_tuning,
        seed=seed,
        chains=chain_ids,
        eval_batch_size=eval_batch_size,
        batched=batched,
        loss=loss,
        log=log,
        checkpointer=checkpointer,
        first_members=first_members_for(chain_ids, pilots),
    )
    members = [member for result in results for member in result.members]
    accuracy, kept = check_members(
        model,
        params,
        members,
        (x_val, y_val),
        y_train,
        loss,
        eval_batch_size,
        member_check,
        log,
    )
    return GeometricEnsemble(
        members=members,
        chains=chain_ids,
        stages=fine_tuning.stages,
        ft_lr=fine_tuning.ft_lr,
        train_losses=np.concatenate([r.train_losses for r in results]),
        heldout_losses=np.concatenate([r.test_losses for r in results]),
        calibration=record,
        val_accuracy=np.asarray(accuracy[1:]),
        pretrained_val_accuracy=float(accuracy[0]),
        kept=kept,
    )


def check_members(
    model: Model,
    params: Params,
    members: Sequence[Params],
    validation: tuple[np.ndarray, np.ndarray],
    y_train: np.ndarray,
    loss: Loss,
    eval_batch_size: int,
    member_check: str,
    log: Log,
) -> tuple[list[float], np.ndarray]:
    """([trained model's, then each member's validation accuracy], kept (M,) bool):
    collapsed members (`collapsed_members`) are not kept, or fail the call with
    member_check="fail"; where the trained model does not beat chance (`checkable`)
    every member is kept."""
    x_val, y_val = validation
    accuracy = [
        validation_accuracy(model, p, x_val, y_val, loss, eval_batch_size)
        for p in [params, *members]
    ]
    classes = int(max(np.max(y_train), np.max(y_val))) + 1
    collapsed = collapsed_members(accuracy[1:], accuracy[0], classes, len(y_val))
    if not checkable(accuracy[0], classes, len(y_val)):
        log(
            f"gex: members not checked for collapse: the trained model's validation "
            f"accuracy {accuracy[0]:.3f} does not beat chance ({1 / classes:.3f}) by "
            "two standard errors"
        )
        collapsed[:] = False
    if collapsed.any():
        message = (
            f"members {np.flatnonzero(collapsed).tolist()} of {len(members)} "
            f"collapsed (validation accuracy {np.round(accuracy[1:], 3).tolist()}, "
            f"the trained model {accuracy[0]:.3f}, chance {1 / classes:.3f})"
        )
        if member_check == "fail":
            raise ValueError(f"gex: {message}; lower ft_lr")
        log(f"gex: dropped {message}")
    return accuracy, ~collapsed


def validation_accuracy(
    model: Model,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    loss: Loss,
    eval_batch_size: int,
) -> float:
    """Accuracy of params on (x (N, H, W, C), y (N,)), evaluation mode."""
    _, logits = evaluate(make_eval_fn(model.apply, loss), params, x, y, eval_batch_size)
    return float(np.mean(logits.argmax(1) == y))
