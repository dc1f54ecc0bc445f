"""The public face of gex_core: arrays and a Flax model in; scores or a table out.

    from gex_core import api

    ensemble = api.fit_geometric_ensemble(apply, params, x, y, x_val=xv, y_val=yv)
    scores = api.influence(apply, params, x, y, x_test, y_test, method="gex",
                           ensemble=ensemble)
    table = api.find_label_issues(x, y, method="gex")

Nothing here writes a file or imports Snakemake. The names below are loaded from their
modules on first use, so importing one of them does not import the others (the
workflow's code fingerprints follow imports).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GeometricEnsemble": "gex_core.api.ensemble",
    "calibrate_ft_lr": "gex_core.api.ensemble",
    "calibrate_with_pilots": "gex_core.api.ensemble",
    "Calibration": "gex_core.influence.calibration",
    "fit_geometric_ensemble": "gex_core.api.ensemble",
    "member_losses": "gex_core.api.scoring",
    "influence": "gex_core.api.scoring",
    "score": "gex_core.api.scoring",
    "methods": "gex_core.api.scoring",
    "find_label_issues": "gex_core.api.label_issues",
    "load_image_folder": "gex_core.api.label_issues",
    "train_model": "gex_core.api.training",
    "as_model": "gex_core.api.models",
    "Problem": "gex_core.influence.problem",
    "Scores": "gex_core.influence.scores",
    "Loss": "gex_core.training.losses",
    "LOSSES": "gex_core.training.losses",
    "Model": "gex_core.training.models",
    "make_model": "gex_core.training.models",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
