"""Score training samples with any registered influence method, one call shape for
all: the method's name and its options."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gex_core.api.models import as_model
from gex_core.influence.problem import Problem
from gex_core.influence.registry import METHODS, get_method
from gex_core.influence.scores import Scores
from gex_core.training.losses import Loss, get_loss
from gex_core.training.models import Model
from gex_core.training.steps import evaluate, make_eval_fn

if TYPE_CHECKING:
    from gex_core.api.ensemble import GeometricEnsemble

Params = Any


def methods() -> dict[str, str]:
    """{method name: what it computes} for every registered method."""
    return {name: spec.summary for name, spec in sorted(METHODS.items())}


def method_options(method: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's defaults updated by options; an unknown option is an error naming
    the method's options."""
    spec = get_method(method)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        known = ", ".join(sorted(spec.defaults)) or "none"
        raise ValueError(
            f"{method} has no option {', '.join(map(repr, unknown))}; its options: "
            f"{known}"
        )
    return {**spec.defaults, **options}


def check_scores(method: str, scores: Scores, num_scored: int, num_queries: int):
    """The scores must be what the registry promises: (n,) self-influence for the n
    scored samples, and an (n, Q) kernel exactly when the method has one and Q > 0."""
    spec = get_method(method)
    if np.shape(scores.self_influence) != (num_scored,):
        raise RuntimeError(
            f"{method}: {np.shape(scores.self_influence)} scores for {num_scored} "
            "samples"
        )
    want = (num_scored, num_queries) if spec.kernel and num_queries else None
    got = None if scores.kernel is None else np.shape(scores.kernel)
    if got != want:
        raise RuntimeError(
            f"{method}: kernel of shape {got}, expected {want} (registry "
            f"kernel={spec.kernel}, {num_queries} queries)"
        )


def score(
    problem: Problem, method: str, options: Mapping[str, Any] | None = None
) -> Scores:
    """Run one registered method on a problem: self-influence (n,) of the scored
    training samples, influence on the mean test loss (n,) where the method defines
    it, and the (n, Q) train x test kernel of problem.query_indices where it has one.
    options: the method's knobs (`METHODS[method].defaults` for the others)."""
    hp = method_options(method, options)
    spec = get_method(method)
    if spec.losses is not None and problem.loss.name not in spec.losses:
        raise ValueError(
            f"{method} works with the loss {' or '.join(spec.losses)} only, not "
            f"{problem.loss.name}; use another method"
        )
    scores = spec.load()(problem, hp)
    check_scores(
        method, scores, problem.scored[1].shape[0], problem.query_indices.shape[0]
    )
    return scores


def member_losses(
    model: Model | Callable,
    members: Sequence[Params],
    x: np.ndarray,
    y: np.ndarray,
    *,
    loss: str | Loss = "softmax_cross_entropy",
    eval_batch_size: int = 512,
) -> np.ndarray:
    """(M, N) per-sample losses of every member on (x, y)."""
    model, loss = as_model(model), get_loss(loss)
    eval_fn = make_eval_fn(model.apply, loss)
    return np.stack(
        [evaluate(eval_fn, member, x, y, eval_batch_size)[0] for member in members]
    )


def check_needs(method: str, model: Model, **given: Any) -> None:
    """Refuse a call that lacks what the method reads (`MethodSpec.needs`), naming it:
    given holds the ensemble, trajectory and record passed (None: not given)."""
    for need in get_method(method).needs:
        if need == "ensemble" and given["ensemble"] is None:
            raise ValueError(
                f"{method} scores a geometric ensemble: fit one with "
                "fit_geometric_ensemble(...) and pass ensemble="
            )
        if need in given and given[need] is None:
            raise ValueError(f"{method} needs the training's {need}: pass {need}=")
        if need == "retraining" and model.init is None:
            raise ValueError(
                f"{method} trains fresh models: give the model's init "
                "(as_model(apply, init=...)) or a gex_core Model"
            )


def influence(
    model: Model | Callable,
    params: Params,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    method: str = "gex",
    ensemble: GeometricEnsemble | None = None,
    loss: str | Loss = "softmax_cross_entropy",
    seed: int = 0,
    queries: Sequence[int] | np.ndarray | None = None,
    trajectory: Sequence[Params] | None = None,
    trajectory_lrs: np.ndarray | None = None,
    record: Mapping[str, np.ndarray] | None = None,
    recipe: Mapping[str, Any] | None = None,
    eval_batch_size: int = 512,
    **options: Any,
) -> Scores:
    """Influence of each training sample of a trained model (params), by `method`.

    model: a Flax apply function (params, x) -> logits, or a `Model`; (x_train,
    y_train): the samples and labels it was trained on; (x_test, y_test): the samples
    test influence and the kernel are about (default: the training set). queries: the
    test indices of the kernel's columns (none: no kernel). gex reads `ensemble`
    (`fit_geometric_ensemble`); tracin, tracinrp and knn read `trajectory` (and
    `trajectory_lrs` for LR weights); forgetting reads `record`; el2n and cl retrain
    with `recipe` (the model needs an init). options: the method's knobs, e.g.
    reference="pretrained" for gex or dim=20 for randproj (`methods()` lists the
    methods, `METHODS[name].defaults` their knobs).

    Returns Scores(self_influence (N,), test_influence (N,) or None, kernel (N, Q) or
    None); higher self-influence = more likely mislabeled; positive test influence =
    helpful (training on the sample lowers the test loss).
    """
    model, loss = as_model(model), get_loss(loss)
    check_needs(method, model, ensemble=ensemble, trajectory=trajectory, record=record)
    losses = None
    if ensemble is not None:
        if ensemble.train_losses.shape[1] != len(y_train):
            raise ValueError(
                f"the ensemble was fit on {ensemble.train_losses.shape[1]} training "
                f"samples, not these {len(y_train)}"
            )
        kept = ensemble.kept_mask()
        x_eval, y_eval = (x_train, y_train) if x_test is None else (x_test, y_test)
        test_losses = member_losses(
            model,
            [m for m, keep in zip(ensemble.members, kept, strict=True) if keep],
            x_eval,
            y_eval,
            loss=loss,
            eval_batch_size=eval_batch_size,
        )
        losses = (ensemble.train_losses[kept], test_losses)
    problem = Problem(
        model,
        params,
        x_train,
        y_train,
        x_test,
        y_test,
        loss=loss,
        seed=seed,
        eval_batch_size=eval_batch_size,
        recipe=recipe,
        queries=queries,
        trajectory=trajectory,
        trajectory_lrs=trajectory_lrs,
        record=record,
        member_losses=losses,
    )
    return score(problem, method, options)
