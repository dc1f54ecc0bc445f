"""The method registry: what each influence method needs, its knobs and its path.

Pure Python (no JAX) because the Snakefile reads it at parse time. Adding a method means
one entry here, one compute function, and its knobs in schemas/config.schema.yaml; the
DAG's structure does not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MethodSpec:
    """name: registry key and path component.
    needs: upstream artifacts besides labels and the pretrained model ("ensemble").
    hparams: config key -> short path label, in path order (values from
        config["influence"][name]); knobs listed in `unpathed` reach the job but not the
        path because they change how, not what, is computed.
    compute: "module:function" with signature (inputs: MethodInputs, hp: dict) -> Scores.
    cost: asymptotic cost, for the README and the cost table.
    """

    name: str
    compute: str
    summary: str
    cost: str
    hparams: dict[str, str] = field(default_factory=dict)
    unpathed: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

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
            compute="gex_core.influence.gex:compute",
            summary="Geometric-ensemble loss deviations, mean_m Delta^2 (the paper)",
            cost="K*S*ft_steps SGD steps + M forward passes over N",
            hparams={"tau": "tau"},
            needs=("ensemble",),
        ),
        MethodSpec(
            name="randproj",
            compute="gex_core.influence.randproj:compute",
            summary="Identity-Hessian influence, d Gaussian gradient projections",
            cost="d gradient projections over N (one backward pass per sample)",
            hparams={"dim": "d"},
            unpathed=("strategy",),
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
