"""Label-free calibration of GEX's fine-tuning learning rate (`ensemble.ft_lr: auto`).

GEX needs members that leave the solution the network memorised, or its deviations
only repeat the plain loss ranking (fine-tuning too gently: the members re-fit the noisy
labels), but that are still good models of the data (fine-tuning too hard: the members
forget everything and the scores are noise). Neither condition needs the noise mask:

- escape: the share of training samples whose given label a pilot member no longer
  predicts (0 when the members re-memorise; at most about the noise rate while they
  keep the clean structure; 1 - 1/C once they are destroyed);
- quality: the pilot member's accuracy on held-out data (the validation split, never
  the test split) against the pretrained model's.

The grid's learning rates are piloted from the largest down: one pilot stage (chain
0's first stage: the same batches, augmentation and schedule as the real chain) from the
pretrained model. The choice is the largest learning rate whose pilot keeps its
held-out accuracy within `tolerance` of the pretrained one (the most exploration that
still describes the data); a rate whose training diverges is invalid. One chain is not
the ensemble: near the edge chain 0 can keep its accuracy while other chains, on other
batches, collapse to chance. So a rate chain 0 passes is then piloted on the first
stage of every other chain of `chains` (each pilot is exactly that chain's first
member); if any fails, the search goes on down the grid. Rates below the first that
passes on every chain are never piloted. `refine` more
rates then bisect (geometrically) between the chosen rate and the next larger one that
failed on some chain, each piloted on every chain, so a coarse grid does not leave the
choice far below the edge (on digits with 30% noise 0.1 barely escapes while 0.2
destroys some chains). When no rate is valid the smallest is taken and the record
says so. The functions see the given (possibly noisy) training
labels and the held-out labels, never the noise mask or the clean training labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from gex_core.influence.ensemble import FineTuning, run_chain
from gex_core.influence.members import accuracy_tolerance
from gex_core.training.hooks import no_log
from gex_core.training.losses import SOFTMAX_CROSS_ENTROPY, Loss
from gex_core.training.models import Model
from gex_core.training.steps import evaluate, make_eval_fn

Params = Any


class PilotStatistics(NamedTuple):
    """One pilot: learning rate, escape (share of training samples whose given label
    the pilot member does not predict), held-out accuracy, the mean training loss
    increase over the pretrained model, whether the pilot trained without diverging,
    and the chain whose first stage it ran."""

    lr: float
    escape: float
    heldout_accuracy: float
    loss_increase: float
    finite: bool
    chain: int = 0

    def passes(self, pretrained_heldout_accuracy: float, tolerance: float) -> bool:
        """Finite, and held-out accuracy >= pretrained - tolerance."""
        return self.finite and (
            self.heldout_accuracy >= pretrained_heldout_accuracy - tolerance
        )


def pilot_statistics(
    lr: float,
    train_logits: np.ndarray,
    given_labels: np.ndarray,
    heldout_logits: np.ndarray,
    heldout_labels: np.ndarray,
    train_losses: np.ndarray,
    pretrained_train_losses: np.ndarray,
) -> PilotStatistics:
    """Statistics of one pilot member. train_logits (N, C), given_labels (N,),
    heldout_logits (N_h, C), heldout_labels (N_h,), train_losses and
    pretrained_train_losses (N,): per-sample losses under the given labels."""
    return PilotStatistics(
        lr=float(lr),
        escape=float(np.mean(train_logits.argmax(1) != given_labels)),
        heldout_accuracy=float(np.mean(heldout_logits.argmax(1) == heldout_labels)),
        loss_increase=float(np.mean(train_losses) - np.mean(pretrained_train_losses)),
        finite=bool(
            np.isfinite(train_logits).all() and np.isfinite(train_losses).all()
        ),
    )


def choose_ft_lr(
    statistics: Sequence[PilotStatistics],
    pretrained_heldout_accuracy: float,
    tolerance: float,
    chains: Sequence[int] = (0,),
) -> tuple[float, bool]:
    """(chosen learning rate, whether any rate was valid): the largest rate piloted on
    every chain of `chains` whose pilots all pass (`PilotStatistics.passes`); without
    one, the smallest rate."""
    valid = [
        lr
        for lr in {s.lr for s in statistics}
        if {s.chain for s in statistics if s.lr == lr} >= set(chains)
        and all(
            s.passes(pretrained_heldout_accuracy, tolerance)
            for s in statistics
            if s.lr == lr
        )
    ]
    if valid:
        return max(valid), True
    return min(s.lr for s in statistics), False


def refinement_bracket(
    statistics: Sequence[PilotStatistics],
    pretrained_heldout_accuracy: float,
    tolerance: float,
    chains: Sequence[int] = (0,),
) -> tuple[float, float] | None:
    """(chosen rate, the next larger rate tried): the interval whose geometric midpoint
    the next refinement pilot tries. None when no rate is valid or the chosen rate is
    the largest tried (nothing above it is known to fail)."""
    chosen, valid = choose_ft_lr(
        statistics, pretrained_heldout_accuracy, tolerance, chains
    )
    larger = [s.lr for s in statistics if s.lr > chosen]
    if not valid or not larger:
        return None
    return chosen, min(larger)


def geometric_midpoint(low: float, high: float) -> float:
    """sqrt(low * high) to 3 significant digits (0.1, 0.2 -> 0.141)."""
    return float(f"{np.sqrt(low * high):.3g}")


def search_ft_lr(
    pilot: Callable[[float, int], PilotStatistics],
    grid: Sequence[float],
    refine: int,
    pretrained_heldout_accuracy: float,
    tolerance: float,
    chains: Sequence[int] = (0,),
) -> list[PilotStatistics]:
    """The grid's rates from the largest down: pilot(rate, chains[0]), and where it
    passes pilot(rate, chain) on the other chains, until a rate passes on all of them
    (a chain that fails ends its rate's pilots); then up to `refine` times the
    geometric midpoint of `refinement_bracket` (the chosen rate and the next larger
    one that failed on some chain), piloted on every chain. Every pilot's statistics,
    by rate and chain.

    The choice (`choose_ft_lr`) is the one of piloting chains[0] at every grid rate
    first: it is the largest rate passing on every chain either way, and every rate
    above it is tried either way, so the refinement bisects the same interval. Rates
    below the choice are not piloted, which is what the order saves."""
    first, others = chains[0], list(chains[1:])

    def passes(lr: float, chain: int) -> bool:
        statistics.append(pilot(lr, chain))
        return statistics[-1].passes(pretrained_heldout_accuracy, tolerance)

    statistics: list[PilotStatistics] = []
    for lr in sorted((float(v) for v in grid), reverse=True):
        if passes(lr, first) and all(passes(lr, chain) for chain in others):
            break
    for _ in range(refine):
        bracket = refinement_bracket(
            statistics, pretrained_heldout_accuracy, tolerance, chains
        )
        if bracket is None:
            break
        midpoint = geometric_midpoint(*bracket)
        if midpoint in bracket:  # the interval is below the rounding: done
            break
        all(passes(midpoint, chain) for chain in chains)  # stops at a failing chain
    return sorted(statistics, key=lambda s: (s.lr, s.chain))


def run_pilot(
    model: Model,
    pretrained: Params,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    recipe: FineTuning,
    pretrained_train_losses: np.ndarray,
    *,
    seed: int,
    chain: int,
    eval_batch_size: int,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> tuple[PilotStatistics, Params | None]:
    """One pilot: chain `chain`'s first stage of `recipe` (one stage, its ft_lr) from
    the pretrained model; its statistics and its member (None where the training
    diverged or its losses are not finite). data: (x_train, given labels, x_heldout,
    heldout labels); pretrained_train_losses (N,) under the given labels."""
    x_train, given_labels, x_heldout, heldout_labels = data
    try:
        member = run_chain(
            model, pretrained, data, recipe, seed=seed, chain=chain,
            eval_batch_size=eval_batch_size, loss=loss, log=no_log,
        ).members[0]  # fmt: skip
    except FloatingPointError:  # diverged: not a usable rate
        return PilotStatistics(recipe.ft_lr, np.nan, np.nan, np.nan, False, chain), None
    eval_fn = make_eval_fn(model.apply, loss)
    train_losses, train_logits = evaluate(
        eval_fn, member, x_train, given_labels, eval_batch_size
    )
    _, member_heldout = evaluate(
        eval_fn, member, x_heldout, heldout_labels, eval_batch_size
    )
    stats = pilot_statistics(
        recipe.ft_lr,
        train_logits,
        given_labels,
        member_heldout,
        heldout_labels,
        train_losses,
        pretrained_train_losses,
    )._replace(chain=chain)
    return stats, (member if stats.finite else None)


class Calibration(NamedTuple):
    """record: the JSON-able record of the search (`calibrate_with_pilots`);
    first_members: chain -> its pilot at the chosen rate (on the host), which is
    bitwise that chain's first member at this rate: the chains start from them
    (`ensemble.first_members_for`)."""

    record: dict[str, Any]
    first_members: dict[int, Params]


def calibrate_with_pilots(
    model: Model,
    pretrained: Params,
    x_train: np.ndarray,
    given_labels: np.ndarray,
    x_heldout: np.ndarray,
    heldout_labels: np.ndarray,
    *,
    grid: Sequence[float],
    tolerance: float | str,
    seed: int,
    refine: int = 0,
    chains: Sequence[int] = (0,),
    recipe: FineTuning,
    eval_batch_size: int,
    loss: Loss = SOFTMAX_CROSS_ENTROPY,
) -> Calibration:
    """Pilot the grid from the largest rate down on chains[0] and the other chains'
    first stages until a rate passes on all of them, then up to `refine` bisecting
    rates (`search_ft_lr`), and choose the fine-tuning learning rate.

    Returns the record and the pilots at the chosen rate (`Calibration`). The record:
    {"ft_lr": chosen, "valid": bool, "pretrained_heldout_accuracy": float,
    "heldout_size": int, "standard_error": float, "tolerance": float, "refine": int,
    "pilot_chains": [chain, ...], "grid": [{lr, escape, heldout_accuracy,
    loss_increase, finite, chain, refined}, ...] by rate (chains[0]'s pilots),
    "chain_pilots": [the same, for the other chains' pilots], "first_members": the
    chains with a pilot at the chosen rate} (JSON-able; refined: a bisecting pilot's
    rate, not one of the grid's).
    x_train (N, H, W, C) with the given labels (N,); the held-out set (a validation
    split) likewise. tolerance: the accuracy a pilot may lose, or "auto": two standard
    errors of the pretrained accuracy on this held-out set (`accuracy_tolerance`).
    chains: the chains whose first stage must keep the accuracy (the ensemble's, or
    the first few of them; (0,): chain 0 alone).
    recipe: the chains' fine-tuning (its stages and ft_lr are the pilot's own: one
    stage at each rate).
    """
    eval_fn = make_eval_fn(model.apply, loss)
    pretrained_losses, _ = evaluate(
        eval_fn, pretrained, x_train, given_labels, eval_batch_size
    )
    _, heldout_logits = evaluate(
        eval_fn, pretrained, x_heldout, heldout_labels, eval_batch_size
    )
    baseline = float(np.mean(heldout_logits.argmax(1) == heldout_labels))
    standard_error, auto = accuracy_tolerance(baseline, len(heldout_labels))
    if tolerance == "auto":
        tolerance = auto
    elif isinstance(tolerance, str):
        raise ValueError(f'tolerance must be a number or "auto", got {tolerance!r}')

    # passing pilots' members, kept on the host while their rate may still be chosen
    # (no failing pilot at that rate, and not below a rate valid on every chain)
    members: dict[tuple[float, int], Params] = {}
    done: list[PilotStatistics] = []
    data = (x_train, given_labels, x_heldout, heldout_labels)

    def pilot(lr: float, chain: int) -> PilotStatistics:
        stats, member = run_pilot(
            model, pretrained, data, recipe._replace(stages=1, ft_lr=lr),
            pretrained_losses, seed=seed, chain=chain,
            eval_batch_size=eval_batch_size, loss=loss,
        )  # fmt: skip
        done.append(stats)
        if stats.passes(baseline, tolerance):  # passing implies finite: a member
            members[lr, chain] = jax.device_get(member)
        failed = {s.lr for s in done if not s.passes(baseline, tolerance)}
        best, valid = choose_ft_lr(done, baseline, tolerance, chains)
        for key in [k for k in members if k[0] in failed or (valid and k[0] < best)]:
            del members[key]
        return stats

    grid = sorted({float(v) for v in grid})
    chains = [int(c) for c in chains]
    if not chains:
        raise ValueError("calibration needs at least one chain to pilot")
    statistics = search_ft_lr(pilot, grid, refine, baseline, tolerance, chains)
    chosen, valid = choose_ft_lr(statistics, baseline, tolerance, chains)
    rows = [{**s._asdict(), "refined": s.lr not in grid} for s in statistics]
    first_members = {c: members[chosen, c] for c in chains if (chosen, c) in members}
    record = {
        "ft_lr": chosen,
        "valid": valid,
        "pretrained_heldout_accuracy": baseline,
        "heldout_size": int(len(heldout_labels)),
        "standard_error": standard_error,
        "tolerance": float(tolerance),
        "refine": int(refine),
        "pilot_chains": chains,
        "grid": [row for row in rows if row["chain"] == chains[0]],
        "chain_pilots": [row for row in rows if row["chain"] != chains[0]],
        "first_members": sorted(first_members),
    }
    return Calibration(record, first_members)
