"""The method registry: what each influence method needs, its knobs and its path.

Pure Python (no JAX) because the Snakefile reads it at parse time. Adding a method means
one entry here, one compute function, and its knobs in schemas/config.schema.yaml; the
DAG's structure does not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MethodSpec:
    """name: registry key and path component.
    needs: what compute reads besides the model, its parameters and the data:
        "ensemble" (members' losses), "trajectory" (checkpoints along training),
        "record" (pretraining's per-sample record), "retraining" (it trains fresh
        models: the model's init and the training recipe).
    defaults: every knob with its default value (schemas/config.schema.yaml gives the
        same defaults to the workflow; a test checks they agree).
    hparams: config key -> short path label, in path order (values from
        config["influence"][name]); knobs listed in `unpathed` reach the job but not the
        path because they change how, not what, is computed.
    compute: "module:function" with signature (problem: Problem, hp: dict) -> Scores
        (`gex_core.influence.problem`).
    kernel: whether compute returns the train x test influence kernel (N, Q) of the
        query set (Problem.query_indices) when Q > 0 (None otherwise, and always
        None when false).
    losses: the per-sample losses (by name) compute is defined for; None: any.
    shardable: whether compute scores any row range (Problem.scored_rows) with the
        same result as those rows of the whole set: each sample's score depends only
        on the sample and on state every shard rebuilds identically (parameters,
        random draws, curvature batches, the test set), so `shard_size` may split it
        into jobs. Methods that train models or compare samples are not.
    """

    name: str
    compute: str
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, str] = field(default_factory=dict)
    unpathed: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    kernel: bool = False
    shardable: bool = False
    only_when: dict[str, tuple[str, str]] = field(default_factory=dict)
    losses: tuple[str, ...] | None = None

    def applicable(self, hp: dict) -> dict:
        """The knobs of hp that take effect: a knob listed in only_when as (other knob,
        value) is dropped unless that knob has that value, so it neither names the
        path nor reruns the job when it cannot change the result."""
        return {
            key: value
            for key, value in hp.items()
            if key not in self.only_when
            or hp.get(self.only_when[key][0]) == self.only_when[key][1]
        }

    @property
    def module(self) -> str:
        return self.compute.split(":")[0]

    def load(self) -> Callable:
        module, function = self.compute.split(":")
        return getattr(importlib.import_module(module), function)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec(
            name="gex",
            defaults={"reference": "pretrained", "tau": 0.05},
            kernel=True,
            shardable=True,
            compute="gex_core.influence.gex:compute",
            summary="Geometric-ensemble loss deviations, mean_m Delta^2 (the paper)",
            hparams={"reference": "ref-", "tau": "tau"},
            only_when={"tau": ("reference", "clamped")},
            needs=("ensemble",),
        ),
        MethodSpec(
            name="member_loss",
            shardable=True,
            compute="gex_core.influence.member_loss:compute",
            summary="Control for gex: the ensemble members' mean training loss",
            needs=("ensemble",),
        ),
        MethodSpec(
            name="la_kfac",
            # its Fisher samples labels from the softmax; its linearised deviations
            # are softmax cross-entropy's
            losses=("softmax_cross_entropy",),
            defaults={
                "alpha": 0.0001,
                "batch_size": 64,
                "members": 8,
                "num_batches": 16,
                "sigma": 0.0001,
                "tau": 0.0,
            },
            kernel=True,
            shardable=True,
            compute="gex_core.influence.la_kfac:compute",
            summary="K-FAC Laplace posterior samples, linearised losses, GEX score",
            hparams={
                "members": "M",
                "alpha": "alpha",
                "sigma": "sigma",
                "tau": "tau",
                "num_batches": "fb",
                "batch_size": "b",
            },
        ),
        MethodSpec(
            name="randproj",
            defaults={"dim": 20, "strategy": "vjp"},
            kernel=True,
            shardable=True,
            compute="gex_core.influence.randproj:compute",
            summary="Identity-Hessian influence, d Gaussian gradient projections",
            hparams={"dim": "d"},
            unpathed=("strategy",),
        ),
        MethodSpec(
            name="tracin",
            needs=("trajectory",),
            defaults={"lr_weights": False},
            kernel=True,
            shardable=True,
            compute="gex_core.influence.tracin:compute",
            summary="Exact TracIn-CP: per-sample gradient norms over the trajectory",
            hparams={"lr_weights": "lrw"},
        ),
        MethodSpec(
            name="tracinrp",
            needs=("trajectory",),
            defaults={"dim": 20, "lr_weights": False, "strategy": "vjp"},
            kernel=True,
            shardable=True,
            compute="gex_core.influence.tracinrp:compute",
            summary="TracIn-CP with d random projections shared by the T checkpoints",
            hparams={"dim": "d", "lr_weights": "lrw"},
            unpathed=("strategy",),
        ),
        MethodSpec(
            name="arnoldi",
            defaults={
                "batch_size": 128,
                "iterations": 50,
                "num_batches": 4,
                "strategy": "vjp",
                "top_k": 20,
            },
            kernel=True,
            shardable=True,
            compute="gex_core.influence.arnoldi:compute",
            summary="Inverse Hessian on its top-k eigenspace (Arnoldi, fixed batch set)",
            hparams={
                "iterations": "it",
                "top_k": "k",
                "num_batches": "nb",
                "batch_size": "b",
            },
            unpathed=("strategy",),
        ),
        MethodSpec(
            name="exact",
            defaults={"damping": None, "max_params": 5000},
            kernel=True,
            compute="gex_core.influence.exact:compute",
            summary="Explicit damped inverse Hessian (ground truth; small models only)",
            hparams={"damping": "damp"},
            unpathed=("max_params",),
        ),
        MethodSpec(
            name="lissa",
            defaults={
                "batch_size": 128,
                "block_size": 32,
                "damping": None,
                "iterations": 100,
                "num_batches": 1,
                "scale": None,
            },
            kernel=True,
            shardable=True,
            compute="gex_core.influence.lissa:compute",
            summary="LiSSA: truncated Neumann-series inverse-HVPs on a fixed batch set",
            hparams={
                "iterations": "it",
                "damping": "damp",
                "scale": "s",
                "num_batches": "nb",
                "batch_size": "b",
            },
            unpathed=("block_size",),
        ),
        MethodSpec(
            name="el2n",
            needs=("retraining",),
            defaults={"epochs": 10, "repeats": 5},
            compute="gex_core.influence.el2n:compute",
            summary="EL2N: mean ||softmax - onehot|| of R briefly trained fresh models",
            hparams={"repeats": "r", "epochs": "e"},
        ),
        MethodSpec(
            name="forgetting",
            needs=("record",),
            defaults={},
            compute="gex_core.influence.forgetting:compute",
            summary="Forgetting events during pretraining; never-learned samples first",
        ),
        MethodSpec(
            name="cl",
            needs=("retraining",),
            defaults={"folds": 2},
            compute="gex_core.influence.cl:compute",
            summary="Confident learning: 1 - p(noisy label), F-fold cross-fitted",
            hparams={"folds": "f"},
        ),
        MethodSpec(
            name="knn",
            needs=("trajectory",),
            defaults={"k": 0},
            compute="gex_core.influence.knn:compute",
            summary="Logit-space kNN label disagreement (self excluded), over the trajectory",
            hparams={"k": "k"},
        ),
        MethodSpec(
            name="random",
            defaults={},
            compute="gex_core.influence.random_scores:compute",
            summary="Random N(0, 1) scores (the chance baseline)",
        ),
    ]
}


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown influence method {name!r}; known: {', '.join(sorted(METHODS))}"
        ) from None
